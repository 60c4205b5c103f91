"""Codec throughput at n_shards=1000: our API against the raw engine and the official wasm.

    python bench/codec.py [--sizes 1,64,256] [--repeat 3] [--no-oracle] [--json FILE]

Every number is measured in this run, and each row is reported as a ratio to its baseline from
the same run, so the result does not depend on how fast this machine happens to be:

- encode: `codec.encode` plus one walk over `iter_pairs()` (what an upload does) vs raw
  `pysui_fastcrypto.redstuff_encode` plus reading every sliver out of its result: both hand
  the caller all 2n sliver bodies, so this is the like-for-like pair (overhead target <= 10%);
  also `codec.encode` alone vs the bare engine call (slivers left inside the engine); and vs
  the official wasm encoder (`@mysten/walrus-wasm` via shared/tools/oracle, its in-process
  `encode_ms`, so node start-up is not counted; target >= 4x at 64 MiB);
- decode: `codec.decode` (every sliver verified, then decoded, plus Walrus' consistency check)
  vs raw `redstuff_decode_and_verify` (the engine's verified decode, the like-for-like
  baseline), and vs raw unverified `redstuff_decode`, from two sliver sets: the k_p systematic
  primary slivers (what the read path fetches first) and a random k_p subset (nodes down);
- concurrency: two 64 MiB blobs encoded at once by a pool of two long-lived worker threads vs
  one blob in that pool (target >= 1.6x on 2 cores);
- peak RSS of a fresh process that holds the blob, encodes it once, walks all sliver pairs once
  (as an upload does) keeping a random k_p primary subset, and decodes from that subset; as a
  multiple of the blob size.

Each measurement is the best of `--repeat` runs after one warm-up, in a fresh worker process per
size. Workers apply `codec.tune_allocator()`, as the `walrusfs` command does at start-up, so the
engine and our API are measured under the allocator settings the product runs with.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pysui_fastcrypto as fc  # noqa: E402

import codec  # noqa: E402
from tests.tools.oracle import install_oracle, node_available  # noqa: E402

N_SHARDS = 1000
MIB = 1 << 20


def rand_data(seed: int, size: int) -> bytes:
    """Deterministic incompressible bytes; `randbytes` alone overflows above 256 MiB."""
    rng = random.Random(seed)
    chunk = 64 * MIB
    return b"".join(rng.randbytes(min(chunk, size - i)) for i in range(0, size, chunk))


def best(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up: page in the allocator's arenas, load code
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def worker(size_mib: int, repeat: int, concurrency: bool) -> dict[str, Any]:
    size = size_mib * MIB
    rng = random.Random(size_mib)
    data = rand_data(size_mib, size)
    mb = size / 1e6
    out: dict[str, Any] = {"size_mib": size_mib}

    def raw_read() -> None:
        result = fc.redstuff_encode(data, N_SHARDS)
        bodies = [(p.primary, p.secondary) for p in result.slivers]
        del result, bodies

    def ours_read() -> None:
        enc = codec.encode(data, N_SHARDS)
        bodies = [(p.primary.bcs, p.secondary.bcs) for p in enc.iter_pairs()]
        del enc, bodies

    def raw_bare() -> None:
        fc.redstuff_encode(data, N_SHARDS)

    def ours_bare() -> None:
        codec.encode(data, N_SHARDS)

    runs = {"raw_read": raw_read, "ours_read": ours_read, "bare": raw_bare, "ours": ours_bare}
    times = dict.fromkeys(runs, float("inf"))
    for fn in runs.values():
        fn()  # warm-up
    for _ in range(repeat):  # interleave so drift hits all alike
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[name] = min(times[name], time.perf_counter() - t)
    out["encode_read_ours_mbs"] = mb / times["ours_read"]
    out["encode_read_raw_mbs"] = mb / times["raw_read"]
    out["encode_ours_mbs"] = mb / times["ours"]
    out["encode_bare_mbs"] = mb / times["bare"]

    enc = codec.encode(data, N_SHARDS)
    meta = enc.verified_metadata()
    k_p = enc.params.k_p
    subsets = {
        "systematic": [enc.pairs[i].primary for i in range(k_p)],
        "random": [enc.pairs[i].primary for i in rng.sample(range(N_SHARDS), k_p)],
    }
    for name, slivers in subsets.items():
        # fresh, unverified Sliver objects: our decode must verify every one of them
        fresh = [codec.Sliver(s.bcs, s.axis) for s in slivers]
        bodies = [s.bcs for s in slivers]
        assert codec.decode(fresh, meta) == data
        t_ours = best(partial(codec.decode, fresh, meta), repeat)
        t_rv = best(partial(fc.redstuff_decode_and_verify, bodies, meta.handle, "primary"), repeat)
        t_ru = best(partial(fc.redstuff_decode, bodies, size, N_SHARDS, "primary"), repeat)
        out[f"decode_{name}_ours_mbs"] = mb / t_ours
        out[f"decode_{name}_raw_verified_mbs"] = mb / t_rv
        out[f"decode_{name}_raw_unverified_mbs"] = mb / t_ru

    if concurrency:
        # Long-lived worker threads, as trio.to_thread's thread cache gives the mount.
        other = rand_data(size_mib + 1, size)
        with ThreadPoolExecutor(max_workers=2) as pool:

            def one() -> None:
                pool.submit(codec.encode, data, N_SHARDS).result()

            def two() -> None:
                futures = [pool.submit(codec.encode, d, N_SHARDS) for d in (data, other)]
                for f in futures:
                    f.result()

            out["concurrent_two_vs_one"] = 2 * best(one, repeat) / best(two, repeat)
    return out


def rss_worker(size_mib: int) -> dict[str, Any]:
    """Peak RSS of the realistic sequence: hold the blob, encode it, upload-walk, decode once."""
    rng = random.Random(size_mib)
    data = rand_data(size_mib, size_mib * MIB)
    enc = codec.encode(data, N_SHARDS)
    meta = enc.verified_metadata()
    keep = set(rng.sample(range(N_SHARDS), enc.params.k_p))
    # walk every pair once, as an upload does, keeping only what a later read would fetch
    chosen = [pair.primary for pair in enc.iter_pairs() if pair.pair_index in keep]
    del enc
    assert codec.decode(chosen, meta) == data
    return {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def oracle_encode_mbs(oracle: Path, size_mib: int) -> float | None:
    data = rand_data(size_mib, size_mib * MIB)
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(data)
        f.flush()
        proc = subprocess.run(
            ["node", "blob_id.mjs", f.name, str(N_SHARDS)],
            cwd=oracle,
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
    if proc.returncode != 0:
        print(f"  oracle failed at {size_mib} MiB: {proc.stderr.strip()[:200]}", file=sys.stderr)
        return None
    result = json.loads(proc.stdout)
    expected = str(codec.encode(data, N_SHARDS).blob_id)
    if result["blob_id"] != expected:
        raise SystemExit(f"oracle blob ID {result['blob_id']} != ours {expected}")
    return len(data) / 1e6 / (float(result["encode_ms"]) / 1000)


def run_worker(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, *args], check=False, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark worker {args} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def report(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"codec benchmark, n_shards={N_SHARDS}, {os.cpu_count()} cores "
        "(MB/s of blob bytes; ratios are ours / baseline from this run)",
        "",
    ]
    head = f"{'size':>8} {'op':<28} {'ours':>8} {'baseline':>9} {'ratio':>7}  baseline"
    lines += [head, "-" * len(head)]

    def row(size: int, op: str, ours: float, base: float | None, name: str) -> None:
        ratio = f"{ours / base:6.2f}x" if base else "     - "
        base_s = f"{base:9.1f}" if base else "        -"
        lines.append(f"{size:>5} MiB {op:<28} {ours:8.1f} {base_s} {ratio}  {name}")

    for r in rows:
        s = r["size_mib"]
        row(
            s,
            "encode + read slivers",
            r["encode_read_ours_mbs"],
            r["encode_read_raw_mbs"],
            "raw redstuff_encode + read all slivers",
        )
        row(
            s,
            "encode (slivers not read)",
            r["encode_ours_mbs"],
            r["encode_bare_mbs"],
            "bare redstuff_encode",
        )
        row(
            s,
            "encode + read slivers",
            r["encode_read_ours_mbs"],
            r.get("oracle_encode_mbs"),
            "official wasm encoder",
        )
        for subset in ("systematic", "random"):
            ours = r[f"decode_{subset}_ours_mbs"]
            row(
                s,
                f"decode ({subset} k_p)",
                ours,
                r[f"decode_{subset}_raw_verified_mbs"],
                "raw redstuff_decode_and_verify",
            )
            row(
                s,
                f"decode ({subset} k_p)",
                ours,
                r[f"decode_{subset}_raw_unverified_mbs"],
                "raw redstuff_decode (no verification)",
            )
        if "concurrent_two_vs_one" in r:
            lines.append(
                f"{s:>5} MiB {'2 concurrent encodes / 1':<28} "
                f"{r['concurrent_two_vs_one']:>27.2f}x  target >= 1.6x"
            )
        lines.append(
            f"{s:>5} MiB {'peak RSS':<28} {r['peak_rss_mib']:8.0f} MiB "
            f"= {r['peak_rss_mib'] / s:.1f}x the blob"
        )
    lines.append("")
    checks = []
    for r in rows:
        overhead = r["encode_read_raw_mbs"] / r["encode_read_ours_mbs"] - 1
        checks.append(
            (
                f"encode overhead over raw at {r['size_mib']} MiB <= 10%",
                overhead <= 0.10,
                f"{overhead * 100:+.1f}%",
            )
        )
        dec = r["decode_random_raw_verified_mbs"] / r["decode_random_ours_mbs"] - 1
        checks.append(
            (
                f"verified decode overhead over raw at {r['size_mib']} MiB <= 10%",
                dec <= 0.10,
                f"{dec * 100:+.1f}%",
            )
        )
        if r["size_mib"] == 64:
            if r.get("oracle_encode_mbs"):
                ratio = r["encode_read_ours_mbs"] / r["oracle_encode_mbs"]
                checks.append(
                    ("encode >= 4x the wasm oracle at 64 MiB", ratio >= 4, f"{ratio:.2f}x")
                )
            if "concurrent_two_vs_one" in r:
                c = r["concurrent_two_vs_one"]
                checks.append(("two concurrent encodes >= 1.6x one", c >= 1.6, f"{c:.2f}x"))
    for name, ok, value in checks:
        lines.append(f"[{'PASS' if ok else 'MISS'}] {name}: {value}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,64,256", help="blob sizes in MiB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-oracle", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rss-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker is not None or args.rss_worker is not None:
        codec.tune_allocator()
        if args.rss_worker is not None:
            print(json.dumps(rss_worker(args.rss_worker)))
        else:
            print(json.dumps(worker(args.worker, args.repeat, args.concurrency)))
        return 0

    sizes = [int(s) for s in args.sizes.split(",")]
    oracle = None
    if not args.no_oracle and node_available():
        oracle = install_oracle(ROOT / "bench" / "out" / "oracle")
    rows = []
    for size in sizes:
        print(f"measuring {size} MiB ...", file=sys.stderr)
        flags = ["--concurrency"] if size == 64 else []
        r = run_worker("--worker", str(size), "--repeat", str(args.repeat), *flags)
        r.update(run_worker("--rss-worker", str(size)))
        if oracle is not None:
            r["oracle_encode_mbs"] = oracle_encode_mbs(oracle, size)
        rows.append(r)
    print("\n".join(report(rows)))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
