"""Logging of the mount daemon: one log per volume (`<data>/volumes/<name>/mount.log`),
rotated at 10 MiB with 3 old files kept, and systemd's readiness notification.

The daemon's stdout and stderr are the log file too (tracebacks of crashes, and the thread
stacks `kill -USR1 <pid>` dumps through faulthandler): on every rotation they are pointed at
the new file, so nothing keeps writing into a rotated one.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import sys
from pathlib import Path

MAX_BYTES = 10 << 20
BACKUPS = 3
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
NOISY = ("httpx", "httpcore", "pgrpc_client", "hpack", "grpc")


class _Rotating(logging.handlers.RotatingFileHandler):
    def doRollover(self) -> None:
        super().doRollover()
        if self.stream is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(self.stream.fileno(), 1)
            os.dup2(self.stream.fileno(), 2)


def setup_daemon(log_path: Path, debug: bool) -> None:
    handler = _Rotating(log_path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO, handlers=[handler], force=True
    )
    quiet_libraries()


def quiet_libraries() -> None:
    """The libraries' loggers at WARNING, pysui's gRPC client silent (see below): the
    daemon's and the upload worker's logs."""
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pysui logs the traceback of every failed gRPC call at ERROR and then returns the failure,
    # which chain/client.py maps to a ChainError and reports itself (an expected NOT_FOUND
    # included): the traceback says nothing more, and the log must hold none (a traceback
    # there means a bug of ours)
    logging.getLogger("pgrpc_client").setLevel(logging.CRITICAL)


def notify_ready(status: str) -> bool:
    """`READY=1` to systemd when started as a `Type=notify` unit ($NOTIFY_SOCKET)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}\n".encode())
    except OSError as exc:
        # the mount works regardless; only systemd's view of it is late
        logging.getLogger(__name__).warning("could not notify systemd (%s): %s", address, exc)
        return False
    return True
