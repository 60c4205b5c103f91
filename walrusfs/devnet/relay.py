"""The devnet's upload relay: the official relay's protocol, checks and answers, served on
127.0.0.1 next to the storage nodes (`walrusfs devnet up` starts it; `python -m
walrusfs.devnet.relay`).

It does what walrus `crates/walrus-upload-relay` does (`controller.rs`
`blob_upload_relay_handler` and `fan_out`, `tip/check.rs`, `utils.rs`; the protocol in
`walrusfs/store/relay.py` and `../shared/research/upload-relay.md`): serve its tip
configuration; for an upload, parse the query strictly (unknown keys refused), and when it
asks a tip, look the payment's transaction up on the chain and check, in this order, that it is
fresh, that it paid the tip to the relay's address (the net SUI balance change), and that its
input 0 is the auth package of these bytes and this nonce; then encode the blob, check its ID,
send the slivers to the committee, and answer the aggregated certificate. Refusals are plain
text with the official status codes and messages. It writes nothing on chain.

A test switch makes it lie (`RelaySettings.lie`: "signature" answers a wrong aggregate,
"blob" answers for another blob), so that clients are tested for not trusting it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import base58
import trio

import codec
from chain import errors as chain_errors
from chain.bls import aggregate
from chain.client import WalrusChain
from chain.localnet.naming import SUI_TYPE, normalize_address
from chain.wallet import Keypair
from walrusfs.devnet import http, server
from walrusfs.devnet.layout import DevnetLayout
from walrusfs.devnet.node import quiet_pysui
from walrusfs.store.client import WalrusStore
from walrusfs.store.relay import (
    AUTH_PACKAGE_LEN,
    MAX_BODY,
    NONCE_LEN,
    TIP_CONFIG_ROUTE,
    UPLOAD_ROUTE,
    TipConfig,
)

log = logging.getLogger("walrusfs.devnet.relay")

QUERY_KEYS = ("blob_id", "tx_id", "nonce", "deletable_blob_object", "encoding_type")


@dataclass(frozen=True)
class RelaySettings:
    """The relay's configuration (`WalrusUploadRelayConfig`): its tip, and how old (or how far
    in the future) a paying transaction may be, in seconds. The official relay has no
    defaults for the two windows; the devnet's are its example's 10 h and 30 s."""

    tip: TipConfig
    freshness: float = 36_000.0
    max_future: float = 30.0
    #: test switch: "" (honest), "signature" or "blob"
    lie: str = ""

    def tip_json(self) -> Any:
        if self.tip.address is None:
            return "no_tip"
        kind: Any = (
            {"const": self.tip.base}
            if self.tip.per_kib == 0
            else {"linear": {"base": self.tip.base, "encoded_size_mul_per_kib": self.tip.per_kib}}
        )
        return {"send_tip": {"address": self.tip.address, "kind": kind}}


class Refused(Exception):
    """An upload the relay refuses: HTTP `status`, plain-text `message` (`error.rs`)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Params:
    """The query of an upload (`upload_relay/params.rs` `Params`)."""

    blob_id: codec.BlobId
    tx_id: str | None
    nonce: bytes | None
    object_id: str | None


def parse_params(query: dict[str, list[str]]) -> Params:
    """The upload's query, as strictly as serde with `deny_unknown_fields` parses it.

    Raises:
        Refused: 400 for an unknown key, a value that does not parse, or a second value.
    """

    def bad(why: str) -> Refused:
        return Refused(400, f"Failed to deserialize query string: {why}")

    for key, values in query.items():
        if key not in QUERY_KEYS:
            raise bad(f"unknown field `{key}`, expected one of {', '.join(QUERY_KEYS)}")
        if len(values) != 1:
            raise bad(f"duplicate field `{key}`")
    one = {k: v[0] for k, v in query.items()}
    if "blob_id" not in one:
        raise bad("missing field `blob_id`")
    try:
        blob_id = codec.BlobId.parse(one["blob_id"])
    except ValueError as exc:
        raise bad(str(exc)) from None
    tx_id = one.get("tx_id")
    if tx_id is not None:
        try:
            if len(base58.b58decode(tx_id)) != 32:
                raise ValueError("not 32 bytes")
        except ValueError as exc:
            raise bad(f"tx_id: {exc}") from None
    nonce = None
    if "nonce" in one:
        text = one["nonce"]
        try:
            if "=" in text:
                raise ValueError("padded")
            nonce = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except ValueError as exc:
            raise bad(f"nonce: {exc}") from None
        if len(nonce) != NONCE_LEN:
            raise bad("nonce: not 32 bytes")
    object_id = one.get("deletable_blob_object")
    if object_id is not None:
        try:
            object_id = normalize_address(object_id)
        except ValueError as exc:
            raise bad(str(exc)) from None
    if one.get("encoding_type", "RS2") != "RS2":
        raise bad(f"unknown variant `{one['encoding_type']}`, expected `RS2`")
    return Params(blob_id, tx_id, nonce, object_id)


class Relay:
    """The relay's handlers over a chain client (for the payment checks) and a store (for
    the fan-out)."""

    def __init__(self, chain: WalrusChain, store: WalrusStore, settings: RelaySettings) -> None:
        self.chain = chain
        self.store = store
        self.settings = settings
        self.uploads = 0  # certificates answered
        self.last_tx: str | None = None  # the last paying transaction checked

    async def handle(self, req: http.Request) -> http.Response:
        if req.method == "GET" and req.path == TIP_CONFIG_ROUTE:
            return http.Response(200, json.dumps(self.settings.tip_json()).encode())
        if req.method == "POST" and req.path == UPLOAD_ROUTE:
            try:
                return await self._upload(req)
            except Refused as exc:
                log.info("upload refused (%d): %s", exc.status, exc.message)
                return http.Response(exc.status, exc.message.encode(), "text/plain")
        return http.Response(404, b"not found", "text/plain")

    async def _upload(self, req: http.Request) -> http.Response:
        params = parse_params(req.query)
        try:
            body = await req.body(MAX_BODY)
        except http.ApiError as exc:
            if exc.status != "SIZE_EXCEEDED":
                raise Refused(400, f"the request body could not be read: {exc.message}") from None
            raise Refused(413, "length limit exceeded") from None
        if self.settings.tip.address is not None:
            await self._check_payment(params, body)
        n_shards = (await self.store.committee()).n_shards
        try:
            enc = await trio.to_thread.run_sync(codec.encode, body, n_shards)
        except codec.CodecError:
            raise Refused(400, "the data is too large to be encoded/decoded") from None
        blob_id = enc.blob_id
        if blob_id != params.blob_id:
            raise Refused(
                400,
                "the provided blob ID and the blob ID resulting from the blob encoding do not "
                "match",
            )
        try:
            cert = await self.store.fan_out(enc, params.object_id)
        except (OSError, chain_errors.ChainError) as exc:
            log.warning("fan-out of %s failed: %s", blob_id, exc)
            raise Refused(500, "internal client error") from None
        self.uploads += 1
        log.info(
            "certificate of %s (%d bytes) from %d signers", blob_id, len(body), len(cert.signers)
        )
        signature, answered = cert.signature, blob_id.raw
        if self.settings.lie == "signature":
            signature = aggregate([signature, signature])
        elif self.settings.lie == "blob":
            answered = hashlib.sha256(answered).digest()
        doc = {
            "blob_id": list(answered),
            "confirmation_certificate": {
                "signers": list(cert.signers),
                "serialized_message": list(cert.message),
                "signature": base64.b64encode(signature).decode(),
            },
        }
        return http.Response(200, json.dumps(doc).encode())

    async def _check_payment(self, params: Params, body: bytes) -> None:
        """`validate_auth_package`: the tip's transaction, in the official order of checks.

        Raises:
            Refused: with the official status and message of the first check that fails.
        """
        tip = self.settings.tip
        if params.tx_id is None or params.nonce is None:
            raise Refused(
                400,
                "The query parameters are missing the transaction ID or the nonce, but the "
                "proxy requires them to check the tip payment.",
            )
        self.last_tx = params.tx_id
        try:
            tx = await self.chain.transaction(params.tx_id)
        except chain_errors.ChainError as exc:
            log.info("tip transaction %s: %s", params.tx_id, exc)
            raise Refused(500, "internal client error") from None
        if tx.timestamp_ms is None:
            raise Refused(400, "an unexpected transaction response was received: no timestamp")
        now_ms = time.time() * 1000
        if tx.timestamp_ms - now_ms > self.settings.max_future * 1000:
            raise Refused(
                400, "an unexpected transaction response was received: too far in the future"
            )
        if now_ms - tx.timestamp_ms > self.settings.freshness * 1000:
            raise Refused(400, "the received transaction is too old")
        n_shards = (await self.store.committee()).n_shards
        expected = tip.tip(codec.EncodingParams(n_shards), len(body))
        assert tip.address is not None
        paid = next(
            (
                amount
                for address, coin, amount in tx.balance_changes
                if normalize_address(address) == normalize_address(tip.address) and _is_sui(coin)
            ),
            None,
        )
        if paid is None:
            raise Refused(402, "no tip was transferred to the proxy account")
        if paid < expected:
            raise Refused(
                402, f"the tip is insufficient: balance change {paid}; expected {expected}"
            )
        if not tx.programmable:
            raise Refused(401, "the tip transaction is not a ptb or could not be read")
        if tx.first_pure is None:
            raise Refused(401, "the auth package is missing from the first input slot of the PTB")
        package = tx.first_pure
        if len(package) != AUTH_PACKAGE_LEN:
            raise Refused(401, "the auth package was found but could not be read")
        if hashlib.sha256(params.nonce).digest() != package[32:64]:
            raise Refused(401, "the provided nonce hash in the ptb is invalid")
        if int.from_bytes(package[64:72], "little") != len(body):
            raise Refused(
                401, "the unencoded blob length in the auth package does not match the blob"
            )
        digest = await trio.to_thread.run_sync(lambda: hashlib.sha256(body).digest())
        if digest != package[:32]:
            raise Refused(401, "the digest of the blob does not match the one in the auth package")


def _is_sui(coin_type: str) -> bool:
    address, _, rest = coin_type.partition("::")
    try:
        return f"{normalize_address(address)}::{rest}" == SUI_TYPE
    except ValueError:
        return False


async def run(relay_dir: Path, port: int, settings: RelaySettings) -> None:
    """Serve the relay of the devnet whose `relay/` directory is `relay_dir` (the marker of its
    process) on 127.0.0.1:`port` until cancelled."""
    spec = DevnetLayout(relay_dir.parent.parent).spec()
    # the relay signs nothing: a key of its own only to open the client
    chain = WalrusChain(spec.profile(), Keypair.generate())
    store = WalrusStore(chain)
    relay = Relay(chain, store, settings)
    try:
        await server.serve(relay.handle, "127.0.0.1", port)
    finally:
        await store.close()
        await chain.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("relay_dir", type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tip-address", default=None)
    parser.add_argument("--tip-base", type=int, default=0)
    parser.add_argument("--tip-per-kib", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    quiet_pysui()
    settings = RelaySettings(TipConfig(args.tip_address, args.tip_base, args.tip_per_kib))
    trio.run(run, args.relay_dir, args.port, settings)


if __name__ == "__main__":
    main()
