"""Twin of the five `0x2::coin` functions the stand-in executes (generic over the coin type)."""

from __future__ import annotations

from typing import Any

from chain import move_types as mt
from chain.aborts import E_BALANCE_NON_ZERO
from chain.localnet.moves.registry import Registry, abort, mut, new_coin, pure, ref, val, withdraw
from chain.localnet.naming import SUI_FRAMEWORK, coin_type
from chain.localnet.txcontext import LiveObject, Tx


def register(r: Registry) -> None:
    dep, S = r.dep, SUI_FRAMEWORK
    fn = r.decorator({"split": [coin_type("T")], "zero": [coin_type("T")], "value": ["u64"]})

    generic_coin = coin_type("T")

    @fn(S, "coin", "split", [mut(generic_coin), pure("u64")], type_params=1)
    def coin_split(tx: Tx, type_arg: str, coin: LiveObject, amount: int) -> list[Any]:
        withdraw(tx, dep, coin, amount, "coin::split")
        return [new_coin(tx, coin.type, amount)]

    @fn(S, "coin", "join", [mut(generic_coin), val(generic_coin)], type_params=1)
    def coin_join(tx: Tx, type_arg: str, coin: LiveObject, other: LiveObject) -> list[Any]:
        coin.value = mt.Coin(coin.id, coin.value.balance + other.value.balance)
        tx.delete(other)
        return []

    @fn(S, "coin", "value", [ref(generic_coin)], type_params=1)
    def coin_value(tx: Tx, type_arg: str, coin: LiveObject) -> list[Any]:
        return [coin.value.balance]

    @fn(S, "coin", "zero", [], type_params=1)
    def coin_zero(tx: Tx, type_arg: str) -> list[Any]:
        return [new_coin(tx, coin_type(type_arg), 0)]

    @fn(S, "coin", "destroy_zero", [val(generic_coin)], type_params=1)
    def coin_destroy_zero(tx: Tx, type_arg: str, coin: LiveObject) -> list[Any]:
        if coin.value.balance != 0:
            raise abort(tx, dep, E_BALANCE_NON_ZERO, "destroy_zero", "the coin is not empty")
        tx.delete(coin)
        return []
