"""Read masks as a Sui full node applies them, for the stand-in's replies.

A full node returns only the fields a request's `read_mask` names, and a documented default
set when the request carries none. A stand-in that answered with every field would hide a
client that forgets to ask for `contents` (it works here, and finds nothing on testnet), so
every `sui.rpc.v2` reply of the stand-in goes through `apply`.

Semantics mirrored (sources, MystenLabs repositories):

* `FieldMaskTree` (sui-rust-sdk `crates/sui-rpc/src/field/field_mask_tree.rs`): paths are
  dot-separated field names; `*` selects everything; a path selects its whole subtree; a
  shorter path absorbs longer ones (`a` and `a.b` is `a`). `contains(p)` is true when `p` is a
  prefix of a selected path or lies under one; `subtree(p)` is what lies under `p` (everything
  when `p` itself was selected).
* `FieldMaskUtil::validate` (same crate, `field_mask_util.rs`): every path other than `*` must
  name fields that exist, descending only into message fields; otherwise the request is
  refused with INVALID_ARGUMENT (`invalid read_mask path: ...`).
* Defaults (sui `crates/sui-rpc-api/src/read_mask_defaults.rs`, the `READ_MASK_DEFAULT` of
  each handler, and the `sui-apis` `proto/sui/rpc/v2/*_service.proto` comments): see
  `DEFAULTS`. SimulateTransaction without a mask renders everything (`new_wildcard` in
  `grpc/v2/transaction_execution_service/simulate/mod.rs`).
* An `ObjectSet` (`ExecutedTransaction.objects`, `Checkpoint.objects`) is rendered only when
  the mask reaches into its `objects` field: the node asks for `subtree("objects.objects")`
  (`transaction_execution_service/mod.rs`, `simulate/mod.rs`, `ledger_service/
  get_checkpoint.rs`), which a bare `objects` does not satisfy.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import betterproto2
import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb

WILDCARD = "*"

#: What a request without a read mask gets, by method (paths relative to the masked message).
DEFAULTS: dict[str, tuple[str, ...]] = {
    "GetObject": ("object_id", "version", "digest"),
    "BatchGetObjects": ("object_id", "version", "digest"),
    "ListOwnedObjects": ("object_id", "version", "object_type"),
    "ListDynamicFields": ("parent", "field_id"),
    "GetTransaction": ("digest",),
    "GetCheckpoint": ("sequence_number", "digest"),
    "SubscribeCheckpoints": ("sequence_number", "digest"),
    "GetEpoch": (
        "epoch",
        "first_checkpoint",
        "last_checkpoint",
        "start",
        "end",
        "reference_gas_price",
        "protocol_config.protocol_version",
    ),
    "ExecuteTransaction": ("effects",),
    "SimulateTransaction": (WILDCARD,),
}


class InvalidReadMask(ValueError):
    """A path names no field of the message (the node answers INVALID_ARGUMENT)."""


@dataclasses.dataclass
class _Node:
    children: dict[str, _Node] = dataclasses.field(default_factory=dict)


class MaskTree:
    """A parsed field mask (the sui-rpc `FieldMaskTree`)."""

    def __init__(self, paths: list[str] | tuple[str, ...] = (), wildcard: bool = False) -> None:
        self.wildcard = wildcard
        self.root = _Node()
        for path in paths:
            self._add(path)

    def _add(self, path: str) -> None:
        if self.wildcard or not _valid_syntax(path):
            return
        if path == WILDCARD:
            self.wildcard = True
            self.root.children.clear()
            return
        node = self.root
        new_branch = False
        for component in path.split("."):
            if not new_branch and node is not self.root and not node.children:
                return  # an ancestor is already selected whole
            if component not in node.children:
                node.children[component] = _Node()
                new_branch = True
            node = node.children[component]
        node.children.clear()

    def contains(self, path: str) -> bool:
        if not path:
            return False
        if self.wildcard:
            return True
        node = self.root
        for component in path.split("."):
            if node is not self.root and not node.children:
                return True
            child = node.children.get(component)
            if child is None:
                return False
            node = child
        return True

    def subtree(self, path: str) -> MaskTree | None:
        if not path:
            return None
        if self.wildcard:
            return self
        node = self.root
        for component in path.split("."):
            child = node.children.get(component)
            if child is None:
                return None
            node = child
        sub = MaskTree(wildcard=not node.children)
        sub.root = node
        return sub


def _valid_syntax(path: str) -> bool:
    return path == WILDCARD or (bool(path) and all(path.split(".")))


M = TypeVar("M", bound=betterproto2.Message)


def _fields(cls: type[betterproto2.Message]) -> dict[str, type[betterproto2.Message] | None]:
    """Field name -> message class for message fields, None for scalars."""
    meta: Any = getattr(cls(), "_betterproto")  # noqa: B009  (betterproto2 metadata, untyped)
    out: dict[str, type[betterproto2.Message] | None] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        info = meta.meta_by_field_name[f.name]
        out[f.name] = meta.cls_by_field[f.name] if info.proto_type == "message" else None
    return out


def validate(paths: list[str] | tuple[str, ...], cls: type[betterproto2.Message]) -> None:
    """Refuse a mask naming a field `cls` does not have (as `FieldMaskUtil::validate`).

    Raises:
        InvalidReadMask: a path names no field, or goes on past a scalar one.
    """
    for path in paths:
        if path == WILDCARD:
            continue
        current: type[betterproto2.Message] | None = cls
        components = path.split(".")
        for i, component in enumerate(components):
            fields = _fields(current) if current is not None else {}
            if component not in fields:
                raise InvalidReadMask(f"invalid read_mask path: {path}")
            current = fields[component]
            if current is None and i + 1 < len(components):
                raise InvalidReadMask(f"invalid read_mask path: {path}")


def tree_for(method: str, mask: Any | None, cls: type[betterproto2.Message]) -> MaskTree:
    """The validated mask of a request.

    Args:
        method: the RPC's name, whose documented default mask applies when `mask` is None.
        mask: the request's google.protobuf.FieldMask, or None.

    Raises:
        InvalidReadMask: a path names no field of `cls`.
    """
    paths = list(mask.paths) if mask is not None else list(DEFAULTS[method])
    validate(paths, cls)
    return MaskTree(paths)


def apply(message: M, tree: MaskTree) -> M:
    """A copy of `message` with only the fields `tree` selects."""
    if tree.wildcard:
        return message
    cls = type(message)
    kept: dict[str, Any] = {}
    for name, sub_cls in _fields(cls).items():
        if not tree.contains(name):
            continue
        value = getattr(message, name)
        if sub_cls is None or value is None:
            kept[name] = value
            continue
        if sub_cls is pb.ObjectSet:
            objects_mask = tree.subtree(f"{name}.objects")
            if objects_mask is None:
                continue
            kept[name] = pb.ObjectSet(objects=[apply(o, objects_mask) for o in value.objects])
            continue
        sub = tree.subtree(name)
        assert sub is not None  # contains(name) holds
        if isinstance(value, list):
            kept[name] = [apply(v, sub) for v in value]
        else:
            kept[name] = apply(value, sub)
    return cls(**kept)
