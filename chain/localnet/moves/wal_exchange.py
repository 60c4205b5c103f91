"""Twin of the devnet/testnet `wal_exchange.move`: SUI for WAL at the exchange's fixed rate."""

from __future__ import annotations

import dataclasses
from typing import Any

from chain import move_types as mt
from chain.aborts import E_EXCHANGE_INSUFFICIENT_FUNDS, E_EXCHANGE_INSUFFICIENT_INPUT
from chain.localnet.moves.registry import Registry, abort, mut, new_coin, pure, val
from chain.localnet.txcontext import LiveObject, Tx


def register(r: Registry) -> None:
    dep = r.dep
    X, wal_coin, sui_coin = dep.exchange_pkg, dep.wal_coin, dep.sui_coin
    fn = r.decorator({"exchange_all_for_wal": [wal_coin], "exchange_for_wal": [wal_coin]})

    def _exchange(tx: Tx, exchange: LiveObject, sui_amount: int) -> LiveObject:
        ex: mt.Exchange = exchange.value
        wal_amount = sui_amount * ex.rate.wal // ex.rate.sui
        if ex.wal < wal_amount:
            raise abort(
                tx,
                dep,
                E_EXCHANGE_INSUFFICIENT_FUNDS,
                "exchange_all_for_wal",
                f"the exchange holds {ex.wal} FROST, {wal_amount} asked",
            )
        exchange.value = dataclasses.replace(ex, wal=ex.wal - wal_amount, sui=ex.sui + sui_amount)
        return new_coin(tx, wal_coin, wal_amount)

    @fn(X, "wal_exchange", "exchange_all_for_wal", [mut(dep.exchange_type), val(sui_coin)])
    def exchange_all_for_wal(tx: Tx, exchange: LiveObject, sui: LiveObject) -> list[Any]:
        tx.delete(sui)
        return [_exchange(tx, exchange, sui.value.balance)]

    @fn(
        X,
        "wal_exchange",
        "exchange_for_wal",
        [mut(dep.exchange_type), mut(sui_coin), pure("u64")],
    )
    def exchange_for_wal(tx: Tx, exchange: LiveObject, sui: LiveObject, amount: int) -> list[Any]:
        if sui.value.balance < amount:
            raise abort(
                tx, dep, E_EXCHANGE_INSUFFICIENT_INPUT, "exchange_for_wal", "SUI coin too small"
            )
        sui.value = mt.Coin(sui.id, sui.value.balance - amount)
        return [_exchange(tx, exchange, amount)]
