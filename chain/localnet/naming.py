"""How the stand-in spells Sui addresses and the framework's types.

Objects, owners and type strings are compared as text everywhere (the ledger's rows, a
transaction's inputs, a client's filters), so every address is written one way: `0x` and 64
lower-case hex digits, as a full node renders it. The executor, the Move twins, the resolver
and the gRPC services all normalise through these functions, which is why they live apart from
any one of them.
"""

from __future__ import annotations

SUI_FRAMEWORK = "0x" + "0" * 63 + "2"
SUI_TYPE = f"{SUI_FRAMEWORK}::sui::SUI"


def normalize_address(addr: str) -> str:
    """`0x2` -> `0x00..02` (64 hex digits, lower case); `ValueError` if not an address."""
    text = addr.lower().removeprefix("0x")
    if not text or len(text) > 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"not a Sui address: {addr!r}")
    return "0x" + text.rjust(64, "0")


def coin_type(inner: str) -> str:
    return f"{SUI_FRAMEWORK}::coin::Coin<{inner}>"


def coin_inner(type_: str) -> str | None:
    prefix = f"{SUI_FRAMEWORK}::coin::Coin<"
    return type_[len(prefix) : -1] if type_.startswith(prefix) else None
