"""One writer per volume, decided from the chain (walrusfs/fs/writer.py): two homes with one
wallet stand for two machines. The second mount of a volume in use is refused (or read-only),
a machine whose copy is behind the chain is refused, and neither machine's fsck takes the
other's blobs for leftovers."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from chain.client import WalrusChain
from tests.devnet_harness import RunningDevnet, SharedDevnets
from tests.mount_harness import MOUNT_OPTS, Mount, mounted

N_SHARDS = 100

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dn(devnets: SharedDevnets, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevnet]:
    yield devnets.account(N_SHARDS, tmp_path_factory.mktemp("writer-home"))


def _other_machine(dn: RunningDevnet, home: Path) -> RunningDevnet:
    """Another WALRUSFS_HOME on the same network and wallet (the devnet's directory, shared):
    another machine ID, no copy of any volume."""
    return dn.sibling(home)


def _volume_blobs(dn: RunningDevnet, volume_id: str) -> set[str]:
    async def go(chain: WalrusChain) -> set[str]:
        blobs = await chain.blobs()
        attrs = await chain.attributes_of([b.id for b in blobs])
        return {i for i, a in attrs.items() if a.get("walrusfs:volume") == volume_id}

    return dn.on_chain(go)


def _try_mount(m: Mount, *extra: str) -> tuple[int, str]:
    m.path.mkdir(parents=True, exist_ok=True)
    r = m.dn.cli(
        "mount", str(m.path), "--volume", m.volume, *MOUNT_OPTS, *extra, check=False, timeout=300
    )
    return r.returncode, r.stderr


def test_a_second_machine_is_refused_or_read_only(dn: RunningDevnet, tmp_path: Path) -> None:
    a = Mount(dn, tmp_path / "a", "shared")
    b = Mount(_other_machine(dn, tmp_path / "home-b"), tmp_path / "b", "shared")
    first, second = os.urandom(100_000), os.urandom(2_000)
    try:
        a.mount()
        (a.path / "first").write_bytes(first)
        a.sync()  # checkpoint 1, leased by A
        volume_id = a.status()["volume_id"]

        code, err = _try_mount(b)
        assert code == 2 and "in use by machine" in err, err
        assert not mounted(b.path)
        assert not (b.volume_dir / "staging").exists()  # refused before anything was made

        b.mount("--read-only")  # restores the newest checkpoint and serves it
        assert (b.path / "first").read_bytes() == first
        with pytest.raises(OSError) as exc:
            (b.path / "new").write_bytes(b"x")
        assert exc.value.errno == errno.EROFS
        b.umount()

        (a.path / "second").write_bytes(second)
        a.sync()  # checkpoint 2 and a blob B's copy does not know
        before = _volume_blobs(dn, volume_id)
        r = b.dn.cli("fsck", "--volume", "shared", check=False, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "not checked" in r.stdout + r.stderr, r.stdout + r.stderr
        db = sqlite3.connect(b.volume_dir / "meta.db")
        unused = db.execute("SELECT object_id FROM blobs WHERE refcount = 0").fetchall()
        db.close()
        assert unused == [], "B's fsck took A's blobs for leftovers"
        assert _volume_blobs(dn, volume_id) == before

        a.umount()  # a clean unmount releases the volume
        # B's copy is checkpoint 1; A moved the volume to a later one: writing B's copy
        # would fork it
        code, err = _try_mount(b)
        assert code == 2 and "after this machine's copy" in err, err
        shutil.move(b.volume_dir / "meta.db", tmp_path / "b-meta.db")
        b.mount()  # restores the newest checkpoint and becomes the writer
        assert (b.path / "second").read_bytes() == second
        (b.path / "third").write_bytes(b"from b")
        b.sync()
        code, err = _try_mount(a)  # now A is the second machine
        assert code == 2 and "in use by machine" in err, err
        b.umount()
        code, err = _try_mount(a)  # released, but A's copy is behind B's checkpoint
        assert code == 2 and "after this machine's copy" in err, err
    except AssertionError:
        print(a.log_tail(), b.log_tail(), sep="\n----\n")
        raise
    finally:
        a.teardown()
        b.teardown()


def test_a_memory_bound_below_one_upload_is_refused(dn: RunningDevnet, tmp_path: Path) -> None:
    """`--memory 512M` with 64 MiB chunks: one upload's encode alone exceeds it (measured 743
    MiB for daemon and worker), so the mount says so instead of promising a bound it breaks."""
    m = Mount(dn, tmp_path / "mnt", "small-memory")
    code, err = _try_mount(m, "--memory", "512M")
    assert code == 2 and "below what this volume needs" in err and "878 MiB" in err, err
    assert not mounted(m.path)
    m.mount("--memory", "878M")
    (m.path / "f").write_bytes(b"fits")
    m.umount()
