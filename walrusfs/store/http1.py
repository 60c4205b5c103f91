"""A lean HTTP/1.1 keep-alive client for the storage-node hot path (slivers and metadata).

Why not httpx here: an n=1000 blob is 2000 sliver PUTs to store and 334 sliver GETs to read,
each ~200 KB for 64 MiB. Measured on the devnet, httpx spends ~1.8 ms of event-loop CPU per
request (URL parsing and cookie handling in httpx; a socket poll of every pooled connection
per request in httpcore; HTTP/2 frame bookkeeping, where hyperframe hex-encodes every 16 KiB
DATA frame for a log line nobody reads). That loop time, not the network or the codec, would
bound reads at ~70 MB/s. This client does what the storage-node protocol needs and nothing else:
one request per connection at a time, `Content-Length` or chunked bodies, keep-alive reuse, TLS
for `https` nodes (the node's on-chain network key required, as the Walrus client does).

Failures are `TransportError`s (temporary, an OSError): refused or reset connections, timeouts,
malformed replies. A request that fails on a reused connection before any reply byte arrives is
sent once more on a fresh one: the server may have closed an idle keep-alive connection at the
moment we reused it, and every storage-node request is idempotent (a sliver PUT stores the
same bytes again).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import trio
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

log = logging.getLogger(__name__)

#: bytes asked of the socket per receive (a 200 KB sliver arrives in a few)
RECEIVE_SIZE = 256 * 1024
#: the largest response head accepted
MAX_HEAD = 64 * 1024
#: idle connections older than this are closed rather than reused (servers close idle ones:
#: the devnet's after 30 s, others sooner; a reused dead one costs a retry)
IDLE_SECONDS = 4.0


class TransportError(OSError):
    """The request did not get an HTTP answer: connection refused or lost, timeout, garbage."""

    def __init__(self, url: str, message: str, code: int = errno.EIO) -> None:
        super().__init__(code, f"{url}: {message}")
        self.url = url


@dataclass(frozen=True)
class Response:
    status_code: int
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class _Connection:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buf = bytearray()
        self.idle_since = time.monotonic()

    async def fill(self) -> None:
        data = await self.stream.receive_some(RECEIVE_SIZE)
        if not data:
            raise _Closed
        self.buf += data

    async def read_line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            if len(self.buf) > MAX_HEAD:
                raise _Malformed("line too long")
            await self.fill()
        line = bytes(self.buf[:end])
        del self.buf[: end + 2]
        return line

    async def read_exactly(self, n: int) -> bytes:
        if len(self.buf) >= n:
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out
        parts: list[bytes | bytearray] = [bytes(self.buf)]
        have = len(self.buf)
        self.buf.clear()
        while have < n:
            data = await self.stream.receive_some(max(RECEIVE_SIZE, n - have))
            if not data:
                raise _Malformed(f"body cut short after {have} of {n} bytes")
            parts.append(data)
            have += len(data)
        body = b"".join(parts)
        if have > n:  # the next chunk's header, or junk that makes the connection unusable
            self.buf += body[n:]
            body = body[:n]
        return body


def _has_key(der: bytes, pinned: bytes) -> bool:
    """The DER certificate's public key is the SEC1-encoded P-256 key `pinned`."""
    try:
        cert = x509.load_der_x509_certificate(der)
        expected = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pinned)
    except ValueError:
        return False
    got = cert.public_key()
    return isinstance(got, ec.EllipticCurvePublicKey) and got.public_numbers() == (
        expected.public_numbers()
    )


def _self_signed(der: bytes) -> bool:
    """The certificate names itself as issuer and its signature verifies with its own key."""
    try:
        cert = x509.load_der_x509_certificate(der)
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _first_errno(exc: BaseException | None) -> int:
    """The errno of the first OSError in `exc`, its causes or (grouped) sub-exceptions; 0 if
    none has one."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno:
            return exc.errno
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                if code := _first_errno(inner):
                    return code
        exc = exc.__cause__ or exc.__context__
    return 0


class _Closed(Exception):
    """The peer closed the connection before a reply began."""


class _Malformed(Exception):
    """The reply is not HTTP/1.1 we understand."""


class Pool:
    """Keep-alive connections to one origin (`scheme://host:port`), at most `size` at once."""

    def __init__(
        self,
        origin: str,
        size: int,
        timeout: float = 30.0,
        *,
        connect_timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        pinned_key: bytes | None = None,
    ) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) origin: {origin!r}")
        self.origin = origin.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = parts.scheme == "https"
        self.host_header = parts.netloc.encode("ascii")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.ssl_context = ssl_context
        self.pinned_key = pinned_key
        self._pinned_context: ssl.SSLContext | None = None
        self._accepted: set[bytes] = set()  # certificates (DER) already found acceptable
        self.limit = trio.Semaphore(size)
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()

    async def request(self, method: str, path: str, body: bytes | None = None) -> Response:
        """One request and its answer, whatever its status. A request that fails on a reused
        connection before any reply byte arrives is sent once more on a fresh one.

        Raises:
            TransportError: no HTTP answer within `timeout` seconds, a refused or lost
                connection, or a malformed reply (its errno says which).
        """
        url = self.origin + path
        async with self.limit:
            try:
                with trio.fail_after(self.timeout):
                    conn = self._take_idle()
                    if conn is not None:
                        try:
                            return await self._exchange(conn, method, path, body)
                        except (_Closed, trio.BrokenResourceError, ConnectionResetError) as exc:
                            # a keep-alive connection the server had closed: once more, fresh
                            log.debug("%s: reused connection failed (%r); reconnecting", url, exc)
                    conn = await self._connect()
                    return await self._exchange(conn, method, path, body)
            except trio.TooSlowError:
                raise TransportError(
                    url, f"no answer in {self.timeout:g} s", errno.ETIMEDOUT
                ) from None
            except _Closed:
                raise TransportError(
                    url, "connection closed without a reply", errno.ECONNRESET
                ) from None
            except _Malformed as exc:
                raise TransportError(url, f"malformed reply: {exc}", errno.EPROTO) from None
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else None
                code = cause.errno if cause is not None and cause.errno else errno.ECONNRESET
                raise TransportError(url, f"connection lost: {cause or exc}", code) from None
            except OSError as exc:
                if isinstance(exc, TransportError):
                    raise
                raise TransportError(url, str(exc), exc.errno or errno.EIO) from None

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the likeliest to be alive
            if now - conn.idle_since < IDLE_SECONDS:
                return conn
            self._discard(conn)
        return None

    async def _connect(self) -> _Connection:
        stream = await self._open_tcp()
        if self.tls:
            stream = await self._tls(stream)
        conn = _Connection(stream)
        self._all.add(conn)
        return conn

    async def _open_tcp(self) -> trio.abc.Stream:
        try:
            with trio.move_on_after(self.connect_timeout) as scope:
                return await trio.open_tcp_stream(self.host, self.port)
        except OSError as exc:
            # trio reports "all attempts failed" and chains the real causes (refused...)
            cause = _first_errno(exc) or errno.EIO
            raise TransportError(
                self.origin, f"cannot connect: {os.strerror(cause)}", cause
            ) from None
        assert scope.cancelled_caught
        raise TransportError(
            self.origin, f"no connection in {self.connect_timeout:g} s", errno.ETIMEDOUT
        )

    @staticmethod
    async def _handshake(
        stream: trio.abc.Stream, context: ssl.SSLContext, host: str
    ) -> trio.SSLStream[trio.abc.Stream]:
        tls = trio.SSLStream(stream, context, server_hostname=host)
        try:
            await tls.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(tls)
            raise
        return tls

    async def _tls(self, stream: trio.abc.Stream) -> trio.abc.Stream:
        """TLS as the Walrus client does it: the node's certificate must carry the node's
        on-chain network public key, whoever signed it. walrus-sdk always pins that key
        (`crates/walrus-sdk/src/node_client/communication/factory.rs`:
        `authenticate_with_public_key(node.network_public_key)`), and its verifier
        (`crates/walrus-storage-node-client/src/tls.rs`, `TlsCertificateVerifier`) accepts a
        certificate only if its key is the pinned one: a certificate from a public CA for
        another key is refused. The certificate must then be self-signed by that key (what
        nodes serve) or chain to the system's roots. The handshake proves the server holds the
        key's private half, so the pin authenticates it. Expiry is not checked for a
        self-signed certificate, as the Walrus client accepts an expired one of the pinned key.
        No key on chain (none given): refused."""
        if self.pinned_key is None:
            await trio.aclose_forcefully(stream)
            raise TransportError(
                self.origin,
                "no network public key to check the node's certificate against",
                errno.EACCES,
            )
        context = self._pinned_context
        if context is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # the key check below is the check
            self._pinned_context = context
        tls = await self._handshake(stream, context, self.host)
        der = tls.getpeercert(binary_form=True)
        if der is None or not _has_key(der, self.pinned_key):
            await trio.aclose_forcefully(tls)
            raise TransportError(
                self.origin,
                "the node's certificate is not of its on-chain network public key",
                errno.EACCES,
            )
        if der not in self._accepted and not _self_signed(der):
            # the right key in a certificate someone else issued: it must chain to our roots
            if self.ssl_context is None:  # loading the CA store is costly: once per pool
                self.ssl_context = ssl.create_default_context()
            try:
                check = await self._handshake(await self._open_tcp(), self.ssl_context, self.host)
            except trio.BrokenResourceError as exc:
                await trio.aclose_forcefully(tls)
                raise TransportError(
                    self.origin,
                    f"the node's certificate is neither self-signed nor trusted: {exc.__cause__}",
                    errno.EACCES,
                ) from None
            await trio.aclose_forcefully(check)
        self._accepted.add(der)
        return tls

    async def _exchange(
        self, conn: _Connection, method: str, path: str, body: bytes | None
    ) -> Response:
        reusable = False
        try:
            head = [f"{method} {path} HTTP/1.1".encode("ascii"), b"Host: " + self.host_header]
            if body is not None:
                head.append(b"Content-Type: application/octet-stream")
                head.append(b"Content-Length: " + str(len(body)).encode())
            head.append(b"\r\n")
            request = b"\r\n".join(head)
            if body is not None and len(body) <= 16384:
                await conn.stream.send_all(request + body)
            else:
                await conn.stream.send_all(request)
                if body:
                    await conn.stream.send_all(body)
            rsp, reusable = await self._receive(conn, method)
            return rsp
        finally:
            if reusable and not conn.buf:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
            else:
                self._discard(conn)

    async def _receive(self, conn: _Connection, method: str) -> tuple[Response, bool]:
        status_line = await conn.read_line()
        try:
            version, code, *_ = status_line.decode("latin-1").split(" ", 2)
            status = int(code)
        except ValueError:
            raise _Malformed(f"status line {status_line[:80]!r}") from None
        if not version.startswith("HTTP/1."):
            raise _Malformed(f"status line {status_line[:80]!r}")
        headers: dict[str, str] = {}
        size = 0
        while line := await conn.read_line():
            size += len(line)
            if size > MAX_HEAD:
                raise _Malformed("headers too long")
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise _Malformed(f"header line {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return Response(status, headers, b""), keep
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return Response(status, headers, await self._chunked(conn)), keep
        if "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise _Malformed(f"Content-Length {headers['content-length']!r}") from None
            return Response(status, headers, await conn.read_exactly(length)), keep
        # Delimited by the end of the connection.
        parts: list[bytes | bytearray] = [bytes(conn.buf)]
        conn.buf.clear()
        while data := await conn.stream.receive_some(RECEIVE_SIZE):
            parts.append(data)
        return Response(status, headers, b"".join(parts)), False

    @staticmethod
    async def _chunked(conn: _Connection) -> bytes:
        parts: list[bytes] = []
        while True:
            line = await conn.read_line()
            try:
                n = int(line.split(b";", 1)[0], 16)
            except ValueError:
                raise _Malformed(f"chunk size {line[:80]!r}") from None
            if n == 0:
                while await conn.read_line():  # trailers, then the empty line
                    pass
                return b"".join(parts)
            parts.append(await conn.read_exactly(n))
            if await conn.read_exactly(2) != b"\r\n":
                raise _Malformed("chunk not followed by CRLF")

    def _discard(self, conn: _Connection) -> None:
        self._all.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)
        # Closing a socket does not block; a TLS stream is dropped without its close_notify.
        stream = conn.stream
        transport = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
        if isinstance(transport, trio.SocketStream):
            transport.socket.close()

    async def aclose(self) -> None:
        for conn in list(self._all):
            self._discard(conn)
