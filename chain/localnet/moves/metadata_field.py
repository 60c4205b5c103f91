"""The `metadata` dynamic field (a `Metadata` under the name b"metadata") of a `Blob` and of a
`PooledBlob`, and the six functions both contracts give it.

`blob.move` and `storage_pool.move` (MystenLabs/walrus `mainnet-contracts/walrus/sources/
system/`) write the same code twice, against their own aborts: `add_metadata` aborts with
EDuplicateMetadata when the field exists, `take_metadata` and `metadata` with EMissingMetadata
when it does not; `remove_metadata_pair_if_exists` answers none when there is no field at all;
`metadata::remove` aborts in `sui::vec_map::get_idx` (EKeyDoesNotExist = 1) for a missing key.
The twins of both modules call these with their module's aborts (`MetadataAborts`).
"""

from __future__ import annotations

from dataclasses import dataclass

from chain import move_types as mt
from chain.aborts import E_VEC_MAP_KEY_MISSING, Abort
from chain.localnet.ledger import OWNER_OBJECT
from chain.localnet.moves.deployment import Deployment
from chain.localnet.moves.registry import abort
from chain.localnet.txcontext import LiveObject, Tx


@dataclass(frozen=True)
class MetadataAborts:
    """The owning module's EDuplicateMetadata and EMissingMetadata."""

    duplicate: Abort
    missing: Abort


def metadata_field(tx: Tx, dep: Deployment, owner: LiveObject) -> LiveObject | None:
    """The object's `metadata` field (`dynamic_field::exists_`), None without one."""
    obj = tx.load(mt.metadata_field_id(owner.id))
    if obj is None or obj.state != "live":
        return None
    return obj


def put_metadata(tx: Tx, dep: Deployment, owner: LiveObject, pairs: dict[str, str]) -> None:
    """Set the object's `metadata` field to `pairs` (adding it if absent)."""
    existing = metadata_field(tx, dep, owner)
    value = mt.BlobAttributes.from_dict(pairs)
    if existing is not None:
        existing.value = value
        existing.touched = True
        return
    field_id = mt.metadata_field_id(owner.id)
    obj = tx.objs.get(field_id)
    if obj is not None:  # removed earlier in this transaction: revive it
        obj.state, obj.value, obj.touched = "live", value, True
        return
    obj = tx.create(dep.metadata_field_type, value, object_id=field_id)
    obj.owner_kind, obj.owner = OWNER_OBJECT, owner.id
    obj.df = ("vector<u8>", mt.METADATA_FIELD_NAME, dep.t("metadata", "Metadata"))


def delete_metadata(tx: Tx, dep: Deployment, owner: LiveObject) -> None:
    """`dynamic_field::remove_if_exists<_, Metadata>(&mut id, METADATA_DF)`: drop the field
    along with the object (`burn`, `delete_blob`, `delete_blob_object`, `burn_blob_object`)."""
    field = metadata_field(tx, dep, owner)
    if field is not None:
        tx.delete(field)


def add_metadata(
    tx: Tx, dep: Deployment, owner: LiveObject, metadata: dict[str, str], aborts: MetadataAborts
) -> None:
    if metadata_field(tx, dep, owner) is not None:
        raise abort(tx, dep, aborts.duplicate, "add_metadata", "metadata exists")
    put_metadata(tx, dep, owner, dict(metadata))


def add_or_replace_metadata(
    tx: Tx, dep: Deployment, owner: LiveObject, metadata: dict[str, str]
) -> dict[str, str] | None:
    """Returns the replaced metadata (`take_metadata` then `add_metadata`: no abort)."""
    field = metadata_field(tx, dep, owner)
    previous = field.value.as_dict() if field is not None else None
    put_metadata(tx, dep, owner, dict(metadata))
    return previous


def take_metadata(
    tx: Tx, dep: Deployment, owner: LiveObject, aborts: MetadataAborts
) -> dict[str, str]:
    field = metadata_field(tx, dep, owner)
    if field is None:
        raise abort(tx, dep, aborts.missing, "take_metadata", "no metadata")
    tx.delete(field)
    pairs: dict[str, str] = field.value.as_dict()
    return pairs


def insert_or_update_metadata_pair(
    tx: Tx, dep: Deployment, owner: LiveObject, key: str, value: str
) -> None:
    """`metadata_or_create().insert_or_update(key, value)`."""
    field = metadata_field(tx, dep, owner)
    pairs = field.value.as_dict() if field is not None else {}
    pairs[key] = value
    put_metadata(tx, dep, owner, pairs)


def remove_metadata_pair(
    tx: Tx, dep: Deployment, owner: LiveObject, key: str, aborts: MetadataAborts
) -> tuple[str, str]:
    field = metadata_field(tx, dep, owner)
    if field is None:
        raise abort(tx, dep, aborts.missing, "metadata", "no metadata")
    pairs = field.value.as_dict()
    if key not in pairs:
        raise abort(tx, dep, E_VEC_MAP_KEY_MISSING, "get_idx", f"no attribute {key!r}")
    removed = pairs.pop(key)
    put_metadata(tx, dep, owner, pairs)
    return key, removed


def remove_metadata_pair_if_exists(
    tx: Tx, dep: Deployment, owner: LiveObject, key: str
) -> str | None:
    """None, and nothing changed, when the object has no metadata at all."""
    field = metadata_field(tx, dep, owner)
    if field is None:
        return None
    pairs: dict[str, str] = field.value.as_dict()
    if key not in pairs:
        return None  # `metadata::remove_if_exists` leaves the map as it was
    removed = pairs.pop(key)
    put_metadata(tx, dep, owner, pairs)
    return removed
