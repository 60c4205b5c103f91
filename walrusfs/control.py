"""A walrusfs mount seen from outside its daemon: which mount a command means, whether its
daemon is alive, asking it for its status, syncing and unmounting it.

The commands talk to the daemon through xattrs on the mount's root (`user.walrusfs.ctl.*`, see
docs/mount.md), as S3QL's tools do: no socket, no auth, and only who can see the mount can ask.
The kernel's table of mounts (walrusfs/mounts.py) says where the mounts are.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from walrusfs import mounts
from walrusfs.clihelpers import ProgressBar
from walrusfs.config import Paths
from walrusfs.errors import ExitCode, ServiceError, UsageError, UserError

#: The prefix of the control xattrs on a mount's root.
CTL = "user.walrusfs.ctl."
#: The type of a walrusfs mount in the kernel's table of mounts.
FSTYPE = "fuse.walrusfs"


# -- which mount ------------------------------------------------------------------------------


def _holds(pid: int, path: Path) -> bool:
    """Whether process `pid` has `path` open (its volume lock)."""
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        links = [os.readlink(fd_dir / name) for name in os.listdir(fd_dir)]
    except OSError:  # gone, or not ours to look at
        return False
    return str(path) in links


def served_at(volume_dir: Path) -> Path | None:
    """The live mount serving this volume, if any (its daemon holds the volume's lock)."""
    lock = (volume_dir / "lock").absolute()
    for entry in mounts.mounts():
        if entry.fstype != FSTYPE or entry.source != f"walrusfs:{volume_dir.name}":
            continue
        try:
            pid = int(json.loads(os.getxattr(entry.target, CTL + "pid")))
        except (OSError, ValueError):
            continue  # dead, or not answering: not the holder we look for
        if _holds(pid, lock):
            return Path(entry.target)
    return None


def find_mount(arg: str | None) -> Path:
    """The mount a command without a mountpoint means: the only walrusfs mount, or else the
    only one serving a volume of this `WALRUSFS_HOME` (other users' and other homes' mounts on
    the machine, a test suite's for one, do not make `walrusfs status` ambiguous).

    Args:
        arg: the mountpoint the command was given, if any; it must be a walrusfs mount.

    Raises:
        UsageError: `arg` is not a walrusfs mount, or none or several mounts could be meant.
    """
    if arg:
        mnt = Path(arg).absolute()
        entry = mounts.mounted_at(mnt)
        if entry is None or entry.fstype != FSTYPE:
            raise UsageError(f"{mnt} is not a walrusfs mount")
        return mnt
    found = list(dict.fromkeys(Path(e.target) for e in mounts.mounts() if e.fstype == FSTYPE))
    if len(found) > 1:
        volumes = Paths.from_env().data_dir / "volumes"
        dirs = sorted(volumes.iterdir()) if volumes.is_dir() else []
        ours = [served for d in dirs if (served := served_at(d)) is not None]
        found = ours or found
    if len(found) != 1:
        raise UsageError(
            "no walrusfs mount found"
            if not found
            else "several walrusfs mounts: name one (" + ", ".join(map(str, found)) + ")"
        )
    return found[0]


# -- dead mounts ------------------------------------------------------------------------------


def fusermount() -> str:
    """The FUSE unmount helper found on PATH (fusermount3, else the FUSE 2 one)."""
    return shutil.which("fusermount3") or shutil.which("fusermount") or "fusermount"


def is_dead(mnt: Path) -> bool:
    """A FUSE mount whose daemon is gone answers every request with ENOTCONN (until it is
    detached). statfs is always a request (a stat may be answered from the kernel's
    attribute cache)."""
    try:
        os.statvfs(mnt)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def detach(mnt: Path) -> None:
    """Detach a dead mount (`fusermount -u -z`: nothing can be flushed through it anyway).

    Raises:
        ServiceError: fusermount refused (another user's mount, say), with how to do it.
    """
    proc = subprocess.run(
        [fusermount(), "-u", "-z", str(mnt)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise ServiceError(
            f"cannot detach the dead mount {mnt}: {proc.stderr.strip()}; run "
            f"`fusermount3 -u -z {mnt}` (as root if it is another user's)"
        )


def clear_dead_mount(mnt: Path) -> None:
    """A walrusfs mount whose daemon was killed (kill -9, OOM) leaves its mountpoint answering
    ENOTCONN: detach it so the mount can go on there. Another filesystem's dead mount is not
    ours to remove: say how.

    Raises:
        UsageError: another filesystem's dead mount is there, or too many are stacked.
        ServiceError: a dead walrusfs mount could not be detached.
    """
    for _ in range(8):  # mounts may be stacked; each detach uncovers the one below
        entry = mounts.mounted_at(mnt)
        if entry is None or not is_dead(mnt):
            return
        if entry.fstype != FSTYPE:
            raise UsageError(
                f"{mnt} is a dead {entry.fstype} mount (its process exited): "
                f"`fusermount3 -u -z {mnt}` detaches it"
            )
        detach(mnt)
        print(
            f"walrusfs: {mnt} was left by a walrusfs mount whose daemon died; detached it (what "
            "it had staged uploads now)",
            file=sys.stderr,
        )
    raise UsageError(f"{mnt}: too many dead mounts stacked on it; `fusermount3 -u -z {mnt}`")


# -- asking a running mount -------------------------------------------------------------------


def query(mnt: Path, name: str) -> Any:
    """The daemon's answer to control attribute `name` (`pid`, `status`), decoded from JSON.

    Raises:
        ServiceError: the mount does not answer (its daemon is gone, or refused).
    """
    try:
        return json.loads(os.getxattr(mnt, CTL + name))
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise ServiceError(
                f"the mount at {mnt} does not answer: its daemon is gone (killed?); "
                f"`walrusfs umount {mnt}` detaches it, and mounting again resumes the uploads"
            ) from None
        raise ServiceError(f"the mount at {mnt} does not answer: {exc.strerror}") from None


def sync(mnt: Path, label: str) -> None:
    """Ask the mount to upload everything, with a progress bar of the bytes left (a read-only
    mount has nothing to upload, and its kernel refuses the request with EROFS).

    The request blocks until the uploads are certified, so it runs in a thread while this one
    polls the status for the bar.

    Raises:
        ServiceError: the sync failed (the daemon's reason when it gives one); the data stays
            staged.
    """
    entry = mounts.mounted_at(mnt)
    if entry is not None and "ro" in entry.options:
        return
    result: dict[str, BaseException | None] = {"error": None}

    def go() -> None:
        try:
            os.setxattr(mnt, CTL + "sync", b"1")
        except BaseException as exc:  # reported below
            result["error"] = exc

    worker = threading.Thread(target=go, daemon=True)
    worker.start()
    bar = ProgressBar(label)
    total: int | None = None
    while worker.is_alive():
        worker.join(0.5)
        if not worker.is_alive():
            break
        # status polling may fail transiently during a sync; the sync's own result is what counts
        with contextlib.suppress(ServiceError):
            pending = query(mnt, "status")["pending"]["bytes"]
            total = max(total or 0, pending)
            bar(total - pending, total)
    err = result["error"]
    if isinstance(err, OSError):
        reason = err.strerror
        with contextlib.suppress(ServiceError):  # the daemon's own words, when it answers
            reason = query(mnt, "status").get("sync_error") or reason
        raise ServiceError(
            f"sync failed: {reason}; the data stays staged and its upload is retried; "
            f"`walrusfs status {mnt}` shows the last upload error"
        )
    if err is not None:
        raise err
    if total:
        bar(total, total)


def unmount(mnt: Path, *, upload: bool, lazy: bool) -> None:
    """Upload what is pending (`upload`), unmount, and wait for the daemon to exit; a dead
    mount is only detached. The daemon serves on while a bind mount of it is left (fstab.py).

    Args:
        upload: sync first; else what is staged uploads at the next mount of the volume.
        lazy: detach now even if the mount is busy (`umount -l`).

    Raises:
        UserError: fusermount refused (exit code SERVICE).
        ServiceError: the mount did not answer, the sync failed, or the daemon did not exit
            within two minutes of the unmount.
    """
    if is_dead(mnt):
        detach(mnt)
        print(
            f"walrusfs: {mnt} was a dead mount (its daemon had exited): detached. What it had "
            "not uploaded stays staged and uploads at the next mount of the volume",
            file=sys.stderr,
        )
        return
    pid = int(query(mnt, "pid"))
    if upload:
        sync(mnt, "uploading before unmount")
    entry = mounts.mounted_at(mnt)
    cmd = [fusermount(), "-u"] + (["-z"] if lazy else []) + [str(mnt)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise UserError(f"cannot unmount {mnt}: {proc.stderr.strip()}", ExitCode.SERVICE)
    if entry is not None and any(
        e.fstype == FSTYPE and e.source == entry.source for e in mounts.mounts()
    ):
        return  # a bind mount of it is left (fstab.py): the daemon serves on
    deadline = time.monotonic() + 120
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if Path(f"/proc/{pid}").exists():
        raise ServiceError(f"unmounted, but the daemon (pid {pid}) has not exited yet")
