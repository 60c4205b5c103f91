"""The mount's daemon: starting it, hearing whether it mounted, and what it runs.

`walrusfs mount` starts the daemon as a new session running this same command line with a
hidden `--ready-fd`, and returns once the mount is live (or prints why it failed, with the
documented exit code): the daemon writes `ok` or `error CODE TEXT` to that pipe after
`pyfuse3.init`, so errors at mount time reach the terminal. Before it starts, the command waits
for a volume still held by a daemon that was just unmounted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

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


def spawn_daemon(
    mnt: Path, volume_dir: Path, passphrase: str | None, *, debug: bool, mountpoint_given: bool
) -> int:
    """Start the daemon and return the mount's exit code once it reports over the ready pipe.

    The daemon runs this process's command line again (`sys.argv`) with `--ready-fd`; its
    output goes to the volume's `mount.log`.

    Args:
        mnt: the mountpoint, appended to the command line when it was not given on it.
        passphrase: handed to the daemon on its standard input, never in its environment or
            on a command line.
        debug: `--debug` for the daemon.
        mountpoint_given: whether the command line names the mountpoint.
    """
    volume_dir.mkdir(parents=True, exist_ok=True)
    log_path = volume_dir / "mount.log"
    read_fd, write_fd = os.pipe()
    argv = [sys.executable, "-m", "walrusfs.cli"] + (["--debug"] if debug else [])
    argv += [a for a in sys.argv[1:] if a != "--debug"]
    if not mountpoint_given:
        argv.append(str(mnt))
    if passphrase is not None:
        # read once, here: handed to the daemon on its standard input (a later option wins
        # in argparse), never in its environment or on a command line
        argv += ["--passphrase-file", "-"]
    argv += ["--ready-fd", str(write_fd)]
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL if passphrase is None else subprocess.PIPE,
            stdout=logf,
            stderr=logf,
            pass_fds=(write_fd,),
            start_new_session=True,
        )
    os.close(write_fd)
    if proc.stdin is not None:
        with contextlib.suppress(BrokenPipeError):  # the daemon died at once: reported below
            proc.stdin.write(f"{passphrase}\n".encode())
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
    with os.fdopen(read_fd, "rb") as pipe:
        message = pipe.read().decode(errors="replace").strip()
    if message == "ok":
        print(f"walrusfs: mounted on {mnt} (log: {log_path})")
        return 0
    code = proc.wait(timeout=30)
    if message.startswith("error "):
        _, code_text, text = message.split(" ", 2)
        print(f"walrusfs: {text}", file=sys.stderr)
        return int(code_text)
    print(
        f"walrusfs: the mount daemon exited ({code}) before mounting; see {log_path}",
        file=sys.stderr,
    )
    return int(ExitCode.INTERNAL)


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
