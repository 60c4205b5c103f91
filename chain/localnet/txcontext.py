"""What a transaction looks like while it runs: the objects it sees, its values, its callees.

`Tx` is the transaction-local view of the ledger that both the command interpreter and the
Move twins (`chain.localnet.moves`) work on: objects are loaded into it as `LiveObject`s,
changed in place, created with Sui's ID derivation, deleted or wrapped, and events are
recorded, all without touching the ledger; the executor commits the result or discards it.
The Move twins are written against these types (and the errors of `chain.localnet.errors`),
never against the executor that drives them, which is why they are kept apart from it. A
twin is registered as a `MoveFunction` whose `Param`s tell the interpreter how each argument
is passed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chain.localnet.ledger import Ledger, StoredObject
from chain.move_types import MoveStruct, field_contents


@dataclass
class LiveObject:
    """An object as a transaction sees it. `value` is the decoded Move struct."""

    id: str
    type: str
    value: Any
    input: StoredObject | None  # None: created (or unwrapped) in this transaction
    owner_kind: int | None  # None: not owned yet (a fresh result value)
    owner: str | None
    initial_shared_version: int | None = None
    df: tuple[str, bytes, str] | None = None  # dynamic field: (name type, name BCS, value type)
    mutable: bool = True
    state: str = "live"  # live | deleted | wrapped
    touched: bool = False
    is_input: bool = False  # a transaction input (or gas): mutable inputs always get a version
    unwrapped: bool = False  # re-appeared from inside another object (same ID as before)

    def contents(self) -> bytes:
        body = self.value.to_bcs() if isinstance(self.value, MoveStruct) else bytes(self.value)
        if self.df is not None:
            return field_contents(self.id, self.df[1], body)
        return body


@dataclass(frozen=True)
class ObjRef:
    """A PTB value that is an object (a Move value with `key`)."""

    id: str


@dataclass
class Param:
    """One Move parameter: `kind` is ref | mut | val (objects and Metadata) or pure."""

    kind: str
    type: str


@dataclass
class MoveFunction:
    """A callable Move function: parameters, return types (`Param.type` syntax) and the
    Python implementation `impl(tx, *type_args, *args) -> [return values]`."""

    params: list[Param]
    impl: Callable[..., list[Any]]
    type_params: int = 0
    returns: list[str] = field(default_factory=list)


Decoder = Callable[[StoredObject], Any]


@dataclass
class Tx:
    """Transaction-local state: objects read or written, events, fresh IDs."""

    ledger: Ledger
    decode: Decoder
    sender: str
    digest: bytes
    epoch: int
    objs: dict[str, LiveObject] = field(default_factory=dict)
    events: list[tuple[str, str, MoveStruct]] = field(default_factory=list)  # (pkg, module, ev)
    created_count: int = 0

    def new_id(self) -> str:
        """Sui's derivation: blake2b(0xf1 || tx digest || creation counter u64 LE)."""
        raw = hashlib.blake2b(
            b"\xf1" + self.digest + self.created_count.to_bytes(8, "little"), digest_size=32
        ).digest()
        self.created_count += 1
        return "0x" + raw.hex()

    def create(self, type_: str, value: Any, object_id: str | None = None) -> LiveObject:
        """A new object with no owner yet (`check_unused` refuses one still without an
        owner when the transaction ends).

        Args:
            object_id: the ID it takes (an unwrapped object keeps its own, a dynamic field
                has its derived one); None derives a fresh one (`new_id`).
        """
        obj = LiveObject(object_id or self.new_id(), type_, value, None, None, None, touched=True)
        self.objs[obj.id] = obj
        return obj

    def load(self, object_id: str) -> LiveObject | None:
        """The object as this transaction sees it (loaded from the ledger once); None if
        the ledger has no such object."""
        if object_id in self.objs:
            return self.objs[object_id]
        stored = self.ledger.get(object_id)
        if stored is None:
            return None
        obj = LiveObject(
            stored.id,
            stored.type,
            self.decode(stored),
            stored,
            stored.owner_kind,
            stored.owner,
            stored.initial_shared_version,
            (stored.df_name_type, stored.df_name, stored.df_value_type)  # type: ignore[arg-type]
            if stored.df_name_type
            else None,
        )
        self.objs[obj.id] = obj
        return obj

    def delete(self, obj: LiveObject) -> None:
        obj.state = "deleted"
        obj.touched = True

    def wrap(self, obj: LiveObject) -> None:
        obj.state = "wrapped"
        obj.touched = True

    def emit(self, package: str, module: str, event: MoveStruct) -> None:
        self.events.append((package, module, event))
