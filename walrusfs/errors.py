"""User-facing errors and the stable exit codes of the `walrusfs` command.

An `UserError` is a failure the user can act on: the CLI prints its message on one line, with
no traceback, and exits with its code. Anything else escaping a command is a bug: exit code 1,
traceback logged. The codes are part of the interface (scripts and systemd units match on
them) and are listed in docs/exit-codes.md; never renumber one.
"""

from __future__ import annotations

from enum import IntEnum

from walrusfs.fs import errors as fs_errors


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
    #: fsck: errors were found and repaired; no data was lost.
    FSCK_REPAIRED = 10
    #: fsck: data was lost (the files are named).
    FSCK_DATA_LOST = 11


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


#: The exit code of each way a volume cannot be used (walrusfs/fs/errors.py): the one place
#: that gives the filesystem's errors their documented codes (docs/exit-codes.md).
VOLUME_EXIT_CODES: dict[type[fs_errors.VolumeError], ExitCode] = {
    fs_errors.BadMountpoint: ExitCode.USAGE,
    fs_errors.VolumeInUse: ExitCode.USAGE,
    fs_errors.VolumeClaimed: ExitCode.USAGE,
    fs_errors.SchemaMismatch: ExitCode.USAGE,
    fs_errors.WrongEncryption: ExitCode.USAGE,
    fs_errors.ChunkTooLarge: ExitCode.USAGE,
    fs_errors.MemoryTooSmall: ExitCode.USAGE,
    fs_errors.BadKeyFile: ExitCode.USAGE,
    fs_errors.KeyMismatch: ExitCode.WALLET,
    fs_errors.NothingToRebuild: ExitCode.NOT_FOUND,
    fs_errors.ServiceFailed: ExitCode.SERVICE,
    fs_errors.UploadFailed: ExitCode.SERVICE,
}


def volume_user_error(exc: fs_errors.VolumeError) -> UserError:
    """The user error a volume error is, with its documented exit code (a class missing from
    VOLUME_EXIT_CODES is a bug: INTERNAL)."""
    code = next(
        (VOLUME_EXIT_CODES[cls] for cls in type(exc).__mro__ if cls in VOLUME_EXIT_CODES),
        ExitCode.INTERNAL,
    )
    return UserError(str(exc), code)
