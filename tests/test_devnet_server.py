"""The storage nodes' HTTP server (walrusfs/devnet/server.py) against an echo handler: keep-alive,
Content-Length and chunked bodies, a refusal before the body, garbage, and HTTP/2 with bodies
larger than the flow-control windows. The node behind it is tested in test_devnet.py."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from walrusfs.devnet import http, server

pytestmark = [pytest.mark.trio, pytest.mark.timeout(60)]

LIMIT = 4 << 20


async def _echo(req: http.Request) -> http.Response:
    """PUT: the body's length and hash (refused over LIMIT); GET /size/N: N bytes."""
    if req.method == "PUT":
        body = await req.body(LIMIT)
        return http.success(200, {"length": len(body), "sha": hashlib.sha256(body).hexdigest()})
    size = int(req.path.rsplit("/", 1)[-1])
    return http.binary(bytes(range(256)) * (size // 256))


@pytest.fixture
async def base() -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve, _echo, "127.0.0.1", 0)
        yield f"http://127.0.0.1:{port}"
        nursery.cancel_scope.cancel()


async def _raw(base: str, data: bytes) -> bytes:
    """Send `data` on a new connection and stop sending, return everything the server answers
    until it closes."""
    port = int(base.rsplit(":", 1)[1])
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        await stream.send_eof()
        out = b""
        while chunk := await stream.receive_some(65536):
            out += chunk
    return out


async def test_keep_alive_content_length_and_chunked_bodies(base: str) -> None:
    body = bytes(range(256)) * 4000  # 1 MB
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(limits=limits) as client:
        for _ in range(3):  # one connection, reused
            rsp = await client.put(f"{base}/x", content=body)
            assert rsp.json()["success"]["data"] == {
                "length": len(body),
                "sha": hashlib.sha256(body).hexdigest(),
            }

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(body), 70_000):
                yield body[i : i + 70_000]

        rsp = await client.put(f"{base}/x", content=chunks())  # chunked: no length known
        assert rsp.json()["success"]["data"]["sha"] == hashlib.sha256(body).hexdigest()
        rsp = await client.get(f"{base}/size/300000")
        assert rsp.content == (bytes(range(256)) * (300000 // 256))


async def test_a_body_refused_before_it_is_read_is_drained_and_the_connection_kept(
    base: str,
) -> None:
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=1)) as client:
        rsp = await client.put(f"{base}/x", content=b"\0" * (LIMIT + 1))
        assert rsp.status_code == 413
        assert rsp.json()["error"]["details"][0]["reason"] == "PAYLOAD_TOO_LARGE"
        rsp = await client.put(f"{base}/x", content=b"after")  # the same connection goes on
        assert rsp.json()["success"]["data"]["length"] == 5


async def test_garbage_is_answered_400_and_closed(base: str) -> None:
    out = await _raw(base, b"this is not http\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ") and b"connection: close" in out
    out = await _raw(base, b"PUT /x HTTP/1.1\r\ncontent-length: ten\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")
    # a body cut short: the handler sees a disconnect (400), the connection closes
    out = await _raw(base, b"PUT /x HTTP/1.1\r\ncontent-length: 100\r\n\r\nshort")
    assert out.startswith(b"HTTP/1.1 400 ") and b"DISCONNECTED" in out


async def test_http2_bodies_larger_than_the_windows(base: str) -> None:
    body = bytes(range(256)) * 8000  # 2 MB: more than the 64 KiB initial windows
    async with httpx.AsyncClient(http1=False, http2=True) as client:
        put = await client.put(f"{base}/x", content=body)
        assert put.http_version == "HTTP/2"
        assert put.json()["success"]["data"]["sha"] == hashlib.sha256(body).hexdigest()
        sizes = [1 << 20, 3 << 20, 4096]
        answers: dict[int, bytes] = {}

        async def get(size: int) -> None:
            answers[size] = (await client.get(f"{base}/size/{size}")).content

        async with trio.open_nursery() as nursery:  # streams multiplexed on one connection
            for size in sizes:
                nursery.start_soon(get, size)
        assert {s: len(b) for s, b in answers.items()} == {s: s for s in sizes}
        assert answers[3 << 20] == bytes(range(256)) * ((3 << 20) // 256)
