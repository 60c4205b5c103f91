"""The Sui stand-in as a process: `python -m walrusfs.devnet.sui LEDGER PORT`.

The launcher starts it in the background; it serves `chain.localnet` over gRPC on 127.0.0.1
until SIGTERM or SIGINT. Genesis is the launcher's job, so the ledger must already exist.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from pathlib import Path

from chain.localnet.node import Localnet
from chain.localnet.server import LocalnetServer

log = logging.getLogger("walrusfs.devnet.sui")


def _watch(ledger: Path) -> None:
    """Stop when the ledger is deleted (devnet destroyed, a test's temp dir removed), so an
    orphaned stand-in does not hold its port forever."""
    while ledger.exists():
        time.sleep(1.0)
    log.error("%s vanished: exiting", ledger)
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="walrusfs devnet: the Sui stand-in")
    parser.add_argument("ledger", type=Path)
    parser.add_argument("port", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    threading.Thread(target=_watch, args=(args.ledger,), name="ledger-watch", daemon=True).start()
    net = Localnet.open(args.ledger)
    server = LocalnetServer(net, "127.0.0.1", args.port)
    try:
        port = server.start()
        log.info("Sui stand-in serving gRPC on 127.0.0.1:%d, epoch %d", port, net.walrus_epoch())
        signum = signal.sigwait({signal.SIGTERM, signal.SIGINT})
        log.info("signal %d: stopping", signum)
    finally:
        server.stop()
        net.close()


if __name__ == "__main__":
    main()
