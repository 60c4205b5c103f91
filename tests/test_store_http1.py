"""The storage-node HTTP/1.1 client against small scripted servers: what it must survive.

The devnet tests cover the happy path at volume; these cover the edges a real node or a proxy
produces: keep-alive connections the server closed, chunked bodies, refusals, silence and
garbage. Each failure must be a `TransportError` (temporary, retried by the store), never a
hang or a raw trio exception.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from walrusfs.store.http1 import Pool, TransportError
from walrusfs.store.retry import is_temporary

pytestmark = [pytest.mark.trio, pytest.mark.timeout(60)]

Handler = Callable[[trio.SocketStream, "Server"], Awaitable[None]]


class Server:
    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[tuple[str, bytes]] = []

    async def read_request(self, stream: trio.SocketStream, buf: bytearray) -> bool:
        """Reads one request into `requests`; False at the end of the connection."""
        while b"\r\n\r\n" not in buf:
            data = await stream.receive_some(65536)
            if not data:
                return False
            buf += data
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        body = bytearray(rest)
        while len(body) < length:
            body += await stream.receive_some(65536)
        buf[:] = body[length:]
        self.requests.append((lines[0], bytes(body[:length])))
        return True


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[tuple[str, Server]]:
    server = Server()

    async def handle(stream: trio.SocketStream) -> None:
        server.connections += 1
        await handler(stream, server)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, handle, 0)
        port = listeners[0].socket.getsockname()[1]
        yield f"http://127.0.0.1:{port}", server
        nursery.cancel_scope.cancel()


def reply(status: int, body: bytes, extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


async def echo_digest(stream: trio.SocketStream, server: Server) -> None:
    """Answers every request on the connection with the SHA-256 of its body."""
    buf = bytearray()
    while await server.read_request(stream, buf):
        await stream.send_all(reply(200, hashlib.sha256(server.requests[-1][1]).digest()))


async def test_bodies_round_trip_and_the_connection_is_reused() -> None:
    async with serving(echo_digest) as (url, server):
        pool = Pool(url, size=4)
        bodies = [b"", b"x", bytes(range(256)) * 4096]  # up to 1 MiB
        for body in bodies:
            rsp = await pool.request("PUT", "/v1/blobs/a/slivers/0/primary", body)
            assert rsp.status_code == 200
            assert rsp.content == hashlib.sha256(body).digest()
        rsp = await pool.request("GET", "/v1/health")
        assert rsp.content == hashlib.sha256(b"").digest()
        await pool.aclose()
    assert server.connections == 1
    assert [r[0] for r in server.requests][-1] == "GET /v1/health HTTP/1.1"


async def test_a_keep_alive_connection_the_server_closed_is_replaced() -> None:
    async def one_and_close(stream: trio.SocketStream, server: Server) -> None:
        # Answers one request, then closes without saying so (as an idle timeout does).
        if await server.read_request(stream, bytearray()):
            await stream.send_all(reply(200, b"ok"))
        await stream.aclose()

    async with serving(one_and_close) as (url, server):
        pool = Pool(url, size=1)
        for _ in range(3):
            rsp = await pool.request("GET", "/x")
            assert rsp.content == b"ok"
            await trio.sleep(0.05)  # let the close arrive before the reuse
        await pool.aclose()
    assert server.connections == 3


async def test_chunked_bodies_are_decoded() -> None:
    async def chunked(stream: trio.SocketStream, server: Server) -> None:
        await server.read_request(stream, bytearray())
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n"
        )
        await stream.send_all(reply(404, b"gone"))  # the connection stays usable

    async with serving(chunked) as (url, _):
        pool = Pool(url, size=1)
        rsp = await pool.request("GET", "/c")
        assert rsp.content == b"hello world"
        await pool.aclose()


async def test_refused_silent_and_garbled_servers_are_transport_errors() -> None:
    async def silent(stream: trio.SocketStream, server: Server) -> None:
        await server.read_request(stream, bytearray())
        await trio.sleep_forever()

    async def garbled(stream: trio.SocketStream, server: Server) -> None:
        await server.read_request(stream, bytearray())
        await stream.send_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")

    async def cut(stream: trio.SocketStream, server: Server) -> None:
        await server.read_request(stream, bytearray())
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
        await stream.aclose()

    # A port nothing listens on: bind one, close it, ask it.
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(TransportError) as refused:
        await Pool(f"http://127.0.0.1:{port}", size=1).request("GET", "/")
    assert refused.value.errno == errno.ECONNREFUSED

    async with serving(silent) as (url, _):
        with trio.fail_after(5):
            with pytest.raises(TransportError) as slow:
                await Pool(url, size=1, timeout=0.3).request("GET", "/")
        assert slow.value.errno == errno.ETIMEDOUT

    for handler in (garbled, cut):
        async with serving(handler) as (url, _):
            with pytest.raises(TransportError) as bad:
                await Pool(url, size=1).request("GET", "/")
            assert bad.value.errno == errno.EPROTO
            assert is_temporary(bad.value)


async def test_the_pool_bounds_concurrent_requests_per_node() -> None:
    active = 0
    peak = 0

    async def slow_echo(stream: trio.SocketStream, server: Server) -> None:
        nonlocal active, peak
        buf = bytearray()
        while await server.read_request(stream, buf):
            active += 1
            peak = max(peak, active)
            await trio.sleep(0.02)
            active -= 1
            await stream.send_all(reply(200, b"."))

    async with serving(slow_echo) as (url, server):
        pool = Pool(url, size=3)
        async with trio.open_nursery() as nursery:
            for _ in range(12):
                nursery.start_soon(pool.request, "GET", "/s")
        await pool.aclose()
    assert peak == 3
    assert server.connections == 3
    assert len(server.requests) == 12


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, bytes]:
    """A server context with a self-signed P-256 certificate, as Walrus nodes serve, and the
    key's SEC1 encoding (what the chain publishes as the node's network public key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node.walrus")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = tmp_path / "node.pem"
    pem.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pem)
    sec1 = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    return context, sec1


async def test_tls_trusts_a_self_signed_node_only_by_its_pinned_network_key(
    tmp_path: Path,
) -> None:
    context, network_key = _self_signed(tmp_path)
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    other_key = other.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )

    async def handle(stream: trio.SSLStream[trio.SocketStream]) -> None:
        buf = bytearray()
        try:
            while b"\r\n\r\n" not in buf:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
            await stream.send_all(reply(200, b"over tls"))
        except trio.BrokenResourceError:
            return  # a client that refused our certificate

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_ssl_over_tcp, handle, 0, context)
        port = listeners[0].transport_listener.socket.getsockname()[1]
        url = f"https://127.0.0.1:{port}"

        pinned = Pool(url, size=1, pinned_key=network_key)
        for _ in range(2):  # the second connection goes straight to the pin
            rsp = await pinned.request("GET", "/v1/health")
            assert rsp.content == b"over tls"
        await pinned.aclose()

        for pin in (other_key, None):  # another node's key, or none: refused
            with pytest.raises(TransportError) as refused:
                await Pool(url, size=1, pinned_key=pin).request("GET", "/v1/health")
            assert refused.value.errno == errno.EACCES
        nursery.cancel_scope.cancel()


def _ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Root CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _ca_issued(
    tmp_path: Path, ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], name: str
) -> tuple[ssl.SSLContext, bytes]:
    """A server context whose certificate, for 127.0.0.1 and a new P-256 key, the CA issued
    (a certificate any client trusting the CA accepts), and that key's SEC1 encoding."""
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = tmp_path / f"{name}.pem"
    pem.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pem)
    sec1 = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    return context, sec1


@asynccontextmanager
async def tls_node(context: ssl.SSLContext) -> AsyncIterator[str]:
    async def handle(stream: trio.SSLStream[trio.SocketStream]) -> None:
        buf = bytearray()
        try:
            while b"\r\n\r\n" not in buf:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
            await stream.send_all(reply(200, b"over tls"))
        except trio.BrokenResourceError:
            return  # a client that refused our certificate

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_ssl_over_tcp, handle, 0, context)
        port = listeners[0].transport_listener.socket.getsockname()[1]
        yield f"https://127.0.0.1:{port}"
        nursery.cancel_scope.cancel()


async def test_tls_refuses_a_ca_valid_certificate_of_a_foreign_key(tmp_path: Path) -> None:
    """The client trusts the CA (as a machine trusts public CAs), and a node presents a
    certificate that CA issued for 127.0.0.1, but for a key other than the node's on-chain
    network key (someone who got a certificate for the node's address): refused, as the
    Walrus client refuses it. The same CA's certificate of the node's own key is accepted;
    a certificate of the right key from a CA nobody trusts is refused."""
    ca = _ca()
    trusting = ssl.create_default_context()
    trusting.load_verify_locations(cadata=ca[1].public_bytes(serialization.Encoding.PEM).decode())
    foreign_ctx, _ = _ca_issued(tmp_path, ca, "foreign")
    _, node_key = _self_signed(tmp_path)  # the key the chain publishes for the node
    async with tls_node(foreign_ctx) as url:
        # the handshake alone succeeds with that CA: the certificate is CA-valid
        plain = Pool(url, size=1, ssl_context=trusting, pinned_key=None)
        with pytest.raises(TransportError) as unpinned:
            await plain.request("GET", "/v1/health")
        assert unpinned.value.errno == errno.EACCES  # no key on chain: refused too
        pool = Pool(url, size=1, ssl_context=trusting, pinned_key=node_key)
        with pytest.raises(TransportError) as refused:
            await pool.request("GET", "/v1/health")
        assert refused.value.errno == errno.EACCES
        assert "network public key" in str(refused.value)

    own_ctx, own_key = _ca_issued(tmp_path, ca, "own")
    async with tls_node(own_ctx) as url:
        pool = Pool(url, size=1, ssl_context=trusting, pinned_key=own_key)
        assert (await pool.request("GET", "/v1/health")).content == b"over tls"
        await pool.aclose()
        untrusted = Pool(url, size=1, ssl_context=ssl.create_default_context(), pinned_key=own_key)
        with pytest.raises(TransportError) as not_trusted:
            await untrusted.request("GET", "/v1/health")
        assert not_trusted.value.errno == errno.EACCES
