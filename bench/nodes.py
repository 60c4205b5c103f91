"""Storage-node throughput on a devnet at n_shards=1000: sliver PUT and GET, one node and all.

    python bench/nodes.py [--size-mib 16] [--concurrency 16] [--json FILE]

Starts `walrusfs devnet up --n-shards 1000` (4 nodes) in a temporary WALRUSFS_HOME, registers
one blob of `--size-mib` on chain, PUTs its metadata to every node, then measures:

- one node: PUT, then GET, of both slivers of every pair whose shard node-0 holds (250 pairs,
  500 requests), `--concurrency` requests in flight over one keep-alive HTTP/1.1 client;
- the whole devnet: the same for all 1000 pairs across the 4 nodes (2000 requests);
- the same, over HTTP/2 (one connection per node, streams multiplexed);
- baseline, measured in the same run: the nodes' own HTTP server (walrusfs/devnet/server.py)
  in its own process with a handler that reads each body and discards it (PUT) or returns a
  body of the same size (GET). It is the ceiling of the HTTP stack on this machine; the ratio
  is node / bare, i.e. the cost of checking registration, verifying each sliver against the
  metadata, and storing it crash-safely (checksummed record, rename, a flush per blob).

Rates are requests/s and MB/s of sliver bytes (MB = 10^6 B). Nothing here is asserted: it
prints numbers and ratios for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import trio  # noqa: E402

import codec  # noqa: E402
from chain.client import WalrusChain  # noqa: E402
from walrusfs.devnet import server  # noqa: E402
from walrusfs.devnet.http import Request, Response  # noqa: E402
from walrusfs.devnet.launcher import Devnet  # noqa: E402
from walrusfs.devnet.processes import free_port as _free_port  # noqa: E402
from walrusfs.devnet.processes import port_open as _port_open  # noqa: E402

N_SHARDS = 1000

Job = tuple[str, str, bytes | None]  # (method, url, body)


async def _run_jobs(client: httpx.AsyncClient, jobs: list[Job], concurrency: int) -> float:
    """Seconds to complete all jobs with `concurrency` in flight; every answer must be 2xx."""
    queue = list(reversed(jobs))

    async def worker() -> None:
        while queue:
            method, url, body = queue.pop()
            rsp = await client.request(method, url, content=body)
            if rsp.status_code >= 300:
                raise RuntimeError(f"{method} {url}: {rsp.status_code} {rsp.text[:200]}")
            await rsp.aread()

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    return time.perf_counter() - start


def _rate(n: int, nbytes: int, seconds: float) -> dict[str, float]:
    return {"requests_s": n / seconds, "mb_s": nbytes / seconds / 1e6, "seconds": seconds}


async def _null_handler(req: Request) -> Response:
    await req.body(1 << 30)
    size = int(req.path.rsplit("/", 1)[-1] or 0) if req.method == "GET" else 0
    return Response(200, b"\0" * size, "application/octet-stream")


def null_server(port: int) -> None:
    """The baseline server (run in a child process)."""
    trio.run(functools.partial(server.serve, _null_handler, "127.0.0.1", port))


async def bench(size_mib: int, concurrency: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="walrusfs-bench-nodes-"))
    env = dict(os.environ, WALRUSFS_HOME=str(home), PYTHONPATH=str(ROOT))
    cli = [sys.executable, "-m", "walrusfs.cli", "devnet"]
    subprocess.run([*cli, "up", "--n-shards", str(N_SHARDS)], env=env, check=True)
    devnet = Devnet(home / "data")
    null_port = _free_port()
    null = subprocess.Popen([sys.executable, __file__, "--null-server", str(null_port)], env=env)
    results: dict[str, Any] = {"size_mib": size_mib, "concurrency": concurrency}
    try:
        while not _port_open(null_port):
            if null.poll() is not None:
                raise RuntimeError("the baseline server exited; see its traceback above")
            await trio.sleep(0.05)
        spec = devnet.spec()
        chain = WalrusChain(spec.profile(), devnet.wallet().active)
        try:
            data = os.urandom(size_mib << 20)
            enc = await trio.to_thread.run_sync(codec.encode, data, N_SHARDS)
            await chain.register_blob(
                enc.blob_id.to_u256(),
                int.from_bytes(enc.root_hash, "little"),
                len(data),
                2,
                deletable=False,
            )
            members = await chain.committee()
        finally:
            await chain.close()
        owner = {s: f"http://{m.network_address}" for m in members for s in m.shards}
        node0 = f"http://{members[0].network_address}"

        def jobs(method: str, only: str | None) -> tuple[list[Job], int]:
            out: list[Job] = []
            nbytes = 0
            for shard in range(N_SHARDS):
                url = owner[shard]
                if only is not None and url != only:
                    continue
                pair = enc.pair_for_shard(shard)
                for sliver in (pair.primary, pair.secondary):
                    path = f"{url}/v1/blobs/{enc.blob_id}/slivers/{pair.pair_index}/{sliver.axis}"
                    out.append((method, path, sliver.bcs if method == "PUT" else None))
                    nbytes += len(sliver.bcs)
            return out, nbytes

        def null_jobs(real: list[Job], method: str) -> list[Job]:
            base = f"http://127.0.0.1:{null_port}"
            if method == "PUT":
                return [("PUT", f"{base}/put", body) for _, _, body in real]
            sizes = [len(s.bcs) for p in enc.iter_pairs() for s in (p.primary, p.secondary)]
            return [("GET", f"{base}/get/{sizes[i % len(sizes)]}", None) for i in range(len(real))]

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            for m in members:
                rsp = await client.put(
                    f"http://{m.network_address}/v1/blobs/{enc.blob_id}/metadata",
                    content=enc.metadata_bcs,
                )
                rsp.raise_for_status()
            for scope, only in (("one node", node0), ("devnet", None)):
                put, nbytes = jobs("PUT", only)
                get, _ = jobs("GET", only)
                row: dict[str, Any] = {"requests": len(put), "bytes": nbytes}
                row["put"] = _rate(len(put), nbytes, await _run_jobs(client, put, concurrency))
                row["get"] = _rate(len(get), nbytes, await _run_jobs(client, get, concurrency))
                row["bare_put"] = _rate(
                    len(put), nbytes, await _run_jobs(client, null_jobs(put, "PUT"), concurrency)
                )
                row["bare_get"] = _rate(
                    len(get), nbytes, await _run_jobs(client, null_jobs(get, "GET"), concurrency)
                )
                results[scope] = row
        async with httpx.AsyncClient(timeout=120, http1=False, http2=True) as h2:
            get, nbytes = jobs("GET", None)
            results["devnet http2"] = {
                "requests": len(get),
                "bytes": nbytes,
                "get": _rate(len(get), nbytes, await _run_jobs(h2, get, concurrency)),
                "bare_get": _rate(
                    len(get), nbytes, await _run_jobs(h2, null_jobs(get, "GET"), concurrency)
                ),
            }
    finally:
        null.terminate()
        null.wait()
        subprocess.run([*cli, "destroy"], env=env, check=False, capture_output=True)
    return results


def report(results: dict[str, Any]) -> str:
    lines = [
        f"storage-node benchmark, n_shards={N_SHARDS}, 4 nodes, {os.cpu_count()} cores, "
        f"blob {results['size_mib']} MiB, {results['concurrency']} requests in flight",
        "",
        f"{'scope':14} {'op':4} {'requests':>8} {'req/s':>8} {'MB/s':>8} "
        f"{'bare req/s':>10} {'bare MB/s':>9} {'ratio':>6}",
        "-" * 76,
    ]
    for scope in ("one node", "devnet", "devnet http2"):
        row = results[scope]
        for op in ("put", "get"):
            if op not in row:
                continue
            ours, bare = row[op], row[f"bare_{op}"]
            lines.append(
                f"{scope:14} {op.upper():4} {row['requests']:>8} {ours['requests_s']:>8.0f} "
                f"{ours['mb_s']:>8.1f} {bare['requests_s']:>10.0f} {bare['mb_s']:>9.1f} "
                f"{ours['requests_s'] / bare['requests_s']:>5.2f}x"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--null-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.null_server:
        null_server(args.null_server)
        return
    run: Callable[[], Awaitable[dict[str, Any]]] = lambda: bench(  # noqa: E731
        args.size_mib, args.concurrency
    )
    results = trio.run(run)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
