"""What xfstests' generic group (FSTYP=fuse) and a review found in the mount, each checked
against a real mount: the largest file size, rename flags, O_DIRECT writes and buffered
readers (generic/451), timestamp order (generic/423) and range (generic/634), st_blocks of
sparse files, read-only mounts, who may use the control attributes, and listxattr.
"""

from __future__ import annotations

import ctypes
import errno
import json
import mmap
import os
import platform
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyfuse3
import pytest

from cache.staging import Staging
from tests.devnet_harness import RunningDevnet, start_devnet
from tests.mount_harness import Mount, mount
from walrusfs.fs import ops as fsops
from walrusfs.fs import schema
from walrusfs.fs.content import Content

N_SHARDS = 10


@pytest.fixture(scope="module")
def dn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevnet]:
    yield from start_devnet(tmp_path_factory.mktemp("xfstests-home"), n_shards=N_SHARDS)


@pytest.fixture(scope="module")
def public_dir() -> Iterator[Path]:
    """A directory every user can traverse (pytest's own are 0700), for a mountpoint that
    another uid must reach."""
    path = Path(tempfile.mkdtemp(prefix="walrusfs-xfstests-"))
    path.chmod(0o755)
    yield path
    for child in path.iterdir():
        child.rmdir()
    path.rmdir()


@pytest.fixture(scope="module")
def mnt(dn: RunningDevnet, public_dir: Path) -> Iterator[Mount]:
    with mount(dn, public_dir / "mnt", "--allow-other", volume="xfstests") as m:
        yield m


@pytest.fixture
def d(mnt: Mount, request: pytest.FixtureRequest) -> Path:
    path: Path = mnt.path / str(request.node.name)
    path.mkdir()
    return path


def _errno(fn: object, *args: object, **kwargs: object) -> int:
    with pytest.raises(OSError) as info:
        fn(*args, **kwargs)  # type: ignore[operator]
    assert info.value.errno is not None
    return info.value.errno


# -- the largest file ------------------------------------------------------------------------


def test_writes_up_to_the_largest_file_are_kept_and_past_it_fail_in_write(d: Path) -> None:
    """The mount's largest file is the kernel's (MAX_LFS_FILESIZE): every write the kernel
    accepts into the page cache, the mount keeps. With a lower limit of its own, a write
    past it succeeded, close too, fsync said EFBIG and the bytes were gone at the next
    mount. Past the last byte, write() itself fails: with EINVAL, as the end of the write
    overflows the kernel's file offset (loff_t) before any size limit is looked at."""
    limit = fsops.MAX_FILE_SIZE
    f = d / "edge"
    fd = os.open(f, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        assert os.pwrite(fd, b"a", 1 << 60) == 1  # the old limit: accepted, then lost
        assert os.pwrite(fd, b"z", limit - 1) == 1  # the last byte a file can hold
        os.fsync(fd)  # nothing deferred: the bytes reached the mount
        assert os.fstat(fd).st_size == limit
        assert _errno(os.pwrite, fd, b"zz", limit - 1) == errno.EINVAL
        assert _errno(os.pwrite, fd, b"z", limit) == errno.EINVAL
        direct = os.open(f, os.O_RDONLY | os.O_DIRECT)  # from the mount, not the page cache
        try:
            assert os.pread(direct, 1, 1 << 60) == b"a"
            assert os.pread(direct, 1, limit - 1) == b"z"
        finally:
            os.close(direct)
        # the mount's statfs adds up file sizes: do not leave one of 2**63 bytes behind
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)
    os.unlink(f)


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


# -- O_DIRECT writes and buffered readers (generic/451) -------------------------------------


# struct iocb and struct io_event of linux/aio_abi.h (little-endian layout)
class _Iocb(ctypes.Structure):
    _fields_ = [
        ("aio_data", ctypes.c_uint64),
        ("aio_key", ctypes.c_uint32),
        ("aio_rw_flags", ctypes.c_int32),
        ("aio_lio_opcode", ctypes.c_uint16),
        ("aio_reqprio", ctypes.c_int16),
        ("aio_fildes", ctypes.c_uint32),
        ("aio_buf", ctypes.c_uint64),
        ("aio_nbytes", ctypes.c_uint64),
        ("aio_offset", ctypes.c_int64),
        ("aio_reserved2", ctypes.c_uint64),
        ("aio_flags", ctypes.c_uint32),
        ("aio_resfd", ctypes.c_uint32),
    ]


class _IoEvent(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_uint64),
        ("obj", ctypes.c_uint64),
        ("res", ctypes.c_int64),
        ("res2", ctypes.c_int64),
    ]


_AIO_SYSCALLS = {  # io_setup, io_destroy, io_submit, io_getevents
    "x86_64": (206, 207, 209, 208),
    "aarch64": (0, 1, 2, 4),
}
IOCB_CMD_PWRITE = 1


class _Aio:
    """Linux native AIO through raw system calls (no libaio here): an O_DIRECT write that is
    still in flight when io_submit returns, as xfstests' aio-dio-cycle-write makes."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.syscall.restype = ctypes.c_long
        self.setup, self.destroy, self.submit, self.getevents = _AIO_SYSCALLS[platform.machine()]
        self.ctx = ctypes.c_ulong(0)
        self._call(self.setup, ctypes.c_long(1), ctypes.byref(self.ctx))

    def _call(self, number: int, *args: object) -> int:
        rc = int(self.libc.syscall(ctypes.c_long(number), *args))
        if rc < 0:
            raise OSError(ctypes.get_errno(), f"aio syscall {number}")
        return rc

    def pwrite(self, fd: int, buf: mmap.mmap, offset: int) -> int:
        address = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        iocb = _Iocb(
            aio_lio_opcode=IOCB_CMD_PWRITE,
            aio_fildes=fd,
            aio_buf=address,
            aio_nbytes=len(buf),
            aio_offset=offset,
        )
        iocbs = (ctypes.POINTER(_Iocb) * 1)(ctypes.pointer(iocb))
        assert self._call(self.submit, self.ctx, ctypes.c_long(1), iocbs) == 1
        event = _IoEvent()
        assert (
            self._call(
                self.getevents,
                self.ctx,
                ctypes.c_long(1),
                ctypes.c_long(1),
                ctypes.byref(event),
                None,
            )
            == 1
        )
        return int(event.res)

    def close(self) -> None:
        self._call(self.destroy, self.ctx)


@pytest.mark.skipif(platform.machine() not in _AIO_SYSCALLS, reason="AIO syscall numbers")
def test_buffered_reads_after_async_direct_writes_are_current(d: Path) -> None:
    """generic/451's pattern: readers keep reading a file through the page cache while a
    writer rewrites it with asynchronous O_DIRECT writes, alternating two patterns. After each
    write completes, a buffered read through a fresh descriptor returns the new bytes at once,
    and one through a descriptor open all along soon after. The kernel drops cached pages
    before such a write but not after it, so pages the readers cached while it was in flight
    were kept (keep_cache on every open) and read back as the old bytes."""
    size = 655360
    f = d / "aio"
    patterns = []
    for byte in (0x55, 0xAA):
        buf = mmap.mmap(-1, size)  # page-aligned, as O_DIRECT wants
        buf.write(bytes([byte]) * size)
        patterns.append(buf)
    f.write_bytes(bytes(patterns[0]))
    stop = threading.Event()
    watcher = os.open(f, os.O_RDONLY)  # open all along, reads through the page cache

    def read_fresh() -> None:  # xfs_io -c "pread 0 SIZE" in a loop
        while not stop.is_set():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.pread(fd, size, 0)
            finally:
                os.close(fd)

    def read_open() -> None:
        while not stop.is_set():
            os.pread(watcher, size, 0)

    readers = [threading.Thread(target=fn) for fn in (read_fresh, read_fresh, read_open)]
    for t in readers:
        t.start()
    aio = _Aio()
    stale: list[str] = []
    rounds = 0
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not stale:
            rounds += 1
            pattern = bytes(patterns[rounds % 2])
            fd = os.open(f, os.O_RDWR | os.O_DIRECT)
            try:
                assert aio.pwrite(fd, patterns[rounds % 2], 0) == size
            finally:
                os.close(fd)
            fd = os.open(f, os.O_RDONLY)
            try:
                if os.pread(fd, size, 0) != pattern:
                    stale.append(f"a fresh descriptor after write {rounds}")
            finally:
                os.close(fd)
            settle = time.monotonic() + 5
            while os.pread(watcher, size, 0) != pattern:
                if time.monotonic() > settle:
                    stale.append(f"the open descriptor, 5 s after write {rounds}")
                    break
                time.sleep(0.01)
    finally:
        stop.set()
        for t in readers:
            t.join()
        aio.close()
        os.close(watcher)
    assert not stale, f"stale bytes from buffered reads: {stale}"
    assert rounds > 20, "too few rounds to mean anything"


# -- timestamps ------------------------------------------------------------------------------


def test_timestamps_follow_creation_order_across_kernel_and_daemon(d: Path) -> None:
    """generic/423: each object made after another has times no earlier than its times, and a
    hard link's ctime is no earlier than the objects made before it. The kernel stamps
    regular files' mtime and ctime (writeback cache) and a link's ctime with its coarse clock;
    the daemon stamped the others with the precise one, which runs up to a tick ahead."""
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


# -- st_blocks -------------------------------------------------------------------------------


def test_st_blocks_counts_allocated_bytes_not_holes(d: Path) -> None:
    """`du` adds up st_blocks: a sparse file takes what its data takes, not its size."""
    f = d / "sparse"
    with f.open("wb") as h:
        h.truncate(16 << 20)
        h.seek(8 << 20)
        h.write(os.urandom(4096))
    s = f.stat()
    assert s.st_size == 16 << 20
    assert 4096 <= s.st_blocks * 512 <= 1 << 20, s.st_blocks
    du = subprocess.run(["du", "-k", str(f)], capture_output=True, text=True, check=True)
    assert int(du.stdout.split()[0]) <= 1024
    small = d / "small"
    small.write_bytes(b"y" * 1000)
    assert small.stat().st_blocks == 2
    (d / "empty").write_bytes(b"")
    assert (d / "empty").stat().st_blocks == 0
    assert os.lstat(d).st_blocks == 0


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


# -- read-only -------------------------------------------------------------------------------


def test_read_only_mount_refuses_every_change(dn: RunningDevnet, tmp_path: Path) -> None:
    """A volume mounted read-only serves what it holds and refuses changes with EROFS, and
    statvfs says ST_RDONLY. Also: times clamped by the read-write mount read back as
    stored after the remount (generic/634 compares them across one)."""
    path = tmp_path / "mnt"
    latest = 67768036191676799
    with mount(dn, path, volume="ro") as m:
        (path / "dir").mkdir()
        (path / "file").write_bytes(b"kept")
        os.setxattr(path / "file", "user.k", b"v")
        os.utime(path / "file", (latest, latest))
        m.umount()
    with mount(dn, path, "--read-only", volume="ro"):
        assert (path / "file").read_bytes() == b"kept"
        assert os.getxattr(path / "file", "user.k") == b"v"
        assert os.stat(path / "file").st_mtime_ns == fsops.TIME_MAX_NS
        assert os.statvfs(path).f_flag & os.ST_RDONLY
        f, sub = path / "file", path / "dir"
        changes = [
            lambda: (path / "new").write_bytes(b""),
            lambda: os.mkdir(path / "newdir"),
            lambda: os.mkfifo(path / "fifo"),
            lambda: os.symlink("x", path / "sym"),
            lambda: os.link(f, path / "hard"),
            lambda: os.unlink(f),
            lambda: os.rmdir(sub),
            lambda: os.rename(f, path / "moved"),
            lambda: os.chmod(f, 0o600),
            lambda: os.utime(f, (1, 1)),
            lambda: os.truncate(f, 0),
            lambda: os.open(f, os.O_WRONLY),
            lambda: os.open(f, os.O_RDONLY | os.O_TRUNC),
            lambda: os.setxattr(f, "user.k", b"w"),
            lambda: os.removexattr(f, "user.k"),
        ]
        for change in changes:
            assert _errno(change) == errno.EROFS
        assert (path / "file").read_bytes() == b"kept"


# -- the handlers themselves, read-only whatever the kernel's mount options ----------------


class _Options:
    def __init__(self, read_only: bool) -> None:
        self.read_only = read_only


class _Control:
    """The part of ops.Control these handlers use (no uploads, no statfs, no commands)."""

    def __init__(self, read_only: bool) -> None:
        self.options = _Options(read_only)
        self.woken = 0

    def wake_uploader(self) -> None:
        self.woken += 1


@pytest.mark.trio
async def test_handlers_refuse_changes_on_a_read_only_volume(tmp_path: Path) -> None:
    """The kernel refuses changes on an "ro" mount before they reach the daemon; the
    handlers refuse them too, so the volume stays unchanged whatever the mount options."""
    db = schema.open_volume(
        tmp_path / "meta.db", uid=0, gid=0, chunk_size=1 << 20, encryption="none"
    )
    staging = Staging(tmp_path / "staging")
    try:
        content = Content(db, staging, None, 1 << 20)  # type: ignore[arg-type]  # no reads
        ctx = pyfuse3.RequestContext()
        root = schema.ROOT_INODE
        rw = fsops.Operations(db, content, _Control(False))  # type: ignore[arg-type]
        fi, file_attrs = await rw.create(root, b"f", 0o644, os.O_WRONLY, ctx)
        await rw.release(fi.fh)
        await rw.mkdir(root, b"d", 0o755, ctx)
        await rw.setxattr(file_attrs.st_ino, b"user.a", b"1", ctx)
        f = file_attrs.st_ino
        ro = fsops.Operations(db, content, _Control(True))  # type: ignore[arg-type]
        snapshot = "SELECT id, mode, size, nlink, mtime_ns, ctime_ns FROM inodes ORDER BY id"
        before = (db.execute(snapshot).fetchall(), db.execute("SELECT * FROM dentries").fetchall())
        fields = pyfuse3.SetattrFields()
        calls = [
            ro.mkdir(root, b"d2", 0o755, ctx),
            ro.mknod(root, b"n", 0o644 | stat.S_IFIFO, 0, ctx),
            ro.symlink(root, b"s", b"t", ctx),
            ro.create(root, b"c", 0o644, os.O_WRONLY, ctx),
            ro.link(f, root, b"l", ctx),
            ro.unlink(root, b"f", ctx),
            ro.rmdir(root, b"d", ctx),
            ro.rename(root, b"f", root, b"g", 0, ctx),
            ro.setattr(f, file_attrs, fields, None, ctx),
            ro.open(f, os.O_WRONLY, ctx),
            ro.open(f, os.O_RDONLY | os.O_TRUNC, ctx),
            ro.setxattr(f, b"user.a", b"2", ctx),
            ro.removexattr(f, b"user.a", ctx),
        ]
        for call in calls:
            with pytest.raises(pyfuse3.FUSEError) as info:
                await call
            assert info.value.errno == errno.EROFS
        fi = await ro.open(f, os.O_RDONLY, ctx)  # reading is fine
        with pytest.raises(pyfuse3.FUSEError) as info:
            await ro.write(fi.fh, 0, b"x")
        assert info.value.errno == errno.EROFS
        await ro.release(fi.fh)
        after = (db.execute(snapshot).fetchall(), db.execute("SELECT * FROM dentries").fetchall())
        assert after == before
        assert await ro.getxattr(f, b"user.a", ctx) == b"1"
    finally:
        staging.close()
        db.close()


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
