"""The certificate check that `system_state_inner::certify_blob` and `certify_pooled_blob`
share: `bls_aggregate::verify_quorum_in_epoch` (bitmap, quorum of shards, aggregate BLS
signature), `messages::new_certified_message` (intent, app ID, the committee's epoch), the
current-epoch check (EInvalidIdEpoch) and `messages::certify_blob_message` (message type, blob
ID, persistence type and, for a deletable blob, its object ID). Each abort is the one of its
Move module and function (MystenLabs/walrus `mainnet-contracts/walrus/sources/system/
bls_aggregate.move`, `messages.move`, `system_state_inner.move`)."""

from __future__ import annotations

from dataclasses import dataclass

from chain.aborts import (
    E_INCORRECT_APP_ID,
    E_INCORRECT_EPOCH,
    E_INCORRECT_INTENT_VERSION,
    E_INVALID_BITMAP,
    E_INVALID_ID_EPOCH,
    E_INVALID_MSG_TYPE,
    E_MSG_INVALID_PERSISTENCE,
    E_NOT_ENOUGH_STAKE,
    E_SIG_VERIFICATION,
)
from chain.bls import aggregate_verify
from chain.localnet.moves.registry import abort
from chain.localnet.moves.system_view import SystemView

BLOB_CERT_MSG_TYPE = 1
INTENT_VERSION = 0
APP_ID = 3


@dataclass(frozen=True)
class CertifiedBlobMessage:
    """`messages::CertifiedBlobMessage`: what a quorum certified."""

    epoch: int
    blob_id: int
    deletable: bool
    object_id: str | None  # the deletable blob's object ID, None for a permanent one


def verify_blob_certificate(
    view: SystemView, signature: bytes, bitmap: bytes, msg: bytes, fn: str
) -> CertifiedBlobMessage:
    """The blob message a quorum of the current committee signed in the current epoch.

    Args:
        fn: the `system_state_inner` function whose EInvalidIdEpoch check runs
            (`certify_blob`, `certify_pooled_blob`).

    Raises:
        MoveAbort: a `bls_aggregate`, `messages` or `system_state_inner` abort.
    """
    tx, dep = view.tx, view.dep
    committee = view.state.committee
    n_members = len(committee.members)
    max_len = (n_members + 7) // 8
    if len(bitmap) > max_len:
        raise abort(tx, dep, E_INVALID_BITMAP, "verify_certificate_and_weight", "bitmap")
    signers: list[bytes] = []
    weight = 0
    for index in range(max_len * 8):
        byte = bitmap[index // 8] if index // 8 < len(bitmap) else 0
        is_signer = (byte >> (index % 8)) & 1 == 1
        if index >= n_members:
            if is_signer:
                raise abort(tx, dep, E_INVALID_BITMAP, "verify_certificate_and_weight", "bitmap")
            continue
        if is_signer:
            signers.append(committee.members[index].public_key)
            weight += committee.members[index].weight
    if not 3 * weight >= 2 * committee.n_shards + 1:
        raise abort(
            tx,
            dep,
            E_NOT_ENOUGH_STAKE,
            "verify_certificate_and_weight",
            f"signers hold {weight} of {committee.n_shards} shards: no quorum",
        )
    if not signers or not aggregate_verify(signature, signers, msg):
        raise abort(tx, dep, E_SIG_VERIFICATION, "verify_certificate_and_weight", "bad signature")
    if len(msg) < 7:
        raise abort(tx, dep, E_INVALID_MSG_TYPE, "new_certified_message", "short message")
    intent_type, intent_version, intent_app = msg[0], msg[1], msg[2]
    cert_epoch = int.from_bytes(msg[3:7], "little")
    if intent_version != INTENT_VERSION:
        raise abort(tx, dep, E_INCORRECT_INTENT_VERSION, "new_certified_message", "intent")
    if intent_app != APP_ID:
        raise abort(tx, dep, E_INCORRECT_APP_ID, "new_certified_message", "app id")
    if cert_epoch != committee.epoch:
        raise abort(
            tx,
            dep,
            E_INCORRECT_EPOCH,
            "new_certified_message",
            f"message for epoch {cert_epoch}, the committee is in epoch {committee.epoch}",
        )
    if cert_epoch != view.epoch:
        raise abort(tx, dep, E_INVALID_ID_EPOCH, fn, "epoch")
    if intent_type != BLOB_CERT_MSG_TYPE:
        raise abort(tx, dep, E_INVALID_MSG_TYPE, "certify_blob_message", "not a blob cert")
    body = msg[7:]
    if len(body) < 33:
        raise abort(tx, dep, E_MSG_INVALID_PERSISTENCE, "peel_blob_persistence_type", "short")
    blob_id = int.from_bytes(body[:32], "little")
    persistence = body[32]
    if persistence not in (0, 1) or (persistence == 1 and len(body) < 65):
        raise abort(tx, dep, E_MSG_INVALID_PERSISTENCE, "peel_blob_persistence_type", "persistence")
    object_id = "0x" + body[33:65].hex() if persistence == 1 else None
    return CertifiedBlobMessage(cert_epoch, blob_id, persistence == 1, object_id)
