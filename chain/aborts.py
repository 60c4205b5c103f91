"""Move abort codes of the functions walrusfs calls, by module, with their constant names.

One table for both sides: the client names an abort it receives (`by_location`), and the
stand-in raises exactly these (`chain.localnet.moves`). Values are from the Move sources
(contracts/walrus/sources/system/*.move, wal_exchange.move, and the Sui framework's
`balance` and `vec_map`, whose aborts Walrus calls can surface).
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
E_BALANCE_NON_ZERO = Abort("balance", 0, "ENonZero")
E_BALANCE_NOT_ENOUGH = Abort("balance", 2, "ENotEnough")
E_VEC_MAP_KEY_MISSING = Abort("vec_map", 1, "EKeyDoesNotExist")
E_EXCHANGE_INSUFFICIENT_FUNDS = Abort("wal_exchange", 0, "EInsufficientFundsInExchange")
E_EXCHANGE_INSUFFICIENT_INPUT = Abort("wal_exchange", 1, "EInsufficientInputBalance")

_ALL = [v for v in list(globals().values()) if isinstance(v, Abort)]
_BY_LOCATION = {(a.module, a.code): a for a in _ALL}


def by_location(module: str, code: int) -> Abort | None:
    return _BY_LOCATION.get((module, code))
