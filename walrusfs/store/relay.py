"""The Walrus upload relay protocol, client side: send a blob's bytes once and get back the
certificate the nodes signed, instead of sending every sliver to every node (about 4.5 times
the bytes).

The protocol as the official relay serves it (walrus `crates/walrus-upload-relay`, the SDK's
`crates/walrus-sdk/src/upload_relay.rs` and `upload_relay/`; notes in
`../shared/research/upload-relay.md`):

    GET  /v1/tip-config        "no_tip", or {"send_tip": {"address": "0x..", "kind":
                               {"const": MIST} | {"linear": {"base": MIST,
                               "encoded_size_mul_per_kib": MIST}}}}
    POST /v1/blob-upload-relay?blob_id=B64URL[&deletable_blob_object=0x..][&tx_id=BASE58
                               &nonce=B64URL][&encoding_type=RS2]
         body: the unencoded blob
         200: {"blob_id": [32 ints], "confirmation_certificate": {"signers": [member
              indices], "serialized_message": [ints], "signature": "<base64, 96 bytes>"}}
         else: a plain-text reason (400, 401, 402 tip, 413, 500)

A relay that asks for a tip is paid in a transaction whose first input is the 72-byte auth
package `sha256(blob) || sha256(nonce) || u64 LE length`, which binds the payment to these
bytes; the relay finds the transaction by its digest and checks it (`relay_auth`). The client
still registers, pays for storage and certifies, and keeps the Blob object.

The relay is trusted for nothing: the certificate is verified here (the message is exactly the
confirmation this blob needs in this epoch, the aggregate signature is the signers' over it,
the signers hold a quorum of shards) before it is used, and any failure lets the caller
upload directly instead (`walrusfs/store/writes.py`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import codec
from chain.bls import aggregate_verify
from walrusfs.store.http1 import Pool, TransportError
from walrusfs.store.nodes import Committee

log = logging.getLogger(__name__)

TIP_CONFIG_ROUTE = "/v1/tip-config"
UPLOAD_ROUTE = "/v1/blob-upload-relay"
#: the relay's body limit (axum `DefaultBodyLimit`, 1 GiB): larger blobs are uploaded directly
MAX_BODY = 1 << 30
NONCE_LEN = 32
AUTH_PACKAGE_LEN = 72


class RelayError(Exception):
    """The relay could not be used for this blob (refused, unreachable, lying, too dear):
    the caller uploads directly."""


@dataclass(frozen=True)
class TipConfig:
    """What the relay charges (`TipConfig` of `upload_relay/tip_config.rs`), in MIST.

    `address` None: no tip. Otherwise `base` + `per_kib` for each KiB (rounded up) of the
    blob's encoded size; a constant tip has `per_kib` 0.
    """

    address: str | None = None
    base: int = 0
    per_kib: int = 0

    def tip(self, params: codec.EncodingParams, length: int) -> int:
        """The tip for an unencoded blob of `length` bytes (`TipKind::compute_tip`: the
        encoded length with the committee's shard count, KiB rounded up)."""
        if self.address is None:
            return 0
        return self.base + -(-params.encoded_size(length) // 1024) * self.per_kib

    @classmethod
    def parse(cls, doc: Any) -> TipConfig:
        """The JSON of `GET /v1/tip-config`.

        Raises:
            RelayError: not a tip configuration.
        """
        if doc == "no_tip":
            return cls()
        try:
            send = doc["send_tip"]
            address = str(send["address"])
            kind = send["kind"]
            if "const" in kind:
                return cls(address, int(kind["const"]), 0)
            linear = kind["linear"]
            return cls(address, int(linear["base"]), int(linear["encoded_size_mul_per_kib"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise RelayError(f"not a tip configuration: {json.dumps(doc)[:200]}") from exc


def auth_package(blob: bytes, nonce: bytes) -> bytes:
    """The 72 bytes that bind a tip to a blob: BCS of `HashedAuthPackage` (SHA-256 of the
    blob, SHA-256 of the nonce, the blob's length as a u64 LE)."""
    return (
        hashlib.sha256(blob).digest()
        + hashlib.sha256(nonce).digest()
        + struct.pack("<Q", len(blob))
    )


def upload_path(
    blob_id: codec.BlobId, object_id: str | None, tx_id: str | None, nonce: bytes | None
) -> str:
    """The query of an upload, in the order the Rust SDK writes it (`blob_upload_relay_url`),
    with `encoding_type` as the TypeScript SDK sends it."""
    query = [("blob_id", str(blob_id))]
    if object_id is not None:
        query.append(("deletable_blob_object", object_id))
    if tx_id is not None and nonce is not None:
        query.append(("tx_id", tx_id))
        query.append(("nonce", base64.urlsafe_b64encode(nonce).rstrip(b"=").decode()))
    query.append(("encoding_type", "RS2"))
    return UPLOAD_ROUTE + "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query)


@dataclass(frozen=True)
class Certificate:
    """A relay's `ConfirmationCertificate`: committee member indices, the BCS confirmation
    they signed, their aggregate BLS signature (96 bytes)."""

    signers: tuple[int, ...]
    message: bytes
    signature: bytes

    @classmethod
    def parse(cls, doc: Any, blob_id: codec.BlobId) -> Certificate:
        """The 200 answer of an upload, for `blob_id`.

        Raises:
            RelayError: malformed, or for another blob.
        """
        try:
            if bytes(doc["blob_id"]) != blob_id.raw:
                raise RelayError(f"the relay answered for another blob than {blob_id}")
            cert = doc["confirmation_certificate"]
            signers = tuple(int(i) for i in cert["signers"])
            message = bytes(cert["serialized_message"])
            signature = base64.b64decode(cert["signature"], validate=True)
        except (KeyError, TypeError, ValueError) as exc:
            raise RelayError(f"malformed relay answer: {exc}") from exc
        return cls(signers, message, signature)

    def verify(self, committee: Committee, expected: bytes) -> None:
        """Check what `certify_blob` will check, before paying the gas for it: the message is
        `expected` (this blob's confirmation, this epoch, this persistence), the signers are
        distinct members holding a quorum of shards, and the signature is theirs.

        Raises:
            RelayError: it is not a valid certificate for this blob.
        """
        if self.message != expected:
            raise RelayError("the relay's certificate confirms another message")
        members = {n.index: n for n in committee.nodes}
        if len(set(self.signers)) != len(self.signers) or not set(self.signers) <= members.keys():
            raise RelayError(f"the relay's certificate names unknown signers {self.signers}")
        weight = sum(members[i].weight for i in self.signers)
        if weight < committee.quorum:
            raise RelayError(
                f"the relay's certificate holds {weight} shards, below the quorum "
                f"{committee.quorum}"
            )
        keys = [members[i].public_key for i in self.signers]
        if not aggregate_verify(self.signature, keys, self.message):
            raise RelayError("the relay's certificate signature does not verify")


class RelayClient:
    """One upload relay (`url`), spoken to over a keep-alive HTTP/1.1 pool.

    Args:
        url: the relay's origin, e.g. https://upload-relay.testnet.walrus.space
        max_tip: the most MIST this client pays a relay for one blob; a dearer blob is
            uploaded directly.
        timeout: seconds for one request, the upload included.
    """

    def __init__(self, url: str, *, max_tip: int, timeout: float = 300.0) -> None:
        parts = urlsplit(url)
        self.url = url.rstrip("/")
        self.max_tip = max_tip
        self._prefix = parts.path.rstrip("/")
        self._pool = Pool(f"{parts.scheme}://{parts.netloc}", 4, timeout)
        self._tips: TipConfig | None = None
        #: bytes of blob bodies sent to the relay (`bench/store.py`)
        self.sent = 0

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def tip_config(self) -> TipConfig:
        """The relay's tip configuration (asked once per client).

        Raises:
            RelayError: unreachable or not a relay.
        """
        if self._tips is None:
            rsp = await self._get(TIP_CONFIG_ROUTE)
            try:
                doc = rsp.json()
            except ValueError as exc:
                raise RelayError(f"{self.url}: tip configuration is not JSON") from exc
            self._tips = TipConfig.parse(doc)
        return self._tips

    async def upload(
        self,
        blob: bytes,
        blob_id: codec.BlobId,
        object_id: str | None,
        paid: tuple[str, bytes] | None,
    ) -> Certificate:
        """Send `blob` (registered as `object_id` if deletable, else permanent); the relay's
        certificate, parsed but not verified (`Certificate.verify`).

        Args:
            paid: (transaction digest, nonce) of the tip's payment, when the relay asks one.

        Raises:
            RelayError: refused (the relay's own reason), unreachable or malformed.
        """
        tx_id, nonce = paid if paid is not None else (None, None)
        path = self._prefix + upload_path(blob_id, object_id, tx_id, nonce)
        try:
            rsp = await self._pool.request("POST", path, blob)
        except TransportError as exc:
            raise RelayError(f"{self.url}: {exc}") from exc
        self.sent += len(blob)
        if rsp.status_code != 200:
            raise RelayError(f"{self.url} refused the upload ({rsp.status_code}): {rsp.text}")
        try:
            doc = rsp.json()
        except ValueError as exc:
            raise RelayError(f"{self.url}: the upload's answer is not JSON") from exc
        return Certificate.parse(doc, blob_id)

    async def _get(self, route: str) -> Any:
        try:
            rsp = await self._pool.request("GET", self._prefix + route)
        except TransportError as exc:
            raise RelayError(f"{self.url}: {exc}") from exc
        if rsp.status_code != 200:
            raise RelayError(f"{self.url}{route}: {rsp.status_code} {rsp.text[:200]}")
        return rsp
