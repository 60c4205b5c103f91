"""The devnet storage nodes' HTTP server: HTTP/1.1 with keep-alive, and HTTP/2 with prior
knowledge (h2c), on trio.

Why not hypercorn: a node's own work per sliver is
about half a millisecond (verification and a record write), and hypercorn's h11 and ASGI
machinery costs more than that again per request, measured; a store at n=1000 is 2000 sliver
PUTs and a read 334 GETs, on the two cores the client needs too. This server does what the
storage-node API needs and nothing else: requests with a `Content-Length` or chunked body,
answers with a `Content-Length`, keep-alive, and h2c for HTTP/2 clients (real nodes speak
HTTP/2; `h2` does the framing). TLS is not served: the devnet listens on loopback.

The node sees `walrusfs.devnet.http.Request` and answers a `Response`. A body the handler did
not read (a refusal before the upload arrived) is read and dropped, up to `http.DRAIN_LIMIT`,
before the answer is sent, so the client, still sending, reads the answer rather than a reset;
a longer one is answered and the connection closed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import trio

from walrusfs.devnet import http

log = logging.getLogger(__name__)

Handler = Callable[[http.Request], Awaitable[http.Response]]

RECEIVE_SIZE = 256 * 1024
MAX_HEAD = 64 * 1024  # the largest request head (request line and headers)
KEEP_ALIVE = 30.0  # seconds an idle connection is kept
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_WINDOW = 16 << 20  # flow-control window granted to HTTP/2 clients (connection and streams)
#: CORS as a Walrus storage node sends it (walrus `crates/walrus-service/src/node/server.rs`,
#: `cors_layer`: tower-http's `CorsLayer` with any origin, method and header): every answer
#: allows any origin, and a preflight (`OPTIONS` with `access-control-request-method`) is
#: answered 200 allowing every method and header.
CORS_HEADERS = (
    ("access-control-allow-origin", "*"),
    ("vary", "origin, access-control-request-method, access-control-request-headers"),
)
PREFLIGHT_HEADERS = (
    ("access-control-allow-methods", "*"),
    ("access-control-allow-headers", "*"),
)
REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    413: "Content Too Large",
    451: "Unavailable For Legal Reasons",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class _BadRequest(Exception):
    """Not HTTP we serve: answered 400 and the connection closed."""


class _Reader:
    """Buffered reads of one connection."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def fill(self) -> bool:
        """More bytes; False at the end of the stream. A client silent for KEEP_ALIVE in the
        middle of a request is gone (TooSlowError)."""
        with trio.fail_after(KEEP_ALIVE):
            data = await self.stream.receive_some(RECEIVE_SIZE)
        self.buf += data
        return bool(data)

    async def head(self) -> bytes | None:
        """The next request's head without its blank line; None if the client closed."""
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            if len(self.buf) > MAX_HEAD:
                raise _BadRequest("request head too large")
            if not await self.fill():
                if self.buf:
                    raise _BadRequest("connection closed in a request head")
                return None
        head = bytes(self.buf[:end])
        del self.buf[: end + 4]
        return head

    async def line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            if len(self.buf) > MAX_HEAD or not await self.fill():
                raise _BadRequest("bad chunked body")
        line = bytes(self.buf[:end])
        del self.buf[: end + 2]
        return line

    async def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not await self.fill():
                raise _BadRequest(f"body cut short at {len(self.buf)} of {n} bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


class _Body:
    """The request body as the ASGI-style messages `http.Request.body` reads: all of a
    Content-Length body at once, a chunked body chunk by chunk."""

    def __init__(self, reader: _Reader, length: int | None, chunked: bool) -> None:
        self.reader = reader
        self.left = length or 0  # Content-Length bytes not read yet
        self.chunked = chunked
        self.done = not chunked and not self.left
        self.broken = False  # the client went away or sent garbage: close after answering

    async def receive(self) -> dict[str, Any]:
        """The next message; "http.disconnect" (as ASGI says it) when the body cannot be
        read, which the node answers 400 DISCONNECTED."""
        if self.broken:
            return {"type": "http.disconnect"}
        try:
            return await self._receive()
        except (
            _BadRequest,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            trio.TooSlowError,
            OSError,
        ) as exc:
            log.info("request body: %s", exc)
            self.broken = self.done = True
            return {"type": "http.disconnect"}

    async def _receive(self) -> dict[str, Any]:
        if self.done:
            return {"type": "http.request", "body": b"", "more_body": False}
        if not self.chunked:
            data = await self.reader.exactly(self.left)
            self.left = 0
            self.done = True
            return {"type": "http.request", "body": data, "more_body": False}
        size_line = (await self.reader.line()).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise _BadRequest("bad chunk size") from None
        if size == 0:
            while await self.reader.line():  # trailers, up to the blank line
                pass
            self.done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        data = await self.reader.exactly(size)
        if await self.reader.line():
            raise _BadRequest("chunk without its CRLF")
        return {"type": "http.request", "body": data, "more_body": True}

    async def drain(self) -> bool:
        """Read and drop what the handler left; False if that is more than DRAIN_LIMIT (the
        connection must then close)."""
        dropped = 0
        while not self.done:
            if not self.chunked and self.left > http.DRAIN_LIMIT - dropped:
                return False
            message = await self.receive()
            dropped += len(message.get("body", b""))
            if dropped > http.DRAIN_LIMIT:
                return False
        return not self.broken


async def serve(
    handler: Handler, host: str, port: int, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve `handler` on host:port until cancelled; started with the port (0: any free one).

    Raises:
        OSError: the port cannot be bound.
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(functools.partial(_connection, handler), listeners)


async def _connection(handler: Handler, stream: trio.SocketStream) -> None:
    reader = _Reader(stream)
    async with stream:
        try:
            with trio.move_on_after(KEEP_ALIVE):
                while len(reader.buf) < len(H2_PREFACE) and H2_PREFACE.startswith(reader.buf):
                    if not await reader.fill():
                        return
            if not reader.buf:
                return
            if reader.buf.startswith(H2_PREFACE):
                await _H2(handler, stream).run(bytes(reader.buf))
                return
            while True:
                head = None
                with trio.move_on_after(KEEP_ALIVE):  # idle connections are closed
                    head = await reader.head()
                if head is None or not await _exchange(handler, stream, reader, head):
                    return
        except _BadRequest as exc:
            log.info("bad request: %s", exc)
            err = http.ApiError("INVALID_ARGUMENT", "BAD_REQUEST", str(exc), http.GLOBAL_DOMAIN)
            rsp = http.Response(400, err.body())
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(_head(rsp, close=True) + rsp.body)
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            ConnectionError,
            trio.TooSlowError,
        ):
            return  # the client went away


async def _exchange(
    handler: Handler, stream: trio.SocketStream, reader: _Reader, head: bytes
) -> bool:
    """One request and its answer; False when the connection must close."""
    lines = head.split(b"\r\n")
    try:
        method, target, version = lines[0].decode("latin-1").split(" ")
    except ValueError:
        raise _BadRequest("bad request line") from None
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _BadRequest(f"unsupported {version}")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise _BadRequest("bad header line")
        headers[name.strip().lower()] = value.strip()
    length: int | None = None
    if b"content-length" in headers:
        try:
            length = int(headers[b"content-length"])
        except ValueError:
            raise _BadRequest("bad Content-Length") from None
    chunked = headers.get(b"transfer-encoding", b"").lower() == b"chunked"
    close = version == "HTTP/1.0" or headers.get(b"connection", b"").lower() == b"close"
    path, _, query = target.partition("?")
    body = _Body(reader, length, chunked)
    request = http.Request(
        _routed_method(method), path, parse_qs(query), {}, body.receive, None if chunked else length
    )
    preflight = _is_preflight(method, headers)
    rsp = _preflight() if preflight else await _answer(handler, request)
    if not await body.drain():
        close = True
    await stream.send_all(_head(rsp, close=close, preflight=preflight))
    if rsp.body and method != "HEAD":
        await stream.send_all(rsp.body)
    return not close


def _routed_method(method: str) -> str:
    """HEAD is answered as GET without the body, as axum routes it (every GET route of a
    Walrus node answers HEAD)."""
    return "GET" if method == "HEAD" else method


def _is_preflight(method: str, headers: dict[bytes, bytes]) -> bool:
    return method == "OPTIONS" and b"access-control-request-method" in headers


def _preflight() -> http.Response:
    return http.Response(200, b"", "text/plain")


async def _answer(handler: Handler, request: http.Request) -> http.Response:
    """The handler's answer; a refusal it raises as its Walrus status, a bug as 500."""
    try:
        return await handler(request)
    except http.ApiError as exc:
        return http.Response(exc.http_code, exc.body())
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        err = http.ApiError("INTERNAL", "INTERNAL", "internal error", http.GLOBAL_DOMAIN)
        return http.Response(500, err.body())


def _cors(preflight: bool) -> tuple[tuple[str, str], ...]:
    return CORS_HEADERS + (PREFLIGHT_HEADERS if preflight else ())


def _head(rsp: http.Response, *, close: bool, preflight: bool = False) -> bytes:
    reason = REASONS.get(rsp.status, "Unknown")
    extra = "connection: close\r\n" if close else ""
    cors = "".join(f"{k}: {v}\r\n" for k, v in _cors(preflight))
    return (
        f"HTTP/1.1 {rsp.status} {reason}\r\ncontent-type: {rsp.content_type}\r\n"
        f"content-length: {len(rsp.body)}\r\n{cors}{extra}\r\n"
    ).encode("latin-1")


class _H2:
    """One HTTP/2 connection: a task per request, one writer at a time."""

    def __init__(self, handler: Handler, stream: trio.SocketStream) -> None:
        self.handler = handler
        self.stream = stream
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        self.send_lock = trio.Lock()
        self.window_changed = trio.Event()
        self.requests: dict[int, tuple[dict[bytes, bytes], bytearray]] = {}
        self.active = 0  # requests being answered

    async def flush(self) -> None:
        async with self.send_lock:
            data = self.conn.data_to_send()
            if data:
                await self.stream.send_all(data)

    async def run(self, received: bytes) -> None:
        self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: H2_WINDOW})
        self.conn.increment_flow_control_window(H2_WINDOW)
        await self.flush()
        async with trio.open_nursery() as nursery:
            data = received
            while True:
                try:
                    events = self.conn.receive_data(data)
                except h2.exceptions.ProtocolError as exc:
                    log.info("HTTP/2 protocol error: %s", exc)
                    await self.flush()
                    break
                for event in events:
                    if not self._event(event, nursery):
                        nursery.cancel_scope.cancel()
                        await self.flush()
                        return
                await self.flush()
                data = b""
                with trio.move_on_after(KEEP_ALIVE):
                    data = await self.stream.receive_some(RECEIVE_SIZE)
                if not data and not self.active:
                    break  # closed, or idle for KEEP_ALIVE
            nursery.cancel_scope.cancel()

    def _event(self, event: h2.events.Event, nursery: trio.Nursery) -> bool:
        if isinstance(event, h2.events.RequestReceived):
            headers = {bytes(k).lower(): bytes(v) for k, v in event.headers}
            self.requests[event.stream_id] = (headers, bytearray())
        elif isinstance(event, h2.events.DataReceived):
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            entry = self.requests.get(event.stream_id)
            if entry is not None:
                entry[1].extend(event.data)
                if len(entry[1]) > http.DRAIN_LIMIT:
                    del self.requests[event.stream_id]
                    self.conn.reset_stream(event.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
        elif isinstance(event, h2.events.StreamEnded):
            entry = self.requests.pop(event.stream_id, None)
            if entry is not None:
                nursery.start_soon(self._respond, event.stream_id, *entry)
        elif isinstance(event, h2.events.StreamReset):
            self.requests.pop(event.stream_id, None)
            self._wake()
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self._wake()
        elif isinstance(event, h2.events.ConnectionTerminated):
            return False
        return True

    def _wake(self) -> None:
        self.window_changed.set()
        self.window_changed = trio.Event()

    async def _respond(self, stream_id: int, headers: dict[bytes, bytes], body: bytearray) -> None:
        self.active += 1
        try:
            await self._answer_stream(stream_id, headers, body)
        finally:
            self.active -= 1

    async def _answer_stream(
        self, stream_id: int, headers: dict[bytes, bytes], body: bytearray
    ) -> None:
        method = headers.get(b":method", b"GET").decode("latin-1")
        target = headers.get(b":path", b"/").decode("latin-1")
        path, _, query = target.partition("?")
        data = bytes(body)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": data, "more_body": False}

        request = http.Request(
            _routed_method(method), path, parse_qs(query), {}, receive, len(data)
        )
        preflight = _is_preflight(method, headers)
        rsp = _preflight() if preflight else await _answer(self.handler, request)
        payload = b"" if method == "HEAD" else rsp.body
        try:
            reply = [
                (b":status", str(rsp.status).encode()),
                (b"content-type", rsp.content_type.encode()),
                (b"content-length", str(len(rsp.body)).encode()),
            ] + [(k.encode(), v.encode()) for k, v in _cors(preflight)]
            self.conn.send_headers(stream_id, reply, end_stream=not payload)
            view = memoryview(payload)
            while view:
                window = min(
                    self.conn.local_flow_control_window(stream_id),
                    self.conn.max_outbound_frame_size,
                )
                if window <= 0:
                    changed = self.window_changed
                    await self.flush()
                    await changed.wait()
                    continue
                piece, view = view[:window], view[window:]
                self.conn.send_data(stream_id, bytes(piece), end_stream=not view)
                await self.flush()
            await self.flush()
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            return  # the client reset the stream
