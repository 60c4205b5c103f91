"""The mount's daemon: starting it, hearing whether it mounted, and what it runs.

`walrusfs mount` forks the daemon as a new session and returns once the mount is live (or
prints why it failed, with the documented exit code): the daemon writes `ok` or `error CODE
TEXT` to a pipe after `pyfuse3.init`, so errors at mount time reach the terminal. A fork, not
a new interpreter: the command has imported the modules the daemon runs already, and
importing them again took a second of CPU, the larger part of the time a mount takes to be
live. Before it starts, the command waits for a volume still held by a daemon that was just
unmounted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import NoReturn

import trio

from chain.client import WalrusChain
from walrusfs import files, logs, network, settings
from walrusfs.clihelpers import UPLOAD_WORKER, user_errors
from walrusfs.config import Paths
from walrusfs.control import served_at
from walrusfs.errors import ExitCode, UsageError, UserError
from walrusfs.fs.errors import VolumeInUse
from walrusfs.fs.mount import lock_volume, run
from walrusfs.fs.options import MountOptions

log = logging.getLogger(__name__)

#: How long a mount waits for the volume's previous daemon to let it go: after `umount(8)` or
#: `fusermount -u` it still writes its final checkpoint and closes the database (seconds).
LOCK_WAIT = 30.0
#: seconds of a silent wait for a volume lock before `mount` says what it waits for
NOTICE_AFTER = 5.0


def make_private(paths: Paths, volume_dir: Path) -> None:
    """A volume made by an older walrusfs, or under a loose umask, may have world-readable
    files (file names in meta.db, staged contents, the log): from now on they are its user's
    alone. The new ones are created private (walrusfs.files.private_umask)."""
    for top in (paths.config_dir, paths.data_dir, paths.cache_dir):
        files.tighten(top, recursive=False)
    files.tighten(volume_dir.parent, recursive=False)
    files.tighten(volume_dir)


def wait_for_volume(volume_dir: Path, timeout: float = LOCK_WAIT) -> None:
    """Return once the volume's lock is free. A daemon that was just unmounted (`umount`,
    `fusermount -u`) holds it for a few more seconds while it checkpoints and closes the
    database: wait for it (bounded) rather than fail. A volume mounted elsewhere fails at
    once.

    Raises:
        UsageError: a live mount serves the volume.
        VolumeInUse: the lock is still held after `timeout` seconds.
    """
    start = time.monotonic()
    deadline = start + timeout
    told = False
    while True:
        try:
            fd = lock_volume(volume_dir)
        except VolumeInUse:
            where = served_at(volume_dir)
            if where is not None:
                raise UsageError(
                    f"volume {volume_dir.name} is mounted on {where}: `walrusfs umount {where}` "
                    "first, or mount another --volume"
                ) from None
            if time.monotonic() >= deadline:
                raise
            # A daemon unmounted by umount(8) usually lets go within a second or two: say
            # nothing then, and tell a person who would otherwise wonder at a silent wait,
            # on stdout: it is no error, and the fstab helper (mount(8) helpers print nothing
            # on success; xfstests compares a mount's stderr) drops stdout.
            if not told and time.monotonic() - start >= NOTICE_AFTER:
                print(
                    f"walrusfs: volume {volume_dir.name} is still held by another walrusfs "
                    f"process (an unmounted daemon finishing, or fsck); waiting up to "
                    f"{timeout:.0f} s",
                    flush=True,
                )
                told = True
            time.sleep(0.2)
            continue
        os.close(fd)
        return


def spawn_daemon(options: MountOptions, *, debug: bool) -> int:
    """Fork the daemon and return the mount's exit code once it reports over the ready pipe.

    The daemon is this process, forked once the command line is parsed: it serves `options`
    (the passphrase among them, so it never travels on a command line, in the environment
    or through a pipe) in a session of its own, its standard input /dev/null, its output
    the volume's `mount.log`, and exits with `serve`'s code; it never returns here.

    Args:
        debug: debug logging in `mount.log`.
    """
    volume_dir = options.volume_dir
    volume_dir.mkdir(parents=True, exist_ok=True)
    log_path = volume_dir / "mount.log"
    read_fd, write_fd = os.pipe()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for stream in (sys.stdout, sys.stderr):  # what is buffered is the command's, printed once
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _run_daemon(options, write_fd, log_fd, debug)
    os.close(write_fd)
    os.close(log_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        message = pipe.read().decode(errors="replace").strip()
    if message == "ok":
        print(f"walrusfs: mounted on {options.mountpoint} (log: {log_path})")
        return 0
    code = _wait(pid, timeout=30)
    if message.startswith("error "):
        _, code_text, text = message.split(" ", 2)
        print(f"walrusfs: {text}", file=sys.stderr)
        return int(code_text)
    print(
        f"walrusfs: the mount daemon exited ({code}) before mounting; see {log_path}",
        file=sys.stderr,
    )
    return int(ExitCode.INTERNAL)


def _run_daemon(options: MountOptions, ready_fd: int, log_fd: int, debug: bool) -> NoReturn:
    """The forked daemon: detach from the command's session and descriptors, serve, exit."""
    code = int(ExitCode.INTERNAL)
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        _close_inherited(keep=ready_fd)
        # the command's streams may have been replaced (the mount(8) helper silences stdout)
        sys.stdout = sys.__stdout__
        sys.stderr = sys.__stderr__
        code = serve(options, ready_fd, debug)
    except BaseException:
        traceback.print_exc()
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.flush()
        os._exit(code)  # never back into the command's frames (nor its atexit handlers)


def _close_inherited(keep: int) -> None:
    """Close the descriptors the command inherited from whoever started it (a caller's pipe
    kept open by a daemon would hold that caller until the mount ends). Those are the
    inheritable ones: Python opens its own close-on-exec, and those stay, since objects of
    this process may still own them."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2 or fd == keep:
            continue
        try:
            if os.get_inheritable(fd):
                os.close(fd)
        except OSError:  # the directory's own descriptor, closed by now
            continue


def _wait(pid: int, timeout: float) -> int | None:
    """The exit status of child `pid` once it has exited, None if it still runs after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def serve(options: MountOptions, ready_fd: int | None, debug: bool) -> int:
    """The daemon (or --foreground): start the devnet if needed, mount, serve until unmounted.

    Args:
        ready_fd: the ready pipe's end (the daemon), or None (--foreground: errors go to
            stderr instead); reported on exactly once, also when the mount never starts.
        debug: debug logging in the volume's `mount.log` (the daemon only).

    Returns the exit code; an unexpected exception is reported on the pipe, then raised.
    """
    if ready_fd is not None:
        logs.setup_daemon(options.volume_dir / "mount.log", debug)
    reported = False

    def ready(error: str | None, code: int = int(ExitCode.SERVICE)) -> None:
        nonlocal reported
        if reported:
            return
        reported = True
        if error is None:
            logs.notify_ready(f"mounted on {options.mountpoint}")
        if ready_fd is None:
            if error is not None:
                print(f"walrusfs: {error}", file=sys.stderr)
            return
        text = "ok" if error is None else f"error {code} {error}"
        os.write(ready_fd, text.encode())
        os.close(ready_fd)

    try:
        paths = Paths.from_env()
        with user_errors():
            profile, key = network.connect(settings.current(), paths, start=True)
            chain = WalrusChain(profile, key)

            async def main() -> None:
                try:
                    await _check_epochs(chain, options)
                    await run(options, chain, worker_argv=UPLOAD_WORKER, ready=ready)
                finally:
                    await chain.close()

            trio.run(main)
    except UserError as exc:
        ready(str(exc), int(exc.exit_code))
        if ready_fd is not None:
            log.error("%s", exc)
        return int(exc.exit_code)
    except BaseException as exc:
        ready(f"internal error: {exc!r}", int(ExitCode.INTERNAL))
        raise
    ready("the mount ended before it was ready", int(ExitCode.INTERNAL))
    return 0


async def _check_epochs(chain: WalrusChain, options: MountOptions) -> None:
    """Epochs past the network's `max_epochs_ahead` make every upload (or renewal) abort on
    chain, forever: refuse them before mounting."""
    most = (await chain.system_info()).max_epochs_ahead
    asked = [("--epochs / epochs", options.upload.epochs), ("--renew-epochs", options.renew_epochs)]
    for what, value in asked:
        if value is not None and value > most:
            raise UsageError(
                f"{what} {value}: this network sells storage at most {most} epochs ahead"
            )
