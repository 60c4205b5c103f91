"""The storage-node REST conventions: Walrus status JSON, BCS bodies, bounded request bodies.

Success bodies are `{"success":{"code":<http>,"data":<T>}}`; errors are Google-style statuses
exactly as walrus-storage-node-client parses them:

    {"error": {"code": 400, "status": "FAILED_PRECONDITION",
               "message": "the blob has not been registered or has already expired",
               "details": [{"@type": "ErrorInfo", "reason": "NOT_REGISTERED",
                            "domain": "storage.walrus.space", "metadata": {}}]}}

`status` and `code` always correspond as in Walrus's `status_codes!` table (for example
FAILED_PRECONDITION and INVALID_ARGUMENT are both 400). One addition: an oversized body is
answered 413 (what the real node's HTTP layer answers) with status SIZE_EXCEEDED and reason
PAYLOAD_TOO_LARGE, so that the body is still a Walrus status.

No framework: the node has twelve routes, and owning the body reading is what lets it refuse an
oversized upload before reading it. `walrusfs/devnet/server.py` speaks HTTP and hands the node a
`Request`, whose body arrives as ASGI-style messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

STORAGE_DOMAIN = "storage.walrus.space"
GLOBAL_DOMAIN = "global"

#: Walrus StatusCode -> HTTP code (crates/walrus-storage-node-client/src/api/errors.rs).
STATUS_HTTP = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "NOT_FOUND": 404,
    "PERMISSION_DENIED": 403,
    "SIZE_EXCEEDED": 413,
    "UNAVAILABLE_FOR_LEGAL_REASONS": 451,
    "INTERNAL": 500,
    "DEADLINE_EXCEEDED": 504,
    "UNAVAILABLE": 503,
}


class ApiError(Exception):
    """A request the node refuses; becomes a Walrus error status."""

    def __init__(
        self, status: str, reason: str, message: str, domain: str = STORAGE_DOMAIN
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.domain = domain

    @property
    def http_code(self) -> int:
        return STATUS_HTTP[self.status]

    def body(self) -> bytes:
        return json.dumps(
            {
                "error": {
                    "code": self.http_code,
                    "status": self.status,
                    "message": self.message,
                    "details": [
                        {
                            "@type": "ErrorInfo",
                            "reason": self.reason,
                            "domain": self.domain,
                            "metadata": {},
                        }
                    ],
                }
            }
        ).encode()


def not_registered() -> ApiError:
    return ApiError(
        "FAILED_PRECONDITION",
        "NOT_REGISTERED",
        "the blob has not been registered or has already expired",
    )


def unavailable() -> ApiError:
    return ApiError(
        "UNAVAILABLE", "UNAVAILABLE", "the service is currently unavailable", GLOBAL_DOMAIN
    )


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"


def success(code: int, data: Any) -> Response:
    return Response(code, json.dumps({"success": {"code": code, "data": data}}).encode())


def binary(data: bytes) -> Response:
    return Response(200, data, "application/octet-stream")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    params: dict[str, str]
    receive: Callable[[], Awaitable[dict[str, Any]]]
    content_length: int | None
    _body: bytes | None = field(default=None, repr=False)

    async def body(self, limit: int) -> bytes:
        """The whole body, refused as soon as it is known to pass `limit` bytes (read once;
        later calls return it again).

        Raises:
            ApiError: SIZE_EXCEEDED past `limit` (what the client still sends is drained
                first, up to DRAIN_LIMIT); INVALID_ARGUMENT when the client goes away.
        """
        if self._body is not None:
            return self._body
        if self.content_length is not None and self.content_length > limit:
            raise _too_large(self.content_length, limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ApiError("INVALID_ARGUMENT", "DISCONNECTED", "client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._drain(message)
                raise _too_large(size, limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        self._body = b"".join(chunks)
        return self._body

    async def _drain(self, message: dict[str, Any]) -> None:
        """Read and drop the rest of a body that is too large (up to DRAIN_LIMIT), so the
        client, still sending, reads the 413 instead of a connection closed under it."""
        drained = 0
        while message.get("more_body", False) and drained < DRAIN_LIMIT:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                return
            drained += len(message.get("body", b""))


#: bytes of an oversized request body read and dropped before the 413 is sent
DRAIN_LIMIT = 64 << 20


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        "SIZE_EXCEEDED",
        "PAYLOAD_TOO_LARGE",
        f"the request body ({size} bytes or more) exceeds this endpoint's limit of {limit} bytes",
    )


Handler = Callable[[Request], Awaitable[Response]]


class Router:
    """(method, path pattern) -> handler. Patterns use {name} for one path segment."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        self._routes.append((method, re.compile(f"^{regex}$"), handler))

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler of `method` on `path`, and the path's {name} segments.

        Raises:
            ApiError: NOT_FOUND for a path no route has, INVALID_ARGUMENT
                (METHOD_NOT_ALLOWED) for a path whose routes take another method.
        """
        allowed = False
        for route_method, regex, handler in self._routes:
            found = regex.match(path)
            if found is None:
                continue
            if route_method == method:
                return handler, found.groupdict()
            allowed = True
        if allowed:
            raise ApiError("INVALID_ARGUMENT", "METHOD_NOT_ALLOWED", f"{method} not allowed")
        raise ApiError("NOT_FOUND", "NOT_FOUND", f"no such endpoint: {path}", GLOBAL_DOMAIN)
