"""The read mask of every `sui.rpc.v2` call the chain client makes, in one table.

A Sui full node returns only the fields a request's `read_mask` names; without one it returns
a small documented default (`GetObject`: `object_id,version,digest`, no `contents`), and
pysui's own defaults do not ask for `contents` either. So every call of `chain.client` passes
the mask of its kind from here, and the stand-in (`chain.localnet.masks`) applies masks as a
full node does, so a call that forgets a field fails in the tests, not on testnet.

Paths are relative to the message each method masks (from sui `crates/sui-rpc-api/src/grpc/
v2/*`): `Object` for GetObject, BatchGetObjects and ListOwnedObjects; `Checkpoint` for
GetCheckpoint and SubscribeCheckpoints; `Epoch` for GetEpoch; `ExecutedTransaction` for
ExecuteTransaction; `SimulateTransactionResponse` for SimulateTransaction (hence the
`transaction.` prefix there). An `ObjectSet` is returned only when the mask reaches
`objects.objects` (`transaction_execution_service/mod.rs`).
"""

from __future__ import annotations

#: An object whose Move contents the client decodes, and whose reference (ID, version,
#: digest), type (the type-origin package) and owner (shared initial version, owner address)
#: it uses: System/Staking roots and inner fields, blobs, attribute fields, the exchange.
OBJECT = ("object_id", "version", "digest", "owner", "object_type", "contents")

#: Staking pools read in batches for the committee: only their contents.
STAKING_POOL = ("object_id", "contents")

#: Owned objects listed by type: coins (balance, reference for spending), Blob and Storage
#: (contents decoded).
OWNED = ("object_id", "version", "digest", "object_type", "contents", "balance")

#: A storage pool's blob table listed (ListDynamicFields of its ObjectTable): each entry is a
#: dynamic object field whose `child_id` is the PooledBlob, read next in batches.
POOL_TABLE = ("kind", "field_id", "child_id")

#: The epoch's reference gas price (what transactions are built with).
GAS_PRICE = ("reference_gas_price",)

#: The newest checkpoint's sequence number (GetCheckpoint latest, SubscribeCheckpoints).
CHECKPOINT_NUMBER = ("sequence_number",)

#: One checkpoint's transactions and the events they emitted (storage nodes follow these).
CHECKPOINT_EVENTS = (
    "sequence_number",
    "transactions.digest",
    "transactions.events.events.event_type",
    "transactions.events.events.contents",
)

#: An executed transaction: status and gas, which objects are new, their contents (Blob and
#: Storage are decoded from the reply) and the events.
EXECUTED = (
    "digest",
    "effects.status",
    "effects.gas_used",
    "effects.changed_objects",
    "events.events.event_type",
    "events.events.contents",
    "objects.objects.object_id",
    "objects.objects.version",
    "objects.objects.object_type",
    "objects.objects.contents",
)

#: A transaction looked up by digest (GetTransaction) to check a payment, as an upload relay
#: checks its tip: when it ran, its inputs (the auth package is input 0), the balance changes.
TRANSACTION = (
    "digest",
    "timestamp",
    "transaction.kind",
    "balance_changes",
)

#: A dry run for the gas budget: its status (an abort is reported before signing) and cost.
SIMULATED = ("transaction.effects.status", "transaction.effects.gas_used")

#: Every table above, by name (tests check each is valid for its message).
ALL: dict[str, tuple[str, ...]] = {
    "OBJECT": OBJECT,
    "STAKING_POOL": STAKING_POOL,
    "OWNED": OWNED,
    "TRANSACTION": TRANSACTION,
    "GAS_PRICE": GAS_PRICE,
    "CHECKPOINT_NUMBER": CHECKPOINT_NUMBER,
    "CHECKPOINT_EVENTS": CHECKPOINT_EVENTS,
    "EXECUTED": EXECUTED,
    "SIMULATED": SIMULATED,
}
