"""Reading the user's input files and writing output files for the CLI commands.

Every failure is an `InputError` (exit code 3) that names the path and the problem, so no
command shows a traceback for a missing file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from walrusfs.errors import InputError


def read_input(name: str, directory_hint: str = "give a file") -> bytes:
    """The bytes of file `name` ('-' is standard input)."""
    if name == "-":
        return sys.stdin.buffer.read()
    path = Path(name)
    try:
        if path.is_dir():
            raise InputError(f"{name}: is a directory; {directory_hint}")
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except PermissionError:
        raise InputError(f"{name}: permission denied") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot read: {exc.strerror or exc}") from None


def write_output(name: str | None, data: bytes) -> None:
    """Write `data` to file `name` whole or not at all (temp file + rename); None is stdout."""
    if name is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    tmp = Path(f"{name}.walrusfs-tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, name)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{name}: cannot write: {exc.strerror or exc}") from None
