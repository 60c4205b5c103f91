"""The store's decisions without nodes or a chain: which node to ask first, when to hedge and
when to give up, how a blob's status is agreed on, when committees are re-read, and the
upload's per-node share and signers bitmap."""

from __future__ import annotations

import pytest
import trio

import codec
from walrusfs.store.committee import COMMITTEE_MEMORY, COMMITTEE_MEMORY_CHANGING, is_stale
from walrusfs.store.errors import BlobInvalid, BlobNotFound
from walrusfs.store.hedging import (
    FAILURE_PENALTY,
    HEDGE_MAX,
    HEDGE_MIN,
    SLOW_MEMORY,
    STRICT_PATIENCE,
    NodeStats,
    launch_count,
    overdue,
    request_plan,
    stop_waiting,
)
from walrusfs.store.nodes import ActiveCommittees, BlobStatus, Committee, StorageNode
from walrusfs.store.status import checked, verdict
from walrusfs.store.upload import grace_period, leaves, slots_per_node
from walrusfs.store.writes import signers_bitmap


def _node(index: int, shards: tuple[int, ...] = (0,)) -> StorageNode:
    return StorageNode(index, f"n{index}", f"http://127.0.0.1:{9000 + index}", b"", shards)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- node stats ------------------------------------------------------------------------------


def test_nodes_are_ordered_fastest_first_and_slow_ones_last_until_they_expire() -> None:
    clock = Clock()
    stats = NodeStats(clock=clock)
    a, b, c = _node(0), _node(1), _node(2)
    stats.record(a, 0.5)
    stats.record(b, 0.1)
    assert stats.order([a, b, c]) == [c, b, a]  # never asked counts as 0 s
    stats.slow(c)
    assert stats.order([a, b, c]) == [b, a, c]
    clock.now += SLOW_MEMORY + 1
    assert not stats.is_slow(c)
    assert stats.order([a, b, c]) == [c, b, a]


def test_a_quick_answer_ends_the_slow_memory_and_a_failure_is_a_slow_answer() -> None:
    stats = NodeStats(clock=Clock())
    a = _node(0)
    stats.slow(a)
    stats.record(a, 0.2)
    assert not stats.is_slow(a)
    stats.record(a, 1.0)
    assert stats.latency["n0"] == pytest.approx(0.7 * 0.2 + 0.3 * 1.0)
    stats.failed(a)
    assert stats.latency["n0"] == pytest.approx(0.7 * 0.44 + 0.3 * FAILURE_PENALTY)


def test_hedge_delay_is_four_typical_answers_within_bounds() -> None:
    stats = NodeStats()
    assert stats.hedge_delay() == 4 * HEDGE_MIN  # nothing known yet
    stats.latency = {"a": 0.01, "b": 0.02, "c": 0.03}
    assert stats.hedge_delay() == HEDGE_MIN
    stats.latency = {"a": 0.1, "b": 0.2, "c": 0.3, "dead": FAILURE_PENALTY}
    assert stats.hedge_delay() == pytest.approx(0.8)  # the failed node is not typical
    stats.latency = {"a": 5.0}
    assert stats.hedge_delay() == HEDGE_MAX


# -- the hedged fetch loop --------------------------------------------------------------------


def test_a_read_of_any_slivers_asks_the_fastest_holders_first() -> None:
    rank = {0: 2, 1: 0, 2: 1}
    assert request_plan([0, 1, 2], rank.__getitem__, lambda i: False, strict=False) == [1, 2, 0]
    # slow holders are only ranked last (by NodeStats.order), never skipped
    assert request_plan([0, 1], rank.__getitem__, lambda i: True, strict=False) == [1, 0]


def test_a_strict_read_asks_its_own_in_order_or_none_when_a_holder_is_slow() -> None:
    rank = {0: 2, 1: 0, 2: 1}
    assert request_plan([0, 1, 2], rank.__getitem__, lambda i: False, strict=True) == [0, 1, 2]
    assert request_plan([0, 1, 2], rank.__getitem__, lambda i: i == 2, strict=True) is None


def test_launch_count_asks_for_exactly_what_is_needed_and_replaces_hedged_requests() -> None:
    def count(have: int, in_flight: int, hedged: int) -> int:
        return launch_count(
            strict=False, need=4, queued=10, have=have, in_flight=in_flight, hedged=hedged
        )

    assert count(have=0, in_flight=0, hedged=0) == 4
    assert count(have=1, in_flight=3, hedged=0) == 0
    assert count(have=1, in_flight=3, hedged=2) == 2  # two lost: two more
    assert count(have=5, in_flight=0, hedged=0) == 0
    assert launch_count(strict=False, need=4, queued=1, have=0, in_flight=0, hedged=0) == 1
    assert launch_count(strict=True, need=3, queued=3, have=0, in_flight=0, hedged=0) == 3


def test_overdue_names_requests_past_the_hedge_delay_once() -> None:
    started = {1: 10.0, 2: 10.5, 3: 9.0}
    assert overdue(started, set(), now=11.0, hedge=1.0) == [1, 3]
    assert overdue(started, {3}, now=11.0, hedge=1.0) == [1]
    assert overdue(started, set(), now=10.2, hedge=1.0) == [3]


def test_stop_waiting() -> None:
    # a strict read waits STRICT_PATIENCE past the hedge delay for a late sliver of its own
    def strict(hedged: int, waited: float) -> bool:
        return stop_waiting(
            strict=True, queued=0, in_flight=1, hedged=hedged, waited=waited, hedge=0.5
        )

    assert not strict(hedged=0, waited=100.0)
    assert not strict(hedged=1, waited=0.5 + STRICT_PATIENCE - 0.01)
    assert strict(hedged=1, waited=0.5 + STRICT_PATIENCE)
    # another read stops once only late requests are left and nothing else to ask
    assert stop_waiting(strict=False, queued=0, in_flight=2, hedged=2, waited=0, hedge=0.5)
    assert not stop_waiting(strict=False, queued=1, in_flight=2, hedged=2, waited=0, hedge=0.5)
    assert not stop_waiting(strict=False, queued=0, in_flight=2, hedged=1, waited=0, hedge=0.5)
    assert not stop_waiting(strict=False, queued=0, in_flight=0, hedged=0, waited=0, hedge=0.5)
    # ... unless the caller has nothing else to ask: then late requests are its only hope
    assert not stop_waiting(
        strict=False, queued=0, in_flight=2, hedged=2, waited=60.0, hedge=0.5, last=True
    )


# -- blob status ------------------------------------------------------------------------------


def test_status_verdict_by_shard_weight() -> None:
    quorum, validity = 7, 4  # n = 10
    permanent = BlobStatus("permanent", 3, None, True)
    deletable = BlobStatus("deletable", 3, None, True)
    invalid = BlobStatus("invalid")
    assert verdict({}, 7, quorum=quorum, validity=validity) == BlobStatus("nonexistent")
    assert verdict({permanent: 6}, 4, quorum=quorum, validity=validity) == permanent
    # the latest status above f wins, although fewer shards report it
    both = {deletable: 6, permanent: 4}
    assert verdict(both, 0, quorum=quorum, validity=validity) == permanent
    assert verdict({invalid: 4, permanent: 6}, 0, quorum=quorum, validity=validity) == invalid
    assert verdict({invalid: 3, permanent: 3}, 3, quorum=quorum, validity=validity) is None


def test_checked_refuses_invalid_and_nonexistent_blobs() -> None:
    blob_id = codec.blob_id_of(b"x", 10)
    ok = BlobStatus("permanent", 1, 5, True)
    assert checked(blob_id, ok) is ok
    assert checked(blob_id, None) is None
    with pytest.raises(BlobInvalid):
        checked(blob_id, BlobStatus("invalid"))
    with pytest.raises(BlobNotFound):
        checked(blob_id, BlobStatus("nonexistent"))


# -- committees -------------------------------------------------------------------------------


def test_committees_are_reread_sooner_during_an_epoch_change() -> None:
    node = _node(0, tuple(range(10)))
    current = Committee(2, 10, (node,), {s: node for s in node.shards})
    previous = Committee(1, 10, (node,), {s: node for s in node.shards})
    steady = ActiveCommittees(current, previous, False)
    changing = ActiveCommittees(current, previous, True)
    assert is_stale(None, 0.0, fresh=False)
    assert is_stale(steady, 0.0, fresh=True)
    assert not is_stale(steady, COMMITTEE_MEMORY, fresh=False)
    assert is_stale(steady, COMMITTEE_MEMORY + 0.1, fresh=False)
    assert is_stale(changing, COMMITTEE_MEMORY_CHANGING + 0.1, fresh=False)


# -- upload -----------------------------------------------------------------------------------


def test_each_node_gets_its_share_of_the_upload_slots_and_at_least_two() -> None:
    assert slots_per_node(32, 4) == 8
    assert slots_per_node(32, 5) == 7  # rounded up
    assert slots_per_node(32, 100) == 2


def test_stragglers_get_the_grace_or_half_the_time_quorum_took() -> None:
    assert grace_period(2.0, 1.0) == 2.0
    assert grace_period(2.0, 10.0) == 5.0


def test_leaves_of_nested_exception_groups() -> None:
    a, b, c = ValueError("a"), OSError("b"), trio.TooSlowError()
    group = ExceptionGroup("outer", [a, ExceptionGroup("inner", [b, c])])
    assert leaves(group) == [a, b, c]
    assert leaves(a) == [a]


def test_signers_bitmap_sets_each_member_index_bit() -> None:
    assert signers_bitmap([], 3) == b"\x00"
    assert signers_bitmap([0, 2], 3) == b"\x05"
    assert signers_bitmap([8, 1], 8) == b"\x02\x01"
    assert signers_bitmap([7], 15) == b"\x80\x00"
