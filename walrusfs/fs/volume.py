"""The mounted volume's shared state: what the handlers ask of the rest of the mount
(ops.Control: room to write, statfs, the control commands), and what status reports
(balances, prices, node health, refreshed in the background)."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import stat
import time
from typing import Any

import pyfuse3
import trio

import codec
from cache.staging import Staging
from chain import errors as chain_errors
from chain.client import WalrusChain
from chain.pricing import store_cost
from codec.params import storage_units
from walrusfs.fs import blobs, schema
from walrusfs.fs.checkpoint import Checkpointer
from walrusfs.fs.content import Content
from walrusfs.fs.lifetime import Renewer
from walrusfs.fs.options import MountOptions
from walrusfs.fs.pool import POOL_SPARE
from walrusfs.fs.uploader import Uploader
from walrusfs.store.client import WalrusStore
from walrusfs.store.errors import StoreError
from walrusfs.store.nodes import StorageNode

log = logging.getLogger(__name__)

STATFS_TTL = 5.0
REFRESH_INTERVAL = 60.0
HEALTH_INTERVAL = 10.0  # seconds between probes of the storage nodes' health


class Volume:
    """The state shared by handlers, uploader and control commands (ops.Control)."""

    def __init__(
        self,
        options: MountOptions,
        db: sqlite3.Connection,
        *,
        staging: Staging,
        store: WalrusStore,
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
        self.store = store
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
        #: the volume's storage pool as last read: id, capacity, used, end epoch, renewal cost
        self.pool: dict[str, object] | None = None
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
        they cannot (uploads failing: no WAL, nodes unreachable).

        Args:
            nbytes: what the write adds to staging.

        Raises:
            pyfuse3.FUSEError: ENOSPC, when uploads fail with none in flight, or nothing was
                freed for 60 s.
        """
        while self.staging.used_bytes + nbytes > self.options.staging_limit:
            if self.uploader.stats.failing and not self.uploader.inflight:
                log.error(
                    "staging is full (%d bytes) and uploads fail: %s",
                    self.staging.used_bytes,
                    self.uploader.stats.last_error,
                )
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
        """A control attribute set on the mount's root (`user.walrusfs.ctl.<name>`); `sync`
        is the only one.

        Raises:
            OSError: the sync failed; its reason is kept in `sync_error` (setxattr carries
                only the errno back).
            pyfuse3.FUSEError: EINVAL for another name.
        """
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
        """A control attribute read on the mount's root: `pid` or `status`.

        Raises:
            pyfuse3.FUSEError: ENOATTR for another name.
        """
        if name == "pid":
            return os.getpid()
        if name == "status":
            return self.status()
        raise pyfuse3.FUSEError(pyfuse3.ENOATTR)

    def status(self) -> dict[str, Any]:
        sizes = self.uploader.pending_sizes()
        st = self.uploader.stats
        stored = blobs.totals(self.db)
        cache = self.store.cache
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
                "wal_spent": st.wal_spent
                + (0 if self.uploader.pool is None else self.uploader.pool.paid),
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
                "resumed": st.resumed,
            },
            "stored": {
                "blobs": stored.count,
                "bytes": stored.size,
                "encoded_bytes": stored.encoded_size,
                "earliest_end_epoch": stored.earliest_end_epoch,
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
            "pool": self.pool,
            "nodes": self.nodes,
            "nodes_checked_at": self.nodes_at,
            "sync_error": self.sync_error,
            "lifetime": {
                "epoch": self.renewer.epoch,
                "renew": self.renewer.policy.enabled,
                "horizon": self.renewer.policy.horizon,
                "extend_by": self.renewer.policy.epochs,
                "extended": self.renewer.extended,
                "pool_renewals": self.renewer.pool_renewals,
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
        store = self.store
        committee = await store.committee()
        found: list[dict[str, Any]] = []

        async def probe(node: StorageNode) -> None:
            health = await store.nodes.health(node)
            found.append(
                {
                    "name": node.name,
                    "url": node.url,
                    "shards": len(node.shards),
                    "healthy": health is not None,
                    "epoch": None if health is None else health.get("epoch"),
                }
            )

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
                s.storage_size
                for s in await self.chain.storage_resources()
                if s.start_epoch <= info.epoch
            )
            await self._read_pool(info.storage_price)
            await self._probe_nodes()
        except (chain_errors.ChainError, OSError) as exc:
            log.warning("could not refresh balances: %s", exc)

    async def _read_pool(self, storage_price: int) -> None:
        """The volume's storage pool for status, with what its next renewal will cost (the
        capacity in use plus the spare kept, for the renewal epochs)."""
        pool_id = schema.get_param(self.db, "pool")
        if not pool_id:
            return
        state = await self.chain.pools.get(pool_id)
        kept = min(state.capacity, state.used + int(state.used * POOL_SPARE))
        epochs = self.renewer.policy.epochs if self.renewer is not None else 0
        self.pool = {
            "id": state.id,
            "capacity": state.capacity,
            "used": state.used,
            "blobs": state.blob_count,
            "end_epoch": state.end_epoch,
            "renewal_epochs": epochs,
            "renewal_cost": storage_units(kept) * storage_price * epochs,
        }
