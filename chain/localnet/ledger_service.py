"""LedgerService: the chain's identity, its epoch, objects, transactions and checkpoints.

Reads of what the ledger holds, each reply cut to the request's read mask (or the method's
documented default) by `chain.localnet.masks`. The ledger keeps only the live version of an
object and one transaction per checkpoint, so a request for an older version is NOT_FOUND, as
on a node that pruned it. Batch sizes are limited as on a full node (constants below, with
their sources), so a client that works here asks for what it needs on testnet. Subscriptions
and the devnet admin methods render checkpoints and epochs through this service, which is why
`checkpoint` and `get_epoch` are its public face for them.
"""

from __future__ import annotations

import datetime

import grpclib.const
import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb
from grpclib.exceptions import GRPCError
from pysui.sui.sui_grpc.suimsgs.google import rpc as google_rpc

from chain.localnet import masks
from chain.localnet.naming import normalize_address
from chain.localnet.node import Localnet
from chain.localnet.replies import object_proto

#: BatchGetObjects: at most 1000 requests, of which at most 50 without a version (sui
#: `crates/sui-kv-rpc/src/v2/get_object.rs`: MAX_BATCH_REQUESTS, MAX_UNVERSIONED_BATCH_REQUESTS;
#: the Sui RPC backend that caps batches, refusing with INVALID_ARGUMENT). pysui refuses more
#: than 50 IDs before sending (`MAX_MULTI_OBJECT_FETCH`), so clients batch by 50 anyway.
MAX_BATCH_REQUESTS = 1000
MAX_UNVERSIONED_BATCH_REQUESTS = 50
#: The protocol version the stand-in reports (its rules are not tied to one; clients read it).
PROTOCOL_VERSION = 1
#: `GetServiceInfo.chain` and `x-sui-chain`: a full node names mainnet, testnet or "unknown"
#: (sui-types `ChainIdentifier::chain`); this chain is none of them.
CHAIN_NAME = "unknown"


class LedgerService:
    """`sui.rpc.v2.LedgerService` over one stand-in chain."""

    def __init__(self, net: Localnet) -> None:
        self.net = net

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
        kept: asking for one is NOT_FOUND), with the system state when the mask asks for it.

        Raises:
            GRPCError: NOT_FOUND for an epoch other than the current one.
        """
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
        """The object, cut to the read mask.

        Raises:
            ValueError: no object ID.
            GRPCError: NOT_FOUND when it does not exist or `version` is not its live one.
        """
        mask = masks.tree_for("GetObject", request.read_mask, pb.Object)
        found = self._object(request.object_id, request.version)
        return pb.GetObjectResponse(object=masks.apply(found, mask))

    async def batch_get_objects(
        self, request: pb.BatchGetObjectsRequest
    ) -> pb.BatchGetObjectsResponse:
        """One result per request, each an object or its error. The batch's `read_mask`
        applies to all (a request's own mask is ignored, as `ledger_service/get_object.rs`
        does); too many requests refuse the whole batch.

        Raises:
            ValueError: more than MAX_BATCH_REQUESTS requests, more than
                MAX_UNVERSIONED_BATCH_REQUESTS without a version, or one without an ID.
        """
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
        """The executed transaction, cut to the read mask.

        Raises:
            ValueError: no digest.
            GRPCError: NOT_FOUND for a digest the ledger does not hold.
        """
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
        follow the chain through these.

        Raises:
            GRPCError: NOT_FOUND for a checkpoint past the tip.
        """
        mask = masks.tree_for("GetCheckpoint", request.read_mask, pb.Checkpoint)
        seq = request.sequence_number
        if seq is None:
            seq = self.net.ledger.checkpoint()
        return pb.GetCheckpointResponse(checkpoint=masks.apply(self.checkpoint(seq), mask))

    def checkpoint(self, seq: int) -> pb.Checkpoint:
        """Checkpoint `seq` in full (not masked).

        Raises:
            GRPCError: NOT_FOUND for a checkpoint past the tip.
        """
        if seq == 0:  # genesis: the state was written directly, no transactions
            return pb.Checkpoint(sequence_number=0, digest=self.net.chain_id(), transactions=[])
        found = self.net.ledger.transaction_at(seq)
        if found is None:
            raise GRPCError(grpclib.const.Status.NOT_FOUND, f"checkpoint {seq} not found")
        digest, raw = found
        executed = pb.ExecutedTransaction.parse(raw)
        executed.checkpoint = seq
        return pb.Checkpoint(sequence_number=seq, digest=digest, transactions=[executed])


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
