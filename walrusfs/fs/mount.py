"""Mounting a volume: open its database and staging area, run the handlers and the uploader.

Lifecycle (`run`): check the mountpoint -> open the chain and the store, read the committee ->
open or create the volume database, repair what a crash left (see docs/mount.md, crash
windows) -> mark the volume mounted -> `pyfuse3.init` (errors reach the terminal) -> report
ready -> uploader + request loop -> on unmount (fusermount -u, SIGINT/SIGTERM): forget the
kernel's remaining inodes, mark the volume cleanly unmounted.
"""

from __future__ import annotations

import faulthandler
import fcntl
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyfuse3
import trio

import codec
from cache.blocks import BlockCachePlace
from cache.slivers import SliverCache
from cache.staging import Staging
from chain import errors as chain_errors
from chain.client import WalrusChain
from walrusfs import mounts
from walrusfs.fs import blobs, crypto, schema
from walrusfs.fs.assemble import assemble
from walrusfs.fs.checkpoint import Checkpointer, CheckpointUnusable, list_checkpoints, restore
from walrusfs.fs.errors import (
    BadMountpoint,
    ChunkTooLarge,
    KeyMismatch,
    MemoryTooSmall,
    ServiceFailed,
    VolumeClaimed,
    VolumeInUse,
)
from walrusfs.fs.keys import load_keys, volume_key
from walrusfs.fs.lifetime import RenewPolicy
from walrusfs.fs.ops import Operations
from walrusfs.fs.options import MountOptions, largest_chunk, memory_floor
from walrusfs.fs.plans import PLANS_DIR, PlanFiles
from walrusfs.fs.readahead import raise_read_ahead_when_live
from walrusfs.fs.repair import recover
from walrusfs.fs.volume import Volume
from walrusfs.fs.writer import WriterLease, judge, this_machine
from walrusfs.store.client import WalrusStore
from walrusfs.store.errors import StoreError

log = logging.getLogger(__name__)

FSNAME = "walrusfs"
FINAL_CHECKPOINT_TIMEOUT = 120


def is_mountpoint(path: Path) -> str | None:
    """The filesystem type mounted at `path` (the topmost, from /proc/self/mounts), or None."""
    entry = mounts.mounted_at(path)
    return None if entry is None else entry.fstype


def check_mountpoint(path: Path, own: Sequence[Path] = ()) -> None:
    """`path` can be mounted on.

    Args:
        own: the directories the mount itself reads and writes (the volume's, the cache). A
            mount over one of them would serve its own files to itself and hang in the kernel.

    Raises:
        BadMountpoint: `path` is missing, not a directory, already a mountpoint, or holds
            one of `own`.
    """
    if not path.exists():
        raise BadMountpoint(f"mountpoint {path} does not exist (create it with mkdir)")
    if not path.is_dir():
        raise BadMountpoint(f"mountpoint {path} is not a directory")
    if is_mountpoint(path) is not None:
        raise BadMountpoint(f"{path} is already a mountpoint (`walrusfs umount {path}` first)")
    real = path.resolve()
    for directory in own:
        if directory.resolve().is_relative_to(real):
            raise BadMountpoint(
                f"mountpoint {path} contains walrusfs's own files ({directory}); mount on "
                "another directory, or move them with WALRUSFS_HOME or XDG_DATA_HOME / "
                "XDG_CACHE_HOME"
            )


def lock_volume(volume_dir: Path) -> int:
    """Hold the volume's lock file for the life of the process: one mount or fsck at a time
    (the lock goes with the process, even on kill -9). Returns the lock's descriptor.

    Raises:
        VolumeInUse: another process holds it.
    """
    volume_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(volume_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise VolumeInUse(
            f"volume {volume_dir.name} is in use by another walrusfs process (mounted, or fsck "
            "running): unmount it first"
        ) from None
    return fd


@dataclass(frozen=True)
class _Opened:
    db: sqlite3.Connection
    keys: crypto.VolumeKeys | None
    volume_key: bytes | None
    chunk_size: int
    restored: bool  # from a checkpoint, by this mount


async def _open(
    options: MountOptions, store: WalrusStore, chain: WalrusChain, params: codec.EncodingParams
) -> _Opened:
    """The volume's database (restored from its newest checkpoint, or made, if there is none
    here) with its keys, refused if this network or the memory bound cannot serve it."""
    db_path = options.volume_dir / "meta.db"
    chunk_size = min(options.chunk_size, largest_chunk(params, encrypted=not options.public))
    restored = False
    if not db_path.exists():
        restored = await _restore_if_any(options, store, chain, db_path)
    new = not db_path.exists()
    db = schema.open_volume(
        db_path,
        uid=os.getuid(),
        gid=os.getgid(),
        chunk_size=chunk_size,
        encryption="none" if options.public else "wfe1",
        storage="pool" if options.storage_pool else "blobs",
    )
    try:
        keys, volume_key = load_keys(
            options.volume_dir,
            db,
            chain,
            new=new,
            public=options.public,
            passphrase=options.passphrase,
        )
        chunk_size = int(schema.get_param(db, "chunk_size") or chunk_size)
        largest = largest_chunk(params, encrypted=keys is not None)
        if chunk_size > largest:
            raise ChunkTooLarge(
                f"this volume's chunk size ({chunk_size}) exceeds the largest chunk a blob of "
                f"this network holds ({largest}): its chunks could never upload; mount it on "
                "a network with more shards, or copy its files into a new --volume"
            )
        floor = memory_floor(chunk_size)
        if options.memory_bytes < floor:
            raise MemoryTooSmall(
                f"--memory {options.memory_bytes >> 20} MiB is below what this volume needs: "
                f"at least {floor >> 20} MiB, since an upload encodes one {chunk_size >> 20} MiB "
                "chunk at a time (docs/mount.md, Memory); a new volume made with a smaller "
                "chunk_size needs less"
            )
    except BaseException:
        db.close()
        raise
    return _Opened(db, keys, volume_key, chunk_size, restored)


def _fuse_options(options: MountOptions, debug: bool) -> set[str]:
    fuse_options = set(pyfuse3.default_options)
    fuse_options |= {
        f"fsname={FSNAME}:{options.volume_dir.name}",
        f"subtype={FSNAME}",
        "noatime",
    }
    if options.allow_other:
        fuse_options.add("allow_other")
    if options.read_only:  # the kernel refuses changes itself (EROFS) and says ST_RDONLY
        fuse_options.add("ro")
    if debug:
        fuse_options.add("debug")
    return fuse_options


async def run(
    options: MountOptions,
    chain: WalrusChain,
    *,
    worker_argv: list[str],
    foreground_debug: bool = False,
    ready: Callable[[str | None], None] = lambda error: None,
) -> None:
    """Mount and serve until unmounted. `ready(None)` once the mount is live; a failure before
    that is raised (the caller reports it through `ready`).

    Args:
        worker_argv: the command line of the upload worker process.
        foreground_debug: FUSE's own debug output.

    Raises:
        VolumeError: the volume cannot be mounted as asked: BadMountpoint, VolumeInUse,
            VolumeClaimed, SchemaMismatch, WrongEncryption, BadKeyFile, KeyMismatch,
            ChunkTooLarge, MemoryTooSmall, or ServiceFailed (no checkpoint could be restored,
            the chain could not be read for the lease, FUSE refused).
        chain.errors.ChainError, StoreError: the chain or the storage nodes failed before
            the mount was live.
    """
    check_mountpoint(options.mountpoint, (options.volume_dir, options.cache_dir))
    lock = lock_volume(options.volume_dir)
    # the cache size is shared: a quarter for slivers and metadata, the rest for blobs' bytes
    cache = SliverCache(options.cache_dir / "slivers", options.cache_bytes // 4)
    blocks_at = BlockCachePlace(
        options.cache_dir / "blocks", options.cache_bytes - options.cache_bytes // 4
    )
    blocks = blocks_at.open()
    # no RangeCache: Content keeps its own cache of what the store returns
    store = WalrusStore(chain, cache=cache, blocks=blocks, read_timeout=options.read_timeout)
    try:
        params = (await store.committee()).params
        opened = await _open(options, store, chain, params)
        db = opened.db
        # one writer per volume: refused here, before anything of the volume changes
        lease = WriterLease(
            chain,
            this_machine(options.volume_dir.parent.parent),
            options.volume_dir.name,
            schema.get_param(db, "volume_id") or "",
        )
        if not options.read_only:
            await lease.claim(
                int(schema.get_param(db, "checkpoint_seq") or 0), blobs.known_data_blobs(db)
            )
        staging = Staging(options.volume_dir / "staging")
        recover(db, staging, restored=opened.restored)
        policy = RenewPolicy.of_volume(
            db,
            enabled=options.renew,
            horizon=options.renew_horizon,
            epochs=options.renew_epochs,
            default_epochs=options.upload.epochs,
        )
        parts = assemble(
            db,
            staging,
            store,
            chain,
            volume_dir=options.volume_dir,
            params=params,
            chunk_size=opened.chunk_size,
            keys=opened.keys,
            volume_key=opened.volume_key,
            worker_argv=worker_argv,
            upload=options.upload,
            lease=lease,
            checkpoint_interval=options.checkpoint_interval,
            memory_bytes=options.memory_bytes,
            renew=policy,
            read_only=options.read_only,
            blocks=blocks_at,
        )
        assert parts.renewer is not None
        volume = Volume(
            options,
            db,
            staging=staging,
            store=store,
            content=parts.content,
            uploader=parts.uploader,
            chain=chain,
            checkpointer=parts.checkpointer,
            renewer=parts.renewer,
        )
        ops = Operations(db, parts.content, volume)
        try:
            pyfuse3.init(ops, str(options.mountpoint), _fuse_options(options, foreground_debug))
        except RuntimeError as exc:
            raise ServiceFailed(f"cannot mount {options.mountpoint}: {exc}") from None
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        clean = False
        try:
            async with trio.open_nursery() as nursery:
                parts.content.stored.spawn = nursery.start_soon  # read-ahead
                nursery.start_soon(raise_read_ahead_when_live, options.mountpoint)
                await nursery.start(parts.worker.run)
                if not options.read_only:  # nothing changes: nothing to upload or renew
                    await nursery.start(parts.uploader.run)
                    await nursery.start(parts.checkpointer.run)
                    await nursery.start(parts.renewer.run)
                    await nursery.start(ops.purger)
                nursery.start_soon(volume.refresh)
                nursery.start_soon(volume.watch_nodes)
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    nursery.start_soon(_terminate_on, signals)
                    ready(None)
                    log.info("mounted %s on %s", options.volume_dir, options.mountpoint)
                    await pyfuse3.main()
                if not options.read_only:
                    await _final_checkpoint(parts.checkpointer, lease)
                nursery.cancel_scope.cancel()
            clean = True
        finally:
            pyfuse3.close(unmount=clean)
            with trio.CancelScope(shield=True):
                await parts.worker.aclose()
            ops.forget_all()
            chunks, nbytes = parts.uploader.pending()
            if chunks:
                log.warning(
                    "unmounted with %d chunk(s), %d bytes not uploaded yet: they stay in "
                    "staging and upload at the next mount",
                    chunks,
                    nbytes,
                )
            schema.set_param(db, "clean_unmount", "1" if clean else "0")
            db.close()  # the last connection: SQLite checkpoints the WAL and syncs the file
            staging.close()
            log.info("unmounted %s", options.mountpoint)
    finally:
        await store.close()
        cache.close()
        blocks.close()
        os.close(lock)


async def _restore_if_any(
    options: MountOptions, store: WalrusStore, chain: WalrusChain, db_path: Path
) -> bool:
    """A volume name with no local database: restore its newest usable checkpoint, if the
    wallet has one (docs/durability.md, restore anywhere)."""
    name = options.volume_dir.name
    try:
        refs = await list_checkpoints(chain, name)
    except (chain_errors.ChainError, OSError) as exc:
        raise ServiceFailed(f"cannot look for checkpoints of volume {name}: {exc}") from None
    if refs and not options.read_only:  # in use elsewhere: refused before anything is made
        machine = this_machine(options.volume_dir.parent.parent)
        verdict = judge(refs, machine, refs[0].volume_id, refs[0].seq)
        if verdict.refusal is not None:
            raise VolumeClaimed(verdict.refusal)
    failure: Exception | None = None
    if refs:
        PlanFiles(options.volume_dir / PLANS_DIR).clear()  # plans of a database now gone
    for ref in refs:
        keys = None
        if ref.encryption != "none":
            keys = crypto.VolumeKeys.from_volume_key(
                volume_key(options.volume_dir, ref.volume_id, chain, options.passphrase)
            )
            if ref.key_check is not None and ref.key_check != keys.check_value():
                raise KeyMismatch(
                    f"checkpoint {ref.seq} of volume {name} was made with another key: mount "
                    f"with the wallet that made it, or put its volume.key in {options.volume_dir}"
                )
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ref.time))
        log.warning(
            "volume %s has no local database: restoring checkpoint %d (%s, taken %s) from Walrus",
            name,
            ref.seq,
            ref.blob_id,
            when,
        )
        try:
            await restore(store, ref, db_path, keys)
            return True
        except (CheckpointUnusable, StoreError, chain_errors.ChainError, OSError) as exc:
            log.error("checkpoint %d cannot be restored (%s); trying an older one", ref.seq, exc)
            failure = exc
    if failure is not None:
        raise ServiceFailed(
            f"none of the {len(refs)} checkpoint(s) of volume {name} could be restored (last: "
            f"{failure}); check the network, or mount under another --volume name to start anew"
        )
    return False


async def _final_checkpoint(checkpointer: Checkpointer, lease: WriterLease) -> None:
    """At a clean unmount, a checkpoint if the metadata changed, without the writer lease, or
    else the lease taken off the newest checkpoint (bounded: uploads that cannot go through
    must not hold the unmount; the local database keeps everything anyway, and a lease left
    behind is this machine's to take again)."""
    with trio.move_on_after(FINAL_CHECKPOINT_TIMEOUT) as scope:
        try:
            if not await checkpointer.checkpoint(final=True):
                await lease.release()
        except (StoreError, chain_errors.ChainError, OSError) as exc:
            log.warning("no checkpoint at unmount: %s", exc)
    if scope.cancelled_caught:
        log.warning("no checkpoint at unmount: timed out after %ds", FINAL_CHECKPOINT_TIMEOUT)


async def _terminate_on(signals: Any) -> None:
    async for _ in signals:
        log.info("signal received: unmounting")
        pyfuse3.terminate()
        return
