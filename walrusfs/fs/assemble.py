"""The parts of a mounted volume that move data, built and wired in one place.

The mount and fsck's upload of staged data run the same machinery (content, upload worker,
uploader, checkpointer, renewer): built here once, so that both wire it the same way.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path

import codec
from cache.blocks import BlockCachePlace
from cache.staging import Staging
from chain.client import WalrusChain
from walrusfs.fs import crypto, schema
from walrusfs.fs import worker_protocol as wp
from walrusfs.fs.checkpoint import Checkpointer
from walrusfs.fs.content import Content
from walrusfs.fs.lifetime import Renewer, RenewPolicy
from walrusfs.fs.options import UploadConfig
from walrusfs.fs.plans import PLANS_DIR, PlanFiles
from walrusfs.fs.pool import VolumePool
from walrusfs.fs.upload_worker import UploadWorker
from walrusfs.fs.uploader import Uploader
from walrusfs.fs.writer import WriterLease
from walrusfs.store.client import WalrusStore

#: segment cache of a volume whose memory is not bounded (fsck)
SEGMENT_BYTES = 256 << 20


@dataclass(frozen=True)
class Parts:
    content: Content
    worker: UploadWorker
    uploader: Uploader
    checkpointer: Checkpointer
    renewer: Renewer | None  # None: nothing renews blobs (fsck)


def upload_jobs(config: UploadConfig, memory_bytes: int, chunk_size: int) -> tuple[int, int]:
    """(segment cache bytes, uploads at once) within a memory bound: an encode holds ~10x its
    chunk (docs/design.md, encoding memory), next to the segment cache and the daemon."""
    segment_bytes = min(SEGMENT_BYTES, memory_bytes // 8)
    room = max(0, memory_bytes - segment_bytes - (128 << 20))
    return segment_bytes, max(1, min(config.jobs, room // (12 * chunk_size)))


def assemble(
    db: sqlite3.Connection,
    staging: Staging,
    store: WalrusStore,
    chain: WalrusChain,
    *,
    volume_dir: Path,
    params: codec.EncodingParams,
    chunk_size: int,
    keys: crypto.VolumeKeys | None,
    volume_key: bytes | None,
    worker_argv: list[str],
    upload: UploadConfig,
    lease: WriterLease | None,
    checkpoint_interval: float,
    memory_bytes: int | None = None,
    renew: RenewPolicy | None = None,
    read_only: bool = False,
    blocks: BlockCachePlace | None = None,
) -> Parts:
    """Build the volume's data path.

    Args:
        lease: this machine's claim on the volume (writer.py): blobs carry its machine ID, the
            Blobs its earlier processes left uncertified are deleted, and checkpoints carry
            the lease unless `read_only`. None: neither (fsck of a volume nobody claimed).
        memory_bytes: the mount's memory bound, which sizes the segment cache and the
            uploads at once; None: the configured jobs and a full segment cache.
        renew: the renewal policy; None builds no renewer.
        blocks: the block cache the upload worker keeps what it stores in (None: nowhere).
    """
    segment_bytes, jobs = SEGMENT_BYTES, upload.jobs
    if memory_bytes is not None:
        segment_bytes, jobs = upload_jobs(upload, memory_bytes, chunk_size)
        upload = replace(upload, jobs=jobs)
    content = Content(db, staging, store, chunk_size, segment_bytes, keys=keys)
    worker = UploadWorker(
        worker_argv,
        network=chain.profile,
        wallet=chain.key,
        key=volume_key,
        blocks=blocks,
        relay=wp.RelaySetting(upload.relay_url, upload.relay_max_tip) if upload.relay_url else None,
    )
    pool = VolumePool(db, worker, upload.epochs, chain)
    uploader = Uploader(
        db,
        content,
        worker,
        pool=pool,
        config=upload,
        volume_id=schema.get_param(db, "volume_id") or "",
        params=params,
        keys=keys,
        volume_name=volume_dir.name,
        machine=None if lease is None else lease.machine.id,
        orphans=() if lease is None else lease.unfinished,
        plan_files=PlanFiles(volume_dir / PLANS_DIR),
    )
    checkpointer = Checkpointer(
        db,
        volume_dir / "meta.db",
        worker,
        name=volume_dir.name,
        epochs=upload.epochs,
        interval=checkpoint_interval,
        keys=keys,
        pool=pool,
    )
    if not read_only:
        checkpointer.stamp = lease
    uploader.housekeeping = checkpointer.ignore
    renewer = None
    if renew is not None:
        renewer = Renewer(db, worker, chain, renew, pool=pool)
        content.expired = renewer.expired
    return Parts(content, worker, uploader, checkpointer, renewer)
