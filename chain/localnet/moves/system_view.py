"""The System's inner state (`system_state_inner.move`) as a transaction reads and changes it:
the version check every `system` entry point starts with, and the future-accounting ring
buffer that storage payments and used capacity are booked in."""

from __future__ import annotations

import dataclasses
from typing import Any

from chain import move_types as mt
from chain.aborts import E_STORAGE_EXCEEDED, E_WRONG_VERSION
from chain.localnet.moves.deployment import SYSTEM_VERSION, Deployment
from chain.localnet.moves.registry import abort, withdraw
from chain.localnet.txcontext import LiveObject, Tx
from codec.params import storage_units


class SystemView:
    """The System's inner state inside a transaction: read it, replace it."""

    def __init__(self, tx: Tx, dep: Deployment, system: LiveObject, fn: str) -> None:
        root: mt.VersionedRoot = system.value
        if root.version != SYSTEM_VERSION:
            raise abort(tx, dep, E_WRONG_VERSION, fn, "package version mismatch")
        inner = tx.load(dep.system_inner_id())
        if inner is None:
            raise RuntimeError("the System has no inner state: genesis is incomplete")
        inner.mutable = system.mutable
        self.obj = inner
        self.tx, self.dep, self.fn = tx, dep, fn

    @property
    def state(self) -> mt.SystemStateInnerV1:
        value: mt.SystemStateInnerV1 = self.obj.value
        return value

    def set(self, **changes: Any) -> None:
        self.obj.value = dataclasses.replace(self.state, **changes)
        self.obj.touched = True

    @property
    def epoch(self) -> int:
        return self.state.committee.epoch

    def add_used_capacity(
        self, start: int, end: int, amount: int, check: bool, where: str | None = None
    ) -> None:
        """Book `amount` bytes of used capacity in the epochs [start, end), and the current
        epoch's in `used_capacity_size` when 0 is among them (`reserve_space_without_payment`,
        `account_capacity`).

        Args:
            start, end: epochs counted from the current one (0 is the current epoch).
            check: abort when an epoch's use exceeds the total capacity.
            where: the `system_state_inner` function the check is in (default: this view's).

        Raises:
            MoveAbort: `EStorageExceeded` (only with `check`).
        """
        ring = self.state.future_accounting
        entries = list(ring.ring_buffer)
        used_now = self.state.used_capacity_size
        for offset in range(start, end):
            index = (ring.current_index + offset) % ring.length
            entry = entries[index]
            used = entry.used_capacity + amount
            entries[index] = dataclasses.replace(entry, used_capacity=used)
            if offset == 0:
                used_now = used
            if check and used > self.state.total_capacity_size:
                raise abort(
                    self.tx, self.dep, E_STORAGE_EXCEEDED, where or self.fn, "storage exceeded"
                )
        self.set(
            future_accounting=dataclasses.replace(ring, ring_buffer=entries),
            used_capacity_size=used_now,
        )

    def pay_storage(self, size: int, start: int, end: int, payment: LiveObject) -> None:
        """Pay for `size` bytes (priced in storage units) in each epoch of [start, end), out
        of `payment`, booked as rewards of each epoch.

        Args:
            start, end: epochs counted from the current one (0 is the current epoch).

        Raises:
            MoveAbort: `balance::ENotEnough`, the coin cannot pay an epoch.
        """
        due = self.state.storage_price_per_unit_size * storage_units(size)
        ring = self.state.future_accounting
        entries = list(ring.ring_buffer)
        for offset in range(start, end):
            withdraw(self.tx, self.dep, payment, due, self.fn)
            index = (ring.current_index + offset) % ring.length
            entry = entries[index]
            entries[index] = dataclasses.replace(
                entry, rewards_to_distribute=entry.rewards_to_distribute + due
            )
        self.set(future_accounting=dataclasses.replace(ring, ring_buffer=entries))

    def write_price(self, encoded_size: int) -> int:
        """`system_state_inner::write_price`: the write fee of `encoded_size` bytes."""
        return self.state.write_price_per_unit_size * storage_units(encoded_size)

    def reward_now(self, amount: int) -> None:
        ring = self.state.future_accounting
        entries = list(ring.ring_buffer)
        entry = entries[ring.current_index]
        entries[ring.current_index] = dataclasses.replace(
            entry, rewards_to_distribute=entry.rewards_to_distribute + amount
        )
        self.set(future_accounting=dataclasses.replace(ring, ring_buffer=entries))
