"""The Sui wallet walrusfs signs with: the Sui CLI's own files, read or created.

Using the Sui CLI layout means a user's existing wallet (`~/.sui/sui_config`) works as is, and a
wallet walrusfs creates works with `sui client` and `walrus`:

    client.yaml    keystore: {File: <path>}, envs: [{alias, rpc}], active_env, active_address
    sui.keystore   JSON array of base64(flag || 32-byte private key); flag 0x00 = Ed25519
                   (Bech32 `suiprivkey1...` strings are accepted too)
    sui.aliases    JSON array of {alias, public_key_base64 = base64(flag || public key)}

An address is `0x` + hex(BLAKE2b-256(flag || public key)). Private keys never appear in a repr,
a log line or an error message. Files walrusfs writes are 0600 in a 0700 directory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pysui_fastcrypto as _fc
import yaml

from chain.errors import MalformedKeystore, WalletExists, WalletNotFound

log = logging.getLogger(__name__)

ED25519_FLAG = 0
_SCHEMES = {0: "ed25519", 1: "secp256k1", 2: "secp256r1"}
_BECH32_HRP = "suiprivkey"


def sui_address(flag: int, public_key: bytes) -> str:
    return "0x" + hashlib.blake2b(bytes([flag]) + public_key, digest_size=32).hexdigest()


@dataclass(frozen=True)
class Keypair:
    """One Sui keypair. The private key is kept out of `repr` and equality."""

    flag: int
    public_key: bytes
    _private_key: bytes = field(repr=False, compare=False)

    @property
    def scheme(self) -> str:
        return _SCHEMES[self.flag]

    @property
    def address(self) -> str:
        return sui_address(self.flag, self.public_key)

    @classmethod
    def generate(cls) -> Keypair:
        _phrase, public, private = _fc.generate_new_keypair(ED25519_FLAG)
        return cls(ED25519_FLAG, bytes(public), bytes(private))

    @classmethod
    def from_ed25519_seed(cls, seed: bytes) -> Keypair:
        """The Ed25519 keypair whose private key is `seed`.

        Raises:
            ValueError: `seed` is not 32 bytes.
        """
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        return cls.from_keystring(base64.b64encode(bytes([ED25519_FLAG]) + seed).decode())

    @classmethod
    def from_keystring(cls, text: str) -> Keypair:
        """Parse one keystore entry (base64 or Bech32); `ValueError` without echoing the key."""
        text = text.strip()
        if not text.startswith(_BECH32_HRP):
            try:
                raw = base64.b64decode(text, validate=True)
            except binascii.Error:
                raise ValueError(
                    "not a Sui private key (neither base64 nor suiprivkey1...)"
                ) from None
            if len(raw) != 33:
                raise ValueError(
                    f"not a Sui private key: {len(raw)} bytes, expected 33 (flag + key)"
                )
        try:
            if text.startswith(_BECH32_HRP):
                flag, public, private = _fc.decode_bech32(text, _BECH32_HRP)
            else:
                flag, public, private = _fc.keys_from_keystring(text)
        except (ValueError, TypeError) as exc:
            # the engine's message may quote its input: name only the error type
            raise ValueError(f"not a Sui private key ({type(exc).__name__})") from None
        if flag not in _SCHEMES:
            raise ValueError(f"unknown signature scheme flag {flag}")
        return cls(int(flag), bytes(public), bytes(private))

    def keystring(self) -> str:
        return base64.b64encode(bytes([self.flag]) + self._private_key).decode()

    def public_key_base64(self) -> str:
        return base64.b64encode(bytes([self.flag]) + self.public_key).decode()

    def derive_secret(self, context: bytes) -> bytes:
        """A 32-byte secret bound to this key and `context` (HMAC-SHA256 keyed by the private
        key): what only the holder of the wallet can compute, e.g. a volume's encryption key."""
        return hmac.new(self._private_key, context, hashlib.sha256).digest()

    def sign_transaction(self, tx_bytes: bytes) -> bytes:
        """Sui user signature over BLAKE2b(intent [0,0,0] || tx): flag || sig || public key."""
        return bytes(
            _fc.sign_digest(self.flag, self._private_key, base64.b64encode(tx_bytes).decode())
        )


@dataclass
class Wallet:
    """The keys of a Sui CLI wallet and which one is active."""

    config_path: Path
    keystore_path: Path
    keys: list[Keypair]
    active_address: str
    envs: list[dict[str, Any]]
    active_env: str | None

    @property
    def active(self) -> Keypair:
        """The key of `active_address`.

        Raises:
            MalformedKeystore: the keystore has no key for that address.
        """
        for key in self.keys:
            if key.address == self.active_address:
                return key
        raise MalformedKeystore(
            f"{self.config_path}: active_address {self.active_address} has no key in "
            f"{self.keystore_path}; set active_address to one of: "
            + ", ".join(k.address for k in self.keys)
        )

    @classmethod
    def load(cls, config_path: Path) -> Wallet:
        """Read `client.yaml` and the keystore it names.

        Raises:
            WalletNotFound: `config_path` or the keystore it names does not exist.
            MalformedKeystore: either cannot be parsed, the keystore holds no keys, or none
                for `active_address`.
        """
        if not config_path.exists():
            raise WalletNotFound(
                f"no Sui wallet at {config_path}: create one with the Sui CLI "
                "(`sui client new-address ed25519`) or use an existing client.yaml"
            )
        try:
            cfg = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise MalformedKeystore(f"{config_path}: not valid YAML: {exc}") from None
        if not isinstance(cfg, dict):
            raise MalformedKeystore(f"{config_path}: expected a YAML mapping")
        keystore = cfg.get("keystore")
        if not isinstance(keystore, dict) or not isinstance(keystore.get("File"), str):
            raise MalformedKeystore(f"{config_path}: missing `keystore: {{File: <path>}}`")
        keystore_path = Path(keystore["File"]).expanduser()
        if not keystore_path.is_absolute():
            keystore_path = config_path.parent / keystore_path
        keys = read_keystore(keystore_path)
        if not keys:
            raise MalformedKeystore(f"{keystore_path}: the keystore holds no keys")
        active = cfg.get("active_address") or keys[0].address
        if not isinstance(active, str):
            raise MalformedKeystore(f"{config_path}: active_address must be a string")
        envs = cfg.get("envs") or []
        if not isinstance(envs, list):
            raise MalformedKeystore(f"{config_path}: envs must be a list")
        wallet = cls(config_path, keystore_path, keys, active.lower(), envs, cfg.get("active_env"))
        wallet.active  # noqa: B018 - validates active_address now rather than at first use
        return wallet

    @classmethod
    def create(cls, directory: Path, *, env_alias: str, rpc: str) -> Wallet:
        """A new wallet with one Ed25519 key; refuses to overwrite an existing one.

        Args:
            env_alias: the name of the one environment in `client.yaml`, made active.
            rpc: that environment's RPC URL.

        Raises:
            WalletExists: `client.yaml` or `sui.keystore` already exists in `directory`.
        """
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        config_path = directory / "client.yaml"
        keystore_path = directory / "sui.keystore"
        for path in (config_path, keystore_path):
            if path.exists():
                raise WalletExists(f"{path} already exists; refusing to overwrite a wallet")
        key = Keypair.generate()
        write_private(keystore_path, json.dumps([key.keystring()], indent=2) + "\n")
        aliases = [{"alias": "walrusfs", "public_key_base64": key.public_key_base64()}]
        write_private(directory / "sui.aliases", json.dumps(aliases, indent=2) + "\n")
        envs = [{"alias": env_alias, "rpc": rpc, "ws": None, "basic_auth": None}]
        cfg = {
            "keystore": {"File": str(keystore_path)},
            "envs": envs,
            "active_env": env_alias,
            "active_address": key.address,
        }
        write_private(config_path, yaml.safe_dump(cfg, sort_keys=False))
        log.info("created wallet %s with address %s", config_path, key.address)
        return cls(config_path, keystore_path, [key], key.address, envs, env_alias)


def read_keystore(path: Path) -> list[Keypair]:
    """The keys of a `sui.keystore` (a warning is logged when others can read it).

    Raises:
        WalletNotFound: `path` does not exist.
        MalformedKeystore: not a JSON array of key strings, or an entry is not a key.
    """
    if not path.exists():
        raise WalletNotFound(
            f"the wallet's keystore {path} does not exist: restore it, or fix `keystore: File:` "
            "in client.yaml"
        )
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "keystore %s is readable by other users (mode %o); chmod 600 it",
            path,
            stat.S_IMODE(mode),
        )
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedKeystore(f"{path}: not a JSON array of keys: {exc}") from None
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise MalformedKeystore(f"{path}: expected a JSON array of key strings")
    keys = []
    for i, entry in enumerate(entries):
        try:
            keys.append(Keypair.from_keystring(entry))
        except ValueError as exc:
            raise MalformedKeystore(f"{path}: entry {i}: {exc}") from None
    return keys


def write_private(path: Path, text: str) -> None:
    """Write a 0600 file atomically (temp file, fsync, rename), so a crash leaves old or new."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
