"""The two ways a transaction fails on the stand-in, as on Sui.

A transaction is *rejected* (`TxRejected`) when it cannot run at all: bad BCS, a bad
signature, a stale or foreign input, too little gas. Nothing changes and no gas is charged; the
gRPC services answer INVALID_ARGUMENT, as a full node does. A transaction that runs and then
*fails* (`ExecFailure`, of which a Move abort is one kind) is committed with its changes
discarded and its gas charged, and its effects carry the error as
`sui.rpc.v2.ExecutionError`, whose kind numbers are below. The executor, the command
interpreter and the Move twins all raise these, so they share no module but this one.
"""

from __future__ import annotations

from dataclasses import dataclass

# sui.rpc.v2.ExecutionError.ExecutionErrorKind numbers
KIND_INSUFFICIENT_GAS = 1
KIND_INSUFFICIENT_COIN_BALANCE = 8
KIND_MOVE_ABORT = 13
KIND_FUNCTION_NOT_FOUND = 16
KIND_ARITY_MISMATCH = 17
KIND_COMMAND_ARGUMENT_ERROR = 20
KIND_TYPE_ARGUMENT_ERROR = 21
KIND_UNUSED_VALUE_WITHOUT_DROP = 22
KIND_INVALID_TRANSFER_OBJECT = 24


class TxRejected(Exception):
    """The transaction is invalid and was not executed; the ledger is unchanged."""


@dataclass
class ExecFailure(Exception):
    """Execution failed: changes are discarded, gas is charged (`ExecutionError` kind)."""

    kind: int
    description: str
    command: int | None = None
    abort_code: int | None = None
    module: str | None = None
    function: str | None = None
    package: str | None = None


class MoveAbort(ExecFailure):
    """A Move `assert!`/`abort` in `package::module::function` with `code`."""

    def __init__(self, package: str, module: str, function: str, code: int, what: str) -> None:
        super().__init__(
            KIND_MOVE_ABORT,
            f"MoveAbort in {module}::{function} code {code}: {what}",
            abort_code=code,
            module=module,
            function=function,
            package=package,
        )


def bcs_error(exc: Exception) -> str:
    """What is wrong with BCS input that canoser refused. canoser raises bare Exceptions, and
    on a malformed ULEB128 length a NameError (its error path calls an undefined `bail`):
    that one is named for what it is, not passed on as a Python error."""
    if isinstance(exc, NameError):
        return "a malformed ULEB128 length"
    return str(exc) or type(exc).__name__
