"""`walrusfs mount | umount | sync | status`: the drive's commands.

`mount` starts a daemon and returns once the mount is live (or prints why it failed, with the
documented exit code): the daemon reports over a pipe after `pyfuse3.init`, so errors at mount
time reach the terminal. The other commands talk to the daemon through xattrs on the mount's
root (`user.walrusfs.ctl.*`, see docs/mount.md), as S3QL's tools do: no socket, no auth, and
only who can see the mount can ask.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import getpass
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

from chain.client import WalrusChain
from chain.pricing import format_wal
from walrusfs import files, logs, mounts, settings
from walrusfs.blobcmd import ProgressBar, epochs_arg, open_chain, user_errors
from walrusfs.config import Paths
from walrusfs.errors import ExitCode, InputError, ServiceError, UsageError, UserError
from walrusfs.fs.defaults import DEFAULTS, size_text
from walrusfs.fs.errors import VolumeInUse
from walrusfs.fs.fsck import Report, fsck
from walrusfs.fs.mount import check_mountpoint, lock_volume, run
from walrusfs.fs.options import MountOptions, UploadConfig
from walrusfs.fs.rebuild import RebuildReport, rebuild

log = logging.getLogger(__name__)
T = TypeVar("T")

CTL = "user.walrusfs.ctl."
#: The type of a walrusfs mount in the kernel's table of mounts.
FSTYPE = "fuse.walrusfs"
#: The upload worker process; it finds the network as this process did (the config file and
#: $WALRUSFS_NETWORK, which `--network` sets for it).
WORKER = [sys.executable, "-m", "walrusfs.fs.upload_worker"]
READY_TIMEOUT = 300.0
#: How long a mount waits for the volume's previous daemon to let it go: after `umount(8)` or
#: `fusermount -u` it still writes its final checkpoint and closes the database (seconds).
LOCK_WAIT = 30.0


def _arg(check: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a checker raising ValueError with what is expected (argparse
    then says `argument --x: <that>` and exits 2)."""

    def convert(text: str) -> T:
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = check.__name__.lstrip("_")
    return convert


def _number_of_seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None


def _read_timeout(text: str) -> float:
    return settings.read_timeout(_number_of_seconds(text))


def _seconds(text: str) -> float:
    return settings.check_seconds(_number_of_seconds(text))


def _checkpoint_seconds(text: str) -> float:
    value = _seconds(text)
    if value < settings.MIN_CHECKPOINT_INTERVAL:
        raise ValueError(
            f"at least {settings.MIN_CHECKPOINT_INTERVAL:g} seconds (each checkpoint is a blob "
            f"paid in WAL), got {text}"
        )
    return value


def _size_of(name: str) -> Callable[[str], int]:
    def size(text: str) -> int:
        return settings.check_size(name, settings.parse_size(text))

    return size


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{text!r} is not a fraction between 0 and 1")
    return value


def default_mountpoint(paths: Paths) -> Path:
    if os.environ.get("WALRUSFS_HOME"):
        return paths.data_dir.parent / "mnt"
    return Path.home() / "walrus"


def _volume_dir(paths: Paths, name: str) -> Path:
    try:
        return paths.data_dir / "volumes" / settings.volume_name(name)
    except ValueError as exc:
        raise UsageError(f"invalid volume name {name!r}: expected {exc}") from None


PASSPHRASE_ENV = "WALRUSFS_PASSPHRASE"


def passphrase_of(args: argparse.Namespace) -> str | None:
    """The volume passphrase: --passphrase-file (its first line; `-` is standard input), else
    $WALRUSFS_PASSPHRASE, else asked on the terminal with --passphrase; None: the key is a
    file or the wallet's."""
    if args.passphrase_file:
        name = args.passphrase_file
        try:
            raw = files.read_secret(name)
        except InputError as exc:
            raise InputError(f"passphrase file {exc}") from None
        try:
            lines = raw.decode("utf-8").splitlines()
        except UnicodeDecodeError:
            raise InputError(f"{name}: not UTF-8 text; the first line is the passphrase") from None
        if not lines or not lines[0]:
            raise InputError(f"{name}: the first line (the passphrase) is empty")
        return lines[0]
    if os.environ.get(PASSPHRASE_ENV):
        return os.environ[PASSPHRASE_ENV]
    if args.passphrase:
        if not sys.stdin.isatty():
            raise UsageError(
                f"--passphrase asks on a terminal; use --passphrase-file or {PASSPHRASE_ENV}"
            )
        value = getpass.getpass("volume passphrase: ")
        if not value:
            raise UsageError("an empty passphrase")
        return value
    return None


def _passphrase_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--passphrase",
        action="store_true",
        help=f"derive the volume key from a passphrase asked on the terminal (or from "
        f"${PASSPHRASE_ENV}); it is never stored",
    )
    p.add_argument(
        "--passphrase-file",
        metavar="FILE",
        help="derive the volume key from the first line of FILE (a regular file of at most "
        "4 KiB; `-`: standard input)",
    )


def cmd_mount(args: argparse.Namespace) -> int:
    """Mount a volume (the devnet is started if it is not running)."""
    paths = Paths.from_env()
    conf = settings.current().mount

    def opt(name: str) -> Any:
        """The command line's value, else the config file's [mount] one, else the default."""
        value = getattr(args, name)
        return getattr(conf, name) if value is None else value

    given = args.mountpoint or conf.mountpoint
    mnt = Path(given).expanduser().absolute() if given else default_mountpoint(paths)
    daemon = args.ready_fd is not None
    if not daemon:
        _clear_dead_mount(mnt)
    if not given:
        mnt.mkdir(parents=True, exist_ok=True)
    volume_dir = _volume_dir(paths, opt("volume"))
    options = MountOptions(
        mountpoint=mnt,
        volume_dir=volume_dir,
        cache_dir=paths.cache_dir,
        cache_bytes=opt("cache_size"),
        memory_bytes=opt("memory"),
        staging_limit=opt("staging_limit"),
        allow_other=args.allow_other or conf.allow_other,
        public=args.public,
        checkpoint_interval=opt("checkpoint_interval"),
        renew=args.renew,
        renew_horizon=args.renew_horizon,
        renew_epochs=args.renew_epochs,
        upload=UploadConfig(
            delay=opt("upload_delay"), epochs=opt("epochs"), compact_below=opt("compact_below")
        ),
        read_only=args.read_only,
        read_timeout=opt("read_timeout"),
        passphrase=passphrase_of(args),
    )
    if not daemon:  # the command itself, before any process or devnet starts
        check_mountpoint(mnt, (volume_dir, paths.cache_dir))
        _make_private(paths, volume_dir)
        _wait_for_volume(volume_dir)
        if not args.foreground:
            return _spawn_daemon(args, mnt, volume_dir, options.passphrase)
    return _serve(options, args.ready_fd, args.debug)


def _make_private(paths: Paths, volume_dir: Path) -> None:
    """A volume made by an older walrusfs, or under a loose umask, may have world-readable
    files (file names in meta.db, staged contents, the log): from now on they are its user's
    alone. The new ones are created private (walrusfs.files.private_umask)."""
    for top in (paths.config_dir, paths.data_dir, paths.cache_dir):
        files.tighten(top, recursive=False)
    files.tighten(volume_dir.parent, recursive=False)
    files.tighten(volume_dir)


def _spawn_daemon(
    args: argparse.Namespace, mnt: Path, volume_dir: Path, passphrase: str | None
) -> int:
    volume_dir.mkdir(parents=True, exist_ok=True)
    log_path = volume_dir / "mount.log"
    read_fd, write_fd = os.pipe()
    argv = [sys.executable, "-m", "walrusfs.cli"] + (["--debug"] if args.debug else [])
    argv += [a for a in sys.argv[1:] if a != "--debug"]
    if not args.mountpoint:
        argv.append(str(mnt))
    if passphrase is not None:
        # read once, here: handed to the daemon on its standard input (a later option wins
        # in argparse), never in its environment or on a command line
        argv += ["--passphrase-file", "-"]
    argv += ["--ready-fd", str(write_fd)]
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL if passphrase is None else subprocess.PIPE,
            stdout=logf, stderr=logf, pass_fds=(write_fd,), start_new_session=True,
        )  # fmt: skip
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
    print(f"walrusfs: the mount daemon exited ({code}) before mounting; see {log_path}",
          file=sys.stderr)  # fmt: skip
    return int(ExitCode.INTERNAL)


# -- dead mounts and a volume still held ------------------------------------------------------


def _fusermount() -> str:
    return shutil.which("fusermount3") or shutil.which("fusermount") or "fusermount"


def _is_dead(mnt: Path) -> bool:
    """A FUSE mount whose daemon is gone answers every request with ENOTCONN (until it is
    detached). statfs is always a request (a stat may be answered from the kernel's
    attribute cache)."""
    try:
        os.statvfs(mnt)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def _detach(mnt: Path) -> None:
    """Detach a dead mount (`fusermount -u -z`: nothing can be flushed through it anyway)."""
    proc = subprocess.run(
        [_fusermount(), "-u", "-z", str(mnt)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise ServiceError(
            f"cannot detach the dead mount {mnt}: {proc.stderr.strip()}; run "
            f"`fusermount3 -u -z {mnt}` (as root if it is another user's)"
        )


def _clear_dead_mount(mnt: Path) -> None:
    """A walrusfs mount whose daemon was killed (kill -9, OOM) leaves its mountpoint answering
    ENOTCONN: detach it so the mount can go on there. Another filesystem's dead mount is not
    ours to remove: say how."""
    for _ in range(8):  # mounts may be stacked; each detach uncovers the one below
        entry = mounts.mounted_at(mnt)
        if entry is None or not _is_dead(mnt):
            return
        if entry.fstype != FSTYPE:
            raise UsageError(
                f"{mnt} is a dead {entry.fstype} mount (its process exited): "
                f"`fusermount3 -u -z {mnt}` detaches it"
            )
        _detach(mnt)
        print(
            f"walrusfs: {mnt} was left by a walrusfs mount whose daemon died; detached it (what "
            "it had staged uploads now)",
            file=sys.stderr,
        )
    raise UsageError(f"{mnt}: too many dead mounts stacked on it; `fusermount3 -u -z {mnt}`")


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


#: seconds of a silent wait for a volume lock before `mount` says what it waits for
NOTICE_AFTER = 5.0


def _wait_for_volume(volume_dir: Path, timeout: float = LOCK_WAIT) -> None:
    """Return once the volume's lock is free. A daemon that was just unmounted (`umount`,
    `fusermount -u`) holds it for a few more seconds while it checkpoints and closes the
    database: wait for it (bounded) rather than fail. A volume mounted elsewhere fails at
    once."""
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


def _serve(options: MountOptions, ready_fd: int | None, debug: bool) -> int:
    """The daemon (or --foreground): start the devnet if needed, mount, serve."""
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
            profile, key = settings.connect(settings.current(), paths, start=True)
            chain = WalrusChain(profile, key)

            async def main() -> None:
                try:
                    await _check_epochs(chain, options)
                    await run(options, chain, worker_argv=WORKER, ready=ready)
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


# -- talking to a running mount ---------------------------------------------------------------


def _find_mount(arg: str | None) -> Path:
    """The mount a command without a mountpoint means: the only walrusfs mount, or else the
    only one serving a volume of this `WALRUSFS_HOME` (other users' and other homes' mounts on
    the machine, a test suite's for one, do not make `walrusfs status` ambiguous)."""
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
            "no walrusfs mount found" if not found
            else "several walrusfs mounts: name one (" + ", ".join(map(str, found)) + ")"
        )  # fmt: skip
    return found[0]


def query(mnt: Path, name: str) -> Any:
    try:
        return json.loads(os.getxattr(mnt, CTL + name))
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise ServiceError(
                f"the mount at {mnt} does not answer: its daemon is gone (killed?); "
                f"`walrusfs umount {mnt}` detaches it, and mounting again resumes the uploads"
            ) from None
        raise ServiceError(f"the mount at {mnt} does not answer: {exc.strerror}") from None


def _sync(mnt: Path, label: str) -> None:
    """Ask the mount to upload everything, with a progress bar of the bytes left (a read-only
    mount has nothing to upload, and its kernel refuses the request with EROFS)."""
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


def cmd_sync(args: argparse.Namespace) -> int:
    """Upload everything written so far and wait until it is certified on Walrus."""
    mnt = _find_mount(args.mountpoint)
    _sync(mnt, "uploading")
    return 0


def cmd_umount(args: argparse.Namespace) -> int:
    """Upload what is pending (with progress), unmount, and wait for the daemon to exit."""
    mnt = _find_mount(args.mountpoint)
    if _is_dead(mnt):
        _detach(mnt)
        print(
            f"walrusfs: {mnt} was a dead mount (its daemon had exited): detached. What it had "
            "not uploaded stays staged and uploads at the next mount of the volume",
            file=sys.stderr,
        )
        return 0
    pid = int(query(mnt, "pid"))
    if not args.no_sync:
        _sync(mnt, "uploading before unmount")
    entry = mounts.mounted_at(mnt)
    cmd = [_fusermount(), "-u"] + (["-z"] if args.lazy else []) + [str(mnt)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise UserError(f"cannot unmount {mnt}: {proc.stderr.strip()}", ExitCode.SERVICE)
    if entry is not None and any(
        e.fstype == FSTYPE and e.source == entry.source for e in mounts.mounts()
    ):
        return 0  # a bind mount of it is left (fstab.py): the daemon serves on
    deadline = time.monotonic() + 120
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if Path(f"/proc/{pid}").exists():
        raise ServiceError(f"unmounted, but the daemon (pid {pid}) has not exited yet")
    return 0


def _mib(n: int | None) -> str:
    return "?" if n is None else f"{n / (1 << 20):.1f} MiB"


def cmd_status(args: argparse.Namespace) -> int:
    """Volume, network, balances, pending uploads, cache, stored blobs, lifetime, checkpoint
    and storage nodes of a running mount (--watch: again every 2 s; --json for scripts)."""
    mnt = _find_mount(args.mountpoint)
    if not args.watch:
        return _print_status(mnt, args.json)
    try:
        while True:
            if sys.stdout.isatty():
                print("\033[H\033[2J", end="")
            _print_status(mnt, args.json)
            sys.stdout.flush()
            time.sleep(2.0)
    except KeyboardInterrupt:
        return 0


def _print_status(mnt: Path, as_json: bool) -> int:
    st = query(mnt, "status")
    if as_json:
        print(json.dumps(st, indent=2))
        return 0
    p, up, stored, ch, cache = st["pending"], st["uploaded"], st["stored"], st["chain"], st["cache"]
    looked = cache["hits"] + cache["misses"]
    healthy = [n for n in st["nodes"] if n["healthy"]]
    lines = [
        f"volume       {Path(st['volume']).name} on {st['mountpoint']} (pid {st['pid']})",
        f"network      {ch['network']}, epoch {ch['epoch']}, "
        + (f"{format_wal(ch['wal'])}, {ch['sui'] / 1e9:.3f} SUI, prepaid storage "
           f"{_mib(ch['prepaid_bytes'])}" if ch["wal"] is not None
           else "balances not known yet"),
        f"pending      {p['chunks']} chunk(s), {_mib(p['bytes'])} to upload "
        f"({p['uploading']} uploading, {_mib(p['uploading_bytes'])})",
        f"staging      {_mib(st['staging']['bytes'])} of {_mib(st['staging']['limit'])}",
        f"cache        {_mib(cache['bytes'])} of {_mib(cache['limit'])}"
        + (f", hit rate {100 * cache['hits'] / looked:.0f}% of {looked} lookups" if looked
           else ""),
        f"stored       {stored['blobs']} blob(s), {_mib(stored['bytes'])} "
        f"({_mib(stored['encoded_bytes'])} encoded), earliest end epoch "
        f"{stored['earliest_end_epoch']}",
        f"this mount   {up['blobs']} blob(s) + {up['quilts']} quilt(s), {_mib(up['bytes'])}, "
        f"{format_wal(up['wal_spent'])} spent"
        + (f", {up['compacted_quilts']} quilt(s) compacted" if up["compacted_quilts"] else ""),
    ]  # fmt: skip
    if st["nodes"]:
        lines.append(
            f"nodes        {len(healthy)} of {len(st['nodes'])} healthy"
            + "".join(f"; {n['name']} DOWN" for n in st["nodes"] if not n["healthy"])
        )
    lt, cp = st["lifetime"], st["checkpoint"]
    privacy = "public (plaintext)" if st["encryption"] == "none" else "encrypted"
    lines.append(
        f"lifetime     {privacy}, "
        + (f"renewals on (within {lt['horizon']} epochs, +{lt['extend_by']})" if lt["renew"]
           else "renewals OFF")
        + f", {lt['extended']} extended this mount"
    )  # fmt: skip
    if lt["expiring_blobs"]:
        lines.append(
            f"EXPIRING     {lt['expiring_blobs']} blob(s) by epoch {lt['expiring_by_epoch']}"
            + (f": {lt['last_error']}" if lt["last_error"] else
               "" if lt["renew"] else ": renewals are off (mount with --renew)")
        )  # fmt: skip
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(cp["time"])) if cp["time"] else "-"
    lines.append(
        f"checkpoint   #{cp['seq']} at {when}"
        + (", metadata changed since" if cp["pending"] else "")
        + (f", last failed: {cp['last_error']}" if cp["last_error"] else "")
    )
    funds = st["funds"]
    if funds["paused"]:
        amount = (format_wal(funds["missing"]) if funds["currency"] == "WAL"
                  else f"{funds['missing'] / 1e9:.3f} SUI")  # fmt: skip
        lines.append(
            f"PAUSED       uploads wait for {funds['currency']}: the next upload needs {amount} "
            "more"
            + (f"; all that is staged needs about {format_wal(funds['staged_cost'])}"
               if funds["staged_cost"] else "")
            + "; writes go on into staging until it is full, then fail with ENOSPC. "
            + ("Get WAL: `walrusfs wallet get-wal SUI` (devnet, testnet)" if funds["currency"]
               == "WAL" else "Send SUI to the wallet's address (`walrusfs wallet`)")
        )  # fmt: skip
    if up.get("uncertified_blobs"):
        lines.append(
            f"UNFINISHED   {up['uncertified_blobs']} registered blob(s) not certified yet (paid; "
            "the retry of their upload continues them, or deletes them if the file changed)"
        )
    if up.get("uncommitted_uploads"):
        lines.append(
            f"UNCOMMITTED  {up['uncommitted_uploads']} certified upload(s) wait for room on the "
            "local disk to be recorded (free space under WALRUSFS_HOME)"
        )
    if up["last_error"]:
        lines.append(f"last error   {up['last_error']} ({up['failures']} failed upload(s))")
    print("\n".join(lines))
    return 0


def cmd_fsck(args: argparse.Namespace) -> int:
    """Check and repair an unmounted volume: database, staging, chain; upload what is staged
    (exit 0 clean, 10 repaired, 11 data lost; docs/exit-codes.md)."""
    paths = Paths.from_env()
    conf = settings.current().mount
    volume = args.volume or conf.volume
    volume_dir = _volume_dir(paths, volume)
    db_path = volume_dir / "meta.db"
    passphrase = passphrase_of(args)
    if args.rebuild:
        return _rebuild(volume_dir, passphrase)
    if not db_path.exists():
        raise UsageError(
            f"volume {volume} has no database ({db_path}); mounting it restores the newest "
            "checkpoint from Walrus"
        )
    bar = ProgressBar("fsck: uploading staged data")

    async def check(chain: WalrusChain) -> Report:
        return await fsck(
            volume_dir, chain, WORKER, upload=not args.no_upload,
            epochs=args.epochs or conf.epochs, passphrase=passphrase, progress=bar,
        )  # fmt: skip

    report = _on_locked_volume(volume_dir, check)
    _print_lines(("repaired", report.repaired), ("LOST", report.lost), ("note", report.notes))
    code = fsck_exit_code(report.repaired, report.lost)
    verdict = {ExitCode.OK: "clean", ExitCode.FSCK_REPAIRED: "repaired, nothing lost",
               ExitCode.FSCK_DATA_LOST: "DATA LOST (see above)"}  # fmt: skip
    print(f"volume {volume}: {verdict[code]}")
    return code


def fsck_exit_code(repaired: list[str], lost: list[str]) -> ExitCode:
    """fsck's documented outcome (docs/exit-codes.md): 11 data lost, 10 repaired, 0 clean."""
    if lost:
        return ExitCode.FSCK_DATA_LOST
    return ExitCode.FSCK_REPAIRED if repaired else ExitCode.OK


def _print_lines(*groups: tuple[str, list[str]]) -> None:
    """A report's findings, one per line under its label (`repaired: ...`, `LOST: ...`)."""
    for label, lines in groups:
        for line in lines:
            print(f"{label}: {line}")


def _on_locked_volume(volume_dir: Path, fn: Callable[[WalrusChain], Awaitable[T]]) -> T:
    """Run `fn` with the chain while holding the volume's lock (fsck and rebuild need the
    volume unmounted); chain and store failures become the documented exit codes."""
    volume_dir.mkdir(parents=True, exist_ok=True)
    lock = lock_volume(volume_dir)
    try:

        async def main() -> T:
            async with open_chain(start=True) as chain:
                return await fn(chain)

        with user_errors():
            return trio.run(main)
    finally:
        os.close(lock)


def _rebuild(volume_dir: Path, passphrase: str | None) -> int:
    """`fsck --rebuild`: the database from the chain's file records (walrusfs/fs/rebuild.py)."""

    async def go(chain: WalrusChain) -> RebuildReport:
        return await rebuild(volume_dir, chain, passphrase)

    report = _on_locked_volume(volume_dir, go)
    _print_lines(
        ("kept", [f"{path} (the previous state, renamed)" for path in report.moved_aside]),
        ("note", report.notes),
        ("LOST", report.lost),
    )
    print(
        f"volume {volume_dir.name}: rebuilt from {report.blobs} blob(s) of volume "
        f"{report.volume_id}: {report.files} file(s), {report.chunks} chunk(s); "
        f"{report.unused} blob(s) held only older versions and are deleted after the next "
        "checkpoint. Directories, symlinks, empty files and xattrs are not in the records."
    )
    return fsck_exit_code(["rebuilt"], report.lost)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("mount", help=cmd_mount.__doc__, description=cmd_mount.__doc__)
    p.add_argument(
        "mountpoint",
        nargs="?",
        metavar="MOUNTPOINT",
        help="directory to mount on (default ~/walrus, or $WALRUSFS_HOME/mnt)",
    )
    p.add_argument("--foreground", "-f", action="store_true", help="do not daemonize")
    p.add_argument("--volume", default=None, help=f"volume name (default: {DEFAULTS.volume})")
    p.add_argument(
        "--read-timeout",
        type=_arg(_read_timeout),
        default=None,
        metavar="SECONDS",
        help=f"a read that needs the storage nodes fails with EIO after this long (default "
        f"{DEFAULTS.read_timeout:g})",
    )
    p.add_argument(
        "--upload-delay",
        type=_arg(_seconds),
        default=None,
        metavar="SECONDS",
        help=f"idle time before a closed file is uploaded (default {DEFAULTS.upload_delay:g})",
    )
    p.add_argument(
        "--epochs",
        type=epochs_arg,
        default=None,
        help=f"storage epochs bought per blob (default {DEFAULTS.epochs})",
    )
    p.add_argument(
        "--cache-size",
        type=_arg(_size_of("cache_size")),
        default=None,
        metavar="SIZE",
        help=f"on-disk sliver cache limit (default {size_text(DEFAULTS.cache_size)})",
    )
    p.add_argument(
        "--staging-limit",
        type=_arg(_size_of("staging_limit")),
        default=None,
        metavar="SIZE",
        help=f"bytes waiting for upload before writes wait (default "
        f"{size_text(DEFAULTS.staging_limit)})",
    )
    p.add_argument(
        "--memory",
        type=_arg(_size_of("memory")),
        default=None,
        metavar="SIZE",
        help=f"memory bound of the mount: daemon and upload worker together (default "
        f"{size_text(DEFAULTS.memory)})",
    )
    p.add_argument(
        "--allow-other",
        action="store_true",
        help="let other users access the mount (permissions are checked)",
    )
    p.add_argument(
        "--checkpoint-interval",
        type=_arg(_checkpoint_seconds),
        default=None,
        metavar="SECONDS",
        help=f"upload the metadata as a checkpoint this often when it changed (default "
        f"{DEFAULTS.checkpoint_interval:g}; "
        "also on sync and unmount)",
    )
    p.add_argument(
        "--renew",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="extend blobs before they expire (kept per volume; default "
        f"{'on' if DEFAULTS.renew else 'off'})",
    )
    p.add_argument(
        "--renew-horizon",
        type=epochs_arg,
        metavar="EPOCHS",
        help="extend blobs ending within this many epochs (kept per volume; default "
        f"{DEFAULTS.renew_horizon})",
    )
    p.add_argument(
        "--renew-epochs",
        type=epochs_arg,
        metavar="EPOCHS",
        help="epochs added per extension (kept per volume; default --epochs)",
    )
    p.add_argument(
        "--compact-below",
        type=_arg(_fraction),
        default=None,
        metavar="FRACTION",
        help="re-quilt the live files of a quilt when they would fill less than this fraction "
        f"of it (default {DEFAULTS.compact_below:g}; 0 never)",
    )
    p.add_argument(
        "--public",
        action="store_true",
        help="create the volume unencrypted: anyone can read its blobs by ID (new volumes only; "
        "volumes are encrypted by default)",
    )
    p.add_argument(
        "--read-only",
        action="store_true",
        help="serve the volume read-only: changes fail with EROFS and nothing uploads",
    )
    _passphrase_options(p)
    p.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_mount)  # fmt: skip

    p = sub.add_parser("fsck", help=cmd_fsck.__doc__, description=cmd_fsck.__doc__)
    p.add_argument("--volume", default=None, help=f"volume name (default: {DEFAULTS.volume})")
    p.add_argument("--no-upload", action="store_true", help="do not upload staged chunks")
    _passphrase_options(p)
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="make the database again from the file records of the volume's blobs on chain "
        "(when no checkpoint can be restored; an existing database is kept, renamed)",
    )
    p.add_argument(
        "--epochs",
        type=epochs_arg,
        default=None,
        help=f"storage epochs bought per blob (default {DEFAULTS.epochs})",
    )
    p.set_defaults(func=cmd_fsck)

    p = sub.add_parser("umount", help=cmd_umount.__doc__, description=cmd_umount.__doc__)
    p.add_argument("mountpoint", nargs="?", metavar="MOUNTPOINT")
    p.add_argument("--lazy", action="store_true", help="detach now even if busy (umount -l)")
    p.add_argument(
        "--no-sync",
        action="store_true",
        help="do not wait for uploads (staged data uploads at the next mount)",
    )
    p.set_defaults(func=cmd_umount)  # fmt: skip

    p = sub.add_parser("sync", help=cmd_sync.__doc__, description=cmd_sync.__doc__)
    p.add_argument("mountpoint", nargs="?", metavar="MOUNTPOINT")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("status", help=cmd_status.__doc__, description=cmd_status.__doc__)
    p.add_argument("mountpoint", nargs="?", metavar="MOUNTPOINT")
    p.add_argument("--json", action="store_true")
    p.add_argument("--watch", action="store_true", help="show it again every 2 s (Ctrl-C stops)")
    p.set_defaults(func=cmd_status)
