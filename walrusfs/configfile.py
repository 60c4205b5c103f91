"""config.toml: its keys, and every value in it checked.

`config.toml` (in the config directory, `walrusfs paths`) is optional: without it walrusfs runs
on the embedded devnet with the defaults of walrusfs/fs/defaults.py. Every key is checked when
a command starts; an unknown key or a wrong type is one line naming the file, the key and what
to write instead (exit 2), never a silently ignored setting. The reference is
docs/configuration.md; what the values mean once read is walrusfs/settings.py.

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
    storage_pool = true                      # new volumes: blobs in one Walrus storage pool
    upload_relay = ""                        # e.g. "https://upload-relay.testnet.walrus.space"
    relay_max_tip = 10000000                 # MIST per blob paid to the relay at most

    [networks.testnet]                       # override or define a network's objects
    grpc_url = "fullnode.testnet.sui.io:443"
    tls = true
    system_object = "0x..."
    staking_object = "0x..."
    wal_type = "0x...::wal::WAL"
    exchange_objects = ["0x..."]
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from chain.profiles import PROFILES, NetworkProfile
from walrusfs import validate
from walrusfs.errors import UsageError

#: The embedded devnet's network name: the default, and never a `[networks.*]` table.
DEVNET = "devnet"

_TOP: dict[str, Callable[[Any], Any]] = {"network": validate.nonempty, "wallet": validate.path}
_MOUNT: dict[str, Callable[[Any], Any]] = {
    "mountpoint": validate.path,
    "volume": validate.volume_name,
    "epochs": validate.epochs,
    "upload_delay": validate.seconds,
    "cache_size": validate.bounded_size("cache_size"),
    "staging_limit": validate.bounded_size("staging_limit"),
    "memory": validate.bounded_size("memory"),
    "checkpoint_interval": validate.checkpoint_interval,
    "read_timeout": validate.read_timeout,
    "compact_below": validate.fraction,
    "allow_other": validate.boolean,
    "storage_pool": validate.boolean,
    "upload_relay": validate.relay_url,
    "relay_max_tip": validate.mist,
}
_NETWORK: dict[str, Callable[[Any], Any]] = {
    "grpc_url": validate.grpc_url,
    "tls": validate.boolean,
    "system_object": validate.object_id,
    "staking_object": validate.object_id,
    "wal_type": validate.nonempty,
    "exchange_objects": validate.object_ids,
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
    """The file's top-level keys, `[mount]` and `[networks.*]`, every value checked.

    Args:
        path: the file, for the messages.
        text: its contents.

    Returns:
        The top-level keys, the `[mount]` keys (each typed as MountDefaults has it), and each
        `[networks.NAME]` as a profile: a known network's with the keys given replaced, or a
        new network's, which must give every object.

    Raises:
        UsageError: not TOML, an unknown key, a value of the wrong type or range, a new
            network missing a key, or `[networks.devnet]`.
    """
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
