"""One writer per volume: the machine that may change a volume, decided from the chain.

A volume's metadata lives in one machine's `meta.db`; its checkpoints on Walrus are how other
machines see it. Two machines writing one volume fork it: both number their next checkpoint
the same, and each one's fsck takes the other's blobs for leftovers and deletes them. Until
several machines are supported, a mount claims the volume on chain and refuses when another
machine holds it:

- Each WALRUSFS_HOME has a machine ID (`<data>/machine-id`, 16 random bytes in hex, made on
  first use) and a host name; every checkpoint carries both (`walrusfs:machine`,
  `walrusfs:host`).
- A mounted writer marks the volume's newest checkpoint with the lease attribute
  `walrusfs:writer` = `<machine-id> <host> <unix seconds>`, and every checkpoint it writes
  while mounted carries it; the checkpoint of a clean unmount does not, and when none is
  needed the attribute is removed. So the newest checkpoint tells whether the volume is in
  use, and by whom.
- A mount refuses (exit 2, `VolumeClaimed`) when the newest checkpoint of the volume is
  leased by another machine, or when the chain holds a checkpoint newer than this machine's
  copy that another machine wrote (this copy is behind: writing it would fork the volume).
  With `--read-only` it mounts instead, changing nothing. A lease left by this machine (a
  crash) is its own: the mount takes it again.

This is a check, not consensus: two machines that mount within the same second can both
pass it. The chain-ordered head that makes that impossible is the shared volume object of
docs/durability.md's multi-machine design; the check closes the case users meet (a second
machine mounting a volume that is in use, or that moved on without it).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path

from chain import errors as chain_errors
from chain.client import WalrusChain
from walrusfs.fs.checkpoint import KIND, CheckpointRef, ref_of
from walrusfs.fs.errors import ServiceFailed, VolumeClaimed

log = logging.getLogger(__name__)

MACHINE_FILE = "machine-id"
WRITER_ATTR = "walrusfs:writer"


@dataclass(frozen=True)
class Machine:
    id: str  # 32 hex digits, stable for one WALRUSFS_HOME
    host: str

    def lease(self, now: float | None = None) -> str:
        """The `walrusfs:writer` value: machine ID, host and since when (`now`, seconds since
        1970; None: the current time)."""
        return f"{self.id} {self.host} {int(time.time() if now is None else now)}"


@dataclass(frozen=True)
class Lease:
    machine: str
    host: str
    since: float

    @classmethod
    def parse(cls, value: str | None) -> Lease | None:
        """A `walrusfs:writer` value; None when there is none or it is not a lease."""
        if not value:
            return None
        parts = value.split(" ")
        try:
            return cls(parts[0], " ".join(parts[1:-1]) or "?", float(parts[-1]))
        except (ValueError, IndexError):
            return None

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"machine {self.host} ({self.machine[:8]}), since {since}"


def this_machine(data_dir: Path) -> Machine:
    """The machine ID of this WALRUSFS_HOME (made on first use, 0600) and the host name."""
    path = data_dir / MACHINE_FILE
    try:
        machine_id = path.read_text().strip()
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        machine_id = secrets.token_hex(16)
        tmp = path.with_name(MACHINE_FILE + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(machine_id + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    host = socket.gethostname().replace(" ", "-") or "localhost"
    return Machine(machine_id, host)


@dataclass(frozen=True)
class Scan:
    checkpoints: list[CheckpointRef]  # certified checkpoints of the volume's name
    unfinished: list[str]  # this machine's registered, uncertified Blobs of the volume


@dataclass(frozen=True)
class Verdict:
    """What the chain says of a volume for this machine."""

    newest: CheckpointRef | None  # the volume's newest checkpoint on chain
    refusal: str | None  # why this machine may not write it (None: it may)


def judge(refs: list[CheckpointRef], machine: Machine, volume_id: str, local_seq: int) -> Verdict:
    """Whether `machine`, whose copy of the volume is at checkpoint `local_seq`, may write it,
    given the wallet's checkpoints `refs` (any volume, newest first)."""
    mine = [r for r in refs if r.volume_id == volume_id]
    if not mine:
        return Verdict(None, None)
    newest = max(mine, key=lambda r: (r.seq, r.time))
    lease = Lease.parse(newest.writer)
    if lease is not None and lease.machine != machine.id:
        return Verdict(
            newest,
            f"volume {newest.name} is in use by {lease.describe()} (checkpoint {newest.seq}): "
            "unmount it there first, or mount it here with --read-only",
        )
    if newest.seq > local_seq and newest.machine not in {None, machine.id}:
        host = newest.host or "another machine"
        return Verdict(
            newest,
            f"volume {newest.name} was changed by {host} after this machine's copy (chain: "
            f"checkpoint {newest.seq}, here: {local_seq}): writing here would fork it. Mount it "
            "with --read-only, or move this machine's meta.db aside to restore the newest "
            "checkpoint (what is staged here and not uploaded is then not in it)",
        )
    return Verdict(newest, None)


class WriterLease:
    """Holds the volume for this machine while it is mounted read-write."""

    def __init__(self, chain: WalrusChain, machine: Machine, name: str, volume_id: str) -> None:
        self.chain = chain
        self.machine = machine
        self.name = name
        self.volume_id = volume_id
        self.marked: str | None = None  # object ID of the checkpoint carrying our lease
        self.unfinished: list[str] = []  # see claim

    async def scan(self, known: Container[str]) -> Scan:
        """The wallet's Blob objects as they concern this volume. `known`: object IDs of
        data blobs this machine's copy records (their attributes cannot change who holds
        the volume, so they are not read: one request per blob would make every mount of a
        large volume slow).

        Raises:
            ServiceFailed: the wallet's blobs or their attributes could not be read.
        """
        try:
            blobs = [b for b in await self.chain.blobs(valid_only=True) if b.id not in known]
            attributes = await self.chain.attributes_of([b.id for b in blobs])
        except (chain_errors.ChainError, OSError) as exc:
            raise ServiceFailed(
                f"cannot read the checkpoints of volume {self.name} to see whether another "
                f"machine uses it: {exc}"
            ) from None
        refs, unfinished = [], []
        for blob in blobs:
            attrs = attributes[blob.id]
            if blob.certified_epoch is not None:
                ref = ref_of(blob, attrs) if attrs.get("walrusfs:kind") == KIND else None
                if ref is not None and ref.name == self.name:
                    refs.append(ref)
            elif attrs.get("walrusfs:volume") == self.volume_id and attrs.get(
                "walrusfs:machine"
            ) in {None, self.machine.id}:
                unfinished.append(blob.id)
        return Scan(refs, unfinished)

    async def verdict(self, local_seq: int, known: Container[str] = frozenset()) -> Verdict:
        """`judge` on the chain's checkpoints of this volume (and `unfinished` set, as
        `claim` describes).

        Raises:
            ServiceFailed: as `scan`.
        """
        scan = await self.scan(known)
        self.unfinished = scan.unfinished
        return judge(scan.checkpoints, self.machine, self.volume_id, local_seq)

    async def claim(self, local_seq: int, known: Container[str] = frozenset()) -> None:
        """Mark the newest checkpoint with this machine's lease, or raise VolumeClaimed.
        Afterwards `unfinished` names this machine's registered, never certified Blobs of
        the volume: an earlier process paid for them and died before certifying (nothing of
        this process uploads yet, so none is in use).

        Args:
            local_seq: the checkpoint sequence number of this machine's copy.
            known: object IDs of data blobs this copy records (see `scan`).

        Raises:
            VolumeClaimed: another machine holds the volume, or moved it past this copy.
            ServiceFailed: the chain could not be read, or the lease not written.
        """
        verdict = await self.verdict(local_seq, known)
        if verdict.refusal is not None:
            raise VolumeClaimed(verdict.refusal)
        if verdict.newest is None:
            return  # no checkpoint yet: nothing on chain to claim (docs/durability.md)
        try:
            await self.chain.set_attributes(
                verdict.newest.object_id, {WRITER_ATTR: self.machine.lease()}
            )
        except chain_errors.ChainError as exc:
            raise ServiceFailed(
                f"cannot mark volume {self.name} as in use on chain: {exc}"
            ) from None
        self.marked = verdict.newest.object_id

    def attributes(self, *, final: bool) -> dict[str, str]:
        """What a checkpoint written now carries: who wrote it and, unless it is the last of
        this mount, the lease."""
        out = {"walrusfs:machine": self.machine.id, "walrusfs:host": self.machine.host}
        if not final:
            out[WRITER_ATTR] = self.machine.lease()
        return out

    def wrote(self, object_id: str, *, final: bool) -> None:
        self.marked = None if final else object_id

    async def release(self) -> None:
        """At a clean unmount that wrote no final checkpoint: take the lease off the newest
        checkpoint (a failure leaves it; this machine's next mount takes it again)."""
        if self.marked is None:
            return
        try:
            await self.chain.remove_attributes(self.marked, [WRITER_ATTR])
            self.marked = None
        except chain_errors.ChainError as exc:
            log.warning("could not release volume %s on chain: %s", self.name, exc)
