"""The configuration file and the choice of network.

`config.toml` (in the config directory, `walrusfs paths`) is optional: without it walrusfs runs
on the embedded devnet with the defaults below. Every key is checked when a command starts;
an unknown key or a wrong type is one line naming the file, the key and what to write instead
(exit 2), never a silently ignored setting. The reference is docs/configuration.md.

    network = "testnet"                      # devnet (default), testnet, mainnet, or a name
                                             # defined under [networks.NAME]
    wallet = "~/.sui/sui_config/client.yaml" # Sui CLI wallet (testnet/mainnet/custom networks)

    [mount]                                  # defaults of `walrusfs mount` (its options win)
    mountpoint = "~/walrus"
    volume = "default"
    epochs = 10
    upload_delay = 3.0                       # seconds
    cache_size = "2G"
    staging_limit = "16G"
    memory = "2G"
    checkpoint_interval = 3600.0             # seconds
    read_timeout = 20.0                      # seconds a read may wait for the storage nodes
    compact_below = 0.5
    allow_other = false

    [networks.testnet]                       # override or define a network's objects
    grpc_url = "fullnode.testnet.sui.io:443"
    tls = true
    system_object = "0x..."
    staking_object = "0x..."
    wal_type = "0x...::wal::WAL"
    exchange_objects = ["0x..."]

The network is chosen by `--network`, else `$WALRUSFS_NETWORK`, else `network` in the file,
else devnet. The devnet always uses its own funded wallet; other networks use
`$WALRUSFS_WALLET`, else `wallet`, else the Sui CLI's default wallet.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from chain.client import PROFILES, NetworkProfile
from chain.errors import WalletNotFound
from chain.wallet import Keypair, Wallet
from walrusfs.config import Paths
from walrusfs.devnet.launcher import Devnet
from walrusfs.errors import UsageError
from walrusfs.fs.defaults import DEFAULTS

NETWORK_ENV = "WALRUSFS_NETWORK"
WALLET_ENV = "WALRUSFS_WALLET"
DEVNET = "devnet"
#: Where the Sui CLI keeps its wallet (`sui client`), used when no wallet is configured.
SUI_CLI_WALLET = Path("~/.sui/sui_config/client.yaml")

GiB = 1 << 30


#: The most epochs ahead a blob's storage can be bought or extended to: Walrus's
#: `max_epochs_ahead` (System object) on mainnet and testnet, and the devnet's genesis value
#: (chain/localnet/node.py, GenesisConfig). More would make every upload fail on chain; the
#: mount also checks the connected network's own value.
MAX_EPOCHS = 53
#: Sizes beyond this are typos (and would overflow SQLite's 64-bit integers further down).
MAX_SIZE = 1 << 50
#: The smallest value each size setting may take, and why.
MIN_SIZES = {
    # writes wait for room in staging: below a few MiB every write of a file stalls, then
    # fails with ENOSPC
    "staging_limit": 4 << 20,
    # a few slivers and their metadata
    "cache_size": 16 << 20,
    # the mount's fixed part (128 MiB) plus room for one encode
    "memory": 256 << 20,
}
#: The shortest checkpoint period: each checkpoint is a blob paid in WAL.
MIN_CHECKPOINT_INTERVAL = 60.0
#: A volume name is a directory name, part of the FUSE `fsname=` option (where a comma would
#: split it) and of the checkpoints' on-chain attributes: letters, digits, `.`, `_`, `-`.
VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def parse_size(text: str | int) -> int:
    """`512M`, `2G`, `1.5T`, `4096` (bytes)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    elif isinstance(text, str):
        units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
        t = text.strip().lower().removesuffix("b").removesuffix("i")
        num, unit = (t[:-1], t[-1]) if t and t[-1] in units else (t, "")
        try:
            value = int(float(num) * units[unit])  # nan and inf raise here
        except (ValueError, OverflowError):
            raise ValueError(f"invalid size {text!r} (e.g. 512M, 2G)") from None
    else:
        raise ValueError(f"invalid size {text!r} (e.g. 512M, 2G)")
    if value < 0:
        raise ValueError(f"invalid size {text!r}: must not be negative")
    if value > MAX_SIZE:
        raise ValueError(f"invalid size {text!r}: more than 1P")
    return value


def _mib(n: int) -> str:
    return f"{n >> 20}M"


def check_size(name: str, value: int) -> int:
    """`value` if it is a usable `name` (a key of MIN_SIZES), else ValueError saying why."""
    least = MIN_SIZES[name]
    if value < least:
        raise ValueError(f"at least {_mib(least)} (got {value} bytes)")
    return value


def check_epochs(value: int, what: str = "epochs") -> int:
    if not 1 <= value <= MAX_EPOCHS:
        raise ValueError(
            f"{what} between 1 and {MAX_EPOCHS} (Walrus sells storage at most {MAX_EPOCHS} "
            f"epochs ahead), got {value}"
        )
    return value


def check_seconds(value: float, least: float = 0.0) -> float:
    """A finite number of seconds above `least` (NaN would never compare as due, inf never
    come)."""
    if not math.isfinite(value) or value <= least:
        raise ValueError(
            f"a finite number of seconds {'> 0' if not least else f'>= {least:g}'}, got {value}"
        )
    return value


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


@dataclass(frozen=True)
class Settings:
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
        comes from its own genesis)."""
        try:
            return self.networks[self.network]
        except KeyError:
            known = ", ".join([DEVNET, *sorted(self.networks)])
            raise UsageError(
                f"unknown network {self.network!r} (from {self.network_source}): use one of "
                f"{known}, or define [networks.{self.network}] in {self._where()}"
            ) from None

    def wallet_path(self) -> Path:
        """As for the network, the environment wins over the file."""
        env = os.environ.get(WALLET_ENV)
        if env:
            return Path(env).expanduser()
        return self.wallet if self.wallet is not None else SUI_CLI_WALLET.expanduser()

    def _where(self) -> str:
        return str(self.file) if self.file else "the config file (`walrusfs paths`)"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "file": str(self.file) if self.file else None,
            "network": self.network,
            "network_source": self.network_source,
        }
        if self.is_devnet:
            out["wallet"] = "the devnet's own wallet"
        else:
            out["wallet"] = str(self.wallet_path())
            out.update({k: v for k, v in asdict(self.profile()).items() if k != "name"})
        out["mount"] = asdict(self.mount)
        return out


# -- parsing ------------------------------------------------------------------------------------


def _epochs(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"a whole number of epochs between 1 and {MAX_EPOCHS}")
    return check_epochs(v)


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError("a number of seconds")
    return float(v)


def _positive_float(v: Any) -> float:
    return check_seconds(_number(v))


def _checkpoint_interval(v: Any) -> float:
    seconds = _number(v)
    if math.isfinite(seconds) and 0 < seconds < MIN_CHECKPOINT_INTERVAL:
        raise ValueError(
            f"at least {MIN_CHECKPOINT_INTERVAL:g} seconds (each checkpoint is a blob paid in "
            f"WAL), got {seconds:g}"
        )
    return check_seconds(seconds)


#: a read that needs the storage nodes may wait this long at most (walrusfs/store/reads.py)
READ_TIMEOUT_RANGE = (1.0, 600.0)


def read_timeout(v: Any) -> float:
    seconds = _number(v)
    low, high = READ_TIMEOUT_RANGE
    if not (math.isfinite(seconds) and low <= seconds <= high):
        raise ValueError(f"between {low:g} and {high:g} seconds, got {seconds:g}")
    return seconds


def _fraction(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
        raise ValueError("a fraction between 0 and 1")
    return float(v)


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("true or false")
    return v


def _string(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError("a non-empty string")
    return v


def _size(v: Any) -> int:
    try:
        return parse_size(v)
    except ValueError:
        raise ValueError('a size such as "512M" or "2G" (at most 1P)') from None


def _bounded_size(name: str) -> Callable[[Any], int]:
    def conv(v: Any) -> int:
        return check_size(name, _size(v))

    return conv


def _path(v: Any) -> str:
    s = _string(v)
    if "\0" in s:
        raise ValueError("a path (without NUL characters)")
    return s


def volume_name(v: Any) -> str:
    """A volume's name: a directory under `<data>/volumes`, the source of its FUSE mount
    (`walrusfs:NAME`) and an attribute of its checkpoints, so a plain one."""
    name = _string(v)
    if not VOLUME_NAME.fullmatch(name):
        raise ValueError(
            "a volume name of at most 64 letters, digits, '.', '_' and '-' that starts with a "
            "letter or digit"
        )
    return name


def _object_id(v: Any) -> str:
    s = _string(v)
    if not s.startswith("0x") or len(s) > 66:
        raise ValueError('an object ID such as "0x6c25..."')
    try:
        int(s, 16)
    except ValueError:
        raise ValueError('an object ID such as "0x6c25..."') from None
    return s


def _object_ids(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise ValueError('a list of object IDs, e.g. ["0x..."]')
    return tuple(_object_id(x) for x in v)


def _grpc_url(v: Any) -> str:
    s = _string(v)
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit() or "/" in s:
        raise ValueError(
            'host:port of a Sui full node\'s gRPC API, e.g. "fullnode.testnet.sui.io:443"'
        )
    return s


_TOP: dict[str, Callable[[Any], Any]] = {"network": _string, "wallet": _path}
_MOUNT: dict[str, Callable[[Any], Any]] = {
    "mountpoint": _path,
    "volume": volume_name,
    "epochs": _epochs,
    "upload_delay": _positive_float,
    "cache_size": _bounded_size("cache_size"),
    "staging_limit": _bounded_size("staging_limit"),
    "memory": _bounded_size("memory"),
    "checkpoint_interval": _checkpoint_interval,
    "read_timeout": read_timeout,
    "compact_below": _fraction,
    "allow_other": _bool,
}
_NETWORK: dict[str, Callable[[Any], Any]] = {
    "grpc_url": _grpc_url,
    "tls": _bool,
    "system_object": _object_id,
    "staking_object": _object_id,
    "wal_type": _string,
    "exchange_objects": _object_ids,
}
_TABLES = ("mount", "networks")


def _unknown(path: Path, key: str, known: list[str]) -> UsageError:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], known, n=1)
    hint = f"did you mean `{close[0]}`?" if close else "known keys: " + ", ".join(known)
    return UsageError(f"{path}: unknown key `{key}`; {hint}")


def _check(path: Path, key: str, value: Any, conv: Callable[[Any], Any]) -> Any:
    try:
        return conv(value)
    except ValueError as exc:
        raise UsageError(f"{path}: `{key} = {value!r}`: expected {exc}") from None


def parse(
    path: Path, text: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, NetworkProfile]]:
    """The file's top-level keys, `[mount]` and `[networks.*]`, every value checked."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    top: dict[str, Any] = {}
    for key, value in doc.items():
        if key in _TABLES:
            if not isinstance(value, dict):
                raise UsageError(f"{path}: `{key}` must be a table ([{key}])")
            continue
        if key not in _TOP:
            raise _unknown(path, key, [*_TOP, *_TABLES])
        top[key] = _check(path, key, value, _TOP[key])
    mount: dict[str, Any] = {}
    for key, value in doc.get("mount", {}).items():
        if key not in _MOUNT:
            raise _unknown(path, f"mount.{key}", list(_MOUNT))
        mount[key] = _check(path, f"mount.{key}", value, _MOUNT[key])
    networks: dict[str, NetworkProfile] = {}
    for name, table in doc.get("networks", {}).items():
        if name == DEVNET:
            raise UsageError(
                f"{path}: [networks.devnet]: the embedded devnet is configured by "
                "`walrusfs devnet up`; give your network another name"
            )
        if not isinstance(table, dict):
            raise UsageError(f"{path}: `networks.{name}` must be a table ([networks.{name}])")
        fields: dict[str, Any] = {}
        for key, value in table.items():
            if key not in _NETWORK:
                raise _unknown(path, f"networks.{name}.{key}", list(_NETWORK))
            fields[key] = _check(path, f"networks.{name}.{key}", value, _NETWORK[key])
        base = PROFILES.get(name)
        if base is not None:
            networks[name] = replace(base, **fields)
            continue
        missing = [k for k in _NETWORK if k not in fields and k not in ("tls", "exchange_objects")]
        if missing:
            raise UsageError(
                f"{path}: [networks.{name}] is a new network and needs "
                + ", ".join(f"`{k}`" for k in missing)
            )
        fields.setdefault("tls", True)
        networks[name] = NetworkProfile(name=name, **fields)
    return top, mount, networks


def load(paths: Paths | None = None, network: str | None = None) -> Settings:
    """The settings in effect: the file (if any), then the environment, then `network` (the
    command line's `--network`)."""
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
    """The settings of this process, read once."""
    if _Process.settings is None:
        _Process.settings = load(network=_Process.network)
    return _Process.settings


def connect(settings: Settings, paths: Paths, *, start: bool) -> tuple[NetworkProfile, Keypair]:
    """The chosen network's profile and the wallet's active key. On the devnet, `start` brings
    it up first (genesis on first use); elsewhere nothing is started."""
    if settings.is_devnet:
        devnet = Devnet(paths.data_dir)
        if start:
            devnet.up()
        spec = devnet.spec()
        return spec.profile(), devnet.wallet().active
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
