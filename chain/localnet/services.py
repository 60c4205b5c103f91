"""The `sui.rpc.v2` gRPC services of the stand-in: which path runs which handler.

Methods served (what pysui's `GrpcProtocolClient` sends for the Walrus flows):

    LedgerService      GetServiceInfo GetEpoch GetObject BatchGetObjects GetTransaction
                       GetCheckpoint (one transaction per checkpoint, with its events)
    StateService       ListOwnedObjects ListDynamicFields GetBalance ListBalances
    MovePackageService GetPackage GetDatatype GetFunction (`chain.localnet.packages`)
    TransactionExecutionService  ExecuteTransaction SimulateTransaction (BCS, dry run)
    SubscriptionService SubscribeCheckpoints (unfiltered: every checkpoint from the tip on)
    walrusfs.devnet.v1.AdminService  AdvanceEpoch (devnet only: fault drills past expiry)

Each service is a module of its own (`ledger_service`, `state_service`, `package_service`,
`execution_service`, `subscription_service`, `admin_service`); this one routes grpclib's
paths to them and gives every unary call the same treatment: the wall-clock epoch ticks
first, a rejected transaction or a bad argument is INVALID_ARGUMENT with its reason, and
anything else is logged and INTERNAL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpclib.const
import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb
from grpclib.exceptions import GRPCError

from chain.localnet.admin_service import (
    ADVANCE_EPOCH_PATH,
    EPOCH_SYNC_DONE_PATH,
    INVALIDATE_BLOB_PATH,
    SET_STAKE_PATH,
    AdminService,
)
from chain.localnet.errors import TxRejected
from chain.localnet.execution_service import TransactionExecutionService
from chain.localnet.ledger_service import CHAIN_NAME, LedgerService
from chain.localnet.node import Localnet
from chain.localnet.package_service import MovePackageService
from chain.localnet.state_service import StateService
from chain.localnet.subscription_service import SubscriptionService

log = logging.getLogger(__name__)


class SuiServices:
    """The handlers of every service; `__mapping__` tells grpclib which path runs which. They
    all run on the server's one asyncio loop, which is what lets the subscription service's
    `announce` wake subscribers without locks."""

    def __init__(self, net: Localnet) -> None:
        self.net = net
        self.ledger = LedgerService(net)
        self.state = StateService(net)
        self.packages = MovePackageService(net)
        self.execution = TransactionExecutionService(net)
        self.subscription = SubscriptionService(net, self.ledger)
        self.admin = AdminService(net, self.ledger)

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        unary = grpclib.const.Cardinality.UNARY_UNARY
        routes: list[tuple[str, str, Callable[[Any], Awaitable[Any]], Any, Any]] = [
            (
                "LedgerService",
                "GetServiceInfo",
                self.ledger.get_service_info,
                pb.GetServiceInfoRequest,
                pb.GetServiceInfoResponse,
            ),
            (
                "LedgerService",
                "GetEpoch",
                self.ledger.get_epoch,
                pb.GetEpochRequest,
                pb.GetEpochResponse,
            ),
            (
                "LedgerService",
                "GetObject",
                self.ledger.get_object,
                pb.GetObjectRequest,
                pb.GetObjectResponse,
            ),
            (
                "LedgerService",
                "BatchGetObjects",
                self.ledger.batch_get_objects,
                pb.BatchGetObjectsRequest,
                pb.BatchGetObjectsResponse,
            ),
            (
                "LedgerService",
                "GetTransaction",
                self.ledger.get_transaction,
                pb.GetTransactionRequest,
                pb.GetTransactionResponse,
            ),
            (
                "LedgerService",
                "GetCheckpoint",
                self.ledger.get_checkpoint,
                pb.GetCheckpointRequest,
                pb.GetCheckpointResponse,
            ),
            (
                "StateService",
                "ListOwnedObjects",
                self.state.list_owned_objects,
                pb.ListOwnedObjectsRequest,
                pb.ListOwnedObjectsResponse,
            ),
            (
                "StateService",
                "ListDynamicFields",
                self.state.list_dynamic_fields,
                pb.ListDynamicFieldsRequest,
                pb.ListDynamicFieldsResponse,
            ),
            (
                "StateService",
                "GetBalance",
                self.state.get_balance,
                pb.GetBalanceRequest,
                pb.GetBalanceResponse,
            ),
            (
                "StateService",
                "ListBalances",
                self.state.list_balances,
                pb.ListBalancesRequest,
                pb.ListBalancesResponse,
            ),
            (
                "TransactionExecutionService",
                "ExecuteTransaction",
                self.execution.execute_transaction,
                pb.ExecuteTransactionRequest,
                pb.ExecuteTransactionResponse,
            ),
            (
                "TransactionExecutionService",
                "SimulateTransaction",
                self.execution.simulate_transaction,
                pb.SimulateTransactionRequest,
                pb.SimulateTransactionResponse,
            ),
            (
                "MovePackageService",
                "GetPackage",
                self.packages.get_package,
                pb.GetPackageRequest,
                pb.GetPackageResponse,
            ),
            (
                "MovePackageService",
                "GetDatatype",
                self.packages.get_datatype,
                pb.GetDatatypeRequest,
                pb.GetDatatypeResponse,
            ),
            (
                "MovePackageService",
                "GetFunction",
                self.packages.get_function,
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
            self._wrap(self.admin.advance_epoch), unary, pb.GetEpochRequest, pb.GetEpochResponse
        )
        mapping[SET_STAKE_PATH] = grpclib.const.Handler(
            self._wrap(self.admin.set_stake), unary, pb.Bcs, pb.GetEpochResponse
        )
        mapping[EPOCH_SYNC_DONE_PATH] = grpclib.const.Handler(
            self._wrap(self.admin.epoch_sync_done), unary, pb.Bcs, pb.GetEpochResponse
        )
        mapping[INVALIDATE_BLOB_PATH] = grpclib.const.Handler(
            self._wrap(self.admin.invalidate_blob), unary, pb.Bcs, pb.GetEpochResponse
        )
        mapping["/sui.rpc.v2.SubscriptionService/SubscribeCheckpoints"] = grpclib.const.Handler(
            self.subscription.subscribe_checkpoints,
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

    def info_headers(self) -> dict[str, str]:
        """The headers a full node adds to every answer (sui-rpc-api `response.rs`)."""
        return {
            "x-sui-chain-id": self.net.chain_id(),
            "x-sui-chain": CHAIN_NAME,
            "x-sui-epoch": str(self.net.walrus_epoch()),
            "x-sui-checkpoint-height": str(self.net.ledger.checkpoint()),
            "x-sui-timestamp-ms": str(int(time.time() * 1000)),
        }
