"""Upload requests as the uploader plans them, and the failed ones it must send again.

A plan is kept so that the retry of a failed upload that registered (paid for) a Blob sends
the very same request, which the worker continues on that Blob (upload_worker.py, "resume").
It is kept in memory for a retry by this process (`Attempts`), and on disk from the moment
its Blob is registered until its upload is committed or abandoned (`PlanFiles`), so that the
next mount after a crash or kill -9 continues the Blob the dead one paid for: the nodes
already hold what they confirmed (the upload asks them before sending a sliver again), and
the registration is neither paid again nor left behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from cache import Key
from cache.staging import Staging
from walrusfs.fs.worker_protocol import Source

log = logging.getLogger(__name__)

#: the directory of a volume (beside meta.db) that holds `PlanFiles`
PLANS_DIR = "registrations"


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
    #: each chunk's staged size when the request was sent (`resumable_with` checks it)
    sizes: dict[Key, int] = field(default_factory=dict)

    def resumable_with(self, size: Callable[[Key], int | None]) -> bool:
        """Whether a plan a crash left may be sent again with the chunks as `size` finds them
        staged now (None: not staged): each must hold as many bytes as the request read, or
        its retry would commit a file cut at the planned size (a quilt reads a chunk file up
        to its cap) or carry a record of another length. Bytes changed in place are safe
        either way: they make another blob ID, which the worker registers anew."""
        for key, _ in self.chunks:
            want = self.caps.get(key, self.sizes.get(key))
            if want is None or size(key) != want:
                return False
        return True

    def to_json(self) -> dict[str, Any]:
        """The plan as `PlanFiles` keeps it; generations are this process's and are left
        out (`from_json` takes the chunks' current ones)."""
        return {
            "kind": self.kind,
            "chunks": [list(key) for key, _ in self.chunks],
            "attributes": self.attributes,
            "tags": [[*key, tags] for key, tags in self.tags.items()],
            "caps": [[*key, cap] for key, cap in self.caps.items()],
            "sizes": [[*key, n] for key, n in self.sizes.items()],
            "registered": self.registered,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Plan:
        """A kept plan, each chunk at generation -1, which no chunk has: the caller sets the
        current ones if the plan may be sent again (`resumable_with`)."""
        return cls(
            str(d["kind"]),
            [((int(i), int(c)), -1) for i, c in d["chunks"]],
            {str(k): str(v) for k, v in d["attributes"].items()},
            {(int(i), int(c)): dict(tags) for i, c, tags in d["tags"]},
            {(int(i), int(c)): int(cap) for i, c, cap in d["caps"]},
            None if d.get("registered") is None else str(d["registered"]),
            {(int(i), int(c)): int(n) for i, c, n in d["sizes"]},
        )


class PlanFiles:
    """The plans of registered uploads not yet committed, one file per Blob object:
    `<dir>/<object id>.json`, the plan's `to_json`. Written (to a temporary name, then
    renamed) when the worker reports the registration, removed when the upload is committed
    or its Blob abandoned. Not fsynced: a process killed keeps them (the page cache); a
    machine that loses power may lose the newest, and the next mount then deletes that Blob
    instead of continuing it, as it deletes every uncertified Blob of this machine it has
    no plan for."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, object_id: str, plan: Plan) -> None:
        """Keep `plan` as the plan of Blob `object_id`.

        Raises:
            OSError: it could not be written (a full disk); nothing of it is left.
        """
        self.root.mkdir(mode=0o700, exist_ok=True)
        path = self.root / f"{object_id}.json"
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({**plan.to_json(), "registered": object_id}))
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise

    def drop(self, object_id: str) -> None:
        (self.root / f"{object_id}.json").unlink(missing_ok=True)

    def clear(self) -> None:
        """Remove every plan: the database they refer to is being replaced (a restore, a
        rebuild), and a chunk key of one means nothing in another. Their Blobs, if still
        uncertified, are deleted by the next mount as unplanned ones."""
        if self.root.is_dir():
            for path in self.root.iterdir():
                path.unlink(missing_ok=True)

    def load(self) -> dict[str, dict[str, Any]]:
        """Object ID -> the kept plan's JSON (`Plan.from_json`). A file that cannot be read
        is logged and removed: its Blob is then deleted as any unplanned one is."""
        out: dict[str, dict[str, Any]] = {}
        if not self.root.is_dir():
            return out
        for path in sorted(self.root.iterdir()):
            if path.suffix != ".json":
                path.unlink(missing_ok=True)  # a temporary file a kill left
                continue
            try:
                doc = json.loads(path.read_text())
                if doc.get("registered") != path.stem or doc.get("kind") not in ("blob", "quilt"):
                    raise ValueError("not a plan of this Blob")
                Plan.from_json(doc)  # checks the shape
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("upload plan %s unreadable (%s): removed", path.name, exc)
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            out[path.stem] = doc
        return out


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
