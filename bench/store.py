"""End-to-end store and read against a devnet at n_shards=1000, versus the codec alone.

    python bench/store.py [--size-mib 64] [--files 20] [--file-kib 4] [--repeat 3] [--json FILE]

Starts `walrusfs devnet up --n-shards 1000` (4 nodes) in a temporary WALRUSFS_HOME and measures,
all in this run:

- codec only: `codec.encode` + one walk over every sliver pair (what an upload touches), and
  `codec.decode` from the k_p systematic primary slivers (what a healthy read decodes);
- store: `WalrusStore.store` of a `--size-mib` blob (encode, register, upload 2000 slivers to
  4 nodes, confirmations, certify), MB/s of blob bytes; ratio to codec encode (target >= 0.5x);
- read: `WalrusStore.read` of the whole blob without cache (metadata, k_p slivers, verify,
  assemble), MB/s; ratio to codec decode (target >= 0.7x);
- small files: `--files` files of `--file-kib` KiB stored one blob each versus as one quilt:
  files per second and WAL per file.

Each of the four speeds is the median of `--repeat` runs (different random data for every
store), the codec's interleaved with the end-to-end ones: single runs on this machine moved by
up to 30% between runs. Client, nodes and chain share the machine's cores, so the end-to-end
numbers are a floor.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

import codec  # noqa: E402
from chain.client import WalrusChain  # noqa: E402
from chain.pricing import format_wal  # noqa: E402
from walrusfs.devnet.launcher import Devnet  # noqa: E402
from walrusfs.store.client import WalrusStore  # noqa: E402

N_SHARDS = 1000


def _codec_speeds(data: bytes) -> tuple[float, float]:
    start = time.perf_counter()
    enc = codec.encode(data, N_SHARDS)
    for pair in enc.iter_pairs():
        _ = (pair.primary.bcs, pair.secondary.bcs)
    encode_s = time.perf_counter() - start
    k = enc.params.k_p
    slivers = [enc.pair(i).primary for i in range(k)]
    meta = enc.verified_metadata()
    start = time.perf_counter()
    out = codec.decode(slivers, meta)
    decode_s = time.perf_counter() - start
    assert out == data
    return encode_s, decode_s


async def bench(size_mib: int, files: int, file_kib: int, repeat: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="walrusfs-bench-store-"))
    env = dict(os.environ, WALRUSFS_HOME=str(home), PYTHONPATH=str(ROOT))
    cli = [sys.executable, "-m", "walrusfs.cli", "devnet"]
    subprocess.run([*cli, "up", "--n-shards", str(N_SHARDS)], env=env, check=True)
    devnet = Devnet(home / "data")
    results: dict[str, Any] = {"size_mib": size_mib, "files": files, "file_kib": file_kib}
    try:
        mb = (size_mib << 20) / 1e6
        chain = WalrusChain(devnet.spec().profile(), devnet.wallet().active)
        store = WalrusStore(chain, grace=60.0)
        speeds: dict[str, list[float]] = {"encode": [], "decode": [], "store": [], "read": []}
        try:
            for _ in range(repeat):
                data = os.urandom(size_mib << 20)
                encode_s, decode_s = await trio.to_thread.run_sync(_codec_speeds, data)
                speeds["encode"].append(mb / encode_s)
                speeds["decode"].append(mb / decode_s)
                start = time.perf_counter()
                stored = await store.store(data, epochs=1)
                speeds["store"].append(mb / (time.perf_counter() - start))
                store._metadata.clear()  # as a reader that has not seen the blob
                start = time.perf_counter()
                back = await store.read(stored.blob_id, use_cache=False)
                speeds["read"].append(mb / (time.perf_counter() - start))
                assert back == data
            for key, name in (
                ("encode", "codec_encode_mb_s"),
                ("decode", "codec_decode_mb_s"),
                ("store", "store_mb_s"),
                ("read", "read_mb_s"),
            ):
                results[name] = statistics.median(speeds[key])
                results[name + "_runs"] = speeds[key]
            small = [os.urandom(file_kib << 10) for _ in range(files)]
            wal0 = (await chain.balances()).wal
            start = time.perf_counter()
            for blob in small:
                await store.store(blob, epochs=1)
            single_s = time.perf_counter() - start
            wal1 = (await chain.balances()).wal
            items = [codec.QuiltItem(f"f{i}", b) for i, b in enumerate(small)]
            start = time.perf_counter()
            await store.store_quilt(items, epochs=1)
            quilt_s = time.perf_counter() - start
            wal2 = (await chain.balances()).wal
            results["single_files_s"] = files / single_s
            results["single_wal_per_file"] = (wal0 - wal1) / files
            results["quilt_files_s"] = files / quilt_s
            results["quilt_wal_per_file"] = (wal1 - wal2) / files
        finally:
            await store.close()
            await chain.close()
    finally:
        subprocess.run([*cli, "destroy"], env=env, check=False, capture_output=True)
    return results


def report(r: dict[str, Any]) -> str:
    store_ratio = r["store_mb_s"] / r["codec_encode_mb_s"]
    read_ratio = r["read_mb_s"] / r["codec_decode_mb_s"]
    lines = [
        f"store benchmark, n_shards={N_SHARDS}, 4 nodes, {os.cpu_count()} cores, "
        f"blob {r['size_mib']} MiB, median of {len(r['store_mb_s_runs'])} runs",
        "",
        f"{'op':34} {'MB/s':>8} {'codec MB/s':>10} {'ratio':>6}  target",
        "-" * 70,
        f"{'store (encode..certify)':34} {r['store_mb_s']:>8.1f} "
        f"{r['codec_encode_mb_s']:>10.1f} {store_ratio:>5.2f}x  >= 0.5x",
        f"{'read (no cache, verify, assemble)':34} {r['read_mb_s']:>8.1f} "
        f"{r['codec_decode_mb_s']:>10.1f} {read_ratio:>5.2f}x  >= 0.7x",
        "",
        f"{r['files']} files of {r['file_kib']} KiB   files/s   WAL per file",
        f"  one blob per file        {r['single_files_s']:>8.2f}   "
        f"{format_wal(int(r['single_wal_per_file']))}",
        f"  one quilt                {r['quilt_files_s']:>8.2f}   "
        f"{format_wal(int(r['quilt_wal_per_file']))}",
        "",
        f"[{'PASS' if store_ratio >= 0.5 else 'MISS'}] store >= 0.5x codec: {store_ratio:.2f}x",
        f"[{'PASS' if read_ratio >= 0.7 else 'MISS'}] read >= 0.7x codec: {read_ratio:.2f}x",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--file-kib", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    codec.tune_allocator()
    results = trio.run(bench, args.size_mib, args.files, args.file_kib, args.repeat)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
