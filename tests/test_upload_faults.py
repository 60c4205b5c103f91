"""Uploads under faults, for real (a devnet of processes, `walrusfs mount` daemons): what a
failure may cost (never a second registration, never a second upload of a certified blob),
and what it must not do (turn sparse files or one bad batch into ENOSPC for every writer)."""

from __future__ import annotations

import errno
import os
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chain.client import WalrusChain
from tests.devnet_harness import RunningDevnet, SharedDevnets, heal_all
from tests.mount_harness import Mount
from walrusfs.fs.upload_worker import _read

N_SHARDS = 100
MiB = 1 << 20


@pytest.fixture(scope="module")
def dn(devnets: SharedDevnets, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevnet]:
    yield devnets.account(N_SHARDS, tmp_path_factory.mktemp("faults-home"))


def _wal(dn: RunningDevnet) -> int:
    async def go(chain: WalrusChain) -> int:
        return (await chain.balances()).wal

    return dn.on_chain(go)


def _volume_blobs(dn: RunningDevnet, volume_id: str) -> list[tuple[str, str, bool]]:
    """(object ID, walrusfs:kind, certified) of every Blob object of the volume the wallet
    holds, certified or not."""

    async def go(chain: WalrusChain) -> list[tuple[str, str, bool]]:
        blobs = await chain.blobs()
        attrs = await chain.attributes_of([b.id for b in blobs])
        return [
            (b.id, attrs[b.id].get("walrusfs:kind", ""), b.is_certified)
            for b in blobs
            if attrs[b.id].get("walrusfs:volume") == volume_id
        ]

    return dn.on_chain(go)


def _content(blobs: list[tuple[str, str, bool]]) -> list[tuple[str, bool]]:
    """The data blobs and quilts (checkpoints left out), as (kind, certified), sorted."""
    return sorted((kind, ok) for _, kind, ok in blobs if kind in ("data", "quilt"))


def _wait(what: Callable[[], bool], timeout: float, why: str) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {why}")
        time.sleep(0.5)


def _files(seed: int) -> dict[str, bytes]:
    """A file for a blob of its own and two for a quilt (each the same size per seed)."""
    rnd = random.Random(seed)
    return {
        "large.bin": rnd.randbytes(6 * MiB),
        "small-1.txt": rnd.randbytes(3000),
        "small-2.txt": rnd.randbytes(5000),
    }


#: how long the nodes stay down at least (CI: one failed round, about a minute)
OUTAGE_SECONDS = float(os.environ.get("WALRUSFS_OUTAGE_SECONDS", "0"))


def test_an_outage_of_the_nodes_pays_each_registration_once(
    dn: RunningDevnet, tmp_path: Path
) -> None:
    """Every storage node stopped while uploads run: each failed attempt registered (and
    paid for) a new Blob; now the retries continue the first registration, no uncertified
    Blob is left, and the WAL spent is what an uninterrupted run spends."""
    steady = Mount(dn, tmp_path / "steady", "steady")
    steady.mount()  # nothing syncs (a sync adds a checkpoint blob): the uploader alone
    try:
        before = _wal(dn)
        for name, data in _files(1).items():
            (steady.path / name).write_bytes(data)
        _wait(lambda: steady.status()["pending"]["chunks"] == 0, 120, "the steady uploads")
        cost = before - _wal(dn)
        assert cost > 0
    finally:
        steady.teardown()

    m = Mount(dn, tmp_path / "outage", "outage")
    m.mount()
    try:
        volume_id = m.status()["volume_id"]
        for i in range(dn.spec.n_nodes):
            dn.devnet.node_stop(i)
        before = _wal(dn)
        files = _files(2)
        for name, data in files.items():
            (m.path / name).write_bytes(data)
        # each attempt registers, then gives up after the store's 60 s deadline
        began = time.monotonic()
        # one failed round (each upload registered, then failed): the retry after the outage
        # must continue those registrations. `make soak` keeps the nodes down for ten minutes,
        # many failed rounds, each of which must not register again either.
        _wait(lambda: m.status()["uploaded"]["failures"] >= 2, 400, "a failed round")
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - began)))  # `make soak`: 10 min
        heal_all(dn)
        _wait(lambda: m.status()["pending"]["chunks"] == 0, 400, "the uploads after the outage")
        assert before - _wal(dn) == cost  # the same as without the outage
        assert _content(_volume_blobs(dn, volume_id)) == [("data", True), ("quilt", True)]
        for name, data in files.items():
            assert (m.path / name).read_bytes() == data
    finally:
        heal_all(dn)
        m.teardown()


def test_sparse_files_count_their_blocks_and_holes_stay_holes(
    dn: RunningDevnet, tmp_path: Path
) -> None:
    """fsstress's sparse files: 600 MiB apparent in a 64 MiB staging limit are a few hundred
    KiB on disk, so writes go on; a chunk of zeros only is no blob; a chunk's trailing hole
    is not uploaded (and reads back as zeros)."""
    m = Mount(dn, tmp_path / "sparse", "sparse")
    m.mount("--staging-limit", "64M", "--upload-delay", "3600")  # nothing uploads meanwhile
    try:
        head = os.urandom(MiB - 1) + b"\1"  # ends in a non-zero byte
        with open(m.path / "tail-hole.bin", "wb") as f:
            f.write(head)
            f.seek(60 * MiB)  # one zero byte at the end: 59 MiB of hole before it
            f.write(b"\0")
        with open(m.path / "zero-chunk.bin", "wb") as f:
            f.write(head)
            f.seek(64 * MiB)
            f.write(bytes(2 * MiB))  # the second chunk: zeros only
        tail = os.urandom(8191) + b"\1"
        for i in range(10):  # 600 MiB apparent, 10 x 12 KiB on disk
            with open(m.path / f"sparse-{i}", "wb") as f:
                f.write(tail)
                f.seek(60 * MiB)
                f.write(b"\0")
        assert m.status()["staging"]["bytes"] < 16 * MiB
        m.sync()
        st = m.status()
        assert st["pending"]["chunks"] == 0
        # the uploads hold the bytes up to the last non-zero one of each chunk
        assert st["uploaded"]["bytes"] == MiB + MiB + 10 * 8192
        blob_ids = os.getxattr(m.path / "zero-chunk.bin", "user.walrus.blob_id").split()
        assert len(blob_ids) == 1  # chunk 1 is a hole
        m.umount()
        m.drop_cache()
        m.mount()
        with open(m.path / "tail-hole.bin", "rb") as f:
            assert f.read(MiB) == head
            assert f.read() == bytes(59 * MiB + 1)
        with open(m.path / "zero-chunk.bin", "rb") as f:
            assert f.read(MiB) == head
            f.seek(64 * MiB)
            assert f.read() == bytes(2 * MiB)
        assert os.stat(m.path / "zero-chunk.bin").st_size == 66 * MiB
        with open(m.path / "sparse-3", "rb") as f:
            assert f.read(8192) == tail and f.read() == bytes(60 * MiB - 8192 + 1)
    finally:
        m.teardown()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 50 MiB tmpfs: a WALRUSFS_HOME whose disk fills up, for real (tests run as root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    root = tmp_path / "small-disk"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=50m", "tmpfs", str(root)], check=True)
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=True)


def _fill(path: Path) -> None:
    """Write data (not holes) into `path` until its filesystem is full, to the last page."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for piece in (MiB, 4096):
            try:
                while True:
                    os.write(fd, os.urandom(piece))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def _mkdir(path: Path) -> Callable[[], None]:
    return path.mkdir


def _write_synced(path: Path) -> Callable[[], None]:
    def go() -> None:
        with open(path, "wb") as f:
            f.write(os.urandom(4 * MiB))
            os.fsync(f.fileno())

    return go


def test_a_full_home_commits_certified_uploads_without_paying_again(
    dn: RunningDevnet, tmpfs: Path
) -> None:
    """WALRUSFS_HOME on a full disk: uploads certify, and recording them fails ("database
    or disk is full"): the certified result is committed once there is room again, never
    uploaded (nor paid for) again; the volume then remounts and reads back, no blob
    orphaned."""
    there = dn.sibling(tmpfs / "home")  # the network and the account live on
    m = Mount(there, tmpfs.parent / "mnt-full", "full")
    m.mount("--upload-delay", "3600")  # uploads when the sync asks
    try:
        volume_id = m.status()["volume_id"]
        files = {"blob.bin": os.urandom(6 * MiB), "quilted.bin": os.urandom(200_000)}
        for name, data in files.items():
            (m.path / name).write_bytes(data)
        _fill(tmpfs / "filler")
        # what a writer sees on the full disk is ENOSPC, never EIO (a wedge once followed)
        refused = 0
        for attempt in (_mkdir(m.path / "newdir"), _write_synced(m.path / "more.bin")):
            try:
                attempt()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                refused += 1
        assert refused, "nothing was refused on a full disk"
        r = there.cli("sync", str(m.path), check=False, timeout=600)
        assert r.returncode == 5, r.stdout + r.stderr
        st = m.status()
        assert st["pending"]["chunks"] == 2 and st["uploaded"]["blobs"] == 0
        certified = _content(_volume_blobs(dn, volume_id))
        assert certified == [("data", True), ("quilt", True)]
        time.sleep(40)  # the back-off (15 s, 30 s): before, each retry uploaded again
        assert _content(_volume_blobs(dn, volume_id)) == certified
        (tmpfs / "filler").unlink()
        _wait(lambda: m.status()["pending"]["chunks"] == 0, 60, "the commits")
        assert _content(_volume_blobs(dn, volume_id)) == certified
        m.umount()
        m.drop_cache()
        m.mount()
        for name, data in files.items():
            assert (m.path / name).read_bytes() == data
        assert _content(_volume_blobs(dn, volume_id)) == certified  # no orphan, none again
    finally:
        m.teardown()


def test_the_worker_reads_a_chunk_up_to_its_plan_without_trailing_zeros(tmp_path: Path) -> None:
    """A chunk file that grew after its quilt was planned is read only up to the planned size
    (the quilt cannot outgrow its plan: "quilt needs symbol size 105206 > 65534"; the write
    moved the chunk's generation, so the commit skips it and it uploads again); trailing
    zeros are left out, and a chunk of zeros only has no bytes to store at all."""
    path = tmp_path / "chunk"
    planned = os.urandom(70_000) + b"\1"
    path.write_bytes(planned + os.urandom(5 * MiB))  # grew after the plan
    assert _read(str(path), None, 0, len(planned)) == (planned, len(planned))
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(planned)
        f.seek(40 * MiB)
        f.write(b"\0")  # a trailing hole, and a zero byte written at its end
    assert _read(str(path), None) == (planned, len(planned))
    path.write_bytes(bytes(3 * MiB))
    assert _read(str(path), None) == (b"", 0)
