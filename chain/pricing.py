"""What Walrus charges, exactly as `system_state_inner.move` computes it.

All amounts are in FROST (1 WAL = 10^9 FROST). Sizes are *encoded* sizes
(`codec.EncodingParams.encoded_size`), counted in storage units of 1 MiB rounded up.

- `reserve_space(size, epochs)`: storage price x units x epochs, paid up front;
- `register_blob`: write price x units of the blob's encoded size (not of the Storage size);
- `extend_blob(epochs)`: storage price x units of the blob's Storage size x epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

from codec.params import storage_units

FROST_PER_WAL = 10**9


def reserve_cost(storage_size: int, epochs: int, storage_price: int) -> int:
    return storage_units(storage_size) * storage_price * epochs


def write_cost(encoded_size: int, write_price: int) -> int:
    return storage_units(encoded_size) * write_price


def extend_cost(storage_size: int, epochs: int, storage_price: int) -> int:
    return storage_units(storage_size) * storage_price * epochs


@dataclass(frozen=True)
class StoreCost:
    """The WAL a new blob costs when storage is bought for it (no reusable Storage)."""

    storage: int
    write: int

    @property
    def total(self) -> int:
        return self.storage + self.write


def store_cost(encoded_size: int, epochs: int, storage_price: int, write_price: int) -> StoreCost:
    return StoreCost(
        storage=reserve_cost(encoded_size, epochs, storage_price),
        write=write_cost(encoded_size, write_price),
    )


def format_wal(frost: int) -> str:
    """`1.234567890 WAL`: exact, never rounded through a float."""
    sign = "-" if frost < 0 else ""
    whole, frac = divmod(abs(frost), FROST_PER_WAL)
    return f"{sign}{whole}.{frac:09d} WAL"
