"""After a crash: bring the database and the staging area back in line (docs/durability.md,
crash windows). Run by every mount of a volume that did not end cleanly and by fsck."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field

from cache.staging import Staging
from walrusfs.fs import schema
from walrusfs.fs.content import purge_inodes
from walrusfs.fs.schema import path_of, transaction

log = logging.getLogger(__name__)


@dataclass
class Repaired:
    #: staged chunks whose staged bytes were missing: (inode, chunkno, had a previous upload)
    reverted: list[tuple[int, int, bool]] = field(default_factory=list)
    removed: int = 0  # staged chunks no chunk row referred to


def repair(db: sqlite3.Connection, staging: Staging) -> Repaired:
    """Bring database and staging area back in line after a crash (docs/durability.md)."""
    done = Repaired()
    live = {
        (int(i), int(c)): blob is not None
        for i, c, blob in db.execute("SELECT inode, chunkno, blob FROM chunks WHERE staged = 1")
    }
    have = set(staging.keys())
    for key in sorted(live.keys() - have):
        # a file created and never fsynced before a power loss, or a restored checkpoint:
        # keep the previous upload if there is one
        log.error(
            "%s: chunk %d has no staged bytes; %s",
            path_of(db, key[0]) or f"inode {key[0]}",
            key[1],
            "back to its last upload" if live[key] else "it becomes a hole",
        )
        done.reverted.append((key[0], key[1], live[key]))
        db.execute(
            "UPDATE chunks SET staged = 0 WHERE inode = ? AND chunkno = ? AND blob IS NOT NULL",
            key,
        )
        db.execute("DELETE FROM chunks WHERE inode = ? AND chunkno = ? AND blob IS NULL", key)
    done.removed = staging.sweep(live)
    if done.removed:
        log.info("removed %d staged chunks no chunk row refers to", done.removed)
    # files unlinked while open when the last mount ended (or not yet purged when it ended)
    unlinked = [int(i) for (i,) in db.execute("SELECT id FROM inodes WHERE nlink = 0")]
    if unlinked:
        with transaction(db):  # all or nothing: a crash here must not drop a reference twice
            purge_inodes(db, staging, unlinked)
    return done


def recover(db: sqlite3.Connection, staging: Staging, *, restored: bool) -> None:
    """At mount: repair what a crash left, and mark the volume mounted (a crash from here on
    leaves it marked, and the next mount repairs again).

    Args:
        restored: the database was just restored from a checkpoint: its staging is gone by
            design, so the repair is not reported as a crash's.
    """
    if schema.get_param(db, "clean_unmount") != "1" and not restored:
        log.warning("the last mount of this volume did not end cleanly; repairing")
    with transaction(db):
        repair(db, staging)
        schema.set_param(db, "clean_unmount", "0")
