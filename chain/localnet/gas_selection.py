"""SimulateTransaction's gas selection, as a full node does it (sui `simulate/mod.rs`): the
budget estimate from a run paid by a mock gas coin, and the payment coins picked from the
gas owner's SUI."""

from __future__ import annotations

from typing import Any

from pysui.sui.sui_bcs import bcs

from chain import move_types as mt
from chain.localnet.errors import TxRejected
from chain.localnet.executor import MOCK_GAS_ID, STORAGE_COST_PER_BYTE, Executor
from chain.localnet.ledger import Ledger
from chain.localnet.naming import SUI_TYPE, coin_type

MIST_PER_SUI = 10**9
#: Sui protocol configuration the simulator's gas rules use (`sui-protocol-config`):
#: `max_tx_gas`, `max_gas_payment_objects`, `max_input_objects`,
#: `obj_access_cost_read_per_byte`, `gas_rounding_step`; and the simulator's margin
#: (`GAS_SAFE_OVERHEAD` units at the gas price, `simulate/mod.rs`).
MAX_TX_GAS = 50 * MIST_PER_SUI
MAX_GAS_PAYMENT_OBJECTS = 256
MAX_INPUT_OBJECTS = 2048
OBJ_ACCESS_COST_READ_PER_BYTE = 15
GAS_ROUNDING_STEP = 1000
GAS_SAFE_OVERHEAD = 1000
GAS_COIN_SIZE_BYTES = 40


def gas_loading_cost(extra_coins: int, price: int) -> int:
    """`compute_gas_loading_cost_mist`: reading `extra_coins` more gas coins, in MIST."""
    units = extra_coins * GAS_COIN_SIZE_BYTES * OBJ_ACCESS_COST_READ_PER_BYTE
    units = -(-units // GAS_ROUNDING_STEP) * GAS_ROUNDING_STEP
    return units * price


def estimated_budget(executor: Executor, data: Any, price: int, payment_given: int) -> int:
    """`estimate_gas_budget_from_gas_cost`: a run with the maximum budget and the mock coin;
    max(computation, computation + storage - mock coin's storage - rebate), plus the
    loading cost of payment coins beyond one, plus `GAS_SAFE_OVERHEAD` units, capped."""
    trial = bcs.TransactionData.deserialize(bytes(data.serialize()))
    trial.value.GasData.Payment = []
    trial.value.GasData.Budget = MAX_TX_GAS
    outcome = executor.simulate(bytes(trial.serialize()), mock_gas=True)
    mock_storage = STORAGE_COST_PER_BYTE * len(mt.Coin(MOCK_GAS_ID, 0).to_bcs())
    storage = max(0, outcome.storage_cost - mock_storage)
    net = max(0, outcome.computation_cost + storage - outcome.storage_rebate)
    base = max(outcome.computation_cost, net)
    loading = gas_loading_cost(max(0, payment_given - 1), price)
    return min(base + loading + GAS_SAFE_OVERHEAD * price, MAX_TX_GAS)


def select_gas(ledger: Ledger, v1: Any, loading_price: int | None) -> None:
    """`select_gas`: the owner's SUI coins that are not inputs, up to the payment limit;
    the budget grows by the loading cost of coins beyond one when it was estimated.

    Args:
        loading_price: the gas price when the budget was estimated (None: it was given).

    Raises:
        TxRejected: the coins found hold less than the budget.
    """
    owner = "0x" + bytes(v1.GasData.Owner.Address).hex()
    ptb = v1.TransactionKind.value
    inputs = {
        "0x" + bytes(arg.value.value.ObjectID.Address).hex()
        for arg in ptb.Inputs
        if arg.enum_name == "Object"
    }
    limit = min(MAX_GAS_PAYMENT_OBJECTS, MAX_INPUT_OBJECTS - len(inputs))
    coins = sorted(
        (c for c in ledger.owned_by(owner, coin_type(SUI_TYPE)) if c.id not in inputs),
        key=lambda c: c.id,
    )[: max(0, limit)]
    value = sum(int.from_bytes(c.contents[32:40], "little") for c in coins)
    v1.GasData.Payment = [
        bcs.ObjectReference(bcs.Address.from_str(c.id), c.version, bcs.Digest.from_str(c.digest))
        for c in coins
    ]
    budget = int(v1.GasData.Budget)
    if loading_price is not None:
        budget = min(budget + gas_loading_cost(max(0, len(coins) - 1), loading_price), MAX_TX_GAS)
        v1.GasData.Budget = budget
    if value < budget:
        raise TxRejected(
            "Unable to perform gas selection due to insufficient SUI balance (in address "
            f"balance or coins) for account {owner} to satisfy required budget {budget}."
        )
