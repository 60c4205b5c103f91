"""`mount.fuse.walrusfs`: the helper mount(8) runs for `-t fuse.walrusfs`, so an fstab line
works:

    default  /home/me/walrus  fuse.walrusfs  noauto,_netdev,home=/home/me/.wfs,epochs=20  0 0

`home=DIR` and `network=NAME` become $WALRUSFS_HOME and $WALRUSFS_NETWORK.

mount(8) calls `mount.fuse.walrusfs SOURCE MOUNTPOINT [-o OPTIONS]` (also `-n`, `-s`, `-f`,
`-v`). SOURCE is the volume name (`walrusfs:NAME` is accepted too). Options with a
walrusfs meaning become `walrusfs mount` flags: `ro` is `--read-only` (`rw`, the default,
undoes it). The generic ones of fstab are accepted: `defaults`, `noauto`, `auto`, `user`,
`users`, `nouser`, `owner`, `group`, `_netdev`, `nofail`, `x-*` and `comment=*` are for
mount(8) or systemd; the atime family (`atime`, `noatime`, `relatime`, `strictatime`,
`nodiratime`, `lazytime` and their `no` forms) changes nothing, a walrusfs mount never
records access times; `suid`, `dev`, `exec` and their `no` forms are FUSE's to decide (FUSE
mounts are always nosuid and nodev). `remount` is refused: a walrusfs mount's options are set
when it starts (`walrusfs umount`, then mount again). Anything else is an error (exit 2)
rather than silently ignored.

A volume already mounted on this machine (one daemon per volume: docs/durability.md) is
bind-mounted onto the second mountpoint, as a block device mounted twice shows one
filesystem in two places (xfstests generic/732).

On success nothing is printed on stdout (mount(8) helpers are quiet; `-v` lets
`walrusfs mount`'s line through); errors go to stderr.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from walrusfs import control, validate
from walrusfs.cli import main as cli_main
from walrusfs.config import Paths
from walrusfs.errors import ExitCode

#: fstab option -> `walrusfs mount` flag (options with a value: flag VALUE)
VALUED = {
    "epochs": "--epochs",
    "upload_delay": "--upload-delay",
    "cache_size": "--cache-size",
    "staging_limit": "--staging-limit",
    "memory": "--memory",
    "checkpoint_interval": "--checkpoint-interval",
    "renew_horizon": "--renew-horizon",
    "renew_epochs": "--renew-epochs",
    "compact_below": "--compact-below",
    "passphrase_file": "--passphrase-file",
}
#: fstab option -> environment variable of the mount (options that are not mount flags)
ENVIRONMENT = {"home": "WALRUSFS_HOME", "network": "WALRUSFS_NETWORK"}
FLAGS = {
    "allow_other": "--allow-other",
    "public": "--public",
    "storage_pool": "--storage-pool",
    "nostorage_pool": "--no-storage-pool",
    "renew": "--renew",
    "norenew": "--no-renew",
}
#: for mount(8) or systemd, not for walrusfs
MOUNT8 = {
    "defaults",
    "auto",
    "noauto",
    "user",
    "users",
    "nouser",
    "owner",
    "group",
    "_netdev",
    "nofail",
    "async",
}
#: access-time options: a walrusfs mount never writes access times (it mounts noatime)
ATIME = {
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "diratime",
    "nodiratime",
    "lazytime",
    "nolazytime",
}
#: FUSE decides these: mounts are always nosuid and nodev
FUSE_DECIDES = {"suid", "nosuid", "dev", "nodev", "exec", "noexec"}
GENERIC = MOUNT8 | ATIME | FUSE_DECIDES


class HelperError(Exception):
    pass


@dataclass(frozen=True)
class Request:
    """A mount(8) helper command line, understood."""

    volume: str
    mountpoint: str
    read_only: bool
    args: list[str]  # of `walrusfs mount`
    env: dict[str, str]  # changes to the environment


def translate(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """(`walrusfs mount` arguments, environment changes) for a mount(8) helper command line.

    Raises:
        HelperError: as `request`.
    """
    r = request(argv)
    return r.args, r.env


def request(argv: Sequence[str]) -> Request:
    """The helper's command line as a `Request`.

    Raises:
        HelperError: an unknown or malformed option, or remount (the message says why).
    """
    positional: list[str] = []
    options: list[str] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "-o":
            if not args:
                raise HelperError("-o needs a value")
            options += args.pop(0).split(",")
        elif arg.startswith("-o"):
            options += arg[2:].split(",")
        elif arg in ("-n", "-s", "-f", "-v"):
            continue  # no mtab, sloppy, fake, verbose: nothing for walrusfs to do
        elif arg.startswith("-"):
            raise HelperError(f"unknown option {arg}")
        else:
            positional.append(arg)
    if len(positional) != 2:
        raise HelperError("usage: mount.fuse.walrusfs VOLUME MOUNTPOINT [-o OPTIONS]")
    source, mountpoint = positional
    volume = source.removeprefix("walrusfs:") or "default"
    out = ["mount", mountpoint, "--volume", volume]
    env: dict[str, str] = {}
    read_only = False
    for opt in filter(None, options):
        key, _, value = opt.partition("=")
        if key in ("ro", "rw") and not value:
            read_only = key == "ro"
            continue
        if key == "remount":
            raise HelperError(
                f"remount is not supported: a walrusfs mount's options are set when it starts; "
                f"`walrusfs umount {mountpoint}`, then mount it again"
            )
        if key in GENERIC or key.startswith("x-") or key == "comment":
            continue
        if (key in VALUED or key in ENVIRONMENT) and not value:
            raise HelperError(f"option {key} needs a value ({key}=...)")
        if key in ENVIRONMENT:
            env[ENVIRONMENT[key]] = value
        elif key in VALUED:
            out += [VALUED[key], value]
        elif key in FLAGS and not value:
            out.append(FLAGS[key])
        else:
            raise HelperError(f"unknown mount option {opt!r} (see docs/packaging.md)")
    if read_only:
        out.append("--read-only")
    return Request(volume, mountpoint, read_only, out, env)


def main(argv: Sequence[str] | None = None) -> int:
    """The `mount.fuse.walrusfs` helper: bind-mount the volume's running mount, or run
    `walrusfs mount`; the exit code (USAGE for a helper command line it refuses).

    Args:
        argv: the helper's arguments (None: `sys.argv[1:]`).
    """
    given = sys.argv[1:] if argv is None else list(argv)
    try:
        req = request(given)
    except HelperError as exc:
        print(f"mount.fuse.walrusfs: {exc}", file=sys.stderr)
        return int(ExitCode.USAGE)
    os.environ.update(req.env)
    bound = _bind_if_mounted(req)
    if bound is not None:
        return bound
    args = req.args
    if "-v" in given:
        return cli_main(args)
    with contextlib.redirect_stdout(io.StringIO()):  # quiet, as mount(8) helpers are
        return cli_main(args)


def _bind_if_mounted(req: Request) -> int | None:
    """Bind-mount the volume's live mount onto the requested mountpoint (read-only there if
    `ro` was asked, as a per-mountpoint flag of the VFS), and the exit code; None when the
    volume is not mounted on this machine (the caller mounts it)."""
    try:
        volume_dir = Paths.from_env().data_dir / "volumes" / validate.volume_name(req.volume)
    except ValueError:
        return None  # `walrusfs mount` reports the bad name
    served = control.served_at(volume_dir)
    if served is None or served == Path(req.mountpoint).absolute():
        return None
    steps = [["mount", "-i", "--bind", str(served), req.mountpoint]]  # -i: no helper
    if req.read_only:
        steps.append(["mount", "-i", "-o", "remount,bind,ro", req.mountpoint])
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"mount.fuse.walrusfs: {proc.stderr.strip()}", file=sys.stderr)
            return int(ExitCode.SERVICE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
