"""Connecting to the chosen network: its profile and the wallet's active key.

Apart from walrusfs/settings.py because the devnet's launcher comes with it: commands and
modules that only read settings do not import the devnet.
"""

from __future__ import annotations

from chain.errors import WalletNotFound
from chain.profiles import NetworkProfile
from chain.wallet import Keypair, Wallet
from walrusfs.config import Paths
from walrusfs.devnet.launcher import Devnet
from walrusfs.settings import WALLET_ENV, Settings


def connect(settings: Settings, paths: Paths, *, start: bool) -> tuple[NetworkProfile, Keypair]:
    """The chosen network's profile and the wallet's active key.

    Args:
        settings: the settings in effect (`settings.current()`).
        paths: where the devnet's data and the config file are.
        start: on the devnet, bring it up first (genesis on first use); elsewhere nothing is
            started.

    Raises:
        UsageError: an unknown network.
        WalletNotFound: no wallet at the configured path (the message says how to name one).
        MalformedKeystore: the wallet cannot be read.
        ServiceError: on the devnet, there is none (without `start`) or it cannot start.
    """
    if settings.is_devnet:
        devnet = Devnet(paths.data_dir)
        if start:
            devnet.up()
        spec = devnet.spec()
        if settings.chosen_wallet() is None:
            return spec.profile(), devnet.wallet().active
        profile = spec.profile()
        path = settings.wallet_path()
    else:
        profile = settings.profile()
        path = settings.wallet_path()
    try:
        wallet = Wallet.load(path)
    except WalletNotFound as exc:
        raise WalletNotFound(
            f'{exc}; or name your wallet with `wallet = "/path/to/client.yaml"` in '
            f"{settings.file or paths.config_file} or ${WALLET_ENV} (network {settings.network})"
        ) from None
    return profile, wallet.active
