"""What the command modules share: running an async command so that chain and store failures
become the documented exit codes (docs/exit-codes.md), the chosen network's chain, a progress
bar, the `--epochs` argument and the upload worker's command line.

Kept apart from any one command so that `blob`, `mount`, `fsck`, `cost` and `wallet` depend on
these, not on each other.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal, InvalidOperation
from typing import TypeVar

import trio

from chain import errors as chain_errors
from chain.client import WalrusChain
from walrusfs import network, settings, validate
from walrusfs.config import Paths
from walrusfs.errors import (
    ChainRejectedError,
    FundsError,
    NotFoundError,
    ServiceError,
    UsageError,
    WalletUserError,
    volume_user_error,
)
from walrusfs.fs.errors import VolumeError
from walrusfs.store.errors import (
    BlobNotFound,
    BlobUnavailable,
    NodeError,
    NotEnoughConfirmations,
    PooledLifetime,
)

#: The upload worker process of a mount and of fsck; it finds the network as this process did
#: (the config file and $WALRUSFS_NETWORK, which `--network` sets for it).
T = TypeVar("T")
#: MIST per SUI and FROST per WAL: both coins have 9 decimals
COIN_UNIT = 10**9

UPLOAD_WORKER = [sys.executable, "-m", "walrusfs.fs.upload_worker"]


def checked_arg(check: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a checker raising ValueError with what is expected (argparse
    then says `argument --x: <that>` and exits 2)."""

    def convert(text: str) -> T:
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(check, "__name__", "value").lstrip("_")
    return convert


def coin_amount(what: str, *, zero: bool = False) -> Callable[[str], int]:
    """An argparse type: an amount of SUI or WAL in whole coins with up to 9 decimals ("2.5"),
    as its smallest unit (MIST, FROST); 0 only if `zero`, and within a u64 (a coin's value)."""

    def convert(text: str) -> int:
        try:
            value = int(Decimal(text) * COIN_UNIT)
        except (InvalidOperation, ValueError, OverflowError):  # not a number, NaN, Infinity
            value = -1
        if not (0 if zero else 1) <= value < 1 << 64:
            raise argparse.ArgumentTypeError(f"{text!r} is not an amount of {what}")
        return value

    return convert


def epochs_arg(text: str) -> int:
    """argparse type of `--epochs`: 1..validate.MAX_EPOCHS (the network may allow fewer: the
    commands check its own `max_epochs_ahead` before paying)."""
    try:
        return validate.check_epochs(int(text))
    except ValueError as exc:
        message = str(exc) if text.strip().lstrip("+-").isdigit() else f"{text!r}: not a number"
        raise argparse.ArgumentTypeError(message) from None


def _message(exc: Exception) -> str:
    """The text without OSError's "[Errno N]" prefix."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Map chain/store failures to the CLI's documented exit codes.

    Raises:
        UserError: a subclass carrying the exit code of the chain, store or volume failure
            raised inside the block (other exceptions pass through unchanged).
    """
    try:
        yield
    except PooledLifetime as exc:
        raise UsageError(str(exc)) from None
    except chain_errors.InsufficientFunds as exc:
        raise FundsError(str(exc)) from None
    except chain_errors.WalletError as exc:
        raise WalletUserError(str(exc)) from None
    except chain_errors.ChainUnavailable as exc:
        hint = (
            "is the devnet up? (`walrusfs devnet status`)"
            if settings.current().is_devnet
            else "check the network connection and `grpc_url` (`walrusfs config`)"
        )
        raise ServiceError(f"{exc}; {hint}") from None
    except (chain_errors.TransactionFailed, chain_errors.TransactionRejected) as exc:
        raise ChainRejectedError(str(exc)) from None
    except (chain_errors.ObjectNotFound, BlobNotFound) as exc:
        raise NotFoundError(_message(exc)) from None
    except (NotEnoughConfirmations, BlobUnavailable, NodeError) as exc:
        raise ServiceError(
            f"{_message(exc)}; check the storage nodes (`walrusfs devnet status`) and retry"
        ) from None
    except chain_errors.ChainError as exc:
        raise ServiceError(str(exc)) from None
    except VolumeError as exc:
        raise volume_user_error(exc) from None


def run_async(fn: Callable[[], Awaitable[int]]) -> int:
    """Run a command's async body under trio and return its exit code; chain and store
    failures become `UserError`s (`user_errors`)."""
    with user_errors():
        return trio.run(fn)


@contextlib.asynccontextmanager
async def open_chain(*, start: bool = False) -> AsyncIterator[WalrusChain]:
    """The chosen network's chain with the wallet's active key (`start`: on the devnet, bring
    it up first, as commands that need it anyway do).

    Raises:
        UsageError, ServiceError, chain.errors.WalletError: as `network.connect`.
    """
    paths = Paths.from_env()
    chosen = settings.current()
    profile, key = await trio.to_thread.run_sync(
        lambda: network.connect(chosen, paths, start=start)
    )
    chain = WalrusChain(profile, key)
    try:
        yield chain
    finally:
        await chain.close()


class ProgressBar:
    """A one-line progress bar on stderr, only when it is a terminal and the transfer is long."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty()
        self.last = 0.0
        self.started = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.2 and done < total):
            return
        if now - self.started < 1.0 and done < total:
            return
        self.last = now
        width = 30
        filled = width * done // max(total, 1)
        rate = done / max(now - self.started, 1e-6) / 1e6
        print(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
            f"{100 * done // max(total, 1):3}% {rate:6.1f} MB/s",
            end="" if done < total else "\n",
            file=sys.stderr,
            flush=True,
        )
