"""The `walrusfs` command line.

Each subcommand is a function taking the parsed arguments and returning an exit code. A
`UserError` becomes one line on stderr and its documented exit code; argparse's own usage
errors exit 2 (`ExitCode.USAGE`).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Callable, Sequence

import codec
from walrusfs import (
    __version__,
    blobcmd,
    completion,
    costcmd,
    infocmd,
    mountcmd,
    settings,
    walletcmd,
)
from walrusfs.config import Paths
from walrusfs.devnet.launcher import Devnet
from walrusfs.errors import ExitCode, InvalidDataError, UserError, volume_user_error
from walrusfs.files import private_umask, read_input, tighten
from walrusfs.fs.errors import VolumeError

#: Shard count of Walrus mainnet and testnet; the default when no network is consulted.
DEFAULT_N_SHARDS = 1000

Command = Callable[[argparse.Namespace], int]

#: The display form of a blob ID (32 bytes) or a quilt patch ID (37 bytes) in URL-safe
#: base64 starting with '-', as about one in 64 does.
DASHED_ID = re.compile(r"-[A-Za-z0-9_-]{42}|-[A-Za-z0-9_-]{49}")


class Parser(argparse.ArgumentParser):
    """argparse, except that an argument shaped like a blob or patch ID is a positional even
    when it starts with '-' (argparse takes any such word for an option and exits with a
    usage error). Subcommands' parsers are of this class too (`add_subparsers` makes its
    parsers of the parent's type). `--` before the ID works as well."""

    def _parse_optional(
        self, arg_string: str
    ) -> tuple[argparse.Action | None, str, str | None] | None:
        if DASHED_ID.fullmatch(arg_string) and arg_string not in self._option_string_actions:
            return None
        return super()._parse_optional(arg_string)


def cmd_blob_id(args: argparse.Namespace) -> int:
    """Print the blob ID Walrus assigns to a file, like the official `walrus blob-id`."""
    data = read_input(args.file)
    try:
        encoded = codec.encode(data, args.n_shards)
    except codec.DataTooLarge as exc:
        raise InvalidDataError(f"{args.file}: {exc}") from None
    if args.json:
        out = {
            "blobId": str(encoded.blob_id),
            "file": args.file,
            "unencodedLength": encoded.unencoded_length,
            "encodedLength": encoded.encoded_size,
            "storageUnits": encoded.storage_units,
            "symbolSize": encoded.symbol_size,
            "nShards": args.n_shards,
            "rootHash": encoded.root_hash.hex(),
            "blobIdU256": str(encoded.blob_id.to_u256()),
        }
        print(json.dumps(out, indent=2))
    else:
        print(encoded.blob_id)
    return ExitCode.OK


def cmd_paths(args: argparse.Namespace) -> int:
    """Show where this instance keeps config, data and cache (honours WALRUSFS_HOME)."""
    paths = Paths.from_env().as_dict()
    if args.json:
        print(json.dumps(paths, indent=2))
    else:
        for key, value in paths.items():
            print(f"{key:12} {value}")
    return ExitCode.OK


def cmd_config(args: argparse.Namespace) -> int:
    """Check the configuration file and show the settings in effect: network, its endpoints
    and objects, wallet, and the mount's defaults (docs/configuration.md)."""
    current = settings.current().as_dict()
    if args.json:
        print(json.dumps(current, indent=2))
        return ExitCode.OK
    mount = current.pop("mount")
    current["file"] = current["file"] or f"{Paths.from_env().config_file} (absent: defaults)"
    for key, value in current.items():
        print(f"{key:26} {value}")
    for key, value in mount.items():
        print(f"{'mount.' + key:26} {value}")
    return ExitCode.OK


def _devnet() -> Devnet:
    return Devnet(Paths.from_env().data_dir)


def _duration_ms(text: str) -> int:
    """`90s`, `10m`, `2h`, `1d` or plain seconds."""
    units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    text = text.strip().lower()
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            number, unit = text[: -len(suffix)], units[suffix]
            break
    else:
        number, unit = text, 1000
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: use e.g. 30s, 10m, 1h, 1d"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: must be positive")
    return int(value * unit)


def cmd_devnet_up(args: argparse.Namespace) -> int:
    """Start the local devnet (genesis on first use) and wait until every service answers."""
    devnet = _devnet()
    fresh = not devnet.exists
    asked = (args.nodes, args.n_shards, args.epoch_duration)
    spec = devnet.up(
        4 if args.nodes is None else args.nodes,
        DEFAULT_N_SHARDS if args.n_shards is None else args.n_shards,
        86_400_000 if args.epoch_duration is None else args.epoch_duration,
    )
    have = (spec.n_nodes, spec.n_shards, spec.epoch_duration_ms)
    if not fresh and any(a is not None and a != h for a, h in zip(asked, have, strict=True)):
        print(
            f"walrusfs: note: the existing devnet keeps its genesis settings ({spec.n_nodes} "
            f"nodes, {spec.n_shards} shards, {spec.epoch_duration_ms} ms epochs); "
            "`walrusfs devnet destroy` to start over with new ones",
            file=sys.stderr,
        )
    print(
        f"devnet {'created and ' if fresh else ''}running: {spec.n_nodes} nodes, "
        f"{spec.n_shards} shards, chain on localhost:{spec.sui_port}, "
        f"wallet {spec.wallet_address}"
    )
    return ExitCode.OK


def cmd_devnet_down(args: argparse.Namespace) -> int:
    """Stop every devnet process (data is kept; `up` resumes)."""
    stopped = _devnet().down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return ExitCode.OK


def cmd_devnet_destroy(args: argparse.Namespace) -> int:
    """Stop the devnet and delete its chain, nodes and wallet."""
    devnet = _devnet()
    devnet.destroy()
    print(f"removed {devnet.root}")
    return ExitCode.OK


def cmd_devnet_status(args: argparse.Namespace) -> int:
    """Services, pids, ports, epoch, health and disk use of the devnet."""
    status = _devnet().status()
    if args.json:
        print(json.dumps(status, indent=2))
        return ExitCode.OK
    epoch = status["epoch"]
    print(f"devnet  {status['home']}")
    print(f"chain   {status['grpc']}  epoch {epoch if epoch is not None else '?'}")
    print(f"wallet  {status['wallet']}  ({status['walletConfig']})")
    print(f"disk    {status['diskUse']} bytes")
    print(f"{'service':8} {'pid':>7} {'port':>6}  {'state':9} {'shards':>6} {'disk':>12}  faults")
    for svc in status["services"]:
        state = "healthy" if svc["healthy"] else "running" if svc["running"] else "stopped"
        detail = svc["detail"]
        faults = ",".join(f"{k}={v}" for k, v in detail.get("faults", {}).items()) or "-"
        print(
            f"{svc['name']:8} {svc['pid'] or '-':>7} {svc['port']:>6}  {state:9} "
            f"{detail.get('shards', '-'):>6} {detail.get('diskUse', '-'):>12}  {faults}"
        )
    return ExitCode.OK


def cmd_devnet_node(args: argparse.Namespace) -> int:
    """Fault drills on one storage node."""
    devnet = _devnet()
    i = args.index
    if args.action == "stop":
        done = devnet.node_stop(i, kill=args.kill)
        verb = "killed" if args.kill else "stopped"
        print(f"node-{i} {verb}" if done else f"node-{i} was not running")
    elif args.action == "start":
        print(f"node-{i} running, pid {devnet.node_start(i)}")
    elif args.action == "corrupt":
        devnet.set_faults(i, corrupt=True)
        print(f"node-{i} now serves corrupted slivers")
    elif args.action == "slow":
        devnet.set_faults(i, delay_ms=args.ms)
        print(f"node-{i} now answers {args.ms} ms late")
    elif args.action == "refuse":
        devnet.set_faults(i, refuse=True)
        print(f"node-{i} now refuses every request (503)")
    else:
        devnet.set_faults(i)
        print(f"node-{i} healed: no test switches")
    return ExitCode.OK


def cmd_devnet_epoch(args: argparse.Namespace) -> int:
    """Start the next epoch now (`count` times): blobs reach their end epoch sooner."""
    print(f"epoch {_devnet().advance_epoch(args.count)}")
    return ExitCode.OK


def _int_between(least: int, most: int, what: str) -> Callable[[str], int]:
    """An argparse type: a whole number in least..most (a negative count or delay is a
    usage error, not a drill that misbehaves)."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if not least <= value <= most:
            raise argparse.ArgumentTypeError(f"{text!r}: {what} between {least} and {most}")
        return value

    return convert


def _n_shards(text: str) -> int:
    try:
        return codec.EncodingParams(int(text)).n_shards
    except ValueError as exc:  # int() and codec.InvalidParameters both raise ValueError
        raise argparse.ArgumentTypeError(f"invalid shard count {text!r}: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="walrusfs",
        description="Mount Walrus decentralized storage as a drive.",
        epilog="Exit codes are listed in docs/exit-codes.md.",
    )
    parser.add_argument("--version", action="version", version=f"walrusfs {__version__}")
    parser.add_argument("--debug", action="store_true", help="log debug messages to stderr")
    parser.add_argument(
        "--network",
        metavar="NAME",
        help="devnet (the embedded one, default), testnet, mainnet or a network of the config "
        "file (default: $WALRUSFS_NETWORK, else `network` in config.toml)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "blob-id", help="print the Walrus blob ID of a file", description=cmd_blob_id.__doc__
    )
    p.add_argument("file", metavar="FILE", help="file to encode ('-' reads standard input)")
    p.add_argument(
        "--n-shards",
        type=_n_shards,
        default=DEFAULT_N_SHARDS,
        help=f"shard count of the network (default {DEFAULT_N_SHARDS}, as on mainnet and testnet)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print blob ID, lengths, storage units and root hash as JSON",
    )
    p.set_defaults(func=cmd_blob_id)

    p = sub.add_parser(
        "paths", help="show the config, data and cache directories", description=cmd_paths.__doc__
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_paths)

    p = sub.add_parser(
        "config",
        help="check config.toml and show the settings in effect",
        description=cmd_config.__doc__,
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_config)

    devnet = sub.add_parser(
        "devnet",
        help="run a local Walrus network (Sui stand-in + storage nodes on 127.0.0.1)",
        description="A local Walrus network whose state lives under WALRUSFS_HOME.",
    )
    dsub = devnet.add_subparsers(dest="devnet_command", required=True, metavar="ACTION")
    p = dsub.add_parser("up", help=cmd_devnet_up.__doc__, description=cmd_devnet_up.__doc__)
    p.add_argument(
        "--nodes",
        type=_int_between(1, 1000, "a node count"),
        help="storage nodes at genesis (default 4)",
    )
    p.add_argument("--n-shards", type=_n_shards, help="shards at genesis (default 1000)")
    p.add_argument(
        "--epoch-duration",
        type=_duration_ms,
        metavar="DURATION",
        help="epoch length at genesis: 30s, 10m, 1h, 1d (default 1d)",
    )
    p.set_defaults(func=cmd_devnet_up)
    p = dsub.add_parser("down", help=cmd_devnet_down.__doc__)
    p.set_defaults(func=cmd_devnet_down)
    p = dsub.add_parser("destroy", help=cmd_devnet_destroy.__doc__)
    p.set_defaults(func=cmd_devnet_destroy)
    p = dsub.add_parser("status", help=cmd_devnet_status.__doc__)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_devnet_status)
    p = dsub.add_parser("node", help=cmd_devnet_node.__doc__, description=cmd_devnet_node.__doc__)
    p.add_argument("action", choices=["stop", "start", "corrupt", "slow", "refuse", "heal"])
    p.add_argument(
        "index", type=_int_between(0, 65535, "a node index"), metavar="I", help="node index"
    )
    p.add_argument("--kill", action="store_true", help="stop: SIGKILL instead of SIGTERM")
    p.add_argument(
        "--ms",
        type=_int_between(0, 600_000, "milliseconds"),
        default=2000,
        help="slow: delay per request in milliseconds (default 2000; 0 is no delay)",
    )
    p.set_defaults(func=cmd_devnet_node)
    p = dsub.add_parser("epoch", help=cmd_devnet_epoch.__doc__)
    p.add_argument("advance", choices=["advance"])
    p.add_argument(
        "count",
        type=_int_between(1, 1000, "a number of epochs"),
        nargs="?",
        default=1,
        help="how many epochs to start (default 1)",
    )
    p.set_defaults(func=cmd_devnet_epoch)

    blobcmd.add_parser(sub)
    mountcmd.add_parser(sub)
    infocmd.add_parser(sub)
    walletcmd.add_parser(sub)
    costcmd.add_parser(sub)
    completion.add_parser(sub, parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `walrusfs` command; its exit code (docs/exit-codes.md). A `UserError` or a
    volume error is printed on one line and becomes its code, an interrupt 130; anything
    else escapes as the bug it is (argparse's own SystemExit for a bad command line too).

    Args:
        argv: the arguments (None: `sys.argv[1:]`).
    """
    private_umask()  # before anything is created, here or in the processes started from here
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    codec.tune_allocator()
    func: Command = args.func
    try:
        paths = Paths.from_env()
        for top in (paths.config_dir, paths.data_dir, paths.cache_dir):
            tighten(top, recursive=False)  # made by an older walrusfs: private from now on
        settings.use_network(args.network)
        return func(args)
    except (UserError, VolumeError) as exc:
        error = volume_user_error(exc) if isinstance(exc, VolumeError) else exc
        print(f"walrusfs: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("walrusfs: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
