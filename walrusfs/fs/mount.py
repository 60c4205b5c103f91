"""Mounting a volume: open its database and staging area, run the handlers and the uploader.

Lifecycle (`run`): check the mountpoint -> open the chain and the store, read the committee ->
open or create the volume database, repair what a crash left (see docs/mount.md, crash
windows) -> mark the volume mounted -> `pyfuse3.init` (errors reach the terminal) -> report
ready -> uploader + request loop -> on unmount (fusermount -u, SIGINT/SIGTERM): forget the
kernel's remaining inodes, mark the volume cleanly unmounted.
"""

from __future__ import annotations

import errno
import faulthandler
import fcntl
import logging
import os
import signal
import sqlite3
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyfuse3
import trio

import codec
from cache.slivers import SliverCache
from cache.staging import Staging
from chain import errors as chain_errors
from chain.client import WalrusChain
from chain.pricing import store_cost
from chain.wallet import write_private
from walrusfs import mounts
from walrusfs.errors import ExitCode, UsageError, UserError
from walrusfs.fs import crypto, schema
from walrusfs.fs.checkpoint import (
    Checkpointer,
    CheckpointUnusable,
    list_checkpoints,
    restore,
)
from walrusfs.fs.content import Content, purge_inodes
from walrusfs.fs.lifetime import Renewer, RenewPolicy
from walrusfs.fs.ops import Operations
from walrusfs.fs.schema import path_of, transaction
from walrusfs.fs.upload_worker import UploadWorker
from walrusfs.fs.uploader import UploadConfig, Uploader
from walrusfs.fs.writer import VolumeClaimed, WriterLease, judge, this_machine
from walrusfs.store.client import WalrusStore
from walrusfs.store.errors import StoreError
from walrusfs.store.nodes import StorageNode

log = logging.getLogger(__name__)

FSNAME = "walrusfs"
STATFS_TTL = 5.0
REFRESH_INTERVAL = 60.0
HEALTH_INTERVAL = 10.0  # seconds between probes of the storage nodes' health
CHUNK_SIZE = 64 << 20  # chunk size of new volumes (capped at the network's max blob size)
FINAL_CHECKPOINT_TIMEOUT = 120


@dataclass(frozen=True)
class MountOptions:
    mountpoint: Path
    volume_dir: Path  # <data_dir>/volumes/<name>: meta.db, staging/, mount.log
    cache_dir: Path  # sliver cache
    chunk_size: int = CHUNK_SIZE  # for new volumes; capped at the network's max blob size
    cache_bytes: int = 2 << 30  # on-disk sliver cache
    memory_bytes: int = 2 << 30  # RSS bound: segment cache + concurrent encodes
    staging_limit: int = 16 << 30  # staged bytes before writes wait for uploads
    allow_other: bool = False
    public: bool = False  # new volumes only: store plaintext (no encryption)
    checkpoint_interval: float = 3600.0  # seconds between metadata checkpoints (if changed)
    renew: bool | None = None  # None: the volume's stored policy (default on)
    renew_horizon: int | None = None  # epochs before the end epoch a blob is extended
    renew_epochs: int | None = None  # epochs added per extension (default: --epochs)
    upload: UploadConfig = field(default_factory=UploadConfig)
    #: serve the volume read-only: every change is refused with EROFS, nothing uploads
    read_only: bool = False
    #: a read that needs the storage nodes fails with EIO after this many seconds
    read_timeout: float = 20.0
    #: the volume key comes from this passphrase (never stored; kept out of repr and logs)
    passphrase: str | None = field(default=None, repr=False)


class MountError(UserError):
    exit_code = ExitCode.SERVICE


def is_mountpoint(path: Path) -> str | None:
    """The filesystem type mounted at `path` (the topmost, from /proc/self/mounts), or None."""
    entry = mounts.mounted_at(path)
    return None if entry is None else entry.fstype


def known_blobs(db: sqlite3.Connection) -> set[str]:
    """Object IDs of the data blobs the volume database records (checkpoints excluded: their
    writer lease may have changed on chain)."""
    return {str(o) for (o,) in db.execute("SELECT object_id FROM blobs WHERE kind != 'checkpoint'")}


def memory_floor(chunk_size: int) -> int:
    """The least `--memory` that holds for a volume of `chunk_size` chunks: the daemon and the
    worker as they start (~100 MiB each), the segment cache (an eighth of the bound), and one
    upload, whose worker peaks at about 8x its chunk over its base (measured with
    `bench/fs.py --memory`, docs/mount.md, Memory). Below it the bound could not hold: one
    upload alone exceeds it (a 512 MiB bound measured 743 MiB)."""
    need = ((256 << 20) + 8 * chunk_size) * 8 // 7
    return -(-need >> 20) << 20  # a whole MiB, rounded up: the figure the message names


def largest_chunk(params: codec.EncodingParams, *, encrypted: bool) -> int:
    """The largest chunk one blob of this network holds; an encrypted chunk is stored sealed
    (header and tags), so its plaintext must be that much smaller."""
    return crypto.max_plain(params.max_blob_size) if encrypted else params.max_blob_size


def check_mountpoint(path: Path, own: Sequence[Path] = ()) -> None:
    """`own`: the directories the mount itself reads and writes (the volume's, the cache). A
    mount over one of them would serve its own files to itself and hang in the kernel."""
    if not path.exists():
        raise UsageError(f"mountpoint {path} does not exist (create it with mkdir)")
    if not path.is_dir():
        raise UsageError(f"mountpoint {path} is not a directory")
    if is_mountpoint(path) is not None:
        raise UsageError(f"{path} is already a mountpoint (`walrusfs umount {path}` first)")
    real = path.resolve()
    for directory in own:
        if directory.resolve().is_relative_to(real):
            raise UsageError(
                f"mountpoint {path} contains walrusfs's own files ({directory}); mount on "
                "another directory, or move them with WALRUSFS_HOME or XDG_DATA_HOME / "
                "XDG_CACHE_HOME"
            )


class Volume:
    """The state shared by handlers, uploader and control commands (ops.Control)."""

    def __init__(
        self,
        options: MountOptions,
        db: sqlite3.Connection,
        *,
        staging: Staging,
        content: Content,
        uploader: Uploader,
        chain: WalrusChain,
        checkpointer: Checkpointer,
        renewer: Renewer,
    ) -> None:
        self.options = options
        self.checkpointer = checkpointer
        self.renewer = renewer
        self.db = db
        self.staging = staging
        self.content = content
        self.uploader = uploader
        self.chain = chain
        self.started = time.time()
        self.wal: int | None = None
        self.sui: int | None = None
        self.bytes_affordable: int | None = None
        self.epoch: int | None = None
        self.prices: tuple[int, int, int] | None = None  # n_shards, storage, write price
        self.prepaid: int | None = None  # bytes of owned Storage usable now (not in a blob)
        #: storage nodes as the last refresh found them: name, url, shards, healthy, epoch
        self.nodes: list[dict[str, Any]] = []
        self.nodes_at: float | None = None  # unix time of the last probe of the nodes
        self.sync_error: str | None = None  # why the last `walrusfs sync` failed
        self._statfs: tuple[float, pyfuse3.StatvfsData] | None = None

    # -- ops.Control ------------------------------------------------------------------------

    def wake_uploader(self) -> None:
        self.uploader.wake()

    def uploading(self, inode: int) -> bool:
        return any(key[0] == inode for key in self.uploader.inflight)

    async def wait_for_room(self, nbytes: int) -> None:
        """Writes wait while staging is over its limit and uploads make progress; ENOSPC when
        they cannot (uploads failing: no WAL, nodes unreachable)."""
        while self.staging.used_bytes + nbytes > self.options.staging_limit:
            if self.uploader.stats.failing and not self.uploader.inflight:
                log.error(
                    "staging is full (%d bytes) and uploads fail: %s",
                    self.staging.used_bytes, self.uploader.stats.last_error,
                )  # fmt: skip
                raise pyfuse3.FUSEError(errno.ENOSPC)
            self.uploader.wake()
            freed = self.content.space_freed
            with trio.move_on_after(60):
                await freed.wait()
                continue
            raise pyfuse3.FUSEError(errno.ENOSPC)

    async def sync_db(self) -> None:
        """Make every committed transaction durable (an fsync of the WAL, in a thread)."""
        await trio.to_thread.run_sync(schema.sync_wal, self.options.volume_dir / "meta.db")

    def statfs(self) -> pyfuse3.StatvfsData:
        now = time.monotonic()
        if self._statfs is not None and now - self._statfs[0] < STATFS_TTL:
            return self._statfs[1]
        used = int(
            self.db.execute(
                # total(), a float: sum() of sizes up to 2^63-1 each overflows SQLite's int64
                "SELECT total(size) FROM inodes WHERE mode & ? = ?",
                (0o170000, stat.S_IFREG),
            ).fetchone()[0]
        )
        files = int(self.db.execute("SELECT count(*) FROM inodes").fetchone()[0])
        staging_free = max(0, self.options.staging_limit - self.staging.used_bytes)
        # free space: what the wallet can still pay for; unknown yet -> the staging room
        free = staging_free if self.bytes_affordable is None else self.bytes_affordable
        bsize = 4096
        s = pyfuse3.StatvfsData()
        s.f_bsize = bsize
        s.f_frsize = bsize
        s.f_blocks = min((used + free) // bsize, (1 << 64) - 1)
        s.f_bfree = free // bsize
        s.f_bavail = free // bsize
        s.f_files = files + 10_000_000
        s.f_ffree = 10_000_000
        s.f_favail = 10_000_000
        s.f_namemax = 255
        self._statfs = (now, s)
        return s

    async def command(self, name: str, value: bytes) -> None:
        if name == "sync":
            try:
                await self._sync()
            except OSError as exc:
                # setxattr carries only the errno back: `walrusfs sync` reads the reason here
                self.sync_error = exc.strerror or str(exc)
                raise
            self.sync_error = None
        else:
            raise pyfuse3.FUSEError(errno.EINVAL)

    async def _sync(self) -> None:
        """What `walrusfs sync` promises (docs/durability.md): everything staged certified,
        renewals done, and a checkpoint the volume can be restored from."""
        chunks, nbytes = self.uploader.pending()
        if chunks and not self.options.read_only:
            await self._require_quorum(chunks, nbytes)
        await self.uploader.flush()
        await self.sync_db()
        if self.options.read_only:
            return
        try:
            await self.renewer.check()
            # sync promises the volume survives the loss of this machine: not so while a
            # renewal fails (its blobs expire), nor while the newest checkpoint has expired
            if self.renewer.last_error is not None:
                raise OSError(errno.EIO, f"renewal failed: {self.renewer.last_error}")
            epoch = self.renewer.epoch
            stale = epoch is not None and self.checkpointer.expired(epoch)
            await self.checkpointer.checkpoint(force=stale)
            await self.refresh_once()
        except (StoreError, chain_errors.ChainError, OSError) as exc:
            raise OSError(errno.EIO, f"renewal or metadata checkpoint failed: {exc}") from exc

    def query(self, name: str) -> Any:
        if name == "pid":
            return os.getpid()
        if name == "status":
            return self.status()
        raise pyfuse3.FUSEError(pyfuse3.ENOATTR)

    def status(self) -> dict[str, Any]:
        sizes = self.uploader.pending_sizes()
        st = self.uploader.stats
        blobs = self.db.execute(
            "SELECT count(*), coalesce(sum(size), 0), coalesce(sum(encoded_size), 0), "
            "min(end_epoch) FROM blobs WHERE refcount > 0"
        ).fetchone()
        cache = self.content.store.cache
        return {
            "pid": os.getpid(),
            "mountpoint": str(self.options.mountpoint),
            "volume": str(self.options.volume_dir),
            "volume_id": schema.get_param(self.db, "volume_id"),
            "encryption": schema.get_param(self.db, "encryption") or "none",
            "uptime": round(time.time() - self.started, 1),
            "pending": {
                "chunks": len(sizes),
                "bytes": sum(sizes),
                "uploading": len(self.uploader.inflight),
                "uploading_bytes": sum(
                    self.staging.size(key) for key in list(self.uploader.inflight)
                ),
            },
            "staging": {"bytes": self.staging.used_bytes, "limit": self.options.staging_limit},
            "funds": self._funds(sizes),
            "uploaded": {
                "blobs": st.blobs,
                "quilts": st.quilts,
                "chunks": st.chunks,
                "bytes": st.bytes,
                "wal_spent": st.wal_spent,
                "failures": st.failures,
                "last_error": st.last_error,
                "compacted_quilts": st.compacted,
                "restaged_chunks": st.restaged,
                # registered (paid) and not certified yet: the retry continues them
                "uncertified_blobs": st.uncertified,
                # certified, their commit waiting for room on a full disk
                "uncommitted_uploads": st.uncommitted,
                "holes": st.holes,
                "orphans_deleted": st.orphans_deleted,
            },
            "stored": {
                "blobs": blobs[0],
                "bytes": blobs[1],
                "encoded_bytes": blobs[2],
                "earliest_end_epoch": blobs[3],
            },
            "cache": {
                "bytes": cache.total_bytes if cache is not None else 0,
                "limit": self.options.cache_bytes,
                "hits": cache.hits if cache is not None else 0,
                "misses": cache.misses if cache is not None else 0,
            },
            "chain": {
                "network": self.chain.profile.name,
                "epoch": self.epoch,
                "wal": self.wal,
                "sui": self.sui,
                "prepaid_bytes": self.prepaid,
            },
            "nodes": self.nodes,
            "nodes_checked_at": self.nodes_at,
            "sync_error": self.sync_error,
            "lifetime": {
                "epoch": self.renewer.epoch,
                "renew": self.renewer.policy.enabled,
                "horizon": self.renewer.policy.horizon,
                "extend_by": self.renewer.policy.epochs,
                "extended": self.renewer.extended,
                "wal_spent": self.renewer.wal_spent,
                "expiring_blobs": self.renewer.expiring[0],
                "expiring_by_epoch": self.renewer.expiring[1],
                "last_error": self.renewer.last_error,
            },
            "checkpoint": {
                "seq": self.checkpointer.seq,
                "time": self.checkpointer.time,
                "pending": self.checkpointer.dirty(),
                "last_error": self.checkpointer.last_error,
            },
        }

    async def _require_quorum(self, chunks: int, nbytes: int) -> None:
        """Refuse a sync at once when too few storage nodes answer for any upload to be
        certified (a quorum of shards, 2f+1 of 3f+1), instead of after each upload's own
        timeouts: the user learns within seconds what stays staged."""
        await self._probe_nodes()
        n = sum(int(node["shards"]) for node in self.nodes)
        healthy = sum(int(node["shards"]) for node in self.nodes if node["healthy"])
        quorum = n - (n - 1) // 3
        if n and healthy < quorum:
            up = sum(1 for node in self.nodes if node["healthy"])
            raise OSError(
                errno.EIO,
                f"the storage nodes do not answer ({up} of {len(self.nodes)} healthy, "
                f"{healthy} of the {quorum} shards a certificate needs): {chunks} chunk(s), "
                f"{nbytes / 2**20:.1f} MiB stay staged and upload when they are back",
            )

    async def watch_nodes(self) -> None:
        """Node health for status, every HEALTH_INTERVAL seconds (each probe waits 2 s at
        most: a stopped node shows as down within one interval)."""
        while True:
            try:
                await self._probe_nodes()
            except (StoreError, chain_errors.ChainError, OSError) as exc:
                log.warning("could not probe the storage nodes: %s", exc)
            await trio.sleep(HEALTH_INTERVAL)

    async def _probe_nodes(self) -> None:
        store = self.content.store
        committee = await store.committee()
        found: list[dict[str, Any]] = []

        async def probe(node: StorageNode) -> None:
            health = await store.nodes.health(node)
            found.append({
                "name": node.name, "url": node.url, "shards": len(node.shards),
                "healthy": health is not None,
                "epoch": None if health is None else health.get("epoch"),
            })  # fmt: skip

        async with trio.open_nursery() as nursery:
            for node in committee.nodes:
                nursery.start_soon(probe, node)
        self.nodes = sorted(found, key=lambda n: str(n["name"]))
        self.nodes_at = time.time()

    def _funds(self, staged: list[int]) -> dict[str, Any]:
        """Whether uploads wait for money, and how much: the last failed upload's need, and
        what everything staged would cost at current prices (an upper bound: each chunk
        priced as a blob of its own)."""
        short = self.uploader.stats.short
        out: dict[str, Any] = {"paused": short is not None}
        if short is not None:
            currency, need, have = short
            out.update(currency=currency, needed=need, held=have, missing=max(0, need - have))
        out["staged_cost"] = (
            None if self.prices is None else sum(self._blob_cost(size) for size in staged)
        )
        return out

    def _blob_cost(self, size: int) -> int:
        """FROST for a blob of `size` bytes for the upload epochs, at the last known prices."""
        assert self.prices is not None
        n_shards, storage_price, write_price = self.prices
        encoded = codec.EncodingParams(n_shards).encoded_size(size)
        return store_cost(encoded, self.uploader.config.epochs, storage_price, write_price).total

    async def refresh(self) -> None:
        """Balances and prices for statfs and status, every minute and at every sync (the
        chain may be down: the old figures stay)."""
        while True:
            await self.refresh_once()
            await trio.sleep(REFRESH_INTERVAL)

    async def refresh_once(self) -> None:
        try:
            info = await self.chain.system_info()
            bal = await self.chain.balances()
            self.wal, self.sui, self.epoch = bal.wal, bal.sui, info.epoch
            self.prices = (info.n_shards, info.storage_price, info.write_price)
            probe = self.content.chunk_size
            self.bytes_affordable = (bal.wal // max(self._blob_cost(probe), 1)) * probe
            self.prepaid = sum(
                s.storage_size for s in await self.chain.storage_resources()
                if s.start_epoch <= info.epoch
            )  # fmt: skip
            await self._probe_nodes()
        except (chain_errors.ChainError, OSError) as exc:
            log.warning("could not refresh balances: %s", exc)


def lock_volume(volume_dir: Path) -> int:
    """Hold the volume's lock file for the life of the process: one mount or fsck at a time
    (the lock goes with the process, even on kill -9)."""
    volume_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(volume_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UsageError(
            f"volume {volume_dir.name} is in use by another walrusfs process (mounted, or fsck "
            "running): unmount it first"
        ) from None
    return fd


KEY_FILE = "volume.key"


def volume_key(
    volume_dir: Path, volume_id: str, chain: WalrusChain, passphrase: str | None = None
) -> bytes:
    """The volume key: from the passphrase if one is given, else `<volume>/volume.key` if
    present, else derived from the wallet."""
    if passphrase is not None:
        return crypto.passphrase_key(passphrase, volume_id)
    key_file = volume_dir / KEY_FILE
    if not key_file.exists():
        if chain.key is None:
            raise MountError("an encrypted volume needs a wallet key", ExitCode.WALLET)
        return chain.key.derive_secret(crypto.wallet_key_context(volume_id))
    try:
        key = bytes.fromhex(key_file.read_text(encoding="ascii").strip())
    except (ValueError, UnicodeDecodeError):
        key = b""
    if len(key) != 32:
        raise MountError(
            f"{key_file}: not a volume key (64 hex digits); restore the right file, or delete "
            "it to derive the key from the wallet", ExitCode.USAGE,
        )  # fmt: skip
    return key


def load_keys(
    volume_dir: Path,
    db: sqlite3.Connection,
    chain: WalrusChain,
    *,
    new: bool,
    public: bool,
    passphrase: str | None = None,
) -> tuple[crypto.VolumeKeys | None, bytes | None]:
    """The volume's keys (None, None for a public volume).

    The key is read from `<volume>/volume.key` (0600), or derived from the wallet's private key
    and the volume ID and written there: whoever holds the wallet can mount the volume on
    another machine. A key that does not match the volume's fingerprint is refused here,
    rather than every read failing later.
    """
    encryption = schema.get_param(db, "encryption") or "none"
    if encryption == "none":
        if not new and not public:
            log.info("volume %s is public: its blobs are plaintext", volume_dir.name)
        return None, None
    if public and not new:
        raise MountError(
            f"volume {volume_dir.name} is encrypted; --public applies to new volumes "
            "only (create another volume with --volume NAME --public)", ExitCode.USAGE,
        )  # fmt: skip
    if encryption != "wfe1":
        raise MountError(
            f"volume {volume_dir.name} uses encryption {encryption!r}, which this walrusfs does "
            "not know: a newer walrusfs made it (upgrade)", ExitCode.USAGE,
        )  # fmt: skip
    key_file = volume_dir / KEY_FILE
    key = volume_key(volume_dir, schema.get_param(db, "volume_id") or "", chain, passphrase)
    keys = crypto.VolumeKeys.from_volume_key(key)
    check = schema.get_param(db, "key_check")
    if check is None:
        schema.set_param(db, "key_check", keys.check_value())
    elif check != keys.check_value():  # before anything is written: a wrong key stays nowhere
        raise MountError(
            ("the passphrase is not this volume's" if passphrase is not None else
             f"{key_file} is not the key of this volume (another wallet's, or another "
             "volume's)") + ": restore the right volume.key, mount with the wallet that made "
            "it, or give its passphrase (--passphrase-file, WALRUSFS_PASSPHRASE)",
            ExitCode.WALLET,
        )  # fmt: skip
    if passphrase is None and not key_file.exists():
        write_private(key_file, key.hex() + "\n")
    return keys, key


@dataclass
class Repaired:
    #: staged chunks whose staged bytes were missing: (inode, chunkno, had a previous upload)
    reverted: list[tuple[int, int, bool]] = field(default_factory=list)
    removed: int = 0  # staged chunks no chunk row referred to


def repair(db: sqlite3.Connection, staging: Staging) -> Repaired:
    """Bring database and staging area back in line after a crash (docs/durability.md)."""
    done = Repaired()
    live = {
        (int(i), int(c)): blob is not None
        for i, c, blob in db.execute("SELECT inode, chunkno, blob FROM chunks WHERE staged = 1")
    }
    have = set(staging.keys())
    for key in sorted(live.keys() - have):
        # a file created and never fsynced before a power loss, or a restored checkpoint:
        # keep the previous upload if there is one
        log.error(
            "%s: chunk %d has no staged bytes; %s", path_of(db, key[0]) or f"inode {key[0]}",
            key[1], "back to its last upload" if live[key] else "it becomes a hole",
        )  # fmt: skip
        done.reverted.append((key[0], key[1], live[key]))
        db.execute(
            "UPDATE chunks SET staged = 0 WHERE inode = ? AND chunkno = ? AND blob IS NOT NULL",
            key,
        )
        db.execute("DELETE FROM chunks WHERE inode = ? AND chunkno = ? AND blob IS NULL", key)
    done.removed = staging.sweep(live)
    if done.removed:
        log.info("removed %d staged chunks no chunk row refers to", done.removed)
    # files unlinked while open when the last mount ended (or not yet purged when it ended)
    unlinked = [int(i) for (i,) in db.execute("SELECT id FROM inodes WHERE nlink = 0")]
    if unlinked:
        with transaction(db):  # all or nothing: a crash here must not drop a reference twice
            purge_inodes(db, staging, unlinked)
    return done


async def run(
    options: MountOptions,
    chain: WalrusChain,
    *,
    worker_argv: list[str],
    foreground_debug: bool = False,
    ready: Callable[[str | None], None] = lambda error: None,
) -> None:
    """Mount and serve until unmounted. `ready(None)` once the mount is live, `ready(message)`
    if it failed before that."""
    check_mountpoint(options.mountpoint, (options.volume_dir, options.cache_dir))
    lock = lock_volume(options.volume_dir)
    cache = SliverCache(options.cache_dir / "slivers", options.cache_bytes)
    # no RangeCache: Content keeps its own segment cache of what the store returns
    store = WalrusStore(chain, cache=cache, read_timeout=options.read_timeout)
    try:
        committee = await store.committee()
        params = committee.params
        db_path = options.volume_dir / "meta.db"
        chunk_size = min(options.chunk_size, largest_chunk(params, encrypted=not options.public))
        restored = False
        if not db_path.exists():
            restored = await _restore_if_any(options, store, chain, db_path)
        new = not db_path.exists()
        try:
            db = schema.open_volume(
                db_path, uid=os.getuid(), gid=os.getgid(), chunk_size=chunk_size,
                encryption="none" if options.public else "wfe1",
            )  # fmt: skip
        except schema.SchemaMismatch as exc:
            raise MountError(str(exc), ExitCode.USAGE) from None
        keys, volume_key = load_keys(
            options.volume_dir, db, chain, new=new, public=options.public,
            passphrase=options.passphrase,
        )  # fmt: skip
        chunk_size = int(schema.get_param(db, "chunk_size") or chunk_size)
        largest = largest_chunk(params, encrypted=keys is not None)
        if chunk_size > largest:
            raise MountError(
                f"this volume's chunk size ({chunk_size}) exceeds the largest chunk a blob of "
                f"this network holds ({largest}): its chunks could never upload; mount it on "
                "a network with more shards, or copy its files into a new --volume",
                ExitCode.USAGE,
            )
        floor = memory_floor(chunk_size)
        if options.memory_bytes < floor:
            raise MountError(
                f"--memory {options.memory_bytes >> 20} MiB is below what this volume needs: "
                f"at least {floor >> 20} MiB, since an upload encodes one {chunk_size >> 20} MiB "
                "chunk at a time (docs/mount.md, Memory); a new volume made with a smaller "
                "chunk_size needs less",
                ExitCode.USAGE,
            )
        # one writer per volume: refused here, before anything of the volume changes
        lease = WriterLease(
            chain, this_machine(options.volume_dir.parent.parent), options.volume_dir.name,
            schema.get_param(db, "volume_id") or "",
        )  # fmt: skip
        if not options.read_only:
            await lease.claim(int(schema.get_param(db, "checkpoint_seq") or 0), known_blobs(db))
        staging = Staging(options.volume_dir / "staging")
        if schema.get_param(db, "clean_unmount") != "1" and not restored:
            log.warning("the last mount of this volume did not end cleanly; repairing")
        with transaction(db):
            repair(db, staging)
            schema.set_param(db, "clean_unmount", "0")
        segment_bytes = min(256 << 20, options.memory_bytes // 8)
        content = Content(db, staging, store, chunk_size, segment_bytes, keys=keys)
        # an encode holds ~10x its chunk (docs/design.md, encoding memory) + the segment cache
        room = max(0, options.memory_bytes - segment_bytes - (128 << 20))
        jobs = max(1, min(options.upload.jobs, room // (12 * chunk_size)))
        upload = UploadConfig(**{**options.upload.__dict__, "jobs": jobs})
        volume_id = schema.get_param(db, "volume_id") or ""
        worker = UploadWorker(worker_argv, key=volume_key)
        uploader = Uploader(
            db, content, worker, config=upload, volume_id=volume_id, params=params, keys=keys,
            volume_name=options.volume_dir.name, machine=lease.machine.id,
            orphans=lease.unfinished,
        )  # fmt: skip
        checkpointer = Checkpointer(
            db, db_path, worker.call, name=options.volume_dir.name, epochs=upload.epochs,
            interval=options.checkpoint_interval, keys=keys,
        )  # fmt: skip
        policy = RenewPolicy.of_volume(
            db, enabled=options.renew, horizon=options.renew_horizon,
            epochs=options.renew_epochs, default_epochs=upload.epochs,
        )  # fmt: skip
        if not options.read_only:
            checkpointer.stamp = lease
        renewer = Renewer(db, worker.call, chain, policy)
        content.expired = renewer.expired
        uploader.housekeeping = checkpointer.ignore
        volume = Volume(
            options, db, staging=staging, content=content, uploader=uploader, chain=chain,
            checkpointer=checkpointer, renewer=renewer,
        )  # fmt: skip
        ops = Operations(db, content, volume)
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
        if foreground_debug:
            fuse_options.add("debug")
        try:
            pyfuse3.init(ops, str(options.mountpoint), fuse_options)
        except RuntimeError as exc:
            raise MountError(f"cannot mount {options.mountpoint}: {exc}") from None
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        clean = False
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(worker.run)
                if not options.read_only:  # nothing changes: nothing to upload or renew
                    await nursery.start(uploader.run)
                    await nursery.start(checkpointer.run)
                    await nursery.start(renewer.run)
                    await nursery.start(ops.purger)
                nursery.start_soon(volume.refresh)
                nursery.start_soon(volume.watch_nodes)
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    nursery.start_soon(_terminate_on, signals)
                    ready(None)
                    log.info("mounted %s on %s", options.volume_dir, options.mountpoint)
                    await pyfuse3.main()
                if not options.read_only:
                    await _final_checkpoint(checkpointer, lease)
                nursery.cancel_scope.cancel()
            clean = True
        finally:
            pyfuse3.close(unmount=clean)
            with trio.CancelScope(shield=True):
                await worker.aclose()
            ops.forget_all()
            chunks, nbytes = uploader.pending()
            if chunks:
                log.warning(
                    "unmounted with %d chunk(s), %d bytes not uploaded yet: they stay in "
                    "staging and upload at the next mount", chunks, nbytes,
                )  # fmt: skip
            schema.set_param(db, "clean_unmount", "1" if clean else "0")
            db.close()  # the last connection: SQLite checkpoints the WAL and syncs the file
            staging.close()
            log.info("unmounted %s", options.mountpoint)
    finally:
        await store.close()
        cache.close()
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
        raise MountError(f"cannot look for checkpoints of volume {name}: {exc}") from None
    if refs and not options.read_only:  # in use elsewhere: refused before anything is made
        machine = this_machine(options.volume_dir.parent.parent)
        verdict = judge(refs, machine, refs[0].volume_id, refs[0].seq)
        if verdict.refusal is not None:
            raise VolumeClaimed(verdict.refusal)
    failure: Exception | None = None
    for ref in refs:
        keys = None
        if ref.encryption != "none":
            keys = crypto.VolumeKeys.from_volume_key(
                volume_key(options.volume_dir, ref.volume_id, chain, options.passphrase)
            )
            if ref.key_check is not None and ref.key_check != keys.check_value():
                raise MountError(
                    f"checkpoint {ref.seq} of volume {name} was made with another key: mount "
                    f"with the wallet that made it, or put its volume.key in {options.volume_dir}",
                    ExitCode.WALLET,
                )  # fmt: skip
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ref.time))
        log.warning(
            "volume %s has no local database: restoring checkpoint %d (%s, taken %s) from Walrus",
            name, ref.seq, ref.blob_id, when,
        )  # fmt: skip
        try:
            await restore(store, ref, db_path, keys)
            return True
        except (CheckpointUnusable, StoreError, chain_errors.ChainError, OSError) as exc:
            log.error("checkpoint %d cannot be restored (%s); trying an older one", ref.seq, exc)
            failure = exc
    if failure is not None:
        raise MountError(
            f"none of the {len(refs)} checkpoint(s) of volume {name} could be restored (last: "
            f"{failure}); check the network, or mount under another --volume name to start anew"
        )  # fmt: skip
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
