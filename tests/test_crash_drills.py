"""Crash drills in the manner of CrashMonkey/ACE: short workloads (at most three operations and
their fsyncs), kill -9 of the mount (daemon and upload worker) at the last fsync or while the
upload that follows runs, then `walrusfs fsck` and a mount, and the state compared with what
POSIX promises:

- every byte that was fsynced before the kill is there;
- a rename is atomic: the target holds the old or the new file, never neither, and after an
  fsync of the directory it holds the new one;
- fsck exits 0 (clean) or 10 (repaired, nothing lost), never 11 or an internal error;
- the next mount succeeds without help.

The workloads run side by side, each in its own directory of one volume, so one kill tests
them all; `make soak` runs the same drills many times with kills at random moments
(WALRUSFS_CRASH_RUNS).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import codec
from chain.client import WalrusChain
from tests.devnet_harness import RunningDevnet, heal_all, node_requests, start_devnet
from tests.mount_harness import Mount
from walrusfs.fs.plans import PLANS_DIR

N_SHARDS = 100
RUNS = int(os.environ.get("WALRUSFS_CRASH_RUNS", "1"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevnet]:
    yield from start_devnet(tmp_path_factory.mktemp("crash-home"), n_shards=N_SHARDS)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _uncertified(dn: RunningDevnet, volume_id: str) -> list[str]:
    async def go(chain: WalrusChain) -> list[str]:
        blobs = [b for b in await chain.blobs() if b.certified_epoch is None]
        attrs = await chain.attributes_of([b.id for b in blobs])
        return [i for i, a in attrs.items() if a.get("walrusfs:volume") == volume_id]

    return dn.on_chain(go)


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _write(path: Path, data: bytes, *, sync: bool = True) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _content(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


@dataclass
class Workload:
    """`run(dir)` does the operations (leaving any open descriptors in `held`); `check(dir)`
    asserts what must hold after a crash at any moment after `run` returned."""

    name: str
    run: Callable[[Path, list[int]], None]
    check: Callable[[Path], None]


OLD, NEW = os.urandom(70_000), os.urandom(90_000)  # both past small.db's 64 KiB
SMALL_OLD, SMALL_NEW = os.urandom(3_000), os.urandom(5_000)


def _rename_over(d: Path, held: list[int]) -> None:
    _write(d / "target", OLD)
    _write(d / "new", NEW)
    os.rename(d / "new", d / "target")
    _fsync_path(d)


def _rename_over_check(d: Path) -> None:
    assert _content(d / "target") == NEW
    assert not (d / "new").exists()


def _rename_unsynced(d: Path, held: list[int]) -> None:
    _write(d / "target", SMALL_OLD)
    _write(d / "new", SMALL_NEW)
    os.rename(d / "new", d / "target")  # no fsync of the directory: either state is fine


def _rename_unsynced_check(d: Path) -> None:
    state = (_content(d / "target"), _content(d / "new"))
    assert state in {(SMALL_OLD, SMALL_NEW), (SMALL_NEW, None)}, "rename was not atomic"


def _open_unlinked(d: Path, held: list[int]) -> None:
    _write(d / "keep", OLD)
    fd = os.open(d / "gone", os.O_CREAT | os.O_RDWR, 0o644)
    os.write(fd, NEW)
    os.fsync(fd)
    os.unlink(d / "gone")
    os.write(fd, b"more after the unlink")  # the file lives on while open
    _fsync_path(d)
    held.append(fd)


def _open_unlinked_check(d: Path) -> None:
    assert _content(d / "keep") == OLD
    assert sorted(p.name for p in d.iterdir()) == ["keep"]


def _symlink_replaced(d: Path, held: list[int]) -> None:
    os.symlink("first", d / "link")
    os.symlink("second", d / "link.tmp")
    os.rename(d / "link.tmp", d / "link")
    _fsync_path(d)


def _symlink_replaced_check(d: Path) -> None:
    assert os.readlink(d / "link") == "second"
    assert not (d / "link.tmp").is_symlink()


def _link_then_unlink(d: Path, held: list[int]) -> None:
    _write(d / "a", NEW)
    os.link(d / "a", d / "b")
    os.unlink(d / "a")
    _fsync_path(d)


def _link_then_unlink_check(d: Path) -> None:
    assert _content(d / "b") == NEW and not (d / "a").exists()
    assert (d / "b").stat().st_nlink == 1


def _truncate(d: Path, held: list[int]) -> None:
    _write(d / "f", NEW)
    os.truncate(d / "f", 1000)
    with open(d / "f", "rb+") as f:
        os.fsync(f.fileno())


def _truncate_check(d: Path) -> None:
    assert _content(d / "f") == NEW[:1000]


def _overwrite_middle(d: Path, held: list[int]) -> None:
    _write(d / "f", OLD)
    fd = os.open(d / "f", os.O_WRONLY)
    try:
        os.pwrite(fd, b"x" * 4096, 30_000)
        os.fsync(fd)
    finally:
        os.close(fd)


def _overwrite_middle_check(d: Path) -> None:
    assert _content(d / "f") == OLD[:30_000] + b"x" * 4096 + OLD[34_096:]


def _dir_rename(d: Path, held: list[int]) -> None:
    (d / "src").mkdir()
    _write(d / "src" / "f", SMALL_NEW)
    os.rename(d / "src", d / "dst")
    _fsync_path(d)


def _dir_rename_check(d: Path) -> None:
    assert _content(d / "dst" / "f") == SMALL_NEW and not (d / "src").exists()


WORKLOADS = [
    Workload("rename-over", _rename_over, _rename_over_check),
    Workload("rename-unsynced", _rename_unsynced, _rename_unsynced_check),
    Workload("open-unlinked", _open_unlinked, _open_unlinked_check),
    Workload("symlink-replaced", _symlink_replaced, _symlink_replaced_check),
    Workload("link-unlink", _link_then_unlink, _link_then_unlink_check),
    Workload("truncate", _truncate, _truncate_check),
    Workload("overwrite-middle", _overwrite_middle, _overwrite_middle_check),
    Workload("dir-rename", _dir_rename, _dir_rename_check),
]


def _drill(dn: RunningDevnet, m: Mount, *, wait: float) -> None:
    """One round: every workload in a fresh directory, kill -9 after `wait` seconds, fsck,
    mount, check; leaves the volume mounted."""
    base = m.path / f"round-{time.monotonic_ns()}"
    base.mkdir()
    held: list[int] = []
    try:
        for w in WORKLOADS:
            (base / w.name).mkdir()
            w.run(base / w.name, held)
        _fsync_path(base)
        _fsync_path(m.path)
        time.sleep(wait)
        workers = _children(m.pid)
        m.kill()
        for pid in workers:  # the upload worker dies with the mount, as a crash leaves it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    finally:
        for fd in held:
            try:
                os.close(fd)
            except OSError as exc:  # the mount is gone: the descriptor answers ENOTCONN
                assert exc.errno in {107, 5}, exc
    heal_all(dn)
    r = dn.cli("fsck", "--volume", m.volume, check=False, timeout=600)
    assert r.returncode in (0, 10), r.stdout + r.stderr
    assert "LOST" not in r.stdout, r.stdout
    m.mount()
    for w in WORKLOADS:
        try:
            w.check(base / w.name)
        except AssertionError as exc:
            raise AssertionError(f"workload {w.name} after a kill at +{wait:.1f} s: {exc}") from exc


def test_kill_9_at_the_fsync_and_during_the_upload(dn: RunningDevnet, tmp_path: Path) -> None:
    """Each workload killed right at its fsync (nothing uploads: everything is staged), then
    while the upload that follows runs (nodes slowed so the kill lands inside it)."""
    m = Mount(dn, tmp_path / "mnt", "drills")
    rng = random.Random(int(os.environ.get("WALRUSFS_CRASH_SEED", "7")))
    try:
        m.mount("--upload-delay", "3600")
        for _ in range(RUNS):
            _drill(dn, m, wait=0.0)
        m.kill()
        heal_all(dn)
        for i in range(dn.spec.n_nodes):
            dn.cli("devnet", "node", "slow", str(i), "--ms", "50")
        m.mount("--upload-delay", "0.1")
        for run in range(RUNS):
            wait = 1.5 if run == 0 else rng.uniform(0.0, 4.0)
            for i in range(dn.spec.n_nodes):
                dn.cli("devnet", "node", "slow", str(i), "--ms", "50")
            _drill(dn, m, wait=wait)
        heal_all(dn)
        volume_id = m.status()["volume_id"]
        m.sync()
        m.umount()
        r = dn.cli("fsck", "--volume", m.volume, check=False, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        # the kills left registered, never certified Blobs; the next mount deleted them
        assert _uncertified(dn, volume_id) == []
    finally:
        heal_all(dn)
        m.teardown()


def _uploading_slowly(dn: RunningDevnet, m: Mount) -> tuple[str, bytes]:
    """Mount, slow every node down, write a 3 MB file `f` and return (the volume ID, its
    bytes) once its upload runs."""
    data = os.urandom(3_000_000)
    m.mount("--upload-delay", "0.1")
    volume_id = str(m.status()["volume_id"])
    for i in range(dn.spec.n_nodes):
        dn.cli("devnet", "node", "slow", str(i), "--ms", "400")
    (m.path / "f").write_bytes(data)
    deadline = time.monotonic() + 60
    while m.status()["pending"]["uploading"] == 0:
        assert time.monotonic() < deadline, "the upload did not start"
        time.sleep(0.05)
    return volume_id, data


def _puts(dn: RunningDevnet, blob_id: str) -> int:
    """Slivers of `blob_id` the nodes were sent (and stored)."""
    return sum(n.get(f"PUT put_sliver {blob_id}", 0) for n in node_requests(dn).values())


def _data_blobs(dn: RunningDevnet, volume_id: str) -> dict[tuple[str, str], bool]:
    """The volume's file-content Blobs on chain (checkpoints left out): (object ID, blob
    ID) -> certified."""

    async def go(chain: WalrusChain) -> dict[tuple[str, str], bool]:
        blobs = await chain.blobs()
        attrs = await chain.attributes_of([b.id for b in blobs])
        return {
            (b.id, str(codec.BlobId.from_u256(b.blob_id))): b.certified_epoch is not None
            for b in blobs
            if attrs[b.id].get("walrusfs:volume") == volume_id
            and attrs[b.id].get("walrusfs:kind") != "checkpoint"
        }

    return dn.on_chain(go)


@pytest.mark.parametrize("step", ["registered", "some-slivers", "all-slivers"])
def test_kill_9_during_an_upload_is_resumed_on_the_paid_blob(
    dn: RunningDevnet, tmp_path: Path, step: str
) -> None:
    """The mount (daemon and worker) killed after the file's Blob is registered (paid):
    right after the registration, once a third of its slivers are stored, or once all are
    and the nodes are being asked for confirmations (every request 400 ms late). The next
    mount continues that Blob from the plan it kept (plans.py): no second registration, none
    left uncertified, no sliver the nodes stored sent again (they are asked first), and the
    file reads back after a remount without the cache."""
    m = Mount(dn, tmp_path / "mnt", f"killed-{step}")
    try:
        volume_id, data = _uploading_slowly(dn, m)
        slivers = 2 * N_SHARDS  # a primary and a secondary sliver per shard, each > 5,560 B
        deadline = time.monotonic() + 120
        while not (blobs := _data_blobs(dn, volume_id)):
            assert time.monotonic() < deadline, "no Blob was registered"
            time.sleep(0.05)
        ((paid, blob_id),) = blobs
        plan = m.volume_dir / PLANS_DIR / f"{paid}.json"
        while not plan.exists():  # the mount keeps it once the worker says it registered
            assert time.monotonic() < deadline, "the plan of the registered Blob was not kept"
            time.sleep(0.01)
        want = {"registered": 0, "some-slivers": slivers // 3, "all-slivers": slivers}[step]
        while _puts(dn, blob_id) < want:
            assert time.monotonic() < deadline, f"the upload never reached {step}"
            time.sleep(0.02)
        workers = _children(m.pid)
        m.kill()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # on a loaded machine the last step may see the upload certified and committed
        # before the kill lands (its plan then removed): nothing is left to resume
        pending = plan.exists()
        assert pending or step == "all-slivers"
        heal_all(dn)
        stored_before = _puts(dn, blob_id)  # what reached the nodes, in flight included
        m.mount()
        m.sync()
        status = m.status()["uploaded"]
        assert (status["resumed"], status["orphans_deleted"]) == (int(pending), 0)
        assert _data_blobs(dn, volume_id) == {(paid, blob_id): True}  # the one paid for
        assert _uncertified(dn, volume_id) == []
        # every sliver stored once: the resumed upload sent only what the nodes lacked
        assert _puts(dn, blob_id) == slivers, (stored_before, _puts(dn, blob_id))
        m.umount()
        m.drop_cache()
        m.mount()
        assert (m.path / "f").read_bytes() == data
    finally:
        heal_all(dn)
        m.teardown()


def test_kill_9_of_the_upload_worker_alone(dn: RunningDevnet, tmp_path: Path) -> None:
    """The upload worker killed in the middle of a request: the mount starts another, the
    upload continues its registered Blob, and nothing is left uncertified."""
    m = Mount(dn, tmp_path / "mnt", "worker-killed")
    try:
        volume_id, data = _uploading_slowly(dn, m)
        time.sleep(1.0)
        (worker,) = _children(m.pid)
        os.kill(worker, signal.SIGKILL)
        heal_all(dn)
        m.sync()
        assert m.pid  # the mount lived on
        assert os.getxattr(m.path / "f", "user.walrus.state") == b"certified"
        assert _uncertified(dn, volume_id) == []
        m.umount()
        m.drop_cache()
        m.mount()
        assert (m.path / "f").read_bytes() == data
    finally:
        heal_all(dn)
        m.teardown()
