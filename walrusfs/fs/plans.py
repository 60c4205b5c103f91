"""Upload requests as the uploader plans them, and the failed ones it must send again.

A plan is kept so that the retry of a failed upload that registered (paid for) a Blob sends
the very same request, which the worker continues on that Blob (upload_worker.py, "resume").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trio

from cache import Key
from cache.staging import Staging
from walrusfs.fs.worker_protocol import Source


@dataclass
class Plan:
    """One upload request, kept so that its retry sends the very same one: the same chunks
    (with the generations their bytes had), tags and attributes make the same blob ID, so the
    worker continues the Blob it registered (`registered`) instead of paying for another.
    The file records in tags and attributes are sealed with a random nonce: made again, they
    would change a quilt's blob ID and a blob's attributes."""

    kind: str  # "blob" | "quilt"
    chunks: list[tuple[Key, int]]  # (chunk, generation)
    attributes: dict[str, str]
    tags: dict[Key, dict[str, str]]  # a quilt's files' tags
    caps: dict[Key, int]  # a quilt's chunk files: the bytes planned (read no more)
    registered: str | None = None


async def sources(
    staging: Staging, keys: list[Key], caps: dict[Key, int] | None = None
) -> tuple[dict[Key, Source], dict[Key, bytes]]:
    """Where the upload worker reads each chunk: a file chunk's own file (up to its cap,
    when given); small chunks (cache/staging.py) from one batch file written now, in a
    worker thread. Also the bytes of the small ones. The caller removes the batch
    (`drop_batch`) when the job ends."""
    small = staging.small_bytes(keys)
    caps = caps or {}
    out: dict[Key, Source] = {
        k: Source(str(staging.path(k)), 0, caps[k]) if k in caps else Source(str(staging.path(k)))
        for k in keys
    }
    if small:
        batch = staging.batch_path()
        order = list(small)
        spans = await trio.to_thread.run_sync(staging.write_batch, batch, [small[k] for k in order])
        for key, (offset, length) in zip(order, spans, strict=True):
            out[key] = Source(str(batch), offset, length, batch=True)
    return out, small


def drop_batch(sources: dict[Key, Source]) -> None:
    for source in sources.values():
        if source.batch:
            Path(source.path).unlink(missing_ok=True)
            return


class Attempts:
    """The chunks of failed uploads that registered a Blob, each with the plan its retry
    sends."""

    def __init__(self) -> None:
        self._plans: dict[Key, Plan] = {}

    def __contains__(self, key: Key) -> bool:
        return key in self._plans

    def get(self, key: Key) -> Plan | None:
        return self._plans.get(key)

    def keep(self, plan: Plan) -> None:
        for key, _ in plan.chunks:
            self._plans[key] = plan

    def plans(self) -> list[Plan]:
        """The failed uploads that registered a Blob, each once."""
        seen: dict[int, Plan] = {}
        for plan in self._plans.values():
            seen.setdefault(id(plan), plan)
        return list(seen.values())

    def forget(self, plan: Plan) -> None:
        for key, _ in plan.chunks:
            if self._plans.get(key) is plan:
                del self._plans[key]
