"""The `walrusfs` command line.

Each subcommand is a function taking the parsed arguments and returning an exit code. A
`UserError` becomes one line on stderr and its documented exit code; argparse's own usage
errors exit 2 (`ExitCode.USAGE`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import codec
from walrusfs import __version__
from walrusfs.config import Paths
from walrusfs.errors import ExitCode, InputError, InvalidDataError, UserError

#: Shard count of Walrus mainnet and testnet; the default when no network is consulted.
DEFAULT_N_SHARDS = 1000

Command = Callable[[argparse.Namespace], int]


def _read_input(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    path = Path(name)
    try:
        if path.is_dir():
            raise InputError(f"{name}: is a directory; give a file")
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except PermissionError:
        raise InputError(f"{name}: permission denied") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot read: {exc.strerror or exc}") from None


def cmd_blob_id(args: argparse.Namespace) -> int:
    """Print the blob ID Walrus assigns to a file, like the official `walrus blob-id`."""
    data = _read_input(args.file)
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


def _n_shards(text: str) -> int:
    try:
        return codec.EncodingParams(int(text)).n_shards
    except ValueError as exc:  # int() and codec.InvalidParameters both raise ValueError
        raise argparse.ArgumentTypeError(f"invalid shard count {text!r}: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="walrusfs",
        description="Mount Walrus decentralized storage as a drive.",
        epilog="Exit codes are listed in docs/exit-codes.md.",
    )
    parser.add_argument("--version", action="version", version=f"walrusfs {__version__}")
    parser.add_argument("--debug", action="store_true", help="log debug messages to stderr")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    codec.tune_allocator()
    func: Command = args.func
    try:
        return func(args)
    except UserError as exc:
        print(f"walrusfs: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("walrusfs: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
