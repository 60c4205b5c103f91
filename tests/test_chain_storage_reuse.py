"""Which owned Storage pays for a new blob (`chain.storage_reuse`): pure, no chain."""

from __future__ import annotations

import pytest

from chain import move_types as mt
from chain.pricing import store_cost, write_cost
from chain.records import CostEstimate, SystemInfo
from chain.storage_reuse import Splits, check_epochs, covering, estimate, splits, storage_for
from codec.params import EncodingParams

N_SHARDS = 10
EPOCH = 5
INFO = SystemInfo(
    epoch=EPOCH,
    n_shards=N_SHARDS,
    storage_price=1000,
    write_price=2000,
    total_capacity=10**12,
    used_capacity=0,
    max_epochs_ahead=53,
    package_id="0x1",
    type_package="0x1",
    system_initial_version=1,
    committee_keys=(),
)


def storage(name: str, start: int, end: int, size: int) -> mt.Storage:
    return mt.Storage(f"0x{name}", start, end, size)


def encoded(size: int) -> int:
    return EncodingParams(N_SHARDS).encoded_size(size)


# -- storage_for: the choice among covering resources ------------------------------------------


def test_exact_fit_is_taken_whole() -> None:
    exact = storage("a", 0, 10, 5000)
    assert storage_for([storage("b", 0, 10, 9000), exact], 5000) == (exact, ())


def test_smallest_large_enough_then_earlier_end() -> None:
    small_late = storage("a", 0, 12, 6000)
    small_early = storage("b", 0, 11, 6000)
    big = storage("c", 0, 10, 7000)
    too_small = storage("d", 0, 10, 4000)
    assert storage_for([big, small_late, too_small, small_early], 5000) == (small_early, ())


def test_no_fit() -> None:
    assert storage_for([], 1) == (None, ())
    assert storage_for([storage("a", 0, 10, 10)], 11) == (None, ())
    # enough in total, but over two periods: resources are fused only within one period
    assert storage_for([storage("a", 0, 10, 6), storage("b", 0, 11, 6)], 11) == (None, ())


def test_fuses_the_fewest_of_one_period() -> None:
    a, b, c = storage("a", 0, 10, 3), storage("b", 0, 10, 5), storage("c", 0, 10, 4)
    many = [storage(f"{i}", 1, 10, 2) for i in range(6)]
    reuse, fuse = storage_for([a, *many, b, c], 9)
    assert (reuse, fuse) == (b, (c,))  # 5 + 4: two resources, where the other period needs five


# -- covering: which resources cover the blob's epochs -----------------------------------------


def test_covering_epoch_ranges() -> None:
    end = EPOCH + 3
    valid_now = storage("a", EPOCH, end, 10)
    started = storage("b", 0, end + 5, 10)
    future = storage("c", EPOCH + 1, end + 5, 10)  # not yet valid
    short = storage("d", 0, end - 1, 10)  # ends before the blob does
    assert covering([valid_now, started, future, short], EPOCH, end, set()) == [valid_now, started]


def test_covering_skips_claimed() -> None:
    a, b = storage("a", 0, 10, 10), storage("b", 0, 10, 10)
    assert covering([a, b], EPOCH, 10, {a.id}) == [b]


def test_check_epochs() -> None:
    check_epochs(INFO, 1)
    check_epochs(INFO, INFO.max_epochs_ahead)
    for bad in (0, -1, INFO.max_epochs_ahead + 1):
        with pytest.raises(ValueError, match="epochs must be"):
            check_epochs(INFO, bad)


# -- estimate and splits: the price, and what stays in the wallet ------------------------------


def test_estimate_without_storage_buys_it() -> None:
    cost = estimate(INFO, [], 1000, 3, set())
    price = store_cost(encoded(1000), 3, INFO.storage_price, INFO.write_price)
    assert cost == CostEstimate(1000, encoded(1000), 3, price.storage, price.write, None)
    assert cost.total == price.total
    assert splits(cost, EPOCH) == Splits(None, None)


def test_estimate_reuses_and_pays_the_write_fee_only() -> None:
    exact = storage("a", EPOCH, EPOCH + 3, encoded(1000))
    cost = estimate(INFO, [exact], 1000, 3, set())
    assert (cost.reuse, cost.storage, cost.fuse) == (exact, 0, ())
    assert cost.total == write_cost(encoded(1000), INFO.write_price)
    assert splits(cost, EPOCH) == Splits(None, None)  # an exact fit is consumed whole


def test_estimate_refuses_epochs_out_of_range() -> None:
    with pytest.raises(ValueError, match="epochs must be"):
        estimate(INFO, [], 1000, 0, set())


def test_larger_storage_is_split_by_size() -> None:
    larger = storage("a", EPOCH, EPOCH + 3, encoded(1000) + 4096)
    cost = estimate(INFO, [larger], 1000, 3, set())
    assert cost.reuse == larger
    assert splits(cost, EPOCH) == Splits(encoded(1000), None)


def test_longer_storage_is_split_by_epoch() -> None:
    longer = storage("a", 0, EPOCH + 10, encoded(1000))
    cost = estimate(INFO, [longer], 1000, 3, set())
    assert cost.reuse == longer
    assert splits(cost, EPOCH) == Splits(None, EPOCH + 3)


def test_fused_storage_is_split_by_size_and_epoch() -> None:
    half = encoded(1000) // 2 + 1
    a, b = storage("a", 0, EPOCH + 4, half), storage("b", 0, EPOCH + 4, half)
    cost = estimate(INFO, [a, b], 1000, 3, set())
    assert (cost.reuse, cost.fuse, cost.storage) == (a, (b,), 0)
    assert splits(cost, EPOCH) == Splits(encoded(1000), EPOCH + 3)


def test_estimate_skips_claimed_and_expired() -> None:
    claimed = storage("a", EPOCH, EPOCH + 3, encoded(1000))
    expired = storage("b", 0, EPOCH, encoded(1000))
    cost = estimate(INFO, [claimed, expired], 1000, 3, {claimed.id})
    assert cost.reuse is None
    assert cost.storage > 0
