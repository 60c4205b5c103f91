"""Reads when storage nodes stop answering: every wait is bounded, and a slow node is routed
around (hedged requests, remembered as slow) instead of being waited for."""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.devnet_harness import RunningDevnet, SharedDevnets, heal_all
from tests.mount_harness import Mount

N_SHARDS = 100
READ_TIMEOUT = 6.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dn(devnets: SharedDevnets, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevnet]:
    yield devnets.account(N_SHARDS, tmp_path_factory.mktemp("slow-home"))


def _uploaded(m: Mount, files: dict[str, bytes]) -> None:
    """Write, upload, and forget every local copy: the next reads go to the nodes."""
    for name, data in files.items():
        (m.path / name).write_bytes(data)
    m.sync()
    m.umount()
    m.drop_cache()
    m.mount("--read-timeout", str(READ_TIMEOUT))


def test_all_nodes_stopped_reads_fail_within_the_timeout(dn: RunningDevnet, tmp_path: Path) -> None:
    """SIGSTOP leaves the nodes' sockets accepting and nothing answering: an uncached read
    still ends with EIO within the configured time (the kernel's retry included)."""
    m = Mount(dn, tmp_path / "mnt", "stopped")
    m.mount()
    pids = [dn.devnet.pid(f"node-{i}") for i in range(dn.spec.n_nodes)]
    assert all(pid is not None for pid in pids)
    try:
        _uploaded(m, {"big": os.urandom(3_000_000), "small": os.urandom(2_000)})
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)  # type: ignore[arg-type]
        for name in ("big", "small"):
            began = time.monotonic()
            with pytest.raises(OSError) as exc:
                (m.path / name).read_bytes()
            took = time.monotonic() - began
            assert exc.value.errno == errno.EIO
            assert took < READ_TIMEOUT + 3, f"{name}: EIO after {took:.1f} s"
    finally:
        for pid in pids:
            if pid is not None:
                os.kill(pid, signal.SIGCONT)
        m.teardown()


def test_one_slow_node_is_routed_around(dn: RunningDevnet, tmp_path: Path) -> None:
    """One node of four answers after 40 s: ten uncached small files (patches of a quilt,
    whose columns that node partly holds) read in under 10 s in total."""
    m = Mount(dn, tmp_path / "mnt", "one-slow")
    m.mount()
    files = {f"f{i}": os.urandom(20_000 + i) for i in range(10)}
    try:
        _uploaded(m, files)
        dn.cli("devnet", "node", "slow", "1", "--ms", "40000")
        began = time.monotonic()
        for name, data in files.items():
            assert (m.path / name).read_bytes() == data
        took = time.monotonic() - began
        assert took < 10, f"ten small files took {took:.1f} s with one slow node"
    finally:
        heal_all(dn)
        m.teardown()


def test_sync_and_status_know_within_seconds_that_the_nodes_are_gone(
    dn: RunningDevnet, tmp_path: Path
) -> None:
    """All nodes stopped: `walrusfs sync` and `umount` say within seconds what stays staged
    (they waited out every upload's timeouts, 50-60 s), and status shows the nodes down
    within one probe interval (it said "4 of 4 healthy" for up to a minute)."""
    m = Mount(dn, tmp_path / "mnt", "gone")
    m.mount("--upload-delay", "3600")
    pids = [dn.devnet.pid(f"node-{i}") for i in range(dn.spec.n_nodes)]
    try:
        (m.path / "f").write_bytes(os.urandom(500_000))
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)  # type: ignore[arg-type]
        began = time.monotonic()
        r = dn.cli("sync", str(m.path), check=False, timeout=120)
        took = time.monotonic() - began
        assert r.returncode == 5 and "do not answer" in r.stderr and "staged" in r.stderr, r
        assert took < 10, f"sync took {took:.1f} s to fail"
        began = time.monotonic()
        r = dn.cli("umount", str(m.path), check=False, timeout=120)
        assert r.returncode == 5 and "staged" in r.stderr, r.stderr
        assert time.monotonic() - began < 10
        deadline = time.monotonic() + 15
        while any(n["healthy"] for n in m.status()["nodes"]):
            assert time.monotonic() < deadline, m.status()["nodes"]
            time.sleep(0.5)
        for pid in pids:
            os.kill(pid, signal.SIGCONT)  # type: ignore[arg-type]
        m.sync()
        assert os.getxattr(m.path / "f", "user.walrus.state") == b"certified"
    finally:
        for pid in pids:
            if pid is not None:
                os.kill(pid, signal.SIGCONT)
        m.teardown()
