"""Which storage node to ask first, and when to ask another one too: the nodes' answer times,
the slow-node memory, and the hedging policy of reads.

Reads are hedged as the Walrus client's are. Nodes are asked fastest first (a moving average
of their answer times). A request not answered within the hedge delay counts as lost: its node
is remembered as slow (asked last for SLOW_MEMORY seconds) and another sliver is asked in its
place, while the first may still answer. A stopped node then costs one hedge delay, not its
whole timeout. The decisions of the hedged fetch loop are pure functions here
(`request_plan`, `launch_count`, `overdue`, `stop_waiting`) so that the policy is tested
without nodes; `walrusfs/store/slivers.py` runs the loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from walrusfs.store.nodes import StorageNode

#: seconds of "latency" recorded for a node that failed
FAILURE_PENALTY = 30.0
#: a node that made a read wait past its hedge delay is asked last for this long (it may be
#: overloaded, or its machine stopped; it recovers by answering once asked again)
SLOW_MEMORY = 60.0
#: hedge delay bounds: a request not answered within the delay is sent to another node too
HEDGE_MIN, HEDGE_MAX = 0.25, 2.0
#: a strict read (a byte range's rows, a patch's columns) waits this long past the hedge
#: delay for its own slivers before falling back to a read from any nodes
STRICT_PATIENCE = 2.0


@dataclass
class NodeStats:
    """Answer times (exponential moving average) and nodes recently too slow: fast nodes are
    asked first and slow ones last, as the Walrus client orders nodes by latency. Shared by
    reads, status checks and uploads (an upload's confirmation time is an answer time too)."""

    latency: dict[str, float] = field(default_factory=dict)
    slow_until: dict[str, float] = field(default_factory=dict)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def record(self, node: StorageNode, seconds: float) -> None:
        """`node` answered after `seconds`; an answer faster than FAILURE_PENALTY also ends
        its slow mark."""
        old = self.latency.get(node.name)
        self.latency[node.name] = seconds if old is None else 0.7 * old + 0.3 * seconds
        if seconds < FAILURE_PENALTY:
            self.slow_until.pop(node.name, None)

    def failed(self, node: StorageNode) -> None:
        """A failure counts as a very slow answer: the node is asked last until it recovers."""
        self.record(node, FAILURE_PENALTY)

    def slow(self, node: StorageNode) -> None:
        """The node made a read wait past its hedge delay."""
        self.slow_until[node.name] = self.clock() + SLOW_MEMORY

    def is_slow(self, node: StorageNode) -> bool:
        until = self.slow_until.get(node.name)
        return until is not None and until > self.clock()

    def order(self, nodes: Sequence[StorageNode]) -> list[StorageNode]:
        """`nodes`, the ones not known slow first, each group fastest first (unknown: 0 s)."""
        return sorted(nodes, key=lambda n: (self.is_slow(n), self.latency.get(n.name, 0.0)))

    def hedge_delay(self) -> float:
        """How long a read request may take before it is sent to another node as well: a few
        times the typical answer time of the nodes that are not slow."""
        known = sorted(v for v in self.latency.values() if v < FAILURE_PENALTY)
        typical = known[len(known) // 2] if known else HEDGE_MIN
        return min(HEDGE_MAX, max(HEDGE_MIN, 4 * typical))


def request_plan(
    indices: Sequence[int],
    rank: Callable[[int], int],
    is_slow: Callable[[int], bool],
    *,
    strict: bool,
) -> list[int] | None:
    """The order in which to ask for the slivers `indices`.

    A read that takes any of them (not `strict`) asks the fastest holders first (`rank`: the
    holder's place in `NodeStats.order`). A strict read needs exactly these slivers and asks
    in their own order; if any holder is known to be slow it asks none (None): the caller
    falls back to a read from any nodes at once rather than waiting for that node.
    """
    if strict:
        return None if any(is_slow(i) for i in indices) else list(indices)
    return sorted(indices, key=rank)


def launch_count(
    *, strict: bool, need: int, have: int, in_flight: int, hedged: int, queued: int
) -> int:
    """How many queued requests to start now.

    A strict read starts all of its own at once. Otherwise just enough to reach `need` if
    every request still expected to answer (in flight and not yet past the hedge delay) does:
    a healthy network is asked for exactly what is needed, more only when some fail or hedge.
    """
    if strict:
        return queued
    return max(0, min(queued, need - have - (in_flight - hedged)))


def overdue(
    started: Mapping[int, float], hedged: Collection[int], now: float, hedge: float
) -> list[int]:
    """Requests in flight that passed the hedge delay just now (not already counted lost)."""
    return [i for i, t in started.items() if now - t >= hedge and i not in hedged]


def stop_waiting(
    *,
    strict: bool,
    queued: int,
    in_flight: int,
    hedged: int,
    waited: float,
    hedge: float,
    last: bool = False,
) -> bool:
    """Whether a fetch returns what it has although requests are still in flight.

    A strict read gives up on its late slivers STRICT_PATIENCE seconds past the hedge delay
    (the caller reads from any nodes instead). Another read stops when nothing is left to ask
    and every request in flight is past its hedge delay: the caller asks other slivers.

    Args:
        last: the caller has no other slivers to ask (the last round of a whole-blob read):
            a late request is then the only hope and is waited for until it answers or its
            timeout ends it. On a loaded machine every request can pass the hedge delay;
            giving up on them then failed reads that the nodes were about to serve.
    """
    if strict:
        return hedged > 0 and waited >= hedge + STRICT_PATIENCE
    return not last and queued == 0 and in_flight > 0 and hedged == in_flight
