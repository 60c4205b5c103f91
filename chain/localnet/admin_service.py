"""The devnet's admin methods, `walrusfs.devnet.v1.AdminService`: no Sui node has them.

The devnet drives what a real network's operators and time would: advancing epochs, a
node's stake, a storage node's `epoch_sync_done` attestation, an invalid blob ID (`Localnet`
does the work, in `chain.localnet.epochs` and `chain.localnet.admin`). Requests and replies
reuse `sui.rpc.v2` messages (GetEpoch, Bcs) so no protobuf schema of its own is needed; every
reply is the epoch after the change. The paths are public because the devnet launcher and
storage nodes call them.
"""

from __future__ import annotations

import grpclib.const
import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb
from grpclib.exceptions import GRPCError

from chain.localnet.epochs import EpochChangeInProgress
from chain.localnet.ledger_service import LedgerService
from chain.localnet.node import Localnet

#: The devnet admin method (request and reply are GetEpoch messages; see `advance_epoch`).
ADVANCE_EPOCH_PATH = "/walrusfs.devnet.v1.AdminService/AdvanceEpoch"
#: devnet admin: request `Bcs(name=<node ID>, value=<stake u64 LE>)`, reply GetEpochResponse
SET_STAKE_PATH = "/walrusfs.devnet.v1.AdminService/SetStake"
#: devnet admin, called by storage nodes: request `Bcs(name=<node ID>, value=<epoch u32 LE> ||
#: <BLS signature of node.sync_done_message>)`, reply GetEpochResponse
EPOCH_SYNC_DONE_PATH = "/walrusfs.devnet.v1.AdminService/EpochSyncDone"
#: devnet admin: request `Bcs(value=<blob ID, 32 bytes>)`; emits InvalidBlobID
INVALIDATE_BLOB_PATH = "/walrusfs.devnet.v1.AdminService/InvalidateBlob"


class AdminService:
    """The devnet admin methods over one stand-in chain; replies are the ledger service's
    GetEpoch."""

    def __init__(self, net: Localnet, ledger: LedgerService) -> None:
        self.net = net
        self.ledger = ledger

    async def advance_epoch(self, request: pb.GetEpochRequest) -> pb.GetEpochResponse:
        """Devnet admin (not a Sui method): start the next epoch `request.epoch` times now.

        Reuses the GetEpoch messages so no new protobuf schema is needed; the launcher's
        `walrusfs devnet epoch advance` is its only caller.

        Raises:
            ValueError: the count is not within 1..1000 (INVALID_ARGUMENT).
            GRPCError: FAILED_PRECONDITION while the previous epoch change is in progress
                (epochs started before that stay started).
        """
        count = request.epoch if request.epoch is not None else 1
        if not 1 <= count <= 1000:
            raise ValueError(f"advance by 1..1000 epochs, not {count}")
        try:
            self.net.advance_epoch(count)
        except EpochChangeInProgress as exc:
            raise GRPCError(grpclib.const.Status.FAILED_PRECONDITION, str(exc)) from None
        return await self.ledger.get_epoch(pb.GetEpochRequest(read_mask=request.read_mask))

    async def set_stake(self, request: pb.Bcs) -> pb.GetEpochResponse:
        """Devnet admin: the stake of node `request.name` (effective at the next epoch).

        Raises:
            ValueError: the value is not a u64, or no node has that ID or name.
        """
        value = request.value or b""
        if len(value) != 8:
            raise ValueError("value: the stake as u64 LE")
        self.net.set_stake(request.name or "", int.from_bytes(value, "little"))
        return await self.ledger.get_epoch(pb.GetEpochRequest())

    async def invalidate_blob(self, request: pb.Bcs) -> pb.GetEpochResponse:
        """Devnet admin: mark a blob ID invalid (`Localnet.invalidate_blob`).

        Raises:
            ValueError: the value is not 32 bytes, or the blob ID is invalid already.
        """
        value = request.value or b""
        if len(value) != 32:
            raise ValueError("value: the 32-byte blob ID")
        self.net.invalidate_blob(int.from_bytes(value, "little"))
        return await self.ledger.get_epoch(pb.GetEpochRequest())

    async def epoch_sync_done(self, request: pb.Bcs) -> pb.GetEpochResponse:
        """Devnet admin for storage nodes: node `request.name` holds its shards (see
        `Localnet.epoch_sync_done`).

        Raises:
            ValueError: a malformed value, or an attestation `admin.epoch_sync_done` refuses.
        """
        value = request.value or b""
        if len(value) != 4 + 96:
            raise ValueError("value: epoch u32 LE || 96-byte BLS signature")
        epoch = int.from_bytes(value[:4], "little")
        self.net.epoch_sync_done(request.name or "", epoch, value[4:])
        return await self.ledger.get_epoch(pb.GetEpochRequest())
