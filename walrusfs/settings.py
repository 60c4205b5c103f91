"""The settings in effect: config.toml, then the environment, then the command line.

The file is read and checked by walrusfs/configfile.py (reference: docs/configuration.md);
without one walrusfs runs on the embedded devnet with the defaults of walrusfs/fs/defaults.py.
Connecting to the chosen network is walrusfs/network.py.

The network is chosen by `--network`, else `$WALRUSFS_NETWORK`, else `network` in the file,
else devnet. The wallet is `$WALRUSFS_WALLET`, else `wallet` in the file; without either, the
devnet uses its own funded wallet and other networks the Sui CLI's default wallet. (Another
account on the devnet is funded from the devnet's wallet with `walrusfs devnet fund`.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chain.profiles import PROFILES, NetworkProfile
from walrusfs.config import Paths
from walrusfs.configfile import DEVNET, parse
from walrusfs.errors import UsageError
from walrusfs.fs.defaults import DEFAULTS

NETWORK_ENV = "WALRUSFS_NETWORK"
WALLET_ENV = "WALRUSFS_WALLET"
#: Where the Sui CLI keeps its wallet (`sui client`), used when no wallet is configured.
SUI_CLI_WALLET = Path("~/.sui/sui_config/client.yaml")


@dataclass(frozen=True)
class MountDefaults:
    """The `[mount]` table: what `walrusfs mount` uses for an option not on its command line."""

    mountpoint: str | None = None
    volume: str = DEFAULTS.volume
    epochs: int = DEFAULTS.epochs
    upload_delay: float = DEFAULTS.upload_delay
    cache_size: int = DEFAULTS.cache_size
    staging_limit: int = DEFAULTS.staging_limit
    memory: int = DEFAULTS.memory
    checkpoint_interval: float = DEFAULTS.checkpoint_interval
    read_timeout: float = DEFAULTS.read_timeout
    compact_below: float = DEFAULTS.compact_below
    allow_other: bool = DEFAULTS.allow_other
    storage_pool: bool = DEFAULTS.storage_pool
    upload_relay: str = DEFAULTS.upload_relay
    relay_max_tip: int = DEFAULTS.relay_max_tip


@dataclass(frozen=True)
class Settings:
    """The network chosen and where that choice came from, the wallet, the `[mount]` defaults
    and every known network's profile (built in, or from `[networks.*]`)."""

    network: str = DEVNET
    #: where the network name came from: "--network", "$WALRUSFS_NETWORK", the file, "default"
    network_source: str = "default"
    wallet: Path | None = None
    mount: MountDefaults = field(default_factory=MountDefaults)
    networks: Mapping[str, NetworkProfile] = field(default_factory=dict)
    file: Path | None = None  # the config file read, if there was one

    @property
    def is_devnet(self) -> bool:
        return self.network == DEVNET

    def profile(self) -> NetworkProfile:
        """The chosen network's endpoints and objects (not for the devnet, whose profile
        comes from its own genesis).

        Raises:
            UsageError: the network is neither built in nor in the file.
        """
        try:
            return self.networks[self.network]
        except KeyError:
            known = ", ".join([DEVNET, *sorted(self.networks)])
            raise UsageError(
                f"unknown network {self.network!r} (from {self.network_source}): use one of "
                f"{known}, or define [networks.{self.network}] in {self._where()}"
            ) from None

    def chosen_wallet(self) -> Path | None:
        """The wallet named by `$WALRUSFS_WALLET` or the file (the environment wins, as for the
        network); None when neither names one."""
        env = os.environ.get(WALLET_ENV)
        if env:
            return Path(env).expanduser()
        return self.wallet

    def wallet_path(self) -> Path:
        """The wallet of a network other than the devnet: the chosen one, else the Sui CLI's."""
        chosen = self.chosen_wallet()
        return chosen if chosen is not None else SUI_CLI_WALLET.expanduser()

    def _where(self) -> str:
        return str(self.file) if self.file else "the config file (`walrusfs paths`)"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "file": str(self.file) if self.file else None,
            "network": self.network,
            "network_source": self.network_source,
        }
        if self.is_devnet:
            chosen = self.chosen_wallet()
            out["wallet"] = str(chosen) if chosen is not None else "the devnet's own wallet"
        else:
            out["wallet"] = str(self.wallet_path())
            out.update({k: v for k, v in asdict(self.profile()).items() if k != "name"})
        out["mount"] = asdict(self.mount)
        return out


def load(paths: Paths | None = None, network: str | None = None) -> Settings:
    """The settings in effect: the file (if any), then the environment, then `network` (the
    command line's `--network`).

    Raises:
        UsageError: the file cannot be read or fails a check (walrusfs/configfile.py), or
            names no known network.
    """
    paths = paths or Paths.from_env()
    file = paths.config_file
    top: dict[str, Any] = {}
    mount: dict[str, Any] = {}
    networks: dict[str, NetworkProfile] = {}
    found: Path | None = None
    if file.exists():
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the configuration {file}: {exc}") from None
        top, mount, networks = parse(file, text)
        found = file
    if network:
        chosen, source = network, "--network"
    elif os.environ.get(NETWORK_ENV):
        chosen, source = os.environ[NETWORK_ENV], f"${NETWORK_ENV}"
    elif "network" in top:
        chosen, source = top["network"], str(file)
    else:
        chosen, source = DEVNET, "default"
    wallet = Path(top["wallet"]).expanduser() if "wallet" in top else None
    settings = Settings(
        network=chosen,
        network_source=source,
        wallet=wallet,
        mount=MountDefaults(**mount),
        networks={**PROFILES, **networks},
        file=found,
    )
    if not settings.is_devnet:
        settings.profile()  # an unknown name fails now, with the list of known ones
    return settings


class _Process:
    """This process's `--network` and settings (read once)."""

    network: str | None = None
    settings: Settings | None = None


def use_network(name: str | None) -> None:
    """The command line's `--network`: for this process and the processes it starts (the
    mount daemon, its upload worker)."""
    _Process.network, _Process.settings = name, None
    if name:
        os.environ[NETWORK_ENV] = name


def current() -> Settings:
    """The settings of this process, read once.

    Raises:
        UsageError: as `load`, on the first call.
    """
    if _Process.settings is None:
        _Process.settings = load(network=_Process.network)
    return _Process.settings
