"""Errors of the chain layer that a user can meet and act on.

Each says what is wrong and what to do; the CLI maps them to documented exit codes.
"""

from __future__ import annotations


class ChainError(Exception):
    """Base class of the chain layer's errors."""


class WalletError(ChainError):
    """The wallet (Sui CLI `client.yaml` + `sui.keystore`) cannot be used."""


class WalletNotFound(WalletError, FileNotFoundError):
    """No wallet where one was expected."""


class WalletExists(WalletError, FileExistsError):
    """Creating a wallet where one already is; the existing one is left untouched."""


class MalformedKeystore(WalletError):
    """A keystore or client config exists but cannot be parsed; nothing was changed."""
