"""TransactionExecutionService: executing and simulating transactions.

A rejected transaction (bad signature, stale object version, someone else's object, too
little gas) raises `TxRejected`, which the service table answers with INVALID_ARGUMENT and its
reason, as a Sui full node does; a transaction that executes and aborts is a normal reply
whose effects carry the error. A simulation takes a transaction as BCS, or field by field and
resolved first (`chain.localnet.resolve`), as a full node's simulator does.
"""

from __future__ import annotations

import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb
from pysui.sui.sui_bcs import bcs

from chain.localnet import masks
from chain.localnet.errors import TxRejected, bcs_error
from chain.localnet.node import Localnet
from chain.localnet.resolve import Resolver

#: ExecuteTransaction: one sender signature and an optional sponsor's
#: (`transaction_execution_service/mod.rs`: MAX_NUMBER_OF_SIGNATURES).
MAX_SIGNATURES = 2


class TransactionExecutionService:
    """`sui.rpc.v2.TransactionExecutionService` over one stand-in chain."""

    def __init__(self, net: Localnet) -> None:
        self.net = net
        self.resolver = Resolver(net.ledger, net.packages)

    async def execute_transaction(
        self, request: pb.ExecuteTransactionRequest
    ) -> pb.ExecuteTransactionResponse:
        """Execute a signed transaction given as BCS; a failed execution is a normal reply.

        Raises:
            TxRejected: no BCS, more than MAX_SIGNATURES signatures, or a transaction that
                cannot run (INVALID_ARGUMENT).
        """
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
        no budget) happens when asked for and checks are enabled.

        Raises:
            ValueError: no transaction, or BCS that is not one (INVALID_ARGUMENT).
            TxRejected: it cannot run, or gas selection finds too little SUI.
            GRPCError: what resolving a transaction given field by field refuses.
        """
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
                raise ValueError(f"invalid transaction: {bcs_error(exc)}") from None
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
