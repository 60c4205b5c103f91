"""The slice of BCS (Binary Canonical Serialization) that Walrus client data uses.

Only what the codec needs: ULEB128 lengths, fixed-width little-endian integers, strings and
string maps. A `Reader` raises `MalformedBcs` on truncation so a short body from the network is
never mistaken for a shorter value.
"""

from __future__ import annotations

from collections.abc import Mapping

from codec.errors import MalformedBcs

# ULEB128 lengths in BCS are u32 values: 5 bytes at most.
_MAX_ULEB_BYTES = 5


def uleb128(value: int) -> bytes:
    """ULEB128 of `value`.

    Raises:
        ValueError: `value` is negative.
    """
    if value < 0:
        raise ValueError("ULEB128 encodes non-negative integers only")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_str(value: str) -> bytes:
    raw = value.encode("utf-8")
    return uleb128(len(raw)) + raw


def encode_str_map(mapping: Mapping[str, str]) -> bytes:
    """BCS `map<string,string>`: entries ordered by their serialized key bytes.

    Ordering by serialized bytes (length prefix first) is what the Rust `bcs` crate and
    `@mysten/bcs` do; it differs from plain string order when key lengths differ.
    """
    entries = sorted((encode_str(k), encode_str(v)) for k, v in mapping.items())
    return uleb128(len(entries)) + b"".join(k + v for k, v in entries)


class Reader:
    """A cursor over a BCS buffer. Every read raises `MalformedBcs` when the buffer is too
    short for it or the value is not canonical BCS (a ULEB128 with a trailing zero byte or
    above u32, a string that is not UTF-8, a map with a duplicate key)."""

    __slots__ = ("_buf", "pos")

    def __init__(self, buf: bytes | memoryview, pos: int = 0) -> None:
        self._buf = memoryview(buf)
        self.pos = pos

    @property
    def remaining(self) -> int:
        return len(self._buf) - self.pos

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self._buf):
            raise MalformedBcs(
                f"truncated BCS: need {n} bytes at offset {self.pos}, "
                f"only {len(self._buf) - self.pos} left"
            )
        view = self._buf[self.pos : self.pos + n]
        self.pos += n
        return view

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "little")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "little")

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "little")

    def uleb128(self) -> int:
        value = 0
        for i in range(_MAX_ULEB_BYTES):
            byte = self.u8()
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if i > 0 and byte == 0:
                    raise MalformedBcs("non-canonical ULEB128 (trailing zero byte)")
                if value > 0xFFFFFFFF:
                    raise MalformedBcs("ULEB128 length exceeds u32")
                return value
        raise MalformedBcs("ULEB128 longer than 5 bytes")

    def string(self) -> str:
        raw = self.take(self.uleb128())
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedBcs(f"BCS string is not UTF-8: {exc}") from exc

    def str_map(self) -> dict[str, str]:
        count = self.uleb128()
        out: dict[str, str] = {}
        for _ in range(count):
            key = self.string()
            if key in out:
                raise MalformedBcs(f"duplicate key {key!r} in BCS map")
            out[key] = self.string()
        return out

    def end(self) -> None:
        """Assert the whole buffer was consumed: trailing bytes mean a framing error.

        Raises:
            MalformedBcs: bytes are left.
        """
        if self.remaining:
            raise MalformedBcs(f"{self.remaining} unexpected trailing bytes after BCS value")
