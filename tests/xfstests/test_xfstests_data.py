"""What xfstests' generic group (FSTYP=fuse) found in how the mount keeps file data, each
checked against a real mount: writes up to the largest file size are kept and writes past it
fail in write, buffered readers see O_DIRECT writes as soon as they complete (generic/451),
and st_blocks counts what a sparse file's data takes, not its size.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.mount_harness import errno_of
from walrusfs.fs import ops as fsops

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
        assert errno_of(os.pwrite, fd, b"zz", limit - 1) == errno.EINVAL
        assert errno_of(os.pwrite, fd, b"z", limit) == errno.EINVAL
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
