"""The volume key: where it comes from (passphrase, key file, wallet) and whether it is this
volume's, checked before anything of the volume is read or written."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from chain.client import WalrusChain
from chain.wallet import write_private
from walrusfs.fs import crypto, schema
from walrusfs.fs.errors import BadKeyFile, KeyMismatch, WrongEncryption

log = logging.getLogger(__name__)

KEY_FILE = "volume.key"


def volume_key(
    volume_dir: Path, volume_id: str, chain: WalrusChain, passphrase: str | None = None
) -> bytes:
    """The volume key: from the passphrase if one is given, else `<volume>/volume.key` if
    present, else derived from the wallet.

    Raises:
        BadKeyFile: `volume.key` does not hold 64 hex digits.
        KeyMismatch: no passphrase, no key file and a read-only chain client (no wallet key).
        ValueError: an empty passphrase.
    """
    if passphrase is not None:
        return crypto.passphrase_key(passphrase, volume_id)
    key_file = volume_dir / KEY_FILE
    if not key_file.exists():
        if chain.key is None:
            raise KeyMismatch("an encrypted volume needs a wallet key")
        return chain.key.derive_secret(crypto.wallet_key_context(volume_id))
    try:
        key = bytes.fromhex(key_file.read_text(encoding="ascii").strip())
    except (ValueError, UnicodeDecodeError):
        key = b""
    if len(key) != 32:
        raise BadKeyFile(
            f"{key_file}: not a volume key (64 hex digits); restore the right file, or delete "
            "it to derive the key from the wallet"
        )
    return key


def load_keys(
    volume_dir: Path,
    db: sqlite3.Connection,
    chain: WalrusChain,
    *,
    new: bool,
    public: bool,
    passphrase: str | None = None,
) -> tuple[crypto.VolumeKeys | None, bytes | None]:
    """The volume's keys (None, None for a public volume).

    The key is read from `<volume>/volume.key` (0600), or derived from the wallet's private key
    and the volume ID and written there: whoever holds the wallet can mount the volume on
    another machine. A key that does not match the volume's fingerprint is refused here,
    rather than every read failing later.

    Args:
        new: the volume was created by this mount (`public` applies to it).
        public: --public was asked.
        passphrase: derive the key from it (then it is never written to `volume.key`).

    Raises:
        WrongEncryption: --public on an encrypted volume, or an encryption this walrusfs
            does not know.
        KeyMismatch: the key is not the volume's (or there is no key to derive one from).
        BadKeyFile: `volume.key` does not hold a key.
    """
    encryption = schema.get_param(db, "encryption") or "none"
    if encryption == "none":
        if not new and not public:
            log.info("volume %s is public: its blobs are plaintext", volume_dir.name)
        return None, None
    if public and not new:
        raise WrongEncryption(
            f"volume {volume_dir.name} is encrypted; --public applies to new volumes "
            "only (create another volume with --volume NAME --public)"
        )
    if encryption != "wfe1":
        raise WrongEncryption(
            f"volume {volume_dir.name} uses encryption {encryption!r}, which this walrusfs does "
            "not know: a newer walrusfs made it (upgrade)"
        )
    key_file = volume_dir / KEY_FILE
    key = volume_key(volume_dir, schema.get_param(db, "volume_id") or "", chain, passphrase)
    keys = crypto.VolumeKeys.from_volume_key(key)
    check = schema.get_param(db, "key_check")
    if check is None:
        schema.set_param(db, "key_check", keys.check_value())
    elif check != keys.check_value():  # before anything is written: a wrong key stays nowhere
        raise KeyMismatch(
            (
                "the passphrase is not this volume's"
                if passphrase is not None
                else f"{key_file} is not the key of this volume (another wallet's, or another "
                "volume's)"
            )
            + ": restore the right volume.key, mount with the wallet that made "
            "it, or give its passphrase (--passphrase-file, WALRUSFS_PASSPHRASE)"
        )
    if passphrase is None and not key_file.exists():
        write_private(key_file, key.hex() + "\n")
    return keys, key
