"""gRPC-web beside native gRPC on the stand-in's one port, as a Sui full node serves both.

A full node mounts its `sui.rpc.v2` services behind `tonic_web::GrpcWebLayer` (sui
`crates/sui-rpc-api/src/grpc/mod.rs`, `Services::into_router`) on an HTTP server that accepts
HTTP/1.1 and HTTP/2 on the same port, so a browser or Node `fetch` (the TypeScript SDK's default
transport, `GrpcWebFetchTransport` from `@protobuf-ts/grpcweb-transport`) and a native gRPC
client (pysui's grpclib) reach the same services. The stand-in does the same: every connection
is sniffed; one that opens with the HTTP/2 preface goes to grpclib unchanged, anything else is
read as HTTP/1.1 and answered here by the same handlers.

The protocol (grpc `doc/PROTOCOL-WEB.md`, grpc-web `docs/protocol.md`):

* requests are `POST /<package>.<Service>/<Method>` with `content-type` `application/grpc-web`,
  `application/grpc-web+proto` (binary) or `application/grpc-web-text[+proto]` (base64 of the
  same bytes); the body is one length-prefixed message frame (flag byte 0, 4-byte big-endian
  length);
* the answer is HTTP 200 with the same content type; its body is the reply's message frames
  followed by one trailer frame (flag byte 0x80) holding `grpc-status` and `grpc-message`
  (percent-encoded, gRPC `PROTOCOL-HTTP2.md`) as HTTP/1 header lines. A server-streaming call
  (SubscribeCheckpoints) is sent with chunked transfer encoding, one chunk per message;
* compressed frames (flag bit 1) are refused with UNIMPLEMENTED: the stand-in advertises no
  `grpc-accept-encoding`;
* `grpc-timeout` bounds a unary call (DEADLINE_EXCEEDED), as the full node's `GrpcTimeout`
  layer does;
* CORS for browsers: preflight `OPTIONS` is answered 204 with the allowed methods, the asked
  headers and a day of `max-age`; every answer carries `access-control-allow-origin` and
  exposes the gRPC status headers (the rules of the tonic-web CORS defaults the full node's
  layer was built from: `x-grpc-web`, `content-type`, `x-user-agent`, `grpc-timeout` allowed,
  `grpc-status`, `grpc-message`, `grpc-status-details-bin` exposed).

Every answer carries the full node's info headers (`x-sui-chain-id`, `x-sui-chain`,
`x-sui-epoch`, `x-sui-checkpoint-height`, `x-sui-timestamp-ms`; sui-rpc-api
`response.rs` `append_info_headers`), supplied by the caller.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import urllib.parse
from collections.abc import Callable
from typing import Any

import grpclib.const
from grpclib.exceptions import GRPCError

log = logging.getLogger(__name__)

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_HEAD = 64 * 1024  # request line and headers
MAX_BODY = 64 << 20  # the largest request body read (a full node caps messages likewise)
KEEP_ALIVE = 60.0  # seconds an idle HTTP/1.1 connection is kept
CORS_MAX_AGE = 24 * 3600
ALLOWED_HEADERS = "x-grpc-web,content-type,x-user-agent,grpc-timeout,x-sui-client-protocol-version"
EXPOSED_HEADERS = "grpc-status,grpc-message,grpc-status-details-bin"
WEB_TYPES = {
    "application/grpc-web": False,
    "application/grpc-web+proto": False,
    "application/grpc-web-text": True,
    "application/grpc-web-text+proto": True,
}
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}

InfoHeaders = Callable[[], dict[str, str]]


class _Failure(Exception):
    """An HTTP-level refusal (not a gRPC status): answered and the connection closed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def grpc_message(text: str) -> str:
    """`grpc-message` percent-encoded: every byte outside 0x20..0x7E, and `%` itself."""
    return urllib.parse.quote(text, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")


def parse_timeout(value: str) -> float | None:
    """Seconds from a `grpc-timeout` header (`<digits><unit>`); None if malformed."""
    if len(value) < 2 or not value[:-1].isdigit() or value[-1] not in _TIMEOUT_UNITS:
        return None
    return int(value[:-1]) * _TIMEOUT_UNITS[value[-1]]


class _WebStream:
    """What the stand-in's handlers use of a grpclib server stream: `recv_message` gives the
    decoded request, `send_message` writes one reply frame."""

    def __init__(self, request: Any, send: Callable[[bytes], None]) -> None:
        self._request = request
        self._send = send
        self.sent = 0

    async def recv_message(self) -> Any:
        return self._request

    async def send_message(self, message: Any) -> None:
        self._send(bytes(message))
        self.sent += 1


class Http1Protocol(asyncio.Protocol):
    """One HTTP/1.1 connection carrying gRPC-web calls, answered in order."""

    def __init__(self, mapping: dict[str, grpclib.const.Handler], info: InfoHeaders) -> None:
        self.mapping = mapping
        self.info = info
        self.reader = asyncio.StreamReader(limit=MAX_HEAD)
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.reader.set_transport(transport)
        self.task = asyncio.get_running_loop().create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        self.reader.feed_data(data)

    def eof_received(self) -> bool | None:
        self.reader.feed_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.reader.feed_eof()
        if self.task is not None:
            self.task.cancel()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def _serve(self) -> None:
        try:
            while True:
                try:
                    head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), KEEP_ALIVE)
                except (asyncio.IncompleteReadError, TimeoutError):
                    return
                except asyncio.LimitOverrunError:
                    raise _Failure(431, "request head too large") from None
                if not await self._request(head[:-4]):
                    return
        except _Failure as exc:
            self._answer(exc.status, {"content-type": "text/plain"}, f"{exc}\n".encode(), True)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("gRPC-web connection failed")
        finally:
            if self.transport is not None:
                self.transport.close()

    async def _request(self, head: bytes) -> bool:
        """Read one request and answer it; False when the connection must close."""
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
            raise _Failure(400, "not an HTTP/1.1 request")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise _Failure(400, "bad header line")
            headers[name.strip().lower()] = value.strip()
        close = version == "HTTP/1.0" or headers.get("connection", "").lower() == "close"
        body = await self._body(headers)
        path = target.split("?", 1)[0]
        if method == "OPTIONS":
            self._preflight(headers)
            return not close
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if method != "POST" or content_type not in WEB_TYPES:
            # Not gRPC-web: tonic-web leaves it to the router, which has no such route.
            text = content_type not in WEB_TYPES and method == "POST"
            status, reason = (415, "Unsupported Media Type") if text else (405, "Not Allowed")
            self._answer(
                status, {"content-type": "text/plain"}, f"{reason}: gRPC-web only\n".encode(), close
            )
            return not close
        await self._call(path, content_type, headers, body, close)
        return not close

    async def _body(self, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size_line = await self.reader.readuntil(b"\r\n")
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise _Failure(400, "bad chunk size") from None
                if size == 0:
                    while await self.reader.readuntil(b"\r\n") != b"\r\n":
                        pass
                    return bytes(out)
                if len(out) + size > MAX_BODY:
                    raise _Failure(413, "request body too large")
                out += await self.reader.readexactly(size)
                await self.reader.readexactly(2)
        length = headers.get("content-length", "0")
        if not length.isdigit():
            raise _Failure(400, "bad content-length")
        if int(length) > MAX_BODY:
            raise _Failure(413, "request body too large")
        return await self.reader.readexactly(int(length))

    def _cors(self, headers: dict[str, str]) -> dict[str, str]:
        return {
            "access-control-allow-origin": headers.get("origin", "*"),
            "access-control-expose-headers": EXPOSED_HEADERS,
            "vary": "origin",
        }

    def _preflight(self, headers: dict[str, str]) -> None:
        asked = headers.get("access-control-request-headers", "")
        reply = {
            **self._cors(headers),
            "access-control-allow-methods": "GET,POST,OPTIONS",
            "access-control-allow-headers": asked or ALLOWED_HEADERS,
            "access-control-max-age": str(CORS_MAX_AGE),
        }
        self._answer(204, reply, b"", False)

    def _answer(self, status: int, headers: dict[str, str], body: bytes, close: bool) -> None:
        reason = {
            200: "OK",
            204: "No Content",
            400: "Bad Request",
            405: "Method Not Allowed",
            413: "Content Too Large",
            415: "Unsupported Media Type",
            431: "Request Header Fields Too Large",
        }.get(status, "Error")
        lines = [f"HTTP/1.1 {status} {reason}"]
        lines += [f"{k}: {v}" for k, v in {**self.info(), **headers}.items()]
        if status != 204:
            lines.append(f"content-length: {len(body)}")
        if close:
            lines.append("connection: close")
        self._write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    async def _call(
        self, path: str, content_type: str, headers: dict[str, str], body: bytes, close: bool
    ) -> None:
        text = WEB_TYPES[content_type]
        streaming = False
        started = False

        def frame(flag: int, payload: bytes) -> bytes:
            raw = bytes([flag]) + len(payload).to_bytes(4, "big") + payload
            return base64.b64encode(raw) if text else raw

        def start(length: int | None) -> None:
            """The answer's head: chunked (a stream) or with its length (unary)."""
            nonlocal started
            started = True
            lines = ["HTTP/1.1 200 OK", f"content-type: {content_type}"]
            lines += [f"{k}: {v}" for k, v in {**self.info(), **self._cors(headers)}.items()]
            lines.append(
                "transfer-encoding: chunked" if length is None else f"content-length: {length}"
            )
            if close:
                lines.append("connection: close")
            self._write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

        def chunk(data: bytes) -> None:
            self._write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        def send(message: bytes) -> None:
            data = frame(0, message)
            if streaming:
                if not started:
                    start(None)
                chunk(data)
            else:
                replies.append(data)

        replies: list[bytes] = []
        status, message = grpclib.const.Status.OK, ""
        try:
            handler = self.mapping.get(path)
            if handler is None:
                raise GRPCError(grpclib.const.Status.UNIMPLEMENTED, f"unknown method {path}")
            streaming = handler.cardinality == grpclib.const.Cardinality.UNARY_STREAM
            request = handler.request_type.parse(self._message(body, text))
            timeout = parse_timeout(headers.get("grpc-timeout", ""))
            stream = _WebStream(request, send)
            if timeout is not None and not streaming:
                try:
                    await asyncio.wait_for(handler.func(stream), timeout)
                except TimeoutError:
                    raise GRPCError(
                        grpclib.const.Status.DEADLINE_EXCEEDED, "deadline exceeded"
                    ) from None
            else:
                await handler.func(stream)
        except GRPCError as exc:
            status, message = exc.status, exc.message or ""
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("gRPC-web call %s failed", path)
            status, message = grpclib.const.Status.INTERNAL, f"stand-in error: {exc}"
        trailer = f"grpc-status:{status.value}\r\n"
        if message:
            trailer += f"grpc-message:{grpc_message(message)}\r\n"
        end = frame(0x80, trailer.encode("latin-1"))
        if streaming:
            if not started:
                start(None)
            chunk(end)
            self._write(b"0\r\n\r\n")
            return
        payload = b"".join(replies) + end
        start(len(payload))
        self._write(payload)

    @staticmethod
    def _message(body: bytes, text: bool) -> bytes:
        if text:
            try:
                body = base64.b64decode(body, validate=True)
            except ValueError:
                raise GRPCError(grpclib.const.Status.INTERNAL, "malformed base64 body") from None
        if len(body) < 5:
            raise GRPCError(grpclib.const.Status.INTERNAL, "the request holds no message frame")
        flag, length = body[0], int.from_bytes(body[1:5], "big")
        if flag & 1:
            raise GRPCError(
                grpclib.const.Status.UNIMPLEMENTED, "compressed messages are not supported"
            )
        if flag != 0 or len(body) != 5 + length:
            raise GRPCError(grpclib.const.Status.INTERNAL, "a unary request holds one message")
        return body[5:]


class SniffingProtocol(asyncio.Protocol):
    """Decides from a connection's first bytes: the HTTP/2 preface goes to grpclib (native
    gRPC), anything else to `Http1Protocol` (gRPC-web)."""

    def __init__(
        self,
        h2_factory: Callable[[], asyncio.Protocol],
        mapping: dict[str, grpclib.const.Handler],
        info: InfoHeaders,
    ) -> None:
        self.h2_factory = h2_factory
        self.mapping = mapping
        self.info = info
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.BaseTransport | None = None
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)
            return
        self.buf += data
        if len(self.buf) < len(H2_PREFACE) and H2_PREFACE.startswith(self.buf):
            return  # could still be HTTP/2
        assert self.transport is not None
        if self.buf.startswith(H2_PREFACE):
            self.inner = self.h2_factory()
        else:
            self.inner = Http1Protocol(self.mapping, self.info)
        self.inner.connection_made(self.transport)
        buffered, self.buf = self.buf, b""
        self.inner.data_received(buffered)

    def eof_received(self) -> bool | None:
        if self.inner is not None:
            return self.inner.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            with contextlib.suppress(Exception):
                self.inner.resume_writing()
