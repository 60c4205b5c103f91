"""The dispatch table the interpreter calls Move functions through, and what every Move module's
twin shares: the abort of a `package::module::function` (framework modules abort in `0x2`:
`balance`, `vec_map`, `dynamic_field`, `object_table`), and paying out of or into a `Coin`
(`sui::balance::split` aborts with ENotEnough = 2 when a coin is short)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from chain import move_types as mt
from chain.aborts import E_BALANCE_NOT_ENOUGH, Abort
from chain.localnet.errors import MoveAbort
from chain.localnet.moves.deployment import Deployment
from chain.localnet.naming import SUI_FRAMEWORK
from chain.localnet.txcontext import LiveObject, MoveFunction, Param, Tx

Impl = TypeVar("Impl", bound=Callable[..., list[Any]])
FunctionKey = tuple[str, str, str]  # (package, module, function)


@dataclass
class Registry:
    """The table under construction: each Move module's twin registers its functions here."""

    dep: Deployment
    table: dict[FunctionKey, MoveFunction] = field(default_factory=dict)

    def decorator(self, returns: dict[str, list[str]]) -> Callable[..., Callable[[Impl], Impl]]:
        """`@fn(package, module, name, params, type_params=0)`, the return types of a module's
        functions looked up by name in `returns` (none if absent)."""

        def fn(
            pkg: str, module: str, name: str, params: list[Param], type_params: int = 0
        ) -> Callable[[Impl], Impl]:
            def register(impl: Impl) -> Impl:
                self.table[(pkg, module, name)] = MoveFunction(
                    params, impl, type_params, returns.get(name, [])
                )
                return impl

            return register

        return fn


def mut(t: str) -> Param:
    return Param("mut", t)


def ref(t: str) -> Param:
    return Param("ref", t)


def val(t: str) -> Param:
    return Param("val", t)


def pure(t: str) -> Param:
    return Param("pure", t)


def abort(tx: Tx, dep: Deployment, error: Abort, function: str, what: str) -> MoveAbort:
    """The `MoveAbort` for `error` in `function` of its module's package (the caller raises
    it).

    Args:
        function: the Move function the contract aborts in (as named in the abort location).
        what: the reason, for the error's description only.
    """
    module, code = error.module, error.code
    package = {
        "balance": SUI_FRAMEWORK,
        "vec_map": SUI_FRAMEWORK,
        "dynamic_field": SUI_FRAMEWORK,
        "object_table": SUI_FRAMEWORK,
        "wal_exchange": dep.exchange_pkg,
    }.get(module, dep.walrus_pkg)
    return MoveAbort(package, module, function, code, what)


def withdraw(tx: Tx, dep: Deployment, coin: LiveObject, amount: int, fn: str) -> None:
    """Take `amount` out of `coin` (a payment to the contract).

    Args:
        fn: the paying function, named in the abort's description.

    Raises:
        MoveAbort: `balance::ENotEnough`, the coin holds less than `amount`.
    """
    if coin.value.balance < amount:
        raise abort(
            tx,
            dep,
            E_BALANCE_NOT_ENOUGH,
            "split",
            f"{fn}: the coin holds {coin.value.balance}, {amount} is due",
        )
    coin.value = mt.Coin(coin.id, coin.value.balance - amount)
    coin.touched = True


def new_coin(tx: Tx, type_: str, amount: int) -> LiveObject:
    obj = tx.create(type_, None)
    obj.value = mt.Coin(obj.id, amount)
    return obj
