"""The command line around real mounts (a devnet, `walrusfs mount` daemons) never bricks a
drive nor says something wrong: the kernel's mount table is read as bytes, dead mounts are
cleaned up, a mount waits for the volume's previous daemon (and says so on stdout, not as an
error), mountpoints with any name work, a second mount of a mounted volume is a bind mount,
blob and patch IDs starting with '-' are stored and read, an unknown blob is exit 7, and what
walrusfs keeps on disk is its user's alone whatever the umask."""

from __future__ import annotations

import errno
import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import codec
from tests.devnet_harness import N_SHARDS, RunningDevnet, start_devnet
from tests.mount_harness import MOUNT_OPTS, Mount, mounted
from walrusfs import control, mounts
from walrusfs.daemon import NOTICE_AFTER
from walrusfs.errors import UsageError
from walrusfs.fs.mount import lock_volume

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


# -- no devnet needed ---------------------------------------------------------------------------


def test_mounts_table_is_unescaped_as_bytes() -> None:
    """The kernel escapes space, tab, newline and backslash as octal and writes every other
    byte as it is: `mé 5` is UTF-8 bytes then `\\040`."""
    table = (
        b"walrusfs:v /tmp/m\xc3\xa9\\0405 fuse.walrusfs rw,nosuid,nodev 0 0\n"
        b"a\\134b /x\\011y\\012z ext4 ro 0 0\n"
        b"walrusfs:v /tmp/m\xc3\xa9\\0405 fuse.walrusfs rw 0 0\n"
        b"/dev/sda1 /mnt/\xff raw rw 0 0\n"
    )
    entries = mounts.parse(table)
    assert [e.target for e in entries] == ["/tmp/mé 5", "/x\ty\nz", "/tmp/mé 5", "/mnt/\udcff"]
    assert entries[0].fstype == "fuse.walrusfs" and entries[0].source == "walrusfs:v"
    assert entries[0].options == ("rw", "nosuid", "nodev")
    assert entries[1].source == "a\\b"
    assert os.fsencode(entries[3].target) == b"/mnt/\xff"  # undecodable bytes survive


# -- with a devnet and real mounts --------------------------------------------------------------


@pytest.fixture(scope="module")
def dn() -> Iterator[RunningDevnet]:
    """A devnet whose home is reachable by every user (0755, as a home directory often is): what
    is private must be made so by walrusfs itself."""
    base = Path(tempfile.mkdtemp(prefix="wfs-hardening-"))
    os.chmod(base, 0o755)
    try:
        yield from start_devnet(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _heal(dn: RunningDevnet) -> None:
    """heal_all through the CLI: processes and files of the devnet are made by walrusfs (and
    its umask), not by this test process."""
    dn.cli("devnet", "up")  # starts a stopped node
    for i in range(dn.spec.n_nodes):
        dn.cli("devnet", "node", "heal", str(i))


@pytest.fixture
def healed(dn: RunningDevnet) -> Iterator[RunningDevnet]:
    yield dn
    _heal(dn)


def _kill_daemon(m: Mount) -> None:
    """kill -9 the mount's daemon and leave the dead mount as it is."""
    pid = m.pid
    os.kill(pid, signal.SIGKILL)
    while Path(f"/proc/{pid}").exists():
        time.sleep(0.02)
    with pytest.raises(OSError) as err:
        os.statvfs(m.path)
    assert err.value.errno == errno.ENOTCONN  # the mount is dead


@pytest.mark.timeout(600)
def test_a_dead_mount_is_cleaned_up_by_umount_and_by_mount(
    dn: RunningDevnet, tmp_path: Path
) -> None:
    m = Mount(dn, tmp_path / "mnt", "dead")
    try:
        for extra in ((), ("--lazy",), ("--no-sync",)):
            m.mount()
            (m.path / "kept.bin").write_bytes(b"written before the crash")
            _kill_daemon(m)
            r = dn.cli("umount", str(m.path), *extra, check=False)
            assert r.returncode == 0, (extra, r.stderr)
            assert "dead mount" in r.stderr and "detached" in r.stderr
            assert not mounted(m.path)
        m.mount()
        _kill_daemon(m)
        r = dn.cli("status", str(m.path), check=False)
        assert r.returncode == 5 and "`walrusfs umount" in r.stderr, r.stderr
        # mount on the dead mountpoint: detached, then mounted (once: nothing stacked)
        r = dn.cli("mount", str(m.path), "--volume", "dead", *MOUNT_OPTS, check=False)
        assert r.returncode == 0 and "detached" in r.stderr, r.stderr
        assert sum(e.target == str(m.path) for e in mounts.mounts()) == 1
        assert (m.path / "kept.bin").read_bytes() == b"written before the crash"
        m.umount()
    finally:
        m.teardown()


@pytest.mark.timeout(600)
def test_a_mount_right_after_umount_8_waits_for_the_previous_daemon(
    healed: RunningDevnet, tmp_path: Path
) -> None:
    dn = healed
    m = Mount(dn, tmp_path / "mnt", "again")
    m.mount()
    try:
        (m.path / "a.bin").write_bytes(os.urandom(50_000))
        m.sync()
        (m.path / "b.txt").write_text("changed since the last checkpoint\n")
        for i in range(dn.spec.n_nodes):  # the final checkpoint's upload takes seconds
            dn.cli("devnet", "node", "slow", str(i), "--ms", "1500")
        pid = m.pid
        subprocess.run(["umount", str(m.path)], check=True, timeout=60)
        assert Path(f"/proc/{pid}").exists()  # still checkpointing, holding the volume
        r = dn.cli("mount", str(m.path), "--volume", "again", *MOUNT_OPTS, check=False, timeout=300)
        assert r.returncode == 0, r.stderr
        assert "still held" not in r.stderr  # no error: the fstab helper's stderr stays quiet
        assert not Path(f"/proc/{pid}").exists()
        assert (m.path / "b.txt").read_text() == "changed since the last checkpoint\n"
        # a volume mounted elsewhere is refused at once, naming where
        started = time.monotonic()
        other = tmp_path / "elsewhere"
        other.mkdir()
        r = dn.cli("mount", str(other), "--volume", "again", check=False)
        assert r.returncode == 2 and f"is mounted on {m.path}" in r.stderr, r.stderr
        assert time.monotonic() - started < 20
        _heal(dn)
        m.umount()
    finally:
        m.teardown()


@pytest.mark.timeout(600)
def test_a_mountpoint_with_a_non_ascii_name_and_a_space(dn: RunningDevnet, tmp_path: Path) -> None:
    m = Mount(dn, tmp_path / "mé 5", "accent")
    m.mount()
    try:
        (m.path / "f.bin").write_bytes(b"x" * 10_000)
        m.sync()
        st = m.status()
        assert st["mountpoint"] == str(m.path) and st["pending"]["chunks"] == 0
        assert "volume       accent" in dn.cli("status", str(m.path)).stdout
        r = dn.cli("mount", str(m.path), "--volume", "accent2", check=False)
        assert r.returncode == 2 and "already a mountpoint" in r.stderr, r.stderr
        assert sum(e.target == str(m.path) for e in mounts.mounts()) == 1
        m.umount()
    finally:
        m.teardown()


def _find_data(prefix: str, make: object) -> bytes:
    assert callable(make)
    for i in range(100_000):
        data = f"dash {i}\n".encode() * 40
        if str(make(data)).startswith(prefix):
            return data
    raise AssertionError("no data found")


@pytest.mark.timeout(300)
def test_blob_and_patch_ids_starting_with_a_dash(dn: RunningDevnet, tmp_path: Path) -> None:
    data = _find_data("-", lambda d: codec.blob_id_of(d, N_SHARDS))
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    out = json.loads(dn.cli("blob", "store", str(src), "--json").stdout)
    blob_id = out["blobs"][0]["blobId"]
    assert blob_id.startswith("-")
    dst = tmp_path / "out"
    dn.cli("blob", "read", blob_id, "-o", str(dst))
    assert dst.read_bytes() == data
    assert dn.cli("blob", "read", blob_id).stdout.encode() == data
    assert dn.cli("blob", "read", "--range", "0-4", "--", blob_id).stdout == data[:4].decode()

    def quilt_id(content: bytes) -> codec.BlobId:
        quilt = codec.build_quilt([codec.QuiltItem("a.txt", content)], N_SHARDS)
        return codec.blob_id_of(quilt.data, N_SHARDS)

    content = _find_data("-", quilt_id)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.txt").write_bytes(content)
    out = json.loads(dn.cli("blob", "store-quilt", str(tmp_path / "dir"), "--json").stdout)
    patch_id = out["patches"]["a.txt"]
    assert patch_id.startswith("-")
    dn.cli("blob", "read-patch", patch_id, "-o", str(dst))
    assert dst.read_bytes() == content
    # object IDs never start with '-', but extend and delete parse their ID the same way
    obj = out["quilt"]["objectId"]
    dn.cli("blob", "extend", "--epochs", "1", "--", obj)
    dn.cli("blob", "delete", "--", obj)


@pytest.mark.timeout(300)
def test_an_unknown_blob_is_exit_7_with_a_node_down(healed: RunningDevnet) -> None:
    dn = healed
    dn.cli("devnet", "node", "stop", "1")
    r = dn.cli("blob", "read", "A" * 43, check=False)
    assert r.returncode == 7 and "no storage node has blob" in r.stderr, r.stderr
    r = dn.cli("blob", "read-patch", "A" * 43 + "AQEAAgA", check=False)
    assert r.returncode in (4, 7) and "Traceback" not in r.stderr, r.stderr


def _loose_entries(home: Path) -> list[str]:
    out = []
    for root, dirs, names in os.walk(home):
        for name in dirs + names:
            p = Path(root) / name
            st = p.lstat()
            if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o077:
                out.append(f"{p} {stat.S_IMODE(st.st_mode):o}")
    return out


@pytest.mark.timeout(600)
def test_what_walrusfs_keeps_is_private_whatever_the_umask(
    dn: RunningDevnet, tmp_path: Path
) -> None:
    m = Mount(dn, tmp_path / "mnt", "private")
    previous = os.umask(0o000)  # the loosest umask a user can have
    try:
        m.mount()
        (m.path / "first.txt").write_text("written by the first mount\n")
        m.umount()
        # as an older walrusfs (or a loose umask) left it: everything readable by all
        for p in [m.volume_dir.parent, m.volume_dir, *m.volume_dir.rglob("*")]:
            if not p.is_symlink():
                os.chmod(p, 0o755 if p.is_dir() else 0o644)
        m.mount()
    finally:
        os.umask(previous)
    try:
        (m.path / "secret-name.txt").write_text("secret contents\n")
        m.sync()
        (m.path / "staged.bin").write_bytes(os.urandom(100_000))  # stays staged a moment
        (m.path / "small.txt").write_text("small\n")
        assert _loose_entries(dn.home) == []
        paths = [str(p) for p in dn.home.rglob("*") if p.is_file() and not p.is_symlink()]
        for must in (
            "meta.db",
            "meta.db-wal",
            "mount.log",
            "volume.key",
            "small.db",
            "index.db",
            "node.db",
            "client.yaml",
        ):
            assert any(p.endswith("/" + must) for p in paths), must
        code = (
            "import errno, json, sys\nbad = []\nfor p in json.load(sys.stdin):\n    try:\n"
            "        open(p, 'rb').close()\n        bad.append(p + ' readable')\n"
            "    except OSError as e:\n        if e.errno != errno.EACCES:\n"
            "            bad.append(p + ' ' + str(e))\nprint(json.dumps(bad))\n"
        )
        r = subprocess.run(
            [*NOBODY, "/usr/bin/python3", "-c", code],
            input=json.dumps(paths),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert json.loads(r.stdout) == []
        m.umount()
    finally:
        m.teardown()


def test_a_long_wait_for_the_volume_is_told_on_stdout(dn: RunningDevnet, tmp_path: Path) -> None:
    """A wait for the volume's lock (fsck, or a daemon finishing its last checkpoint) is
    silent for its first seconds, then told on stdout: no error, so the fstab helper, which
    prints nothing on success, drops it and xfstests sees a quiet mount."""
    m = Mount(dn, tmp_path / "mnt", "held")
    fd = lock_volume(m.volume_dir)  # as fsck would hold it
    try:
        cmd = ["mount", str(m.path), "--volume", "held", *MOUNT_OPTS]
        proc = subprocess.Popen(
            [sys.executable, "-m", "walrusfs.cli", *cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "WALRUSFS_HOME": str(dn.home)},
        )
        m.path.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        # the notice comes NOTICE_AFTER seconds into the wait, after the CLI's start-up
        # (which a loaded machine makes slow): held until it is told, or a minute
        assert proc.stdout is not None
        told, _, _ = select.select([proc.stdout], [], [], NOTICE_AFTER + 60)
        assert told, "nothing was told while the volume was held"
        assert time.monotonic() - began >= NOTICE_AFTER  # silent for its first seconds
        assert proc.poll() is None  # still waiting
    finally:
        os.close(fd)
    out, err = proc.communicate(timeout=120)
    try:
        assert proc.returncode == 0, err
        assert "is still held by another walrusfs process" in out and err == ""
        assert mounted(m.path)
    finally:
        m.teardown()


def test_commands_without_a_mountpoint_pick_this_homes_mount(
    dn: RunningDevnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run` ends with a bare `walrusfs status`: another home's (or user's) walrusfs mount
    on the machine must not make it ambiguous; two mounts of this home still are."""
    m = Mount(dn, tmp_path / "ours", "pick")
    m.mount()
    try:
        foreign = mounts.MountEntry("walrusfs:other", "/elsewhere/walrus", control.FSTYPE, ("rw",))
        real = mounts.mounts
        monkeypatch.setattr(mounts, "mounts", lambda *a: [*real(*a), foreign])
        monkeypatch.setenv("WALRUSFS_HOME", str(dn.home))
        assert control.find_mount(None) == m.path
        m2 = Mount(dn, tmp_path / "ours-too", "pick2")
        m2.mount()
        try:
            with pytest.raises(UsageError, match="several walrusfs mounts"):
                control.find_mount(None)
        finally:
            m2.teardown()
    finally:
        m.teardown()


def test_a_second_fstab_mount_of_a_mounted_volume_is_a_bind_mount(
    dn: RunningDevnet, tmp_path: Path
) -> None:
    """One daemon per volume: mount(8) of a volume mounted here shows the same filesystem in
    the second place, as a block device mounted twice does (xfstests generic/732)."""
    m = Mount(dn, tmp_path / "one", "twice")
    m.mount()
    two = tmp_path / "two"
    two.mkdir()
    try:
        helper = [sys.executable, "-m", "walrusfs.fstab", "walrusfs:twice", str(two)]
        r = subprocess.run(
            [*helper, "-o", f"home={dn.home}"], capture_output=True, text=True, check=False
        )
        assert r.returncode == 0 and r.stdout == r.stderr == "", r.stderr
        (m.path / "A").mkdir()
        (m.path / "A" / "f").write_text("one file\n")
        os.rename(two / "A" / "f", two / "f")
        assert (m.path / "f").read_text() == "one file\n"
        subprocess.run(["umount", str(two)], check=True)
        assert mounted(m.path) and (m.path / "f").exists()
        # `walrusfs umount` of one of two places leaves the other served
        again = subprocess.run([*helper, "-o", f"home={dn.home}"], capture_output=True, check=False)
        assert again.returncode == 0
        dn.cli("umount", str(two))
        assert not mounted(two) and mounted(m.path)
        assert (m.path / "f").read_text() == "one file\n"
        # `ro` holds for the second place only
        ro = subprocess.run([*helper, "-o", f"home={dn.home},ro"], capture_output=True, check=False)
        assert ro.returncode == 0, ro.stderr
        with pytest.raises(OSError) as refused:
            (two / "g").write_text("no\n")
        assert refused.value.errno == errno.EROFS
        (m.path / "g").write_text("yes\n")
        assert (two / "g").read_text() == "yes\n"
    finally:
        if mounted(two):
            subprocess.run(["umount", "-l", str(two)], check=False)
        m.teardown()
