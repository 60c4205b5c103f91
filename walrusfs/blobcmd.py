"""`walrusfs blob ...`: store, read, list, extend and delete blobs, like the `walrus` CLI.

Network: the one `--network` or the config file chooses (walrusfs/settings.py): the local
devnet with its wallet by default, testnet, mainnet or a configured one with the Sui wallet.
Chain and node failures become `UserError`s with stable exit codes (docs/exit-codes.md)
through `walrusfs.clihelpers.run_async`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import codec
from cache.ranges import RangeCache
from cache.slivers import SliverCache
from chain.client import WalrusChain
from chain.pricing import format_wal
from codec.quilt import validate_identifier
from walrusfs import validate
from walrusfs.clihelpers import ProgressBar, checked_arg, epochs_arg, open_chain, run_async
from walrusfs.config import Paths
from walrusfs.errors import InputError, InvalidDataError, UsageError
from walrusfs.files import read_input, write_output
from walrusfs.fs.defaults import DEFAULTS
from walrusfs.store.client import StoreResult, WalrusStore
from walrusfs.store.errors import BlobNotFound, BlobUnavailable, NodeError
from walrusfs.store.relay import RelayClient

CACHE_LIMIT = 2 << 30  # bytes of slivers kept in the on-disk cache
RANGE_CACHE = 64 << 20


async def check_epochs_on(chain: WalrusChain, epochs: int) -> None:
    """Storage is sold at most `max_epochs_ahead` epochs ahead on this network; asking more is
    a usage error here, not an abort after the upload.

    Raises:
        UsageError: `epochs` is more than the network sells.
    """
    most = (await chain.system_info()).max_epochs_ahead
    if epochs > most:
        raise UsageError(f"--epochs {epochs}: this network sells storage at most {most} ahead")


@contextlib.asynccontextmanager
async def open_store(
    use_cache: bool = True, relay: RelayClient | None = None
) -> AsyncIterator[WalrusStore]:
    """A store on the chosen network's chain and wallet (`open_chain`), with the on-disk
    sliver cache unless `use_cache` is False, storing through `relay` if given."""
    paths = Paths.from_env()
    async with open_chain() as chain:
        cache = SliverCache(paths.cache_dir / "slivers", CACHE_LIMIT) if use_cache else None
        store = WalrusStore(chain, cache=cache, ranges=RangeCache(RANGE_CACHE), relay=relay)
        try:
            yield store
        finally:
            await store.close()
            if cache is not None:
                cache.close()


def _relay(args: argparse.Namespace) -> RelayClient | None:
    """The relay `--upload-relay` names, with its `--relay-max-tip` budget."""
    if not args.upload_relay:
        return None
    return RelayClient(args.upload_relay, max_tip=args.relay_max_tip)


def _relay_report(store: WalrusStore) -> dict[str, Any]:
    """What the relay cost and did, for the output (nothing without a relay)."""
    if store.relay is None:
        return {}
    tips, failures = store.relay_stats
    return {
        "uploadRelay": {
            "url": store.relay.url,
            "bytesSent": store.relay.sent,
            "tipsMist": tips,
            "uploadedDirectly": failures,
        }
    }


def _print_relay(report: dict[str, Any]) -> None:
    relay = report.get("uploadRelay")
    if relay is None:
        return
    direct = relay["uploadedDirectly"]
    note = f"; {direct} uploaded directly (the relay failed)" if direct else ""
    print(
        f"through {relay['url']}: {relay['bytesSent']} bytes sent, tips "
        f"{relay['tipsMist'] / 10**9:.9f} SUI{note}"
    )


def _read(path: str) -> bytes:
    return read_input(path, "use `walrusfs blob store-quilt DIR`")


def _result_json(path: str, r: StoreResult) -> dict[str, Any]:
    return {
        "file": path,
        "blobId": str(r.blob_id),
        "objectId": r.object_id,
        "size": r.size,
        "encodedSize": r.encoded_size,
        "endEpoch": r.end_epoch,
        "deletable": r.deletable,
        "costFrost": r.cost,
        "reusedStorage": r.reused_storage,
        "alreadyCertified": r.already_certified,
        "extendedBy": r.extended_by,
    }


def cmd_store(args: argparse.Namespace) -> int:
    """Store files as Walrus blobs: WAL cost shown before, paid amount after."""
    for name in args.files:  # every path checked before anything is paid for
        if name != "-" and not Path(name).is_file():
            _read(name)  # raises the InputError that says what is wrong with it

    async def go() -> int:
        async with open_store(relay=_relay(args)) as store:
            await check_epochs_on(store.chain, args.epochs)
            before = (await store.chain.balances()).wal
            out = []
            for name in args.files:
                data = _read(name)  # one file in memory at a time
                try:
                    (await store.committee()).params.check_size(len(data))
                except codec.DataTooLarge as exc:
                    raise InvalidDataError(f"{name}: {exc}") from None
                est = await store.estimate(len(data), args.epochs)
                if not args.json:
                    reuse = " (reusing an owned Storage resource)" if est.reuse else ""
                    print(
                        f"{name}: {len(data)} bytes, {args.epochs} epochs: at most "
                        f"{format_wal(est.total)}{reuse}",
                        file=sys.stderr,
                    )
                result = await store.store(
                    data,
                    args.epochs,
                    deletable=not args.permanent,
                    progress=ProgressBar(f"{Path(name).name[:20]:20}"),
                )
                out.append(_result_json(name, result))
                if not args.json:
                    note = " (already certified: reused)" if result.already_certified else ""
                    print(f"{name}: {result.blob_id} object {result.object_id}{note}")
            after = (await store.chain.balances()).wal
            relayed = _relay_report(store)
            if args.json:
                doc = {"blobs": out, "walSpentFrost": before - after, **relayed}
                print(json.dumps(doc, indent=2))
            else:
                print(f"spent {format_wal(before - after)}; balance {format_wal(after)}")
                _print_relay(relayed)
        return 0

    return run_async(go)


def _parse_range(text: str) -> tuple[int, int | None]:
    try:
        a, _, b = text.partition("-")
        start = int(a)
        end = int(b) if b else None
    except ValueError:
        raise UsageError(f"--range {text!r}: use START-END (bytes, END exclusive)") from None
    if start < 0 or (end is not None and end < start):
        raise UsageError(f"--range {text!r}: need 0 <= START <= END")
    return start, None if end is None else end - start


@contextlib.asynccontextmanager
async def _absent_is_not_found(store: WalrusStore, blob_id: codec.BlobId) -> AsyncIterator[None]:
    """A blob no node has is NOT_FOUND (exit 7) even when some nodes do not answer: nodes
    holding a quorum of shards (2f+1) without its metadata prove it is not certified, since a
    certificate needs 2f+1 shards that stored it and the two sets share an honest node. The
    store says BlobUnavailable (exit 5) as soon as one node errs; ask the nodes again here."""
    try:
        yield
    except BlobUnavailable:
        committee = await store.committee()
        absent = 0
        for node in committee.nodes:
            try:
                if await store.nodes.get_metadata(node, blob_id) is None:
                    absent += len(node.shards)
            except (OSError, NodeError):
                continue  # unreachable or refusing: counts for neither side
        if absent >= committee.quorum:
            raise BlobNotFound(
                f"no storage node has blob {blob_id} (nodes holding {absent} of "
                f"{committee.n_shards} shards said so; the others did not answer)"
            ) from None
        raise


def cmd_read(args: argparse.Namespace) -> int:
    """Read a blob (or a byte range of it) to a file or standard output."""
    try:
        blob_id = codec.BlobId.parse(args.blob_id)
    except codec.MalformedBlobId as exc:
        raise InvalidDataError(str(exc)) from None
    offset, length = _parse_range(args.range) if args.range else (0, None)

    async def go() -> int:
        use_cache = not args.no_cache
        async with open_store(use_cache) as store, _absent_is_not_found(store, blob_id):
            data = await store.read(blob_id, offset, length, use_cache=use_cache)
        write_output(args.output, data)
        return 0

    return run_async(go)


def cmd_list(args: argparse.Namespace) -> int:
    """The wallet's blobs that have not expired."""

    async def go() -> int:
        async with open_store(use_cache=False) as store:
            epoch = (await store.committee()).epoch
            blobs = await store.blobs()
        rows = [
            {
                "blobId": str(codec.BlobId.from_u256(b.blob_id)),
                "objectId": b.id,
                "size": b.size,
                "certified": b.certified_epoch is not None,
                "endEpoch": b.storage.end_epoch,
                "deletable": b.deletable,
                "pool": b.pool,  # the storage pool holding it (null: an owned Blob)
            }
            for b in blobs
        ]
        if args.json:
            print(json.dumps({"epoch": epoch, "blobs": rows}, indent=2))
            return 0
        print(f"epoch {epoch}, {len(rows)} blobs")
        for r in rows:
            flags = (
                ("certified" if r["certified"] else "uncertified")
                + (",deletable" if r["deletable"] else ",permanent")
                + (",pooled" if r["pool"] else "")
            )
            print(
                f"{r['blobId']}  {r['size']:>12}  end {r['endEpoch']:>4}  {flags}  {r['objectId']}"
            )
        return 0

    return run_async(go)


def cmd_extend(args: argparse.Namespace) -> int:
    """Extend a blob's storage by N epochs (paid in WAL)."""

    async def go() -> int:
        async with open_store(use_cache=False) as store:
            paid = await store.extend(args.object_id, args.epochs)
            blob = await store.chain.blob(args.object_id)
        print(
            f"{args.object_id}: now ends at epoch {blob.storage.end_epoch}; paid {format_wal(paid)}"
        )
        return 0

    return run_async(go)


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete a deletable blob; its storage returns to the wallet for reuse."""

    async def go() -> int:
        async with open_store() as store:
            await store.delete(args.object_id)
        print(f"{args.object_id}: deleted; its storage is back in the wallet")
        return 0

    return run_async(go)


def cmd_store_quilt(args: argparse.Namespace) -> int:
    """Store every file of a directory as one quilt; prints each file's patch ID."""
    root = Path(args.directory)
    if not root.is_dir():
        raise InputError(f"{args.directory}: not a directory")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    if not files:
        raise InputError(f"{args.directory}: no files")
    items = []
    for p in files:
        ident = str(p.relative_to(root))
        try:
            validate_identifier(ident)
        except codec.QuiltError as exc:
            raise InvalidDataError(f"{p}: {exc}") from None
        items.append(codec.QuiltItem(ident, _read(str(p))))

    async def go() -> int:
        async with open_store(relay=_relay(args)) as store:
            await check_epochs_on(store.chain, args.epochs)
            try:
                result = await store.store_quilt(
                    items, args.epochs, deletable=not args.permanent, progress=ProgressBar("quilt")
                )
            except codec.QuiltError as exc:
                raise InvalidDataError(str(exc)) from None
            relayed = _relay_report(store)
        out = {
            "quilt": _result_json(str(root), result.quilt),
            "patches": {k: str(v) for k, v in result.patches.items()},
            **relayed,
        }
        if args.json:
            print(json.dumps(out, indent=2))
        else:
            q = result.quilt
            print(f"quilt {q.blob_id} ({len(items)} files), object {q.object_id}")
            for ident, pid in result.patches.items():
                print(f"  {pid}  {ident}")
            _print_relay(relayed)
        return 0

    return run_async(go)


def cmd_read_patch(args: argparse.Namespace) -> int:
    """Read one file of a quilt by its patch ID."""
    try:
        patch_id = codec.QuiltPatchId.parse(args.patch_id)
    except (codec.CodecError, ValueError) as exc:
        raise InvalidDataError(f"{args.patch_id}: {exc}") from None

    async def go() -> int:
        async with open_store() as store, _absent_is_not_found(store, patch_id.quilt_id):
            content = await store.read_patch(patch_id)
        write_output(args.output, content.data)
        return 0

    return run_async(go)


def _relay_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--upload-relay",
        type=checked_arg(validate.relay_url),
        metavar="URL",
        help="send the blob once to this upload relay (its certificate is verified; if it "
        "fails, the upload goes to the nodes directly)",
    )
    p.add_argument(
        "--relay-max-tip",
        type=checked_arg(lambda text: validate.mist(int(text))),
        default=DEFAULTS.relay_max_tip,
        metavar="MIST",
        help=f"the most the relay is paid per blob (default {DEFAULTS.relay_max_tip} MIST)",
    )


def add_parser(sub: Any) -> None:
    blob = sub.add_parser("blob", help="store, read, list, extend and delete blobs")
    bsub = blob.add_subparsers(dest="blob_command", required=True, metavar="ACTION")
    p = bsub.add_parser("store", help=cmd_store.__doc__, description=cmd_store.__doc__)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--epochs", type=epochs_arg, default=1, help="epochs to store for (default 1)")
    p.add_argument("--permanent", action="store_true", help="not deletable before it expires")
    _relay_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_store)
    p = bsub.add_parser("read", help=cmd_read.__doc__, description=cmd_read.__doc__)
    p.add_argument("blob_id", metavar="BLOB_ID")
    p.add_argument("-o", "--output", metavar="FILE")
    p.add_argument("--range", metavar="A-B", help="bytes A (inclusive) to B (exclusive)")
    p.add_argument("--no-cache", action="store_true", help="bypass the local sliver cache")
    p.set_defaults(func=cmd_read)
    p = bsub.add_parser("list", help=cmd_list.__doc__)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    p = bsub.add_parser("extend", help=cmd_extend.__doc__)
    p.add_argument("object_id", metavar="OBJECT_ID")
    p.add_argument("--epochs", type=epochs_arg, required=True, help="epochs to add")
    p.set_defaults(func=cmd_extend)
    p = bsub.add_parser("delete", help=cmd_delete.__doc__)
    p.add_argument("object_id", metavar="OBJECT_ID")
    p.set_defaults(func=cmd_delete)
    p = bsub.add_parser("store-quilt", help=cmd_store_quilt.__doc__)
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--epochs", type=epochs_arg, default=1, help="epochs to store for (default 1)")
    p.add_argument("--permanent", action="store_true")
    _relay_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_store_quilt)
    p = bsub.add_parser("read-patch", help=cmd_read_patch.__doc__)
    p.add_argument("patch_id", metavar="PATCH_ID")
    p.add_argument("-o", "--output", metavar="FILE")
    p.set_defaults(func=cmd_read_patch)
