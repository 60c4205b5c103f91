"""Digests and signatures: how the stand-in names objects and transactions and checks who
signed one.

A transaction's digest is Sui's (blake2b over `TransactionData::` and its BCS), so a client
finds its transaction under the digest it computed itself; an object's digest is the
stand-in's own (blake2b over its type, owner, version and contents), which clients only carry
back as an opaque reference. Genesis, epoch changes and admin transactions write objects too,
so these live apart from the executor.
"""

from __future__ import annotations

import base64
import hashlib

import base58
import pysui_fastcrypto as _fc

from chain.localnet.errors import TxRejected
from chain.localnet.ledger import StoredObject


def object_digest(obj: StoredObject) -> str:
    h = hashlib.blake2b(digest_size=32)
    for part in (obj.type.encode(), bytes([obj.owner_kind]), (obj.owner or "").encode()):
        h.update(len(part).to_bytes(4, "little") + part)
    h.update(obj.version.to_bytes(8, "little") + obj.contents)
    return str(base58.b58encode(h.digest()).decode())


def tx_digest(tx_bytes: bytes) -> bytes:
    return hashlib.blake2b(b"TransactionData::" + tx_bytes, digest_size=32).digest()


def verify_user_signature(tx_bytes: bytes, signature: bytes, sender: str) -> None:
    """Ed25519 `flag || sig(64) || pubkey(32)` over blake2b(intent [0,0,0] || tx).

    Raises:
        TxRejected: not an Ed25519 signature, not the sender's key, or it does not verify.
    """
    if len(signature) != 97 or signature[0] != 0:
        raise TxRejected("only Ed25519 user signatures (97 bytes, flag 0) are supported")
    public_key = signature[65:]
    signer = "0x" + hashlib.blake2b(b"\x00" + public_key, digest_size=32).hexdigest()
    if signer != sender:
        raise TxRejected(
            f"signer {signer} is not the transaction sender {sender}: "
            "the transaction must be signed by its sender"
        )
    digest = hashlib.blake2b(b"\x00\x00\x00" + tx_bytes, digest_size=32).digest()
    ok = _fc.verify_pubk(
        0,
        public_key,
        base64.b64encode(digest).decode(),
        base64.b64encode(signature[1:65]).decode(),
    )
    if not ok:
        raise TxRejected("invalid signature: it does not verify for the transaction bytes")
