"""WAL spent by a store-delete-store cycle of small files through the mount, measured on the
wallet's balance in one run against a devnet.

    .venv/bin/python bench/wal.py [--files 1000] [--file-kib 4] [--n-shards 100] [--epochs 10]

Phases (each ends with `walrusfs sync`, and waits until the deleted blobs are gone on chain):
1. store FILES new files (quilted);
2. delete them all: their quilts are deleted and the Storage goes back to the wallet;
3. store FILES other files: they reuse that Storage, so only write fees are paid;
4. delete all but 1 in 100: the sparse quilts are compacted (their live files re-quilted);
5. store FILES other files again.

Printed per phase: WAL paid (balance before - after), WAL per file; the baseline row is what
FILES blobs of one file each would cost at the same prices (`WalrusChain.estimate`, no
Storage to reuse). Ratios are against phase 1. Gas is SUI and not counted.

    .venv/bin/python bench/wal.py --renewals [--n-shards 100] [--file-kib 4] [--renew-epochs 10]

prints instead the SUI gas and WAL of a year of renewals, blobs in one storage pool against
owned Blobs, for 1,000 and 100,000 files (bench/renewals.py says how).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

from bench import renewals  # noqa: E402
from chain.client import WalrusChain  # noqa: E402
from chain.pricing import format_wal, store_cost  # noqa: E402
from codec.params import EncodingParams  # noqa: E402
from walrusfs import logs  # noqa: E402
from walrusfs.devnet.launcher import Devnet  # noqa: E402


class Bench:
    def __init__(self, home: Path, n_shards: int, epochs: int) -> None:
        self.home = home
        self.mnt = home / "mnt"
        self.env = dict(os.environ, WALRUSFS_HOME=str(home), PYTHONPATH=str(ROOT))
        self.cli("devnet", "up", "--n-shards", str(n_shards))
        self.devnet = Devnet(home / "data")
        self.mnt.mkdir()
        self.cli("mount", str(self.mnt), "--upload-delay", "0.5", "--epochs", str(epochs))
        self.volume_id = self.status()["volume_id"]

    def cli(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "walrusfs.cli", *args],
            env=self.env,
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.cli("status", str(self.mnt), "--json")))

    def chain_call(self, fn: Any) -> Any:
        async def go() -> Any:
            chain = WalrusChain(self.devnet.spec().profile(), self.devnet.wallet().active)
            try:
                return await fn(chain)
            finally:
                await chain.close()

        return trio.run(go)

    def wal(self) -> int:
        async def fn(chain: WalrusChain) -> int:
            return (await chain.balances()).wal

        return int(self.chain_call(fn))

    def content_blobs(self) -> int:
        async def fn(chain: WalrusChain) -> int:
            blobs = await chain.blobs()
            attrs = await chain.attributes_of([b.id for b in blobs])
            return sum(
                1
                for a in attrs.values()
                if a.get("walrusfs:volume") == self.volume_id
                and a.get("walrusfs:kind") != "checkpoint"
            )

        return int(self.chain_call(fn))

    def one_blob_per_file(self, size: int, epochs: int) -> int:
        async def fn(chain: WalrusChain) -> int:
            info = await chain.system_info()
            encoded = EncodingParams(info.n_shards).encoded_size(size)
            return store_cost(encoded, epochs, info.storage_price, info.write_price).total

        return int(self.chain_call(fn))

    def settle(self, live: int) -> None:
        """Wait until only `live` content blobs of the volume are left on chain."""
        deadline = time.monotonic() + 300
        while self.content_blobs() > live and time.monotonic() < deadline:
            time.sleep(2)

    def close(self) -> None:
        subprocess.run(
            ["fusermount3", "-u", "-z", str(self.mnt)], check=False, stderr=subprocess.DEVNULL
        )
        self.cli("devnet", "down")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--file-kib", type=int, default=4)
    ap.add_argument("--n-shards", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument(
        "--renewals", action="store_true", help="a year of renewals, pool against owned Blobs"
    )
    ap.add_argument("--renew-epochs", type=int, default=10, help="epochs added per renewal")
    args = ap.parse_args()
    logs.quiet_libraries()  # pysui logs an expected NOT_FOUND (a pool entry looked up)
    if args.renewals:
        renewals.run(args.n_shards, args.file_kib, args.renew_epochs, args.json)
        return
    size = args.file_kib << 10
    home = Path(tempfile.mkdtemp(prefix="walrusfs-walbench-"))
    b = Bench(home, args.n_shards, args.epochs)
    rows: list[tuple[str, int, int]] = []  # phase, WAL, files
    try:

        def phase(name: str, files: int, action: Any, live_after: int | None = None) -> None:
            before = b.wal()
            t0 = time.perf_counter()
            action()
            b.cli("sync", str(b.mnt))
            if live_after is not None:
                b.settle(live_after)
            paid = before - b.wal()
            rows.append((name, paid, files))
            print(f"# {name}: {format_wal(paid)} in {time.perf_counter() - t0:.1f} s", flush=True)

        def store(prefix: str) -> None:
            d = b.mnt / prefix
            d.mkdir()
            for i in range(args.files):
                (d / f"{i:05d}").write_bytes(os.urandom(size))

        def delete(prefix: str, keep_every: int = 0) -> None:
            for i in range(args.files):
                if keep_every and i % keep_every == keep_every // 2:
                    continue
                (b.mnt / prefix / f"{i:05d}").unlink()

        phase("1 store", args.files, lambda: store("a"))
        phase("2 delete all", 0, lambda: delete("a"), live_after=0)
        phase("3 store again", args.files, lambda: store("b"))
        quilts = b.content_blobs()
        phase("4 delete 99%", 0, lambda: delete("b", 100), live_after=1)
        phase("5 store again", args.files, lambda: store("c"))
        compacted = b.status()["uploaded"]["compacted_quilts"]
        single = b.one_blob_per_file(size, args.epochs) * args.files
    finally:
        b.close()
        shutil.rmtree(home, ignore_errors=True)
    first = rows[0][1]
    print(
        f"# {args.files} files of {args.file_kib} KiB, {args.epochs} epochs, devnet "
        f"{args.n_shards} shards; {quilts} quilts per {args.files} files; "
        f"{compacted} quilts compacted in phase 4"
    )
    print(f"{'phase':<28} {'WAL':>14} {'WAL/file':>12} {'vs phase 1':>10}")
    for name, paid, files in rows:
        per = format_wal(paid // files) if files else "-"
        print(f"{name:<28} {format_wal(paid):>14} {per:>12} {paid / first:>9.2f}x")
    name = "baseline: one blob per file"
    print(
        f"{name:<28} {format_wal(single):>14} {format_wal(single // args.files):>12} "
        f"{single / first:>9.2f}x"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": rows,
                    "quilts": quilts,
                    "compacted": compacted,
                    "one_blob_per_file": single,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
