"""`walrusfs fsck` and `fsck --rebuild` of an unmounted volume: hold its lock, run the check
(walrusfs/fs/fsck.py) or the rebuild (walrusfs/fs/rebuild.py) with the chain, print the
findings one per line, and choose the documented exit code (docs/exit-codes.md: 0 clean,
10 repaired, 11 data lost).

The arguments are parsed in walrusfs/mountcmd.py, with the mount's own.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import trio

from chain.client import WalrusChain
from chain.pricing import format_wal
from walrusfs.clihelpers import UPLOAD_WORKER, ProgressBar, open_chain, user_errors
from walrusfs.errors import ExitCode, UsageError
from walrusfs.fs.fsck import Report, fsck
from walrusfs.fs.migrate import MigrateReport, migrate_to_pool
from walrusfs.fs.mount import lock_volume
from walrusfs.fs.rebuild import RebuildReport, rebuild

T = TypeVar("T")


def fsck_exit_code(repaired: list[str], lost: list[str]) -> ExitCode:
    """fsck's documented outcome (docs/exit-codes.md): 11 data lost, 10 repaired, 0 clean."""
    if lost:
        return ExitCode.FSCK_DATA_LOST
    return ExitCode.FSCK_REPAIRED if repaired else ExitCode.OK


def check_volume(volume_dir: Path, *, upload: bool, epochs: int, passphrase: str | None) -> int:
    """Check and repair the volume (database, staging, chain), print what was found, and
    return the exit code.

    Args:
        upload: upload what is staged, for `epochs` epochs.
        passphrase: the volume's, when its key is derived from one.

    Raises:
        UsageError: the volume has no database (mounting it restores a checkpoint).
        VolumeInUse: the volume is mounted, or held by another walrusfs process.
        UserError: a chain or store failure, with its exit code.
    """
    db_path = volume_dir / "meta.db"
    if not db_path.exists():
        raise UsageError(
            f"volume {volume_dir.name} has no database ({db_path}); mounting it restores the "
            "newest checkpoint from Walrus"
        )
    bar = ProgressBar("fsck: uploading staged data")

    async def check(chain: WalrusChain) -> Report:
        return await fsck(
            volume_dir,
            chain,
            UPLOAD_WORKER,
            upload=upload,
            epochs=epochs,
            passphrase=passphrase,
            progress=bar,
        )

    report = _on_locked_volume(volume_dir, check)
    _print_lines(("repaired", report.repaired), ("LOST", report.lost), ("note", report.notes))
    code = fsck_exit_code(report.repaired, report.lost)
    verdict = {
        ExitCode.OK: "clean",
        ExitCode.FSCK_REPAIRED: "repaired, nothing lost",
        ExitCode.FSCK_DATA_LOST: "DATA LOST (see above)",
    }
    print(f"volume {volume_dir.name}: {verdict[code]}")
    return code


def rebuild_volume(volume_dir: Path, passphrase: str | None) -> int:
    """`fsck --rebuild`: the database from the chain's file records (walrusfs/fs/rebuild.py);
    an existing database is kept, renamed. Returns the exit code (10 rebuilt, 11 something
    lost).

    Raises:
        VolumeInUse: the volume is mounted, or held by another walrusfs process.
        UserError: a chain or store failure, no blob of the volume in the wallet, or records
            sealed with another key, each with its exit code.
    """

    async def go(chain: WalrusChain) -> RebuildReport:
        return await rebuild(volume_dir, chain, passphrase)

    report = _on_locked_volume(volume_dir, go)
    _print_lines(
        ("kept", [f"{path} (the previous state, renamed)" for path in report.moved_aside]),
        ("note", report.notes),
        ("LOST", report.lost),
    )
    print(
        f"volume {volume_dir.name}: rebuilt from {report.blobs} blob(s) of volume "
        f"{report.volume_id}: {report.files} file(s), {report.chunks} chunk(s); "
        f"{report.unused} blob(s) held only older versions and are deleted after the next "
        "checkpoint. Directories, symlinks, empty files and xattrs are not in the records."
    )
    return fsck_exit_code(["rebuilt"], report.lost)


def migrate_volume(volume_dir: Path, *, epochs: int) -> int:
    """`fsck --migrate-to-pool` (walrusfs/fs/migrate.py). Returns the exit code (0: moved,
    or nothing to move).

    Raises:
        UsageError: the volume has no database.
        VolumeInUse: the volume is mounted, or held by another walrusfs process.
        UserError: a chain or store failure, with its exit code (a second run goes on).
    """
    if not (volume_dir / "meta.db").exists():
        raise UsageError(
            f"volume {volume_dir.name} has no database; mount it once (it restores the newest "
            "checkpoint), unmount it, and migrate"
        )

    async def go(chain: WalrusChain) -> MigrateReport:
        return await migrate_to_pool(volume_dir, chain, epochs=epochs)

    report = _on_locked_volume(volume_dir, go)
    _print_lines(("note", report.notes))
    print(
        f"volume {volume_dir.name}: {report.moved + report.uploaded} blob(s) in storage pool "
        f"{report.pool}{' (new)' if report.created else ''}: {report.moved} registered from what "
        f"the nodes hold, {report.uploaded} uploaded again; {report.retired} old Blob(s) "
        f"deleted by the next mount after its checkpoint; {format_wal(report.wal_spent)} spent"
    )
    return int(ExitCode.OK)


def _print_lines(*groups: tuple[str, list[str]]) -> None:
    """A report's findings, one per line under its label (`repaired: ...`, `LOST: ...`)."""
    for label, lines in groups:
        for line in lines:
            print(f"{label}: {line}")


def _on_locked_volume(volume_dir: Path, fn: Callable[[WalrusChain], Awaitable[T]]) -> T:
    """Run `fn` with the chain while holding the volume's lock (fsck and rebuild need the
    volume unmounted); chain and store failures become the documented exit codes."""
    volume_dir.mkdir(parents=True, exist_ok=True)
    lock = lock_volume(volume_dir)
    try:

        async def main() -> T:
            async with open_chain(start=True) as chain:
                return await fn(chain)

        with user_errors():
            return trio.run(main)
    finally:
        os.close(lock)
