"""Durability and privacy, for real (a devnet of processes, `walrusfs mount` daemons):
metadata checkpoints restore a volume on a machine that has only the wallet, and with no
checkpoint left fsck rebuilds it from the file records; old checkpoints are retired; fsck
repairs what a kill -9 or a damaged database leaves and records a leftover blob; and no storage
node ever holds a plaintext byte of an encrypted volume, whose key comes from a file or a
passphrase."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chain import errors as chain_errors
from chain.client import WalrusChain
from tests.devnet_harness import RunningDevnet, heal_all, start_devnet
from tests.mount_harness import Mount, mount, mounted
from walrusfs.fs.checkpoint import list_checkpoints
from walrusfs.store.client import WalrusStore

N_SHARDS = 100


@pytest.fixture(scope="module")
def dn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevnet]:
    yield from start_devnet(tmp_path_factory.mktemp("durability-home"), n_shards=N_SHARDS)


def _populate(root: Path) -> None:
    """A tree with what a volume holds: small files (quilted), a multi-row file (a blob of its
    own), nested directories, a symlink, a hard link, an xattr, odd names and modes."""
    (root / "docs" / "deep" / "er").mkdir(parents=True)
    for i in range(30):
        (root / "docs" / f"note-{i}.txt").write_text(f"note {i}\n" * (i + 1))
    (root / "docs" / "deep" / "er" / "naïve name with spaces").write_bytes(os.urandom(5000))
    (root / "big.bin").write_bytes(os.urandom(3_000_000))
    (root / "empty").write_bytes(b"")
    (root / "script.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "script.sh").chmod(0o755)
    os.symlink("docs/note-3.txt", root / "link")
    os.link(root / "big.bin", root / "big.hardlink")
    os.setxattr(root / "docs" / "note-0.txt", "user.color", b"blue")
    os.utime(root / "docs" / "note-1.txt", ns=(1_600_000_000_123_456_789,) * 2)


def _tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything a user would notice: type, mode, size, mtime (ns), content, link target,
    user xattrs."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("l", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("d", st.st_mode)
            else:
                xattrs = {
                    n: os.getxattr(p, n)
                    for n in os.listxattr(p)
                    if n.startswith("user.") and not n.startswith("user.walrus")
                }
                out[rel] = ("f", st.st_mode, st.st_size, st.st_mtime_ns, p.read_bytes(), xattrs)
    return out


def _fresh_home(dn: RunningDevnet, home: Path) -> RunningDevnet:
    """A WALRUSFS_HOME with nothing of the volume: no database, staging, key or cache; only
    the network and the wallet (the devnet's directory, shared)."""
    return dn.sibling(home)


def _checkpoints(dn: RunningDevnet, name: str) -> list[int]:
    async def go(chain: WalrusChain) -> list[int]:
        return [r.seq for r in await list_checkpoints(chain, name)]

    return dn.on_chain(go)


def test_restore_anywhere_from_the_newest_checkpoint(dn: RunningDevnet, tmp_path: Path) -> None:
    with mount(dn, tmp_path / "mnt", volume="restore") as m:
        _populate(m.path)
        m.sync()
        assert m.status()["checkpoint"]["seq"] >= 1
        (m.path / "after-first-sync.txt").write_text("written after the first checkpoint\n")
        before = _tree(m.path)
        m.umount()  # syncs: uploads and a new checkpoint
    assert _checkpoints(dn, "restore")[0] >= 2

    elsewhere = _fresh_home(dn, tmp_path / "new-machine")
    m2 = Mount(elsewhere, tmp_path / "mnt2", "restore")
    m2.mount()
    try:
        after = _tree(m2.path)
        assert after == before
        log = (m2.volume_dir / "mount.log").read_text()
        assert "restoring checkpoint" in log
        # the restored volume keeps working: write, sync, read
        (m2.path / "docs" / "new.txt").write_text("after the restore\n")
        m2.sync()
        assert (m2.path / "docs" / "new.txt").read_text() == "after the restore\n"
    finally:
        m2.teardown()


def _delete_checkpoints(dn: RunningDevnet, name: str) -> None:
    async def go(chain: WalrusChain) -> None:
        for ref in await list_checkpoints(chain, name):
            try:  # a volume's blobs are in its storage pool
                pooled = await chain.pools.blob_object(ref.object_id)
            except chain_errors.NotPooled:
                await chain.delete_blob(ref.object_id)
                continue
            await chain.pools.delete(pooled.storage_pool_id, [pooled.blob_id])

    dn.on_chain(go)


def test_rebuild_from_file_records_without_any_checkpoint(
    dn: RunningDevnet, tmp_path: Path
) -> None:
    with mount(dn, tmp_path / "mnt", volume="rebuild") as m:
        _populate(m.path)
        m.sync()
        # a newer version of a quilted file: the older one stays in a quilt still in use
        (m.path / "docs" / "note-2.txt").write_text("the second version\n")
        (m.path / "docs" / "deep" / "extra.bin").write_bytes(os.urandom(70_000))
        before = _tree(m.path)
        m.umount()  # uploads the rest, and a checkpoint
    _delete_checkpoints(dn, "rebuild")
    assert _checkpoints(dn, "rebuild") == []

    elsewhere = _fresh_home(dn, tmp_path / "new-machine")
    # documented exits first: records sealed with another key (9), no blob of a volume (7)
    wrong = tmp_path / "wrong-passphrase"
    wrong.write_text("not the key of this volume\n")
    r = elsewhere.cli(
        "fsck",
        "--rebuild",
        "--volume",
        "rebuild",
        "--passphrase-file",
        str(wrong),
        check=False,
        timeout=600,
    )
    assert r.returncode == 9, r.stdout + r.stderr
    r = elsewhere.cli("fsck", "--rebuild", "--volume", "never-made", check=False, timeout=600)
    assert r.returncode == 7, r.stdout + r.stderr
    r = elsewhere.cli("fsck", "--rebuild", "--volume", "rebuild", check=False, timeout=600)
    assert r.returncode == 10, r.stdout + r.stderr
    assert "rebuilt from" in r.stdout and "LOST" not in r.stdout
    m2 = Mount(elsewhere, tmp_path / "mnt2", "rebuild")
    m2.mount()
    try:
        after = _tree(m2.path)
        # what the records hold: every non-empty regular file at its path, with its mode,
        # size, mtime and bytes (a hard link's second name, empty files, symlinks and xattrs
        # have no record)
        expected = {
            path: v[:5]
            for path, v in before.items()
            if v[0] == "f" and v[2] and path != "big.hardlink"
        }
        assert {p: v[:5] for p, v in after.items() if v[0] == "f"} == expected
        assert after["docs/note-2.txt"][4] == b"the second version\n"
        assert after["docs/deep/er"][0] == "d"
        # the rebuilt volume works on: write, sync (a checkpoint), remount without a cache
        (m2.path / "docs" / "after-rebuild.txt").write_text("new\n")
        m2.sync()
        assert m2.status()["checkpoint"]["seq"] >= 1
        m2.umount()
        m2.drop_cache()
        m2.mount()
        assert (m2.path / "docs" / "after-rebuild.txt").read_text() == "new\n"
        assert (m2.path / "big.bin").read_bytes() == before["big.bin"][4]
    finally:
        m2.teardown()


def test_old_checkpoints_are_retired(dn: RunningDevnet, tmp_path: Path) -> None:
    with mount(dn, tmp_path / "mnt", volume="retire") as m:
        for i in range(5):
            (m.path / f"f{i}").write_text(f"version {i}\n")
            m.sync()
        assert m.status()["checkpoint"]["seq"] == 5
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            seqs = _checkpoints(dn, "retire")
            if len(seqs) <= 3:
                break
            time.sleep(2)
        assert seqs == [5, 4, 3]
        # nothing changed: sync uploads no new checkpoint
        m.sync()
        assert m.status()["checkpoint"]["seq"] == 5


def _holders(root: Path, needle: bytes) -> list[Path]:
    found = subprocess.run(
        ["grep", "-rlF", "--binary-files=binary", needle.decode(), str(root)],
        capture_output=True,
        check=False,
    )
    return [Path(p) for p in found.stdout.decode().split()]


def test_no_node_holds_plaintext_of_an_encrypted_volume(dn: RunningDevnet, tmp_path: Path) -> None:
    secret = b"MARKER-7f3a-secret-content"
    secret_name = "MARKER-91c2-secret-name.txt"
    public = b"MARKER-5d1e-public-content"
    with mount(dn, tmp_path / "enc", volume="private") as m:
        (m.path / secret_name).write_bytes(secret * 3)
        (m.path / "big-secret.bin").write_bytes(secret * 200_000)  # 5 MB: a blob of its own
        m.sync()
        assert m.status()["encryption"] == "wfe1"
        assert (m.path / "big-secret.bin").read_bytes() == secret * 200_000
    with mount(dn, tmp_path / "pub", "--public", volume="public") as p:
        (p.path / "hello.txt").write_bytes(public * 3)
        p.sync()
        assert p.status()["encryption"] == "none"
    network = dn.home / "data" / "devnet"
    # the scan sees what a node stores: the public volume's bytes are found there
    assert _holders(network / "nodes", public)
    assert not _holders(network, secret)
    assert not _holders(network, secret_name.encode())
    # an encrypted volume cannot be remounted public, nor with another key
    r = dn.cli("mount", str(tmp_path / "enc"), "--volume", "private", "--public", check=False)
    assert r.returncode == 2 and "encrypted" in r.stderr
    key_file = dn.home / "data" / "volumes" / "private" / "volume.key"
    right = key_file.read_text()
    key_file.write_text("ab" * 32 + "\n")
    r = dn.cli("mount", str(tmp_path / "enc"), "--volume", "private", check=False)
    assert r.returncode == 9 and "not the key of this volume" in r.stderr
    key_file.write_text(right)
    with mount(dn, tmp_path / "enc", volume="private") as m:
        assert (m.path / secret_name).read_bytes() == secret * 3


def test_passphrase_volume(dn: RunningDevnet, tmp_path: Path) -> None:
    """A key from a passphrase is never written down; without it (or with another) the
    volume is refused; with it, the volume restores on a machine that has only the wallet."""
    right, wrong = tmp_path / "pass", tmp_path / "wrong"
    right.write_text("a long passphrase for the test\n")
    wrong.write_text("not the passphrase\n")
    data = os.urandom(100_000)
    with mount(dn, tmp_path / "mnt", "--passphrase-file", str(right), volume="phrase") as m:
        (m.path / "f.bin").write_bytes(data)
        m.umount()
    assert not (m.volume_dir / "volume.key").exists()
    for extra in ((), ("--passphrase-file", str(wrong))):
        r = dn.cli("mount", str(tmp_path / "mnt"), "--volume", "phrase", *extra, check=False)
        assert r.returncode == 9 and "passphrase" in r.stderr, r.stderr
    elsewhere = _fresh_home(dn, tmp_path / "new-machine")
    m2 = Mount(elsewhere, tmp_path / "mnt2", "phrase")
    m2.mount("--passphrase-file", str(right))
    try:
        assert (m2.path / "f.bin").read_bytes() == data
    finally:
        m2.teardown()


def _fsck(dn: RunningDevnet, volume: str) -> subprocess.CompletedProcess[str]:
    return dn.cli("fsck", "--volume", volume, check=False, timeout=600)


def test_kill_9_after_fsync_and_during_upload_then_fsck(dn: RunningDevnet, tmp_path: Path) -> None:
    m = Mount(dn, tmp_path / "mnt", "crash-fsck")
    m.mount("--upload-delay", "3600")  # nothing uploads on its own
    try:
        data = os.urandom(300_000)
        fd = os.open(m.path / "precious", os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        (m.path / "dir").mkdir()
        dfd = os.open(m.path, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
        # small files are rows of the staging area's small.db, not files (cache/staging.py):
        # closed without fsync (the kernel keeps what a killed process wrote), fsynced, and
        # one that grew out of small.db into a file of its own after its fsync
        small = {"closed": os.urandom(3000), "synced": os.urandom(5000)}
        (m.path / "closed").write_bytes(small["closed"])
        with open(m.path / "synced", "wb") as f:
            f.write(small["synced"])
            os.fsync(f.fileno())
        with open(m.path / "grown", "wb") as f:
            f.write(b"a" * 10_000)
            os.fsync(f.fileno())
            f.seek(0, os.SEEK_END)
            f.write(b"b" * 200_000)
        small["grown"] = b"a" * 10_000 + b"b" * 200_000
        assert os.getxattr(m.path / "precious", "user.walrus.state") == b"staged"
        # kill -9 and look before detaching: a dead mount does not answer (status exit 5)
        pid = m.pid
        os.kill(pid, signal.SIGKILL)
        while Path(f"/proc/{pid}").exists():
            time.sleep(0.02)
        r = dn.cli("status", str(m.path), check=False)
        assert r.returncode == 5 and "does not answer" in r.stderr, r.stderr
        subprocess.run(["fusermount3", "-u", "-z", str(m.path)], check=True)
        r = _fsck(dn, "crash-fsck")  # uploads the staged file
        assert r.returncode == 0, r.stdout + r.stderr
        assert "clean" in r.stdout
        m.mount()
        assert (m.path / "precious").read_bytes() == data
        assert {name: (m.path / name).read_bytes() for name in small} == small
        assert (m.path / "dir").is_dir()
        assert os.getxattr(m.path / "precious", "user.walrus.state") == b"certified"
        busy = _fsck(dn, "crash-fsck")
        assert busy.returncode == 2 and "in use" in busy.stderr
        # a program inside the mount keeps it busy: umount exit 5, still mounted and working
        sleeper = subprocess.Popen(["sleep", "60"], cwd=m.path)
        try:
            r = dn.cli("umount", str(m.path), "--no-sync", check=False)
            assert r.returncode == 5 and "cannot unmount" in r.stderr, r.stderr
            assert mounted(m.path) and (m.path / "precious").read_bytes() == data
        finally:
            sleeper.kill()
            sleeper.wait()
        m.umount()

        # kill -9 while a 40 MB file is uploading (slowed down by the nodes, so that "while"
        # does not depend on how fast an upload is)
        for i in range(dn.spec.n_nodes):
            dn.cli("devnet", "node", "slow", str(i), "--ms", "200")
        m.mount("--upload-delay", "0.2")
        big = os.urandom(40 << 20)
        (m.path / "big").write_bytes(big)
        deadline = time.monotonic() + 60
        while m.status()["pending"]["uploading"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert m.status()["pending"]["uploading"] >= 1
        time.sleep(1.0)  # in the middle of the upload
        m.kill()
        heal_all(dn)
        r = _fsck(dn, "crash-fsck")
        assert r.returncode in (0, 10), r.stdout + r.stderr
        assert "LOST" not in r.stdout
        again = _fsck(dn, "crash-fsck")
        assert again.returncode == 0, again.stdout  # repairs are done once
        m.mount()
        assert (m.path / "big").read_bytes() == big
        assert (m.path / "precious").read_bytes() == data
        m.umount()
        m.drop_cache()
        m.mount()
        assert (m.path / "big").read_bytes() == big
    finally:
        m.teardown()


def test_fsck_repairs_a_damaged_tree(dn: RunningDevnet, tmp_path: Path) -> None:
    """Damage the database by hand as a bug might: fsck names what it repairs, and what is
    lost, with the documented exit codes."""
    m = Mount(dn, tmp_path / "mnt", "damaged")
    m.mount()
    try:
        (m.path / "dir").mkdir()
        (m.path / "dir" / "orphan.txt").write_text("find me\n")
        (m.path / "kept.txt").write_text("kept\n")
        m.umount()
        db = sqlite3.connect(m.volume_dir / "meta.db")
        db.execute("DELETE FROM dentries WHERE name = ?", (b"orphan.txt",))
        db.execute("UPDATE inodes SET nlink = 7 WHERE id = 1")
        db.commit()
        db.close()
        r = _fsck(dn, "damaged")
        assert r.returncode == 10, r.stdout + r.stderr
        assert "lost+found" in r.stdout and "link count" in r.stdout
        m.mount()
        found = list((m.path / "lost+found").iterdir())
        assert [p.read_text() for p in found] == ["find me\n"]
        assert (m.path / "kept.txt").read_text() == "kept\n"
        assert os.stat(m.path).st_nlink == 4  # ., .., dir, lost+found
        m.umount()
        assert _fsck(dn, "damaged").returncode == 0
    finally:
        m.teardown()


def test_fsck_records_a_leftover_chunk_blob_as_a_blob(dn: RunningDevnet, tmp_path: Path) -> None:
    """A certified blob of the volume the database does not know (an upload whose commit a
    crash lost) is recorded as unused with the table's kind `blob`: its on-chain
    `walrusfs:kind` is `data`, and fsck wrote that into the table, a kind nothing else knows."""
    m = Mount(dn, tmp_path / "mnt", "leftover")
    m.mount()
    try:
        volume_id = m.status()["volume_id"]
        m.umount()

        async def leftover(chain: WalrusChain) -> str:
            attrs = {"walrusfs:volume": volume_id, "walrusfs:kind": "data"}
            result = await WalrusStore(chain).store(os.urandom(5000), 2, attributes=attrs)
            return result.object_id

        object_id = dn.on_chain(leftover)
        r = _fsck(dn, "leftover")
        assert r.returncode == 10 and "not recorded: marked unused" in r.stdout, r.stdout
        db = sqlite3.connect(m.volume_dir / "meta.db")
        try:
            kinds = db.execute("SELECT kind FROM blobs WHERE object_id = ?", (object_id,))
            assert kinds.fetchall() == [("blob",)]
        finally:
            db.close()
        m.mount()  # deletes the unused blob
        m.umount()
        assert _fsck(dn, "leftover").returncode == 0
    finally:
        m.teardown()
