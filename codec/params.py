"""RS2 encoding parameters for a committee of `n_shards` shards.

These formulas are the protocol: storage nodes, the Move contract and the official client all
compute the same numbers, so a deviation by one byte means a rejected registration or a wrong
price. Sources: walrus-core `encoding/config.rs`, `encoding/utils.rs`, Move `redstuff.move`
(research/walrus-protocol.md sections 1 and 6).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from codec.errors import DataTooLarge, InvalidParameters

#: `EncodingType::RS2`, the only encoding Walrus accepts (BCS enum index and Move u8).
ENCODING_TYPE_RS2 = 1
#: Largest symbol size: u16::MAX - 1, because RS2 symbols must have even length.
MAX_SYMBOL_SIZE = 65534
#: Storage is bought and priced in units of this many encoded bytes (Move `BYTES_PER_UNIT_SIZE`).
BYTES_PER_UNIT_SIZE = 1024 * 1024
#: Size of a digest (BLAKE2b-256) and of a blob ID.
DIGEST_LEN = 32
#: Largest shard count the protocol can address (u16).
MAX_N_SHARDS = 65535


def max_n_faulty(n_shards: int) -> int:
    """`f`: how many shards may be Byzantine (walrus-core `bft::max_n_faulty`)."""
    return (n_shards - 1) // 3


@dataclass(frozen=True)
class EncodingParams:
    """Everything derived from the shard count; one instance per committee size.

    Constructing one raises `InvalidParameters` for fewer than 4 or more than 65535 shards.
    Methods that take a blob size raise what `check_size` raises; those that take a pair,
    sliver or shard index raise `InvalidParameters` when it is not below `n_shards`.
    """

    n_shards: int

    def __post_init__(self) -> None:
        if not isinstance(self.n_shards, int) or isinstance(self.n_shards, bool):
            raise InvalidParameters(f"n_shards must be an integer, not {self.n_shards!r}")
        if self.n_shards < 4:
            raise InvalidParameters(
                f"n_shards must be at least 4 (got {self.n_shards}): with fewer shards RS2 "
                "tolerates no fault and has no recovery symbols"
            )
        if self.n_shards > MAX_N_SHARDS:
            raise InvalidParameters(f"n_shards must be at most {MAX_N_SHARDS}")

    @cached_property
    def f(self) -> int:
        return max_n_faulty(self.n_shards)

    @cached_property
    def k_p(self) -> int:
        """Primary source symbols: rows of the message matrix, symbols per secondary sliver."""
        return self.n_shards - 2 * self.f

    @cached_property
    def k_s(self) -> int:
        """Secondary source symbols: columns of the matrix, symbols per primary sliver."""
        return self.n_shards - self.f

    @cached_property
    def source_symbols(self) -> int:
        return self.k_p * self.k_s

    @cached_property
    def max_blob_size(self) -> int:
        return self.source_symbols * MAX_SYMBOL_SIZE

    def check_size(self, size: int) -> None:
        """A blob of `size` bytes can be encoded for this shard count.

        Raises:
            InvalidParameters: `size` is negative.
            DataTooLarge: `size` exceeds `max_blob_size`.
        """
        if size < 0:
            raise InvalidParameters(f"blob size must be non-negative, got {size}")
        if size > self.max_blob_size:
            raise DataTooLarge(size, self.max_blob_size, self.n_shards)

    def symbol_size(self, size: int) -> int:
        """`compute_symbol_size`: ceil(max(size,1) / K) rounded up to even; empty -> 2."""
        self.check_size(size)
        sym = -(-max(size, 1) // self.source_symbols)
        return sym + (sym & 1)

    def primary_sliver_len(self, size: int) -> int:
        return self.k_s * self.symbol_size(size)

    def secondary_sliver_len(self, size: int) -> int:
        return self.k_p * self.symbol_size(size)

    def sliver_len(self, size: int, axis: str) -> int:
        return (
            self.primary_sliver_len(size) if axis == "primary" else self.secondary_sliver_len(size)
        )

    @cached_property
    def metadata_len(self) -> int:
        """Per-shard metadata charge: all 2n sliver hashes plus the blob ID."""
        return self.n_shards * DIGEST_LEN * 2 + DIGEST_LEN

    def encoded_size(self, size: int) -> int:
        """Move `redstuff::encoded_blob_length`: what a blob occupies on the network, priced."""
        slivers = self.n_shards * (self.k_p + self.k_s) * self.symbol_size(size)
        return self.n_shards * self.metadata_len + slivers

    def storage_units(self, size: int) -> int:
        """Storage units (1 MiB each, rounded up) that the encoded blob needs."""
        return storage_units(self.encoded_size(size))

    # -- sliver pairs and shards ------------------------------------------------------------

    def secondary_index(self, pair_index: int) -> int:
        """Sliver index of the secondary sliver in pair `pair_index` (pairs hold n-1-p)."""
        self._check_index(pair_index)
        return self.n_shards - 1 - pair_index

    def pair_of_secondary(self, sliver_index: int) -> int:
        """Pair that holds secondary sliver `sliver_index` (the map is its own inverse)."""
        self._check_index(sliver_index)
        return self.n_shards - 1 - sliver_index

    def rotation_offset(self, blob_id: bytes) -> int:
        return int.from_bytes(blob_id, "big") % self.n_shards

    def shard_for_pair(self, blob_id: bytes, pair_index: int) -> int:
        """Shard that stores sliver pair `pair_index` of this blob (walrus-core `mapping.rs`)."""
        self._check_index(pair_index)
        return (pair_index + self.rotation_offset(blob_id)) % self.n_shards

    def pair_for_shard(self, blob_id: bytes, shard_index: int) -> int:
        self._check_index(shard_index)
        return (shard_index - self.rotation_offset(blob_id)) % self.n_shards

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.n_shards:
            raise InvalidParameters(f"index {index} out of range for {self.n_shards} shards")


def storage_units(encoded_size: int) -> int:
    """Move: storage is reserved in whole units of 1 MiB, rounded up."""
    return -(-encoded_size // BYTES_PER_UNIT_SIZE)
