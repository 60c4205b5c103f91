"""`walrusfs mount | umount | sync | status | fsck`: their arguments and entry points.

The work is elsewhere: starting and running the daemon in walrusfs/daemon.py, talking to a
running mount (which one, its status, sync, unmount, dead mounts) in walrusfs/control.py,
the status text in walrusfs/statusview.py, fsck and rebuild in walrusfs/fsckcmd.py. Options
left out on the command line come from the `[mount]` table of config.toml, else the defaults
(walrusfs/fs/defaults.py).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from walrusfs import control, daemon, files, fsckcmd, settings, statusview, validate
from walrusfs.clihelpers import checked_arg, epochs_arg
from walrusfs.config import Paths
from walrusfs.errors import InputError, UsageError
from walrusfs.fs.defaults import DEFAULTS, size_text
from walrusfs.fs.mount import check_mountpoint
from walrusfs.fs.options import MountOptions, UploadConfig

T = TypeVar("T")


def _number_of_seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None


def _mist(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r}: a whole number of MIST") from None
    return validate.mist(value)


def _read_timeout(text: str) -> float:
    return validate.read_timeout(_number_of_seconds(text))


def _seconds(text: str) -> float:
    return validate.check_seconds(_number_of_seconds(text))


def _checkpoint_seconds(text: str) -> float:
    value = _seconds(text)
    if value < validate.MIN_CHECKPOINT_INTERVAL:
        raise ValueError(
            f"at least {validate.MIN_CHECKPOINT_INTERVAL:g} seconds (each checkpoint is a blob "
            f"paid in WAL), got {text}"
        )
    return value


def _size_of(name: str) -> Callable[[str], int]:
    def size(text: str) -> int:
        return validate.check_size(name, validate.parse_size(text))

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
    """`<WALRUSFS_HOME>/mnt` when that is set, else ~/walrus."""
    if os.environ.get("WALRUSFS_HOME"):
        return paths.data_dir.parent / "mnt"
    return Path.home() / "walrus"


def _volume_dir(paths: Paths, name: str) -> Path:
    try:
        return paths.data_dir / "volumes" / validate.volume_name(name)
    except ValueError as exc:
        raise UsageError(f"invalid volume name {name!r}: expected {exc}") from None


PASSPHRASE_ENV = "WALRUSFS_PASSPHRASE"


def passphrase_of(args: argparse.Namespace) -> str | None:
    """The volume passphrase: --passphrase-file (its first line; `-` is standard input), else
    $WALRUSFS_PASSPHRASE, else asked on the terminal with --passphrase; None: the key is a
    file or the wallet's.

    Raises:
        InputError: the passphrase file cannot be read, is not UTF-8, or its first line is
            empty.
        UsageError: --passphrase without a terminal to ask on, or an empty answer.
    """
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
    control.clear_dead_mount(mnt)
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
        storage_pool=conf.storage_pool if args.storage_pool is None else args.storage_pool,
        checkpoint_interval=opt("checkpoint_interval"),
        renew=args.renew,
        renew_horizon=args.renew_horizon,
        renew_epochs=args.renew_epochs,
        upload=UploadConfig(
            delay=opt("upload_delay"),
            epochs=opt("epochs"),
            compact_below=opt("compact_below"),
            relay_url=opt("upload_relay"),
            relay_max_tip=opt("relay_max_tip"),
        ),
        read_only=args.read_only,
        read_timeout=opt("read_timeout"),
        passphrase=passphrase_of(args),
    )
    # before any process or devnet starts
    check_mountpoint(mnt, (volume_dir, paths.cache_dir))
    daemon.make_private(paths, volume_dir)
    daemon.wait_for_volume(volume_dir)
    if not args.foreground:
        return daemon.spawn_daemon(options, debug=args.debug)
    return daemon.serve(options, None, args.debug)


def cmd_sync(args: argparse.Namespace) -> int:
    """Upload everything written so far and wait until it is certified on Walrus."""
    mnt = control.find_mount(args.mountpoint)
    control.sync(mnt, "uploading")
    return 0


def cmd_umount(args: argparse.Namespace) -> int:
    """Upload what is pending (with progress), unmount, and wait for the daemon to exit."""
    mnt = control.find_mount(args.mountpoint)
    control.unmount(mnt, upload=not args.no_sync, lazy=args.lazy)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Volume, network, balances, pending uploads, cache, stored blobs, lifetime, checkpoint
    and storage nodes of a running mount (--watch: again every 2 s; --json for scripts)."""
    mnt = control.find_mount(args.mountpoint)
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
    st = control.query(mnt, "status")
    print(json.dumps(st, indent=2) if as_json else statusview.render(st))
    return 0


def cmd_fsck(args: argparse.Namespace) -> int:
    """Check and repair an unmounted volume: database, staging, chain; upload what is staged
    (exit 0 clean, 10 repaired, 11 data lost; docs/exit-codes.md)."""
    conf = settings.current().mount
    volume_dir = _volume_dir(Paths.from_env(), args.volume or conf.volume)
    passphrase = passphrase_of(args)
    if args.rebuild:
        return fsckcmd.rebuild_volume(volume_dir, passphrase)
    if args.migrate_to_pool:
        return fsckcmd.migrate_volume(volume_dir, epochs=args.epochs or conf.epochs)
    return fsckcmd.check_volume(
        volume_dir,
        upload=not args.no_upload,
        epochs=args.epochs or conf.epochs,
        passphrase=passphrase,
    )


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
        type=checked_arg(_read_timeout),
        default=None,
        metavar="SECONDS",
        help=f"a read that needs the storage nodes fails with EIO after this long (default "
        f"{DEFAULTS.read_timeout:g})",
    )
    p.add_argument(
        "--upload-relay",
        type=checked_arg(validate.relay_url),
        default=None,
        metavar="URL",
        help="send each blob once to this upload relay, which sends the slivers to the nodes "
        "(its certificate is verified; if it fails, the upload goes to the nodes directly). "
        "`walrusfs devnet status` names the devnet's",
    )
    p.add_argument(
        "--relay-max-tip",
        type=checked_arg(_mist),
        default=None,
        metavar="MIST",
        help="the most a relay is paid for one blob, in MIST (10^-9 SUI); a dearer blob is "
        f"uploaded directly (default {DEFAULTS.relay_max_tip})",
    )
    p.add_argument(
        "--upload-delay",
        type=checked_arg(_seconds),
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
        type=checked_arg(_size_of("cache_size")),
        default=None,
        metavar="SIZE",
        help=f"on-disk sliver cache limit (default {size_text(DEFAULTS.cache_size)})",
    )
    p.add_argument(
        "--staging-limit",
        type=checked_arg(_size_of("staging_limit")),
        default=None,
        metavar="SIZE",
        help=f"bytes waiting for upload before writes wait (default "
        f"{size_text(DEFAULTS.staging_limit)})",
    )
    p.add_argument(
        "--memory",
        type=checked_arg(_size_of("memory")),
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
        type=checked_arg(_checkpoint_seconds),
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
        type=checked_arg(_fraction),
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
        "--storage-pool",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="create the volume with its blobs in one Walrus storage pool: one transaction "
        "renews them all, and a deleted file's capacity is reused (new volumes only; "
        f"default {'on' if DEFAULTS.storage_pool else 'off'}; `fsck --migrate-to-pool` moves "
        "an older volume)",
    )
    p.add_argument(
        "--read-only",
        action="store_true",
        help="serve the volume read-only: changes fail with EROFS and nothing uploads",
    )
    _passphrase_options(p)
    p.set_defaults(func=cmd_mount)

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
        "--migrate-to-pool",
        action="store_true",
        help="move the volume's blobs into one storage pool (created if needed) without "
        "uploading them again: one transaction then renews them all",
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
    p.set_defaults(func=cmd_umount)

    p = sub.add_parser("sync", help=cmd_sync.__doc__, description=cmd_sync.__doc__)
    p.add_argument("mountpoint", nargs="?", metavar="MOUNTPOINT")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("status", help=cmd_status.__doc__, description=cmd_status.__doc__)
    p.add_argument("mountpoint", nargs="?", metavar="MOUNTPOINT")
    p.add_argument("--json", action="store_true")
    p.add_argument("--watch", action="store_true", help="show it again every 2 s (Ctrl-C stops)")
    p.set_defaults(func=cmd_status)
