"""Errors of the chain layer that a user can meet and act on.

Each says what is wrong and what to do; the CLI maps them to documented exit codes.
"""

from __future__ import annotations


class ChainError(Exception):
    """Base class of the chain layer's errors."""


class WalletError(ChainError):
    """The wallet (Sui CLI `client.yaml` + `sui.keystore`) cannot be used."""


class WalletNotFound(WalletError, FileNotFoundError):
    """No wallet where one was expected."""


class WalletExists(WalletError, FileExistsError):
    """Creating a wallet where one already is; the existing one is left untouched."""


class MalformedKeystore(WalletError):
    """A keystore or client config exists but cannot be parsed; nothing was changed."""


class ChainUnavailable(ChainError, ConnectionError):
    """The Sui gRPC endpoint cannot be reached or did not answer; retrying later may work."""


class ObjectNotFound(ChainError, LookupError):
    """An object the caller named does not exist (any more) on chain."""


class NotPooled(ObjectNotFound):
    """The object is not a blob of a storage pool (an owned Blob, say)."""


class InsufficientFunds(ChainError):
    """The wallet cannot pay; nothing was sent. `need` and `have` are in FROST or MIST."""

    def __init__(self, message: str, need: int, have: int) -> None:
        super().__init__(message)
        self.need = need
        self.have = have


class InsufficientWal(InsufficientFunds):
    """Not enough WAL for the storage and write fees."""


class InsufficientGas(InsufficientFunds):
    """Not enough SUI for the gas budget."""


class TransactionRejected(ChainError):
    """The chain refused the transaction before executing it (invalid signature, stale object
    reference, an object the sender does not own...); the ledger is unchanged."""


class TransactionFailed(ChainError):
    """The transaction executed and failed; only gas was charged. `digest` names it."""

    def __init__(self, message: str, digest: str, kind: str) -> None:
        super().__init__(message)
        self.digest = digest
        self.kind = kind


class MoveAbortError(TransactionFailed):
    """A Move `assert!` failed: `module`, `code` and, when known, the constant's `name`."""

    def __init__(
        self,
        message: str,
        digest: str,
        *,
        module: str,
        function: str,
        code: int,
        name: str | None,
    ) -> None:
        super().__init__(message, digest, "MOVE_ABORT")
        self.module = module
        self.function = function
        self.code = code
        self.name = name


class NotCertified(MoveAbortError):
    """The blob is not certified (`blob::ENotCertified`)."""


class Expired(MoveAbortError):
    """The blob or its storage is outside its validity period (`blob::EResourceBounds`)."""


class AlreadyCertified(MoveAbortError):
    """The blob was certified before (`blob::EAlreadyCertified`)."""


class QuorumNotReached(MoveAbortError):
    """The certificate's signers hold fewer than 2f+1 shards (`bls_aggregate::ENotEnoughStake`)."""


class PoolFull(MoveAbortError):
    """The storage pool has less unused capacity than the blob needs
    (`storage_pool::EInsufficientCapacity`)."""


class PoolNotEmpty(MoveAbortError):
    """A pool that still holds blobs cannot be destroyed (`storage_pool::EPoolNotEmpty`)."""


class BlobInPoolAlready(MoveAbortError):
    """The pool holds a blob of this blob ID already: its table is keyed by blob ID
    (`sui::dynamic_field::EFieldAlreadyExists`, raised by `object_table::add`)."""


class NotInPool(MoveAbortError):
    """The pool holds no blob of this blob ID (`sui::dynamic_field::EFieldDoesNotExist`)."""


class BlobNotDeletable(MoveAbortError):
    """The blob is permanent (`blob::EBlobNotDeletable`, `storage_pool::EBlobNotDeletable`)."""


class InvalidBlobId(MoveAbortError):
    """The blob ID is not the one derived from the root hash and size, or not the blob's
    (`EInvalidBlobId` of `blob` and `storage_pool`)."""


class PersistenceMismatch(MoveAbortError):
    """The certificate is for the other persistence, or for another blob object
    (`EInvalidBlobPersistenceType`, `EInvalidBlobObject` of `blob` and `storage_pool`)."""


class IncompatibleEndEpoch(MoveAbortError):
    """The Storage absorbed ends at another epoch than the pool
    (`storage_pool::EIncompatibleEndEpoch`)."""


class InvalidPercent(MoveAbortError):
    """A percent above 100 (`storage_pool::EInvalidPercent`)."""


class DuplicateMetadata(MoveAbortError):
    """The blob has attributes already (`EDuplicateMetadata` of `blob`, `storage_pool`)."""


class MissingMetadata(MoveAbortError):
    """The blob has no attributes (`EMissingMetadata` of `blob` and `storage_pool`)."""


class NothingToExtract(MoveAbortError):
    """Zero bytes to take out of a pool (`system::EZeroExtractSize`)."""


class WrongVersion(MoveAbortError):
    """The object's version is not the package's (`EWrongVersion` of `system` and
    `storage_pool`): this client is older or newer than the deployed contract."""


class PoolAccounting(MoveAbortError):
    """The pool's counts disagree with its blobs (`storage_pool::EInvalidBlobSize`,
    `EInvalidBlobCount`): never expected from the deployed contract."""
