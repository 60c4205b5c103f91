"""Read-only volumes, as xfstests' generic group (FSTYP=fuse) and a review use them: a volume
mounted read-only serves what it holds, refuses every change with EROFS and keeps the times
the read-write mount stored (generic/634 compares them across a remount); and the handlers
refuse changes on a read-only volume themselves, in process, whatever the kernel's mount
options.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pyfuse3
import pytest

from cache.staging import Staging
from tests.devnet_harness import RunningDevnet
from tests.mount_harness import errno_of, mount
from walrusfs.fs import ops as fsops
from walrusfs.fs import schema
from walrusfs.fs.content import Content

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
            assert errno_of(change) == errno.EROFS
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
