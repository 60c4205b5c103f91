"""The kernel's table of mounts (/proc/self/mounts), parsed in one place.

The kernel writes each mount as `source target fstype options 0 0`, with space, tab, newline
and backslash in the source and target escaped as three-digit octal (`\\040`, `\\011`, `\\012`,
`\\134`, see the kernel's `seq_show_option`/`mangle` in fs/proc_namespace.c) and every other
byte as it is: a mountpoint named `mé 5` is the UTF-8 bytes of `mé` then `\\0405`. So the file is
read as bytes, unescaped as bytes, and decoded like any other path (os.fsdecode).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_OCTAL = re.compile(rb"\\([0-7]{3})")


@dataclass(frozen=True)
class MountEntry:
    source: str
    target: str  # the mountpoint, as an absolute path
    fstype: str  # e.g. "fuse.walrusfs"
    options: tuple[str, ...]


def _unescape(field: bytes) -> str:
    return os.fsdecode(_OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), field))


def parse(text: bytes) -> list[MountEntry]:
    """The entries of a mounts table in the kernel's format (lines that do not parse are
    skipped: the kernel writes none)."""
    entries = []
    for line in text.split(b"\n"):
        parts = line.split(b" ")
        if len(parts) < 4:
            continue
        entries.append(
            MountEntry(
                source=_unescape(parts[0]),
                target=_unescape(parts[1]),
                fstype=_unescape(parts[2]),
                options=tuple(_unescape(parts[3]).split(",")),
            )
        )
    return entries


def mounts(table: Path = Path("/proc/self/mounts")) -> list[MountEntry]:
    """Every mount this process sees, in the kernel's order (later mounts stack on earlier).

    Raises:
        OSError: `table` cannot be read.
    """
    return parse(table.read_bytes())


def mounted_at(path: Path | str) -> MountEntry | None:
    """The topmost mount whose mountpoint is `path` (symlinks resolved), or None."""
    target = os.path.realpath(path)
    found = None
    for entry in mounts():
        if entry.target == target:
            found = entry
    return found
