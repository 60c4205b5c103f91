"""User-facing errors and the stable exit codes of the `walrusfs` command.

An `UserError` is a failure the user can act on: the CLI prints its message on one line, with
no traceback, and exits with its code. Anything else escaping a command is a bug: exit code 1,
traceback logged. The codes are part of the interface (scripts and systemd units match on
them) and are listed in docs/exit-codes.md; never renumber one.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    #: An unexpected internal error (a bug); the traceback is in the log.
    INTERNAL = 1
    #: Bad command line or configuration (unknown option, bad config key or value).
    USAGE = 2
    #: An input file or directory cannot be read (missing, permission denied, not a file).
    INPUT = 3
    #: The input violates the Walrus protocol (blob too large, malformed blob ID).
    INVALID_DATA = 4
    #: A service is unreachable or failed: the chain endpoint, storage nodes, the devnet.
    SERVICE = 5
    #: Not enough WAL (storage fees) or SUI (gas) in the wallet; nothing was uploaded.
    FUNDS = 6
    #: The blob or object does not exist (never stored, deleted, or expired).
    NOT_FOUND = 7
    #: The chain executed and rejected the transaction (a Move abort, a stale object).
    CHAIN_REJECTED = 8
    #: The wallet is missing or unreadable.
    WALLET = 9


class UserError(Exception):
    """An error with a message for the user and a documented exit code."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(UserError):
    exit_code = ExitCode.USAGE


class InputError(UserError):
    exit_code = ExitCode.INPUT


class InvalidDataError(UserError):
    exit_code = ExitCode.INVALID_DATA


class ServiceError(UserError):
    exit_code = ExitCode.SERVICE


class FundsError(UserError):
    exit_code = ExitCode.FUNDS


class NotFoundError(UserError):
    exit_code = ExitCode.NOT_FOUND


class ChainRejectedError(UserError):
    exit_code = ExitCode.CHAIN_REJECTED


class WalletUserError(UserError):
    exit_code = ExitCode.WALLET
