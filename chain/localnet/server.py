"""The stand-in's network server: the gRPC services (`chain.localnet.services`) and
gRPC-web on one port of 127.0.0.1.

`LocalnetServer` runs them on their own asyncio loop in a daemon thread (the tests run it in
process; the devnet launcher runs it in a process of its own), and wires the ledger's
checkpoint notifications, which arrive on the committing thread, onto that loop.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import grpclib.server

from chain.localnet import grpcweb
from chain.localnet.node import Localnet
from chain.localnet.services import SuiServices


class _DualServer(grpclib.server.Server):
    """grpclib's server whose connections are sniffed: native gRPC (HTTP/2) goes to grpclib,
    gRPC-web (HTTP/1.1) is answered by the same handlers (`chain.localnet.grpcweb`)."""

    def __init__(self, services: SuiServices) -> None:
        super().__init__([services])
        self._services = services

    def _protocol_factory(self) -> Any:
        return grpcweb.SniffingProtocol(
            super()._protocol_factory, self._mapping, self._services.info_headers
        )


class LocalnetServer:
    """The services on their own asyncio loop in a daemon thread."""

    def __init__(self, net: Localnet, host: str = "127.0.0.1", port: int = 0) -> None:
        self.net = net
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: grpclib.server.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Start serving; returns the port (an ephemeral one when `port` was 0).

        Raises:
            OSError: the port cannot be bound (in use, say); whatever the serving thread met
                while starting is raised here.
        """
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                services = SuiServices(self.net)

                def wake() -> None:
                    loop.call_soon_threadsafe(services.subscription.announce)

                self.net.ledger.on_checkpoint = wake
                server = _DualServer(services)
                loop.run_until_complete(server.start(self.host, self.port))
                raw = server._server  # grpclib exposes no bound-port accessor
                sockets = raw.sockets if isinstance(raw, asyncio.Server) else ()
                self.port = sockets[0].getsockname()[1]
                self._server = server
            except BaseException as exc:
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            server.close()
            loop.run_until_complete(server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, name="localnet-grpc", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self.port

    def stop(self) -> None:
        self.net.ledger.on_checkpoint = None
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop = None
