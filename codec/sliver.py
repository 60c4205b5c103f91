"""Slivers: one row (primary) or one column (secondary) of a blob's symbol matrix.

A sliver travels as BCS `SliverData`, the body of PUT and GET /v1/blobs/{id}/slivers/{pair}/{axis}:

      width        field
      1..5         ULEB128(len)  data length: k_s*s (primary) or k_p*s (secondary)
      len          data          the sliver's symbols, concatenated
      2            symbol_size   u16 little-endian
      2            index         u16 little-endian: the *sliver* index (n-1-p for the
                                 secondary sliver of pair p), not the pair index

The axis is not in the body; it is in the URL. `Sliver` keeps the BCS bytes and exposes the data
as a zero-copy view, because slivers move between the network, disk and the engine as BCS.
"""

from __future__ import annotations

from enum import StrEnum

from codec.bcs import Reader, uleb128
from codec.errors import MalformedBcs
from codec.params import EncodingParams


class Axis(StrEnum):
    PRIMARY = "primary"
    SECONDARY = "secondary"

    @property
    def other(self) -> Axis:
        return Axis.SECONDARY if self is Axis.PRIMARY else Axis.PRIMARY


class Sliver:
    """A sliver as BCS `SliverData` plus the axis it was stored or fetched under.

    Constructing one from bytes raises `MalformedBcs` when they are not one `SliverData` of
    whole symbols.
    """

    __slots__ = ("_data_start", "axis", "bcs", "index", "symbol_size")

    def __init__(self, bcs: bytes, axis: Axis | str) -> None:
        self.axis = Axis(axis)
        self.bcs = bytes(bcs)
        reader = Reader(self.bcs)
        length = reader.uleb128()
        self._data_start = reader.pos
        reader.take(length)
        self.symbol_size = reader.u16()
        self.index = reader.u16()
        reader.end()
        if self.symbol_size == 0 or length % self.symbol_size:
            raise MalformedBcs(
                f"{self.axis} sliver {self.index}: {length} data bytes is not a whole number "
                f"of {self.symbol_size}-byte symbols"
            )

    @classmethod
    def build(
        cls, axis: Axis | str, index: int, symbol_size: int, data: bytes | memoryview
    ) -> Sliver:
        """The sliver `index` of `axis` holding `data`, as `SliverData` BCS.

        Raises:
            MalformedBcs: `index` or `symbol_size` does not fit a u16 (or the symbol size is
                0), or `data` is not a whole number of symbols.
        """
        if not 0 <= index <= 0xFFFF or not 0 < symbol_size <= 0xFFFF:
            raise MalformedBcs(f"sliver index {index} / symbol size {symbol_size} out of u16")
        body = b"".join(
            (
                uleb128(len(data)),
                data,
                symbol_size.to_bytes(2, "little"),
                index.to_bytes(2, "little"),
            )
        )
        return cls(body, axis)

    @property
    def data(self) -> memoryview:
        return memoryview(self.bcs)[self._data_start : len(self.bcs) - 4]

    def pair_index(self, params: EncodingParams) -> int:
        """The pair this sliver belongs to: the URL path index on storage nodes."""
        if self.axis is Axis.PRIMARY:
            return self.index
        return params.pair_of_secondary(self.index)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.axis}, index={self.index}, s={self.symbol_size})"


class VerifiedSliver(Sliver):
    """A sliver checked against `VerifiedMetadata`; only `codec.redstuff.verify_sliver` makes one.

    Carrying the proof in the type lets the read path verify slivers as they arrive (in
    parallel) and the decoder skip re-verifying them.
    """

    __slots__ = ("blob_id_raw",)

    def __init__(self, sliver: Sliver, blob_id_raw: bytes) -> None:
        # Re-parsing a few header bytes is cheaper than copying slots by hand and keeps the
        # invariants of Sliver in one constructor.
        super().__init__(sliver.bcs, sliver.axis)
        self.blob_id_raw = blob_id_raw


class SliverPair:
    """What one shard stores for a blob: primary sliver p and secondary sliver n-1-p."""

    __slots__ = ("pair_index", "primary", "secondary")

    def __init__(self, pair_index: int, primary: Sliver, secondary: Sliver) -> None:
        self.pair_index = pair_index
        self.primary = primary
        self.secondary = secondary

    def sliver(self, axis: Axis | str) -> Sliver:
        return self.primary if Axis(axis) is Axis.PRIMARY else self.secondary

    def __repr__(self) -> str:
        return f"SliverPair({self.pair_index})"
