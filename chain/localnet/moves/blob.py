"""Twin of Walrus `blob.move`'s functions a client calls on its own `Blob`: burning it and
its attributes, the `metadata` dynamic field (a `Metadata` under the name `b"metadata"`,
`chain.localnet.moves.metadata_field`, which `storage_pool.move`'s PooledBlob shares)."""

from __future__ import annotations

from typing import Any

from chain.aborts import E_DUPLICATE_METADATA, E_MISSING_METADATA
from chain.localnet.moves import metadata_field as mf
from chain.localnet.moves.registry import Registry, mut, pure, val
from chain.localnet.txcontext import LiveObject, Tx

#: blob.move's EDuplicateMetadata (7) and EMissingMetadata (8)
BLOB_METADATA = mf.MetadataAborts(E_DUPLICATE_METADATA, E_MISSING_METADATA)


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
        mf.delete_metadata(tx, dep, blob)
        tx.delete(blob)
        return []

    @fn(W, "blob", "add_metadata", [mut(blob_t), val("Metadata")])
    def add_metadata(tx: Tx, blob: LiveObject, metadata: dict[str, str]) -> list[Any]:
        mf.add_metadata(tx, dep, blob, metadata, BLOB_METADATA)
        return []

    @fn(W, "blob", "take_metadata", [mut(blob_t)])
    def take_metadata(tx: Tx, blob: LiveObject) -> list[Any]:
        return [mf.take_metadata(tx, dep, blob, BLOB_METADATA)]

    @fn(W, "blob", "insert_or_update_metadata_pair", [mut(blob_t), pure("string"), pure("string")])
    def insert_or_update_metadata_pair(tx: Tx, blob: LiveObject, key: str, value: str) -> list[Any]:
        mf.insert_or_update_metadata_pair(tx, dep, blob, key, value)
        return []

    @fn(W, "blob", "remove_metadata_pair", [mut(blob_t), pure("string")])
    def remove_metadata_pair(tx: Tx, blob: LiveObject, key: str) -> list[Any]:
        return list(mf.remove_metadata_pair(tx, dep, blob, key, BLOB_METADATA))

    @fn(W, "blob", "remove_metadata_pair_if_exists", [mut(blob_t), pure("string")])
    def remove_metadata_pair_if_exists(tx: Tx, blob: LiveObject, key: str) -> list[Any]:
        return [mf.remove_metadata_pair_if_exists(tx, dep, blob, key)]

    @fn(W, "blob", "add_or_replace_metadata", [mut(blob_t), val("Metadata")])
    def add_or_replace_metadata(tx: Tx, blob: LiveObject, metadata: dict[str, str]) -> list[Any]:
        return [mf.add_or_replace_metadata(tx, dep, blob, metadata)]
