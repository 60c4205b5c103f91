"""`walrusfs info FILE...`: where each file of a mount is on Walrus.

The values are the computed `user.walrus.*` attributes of the file (docs/mount.md, "Extended
attributes"), read by name: listxattr does not list them, so that tools copying attributes
never carry them to files where they cannot be set.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
from pathlib import Path
from typing import Any

from walrusfs.errors import InputError
from walrusfs.fs.ops import WALRUS_XATTR_PREFIX, WALRUS_XATTRS


def file_info(path: Path) -> dict[str, str | None]:
    """The file's computed attributes, None for those without a value yet (a file not fully
    uploaded has no blob ID).

    Raises:
        InputError: the path cannot be read, or is not a regular file of a walrusfs mount.
    """
    out: dict[str, str | None] = {}
    for key in WALRUS_XATTRS:
        name = (WALRUS_XATTR_PREFIX + key.encode()).decode()
        try:
            out[key] = os.getxattr(path, name).decode()
        except OSError as exc:
            if exc.errno == errno.ENODATA and key != "state":
                out[key] = None
                continue
            if exc.errno in (errno.ENODATA, errno.ENOTSUP):
                raise InputError(f"{path}: not a regular file of a walrusfs mount") from None
            raise InputError(f"{path}: {exc.strerror}") from None
    return out


def cmd_info(args: argparse.Namespace) -> int:
    """Where each file is on Walrus: its state (staged, uploading, certified), blob or quilt
    patch IDs (one per chunk), Sui Blob objects and the earliest end epoch (--json for
    scripts)."""
    infos = {str(p): file_info(Path(p)) for p in args.files}
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    for i, (path, info) in enumerate(infos.items()):
        if i:
            print()
        print(f"file         {path}")
        for key, value in info.items():
            print(f"{key:<12} {'-' if value is None else value}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("info", help=cmd_info.__doc__, description=cmd_info.__doc__)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)
