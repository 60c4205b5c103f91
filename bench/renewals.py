"""SUI gas and WAL of a year of renewals, blobs in one storage pool against owned Blobs, for
volumes of 1,000 and 100,000 files: measured transactions on a devnet, scaled by count.

    .venv/bin/python bench/wal.py --renewals [--n-shards 100] [--file-kib 4]
                                            [--renew-epochs 10] [--json F]

Measured in one run against a fresh devnet (`walrusfs devnet up`), with quilts of the size
the mount makes from FILE-KIB files (k_s - 1 patches each):
- owned: B such blobs stored as owned Blobs, each extended by one epoch with `extend_blob`:
  the gas of one extension (median) and the WAL it paid;
- pool: the same B blobs in a storage pool, and then 4B, the pool extended by one epoch with
  `extend_storage_pool`: the gas of one extension at each pool size (it does not grow with
  the blobs) and the WAL it paid.

A year is 26 epochs (mainnet's epoch is 14 days); the volume renews by RENEW-EPOCHS at a time
(the mount's default), so it renews 26 / RENEW-EPOCHS times a year. Owned: each renewal is one
`extend_blob` per blob, each blob paying for its own encoded size rounded up to 1 MiB units;
pool: each renewal is one `extend_storage_pool`, paying for the pool's capacity (the blobs'
encoded bytes plus the 10% spare the renewal keeps: walrusfs/fs/pool.py POOL_SPARE). WAL per
epoch is the devnet's storage price (the same formula as mainnet's; mainnet's price differs).
Gas is the stand-in's (computation + storage - rebate, in MIST at the devnet's gas price).
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from chain.client import WalrusChain
from chain.pricing import format_wal
from codec.params import EncodingParams, storage_units
from walrusfs import logs
from walrusfs.devnet.launcher import Devnet
from walrusfs.fs.pool import POOL_SPARE
from walrusfs.store.client import WalrusStore

ROOT = Path(__file__).resolve().parents[1]
EPOCHS_PER_YEAR = 26
BLOBS = 6  # owned Blobs extended one by one (and the pool's first size)


@dataclass(frozen=True)
class Measured:
    owned_gas: int  # MIST of one extend_blob
    owned_wal: int  # FROST of one extend_blob by one epoch
    pool_gas: tuple[int, int]  # MIST of one extend_storage_pool at BLOBS and 4 x BLOBS blobs
    pool_wal: tuple[int, int]  # FROST of that extension by one epoch
    storage_price: int
    quilt_size: int
    encoded: int


async def measure(chain: WalrusChain, quilt_size: int) -> Measured:
    store = WalrusStore(chain, deadline=30.0, grace=0.5)
    rng = random.Random(7)
    try:
        owned_gas, owned_wal = [], []
        for _ in range(BLOBS):
            r = await store.store(rng.randbytes(quilt_size), 3)
            paid, tx = await chain.extend_blob(r.object_id, 1)
            owned_gas.append(tx.gas_used)
            owned_wal.append(paid)
        pool, _ = await store.create_pool(1 << 20, 3)
        pool_gas, pool_wal = [], []
        for count in (BLOBS, 4 * BLOBS):
            while (await chain.pools.get(pool)).blob_count < count:
                await store.store(rng.randbytes(quilt_size), 3, pool=pool)
            paid, tx = await chain.pools.extend(pool, 1)
            pool_gas.append(tx.gas_used)
            pool_wal.append(paid)
        info = await chain.system_info()
        return Measured(
            int(statistics.median(owned_gas)),
            int(statistics.median(owned_wal)),
            (pool_gas[0], pool_gas[1]),
            (pool_wal[0], pool_wal[1]),
            info.storage_price,
            quilt_size,
            EncodingParams(info.n_shards).encoded_size(quilt_size),
        )
    finally:
        await store.close()


def year(m: Measured, files: int, patches: int, renew_epochs: int) -> dict[str, Any]:
    """A year of renewals of `files` files quilted `patches` to a blob."""
    blobs = math.ceil(files / patches)
    renewals = EPOCHS_PER_YEAR / renew_epochs
    owned_units = blobs * storage_units(m.encoded)
    pool_units = storage_units(int(blobs * m.encoded * (1 + POOL_SPARE)))
    return {
        "files": files,
        "blobs": blobs,
        "owned": {
            "transactions": round(blobs * renewals),
            "gas_mist": round(blobs * renewals * m.owned_gas),
            "wal_frost": owned_units * m.storage_price * EPOCHS_PER_YEAR,
        },
        "pool": {
            "transactions": round(renewals),
            "gas_mist": round(renewals * max(m.pool_gas)),
            "wal_frost": pool_units * m.storage_price * EPOCHS_PER_YEAR,
        },
    }


def run(n_shards: int, file_kib: int, renew_epochs: int, json_out: Path | None) -> None:
    logs.quiet_libraries()  # pysui logs an expected NOT_FOUND (a pool entry looked up)
    home = Path(tempfile.mkdtemp(prefix="walrusfs-renewbench-"))
    env = dict(os.environ, WALRUSFS_HOME=str(home), PYTHONPATH=str(ROOT))
    cli = [sys.executable, "-m", "walrusfs.cli"]
    subprocess.run([*cli, "devnet", "up", "--n-shards", str(n_shards)], env=env, check=True)
    params = EncodingParams(n_shards)
    patches = params.k_s - 1  # what the mount puts in one quilt (walrusfs/fs/uploader.py)
    quilt_size = patches * (file_kib << 10)
    try:
        devnet = Devnet(home / "data")

        async def go() -> Measured:
            chain = WalrusChain(devnet.spec().profile(), devnet.wallet().active)
            try:
                return await measure(chain, quilt_size)
            finally:
                await chain.close()

        m = trio.run(go)
    finally:
        subprocess.run([*cli, "devnet", "down"], env=env, check=False)
    print(
        f"# devnet {n_shards} shards; quilts of {patches} files of {file_kib} KiB "
        f"({quilt_size} B, {m.encoded} B encoded); one renewal per {renew_epochs} epochs, "
        f"{EPOCHS_PER_YEAR} epochs a year"
    )
    print(
        f"# measured: extend_blob {m.owned_gas} MIST gas, {format_wal(m.owned_wal)} per epoch; "
        f"extend_storage_pool {m.pool_gas[0]} MIST at {BLOBS} blobs, {m.pool_gas[1]} MIST at "
        f"{4 * BLOBS} blobs, {format_wal(m.pool_wal[0])} and {format_wal(m.pool_wal[1])} per "
        "epoch"
    )
    print(f"{'files':>8} {'blobs':>6} {'':>6} {'tx/year':>8} {'SUI gas/year':>14} {'WAL/year':>18}")
    rows = []
    for files in (1_000, 100_000):
        y = year(m, files, patches, renew_epochs)
        rows.append(y)
        for kind in ("owned", "pool"):
            r = y[kind]
            print(
                f"{files:>8} {y['blobs']:>6} {kind:>6} {r['transactions']:>8} "
                f"{r['gas_mist'] / 1e9:>14.6f} {format_wal(r['wal_frost']):>18}"
            )
        o, p = y["owned"], y["pool"]
        print(
            f"{'':>8} {'':>6} {'ratio':>6} {o['transactions'] / p['transactions']:>7.0f}x "
            f"{o['gas_mist'] / p['gas_mist']:>13.1f}x {o['wal_frost'] / p['wal_frost']:>17.2f}x"
        )
    if json_out is not None:
        json_out.write_text(json.dumps({"measured": m.__dict__, "years": rows}, indent=1))
