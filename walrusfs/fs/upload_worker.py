"""Uploads run in a separate process, so they never slow down the mount's request loop.

An upload at 1000 shards is thousands of HTTP requests and confirmations: Python work that,
on the mount's trio loop, would queue every FUSE request behind it (measured: stat 16,000/s
idle, 650/s during uploads) and, in a thread, would still hold the GIL. The worker is
`python -m walrusfs.fs.upload_worker`, on the network and with the wallet key the mount
hands it (it reads no configuration of its own): it reads staged chunk files by path, stores
them (its own WalrusStore and chain client, the only one that sends transactions) and
answers with the results. The mount keeps the database and decides what
the results mean (generation checks, commit).

Encrypted volumes are sealed here (walrusfs/fs/crypto.py), so the mount's loop never spends
CPU on it; the volume key and the wallet key arrive on stdin in the first line, never on the
command line.

Protocol (worker_protocol.py: the requests, answers and errors, typed): one JSON object
per line on stdin/stdout. A chunk is a whole file, or a span of one; lengths are plaintext
bytes up to the last non-zero byte: trailing zeros are not stored, the chunk's length says
where its bytes end and the rest reads as zeros; a chunk of zeros only is a hole. A missing
file stores nothing (the chunk was removed meanwhile). "resume": the Blob object a failed
attempt of this very request registered: continued (not paid again) if it still is one of
these bytes, even by a worker started since. An upload reports its registration the moment
it is made, so a worker that dies after that leaves the mount knowing the paid Blob its
retry continues.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trio

import codec
from cache.blocks import BlockCache, BlockCachePlace
from chain import errors as chain_errors
from chain.client import WalrusChain
from chain.profiles import NetworkProfile
from chain.wallet import Keypair
from walrusfs import logs
from walrusfs.fs import crypto
from walrusfs.fs import worker_protocol as wp
from walrusfs.fs.pool import POOL_SPARE
from walrusfs.store.client import WalrusStore
from walrusfs.store.errors import StoreError
from walrusfs.store.relay import RelayClient

log = logging.getLogger(__name__)


# -- the mount's side -------------------------------------------------------------------------


class UploadWorker:
    """The mount's side of the worker process (`worker_protocol.Worker`), started on the first
    request and again after it exits. A failed answer raises by class
    (`worker_protocol.error_from_json`): ObjectNotFound, InsufficientWal, InsufficientGas,
    DataError, or WorkerError (also when the worker exits with requests in flight)."""

    def __init__(
        self,
        argv: list[str],
        *,
        network: NetworkProfile,
        wallet: Keypair | None,
        key: bytes | None = None,
        blocks: BlockCachePlace | None = None,
        relay: wp.RelaySetting | None = None,
    ) -> None:
        """`argv` starts the worker process; `network` and `wallet` (the key that pays) are
        the mount's, handed to it with the volume `key` on its first line, and `blocks`, the
        block cache that keeps what it stores (None: nothing is kept)."""
        self.argv = argv
        self._init = wp.Init(key, network, wallet, blocks, relay)
        self._proc: trio.Process | None = None
        self._pending: dict[int, tuple[trio.Event, list[dict[str, Any]]]] = {}
        #: request -> the Blob object it registered (its progress message), until it answers
        self._registered: dict[int, str] = {}
        #: request -> who is told of its registration (`store_blob`'s `registered`)
        self._on_registered: dict[int, wp.Registered] = {}
        self._next = 1
        self._send_lock = trio.Lock()
        self._start_lock = trio.Lock()  # one worker, even when two jobs start at once
        self._nursery: trio.Nursery | None = None
        #: registrations the worker holds unfinished (from its last answer)
        self.uncertified = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def _ensure(self) -> trio.Process:
        async with self._start_lock:
            if self._proc is not None and self._proc.returncode is None:
                return self._proc
            assert self._nursery is not None
            proc = await trio.lowlevel.open_process(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            self._proc = proc
            self._nursery.start_soon(self._reader, proc)
            assert proc.stdin is not None
            async with self._send_lock:
                await proc.stdin.send_all(wp.encode(self._init.to_json()))
            return proc

    async def _reader(self, proc: trio.Process) -> None:
        assert proc.stdout is not None
        try:
            async for answer in wp.read_lines(proc.stdout):
                if "progress" in answer:  # the request goes on: only remember the Blob
                    if answer["id"] in self._pending:
                        self._registered[answer["id"]] = answer["registered"]
                        told = self._on_registered.get(answer["id"])
                        if told is not None:
                            told(str(answer["registered"]))
                    continue
                self._registered.pop(answer["id"], None)
                self._on_registered.pop(answer["id"], None)
                waiter = self._pending.pop(answer["id"], None)
                if waiter is not None:
                    waiter[1].append(answer)
                    waiter[0].set()
        finally:
            await proc.wait()
            log.warning("upload worker exited (%s)", proc.returncode)
            self._on_registered.clear()
            for rid, (event, box) in list(self._pending.items()):
                box.append(
                    {
                        "id": rid,
                        "error": "the upload worker exited",
                        "type": "other",
                        "registered": self._registered.pop(rid, None),
                    }
                )
                event.set()
            self._pending.clear()

    async def _call(
        self, request: dict[str, Any], registered: wp.Registered | None = None
    ) -> dict[str, Any]:
        """Send one request and wait for its answer; a failed answer raises (by class,
        worker_protocol.error_from_json). `registered`: told of the request's registration."""
        proc = await self._ensure()
        assert proc.stdin is not None
        rid = self._next
        self._next += 1
        event = trio.Event()
        box: list[dict[str, Any]] = []
        self._pending[rid] = (event, box)
        if registered is not None:
            self._on_registered[rid] = registered
        async with self._send_lock:
            await proc.stdin.send_all(wp.encode({**request, "id": rid}))
        await event.wait()
        answer = box[0]
        if "uncertified" in answer:
            self.uncertified = int(answer["uncertified"])
        if "error" in answer:
            raise wp.error_from_json(answer)
        return answer

    async def store_blob(
        self, source: wp.Source, upload: wp.Upload, registered: wp.Registered | None = None
    ) -> wp.BlobStored:
        answer = await self._call(wp.blob_request(source, upload), registered)
        return wp.BlobStored.from_json(answer)

    async def store_quilt(
        self,
        items: Sequence[wp.QuiltItem],
        upload: wp.Upload,
        registered: wp.Registered | None = None,
    ) -> wp.QuiltStored:
        answer = await self._call(wp.quilt_request(items, upload), registered)
        return wp.QuiltStored.from_json(answer)

    async def delete(self, object_id: str, pool: str | None = None) -> None:
        await self._call({"op": "delete", "object_id": object_id, "pool": pool})

    async def abandon(self, object_id: str, pool: str | None = None) -> bool:
        answer = await self._call({"op": "abandon", "object_id": object_id, "pool": pool})
        return bool(answer["abandoned"])

    async def create_pool(self, capacity: int, epochs: int) -> tuple[str, int]:
        answer = await self._call({"op": "create_pool", "capacity": capacity, "epochs": epochs})
        return str(answer["pool"]), int(answer["paid"])

    async def extend_pool(self, pool: str, epochs: int) -> wp.Extended:
        answer = await self._call({"op": "extend_pool", "pool": pool, "epochs": epochs})
        return wp.Extended(int(answer["paid"]), int(answer["end_epoch"]))

    async def extend(self, object_id: str, epochs: int) -> wp.Extended:
        answer = await self._call({"op": "extend", "object_id": object_id, "epochs": epochs})
        return wp.Extended(int(answer["paid"]), int(answer["end_epoch"]))

    async def aclose(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            assert self._proc.stdin is not None
            await self._proc.stdin.aclose()
            with trio.move_on_after(10):
                await self._proc.wait()
            if self._proc.returncode is None:
                self._proc.kill()


# -- the worker process -----------------------------------------------------------------------


async def _serve() -> None:
    requests = wp.read_lines(trio.lowlevel.FdStream(sys.stdin.fileno()))
    try:
        init = wp.Init.from_json(await anext(requests))
    except StopAsyncIteration:
        return  # the mount closed stdin before it said anything: nothing to do
    keys = None if init.volume_key is None else crypto.VolumeKeys.from_volume_key(init.volume_key)
    chain = WalrusChain(init.network, init.wallet)
    relay = init.relay
    store = WalrusStore(
        chain,
        relay=None if relay is None else RelayClient(relay.url, max_tip=relay.max_tip),
    )
    # what is uploaded is kept as it is stored (sealed), so that reading a file just uploaded
    # costs a local disk read, not a fetch from the nodes
    blocks = None if init.blocks is None else init.blocks.open()
    out = trio.lowlevel.FdStream(sys.stdout.fileno())
    lock = trio.Lock()

    async def answer(obj: dict[str, Any]) -> None:
        async with lock:
            await out.send_all(wp.encode(obj))

    async def handle(req: dict[str, Any]) -> None:
        rid = req["id"]
        registered: list[str] = []  # the Blob object this request's upload writes to

        def on_registered(object_id: str) -> None:
            # told at once, not only with the answer: if this process dies before it answers,
            # the mount still knows which paid Blob the retry must continue
            registered.append(object_id)
            progress = {"id": rid, "progress": "registered", "registered": object_id}
            nursery.start_soon(answer, progress)

        reply: dict[str, Any]
        try:
            try:
                reply = await _do(store, keys, req, on_registered, blocks)
            finally:
                # An upload frees hundreds of MiB of encoder and sliver buffers: hand the free
                # pages back at once, or the worker's RSS stays at its peak (the mount's memory
                # bound counts this process; see codec/memory.py).
                await trio.to_thread.run_sync(codec.release_free_memory)
        except Exception as exc:
            if not isinstance(exc, (StoreError, chain_errors.ChainError, OSError, ValueError)):
                log.exception("upload request failed (internal error)")
            reply = wp.error_to_json(exc)
        reply["registered"] = registered[-1] if registered else None
        await answer({"id": rid, **reply, "uncertified": len(store.unfinished)})

    try:
        async with trio.open_nursery() as nursery:
            async for req in requests:
                nursery.start_soon(handle, req)
            # stdin closed: the mount unmounted or died (kill -9). Stop at once: an upload
            # finished now would be certified with no one to record it.
            nursery.cancel_scope.cancel()
    finally:
        await store.close()
        await chain.close()
        if blocks is not None:
            blocks.close()


def _data_end(data: bytes) -> int:
    """The length of `data` without its trailing zeros (0: all zeros). Compares whole MiB
    blocks against zeros first (memcmp speed), so a 64 MiB chunk costs ~10 ms at most."""
    block = 1 << 20
    zeros = bytes(block)
    end = len(data)
    view = memoryview(data)
    while end >= block and view[end - block : end] == zeros:
        end -= block
    view.release()
    lo = max(0, end - block)  # the last non-zero byte, if any, is in [lo, end)
    return lo + len(data[lo:end].rstrip(b"\0"))


def _read(
    path: str,
    keys: crypto.VolumeKeys | None,
    offset: int | None = None,
    length: int = 0,
    *,
    strip: bool = True,
) -> tuple[bytes, int] | None:
    """(bytes to store, plaintext length) of a staged chunk, sealed on an encrypted volume;
    trailing zeros are left out (a hole at the end of a sparse chunk is not paid for: the
    chunk's length says where its bytes end), so a chunk of zeros only has length 0. With
    `strip` False every byte is kept (a checkpoint: nothing else records its length)."""
    try:
        if offset is None:
            data = Path(path).read_bytes()
        else:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(length)
    except FileNotFoundError:
        return None
    end = _data_end(data) if strip else len(data)
    if end < len(data):
        data = data[:end]
    return (data if keys is None else crypto.seal(keys, data)), len(data)


async def _do(
    store: WalrusStore,
    keys: crypto.VolumeKeys | None,
    req: dict[str, Any],
    registered: Callable[[str], None] | None = None,
    blocks: BlockCache | None = None,
) -> dict[str, Any]:
    op = req["op"]
    if op == "delete":
        await store.delete(req["object_id"], req.get("pool"))
        return {}
    if op == "abandon":
        return {"abandoned": await store.abandon(req["object_id"], req.get("pool"))}
    if op == "create_pool":
        pool, paid = await store.create_pool(req["capacity"], req["epochs"])
        return {"pool": pool, "paid": paid}
    if op == "extend_pool":
        paid, end = await store.extend_pool(req["pool"], req["epochs"], POOL_SPARE)
        return {"paid": paid, "end_epoch": end}
    if op == "extend":
        paid = await store.extend(req["object_id"], req["epochs"])
        blob = await store.chain.blob(req["object_id"])
        return {"paid": paid, "end_epoch": blob.storage.end_epoch}
    attrs = req["attributes"]
    if op == "blob":
        got = await trio.to_thread.run_sync(
            functools.partial(
                _read,
                req["path"],
                keys,
                req.get("offset"),
                req.get("length", 0),
                strip=not req.get("exact", False),
            )
        )
        if got is None:
            return wp.BlobStored(None).to_json()
        if got[1] == 0:
            return wp.BlobStored(None, 0, hole=True).to_json()
        r = await store.store(
            got[0],
            req["epochs"],
            attributes=attrs,
            reuse=False,
            registered=registered,
            resume=req.get("resume"),
            pool=req.get("pool"),
        )
        if blocks is not None:
            size = len(got[0])
            await trio.to_thread.run_sync(blocks.put, str(r.blob_id), 0, got[0], size)
        return wp.BlobStored(r, got[1]).to_json()
    if op == "quilt":
        items = []
        lengths = {}
        holes = []
        for ident, path, offset, length, tags in req["items"]:
            got = await trio.to_thread.run_sync(_read, path, keys, offset, length or 0)
            if got is None:
                continue
            if got[1]:
                items.append(codec.QuiltItem(ident, got[0], tags))
                lengths[ident] = got[1]
            else:
                holes.append(ident)
        if not items:
            return wp.QuiltStored(None, holes=holes).to_json()
        q = await store.store_quilt(
            items,
            req["epochs"],
            attributes=attrs,
            reuse=False,
            registered=registered,
            resume=req.get("resume"),
            pool=req.get("pool"),
        )
        patches = {k: str(v) for k, v in q.patches.items()}
        return wp.QuiltStored(q.quilt, patches, lengths, holes).to_json()
    raise ValueError(f"unknown op {op!r}")


#: scheduling priority of the worker (the devnet's processes run at the same, DEVNET_NICE)
WORKER_NICE = 10


def main() -> None:
    p = argparse.ArgumentParser(description="walrusfs upload worker (started by the mount)")
    p.parse_args()
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s upload-worker %(name)s: %(message)s",
    )
    logs.quiet_libraries()  # an expected NOT_FOUND (a pool's blob looked up) is no traceback
    codec.tune_allocator()
    # Uploads are background work: when the CPU is contended, the mount's FUSE requests (and
    # the user's programs) go first. Raising one's own nice value is always permitted.
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)
    trio.run(_serve)


if __name__ == "__main__":
    main()
