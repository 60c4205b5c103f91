"""WAL per GiB stored, by file size: what walrusfs pays (measured on the wallet's balance)
against one blob per file (the chain's price for each file as its own blob), in one run
against a devnet.

    .venv/bin/python bench/wal_size.py [--sizes 4K,64K,1M,16M,256M] [--total 32M]
                                       [--n-shards 1000] [--epochs 10] [--json F]

For each size, files of that size adding up to TOTAL (at least one file) are written into a
fresh encrypted volume and synced; WAL paid = balance before - after (storage + write fees;
gas is SUI and not counted), scaled to one GiB of file data. The baseline is
`walrusfs cost`'s one-blob-per-file total for the same tree (docs/guides.md: it equals what
`walrusfs blob store` pays, tests/test_product.py). Small files are where quilting matters:
every blob pays for its metadata (64 bytes x 2 per shard, whatever its size) and a write fee.
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

from bench.provenance import provenance  # noqa: E402
from chain.pricing import format_wal  # noqa: E402
from walrusfs.validate import parse_size  # noqa: E402

GiB = 1 << 30


def cli(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "walrusfs.cli", *args],
        env=env,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout


def wal(env: dict[str, str]) -> int:
    return int(json.loads(cli(env, "wallet", "--json"))["wal"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="4K,64K,1M,16M,256M")
    ap.add_argument("--total", default="32M", help="bytes of files per size (default 32M)")
    ap.add_argument("--n-shards", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    made = provenance()
    total = parse_size(args.total)
    home = Path(tempfile.mkdtemp(prefix="walrusfs-walsize-", dir="/var/tmp"))
    env = dict(os.environ, WALRUSFS_HOME=str(home), PYTHONPATH=str(ROOT))
    rows: list[dict[str, Any]] = []
    try:
        cli(env, "devnet", "up", "--n-shards", str(args.n_shards))
        for text in args.sizes.split(","):
            size = parse_size(text)
            count = max(1, total // size)
            src = home / "src" / text
            src.mkdir(parents=True)
            for i in range(count):
                (src / f"{i:06d}").write_bytes(os.urandom(size))
            cost = json.loads(cli(env, "cost", str(src), "--epochs", str(args.epochs), "--json"))
            mnt = home / "mnt"
            mnt.mkdir(exist_ok=True)
            before = wal(env)
            t0 = time.perf_counter()
            cli(
                env,
                "mount",
                str(mnt),
                "--volume",
                f"v{text}",
                "--upload-delay",
                "0.5",
                "--epochs",
                str(args.epochs),
                "--checkpoint-interval",
                "86400",
            )
            subprocess.run(["cp", "-r", str(src), str(mnt / text)], check=True)
            cli(env, "sync", str(mnt))
            st = json.loads(cli(env, "status", str(mnt), "--json"))
            # the data's WAL: what the uploads paid; the balance also paid the metadata
            # checkpoint that sync takes (once per sync, whatever was written)
            paid = int(st["uploaded"]["wal_spent"])
            balance_paid = before - wal(env)
            cli(env, "umount", str(mnt))
            data = size * count
            row = {
                "size": text,
                "bytes": size,
                "files": count,
                "data_bytes": data,
                "walrusfs_wal": paid,
                "balance_paid": balance_paid,
                "one_blob_per_file_wal": cost["one_blob_per_file"]["total"],
                "blobs": st["uploaded"]["blobs"],
                "quilts": st["uploaded"]["quilts"],
                "seconds": time.perf_counter() - t0,
            }
            row["walrusfs_per_gib"] = paid * GiB / data
            row["one_blob_per_file_per_gib"] = row["one_blob_per_file_wal"] * GiB / data
            rows.append(row)
            print(
                f"# {text}: {count} files, {format_wal(paid)} paid for data, "
                f"{format_wal(balance_paid - paid)} for the checkpoint, "
                f"{row['blobs']} blob(s) + {row['quilts']} quilt(s)",
                flush=True,
            )
            shutil.rmtree(src)
    finally:
        subprocess.run(
            ["fusermount3", "-u", "-z", str(home / "mnt")], check=False, stderr=subprocess.DEVNULL
        )
        subprocess.run(
            [sys.executable, "-m", "walrusfs.cli", "devnet", "down"],
            env=env,
            check=False,
            stdout=subprocess.DEVNULL,
        )
        shutil.rmtree(home, ignore_errors=True)
    print(
        f"# WAL per GiB of file data for {args.epochs} epochs, devnet {args.n_shards} shards "
        "(encrypted volume; storage + write fees)"
    )
    print(f"{'file size':>10} {'files':>7} {'walrusfs':>18} {'one blob per file':>18} {'ratio':>7}")
    for r in rows:
        print(
            f"{r['size']:>10} {r['files']:>7} {format_wal(int(r['walrusfs_per_gib'])):>18} "
            f"{format_wal(int(r['one_blob_per_file_per_gib'])):>18} "
            f"{r['one_blob_per_file_per_gib'] / r['walrusfs_per_gib']:>6.1f}x"
        )
    print("# ratio: what one blob per file costs over what walrusfs pays (higher: quilting saves)")
    if args.json:
        args.json.write_text(
            json.dumps(
                {**made, "epochs": args.epochs, "n_shards": args.n_shards, "rows": rows}, indent=1
            )
        )


if __name__ == "__main__":
    main()
