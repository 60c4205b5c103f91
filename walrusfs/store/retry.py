"""The one retry policy: exponential backoff with jitter, bounded by a deadline.

Temporary failures (a node that is down, slow or still catching up with the chain) are retried
until the deadline; permanent ones (a Walrus refusal that will not change, a verification
failure) fail at once. `is_temporary` decides, so every caller classifies errors the same way.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import trio

from chain.errors import ChainUnavailable
from walrusfs.store.errors import NodeError
from walrusfs.store.http1 import TransportError

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


def is_temporary(exc: BaseException) -> bool:
    """Worth retrying: a node's temporary refusal (`NodeError.temporary`), no answer from a
    node or the chain, or a timeout."""
    if isinstance(exc, NodeError):
        return exc.temporary
    return isinstance(exc, TransportError | ChainUnavailable | trio.TooSlowError)


def retry(
    deadline: float = 60.0, first: float = 0.1, cap: float = 5.0
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Retry an async function on temporary errors until `deadline` seconds have passed.

    Args:
        first: seconds before the first retry; each later wait doubles, up to `cap` seconds
            (each drawn at random between half of it and all of it).

    The last error is raised: a permanent one at once, a temporary one when the next
    attempt would start past the deadline.
    """

    def wrap(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(fn)
        async def run(*args: P.args, **kwargs: P.kwargs) -> T:
            end = trio.current_time() + deadline
            delay = first
            attempt = 1
            while True:
                try:
                    return await fn(*args, **kwargs)
                except Exception as exc:
                    now = trio.current_time()
                    if not is_temporary(exc) or now + delay > end:
                        raise
                    log.debug("%s attempt %d failed (%s); retrying", fn.__name__, attempt, exc)
                await trio.sleep(delay * (0.5 + random.random() / 2))
                delay = min(cap, delay * 2)
                attempt += 1

        return run

    return wrap
