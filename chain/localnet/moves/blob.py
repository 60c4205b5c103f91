"""Twin of Walrus `blob.move`'s functions a client calls on its own `Blob`: burning it and
its attributes, the `metadata` dynamic field (a `Metadata` under the name `b"metadata"`)."""

from __future__ import annotations

from typing import Any

from chain import move_types as mt
from chain.aborts import E_DUPLICATE_METADATA, E_MISSING_METADATA, E_VEC_MAP_KEY_MISSING
from chain.localnet.ledger import OWNER_OBJECT
from chain.localnet.moves.deployment import Deployment
from chain.localnet.moves.registry import Registry, abort, mut, pure, val
from chain.localnet.txcontext import LiveObject, Tx


def metadata_field(tx: Tx, dep: Deployment, blob: LiveObject) -> LiveObject | None:
    obj = tx.load(mt.metadata_field_id(blob.id))
    if obj is None or obj.state != "live":
        return None
    return obj


def put_metadata(tx: Tx, dep: Deployment, blob: LiveObject, pairs: dict[str, str]) -> None:
    existing = metadata_field(tx, dep, blob)
    value = mt.BlobAttributes.from_dict(pairs)
    if existing is not None:
        existing.value = value
        existing.touched = True
        return
    field_id = mt.metadata_field_id(blob.id)
    obj = tx.objs.get(field_id)
    if obj is not None:  # removed earlier in this transaction: revive it
        obj.state, obj.value, obj.touched = "live", value, True
        return
    obj = tx.create(dep.metadata_field_type, value, object_id=field_id)
    obj.owner_kind, obj.owner = OWNER_OBJECT, blob.id
    obj.df = ("vector<u8>", mt.METADATA_FIELD_NAME, dep.t("metadata", "Metadata"))


def delete_metadata(tx: Tx, dep: Deployment, blob: LiveObject) -> None:
    """Drop a blob's `metadata` field along with the blob (`burn`, `delete_blob`)."""
    field = metadata_field(tx, dep, blob)
    if field is not None:
        tx.delete(field)


def register(r: Registry) -> None:
    dep = r.dep
    W, blob_t = dep.walrus_pkg, dep.t("blob", "Blob")
    fn = r.decorator(
        {
            "take_metadata": ["Metadata"],
            "remove_metadata_pair": ["string", "string"],
            "add_or_replace_metadata": ["option<Metadata>"],
            "remove_metadata_pair_if_exists": ["option<string>"],
        }
    )

    @fn(W, "blob", "burn", [val(blob_t)])
    def burn(tx: Tx, blob: LiveObject) -> list[Any]:
        delete_metadata(tx, dep, blob)
        tx.delete(blob)
        return []

    @fn(W, "blob", "add_metadata", [mut(blob_t), val("Metadata")])
    def add_metadata(tx: Tx, blob: LiveObject, metadata: dict[str, str]) -> list[Any]:
        if metadata_field(tx, dep, blob) is not None:
            raise abort(tx, dep, E_DUPLICATE_METADATA, "add_metadata", "metadata exists")
        put_metadata(tx, dep, blob, dict(metadata))
        return []

    @fn(W, "blob", "take_metadata", [mut(blob_t)])
    def take_metadata(tx: Tx, blob: LiveObject) -> list[Any]:
        field = metadata_field(tx, dep, blob)
        if field is None:
            raise abort(tx, dep, E_MISSING_METADATA, "take_metadata", "no metadata")
        tx.delete(field)
        return [field.value.as_dict()]

    @fn(W, "blob", "insert_or_update_metadata_pair", [mut(blob_t), pure("string"), pure("string")])
    def insert_or_update_metadata_pair(tx: Tx, blob: LiveObject, key: str, value: str) -> list[Any]:
        field = metadata_field(tx, dep, blob)
        pairs = field.value.as_dict() if field is not None else {}
        pairs[key] = value
        put_metadata(tx, dep, blob, pairs)
        return []

    @fn(W, "blob", "remove_metadata_pair", [mut(blob_t), pure("string")])
    def remove_metadata_pair(tx: Tx, blob: LiveObject, key: str) -> list[Any]:
        field = metadata_field(tx, dep, blob)
        if field is None:
            raise abort(tx, dep, E_MISSING_METADATA, "metadata", "no metadata")
        pairs = field.value.as_dict()
        if key not in pairs:
            raise abort(tx, dep, E_VEC_MAP_KEY_MISSING, "remove", f"no attribute {key!r}")
        removed = pairs.pop(key)
        put_metadata(tx, dep, blob, pairs)
        return [key, removed]

    @fn(W, "blob", "remove_metadata_pair_if_exists", [mut(blob_t), pure("string")])
    def remove_metadata_pair_if_exists(tx: Tx, blob: LiveObject, key: str) -> list[Any]:
        field = metadata_field(tx, dep, blob)
        if field is None:
            raise abort(tx, dep, E_MISSING_METADATA, "metadata", "no metadata")
        pairs = field.value.as_dict()
        removed = pairs.pop(key, None)
        put_metadata(tx, dep, blob, pairs)
        return [removed]

    @fn(W, "blob", "add_or_replace_metadata", [mut(blob_t), val("Metadata")])
    def add_or_replace_metadata(tx: Tx, blob: LiveObject, metadata: dict[str, str]) -> list[Any]:
        field = metadata_field(tx, dep, blob)
        previous = field.value.as_dict() if field is not None else None
        put_metadata(tx, dep, blob, dict(metadata))
        return [previous]
