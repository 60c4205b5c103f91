"""The lifetime and cost of a volume's blobs, for real (a devnet of processes, `walrusfs
mount` daemons, epochs advanced by hand): renewals keep blobs past their end epoch, expiry is
reported before and named after, deleting small files compacts quilts and the next uploads
reuse the freed Storage, and a wallet without WAL pauses uploads (writes stage, then ENOSPC)
and makes sync fail until it is funded, losing nothing."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chain import move_types as mt
from chain.client import SystemInfo, WalrusChain
from chain.ptb import Ptb
from tests.devnet_harness import RunningDevnet, node_requests, start_devnet
from tests.mount_harness import Mount

N_SHARDS = 100


@pytest.fixture(scope="module")
def dn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevnet]:
    yield from start_devnet(tmp_path_factory.mktemp("lifetime-home"), n_shards=N_SHARDS)


def _volume_blobs(dn: RunningDevnet, volume_id: str) -> tuple[dict[str, str], int]:
    """(object ID -> walrusfs:kind of the volume's live Blob objects, bytes of the wallet's
    Storage resources not attached to a blob)."""

    async def go(chain: WalrusChain) -> tuple[dict[str, str], int]:
        blobs = await chain.blobs()
        attrs = await chain.attributes_of([b.id for b in blobs])
        mine = {
            i: a.get("walrusfs:kind", "")
            for i, a in attrs.items()
            if a.get("walrusfs:volume") == volume_id
        }
        return mine, sum(s.storage_size for s in await chain.storage_resources())

    return dn.on_chain(go)


def test_deleting_small_files_compacts_quilts_and_reuses_storage(
    dn: RunningDevnet, tmp_path: Path
) -> None:
    """700 small files (11 quilts of up to 66), 7 of them kept: deleting the others leaves
    quilts with one live file each, which sync compacts into one new quilt; the old quilts
    are deleted and their Storage goes back to the wallet, and the next 700 files reuse it."""
    m = Mount(dn, tmp_path / "mnt", "compact")
    m.mount("--upload-delay", "0.5", "--no-storage-pool")  # owned Blobs: Storage comes back
    try:
        files = {f"f{i:04d}": os.urandom(200 + i) for i in range(700)}
        for name, data in files.items():
            (m.path / name).write_bytes(data)
        m.sync()
        st = m.status()
        first_wal = st["uploaded"]["wal_spent"]
        quilts_before = st["uploaded"]["quilts"]
        assert quilts_before >= 700 // 66
        volume_id = st["volume_id"]
        keep = {name for i, name in enumerate(files) if i % 100 == 50}
        for name in files:
            if name not in keep:
                (m.path / name).unlink()
        m.sync()
        st = m.status()
        assert st["uploaded"]["compacted_quilts"] == len(keep)
        assert st["uploaded"]["restaged_chunks"] == len(keep)
        assert st["uploaded"]["quilts"] == quilts_before + 1  # the keepers, quilted together
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            blobs, free_storage = _volume_blobs(dn, volume_id)
            if sorted(blobs.values()).count("quilt") == 1:
                break
            time.sleep(2)
        assert sorted(blobs.values()).count("quilt") == 1, blobs
        assert free_storage >= st["stored"]["encoded_bytes"]  # the deleted quilts' Storage
        for name in keep:
            assert (m.path / name).read_bytes() == files[name]

        again = {f"g{i:04d}": os.urandom(200 + i) for i in range(700)}
        for name, data in again.items():
            (m.path / name).write_bytes(data)
        m.sync()
        st = m.status()
        second_wal = st["uploaded"]["wal_spent"] - first_wal
        _, free_after = _volume_blobs(dn, volume_id)
        assert free_after < free_storage / 4  # used again, not reserved anew ...
        assert second_wal < first_wal / 2  # ... so only write fees are paid
        m.umount()
        m.drop_cache()
        m.mount()
        for name in keep:
            assert (m.path / name).read_bytes() == files[name]
        for name in list(again)[::97]:
            assert (m.path / name).read_bytes() == again[name]
    finally:
        m.teardown()


#: files of the pooled-renewal test (WALRUSFS_POOL_FILES: fewer for a quick run)
POOL_FILES = int(os.environ.get("WALRUSFS_POOL_FILES", "5000"))


def _renewal_transactions(dn: RunningDevnet, first: int, last: int) -> tuple[int, int]:
    """(transactions that extended a storage pool, transactions that extended an owned Blob)
    in checkpoints (first, last], counted from the Walrus events the stand-in emitted."""

    async def go(chain: WalrusChain) -> tuple[int, int]:
        package = (await chain.system_info()).type_package
        pools: set[str] = set()
        owned: set[str] = set()
        for seq in range(first + 1, last + 1):
            for ev in await chain.checkpoint_events(seq, package) or []:
                if ev.name == "StoragePoolExtended":
                    pools.add(ev.tx_digest)
                elif ev.name == "BlobCertified" and mt.BlobCertified.from_bcs(ev.bcs).is_extension:
                    owned.add(ev.tx_digest)
        return len(pools), len(owned)

    return dn.on_chain(go)


def _checkpoint(dn: RunningDevnet) -> int:
    async def go(chain: WalrusChain) -> int:
        return await chain.latest_checkpoint()

    return dn.on_chain(go)


def test_a_pooled_volume_is_renewed_by_one_transaction_and_restores_anywhere(
    dn: RunningDevnet, tmp_path: Path
) -> None:
    """A new volume keeps its quilts, blobs and checkpoints in one pool: no owned Blob of the
    volume is made, each renewal is one transaction on chain (one extension of the pool,
    counted from the chain's events) whatever the number of files, and the volume restores
    from the chain on a fresh home."""
    files = {f"small-{i:04d}": os.urandom(300 + i % 700) for i in range(POOL_FILES)}
    files["large"] = os.urandom(2_500_000)
    m = Mount(dn, tmp_path / "mnt", "pooled")
    m.mount("--epochs", "2", "--renew-horizon", "1", "--storage-pool", "--upload-delay", "0.5")
    try:
        for name, data in files.items():
            (m.path / name).write_bytes(data)
        m.sync()
        st = m.status()
        pool = st["pool"]
        assert pool is not None and pool["blobs"] >= 3, st  # quilts, the large file, a checkpoint
        volume_id = st["volume_id"]

        async def on_chain(chain: WalrusChain) -> tuple[int, int, int]:
            owned = await chain.blobs(pooled=False)
            attrs = await chain.attributes_of([b.id for b in owned])
            mine = sum(a.get("walrusfs:volume") == volume_id for a in attrs.values())
            state = await chain.pools.get(pool["id"])
            return mine, state.blob_count, state.end_epoch

        owned, in_pool, end = dn.on_chain(on_chain)
        assert owned == 0, "a pooled volume made an owned Blob"
        assert in_pool == pool["blobs"]
        renewals = st["lifetime"]["pool_renewals"]
        first = _checkpoint(dn)
        for _ in range(4):  # twice the bought lifetime
            _advance(dn, 1)
            m.sync()
            st = m.status()
            assert st["stored"]["earliest_end_epoch"] > st["lifetime"]["epoch"], st
        assert st["lifetime"]["pool_renewals"] - renewals >= 2
        pool_txs, owned_txs = _renewal_transactions(dn, first, _checkpoint(dn))
        assert pool_txs == st["lifetime"]["pool_renewals"] - renewals, "one transaction each"
        assert owned_txs == 0, "a blob of the pooled volume was extended on its own"
        _, in_pool_after, end_after = dn.on_chain(on_chain)
        assert end_after > end
        # each renewal was one transaction (one extension of the pool) moving the end epoch of
        # every blob: the quilts, the large file and the checkpoint at least
        assert st["lifetime"]["extended"] >= 3 * (st["lifetime"]["pool_renewals"] - renewals)
        assert in_pool_after >= 3
        m.umount()
        m.drop_cache()
        for leftover in m.volume_dir.iterdir():  # a fresh home: only the chain holds the volume
            if leftover.is_file() and leftover.name.startswith("meta.db"):
                leftover.unlink()
        m.mount()
        for name in [*list(files)[::10], "large"]:
            assert (m.path / name).read_bytes() == files[name]
        assert m.status()["pool"]["id"] == pool["id"]
    finally:
        m.teardown()


def test_a_volume_of_owned_blobs_migrates_to_a_pool_without_uploading_again(
    dn: RunningDevnet, tmp_path: Path
) -> None:
    """`fsck --migrate-to-pool` registers each blob in use in a new pool from what the nodes
    hold (no sliver is sent again), deletes the owned Blobs, and the volume then reads back
    byte-exact, also after a restore from the chain on a fresh home."""
    files = {f"m-{i:02d}": os.urandom(500 + i) for i in range(40)}
    files["large"] = os.urandom(1_500_000)
    m = Mount(dn, tmp_path / "mnt", "migrate")
    m.mount("--upload-delay", "0.3", "--no-storage-pool")  # as volumes made before pools
    try:
        for name, data in files.items():
            (m.path / name).write_bytes(data)
        m.sync()
        volume_id = m.status()["volume_id"]
        m.umount()

        async def owned_of_volume(chain: WalrusChain) -> int:
            owned = await chain.blobs(pooled=False)
            attrs = await chain.attributes_of([b.id for b in owned])
            return sum(a.get("walrusfs:volume") == volume_id for a in attrs.values())

        def sliver_puts() -> int:
            return sum(
                count
                for node in node_requests(dn).values()
                for name, count in node.items()
                if name.startswith("PUT put_sliver ")
            )

        owned_before, puts_before = dn.on_chain(owned_of_volume), sliver_puts()
        out = dn.cli("fsck", "--volume", "migrate", "--migrate-to-pool").stdout
        assert "0 uploaded again" in out, out
        moved = int(out.split("blob(s) in storage pool")[0].split()[-1])
        assert moved >= 2  # the quilt(s) and the large file at least
        assert sliver_puts() == puts_before, "the migration sent slivers again"
        assert dn.on_chain(owned_of_volume) == owned_before  # deleted after a checkpoint
        m.mount()
        st = m.status()
        assert st["pool"] is not None and st["pool"]["blobs"] >= moved
        for name, data in files.items():
            assert (m.path / name).read_bytes() == data
        m.sync()  # a checkpoint of the migrated rows; then the old Blobs are deleted
        deadline = time.monotonic() + 120
        while dn.on_chain(owned_of_volume) > owned_before - moved:
            assert time.monotonic() < deadline, "the old Blobs were not deleted"
            time.sleep(2)
            m.sync()
        m.umount()
        m.drop_cache()
        for leftover in m.volume_dir.iterdir():  # a fresh home: only the chain holds it
            if leftover.is_file() and leftover.name.startswith("meta.db"):
                leftover.unlink()
        m.mount()
        for name, data in files.items():
            assert (m.path / name).read_bytes() == data
        assert m.status()["pool"]["id"] == st["pool"]["id"]
    finally:
        m.teardown()


def _advance(dn: RunningDevnet, epochs: int) -> None:
    dn.cli("devnet", "epoch", "advance", str(epochs))


def test_renewals_keep_blobs_past_their_end_epoch(dn: RunningDevnet, tmp_path: Path) -> None:
    files = {f"small-{i}": os.urandom(1000 + i) for i in range(5)}
    files["large"] = os.urandom(2_500_000)
    m = Mount(dn, tmp_path / "mnt", "renew")
    m.mount("--epochs", "2", "--renew-horizon", "1")
    try:
        for name, data in files.items():
            (m.path / name).write_bytes(data)
        m.sync()
        start = m.status()
        first_end = start["stored"]["earliest_end_epoch"]
        assert first_end == start["lifetime"]["epoch"] + 2
        for _ in range(6):  # three times the bought lifetime
            _advance(dn, 1)
            m.sync()
            st = m.status()
            assert st["stored"]["earliest_end_epoch"] > st["lifetime"]["epoch"], st
        assert st["lifetime"]["extended"] >= 3
        assert st["lifetime"]["wal_spent"] > 0
        m.umount()
        m.drop_cache()
        m.mount()  # the policy is the volume's: kept without the options
        assert m.status()["lifetime"]["horizon"] == 1
        for name, data in files.items():
            assert (m.path / name).read_bytes() == data
    finally:
        m.teardown()


def test_expiry_is_reported_before_and_named_after(dn: RunningDevnet, tmp_path: Path) -> None:
    data = os.urandom(1_500_000)
    m = Mount(dn, tmp_path / "mnt", "no-renew")
    m.mount("--epochs", "3", "--no-renew")
    try:
        (m.path / "doomed.bin").write_bytes(data)
        m.sync()
        _advance(dn, 1)  # two epochs left: within the warning horizon
        m.sync()
        st = m.status()
        assert st["lifetime"]["renew"] is False
        assert st["lifetime"]["expiring_blobs"] >= 1
        assert st["lifetime"]["expiring_by_epoch"] == st["lifetime"]["epoch"] + 2
        human = dn.cli("status", str(m.path)).stdout
        assert "EXPIRING" in human and "renewals are off" in human
        assert "expire by epoch" in m.log_tail(200)
        _advance(dn, 3)  # past the end epoch: the nodes drop the slivers
        m.umount()
        m.drop_cache()
        m.mount()
        deadline = time.monotonic() + 30
        while m.status()["lifetime"]["epoch"] is None and time.monotonic() < deadline:
            time.sleep(0.2)
        with pytest.raises(OSError) as err:
            (m.path / "doomed.bin").read_bytes()
        assert err.value.errno == 5
        log = m.log_tail(200)
        assert "cannot read doomed.bin" in log and "expired at epoch" in log
        m.umount("--no-sync")
        r = _fsck(dn, "no-renew")
        assert r.returncode == 11, r.stdout + r.stderr
        assert "LOST" in r.stdout and "doomed.bin" in r.stdout and "expired" in r.stdout
    finally:
        m.teardown()


def _fsck(dn: RunningDevnet, volume: str) -> subprocess.CompletedProcess[str]:
    return dn.cli("fsck", "--volume", volume, check=False, timeout=600)


def _send_wal_away(dn: RunningDevnet) -> int:
    """Leave the wallet without WAL (sent to an address nobody holds)."""

    async def go(chain: WalrusChain) -> int:
        amount = (await chain.balances()).wal

        def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
            (part,) = ptb.split_coins(wal, [ptb.u64(amount)])
            ptb.transfer([part], "0x" + "5a" * 32)

        await chain.execute_ptb(build, wal_needed=amount)
        assert (await chain.balances()).wal == 0
        return amount

    return dn.on_chain(go)


def test_without_wal_uploads_pause_writes_stage_then_enospc(
    dn: RunningDevnet, tmp_path: Path
) -> None:
    """No WAL loses nothing: uploads pause, status says what is missing, writes go on into
    staging up to its limit, then ENOSPC; funding the wallet resumes the uploads."""
    m = Mount(dn, tmp_path / "mnt", "broke")
    m.mount("--upload-delay", "0.2", "--staging-limit", "4M")
    try:
        _send_wal_away(dn)
        first = os.urandom(1_500_000)
        (m.path / "first.bin").write_bytes(first)
        deadline = time.monotonic() + 60
        while not m.status()["funds"]["paused"] and time.monotonic() < deadline:
            time.sleep(0.2)
        funds = m.status()["funds"]
        assert funds["paused"] and funds["currency"] == "WAL", funds
        assert funds["held"] == 0 and funds["missing"] == funds["needed"] > 0
        human = dn.cli("status", str(m.path)).stdout
        assert "PAUSED" in human and "walrusfs wallet get-wal" in human
        assert "uploads paused: not enough WAL" in m.log_tail(100)
        second = os.urandom(2_000_000)
        (m.path / "second.bin").write_bytes(second)  # still within the staging limit
        with pytest.raises(OSError) as err:
            (m.path / "third.bin").write_bytes(os.urandom(2_000_000))
        assert err.value.errno == errno.ENOSPC
        assert (m.path / "first.bin").read_bytes() == first
        assert (m.path / "second.bin").read_bytes() == second
        (m.path / "third.bin").unlink()
        r = dn.cli("sync", str(m.path), check=False, timeout=300)
        assert r.returncode == 5 and "staged" in r.stderr  # documented: sync exit 5, kept
        m.umount("--no-sync")  # fsck cannot upload either: exit 5, everything still staged
        r = dn.cli("fsck", "--volume", "broke", check=False, timeout=300)
        assert r.returncode == 5 and "it stays staged" in r.stderr, r.stdout + r.stderr
        m.mount()

        got = dn.cli("wallet", "get-wal", "100")
        assert "100.000000000 WAL" in got.stdout
        m.sync()
        st = m.status()
        assert not st["funds"]["paused"] and st["pending"]["chunks"] == 0
        m.umount()
        m.drop_cache()
        m.mount()
        assert (m.path / "first.bin").read_bytes() == first
        assert (m.path / "second.bin").read_bytes() == second
        assert os.getxattr(m.path / "second.bin", "user.walrus.state") == b"certified"
    finally:
        m.teardown()


def test_sync_fails_while_a_renewal_fails(dn: RunningDevnet, tmp_path: Path) -> None:
    """`walrusfs sync` promises the volume survives the loss of this machine: with renewals
    on and no WAL to pay for a due extension, it must say so (exit 5), not exit 0 while the
    blobs and the checkpoint run out; once funded, sync renews and succeeds."""
    m = Mount(dn, tmp_path / "mnt", "renew-unpaid")
    m.mount("--epochs", "2", "--renew-horizon", "1")
    try:
        (m.path / "f").write_bytes(os.urandom(100_000))
        m.sync()
        _send_wal_away(dn)
        _advance(dn, 1)  # one epoch left: within the horizon, the extension is due
        r = dn.cli("sync", str(m.path), check=False, timeout=300)
        assert r.returncode == 5 and "renewal failed" in r.stderr, r.stdout + r.stderr
        dn.cli("wallet", "get-wal", "100")
        m.sync()
        st = m.status()
        assert st["lifetime"]["extended"] >= 1
        assert st["stored"]["earliest_end_epoch"] > st["lifetime"]["epoch"] + 1
    finally:
        m.teardown()
