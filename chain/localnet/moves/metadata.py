"""Twin of Walrus `metadata.move`: `Metadata`, a value without `key` carried between the
commands of one transaction (a Python dict of attribute pairs)."""

from __future__ import annotations

from typing import Any

from chain.aborts import E_VEC_MAP_KEY_MISSING
from chain.localnet.moves.registry import Registry, abort, mut, pure
from chain.localnet.txcontext import Tx


def register(r: Registry) -> None:
    dep, W = r.dep, r.dep.walrus_pkg
    fn = r.decorator(
        {
            "new": ["Metadata"],
            "remove": ["string", "string"],
            "remove_if_exists": ["option<string>"],
        }
    )

    @fn(W, "metadata", "new", [])
    def metadata_new(tx: Tx) -> list[Any]:
        return [{}]

    @fn(W, "metadata", "insert_or_update", [mut("Metadata"), pure("string"), pure("string")])
    def metadata_insert(tx: Tx, metadata: dict[str, str], key: str, value: str) -> list[Any]:
        metadata[key] = value
        return []

    @fn(W, "metadata", "remove", [mut("Metadata"), pure("string")])
    def metadata_remove(tx: Tx, metadata: dict[str, str], key: str) -> list[Any]:
        if key not in metadata:
            raise abort(tx, dep, E_VEC_MAP_KEY_MISSING, "get_idx", f"no attribute {key!r}")
        return [key, metadata.pop(key)]

    @fn(W, "metadata", "remove_if_exists", [mut("Metadata"), pure("string")])
    def metadata_remove_if_exists(tx: Tx, metadata: dict[str, str], key: str) -> list[Any]:
        return [metadata.pop(key, None)]
