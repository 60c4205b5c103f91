"""What xfstests' generic group (FSTYP=fuse) and a review found in the mount's names, times
and attributes, each checked against a real mount: rename flags (generic/078), timestamp
order (generic/423) and range (generic/634), times that stat showed kept across a remount
(generic/003), the computed user.walrus.* attributes read by name and never listed or copied,
and control attributes that answer only the user who mounted and root.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from tests.devnet_harness import RunningDevnet
from tests.mount_harness import Mount, mount
from walrusfs.fs import ops as fsops

# -- rename flags ----------------------------------------------------------------------------

RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4
AT_FDCWD = -100


def _renameat2(old: Path, new: Path, flags: int) -> int:
    """renameat2(2) (Python has no binding): 0 or the errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.renameat2(AT_FDCWD, bytes(old), AT_FDCWD, bytes(new), flags)
    return 0 if rc == 0 else ctypes.get_errno()


def test_rename_whiteout_and_unknown_flags_are_refused(d: Path) -> None:
    """RENAME_WHITEOUT (generic/078) needs a whiteout inode this filesystem does not make: it
    must fail, not rename; RENAME_NOREPLACE and RENAME_EXCHANGE keep working."""
    (d / "a").write_bytes(b"A")
    (d / "b").write_bytes(b"B")
    assert _renameat2(d / "a", d / "c", RENAME_WHITEOUT) == errno.EINVAL
    assert _renameat2(d / "a", d / "c", RENAME_WHITEOUT | RENAME_NOREPLACE) == errno.EINVAL
    assert sorted(p.name for p in d.iterdir()) == ["a", "b"]
    assert _renameat2(d / "a", d / "b", RENAME_NOREPLACE) == errno.EEXIST
    assert _renameat2(d / "a", d / "b", RENAME_EXCHANGE) == 0
    assert (d / "a").read_bytes() == b"B" and (d / "b").read_bytes() == b"A"
    assert _renameat2(d / "a", d / "c", RENAME_NOREPLACE) == 0
    assert (d / "c").read_bytes() == b"B" and not (d / "a").exists()


# -- timestamps ------------------------------------------------------------------------------


def test_timestamps_follow_creation_order_across_kernel_and_daemon(d: Path, tmp_path: Path) -> None:
    """generic/423: each object made after another has times no earlier than its times, and a
    hard link's ctime is no earlier than the objects made before it. The kernel stamps
    regular files' mtime and ctime (writeback cache) and a link's ctime with its coarse clock
    raised to the newest fine-grained time it handed out (multigrain timestamps); the daemon
    stamps the others. A process writing and stat-ing a file on the local disk keeps raising
    that floor, as any busy machine does (this failed a clean-clone CI run)."""
    busy = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys\n"
            "fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY)\n"
            "while True: os.write(fd, b'x'); os.fstat(fd)\n",
            str(tmp_path / "busy"),
        ]
    )
    try:
        _make_in_order_and_compare(d)
    finally:
        busy.kill()
        busy.wait()


def _make_in_order_and_compare(d: Path) -> None:
    makers = {
        "fifo": lambda p: os.mkfifo(p, 0o600),
        "null": lambda p: os.mknod(p, 0o600 | stat.S_IFCHR, os.makedev(1, 3)),
        "dir": os.mkdir,
        "file": lambda p: p.write_bytes(bytes(20480)),  # dd if=/dev/zero bs=1024 count=20
        "symlink": lambda p: os.symlink(p.parent / "nowhere", p),
        "sock": lambda p: os.mknod(p, 0o600 | stat.S_IFSOCK),  # what bind(AF_UNIX) asks
    }
    for i in range(30):
        base = d / str(i)
        base.mkdir()
        made: list[tuple[str, os.stat_result]] = []
        for name, make in makers.items():
            make(base / name)
            s = os.lstat(base / name)
            assert s.st_mtime_ns <= s.st_ctime_ns, (i, name)
            if made:
                before, b = made[-1]
                assert b.st_mtime_ns <= s.st_mtime_ns, (i, before, name)
                assert b.st_ctime_ns <= s.st_ctime_ns, (i, before, name)
            made.append((name, s))
        os.link(base / "file", base / "link")
        link = os.lstat(base / "link")
        assert link.st_nlink == 2
        assert made[-1][1].st_ctime_ns <= link.st_ctime_ns, i  # the socket's, made just before
        assert dict(made)["file"].st_mtime_ns <= link.st_ctime_ns, i


def test_times_beyond_int64_nanoseconds_are_clamped_not_errors(d: Path) -> None:
    """generic/634 sets times from year 0 to year 2147483647; the mount stores int64
    nanoseconds, so it clamps them (1677-09-21 .. 2262-04-11) instead of failing with EIO,
    and answers what it stored."""
    latest = 67768036191676799  # Dec 31 23:59:59 UTC 2147483647
    earliest = -62167219200  # Jan 1 00:00:00 UTC 0
    (d / "dir").mkdir()
    os.symlink("x", d / "link")
    for path in (d / "dir", d / "link"):
        os.utime(path, ns=(latest * 10**9, earliest * 10**9), follow_symlinks=False)
        s = os.lstat(path)
        assert (s.st_atime_ns, s.st_mtime_ns) == (fsops.TIME_MAX_NS, fsops.TIME_MIN_NS)
        os.utime(path, ns=(2**62, -(2**62)), follow_symlinks=False)  # in range: kept exactly
        s = os.lstat(path)
        assert (s.st_atime_ns, s.st_mtime_ns) == (2**62, -(2**62))
    f = d / "file"
    f.write_bytes(b"x")
    os.utime(f, (latest, earliest))  # no error; what a remount shows: test_read_only_mount
    assert f.read_bytes() == b"x"


def test_times_stat_showed_are_the_times_after_a_remount(dn: RunningDevnet, tmp_path: Path) -> None:
    """xfstests generic/003: with the writeback cache the kernel stamps a write's mtime and
    ctime; the daemon stamping its own later clock at the WRITE made them change at the next
    mount."""
    with mount(dn, tmp_path / "mnt", volume="times") as m:
        for i in range(5):
            with open(m.path / f"f{i}", "wb") as f:
                f.write(b"x" * (1000 * (i + 1)))
                time.sleep(0.02)
                f.write(b"y")
        before = {i: os.stat(m.path / f"f{i}") for i in range(5)}
        m.umount()
        m.mount()
        for i, st in before.items():
            now = os.stat(m.path / f"f{i}")
            assert (now.st_mtime_ns, now.st_ctime_ns, now.st_size) == (
                st.st_mtime_ns,
                st.st_ctime_ns,
                st.st_size,
            )


# -- xattrs ----------------------------------------------------------------------------------


def test_walrus_attributes_are_read_by_name_and_never_copied(mnt: Mount, d: Path) -> None:
    """The computed user.walrus.* names are not listed (xfstests generic/020, 062 and six more
    count or dump listings): `walrusfs info` and getxattr by name read them, and tools that
    copy attributes (cp -a, rsync -X, setfattr --restore) never meet an EPERM for them."""
    f = d / "f"
    f.write_bytes(b"walrus")
    os.setxattr(f, "user.mine", b"1")
    assert os.listxattr(f) == ["user.mine"]
    getfattr = ["getfattr", "-d", str(f)]
    dump = subprocess.run(getfattr, capture_output=True, text=True, check=True).stdout
    assert 'user.mine="1"' in dump and "user.walrus" not in dump
    mnt.sync()
    info = json.loads(mnt.dn.cli("info", "--json", str(f)).stdout)[str(f)]
    assert info["state"] == "certified"
    assert info["blob_id"] == os.getxattr(f, "user.walrus.blob_id").decode()
    assert info["object_id"].startswith("0x") and int(info["end_epoch"]) > 0
    text = mnt.dn.cli("info", str(f)).stdout
    assert f"blob_id      {info['blob_id']}" in text
    assert mnt.dn.cli("info", str(d), check=False).returncode == 3  # not a regular file
    assert not [n for n in os.listxattr(d) if n.startswith("user.walrus.")]
    # copies inside the mount, as backup tools make them: no filter needed
    subprocess.run(["cp", "-a", str(f), str(d / "copy")], check=True)
    subprocess.run(["rsync", "-aX", str(f), str(d / "copy2")], check=True)
    restore = subprocess.run(
        ["setfattr", "--restore=-"],
        input=dump.replace(str(f).lstrip("/"), str(d / "copy").lstrip("/")),
        cwd="/",  # getfattr writes paths without their leading /
        text=True,
        capture_output=True,
        check=False,
    )
    assert restore.returncode == 0, restore.stderr
    for copy in ("copy", "copy2"):
        assert (d / copy).read_bytes() == b"walrus"
        assert os.getxattr(d / copy, "user.mine") == b"1"
        assert os.listxattr(d / copy) == ["user.mine"]


def _as_nobody(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-c",
            code,
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_control_attributes_answer_only_the_owner_and_root(mnt: Mount) -> None:
    """With allow_other, anyone reaches the root directory; the control attributes (status:
    balances, paths, object IDs) answer only the user who mounted and root."""
    assert os.getuid() == 0  # the daemon's owner here is root
    assert int(os.getxattr(mnt.path, "user.walrusfs.ctl.pid")) == mnt.pid
    probe = (
        "import errno, os, sys\n"
        "print(sorted(os.listdir(sys.argv[1])) is not None)\n"
        "for name in ('status', 'pid'):\n"
        "    try:\n"
        "        os.getxattr(sys.argv[1], 'user.walrusfs.ctl.' + name)\n"
        "        print(name, 'answered')\n"
        "    except OSError as exc:\n"
        "        print(name, errno.errorcode[exc.errno])\n"
    )
    proc = _as_nobody(probe, str(mnt.path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:3] == ["True", "status EACCES", "pid EACCES"], proc.stdout
