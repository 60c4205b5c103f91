"""The stand-in's SQLite ledger: live objects, executed transactions and events.

Every object is stored as the BCS of its Move value, exactly what `GetObject` returns, so the
client decodes stand-in objects with the same code as real-chain ones. A transaction's writes
are applied in one SQLite transaction (`apply`): it commits whole or not at all.

Schema (one function documents every column; see `SCHEMA`):

objects
    id              0x-hex object ID (64 hex digits)
    version         Sui sequence number (lamport version of the last writing transaction)
    digest          base58 object digest (synthetic: blake2b over type, owner, version, BCS)
    owner_kind      1 address-owned, 2 owned by an object (dynamic field), 3 shared,
                    4 immutable (the `sui.rpc.v2.Owner.kind` numbers)
    owner           owner address (kind 1) or parent object ID (kind 2); NULL for 3 and 4
    initial_shared_version  version at which a shared object was shared; NULL otherwise
    type            Move type string with full-length addresses, e.g.
                    `0x00..02::coin::Coin<0x..::wal::WAL>`
    contents        BCS of the Move struct (for a dynamic field: `Field<K, V>`)
    previous_tx     digest of the transaction that last wrote the object
    df_name_type    for dynamic-field objects: the Move type of the field name, else NULL
    df_name         for dynamic-field objects: BCS of the name, else NULL
    df_value_type   for dynamic-field objects: the Move type of the value, else NULL
transactions
    digest          base58 transaction digest
    seq             execution order (1, 2, ...); the "checkpoint" reported to clients
    response        the `ExecutedTransaction` protobuf as returned by ExecuteTransaction
meta
    key / value     chain-wide values: `next_seq`, `walrus_epoch_start_ms`,
                    `epoch_duration_ms`, the IDs genesis created (`system_id`, ...), as text
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

OWNER_ADDRESS = 1
OWNER_OBJECT = 2
OWNER_SHARED = 3
OWNER_IMMUTABLE = 4

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    owner_kind INTEGER NOT NULL,
    owner TEXT,
    initial_shared_version INTEGER,
    type TEXT NOT NULL,
    contents BLOB NOT NULL,
    previous_tx TEXT NOT NULL,
    df_name_type TEXT,
    df_name BLOB,
    df_value_type TEXT
);
CREATE INDEX IF NOT EXISTS objects_by_owner ON objects (owner, type);
CREATE TABLE IF NOT EXISTS transactions (
    digest TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    response BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass
class StoredObject:
    id: str
    version: int
    digest: str
    owner_kind: int
    owner: str | None
    initial_shared_version: int | None
    type: str
    contents: bytes
    previous_tx: str
    df_name_type: str | None = None
    df_name: bytes | None = None
    df_value_type: str | None = None


_COLUMNS = (
    "id, version, digest, owner_kind, owner, initial_shared_version, type, contents, "
    "previous_tx, df_name_type, df_name, df_value_type"
)


class Ledger:
    """Thread-safe access to the ledger file. One writer at a time (`lock`)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self.lock = threading.RLock()
        #: called (from whichever thread committed) after a transaction is recorded: the
        #: gRPC server wakes its checkpoint subscribers with it
        self.on_checkpoint: Callable[[], None] | None = None

    def close(self) -> None:
        with self.lock:
            self._db.close()

    # -- meta -------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        with self.lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str | int) -> None:
        with self.lock:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, str(value)),
            )

    # -- objects ----------------------------------------------------------------------------

    def get(self, object_id: str) -> StoredObject | None:
        with self.lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM objects WHERE id = ?", (object_id,)
            ).fetchone()
        return None if row is None else StoredObject(*row)

    def owned_by(self, owner: str, type_: str | None = None) -> list[StoredObject]:
        """Objects owned by an address (or children of an object), oldest ID first."""
        query = f"SELECT {_COLUMNS} FROM objects WHERE owner = ?"
        args: tuple[str, ...] = (owner,)
        if type_ is not None:
            query += " AND type = ?"
            args += (type_,)
        with self.lock:
            rows = self._db.execute(query + " ORDER BY id", args).fetchall()
        return [StoredObject(*r) for r in rows]

    def dynamic_fields(self, parent: str) -> list[StoredObject]:
        with self.lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM objects WHERE owner = ? AND owner_kind = ? "
                "AND df_name_type IS NOT NULL ORDER BY id",
                (parent, OWNER_OBJECT),
            ).fetchall()
        return [StoredObject(*r) for r in rows]

    # -- writes -----------------------------------------------------------------------------

    def apply(
        self,
        written: list[StoredObject],
        deleted: list[str],
        tx: tuple[str, bytes] | None = None,
        meta: dict[str, str] | None = None,
    ) -> int:
        """Write objects, delete objects, record a transaction: all or nothing.

        Args:
            written: objects stored as given (replacing the row of the same ID).
            deleted: IDs of objects removed.
            tx: (digest, serialized `ExecutedTransaction`) recorded as the next checkpoint,
                after which `on_checkpoint` is called; None changes state without one (the
                devnet's stake admin does).
            meta: ledger metadata set in the same commit.

        Returns:
            The checkpoint of `tx` (without `tx`: the one the next transaction will get).
        """
        with self.lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = int(self._meta_locked("next_seq") or "1")
                for obj in written:
                    self._db.execute(
                        f"INSERT OR REPLACE INTO objects ({_COLUMNS}) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            obj.id,
                            obj.version,
                            obj.digest,
                            obj.owner_kind,
                            obj.owner,
                            obj.initial_shared_version,
                            obj.type,
                            obj.contents,
                            obj.previous_tx,
                            obj.df_name_type,
                            obj.df_name,
                            obj.df_value_type,
                        ),
                    )
                for object_id in deleted:
                    self._db.execute("DELETE FROM objects WHERE id = ?", (object_id,))
                if tx is not None:
                    self._db.execute(
                        "INSERT INTO transactions (digest, seq, response) VALUES (?, ?, ?)",
                        (tx[0], seq, tx[1]),
                    )
                    self._set_meta_locked("next_seq", str(seq + 1))
                for key, value in (meta or {}).items():
                    self._set_meta_locked(key, value)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if tx is not None and self.on_checkpoint is not None:
            self.on_checkpoint()
        return seq

    def transaction(self, digest: str) -> bytes | None:
        with self.lock:
            row = self._db.execute(
                "SELECT response FROM transactions WHERE digest = ?", (digest,)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def checkpoint(self) -> int:
        return int(self.meta("next_seq") or "1") - 1

    def transaction_at(self, seq: int) -> tuple[str, bytes] | None:
        """(digest, response) of the transaction executed `seq`-th: checkpoint `seq`."""
        with self.lock:
            row = self._db.execute(
                "SELECT digest, response FROM transactions WHERE seq = ?", (seq,)
            ).fetchone()
        return None if row is None else (str(row[0]), bytes(row[1]))

    def _meta_locked(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta_locked(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
