"""Move abort codes of the functions walrusfs calls, by module, with their constant names.

One table for both sides: the client names an abort it receives (`by_location`), and the
stand-in raises exactly these (`chain.localnet.moves`). Values are from the Move sources
(contracts/walrus/sources/system/*.move, wal_exchange.move, and the Sui framework's
`balance`, `vec_map`, `dynamic_field` and `object_table`, whose aborts Walrus calls can
surface). The storage-pool codes are those of the deployed contracts (MystenLabs/walrus
`mainnet-contracts/walrus/sources/system/storage_pool.move` and `system.move`, system package
VERSION 3); their Python names carry `E_POOL_` so they stay apart from `blob`'s of the same
Move name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Abort:
    module: str
    code: int
    name: str


E_STORAGE_EXCEEDED = Abort("system_state_inner", 1, "EStorageExceeded")
E_INVALID_EPOCHS_AHEAD = Abort("system_state_inner", 2, "EInvalidEpochsAhead")
E_INVALID_ID_EPOCH = Abort("system_state_inner", 3, "EInvalidIdEpoch")
E_INVALID_RESOURCE_SIZE = Abort("system_state_inner", 11, "EInvalidResourceSize")
E_WRONG_VERSION = Abort("system", 1, "EWrongVersion")
E_ZERO_EXTRACT_SIZE = Abort("system", 2, "EZeroExtractSize")
E_NOT_CERTIFIED = Abort("blob", 0, "ENotCertified")
E_BLOB_NOT_DELETABLE = Abort("blob", 1, "EBlobNotDeletable")
E_RESOURCE_BOUNDS = Abort("blob", 2, "EResourceBounds")
E_RESOURCE_SIZE = Abort("blob", 3, "EResourceSize")
E_ALREADY_CERTIFIED = Abort("blob", 5, "EAlreadyCertified")
E_INVALID_BLOB_ID = Abort("blob", 6, "EInvalidBlobId")
E_DUPLICATE_METADATA = Abort("blob", 7, "EDuplicateMetadata")
E_MISSING_METADATA = Abort("blob", 8, "EMissingMetadata")
E_INVALID_BLOB_PERSISTENCE_TYPE = Abort("blob", 9, "EInvalidBlobPersistenceType")
E_INVALID_BLOB_OBJECT = Abort("blob", 10, "EInvalidBlobObject")
E_INVALID_BITMAP = Abort("bls_aggregate", 0, "EInvalidBitmap")
E_SIG_VERIFICATION = Abort("bls_aggregate", 1, "ESigVerification")
E_NOT_ENOUGH_STAKE = Abort("bls_aggregate", 2, "ENotEnoughStake")
E_INCORRECT_APP_ID = Abort("messages", 0, "EIncorrectAppId")
E_INCORRECT_EPOCH = Abort("messages", 1, "EIncorrectEpoch")
E_INVALID_MSG_TYPE = Abort("messages", 2, "EInvalidMsgType")
E_INCORRECT_INTENT_VERSION = Abort("messages", 3, "EIncorrectIntentVersion")
E_MSG_INVALID_PERSISTENCE = Abort("messages", 4, "EInvalidBlobPersistenceType")
E_INVALID_ENCODING_TYPE = Abort("encoding", 0, "EInvalidEncodingType")
E_INVALID_EPOCH = Abort("storage_resource", 0, "EInvalidEpoch")
E_INCOMPATIBLE_EPOCHS = Abort("storage_resource", 1, "EIncompatibleEpochs")
E_INCOMPATIBLE_AMOUNT = Abort("storage_resource", 2, "EIncompatibleAmount")
E_INVALID_EPOCH_RANGE = Abort("storage_resource", 3, "EInvalidEpochRange")
# storage_pool.move
E_POOL_BLOB_NOT_DELETABLE = Abort("storage_pool", 0, "EBlobNotDeletable")
E_POOL_RESOURCE_BOUNDS = Abort("storage_pool", 1, "EResourceBounds")
E_POOL_ALREADY_CERTIFIED = Abort("storage_pool", 2, "EAlreadyCertified")
E_POOL_INVALID_BLOB_ID = Abort("storage_pool", 3, "EInvalidBlobId")
E_POOL_INVALID_BLOB_PERSISTENCE_TYPE = Abort("storage_pool", 4, "EInvalidBlobPersistenceType")
E_POOL_INVALID_BLOB_OBJECT = Abort("storage_pool", 5, "EInvalidBlobObject")
E_POOL_INSUFFICIENT_CAPACITY = Abort("storage_pool", 6, "EInsufficientCapacity")
E_POOL_NOT_EMPTY = Abort("storage_pool", 7, "EPoolNotEmpty")
E_POOL_INVALID_BLOB_SIZE = Abort("storage_pool", 8, "EInvalidBlobSize")
E_POOL_INVALID_BLOB_COUNT = Abort("storage_pool", 9, "EInvalidBlobCount")
E_POOL_WRONG_VERSION = Abort("storage_pool", 10, "EWrongVersion")
E_POOL_INCOMPATIBLE_END_EPOCH = Abort("storage_pool", 11, "EIncompatibleEndEpoch")
E_POOL_DUPLICATE_METADATA = Abort("storage_pool", 12, "EDuplicateMetadata")
E_POOL_MISSING_METADATA = Abort("storage_pool", 13, "EMissingMetadata")
E_POOL_INVALID_PERCENT = Abort("storage_pool", 14, "EInvalidPercent")
# the Sui framework (package 0x2)
E_BALANCE_NON_ZERO = Abort("balance", 0, "ENonZero")
E_BALANCE_NOT_ENOUGH = Abort("balance", 2, "ENotEnough")
E_VEC_MAP_KEY_MISSING = Abort("vec_map", 1, "EKeyDoesNotExist")
E_FIELD_ALREADY_EXISTS = Abort("dynamic_field", 0, "EFieldAlreadyExists")
E_FIELD_DOES_NOT_EXIST = Abort("dynamic_field", 1, "EFieldDoesNotExist")
E_TABLE_NOT_EMPTY = Abort("object_table", 0, "ETableNotEmpty")
# wal_exchange.move
E_EXCHANGE_INSUFFICIENT_FUNDS = Abort("wal_exchange", 0, "EInsufficientFundsInExchange")
E_EXCHANGE_INSUFFICIENT_INPUT = Abort("wal_exchange", 1, "EInsufficientInputBalance")

_ALL = [v for v in list(globals().values()) if isinstance(v, Abort)]
_BY_LOCATION = {(a.module, a.code): a for a in _ALL}


def by_location(module: str, code: int) -> Abort | None:
    return _BY_LOCATION.get((module, code))
