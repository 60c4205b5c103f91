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
    devnetcmd,
    infocmd,
    mountcmd,
    settings,
    walletcmd,
)
from walrusfs.config import Paths
from walrusfs.devnetcmd import DEFAULT_N_SHARDS
from walrusfs.errors import ExitCode, InvalidDataError, UserError, volume_user_error
from walrusfs.files import private_umask, read_input, tighten
from walrusfs.fs.errors import VolumeError

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

    devnetcmd.add_parser(sub, _n_shards)
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
