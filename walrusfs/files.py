"""Reading the user's input files and secrets, writing output files, and keeping walrusfs's
own files private.

Every failure is an `InputError` (exit code 3) that names the path and the problem, so no
command shows a traceback for a missing file.
"""

from __future__ import annotations

import logging
import os
import select
import stat
import sys
import time
from pathlib import Path

from walrusfs.errors import InputError

log = logging.getLogger(__name__)


def read_input(name: str, directory_hint: str = "give a file") -> bytes:
    """The bytes of file `name` ('-' is standard input).

    Args:
        directory_hint: what the error tells a user who named a directory.

    Raises:
        InputError: `name` is a directory, missing or unreadable.
    """
    if name == "-":
        return sys.stdin.buffer.read()
    path = Path(name)
    try:
        if path.is_dir():
            raise InputError(f"{name}: is a directory; {directory_hint}")
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except PermissionError:
        raise InputError(f"{name}: permission denied") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot read: {exc.strerror or exc}") from None


def write_output(name: str | None, data: bytes) -> None:
    """Write `data` to file `name` whole or not at all (temp file + rename); None is stdout.

    Raises:
        InputError: the file cannot be written (nothing is left behind).
    """
    if name is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    tmp = Path(f"{name}.walrusfs-tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, name)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{name}: cannot write: {exc.strerror or exc}") from None


# -- secrets ----------------------------------------------------------------------------------

#: A passphrase file holds one line; anything bigger is not one (and /dev/zero would never end).
SECRET_LIMIT = 4096
#: How long a secret piped on standard input may take to arrive (a pipe whose writer never
#: writes nor closes would otherwise hang the command for good).
STDIN_TIMEOUT = 30.0


def _is_stdin(st: os.stat_result) -> bool:
    try:
        mine = os.fstat(0)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _read_pipe(fd: int, name: str, limit: int, timeout: float) -> bytes:
    """Up to `limit` + 1 bytes until EOF, giving up after `timeout` seconds: a pipe's writer
    may never write nor close it."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    data = bytearray()
    while len(data) <= limit:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            raise InputError(f"{name}: nothing arrived within {timeout:.0f} s (an open pipe?)")
        try:
            chunk = os.read(fd, limit + 1 - len(data))
        except BlockingIOError:
            continue
        if not chunk:
            break
        data += chunk
    return bytes(data)


def read_secret(name: str, *, limit: int = SECRET_LIMIT, timeout: float = STDIN_TIMEOUT) -> bytes:
    """The bytes of a small secret file (a passphrase file), at most `limit`.

    Only a regular file, or a pipe given as standard input (`-`, /dev/stdin), is read: a
    device such as /dev/zero would fill memory, and opening a named FIFO blocks until a
    writer comes (so it is opened non-blocking and refused).

    Args:
        limit: the most bytes a secret may have.
        timeout: seconds a pipe may take to deliver it.

    Raises:
        InputError: missing, unreadable, larger than `limit`, neither a regular file nor a
            pipe on standard input, or a pipe that delivered nothing in time.
    """
    if name == "-":
        fd, own = 0, False
    else:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise InputError(f"{name}: no such file") from None
        except PermissionError:
            raise InputError(f"{name}: permission denied") from None
        except OSError as exc:
            raise InputError(f"{name}: cannot read: {exc.strerror or exc}") from None
        own = True
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            if st.st_size > limit:
                raise InputError(
                    f"{name}: {st.st_size} bytes; a passphrase file holds one line (at most "
                    f"{limit} bytes)"
                )
            data = os.read(fd, limit + 1)
        elif (stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode)) and (
            name == "-" or _is_stdin(st)
        ):
            data = _read_pipe(fd, name, limit, timeout)
        else:
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise InputError(
                f"{name}: {kind}; give a regular file holding the passphrase (or pipe it on "
                "standard input with `-`)"
            )
    except OSError as exc:
        raise InputError(f"{name}: cannot read: {exc.strerror or exc}") from None
    finally:
        if own:
            os.close(fd)
    if len(data) > limit:
        raise InputError(f"{name}: more than {limit} bytes; a passphrase file holds one line")
    return data


# -- privacy of what walrusfs keeps on disk ---------------------------------------------------

#: Everything walrusfs creates under its directories is for its user alone: metadata (file
#: names), staged file contents, cached slivers, logs, keys.
PRIVATE_UMASK = 0o077


def private_umask() -> None:
    """Every file and directory this process (and the processes it starts: the mount daemon,
    its upload worker, the devnet) creates is 0600/0700 whatever the user's umask. Files
    created inside the mount are not affected: their mode comes from the kernel's request."""
    os.umask(PRIVATE_UMASK)


def _tighten_one(path: str, st: os.stat_result) -> None:
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o077:
        return
    try:
        os.chmod(path, mode & ~0o077, follow_symlinks=False)
    except OSError as exc:  # not ours (another user's file): say so, the rest goes on
        log.warning("cannot make %s private (mode %o): %s", path, mode, exc.strerror or exc)


def tighten(path: Path, *, recursive: bool = True) -> None:
    """Take group and other permissions off `path` (and, `recursive`, everything under it):
    files and directories made by an older walrusfs, or under a looser umask, become 0600 /
    0700. Symlinks are not followed and other filesystems mounted below are not entered."""
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(top.st_mode):
        return
    _tighten_one(str(path), top)
    if not recursive or not stat.S_ISDIR(top.st_mode):
        return
    for root, dirs, names in os.walk(path):
        for name in [*dirs, *names]:
            full = os.path.join(root, name)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue  # removed meanwhile (a running devnet, a cache eviction)
            except OSError as exc:  # a dead mount below answers ENOTCONN: not ours either
                log.warning("cannot look at %s: %s", full, exc.strerror or exc)
                continue
            if stat.S_ISLNK(st.st_mode):
                continue
            if st.st_dev != top.st_dev:
                dirs[:] = [d for d in dirs if d != name]  # a mount below: not ours
                continue
            _tighten_one(full, st)
