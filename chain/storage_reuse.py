"""Which owned `Storage` a new blob is paid with, as the Walrus client chooses it. Pure.

A blob stored now for `epochs` needs `encoded_size` bytes over [epoch, epoch + epochs). An
owned `Storage` can pay for it when its period covers that one (`covering`). The smallest
single resource large enough is taken, ties broken by the earlier end; else the fewest
resources of one period that together are large enough, fused into the first
(`storage_for`). Whatever exceeds the blob, in size or in epochs, is split off and stays in
the wallet (`splits`), so nothing freed by a delete is wasted. Without any, storage is
reserved and paid for (`estimate`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from chain import move_types as mt
from chain.pricing import store_cost
from chain.records import CostEstimate, SystemInfo
from codec.params import EncodingParams


def check_epochs(info: SystemInfo, epochs: int) -> None:
    """A blob is stored for 1 to `max_epochs_ahead` epochs.

    Raises:
        ValueError: `epochs` is outside that range.
    """
    if not 0 < epochs <= info.max_epochs_ahead:
        raise ValueError(f"epochs must be 1..{info.max_epochs_ahead}, got {epochs}")


def covering(
    owned: Iterable[mt.Storage], epoch: int, end: int, claimed: Collection[str]
) -> list[mt.Storage]:
    """The resources valid in `epoch` that last at least until `end`, less those `claimed`
    by registrations under way (two transactions cannot consume the same object)."""
    return [
        s for s in owned if s.start_epoch <= epoch and s.end_epoch >= end and s.id not in claimed
    ]


def storage_for(
    covering: list[mt.Storage], encoded: int
) -> tuple[mt.Storage | None, tuple[mt.Storage, ...]]:
    """Owned Storage to pay a blob of `encoded` bytes with (all covering its period): the
    smallest resource large enough; else the fewest resources of one period that together are
    (fused). None: nothing fits."""
    single = [s for s in covering if s.storage_size >= encoded]
    if single:
        return min(single, key=lambda s: (s.storage_size, s.end_epoch)), ()
    periods: dict[tuple[int, int], list[mt.Storage]] = {}
    for s in covering:
        periods.setdefault((s.start_epoch, s.end_epoch), []).append(s)
    best: list[mt.Storage] | None = None
    for group in periods.values():
        group.sort(key=lambda s: s.storage_size, reverse=True)
        total, take = 0, []
        for s in group:
            take.append(s)
            total += s.storage_size
            if total >= encoded:
                break
        if total >= encoded and (best is None or len(take) < len(best)):
            best = take
    if best is None:
        return None, ()
    return best[0], tuple(best[1:])


def estimate(
    info: SystemInfo, owned: Iterable[mt.Storage], size: int, epochs: int, claimed: Collection[str]
) -> CostEstimate:
    """What storing `size` bytes for `epochs` costs now: the write fee, and the storage price
    unless owned Storage pays for it.

    Args:
        size: the unencoded size in bytes; the price is of its encoded size.
        claimed: IDs of Storage that registrations under way will consume, not reused here.

    Raises:
        ValueError: `epochs` is not within 1..`max_epochs_ahead`.
        codec.DataTooLarge: `size` exceeds the largest blob of this shard count.
    """
    check_epochs(info, epochs)
    encoded = EncodingParams(info.n_shards).encoded_size(size)
    usable = covering(owned, info.epoch, info.epoch + epochs, claimed)
    reuse, fuse = storage_for(usable, encoded)
    cost = store_cost(encoded, epochs, info.storage_price, info.write_price)
    return CostEstimate(
        size, encoded, epochs, 0 if reuse else cost.storage, cost.write, reuse, fuse
    )


@dataclass(frozen=True)
class Splits:
    """What a registration splits off the reused Storage and keeps in the wallet."""

    #: `split_by_size` at this size: the excess over the blob's encoded size is kept
    size: int | None
    #: `split_by_epoch` at this epoch: the period after the blob's end is kept (usable from
    #: its start epoch on)
    epoch: int | None


def splits(cost: CostEstimate, epoch: int) -> Splits:
    """The splits of a registration in `epoch` that reuses `cost.reuse` (and `cost.fuse`)."""
    if cost.reuse is None:
        return Splits(None, None)
    have = cost.reuse.storage_size + sum(s.storage_size for s in cost.fuse)
    end = epoch + cost.epochs
    return Splits(
        cost.encoded_size if have > cost.encoded_size else None,
        end if cost.reuse.end_epoch > end else None,
    )
