"""Storing through the upload relay against storing directly: the bytes the client sends per
byte stored, and the time of a store through a slow uplink.

    .venv/bin/python bench/relay.py [--size-mib 32] [--n-shards 1000] [--uplink-mbit 100]
                                    [--repeat 2] [--json FILE]

Starts a devnet (4 nodes and its upload relay) in a temporary WALRUSFS_HOME and stores
`--size-mib` of random bytes as one blob, directly (every sliver to its node: about 4.5 times
the blob, plus the metadata to each node) and through the devnet's relay (the blob once), each
`--repeat` times, the two interleaved. Every byte the client writes to a socket is counted,
and, with `--uplink-mbit`, paced through one token bucket of that rate: the client's uplink,
as a home connection would be (the relay's own traffic to the nodes is not the client's and
is not paced, as on the real network). Printed: bytes sent per byte stored, seconds, and the
ratios relay / direct. The chain work (register, certify) is the same in both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

from bench.home import WalrusfsHome  # noqa: E402
from chain.client import WalrusChain  # noqa: E402
from walrusfs.devnet.launcher import Devnet  # noqa: E402
from walrusfs.store import http1  # noqa: E402
from walrusfs.store.client import WalrusStore  # noqa: E402
from walrusfs.store.relay import RelayClient  # noqa: E402


class Uplink:
    """Every byte the client sends, counted and (if `rate` bytes/s > 0) paced."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.sent = 0
        self._free_at = 0.0  # when the bucket has drained what was sent so far

    async def send(self, n: int) -> None:
        self.sent += n
        if self.rate <= 0:
            return
        # the process's monotonic clock, not trio's: each trio.run has a clock of its own
        # (with a random offset), and the bucket outlives the runs
        now = time.monotonic()
        self._free_at = max(self._free_at, now) + n / self.rate
        await trio.sleep(self._free_at - now)


class PacedStream(trio.abc.Stream):
    """A client connection whose sends go through the uplink."""

    def __init__(self, inner: trio.abc.Stream, uplink: Uplink) -> None:
        self.inner = inner
        self.uplink = uplink

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        for i in range(0, len(view), 64 << 10):  # paced in 64 KiB pieces
            piece = view[i : i + (64 << 10)]
            await self.uplink.send(len(piece))
            await self.inner.send_all(piece)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


def pace_client(uplink: Uplink) -> None:
    """Route every connection the store's HTTP client opens through `uplink`."""
    original = http1.Pool._open_tcp

    async def paced(self: http1.Pool) -> trio.abc.Stream:
        return PacedStream(await original(self), uplink)

    http1.Pool._open_tcp = paced  # type: ignore[method-assign]


async def one_store(devnet: Devnet, data: bytes, relay_url: str | None, uplink: Uplink) -> Any:
    spec = devnet.spec()
    chain = WalrusChain(spec.profile(), devnet.wallet().active)
    relay = None if relay_url is None else RelayClient(relay_url, max_tip=0)
    store = WalrusStore(chain, relay=relay)
    before = uplink.sent
    try:
        began = time.monotonic()
        await store.store(data, 1)
        took = time.monotonic() - began
        assert store.relay_stats[1] == 0, "the relay failed: the store went direct"
    finally:
        await store.close()
        await chain.close()
    return {"seconds": took, "sent": uplink.sent - before}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=32)
    ap.add_argument("--n-shards", type=int, default=1000)
    ap.add_argument("--uplink-mbit", type=float, default=100.0, help="0: not paced")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    uplink = Uplink(args.uplink_mbit * 1e6 / 8)
    pace_client(uplink)
    size = args.size_mib << 20
    runs: dict[str, list[Any]] = {"direct": [], "relay": []}
    with tempfile.TemporaryDirectory(prefix="wfs-relay-bench-") as tmp:
        home = WalrusfsHome(Path(tmp), args.n_shards)
        devnet = Devnet(Path(tmp) / "data")
        relay_url = devnet.spec().relay_url
        try:
            for _ in range(args.repeat):
                for mode, url in (("direct", None), ("relay", relay_url)):
                    data = os.urandom(size)
                    runs[mode].append(trio.run(one_store, devnet, data, url, uplink))
        finally:
            home.cli("devnet", "down")
    out: dict[str, Any] = {
        "size": size,
        "n_shards": args.n_shards,
        "uplink_mbit": args.uplink_mbit,
    }
    print(
        f"# {args.size_mib} MiB blob, devnet n_shards={args.n_shards}, client uplink "
        f"{args.uplink_mbit:g} Mbit/s (0: not paced), median of {args.repeat}"
    )
    print(f"{'mode':8} {'sent/byte':>10} {'seconds':>9} {'MiB/s':>8}")
    for mode, results in runs.items():
        sent = statistics.median(r["sent"] for r in results) / size
        secs = statistics.median(r["seconds"] for r in results)
        out[mode] = {"sent_per_byte": sent, "seconds": secs, "runs": results}
        print(f"{mode:8} {sent:10.3f} {secs:9.2f} {args.size_mib / secs:8.2f}")
    ratio_sent = out["relay"]["sent_per_byte"] / out["direct"]["sent_per_byte"]
    ratio_time = out["relay"]["seconds"] / out["direct"]["seconds"]
    out["relay_over_direct"] = {"sent": ratio_sent, "seconds": ratio_time}
    print(f"relay / direct: bytes sent {ratio_sent:.3f}x, time {ratio_time:.3f}x")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
