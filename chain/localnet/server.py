"""The `sui.rpc.v2` gRPC services of the stand-in, served with grpclib on 127.0.0.1.

Methods served (what pysui's `GrpcProtocolClient` sends for the Walrus flows):

    LedgerService      GetServiceInfo GetEpoch GetObject BatchGetObjects GetTransaction
                       GetCheckpoint (one transaction per checkpoint, with its events)
    StateService       ListOwnedObjects ListDynamicFields GetBalance ListBalances
    MovePackageService GetPackage GetDatatype GetFunction (`chain.localnet.packages`)
    TransactionExecutionService  ExecuteTransaction SimulateTransaction (BCS, dry run)
    SubscriptionService SubscribeCheckpoints (unfiltered: every checkpoint from the tip on)
    walrusfs.devnet.v1.AdminService  AdvanceEpoch (devnet only: fault drills past expiry)

Every reply is cut to the request's read mask (or the method's documented default) by
`chain.localnet.masks`, and batch and page sizes are limited as on a full node (constants
below, with their sources), so a client that works here asks for what it needs on testnet.

A rejected transaction (bad signature, stale object version, someone else's object, too
little gas) is answered with gRPC status INVALID_ARGUMENT and its reason, as a Sui full node
does; a transaction that executes and aborts is a normal reply whose effects carry the error.

`LocalnetServer` runs the services on their own asyncio loop in a thread (tests; the devnet
launcher will run it in its own process).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import betterproto2
import grpclib.const
import grpclib.server
import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb
from grpclib.exceptions import GRPCError
from pysui.sui.sui_bcs import bcs
from pysui.sui.sui_grpc.suimsgs.google import rpc as google_rpc

from chain.localnet import grpcweb, masks, packages
from chain.localnet.epochs import EpochChangeInProgress
from chain.localnet.errors import TxRejected
from chain.localnet.ledger import OWNER_ADDRESS
from chain.localnet.naming import coin_inner, normalize_address
from chain.localnet.node import Localnet
from chain.localnet.replies import dynamic_field_proto, object_proto
from chain.localnet.resolve import Resolver

log = logging.getLogger(__name__)

#: List methods: `page_size` unset is 50, otherwise clamped to 1..1000, and a page also ends
#: once it holds 512 KiB (sui `crates/sui-rpc-api/src/grpc/v2/state_service/
#: list_owned_objects.rs`: DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_PAGE_SIZE_BYTES; the same
#: 50/1000 rule is documented for ListDynamicFields and ListBalances in `state_service.proto`).
PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_PAGE_BYTES = 512 * 1024
#: BatchGetObjects: at most 1000 requests, of which at most 50 without a version (sui
#: `crates/sui-kv-rpc/src/v2/get_object.rs`: MAX_BATCH_REQUESTS, MAX_UNVERSIONED_BATCH_REQUESTS;
#: the Sui RPC backend that caps batches, refusing with INVALID_ARGUMENT). pysui refuses more
#: than 50 IDs before sending (`MAX_MULTI_OBJECT_FETCH`), so clients batch by 50 anyway.
MAX_BATCH_REQUESTS = 1000
MAX_UNVERSIONED_BATCH_REQUESTS = 50
#: ExecuteTransaction: one sender signature and an optional sponsor's
#: (`transaction_execution_service/mod.rs`: MAX_NUMBER_OF_SIGNATURES).
MAX_SIGNATURES = 2
#: The protocol version the stand-in reports (its rules are not tied to one; clients read it).
PROTOCOL_VERSION = 1
#: `GetServiceInfo.chain` and `x-sui-chain`: a full node names mainnet, testnet or "unknown"
#: (sui-types `ChainIdentifier::chain`); this chain is none of them.
CHAIN_NAME = "unknown"
#: The devnet admin method (request and reply are GetEpoch messages; see `advance_epoch`).
ADVANCE_EPOCH_PATH = "/walrusfs.devnet.v1.AdminService/AdvanceEpoch"
#: devnet admin: request `Bcs(name=<node ID>, value=<stake u64 LE>)`, reply GetEpochResponse
SET_STAKE_PATH = "/walrusfs.devnet.v1.AdminService/SetStake"
#: devnet admin, called by storage nodes: request `Bcs(name=<node ID>, value=<epoch u32 LE> ||
#: <BLS signature of node.sync_done_message>)`, reply GetEpochResponse
EPOCH_SYNC_DONE_PATH = "/walrusfs.devnet.v1.AdminService/EpochSyncDone"
#: devnet admin: request `Bcs(value=<blob ID, 32 bytes>)`; emits InvalidBlobID
INVALIDATE_BLOB_PATH = "/walrusfs.devnet.v1.AdminService/InvalidateBlob"


class SuiServices:
    """The handlers; `__mapping__` tells grpclib which path runs which. They all run on the
    server's one asyncio loop, which is what lets `announce` wake subscribers without locks."""

    def __init__(self, net: Localnet) -> None:
        self.net = net
        self.resolver = Resolver(net.ledger, net.packages)
        self._tip = net.ledger.checkpoint()  # the newest checkpoint subscribers were told of
        self._waiters: list[asyncio.Future[None]] = []

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        unary = grpclib.const.Cardinality.UNARY_UNARY
        routes: list[tuple[str, str, Callable[[Any], Awaitable[Any]], Any, Any]] = [
            (
                "LedgerService",
                "GetServiceInfo",
                self.get_service_info,
                pb.GetServiceInfoRequest,
                pb.GetServiceInfoResponse,
            ),
            ("LedgerService", "GetEpoch", self.get_epoch, pb.GetEpochRequest, pb.GetEpochResponse),
            (
                "LedgerService",
                "GetObject",
                self.get_object,
                pb.GetObjectRequest,
                pb.GetObjectResponse,
            ),
            (
                "LedgerService",
                "BatchGetObjects",
                self.batch_get_objects,
                pb.BatchGetObjectsRequest,
                pb.BatchGetObjectsResponse,
            ),
            (
                "LedgerService",
                "GetTransaction",
                self.get_transaction,
                pb.GetTransactionRequest,
                pb.GetTransactionResponse,
            ),
            (
                "LedgerService",
                "GetCheckpoint",
                self.get_checkpoint,
                pb.GetCheckpointRequest,
                pb.GetCheckpointResponse,
            ),
            (
                "StateService",
                "ListOwnedObjects",
                self.list_owned_objects,
                pb.ListOwnedObjectsRequest,
                pb.ListOwnedObjectsResponse,
            ),
            (
                "StateService",
                "ListDynamicFields",
                self.list_dynamic_fields,
                pb.ListDynamicFieldsRequest,
                pb.ListDynamicFieldsResponse,
            ),
            (
                "StateService",
                "GetBalance",
                self.get_balance,
                pb.GetBalanceRequest,
                pb.GetBalanceResponse,
            ),
            (
                "StateService",
                "ListBalances",
                self.list_balances,
                pb.ListBalancesRequest,
                pb.ListBalancesResponse,
            ),
            (
                "TransactionExecutionService",
                "ExecuteTransaction",
                self.execute_transaction,
                pb.ExecuteTransactionRequest,
                pb.ExecuteTransactionResponse,
            ),
            (
                "TransactionExecutionService",
                "SimulateTransaction",
                self.simulate_transaction,
                pb.SimulateTransactionRequest,
                pb.SimulateTransactionResponse,
            ),
            (
                "MovePackageService",
                "GetPackage",
                self.get_package,
                pb.GetPackageRequest,
                pb.GetPackageResponse,
            ),
            (
                "MovePackageService",
                "GetDatatype",
                self.get_datatype,
                pb.GetDatatypeRequest,
                pb.GetDatatypeResponse,
            ),
            (
                "MovePackageService",
                "GetFunction",
                self.get_function,
                pb.GetFunctionRequest,
                pb.GetFunctionResponse,
            ),
        ]
        mapping = {
            f"/sui.rpc.v2.{service}/{method}": grpclib.const.Handler(
                self._wrap(handler), unary, req, resp
            )
            for service, method, handler, req, resp in routes
        }
        mapping[ADVANCE_EPOCH_PATH] = grpclib.const.Handler(
            self._wrap(self.advance_epoch), unary, pb.GetEpochRequest, pb.GetEpochResponse
        )
        mapping[SET_STAKE_PATH] = grpclib.const.Handler(
            self._wrap(self.set_stake), unary, pb.Bcs, pb.GetEpochResponse
        )
        mapping[EPOCH_SYNC_DONE_PATH] = grpclib.const.Handler(
            self._wrap(self.epoch_sync_done), unary, pb.Bcs, pb.GetEpochResponse
        )
        mapping[INVALIDATE_BLOB_PATH] = grpclib.const.Handler(
            self._wrap(self.invalidate_blob), unary, pb.Bcs, pb.GetEpochResponse
        )
        mapping["/sui.rpc.v2.SubscriptionService/SubscribeCheckpoints"] = grpclib.const.Handler(
            self.subscribe_checkpoints,
            grpclib.const.Cardinality.UNARY_STREAM,
            pb.SubscribeCheckpointsRequest,
            pb.SubscribeCheckpointsResponse,
        )
        return mapping

    def _wrap(self, handler: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[None]]:
        async def run(stream: Any) -> None:
            request = await stream.recv_message()
            try:
                self.net.tick()
                reply = await handler(request)
            except GRPCError:
                raise
            except TxRejected as exc:
                raise GRPCError(grpclib.const.Status.INVALID_ARGUMENT, str(exc)) from None
            except ValueError as exc:
                raise GRPCError(grpclib.const.Status.INVALID_ARGUMENT, str(exc)) from None
            except Exception as exc:
                log.exception("stand-in handler failed")
                raise GRPCError(grpclib.const.Status.INTERNAL, f"stand-in error: {exc}") from exc
            await stream.send_message(reply)

        return run

    # -- subscriptions --------------------------------------------------------------------------

    def announce(self) -> None:
        """Wake the subscribers if the chain has checkpoints they have not been sent (on the
        loop: `LocalnetServer` schedules it for every transaction the ledger records)."""
        tip = self.net.ledger.checkpoint()
        if tip == self._tip:
            return
        self._tip = tip
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _tip_after(self, seq: int) -> int:
        """The newest checkpoint once it is past `seq`. Waiting subscribers also drive the
        wall-clock epochs: at the next epoch's start they tick, which records the epoch change
        as a checkpoint (no request needs to arrive for a follower to learn of it)."""
        while (tip := self.net.ledger.checkpoint()) <= seq:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            due = self.net.next_epoch_ms()
            timeout = None if due is None else max(0.0, due / 1000 - time.time()) + 0.01
            try:
                await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                self.net.tick()
        return tip

    async def subscribe_checkpoints(self, stream: Any) -> None:
        """Every checkpoint, in order and without gaps, from the tip at the time of the call
        (the first frame), until the client goes away. Filters are not implemented."""
        request: pb.SubscribeCheckpointsRequest = await stream.recv_message()
        if request.filter is not None:
            raise GRPCError(grpclib.const.Status.UNIMPLEMENTED, "checkpoint filters")
        try:
            mask = masks.tree_for("SubscribeCheckpoints", request.read_mask, pb.Checkpoint)
        except masks.InvalidReadMask as exc:
            raise GRPCError(grpclib.const.Status.INVALID_ARGUMENT, str(exc)) from None
        self.net.tick()
        cursor = self.net.ledger.checkpoint()
        await stream.send_message(self._frame(cursor, mask))
        while True:
            tip = await self._tip_after(cursor)
            for seq in range(cursor + 1, tip + 1):
                await stream.send_message(self._frame(seq, mask))
            cursor = tip

    def _frame(self, seq: int, mask: masks.MaskTree) -> pb.SubscribeCheckpointsResponse:
        return pb.SubscribeCheckpointsResponse(
            cursor=seq, checkpoint=masks.apply(self._checkpoint(seq), mask)
        )

    def info_headers(self) -> dict[str, str]:
        """The headers a full node adds to every answer (sui-rpc-api `response.rs`)."""
        return {
            "x-sui-chain-id": self.net.chain_id(),
            "x-sui-chain": CHAIN_NAME,
            "x-sui-epoch": str(self.net.walrus_epoch()),
            "x-sui-checkpoint-height": str(self.net.ledger.checkpoint()),
            "x-sui-timestamp-ms": str(int(time.time() * 1000)),
        }

    # -- ledger -------------------------------------------------------------------------------

    async def get_service_info(self, _: pb.GetServiceInfoRequest) -> pb.GetServiceInfoResponse:
        return pb.GetServiceInfoResponse(
            chain_id=self.net.chain_id(),
            chain=CHAIN_NAME,
            epoch=self.net.walrus_epoch(),
            checkpoint_height=self.net.ledger.checkpoint(),
            timestamp=datetime.datetime.now(datetime.UTC),
            server="walrusfs-localnet",
        )

    async def get_epoch(self, request: pb.GetEpochRequest) -> pb.GetEpochResponse:
        """The current epoch (the stand-in's Sui epoch is the Walrus epoch; past epochs are not
        kept: asking for one is NOT_FOUND), with the system state when the mask asks for it."""
        mask = masks.tree_for("GetEpoch", request.read_mask, pb.Epoch)
        gas_price = int(self.net.ledger.meta("reference_gas_price") or "1000")
        current = self.net.walrus_epoch()
        if request.epoch is not None and request.epoch != current:
            raise GRPCError(grpclib.const.Status.NOT_FOUND, f"epoch {request.epoch} not found")
        start_ms = int(self.net.ledger.meta("epoch_start_ms") or "0")
        duration_ms = int(self.net.ledger.meta("epoch_duration_ms") or "0")
        epoch = pb.Epoch(
            epoch=current,
            start=datetime.datetime.fromtimestamp(start_ms / 1000, datetime.UTC),
            reference_gas_price=gas_price,
            protocol_config=pb.ProtocolConfig(protocol_version=PROTOCOL_VERSION),
            system_state=_system_state(current, gas_price, start_ms, duration_ms),
        )
        return pb.GetEpochResponse(epoch=masks.apply(epoch, mask))

    def _object(self, object_id: str | None, version: int | None = None) -> pb.Object:
        """The object in full (callers mask it). The ledger keeps only the live version, so a
        request for another version finds nothing, as a node that pruned it would answer."""
        if not object_id:
            raise ValueError("object_id is required")
        stored = self.net.ledger.get(normalize_address(object_id))
        if stored is None or (version is not None and version != stored.version):
            at = f" at version {version}" if version is not None else ""
            raise GRPCError(grpclib.const.Status.NOT_FOUND, f"object {object_id}{at} not found")
        return object_proto(stored)

    async def get_object(self, request: pb.GetObjectRequest) -> pb.GetObjectResponse:
        mask = masks.tree_for("GetObject", request.read_mask, pb.Object)
        found = self._object(request.object_id, request.version)
        return pb.GetObjectResponse(object=masks.apply(found, mask))

    async def batch_get_objects(
        self, request: pb.BatchGetObjectsRequest
    ) -> pb.BatchGetObjectsResponse:
        """One result per request, each an object or its error. The batch's `read_mask`
        applies to all (a request's own mask is ignored, as `ledger_service/get_object.rs`
        does); too many requests refuse the whole batch."""
        if len(request.requests) > MAX_BATCH_REQUESTS:
            raise ValueError(f"number of batch requests exceed limit of {MAX_BATCH_REQUESTS}")
        unversioned = sum(1 for item in request.requests if item.version is None)
        if unversioned > MAX_UNVERSIONED_BATCH_REQUESTS:
            raise ValueError(
                "number of unversioned batch requests exceeds limit of "
                f"{MAX_UNVERSIONED_BATCH_REQUESTS}"
            )
        mask = masks.tree_for("BatchGetObjects", request.read_mask, pb.Object)
        for i, item in enumerate(request.requests):
            if not item.object_id:
                raise ValueError(f"requests[{i}].object_id is required")
        results = []
        for item in request.requests:
            try:
                found = self._object(item.object_id, item.version)
                results.append(pb.GetObjectResult(object=masks.apply(found, mask)))
            except GRPCError as exc:
                results.append(
                    pb.GetObjectResult(
                        error=google_rpc.Status(code=exc.status.value, message=exc.message or "")
                    )
                )
        return pb.BatchGetObjectsResponse(objects=results)

    async def get_transaction(self, request: pb.GetTransactionRequest) -> pb.GetTransactionResponse:
        if not request.digest:
            raise ValueError("digest is required")
        mask = masks.tree_for("GetTransaction", request.read_mask, pb.ExecutedTransaction)
        raw = self.net.ledger.transaction(request.digest)
        if raw is None:
            raise GRPCError(
                grpclib.const.Status.NOT_FOUND, f"transaction {request.digest} not found"
            )
        return pb.GetTransactionResponse(
            transaction=masks.apply(pb.ExecutedTransaction.parse(raw), mask)
        )

    async def get_checkpoint(self, request: pb.GetCheckpointRequest) -> pb.GetCheckpointResponse:
        """Checkpoint `seq` holds exactly the `seq`-th executed transaction (with its events);
        checkpoint 0 is genesis (empty); without a sequence number, the latest. Storage nodes
        follow the chain through these."""
        mask = masks.tree_for("GetCheckpoint", request.read_mask, pb.Checkpoint)
        seq = request.sequence_number
        if seq is None:
            seq = self.net.ledger.checkpoint()
        return pb.GetCheckpointResponse(checkpoint=masks.apply(self._checkpoint(seq), mask))

    def _checkpoint(self, seq: int) -> pb.Checkpoint:
        if seq == 0:  # genesis: the state was written directly, no transactions
            return pb.Checkpoint(sequence_number=0, digest=self.net.chain_id(), transactions=[])
        found = self.net.ledger.transaction_at(seq)
        if found is None:
            raise GRPCError(grpclib.const.Status.NOT_FOUND, f"checkpoint {seq} not found")
        digest, raw = found
        executed = pb.ExecutedTransaction.parse(raw)
        executed.checkpoint = seq
        return pb.Checkpoint(sequence_number=seq, digest=digest, transactions=[executed])

    async def advance_epoch(self, request: pb.GetEpochRequest) -> pb.GetEpochResponse:
        """Devnet admin (not a Sui method): start the next epoch `request.epoch` times now.

        Reuses the GetEpoch messages so no new protobuf schema is needed; the launcher's
        `walrusfs devnet epoch advance` is its only caller."""
        count = request.epoch if request.epoch is not None else 1
        if not 1 <= count <= 1000:
            raise ValueError(f"advance by 1..1000 epochs, not {count}")
        try:
            self.net.advance_epoch(count)
        except EpochChangeInProgress as exc:
            raise GRPCError(grpclib.const.Status.FAILED_PRECONDITION, str(exc)) from None
        return await self.get_epoch(pb.GetEpochRequest(read_mask=request.read_mask))

    async def set_stake(self, request: pb.Bcs) -> pb.GetEpochResponse:
        """Devnet admin: the stake of node `request.name` (effective at the next epoch)."""
        value = request.value or b""
        if len(value) != 8:
            raise ValueError("value: the stake as u64 LE")
        self.net.set_stake(request.name or "", int.from_bytes(value, "little"))
        return await self.get_epoch(pb.GetEpochRequest())

    async def invalidate_blob(self, request: pb.Bcs) -> pb.GetEpochResponse:
        """Devnet admin: mark a blob ID invalid (`Localnet.invalidate_blob`)."""
        value = request.value or b""
        if len(value) != 32:
            raise ValueError("value: the 32-byte blob ID")
        self.net.invalidate_blob(int.from_bytes(value, "little"))
        return await self.get_epoch(pb.GetEpochRequest())

    async def epoch_sync_done(self, request: pb.Bcs) -> pb.GetEpochResponse:
        """Devnet admin for storage nodes: node `request.name` holds its shards (see
        `Localnet.epoch_sync_done`)."""
        value = request.value or b""
        if len(value) != 4 + 96:
            raise ValueError("value: epoch u32 LE || 96-byte BLS signature")
        epoch = int.from_bytes(value[:4], "little")
        self.net.epoch_sync_done(request.name or "", epoch, value[4:])
        return await self.get_epoch(pb.GetEpochRequest())

    # -- state --------------------------------------------------------------------------------

    async def list_owned_objects(
        self, request: pb.ListOwnedObjectsRequest
    ) -> pb.ListOwnedObjectsResponse:
        if not request.owner:
            raise ValueError("owner is required")
        owner = normalize_address(request.owner)
        type_filter = _normalize_type(request.object_type) if request.object_type else None
        mask = masks.tree_for("ListOwnedObjects", request.read_mask, pb.Object)
        objects = [
            masks.apply(object_proto(o), mask)
            for o in self.net.ledger.owned_by(owner)
            if o.owner_kind == OWNER_ADDRESS and _type_matches(o.type, type_filter)
        ]
        page, token = _page(
            objects, request.page_size, request.page_token, f"{owner}|{type_filter or ''}"
        )
        return pb.ListOwnedObjectsResponse(objects=page, next_page_token=token)

    async def list_dynamic_fields(
        self, request: pb.ListDynamicFieldsRequest
    ) -> pb.ListDynamicFieldsResponse:
        if not request.parent:
            raise ValueError("parent is required")
        parent = normalize_address(request.parent)
        mask = masks.tree_for("ListDynamicFields", request.read_mask, pb.DynamicField)
        fields = [
            masks.apply(dynamic_field_proto(f), mask)
            for f in self.net.ledger.dynamic_fields(parent)
        ]
        page, token = _page(fields, request.page_size, request.page_token, parent)
        return pb.ListDynamicFieldsResponse(dynamic_fields=page, next_page_token=token)

    def _balances(self, owner: str) -> dict[str, int]:
        totals: dict[str, int] = {}
        for obj in self.net.ledger.owned_by(normalize_address(owner)):
            inner = coin_inner(obj.type)
            if inner is not None and obj.owner_kind == OWNER_ADDRESS:
                totals[inner] = totals.get(inner, 0) + int.from_bytes(obj.contents[32:40], "little")
        return totals

    async def get_balance(self, request: pb.GetBalanceRequest) -> pb.GetBalanceResponse:
        coin = _normalize_type(request.coin_type or "0x2::sui::SUI")
        total = self._balances(request.owner or "").get(coin, 0)
        return pb.GetBalanceResponse(
            balance=pb.Balance(coin_type=coin, balance=total, coin_balance=total, address_balance=0)
        )

    async def list_balances(self, request: pb.ListBalancesRequest) -> pb.ListBalancesResponse:
        if not request.owner:
            raise ValueError("owner is required")
        balances = [
            pb.Balance(coin_type=c, balance=v, coin_balance=v, address_balance=0)
            for c, v in sorted(self._balances(request.owner).items())
        ]
        owner = normalize_address(request.owner)
        page, token = _page(balances, request.page_size, request.page_token, owner)
        return pb.ListBalancesResponse(balances=page, next_page_token=token)

    # -- packages -----------------------------------------------------------------------------

    def _metadata_call(self, request: Any, *fields: str) -> list[str]:
        values = [getattr(request, f) for f in fields]
        for name, value in zip(fields, values, strict=True):
            if not value:
                raise ValueError(f"missing {name}")
        values[0] = normalize_address(values[0])
        return values

    async def get_package(self, request: pb.GetPackageRequest) -> pb.GetPackageResponse:
        (package_id,) = self._metadata_call(request, "package_id")
        return pb.GetPackageResponse(package=self._metadata(self.net.packages.package, package_id))

    async def get_datatype(self, request: pb.GetDatatypeRequest) -> pb.GetDatatypeResponse:
        key = self._metadata_call(request, "package_id", "module_name", "name")
        return pb.GetDatatypeResponse(datatype=self._metadata(self.net.packages.datatype, *key))

    async def get_function(self, request: pb.GetFunctionRequest) -> pb.GetFunctionResponse:
        """The signature of a function of a published package (clients encode arguments
        from it; the TypeScript SDK reads the WAL type from `staking::stake_with_pool`)."""
        key = self._metadata_call(request, "package_id", "module_name", "name")
        return pb.GetFunctionResponse(function=self._metadata(self.net.packages.function, *key))

    @staticmethod
    def _metadata(lookup: Callable[..., T], *key: str) -> T:
        try:
            return lookup(*key)
        except packages.MetadataNotFound as exc:
            raise GRPCError(grpclib.const.Status.NOT_FOUND, str(exc)) from None
        except packages.MetadataMissing as exc:
            raise GRPCError(grpclib.const.Status.INTERNAL, str(exc)) from None

    # -- execution ----------------------------------------------------------------------------

    async def execute_transaction(
        self, request: pb.ExecuteTransactionRequest
    ) -> pb.ExecuteTransactionResponse:
        if request.transaction is None or request.transaction.bcs is None:
            raise TxRejected("the transaction must be given as BCS")
        if len(request.signatures) > MAX_SIGNATURES:
            raise TxRejected(
                f"{len(request.signatures)} provided signatures exceeds the maximum allowed of "
                f"{MAX_SIGNATURES}"
            )
        mask = masks.tree_for("ExecuteTransaction", request.read_mask, pb.ExecutedTransaction)
        tx_bytes = bytes(request.transaction.bcs.value or b"")
        signatures = [bytes(s.bcs.value or b"") for s in request.signatures if s.bcs is not None]
        executed = self.net.execute(tx_bytes, signatures)
        return pb.ExecuteTransactionResponse(transaction=masks.apply(executed, mask))

    async def simulate_transaction(
        self, request: pb.SimulateTransactionRequest
    ) -> pb.SimulateTransactionResponse:
        """A dry run, as a full node runs it (`simulate/mod.rs`): a transaction given as BCS
        is taken as it is; one given field by field is resolved first
        (`chain.localnet.resolve`). Gas selection (and a budget estimate when the client gave
        no budget) happens when asked for and checks are enabled."""
        mask = masks.tree_for(
            "SimulateTransaction", request.read_mask, pb.SimulateTransactionResponse
        )
        tx = request.transaction
        if tx is None:
            raise ValueError("missing transaction")
        gas_price = int(self.net.ledger.meta("reference_gas_price") or "1000")
        checks = request.checks != pb.SimulateTransactionRequestTransactionChecks.DISABLED
        payment = tx.gas_payment
        if tx.bcs is not None:
            tx_bytes = bytes(tx.bcs.value or b"")
            try:
                bcs.TransactionData.deserialize(tx_bytes)
            except Exception as exc:  # canoser raises bare Exceptions on malformed input
                raise ValueError(f"invalid transaction: {exc}") from None
            estimate = False
        else:
            tx_bytes = self.resolver.resolve(tx, gas_price)
            estimate = payment is None or payment.budget is None
        executed = self.net.simulate(
            tx_bytes,
            gas_selection=bool(request.do_gas_selection) and checks,
            estimate_budget=estimate,
            payment_given=len(payment.objects) if payment is not None else 0,
        )
        reply = pb.SimulateTransactionResponse(transaction=executed, suggested_gas_price=gas_price)
        return masks.apply(reply, mask)


def _system_state(epoch: int, gas_price: int, start_ms: int, duration_ms: int) -> pb.SystemState:
    """The Sui system state (`0x3::sui_system_state_inner::SystemStateInnerV2`) as GetEpoch
    renders it. The stand-in has no validators, storage fund or stake subsidy: those are
    empty and zero; the governance parameters are Sui's (sui-types `governance.rs`:
    MIN_VALIDATOR_JOINING_STAKE_MIST, VALIDATOR_LOW_STAKE_THRESHOLD_MIST,
    VALIDATOR_VERY_LOW_STAKE_THRESHOLD_MIST, VALIDATOR_LOW_STAKE_GRACE_PERIOD)."""
    sui = 10**9
    return pb.SystemState(
        version=2,
        epoch=epoch,
        protocol_version=PROTOCOL_VERSION,
        validators=pb.ValidatorSet(total_stake=0),
        storage_fund=pb.StorageFund(total_object_storage_rebates=0, non_refundable_balance=0),
        parameters=pb.SystemParameters(
            epoch_duration_ms=duration_ms,
            stake_subsidy_start_epoch=0,
            min_validator_count=0,
            max_validator_count=150,
            min_validator_joining_stake=30_000_000 * sui,
            validator_low_stake_threshold=20_000_000 * sui,
            validator_very_low_stake_threshold=15_000_000 * sui,
            validator_low_stake_grace_period=7,
        ),
        reference_gas_price=gas_price,
        stake_subsidy=pb.StakeSubsidy(
            balance=0,
            distribution_counter=0,
            current_distribution_amount=0,
            stake_subsidy_period_length=0,
            stake_subsidy_decrease_rate=0,
        ),
        safe_mode=False,
        safe_mode_storage_rewards=0,
        safe_mode_computation_rewards=0,
        safe_mode_storage_rebates=0,
        safe_mode_non_refundable_storage_fee=0,
        epoch_start_timestamp_ms=start_ms,
    )


T = TypeVar("T", bound=betterproto2.Message)


def _page(
    items: list[T], page_size: int | None, page_token: bytes | None, scope: str
) -> tuple[list[T], bytes | None]:
    """One page of `items` (already masked) and the token of the next. A token is only valid
    for the listing it came from (`scope`: owner and type, or parent), as a full node refuses
    a token from another query with INVALID_ARGUMENT."""
    start = 0
    if page_token:
        token_scope, _, offset = page_token.decode(errors="replace").rpartition("#")
        if token_scope != scope or not offset.isdigit():
            raise ValueError("invalid page_token")
        start = int(offset)
    size = PAGE_SIZE if page_size is None else min(max(page_size, 1), MAX_PAGE_SIZE)
    page: list[T] = []
    used = 0
    for item in items[start:]:
        page.append(item)
        used += len(bytes(item))
        if len(page) >= size or used >= MAX_PAGE_BYTES:
            break
    end = start + len(page)
    return page, (f"{scope}#{end}".encode() if end < len(items) else None)


def _normalize_type(type_: str) -> str:
    """Addresses in a type string to full length: `0x2::coin::Coin<0x2::sui::SUI>` etc."""
    out, i = [], 0
    while i < len(type_):
        if type_.startswith("0x", i):
            j = i + 2
            while j < len(type_) and type_[j] in "0123456789abcdefABCDEF":
                j += 1
            out.append(normalize_address(type_[i:j]))
            i = j
        else:
            out.append(type_[i])
            i += 1
    return "".join(out)


def _type_matches(type_: str, wanted: str | None) -> bool:
    """Exact type, or a type without generics matching any instantiation (as Sui filters)."""
    if wanted is None:
        return True
    return type_ == wanted or ("<" not in wanted and type_.startswith(wanted + "<"))


class _DualServer(grpclib.server.Server):
    """grpclib's server whose connections are sniffed: native gRPC (HTTP/2) as before,
    gRPC-web (HTTP/1.1) answered by the same handlers (`chain.localnet.grpcweb`)."""

    def __init__(self, services: SuiServices) -> None:
        super().__init__([services])
        self._services = services

    def _protocol_factory(self) -> Any:
        return grpcweb.SniffingProtocol(
            super()._protocol_factory, self._mapping, self._services.info_headers
        )


class LocalnetServer:
    """The services on their own asyncio loop in a daemon thread."""

    def __init__(self, net: Localnet, host: str = "127.0.0.1", port: int = 0) -> None:
        self.net = net
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: grpclib.server.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Start serving; returns the port (an ephemeral one when `port` was 0)."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                services = SuiServices(self.net)

                def wake() -> None:
                    loop.call_soon_threadsafe(services.announce)

                self.net.ledger.on_checkpoint = wake
                server = _DualServer(services)
                loop.run_until_complete(server.start(self.host, self.port))
                raw = server._server  # grpclib exposes no bound-port accessor
                sockets = raw.sockets if isinstance(raw, asyncio.Server) else ()
                self.port = sockets[0].getsockname()[1]
                self._server = server
            except BaseException as exc:
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            server.close()
            loop.run_until_complete(server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, name="localnet-grpc", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self.port

    def stop(self) -> None:
        self.net.ledger.on_checkpoint = None
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop = None
