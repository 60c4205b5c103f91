"""What each setting may be: the checks config.toml and the command line share.

Every check takes a value as parsed (a TOML value, or a number or string from the command line)
and returns it typed, or raises ValueError whose text says what is expected: the config file
prefixes it with the file and key (walrusfs/configfile.py), argparse with the option.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

#: The most epochs ahead a blob's storage can be bought or extended to: Walrus's
#: `max_epochs_ahead` (System object) on mainnet and testnet, and the devnet's genesis value
#: (chain/localnet, GenesisConfig). More would make every upload fail on chain; the mount also
#: checks the connected network's own value.
MAX_EPOCHS = 53
#: Sizes beyond this are typos (and would overflow SQLite's 64-bit integers further down).
MAX_SIZE = 1 << 50
#: The smallest value each size setting may take, and why.
MIN_SIZES = {
    # writes wait for room in staging: below a few MiB every write of a file stalls, then
    # fails with ENOSPC
    "staging_limit": 4 << 20,
    # a few slivers and their metadata
    "cache_size": 16 << 20,
    # the mount's fixed part (128 MiB) plus room for one encode
    "memory": 256 << 20,
}
#: The shortest checkpoint period: each checkpoint is a blob paid in WAL.
MIN_CHECKPOINT_INTERVAL = 60.0
#: a read that needs the storage nodes may wait this long at most (walrusfs/store/reads.py)
READ_TIMEOUT_RANGE = (1.0, 600.0)
#: A volume name is a directory name, part of the FUSE `fsname=` option (where a comma would
#: split it) and of the checkpoints' on-chain attributes: letters, digits, `.`, `_`, `-`.
VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def parse_size(text: str | int) -> int:
    """`512M`, `2G`, `1.5T`, `4096` (bytes).

    Raises:
        ValueError: not a size, negative, or more than `MAX_SIZE`.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    elif isinstance(text, str):
        units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
        t = text.strip().lower().removesuffix("b").removesuffix("i")
        num, unit = (t[:-1], t[-1]) if t and t[-1] in units else (t, "")
        try:
            value = int(float(num) * units[unit])  # nan and inf raise here
        except (ValueError, OverflowError):
            raise ValueError(f"invalid size {text!r} (e.g. 512M, 2G)") from None
    else:
        raise ValueError(f"invalid size {text!r} (e.g. 512M, 2G)")
    if value < 0:
        raise ValueError(f"invalid size {text!r}: must not be negative")
    if value > MAX_SIZE:
        raise ValueError(f"invalid size {text!r}: more than 1P")
    return value


def _mib(n: int) -> str:
    return f"{n >> 20}M"


def check_size(name: str, value: int) -> int:
    """`value` if it is a usable `name` (a key of MIN_SIZES), else ValueError saying why."""
    least = MIN_SIZES[name]
    if value < least:
        raise ValueError(f"at least {_mib(least)} (got {value} bytes)")
    return value


def check_epochs(value: int, what: str = "epochs") -> int:
    """`value` if it is between 1 and MAX_EPOCHS, else ValueError naming it `what`."""
    if not 1 <= value <= MAX_EPOCHS:
        raise ValueError(
            f"{what} between 1 and {MAX_EPOCHS} (Walrus sells storage at most {MAX_EPOCHS} "
            f"epochs ahead), got {value}"
        )
    return value


def check_seconds(value: float, least: float = 0.0) -> float:
    """A finite number of seconds above `least` (NaN would never compare as due, inf never
    come)."""
    if not math.isfinite(value) or value <= least:
        raise ValueError(
            f"a finite number of seconds {'> 0' if not least else f'>= {least:g}'}, got {value}"
        )
    return value


def epochs(v: Any) -> int:
    """A whole number of epochs, 1..MAX_EPOCHS (TOML: an integer, not a boolean)."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"a whole number of epochs between 1 and {MAX_EPOCHS}")
    return check_epochs(v)


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError("a number of seconds")
    return float(v)


def seconds(v: Any) -> float:
    """A finite number of seconds > 0."""
    return check_seconds(_number(v))


def checkpoint_interval(v: Any) -> float:
    """Seconds between checkpoints: finite, at least MIN_CHECKPOINT_INTERVAL."""
    value = _number(v)
    if math.isfinite(value) and 0 < value < MIN_CHECKPOINT_INTERVAL:
        raise ValueError(
            f"at least {MIN_CHECKPOINT_INTERVAL:g} seconds (each checkpoint is a blob paid in "
            f"WAL), got {value:g}"
        )
    return check_seconds(value)


def read_timeout(v: Any) -> float:
    """Seconds a read may wait for the storage nodes, within READ_TIMEOUT_RANGE."""
    value = _number(v)
    low, high = READ_TIMEOUT_RANGE
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"between {low:g} and {high:g} seconds, got {value:g}")
    return value


def fraction(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
        raise ValueError("a fraction between 0 and 1")
    return float(v)


def boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("true or false")
    return v


def nonempty(v: Any) -> str:
    """A non-empty string."""
    if not isinstance(v, str) or not v:
        raise ValueError("a non-empty string")
    return v


def _size(v: Any) -> int:
    try:
        return parse_size(v)
    except ValueError:
        raise ValueError('a size such as "512M" or "2G" (at most 1P)') from None


def bounded_size(name: str) -> Callable[[Any], int]:
    """The check of the size setting `name` (a key of MIN_SIZES)."""

    def conv(v: Any) -> int:
        return check_size(name, _size(v))

    return conv


def path(v: Any) -> str:
    """A path as written (expanded where it is used)."""
    s = nonempty(v)
    if "\0" in s:
        raise ValueError("a path (without NUL characters)")
    return s


def volume_name(v: Any) -> str:
    """A volume's name: a directory under `<data>/volumes`, the source of its FUSE mount
    (`walrusfs:NAME`) and an attribute of its checkpoints, so a plain one."""
    name = nonempty(v)
    if not VOLUME_NAME.fullmatch(name):
        raise ValueError(
            "a volume name of at most 64 letters, digits, '.', '_' and '-' that starts with a "
            "letter or digit"
        )
    return name


def object_id(v: Any) -> str:
    """A Sui object ID: `0x` and at most 64 hex digits."""
    s = nonempty(v)
    if not s.startswith("0x") or len(s) > 66:
        raise ValueError('an object ID such as "0x6c25..."')
    try:
        int(s, 16)
    except ValueError:
        raise ValueError('an object ID such as "0x6c25..."') from None
    return s


def object_ids(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise ValueError('a list of object IDs, e.g. ["0x..."]')
    return tuple(object_id(x) for x in v)


def relay_url(v: Any) -> str:
    """An upload relay's http(s) URL, or "" for none."""
    if not isinstance(v, str):
        raise ValueError('an upload relay URL, e.g. "https://upload-relay.testnet.walrus.space"')
    if v == "":
        return v
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ValueError(
            f'{v!r}: an upload relay URL, e.g. "https://upload-relay.testnet.walrus.space"'
        )
    return v


def mist(v: Any) -> int:
    """A whole amount of MIST (10^-9 SUI), 0 or more, within a u64."""
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << 64:
        raise ValueError("a whole number of MIST (10^-9 SUI), 0 or more")
    return v


def grpc_url(v: Any) -> str:
    """`host:port` of a Sui full node's gRPC API (no scheme, no path)."""
    s = nonempty(v)
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit() or "/" in s:
        raise ValueError(
            'host:port of a Sui full node\'s gRPC API, e.g. "fullnode.testnet.sui.io:443"'
        )
    return s
