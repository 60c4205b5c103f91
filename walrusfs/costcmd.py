"""`walrusfs cost PATH...`: what storing files costs in WAL, the way the mount stores them
(chunks of 64 MiB, small files quilted, encrypted unless --public, in a storage pool unless
--no-storage-pool) versus one blob per file, at the network's current prices. Nothing is
uploaded or signed.

The price of a blob is `storage_units(encoded_size) x (storage_price x epochs + write_price)`
(docs/formats.md, cost model), and the encoded size has a floor of n_shards x metadata: that
floor is why many small files cost far less in one quilt than as one blob each. In a storage
pool, storage is bought for the pool's capacity (the blobs' encoded sizes summed, then rounded
up to units) and each blob pays its write fee.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import codec
from chain.pricing import format_wal, reserve_cost, store_cost
from walrusfs import settings
from walrusfs.clihelpers import open_chain, run_async
from walrusfs.errors import InputError, UsageError
from walrusfs.fs import crypto
from walrusfs.fs.defaults import DEFAULTS
from walrusfs.fs.options import CHUNK_SIZE, UploadConfig, largest_chunk
from walrusfs.fs.pool import INITIAL_CAPACITY
from walrusfs.fs.quilts import quilt_batches, quilt_blob_size, quilt_candidate


@dataclass
class Plan:
    blobs: int = 0  # Walrus blobs (a quilt counts as one)
    quilts: int = 0
    unencoded: int = 0  # bytes stored (sealed and padded as stored)
    encoded: int = 0  # bytes paid for on the nodes
    storage: int = 0  # FROST
    write: int = 0  # FROST

    @property
    def total(self) -> int:
        return self.storage + self.write

    def add(
        self, size: int, params: codec.EncodingParams, prices: tuple[int, int], epochs: int
    ) -> None:
        encoded = params.encoded_size(size)
        cost = store_cost(encoded, epochs, prices[0], prices[1])
        self.blobs += 1
        self.unencoded += size
        self.encoded += encoded
        self.storage += cost.storage
        self.write += cost.write


def files_of(paths: list[str]) -> list[tuple[str, int]]:
    """(path, size) of every regular file under the arguments (symlinks are not followed).

    Raises:
        InputError: an argument is neither a file, a symlink nor a directory.
    """
    out: list[tuple[str, int]] = []
    for arg in paths:
        p = Path(arg)
        if p.is_symlink() or p.is_file():
            if p.is_file() and not p.is_symlink():
                out.append((arg, p.stat().st_size))
            continue
        if not p.is_dir():
            raise InputError(f"{arg}: no such file or directory")
        for dirpath, _, names in os.walk(p):
            for name in names:
                f = Path(dirpath) / name
                if f.is_file() and not f.is_symlink():
                    out.append((str(f), f.stat().st_size))
    return out


def plan(
    sizes: list[int],
    params: codec.EncodingParams,
    prices: tuple[int, int],
    epochs: int,
    *,
    chunk_size: int,
    quilt_threshold: int,
    encrypted: bool,
    pooled: bool = False,
) -> tuple[Plan, Plan]:
    """(as walrusfs stores them, one blob per file).

    Args:
        sizes: the files' sizes in bytes.
        prices: (storage price per epoch, write price) in FROST per MiB unit.
        chunk_size, quilt_threshold: bytes, as a volume uses them: what is chunked, what is
            quilted.
        encrypted: chunks are priced as sealed (a header and a tag per segment more).
        pooled: in one storage pool: storage for the summed encoded size (at least the
            pool's first unit), a write fee per blob.
    """
    sealed = crypto.sealed_size if encrypted else (lambda n: n)
    ours, single = Plan(), Plan()
    small: list[tuple[int, int]] = []
    for i, size in enumerate(sizes):
        # one blob per file, as `walrus store` would (files over the maximum: in chunks)
        for start in range(0, max(size, 1), params.max_blob_size):
            single.add(min(params.max_blob_size, size - start), params, prices, epochs)
        if size == 0:
            continue  # an empty file needs no blob
        if size <= chunk_size and quilt_candidate(size, quilt_threshold, params):
            small.append((i, size))
            continue
        for start in range(0, size, chunk_size):
            ours.add(sealed(min(chunk_size, size - start)), params, prices, epochs)
    for _, batch_sizes in quilt_batches(small, params):
        ours.add(quilt_blob_size(batch_sizes, params), params, prices, epochs)
        ours.quilts += 1
    if pooled:
        ours.storage = reserve_cost(max(INITIAL_CAPACITY, ours.encoded), epochs, prices[0])
    return ours, single


def cmd_cost(args: argparse.Namespace) -> int:
    """What storing PATHs costs in WAL for N epochs: quilted and chunked as walrusfs stores
    them, versus one blob per file (current prices; nothing is uploaded)."""
    if args.epochs < 1:
        raise UsageError("--epochs must be at least 1")
    found = files_of(args.paths)

    async def go() -> int:
        async with open_chain() as chain:
            info = await chain.system_info()
        if args.epochs > info.max_epochs_ahead:
            raise UsageError(f"--epochs: at most {info.max_epochs_ahead} ahead on this network")
        params = codec.EncodingParams(info.n_shards)
        chunk = min(CHUNK_SIZE, largest_chunk(params, encrypted=not args.public))
        ours, single = plan(
            [size for _, size in found],
            params,
            (info.storage_price, info.write_price),
            args.epochs,
            chunk_size=chunk,
            quilt_threshold=UploadConfig().quilt_threshold,
            encrypted=not args.public,
            pooled=settings.current().mount.storage_pool
            if args.storage_pool is None
            else args.storage_pool,
        )
        total = sum(size for _, size in found)
        if args.json:
            out: dict[str, Any] = {
                "files": len(found),
                "bytes": total,
                "epochs": args.epochs,
                "epoch": info.epoch,
                "n_shards": info.n_shards,
                "storage_price": info.storage_price,
                "write_price": info.write_price,
                "walrusfs": {**asdict(ours), "total": ours.total},
                "one_blob_per_file": {**asdict(single), "total": single.total},
            }
            print(json.dumps(out, indent=2))
            return 0
        print(
            f"{len(found)} file(s), {total} bytes, for {args.epochs} epoch(s) from epoch "
            f"{info.epoch} ({info.n_shards} shards)"
        )
        for label, p in (("as walrusfs stores them", ours), ("one blob per file", single)):
            print(
                f"{label:<24} {format_wal(p.total):>20}  {p.blobs} blob(s)"
                + (f" ({p.quilts} quilt(s))" if p.quilts else "")
                + f", {p.encoded} encoded bytes"
            )
        if single.total:
            print(
                f"walrusfs pays {ours.total / single.total:.3f}x of one blob per file"
                + ("" if args.public else " (encrypted: +43 bytes per 64 KiB)")
            )
        return 0

    return run_async(go)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("cost", help=cmd_cost.__doc__, description=cmd_cost.__doc__)
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    p.add_argument(
        "--epochs",
        type=int,
        default=DEFAULTS.epochs,
        help=f"storage epochs (default {DEFAULTS.epochs})",
    )
    p.add_argument("--public", action="store_true", help="as a --public volume (no encryption)")
    p.add_argument(
        "--storage-pool",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="as a volume in one storage pool (the default for new volumes) or of owned Blobs",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_cost)
