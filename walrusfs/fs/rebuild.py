"""`walrusfs fsck --rebuild`: a volume's database made again from the chain alone.

The last line of defence, for when every checkpoint is gone (deleted, expired, or made with a
lost key) but the content blobs are not. Every content blob carries the sealed file record of
the chunk it holds (`walrusfs:file`, docs/formats.md): as a Blob attribute for a chunk stored
alone, as the patch's tag inside a quilt. The rebuild lists the wallet's Blob objects of the
volume, reads those records (the quilts whole: one read per quilt), and writes a database that
puts each chunk back in its file and each file at its path.

What a record cannot tell, and what the rebuild does instead:
- Directories, symlinks, empty files, xattrs and hard links have no blob: directories are made
  (0755, the owner of the first file in them); the others are not recovered.
- A path is the file's path when its chunk was uploaded; a later rename without a content
  change is not seen.
- Older versions of a chunk whose blob was not deleted yet: for each (inode, chunk) the record
  with the newest mtime wins; the others are recorded as unused blobs (deleted after the next
  checkpoint, their Storage reused). Two inodes claiming one path: the newer inode (numbers
  are never reused) keeps the path, the other goes to /lost+found/<name>.<inode>. A deleted
  file whose blob was still waiting for deletion comes back: a rebuild never drops data.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import trio

import codec
from chain import move_types as mt
from chain.client import WalrusChain
from walrusfs.fs import blobs, crypto, schema
from walrusfs.fs.checkpoint import KIND as CHECKPOINT_KIND
from walrusfs.fs.errors import KeyMismatch, NothingToRebuild
from walrusfs.fs.keys import KEY_FILE, volume_key
from walrusfs.fs.plans import PLANS_DIR
from walrusfs.fs.records import FILE_ATTR, Record, is_file_attr, read_record
from walrusfs.fs.schema import ROOT_INODE, transaction
from walrusfs.store.client import WalrusStore
from walrusfs.store.errors import StoreError

log = logging.getLogger(__name__)

LOST_FOUND = "lost+found"
READS = 4  # blobs read at once


@dataclass
class RebuildReport:
    volume_id: str = ""
    files: int = 0
    chunks: int = 0
    blobs: int = 0
    unused: int = 0  # blobs holding only superseded versions (deleted after a checkpoint)
    moved_aside: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # blobs that could not be read
    notes: list[str] = field(default_factory=list)


async def _volume_blobs(
    chain: WalrusChain, name: str
) -> tuple[str, list[tuple[mt.Blob, dict[str, str]]], int]:
    """(volume ID, its live certified content blobs with attributes, newest checkpoint seq)."""
    epoch = (await chain.system_info()).epoch
    owned = [b for b in await chain.blobs() if b.certified_epoch is not None]
    attributes = await chain.attributes_of([b.id for b in owned])
    mine = [(b, attributes[b.id]) for b in owned if attributes[b.id].get("walrusfs:name") == name]
    if not mine:
        raise NothingToRebuild(
            f"this wallet owns no live blob of a volume named {name!r}: nothing to rebuild "
            f"from (epoch {epoch}; `walrusfs blob list` shows what the wallet has)"
        )
    # a name reused for a new volume: the volume with the newest upload
    newest: dict[str, int] = defaultdict(int)
    for blob, attrs in mine:
        vid = attrs.get("walrusfs:volume", "")
        newest[vid] = max(newest[vid], blob.certified_epoch or 0)
    volume_id = max(newest, key=lambda v: newest[v])
    if len(newest) > 1:
        log.warning(
            "several volumes were named %s (%s); rebuilding %s, the one uploaded to last",
            name,
            ", ".join(sorted(newest)),
            volume_id,
        )
    seq = 0
    content: list[tuple[mt.Blob, dict[str, str]]] = []
    for blob, attrs in mine:
        if attrs.get("walrusfs:volume") != volume_id:
            continue
        if attrs.get("walrusfs:kind") == CHECKPOINT_KIND:
            seq = max(seq, int(attrs.get("walrusfs:seq", "0")))
        else:
            content.append((blob, attrs))
    return volume_id, content, seq


def _keys_for(
    volume_dir: Path, volume_id: str, chain: WalrusChain, sample: str, passphrase: str | None
) -> crypto.VolumeKeys | None:
    if not sample.startswith(crypto.ATTR_PREFIX):
        return None  # a public volume
    key = volume_key(volume_dir, volume_id, chain, passphrase)
    keys = crypto.VolumeKeys.from_volume_key(key)
    try:
        crypto.open_json(keys, sample)
    except crypto.DecryptError:
        raise KeyMismatch(
            f"the blobs of volume {volume_dir.name} were sealed with another key: rebuild with "
            f"the wallet that made them, put the volume's {KEY_FILE} in {volume_dir}, or give "
            "its passphrase"
        ) from None
    return keys


#: a sealed file record as found: (value, blob object ID, patch ID or None)
Found = tuple[str, str, str | None]


async def _quilt_tags(store: WalrusStore, blob: mt.Blob) -> list[Found]:
    blob_id = codec.BlobId.from_u256(blob.blob_id)
    meta = await store.metadata(blob_id)
    data = await store.read(blob_id)

    def parse() -> list[Found]:
        return [
            (patch.tags[FILE_ATTR], blob.id, str(patch.patch_id(blob_id)))
            for patch in codec.index_from_blob(data, meta)
            if FILE_ATTR in patch.tags
        ]

    return await trio.to_thread.run_sync(parse)


async def collect(
    store: WalrusStore, owned: list[tuple[mt.Blob, dict[str, str]]], report: RebuildReport
) -> list[Found]:
    """Every file record the volume's blobs carry, still sealed. A quilt that cannot be read
    is reported lost in `report`, not raised."""
    found: list[Found] = []
    limit = trio.Semaphore(READS)

    async def quilt(blob: mt.Blob) -> None:
        async with limit:
            try:
                found.extend(await _quilt_tags(store, blob))
            except (StoreError, codec.CodecError, OSError) as exc:
                report.lost.append(f"quilt {blob.id} cannot be read ({exc}): its files are lost")

    async with trio.open_nursery() as nursery:
        for blob, attrs in owned:
            if attrs.get("walrusfs:kind") == "quilt":
                nursery.start_soon(quilt, blob)
            elif records := [v for k, v in attrs.items() if is_file_attr(k)]:
                # one record, or one per file whose bytes equal (a pooled blob reused)
                found.extend((value, blob.id, None) for value in records)
            else:
                report.notes.append(f"blob {blob.id} carries no file record: left alone")
    return found


def open_records(
    found: list[Found], keys: crypto.VolumeKeys | None, report: RebuildReport
) -> list[Record]:
    """The records that open with `keys`; each one that does not is reported lost."""
    records = []
    for value, blob, patch in found:
        try:
            records.append(read_record(value, keys, blob, patch))
        except (crypto.DecryptError, ValueError, KeyError, TypeError) as exc:
            report.lost.append(f"a file record in blob {blob} cannot be read: {exc}")
    return records


def _choose(records: list[Record]) -> tuple[dict[int, Record], dict[tuple[int, int], Record]]:
    """(inode -> the record with its newest metadata, (inode, chunk) -> newest chunk)."""
    files: dict[int, Record] = {}
    chunks: dict[tuple[int, int], Record] = {}
    for r in records:
        best = files.get(r.inode)
        if best is None or (r.mtime_ns, r.size) > (best.mtime_ns, best.size):
            files[r.inode] = r
        key = (r.inode, r.chunk)
        have = chunks.get(key)
        if have is None or r.mtime_ns > have.mtime_ns:
            chunks[key] = r
    return files, chunks


def _name(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def build(
    db_path: Path,
    records: list[Record],
    owned: list[tuple[mt.Blob, dict[str, str]]],
    *,
    volume_id: str,
    keys: crypto.VolumeKeys | None,
    checkpoint_seq: int,
    report: RebuildReport,
) -> None:
    """Write the rebuilt database at `db_path` (a new file; the caller renames it into
    place once it is complete)."""
    files, chunks = _choose(records)
    chunk_size = max(r.chunk_size for r in records)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    # a volume whose blobs are in a storage pool stays one: the pool that ends last is its
    # pool (any other one its blobs are in is renewed too: lifetime.py)
    pooled = sorted((b.storage.end_epoch, b.pool) for b, _ in owned if b.pool is not None)
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        schema.create_tables(
            db,
            uid=os.getuid(),
            gid=os.getgid(),
            chunk_size=chunk_size,
            encryption="none" if keys is None else "wfe1",
            storage="pool" if pooled else "blobs",
        )
        with transaction(db):
            schema.set_param(db, "volume_id", volume_id)
            if pooled:
                schema.set_param(db, "pool", pooled[-1][1])
            if keys is not None:
                schema.set_param(db, "key_check", keys.check_value())
            if checkpoint_seq:
                schema.set_param(db, "checkpoint_seq", str(checkpoint_seq))
            _write_tree(db, files, report)
            _write_chunks(db, files, chunks, owned, report)
    finally:
        db.close()


def _write_tree(db: sqlite3.Connection, files: dict[int, Record], report: RebuildReport) -> None:
    next_dir = max([ROOT_INODE, *files]) + 1
    dirs: dict[tuple[str, ...], int] = {(): ROOT_INODE}
    taken: set[tuple[str, ...]] = set()  # paths holding a file

    def directory(parts: tuple[str, ...], owner: Record) -> int | None:
        nonlocal next_dir
        if parts in dirs:
            return dirs[parts]
        if parts in taken:
            return None
        parent = directory(parts[:-1], owner)
        if parent is None:
            return None
        inode = next_dir
        next_dir += 1
        db.execute(
            "INSERT INTO inodes (id, mode, uid, gid, nlink, atime_ns, mtime_ns, ctime_ns, "
            "btime_ns) VALUES (?, ?, ?, ?, 2, ?, ?, ?, ?)",
            (inode, stat.S_IFDIR | 0o755, owner.uid, owner.gid, *(owner.mtime_ns,) * 4),
        )
        db.execute("UPDATE inodes SET nlink = nlink + 1 WHERE id = ?", (parent,))
        db.execute(
            "INSERT INTO dentries (parent, name, inode) VALUES (?, ?, ?)",
            (parent, _name(parts[-1]), inode),
        )
        dirs[parts] = inode
        return inode

    # newest inode first: it keeps a contested path
    for inode in sorted(files, reverse=True):
        r = files[inode]
        parts = tuple(p for p in r.path.split("/") if p)
        parent = directory(parts[:-1], r) if parts else None
        if not parts or parent is None or parts in taken or parts in dirs:
            name = f"{parts[-1] if parts else 'unnamed'}.{inode}"
            parent = directory((LOST_FOUND,), r)
            if parent is None:
                raise RuntimeError("/lost+found is a file in the rebuilt tree")
            parts = (LOST_FOUND, name)
            where = r.path or f"inode {inode}"
            report.notes.append(f"{where}: path taken; in /{LOST_FOUND}/{name}")
        taken.add(parts)
        db.execute(
            "INSERT INTO inodes (id, mode, uid, gid, size, nlink, atime_ns, mtime_ns, ctime_ns, "
            "btime_ns) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?)",
            (inode, r.mode, r.uid, r.gid, r.size, *(r.mtime_ns,) * 4),
        )
        db.execute(
            "INSERT INTO dentries (parent, name, inode) VALUES (?, ?, ?)",
            (parent, _name(parts[-1]), inode),
        )
        report.files += 1


def _write_chunks(
    db: sqlite3.Connection,
    files: dict[int, Record],
    chunks: dict[tuple[int, int], Record],
    owned: list[tuple[mt.Blob, dict[str, str]]],
    report: RebuildReport,
) -> None:
    rows: dict[str, int] = {}
    for blob, attrs in owned:
        rows[blob.id] = blobs.add_unused(db, blobs.Certified.of_object(blob, blobs.kind_of(attrs)))
    for (inode, chunkno), r in sorted(chunks.items()):
        size = files[inode].size
        if chunkno * r.chunk_size >= size:
            continue  # past the end of the newest version of the file
        db.execute(
            "INSERT INTO chunks (inode, chunkno, staged, blob, patch, length) "
            "VALUES (?, ?, 0, ?, ?, ?)",
            (inode, chunkno, rows[r.blob], r.patch, r.length),
        )
        blobs.incref(db, rows[r.blob])
        report.chunks += 1
    report.blobs = len(rows)
    report.unused = blobs.unused_count(db)


def _move_aside(volume_dir: Path, report: RebuildReport) -> None:
    """An existing database and staging area are kept, renamed, never overwritten."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in ("meta.db", "meta.db-wal", "meta.db-shm", "staging", PLANS_DIR):
        old = volume_dir / name
        if old.exists():
            new = volume_dir / f"{name}.before-rebuild-{stamp}"
            old.rename(new)
            report.moved_aside.append(str(new))


async def rebuild(
    volume_dir: Path, chain: WalrusChain, passphrase: str | None = None
) -> RebuildReport:
    """Rebuild `volume_dir`'s database from the chain (the caller holds the volume lock).
    An existing database and staging area are kept, renamed, once the new one is complete.

    Args:
        passphrase: the volume's, when its key is derived from one.

    Raises:
        NothingToRebuild: the wallet owns no live certified blob of a volume of that name,
            or none of its file records can be read.
        KeyMismatch: the records were sealed with another key (or there is no key at hand).
        BadKeyFile: the volume's `volume.key` does not hold a key.
        chain.errors.ChainError: the chain could not be read.
    """
    report = RebuildReport()
    volume_id, owned, seq = await _volume_blobs(chain, volume_dir.name)
    report.volume_id = volume_id
    store = WalrusStore(chain)
    try:
        found = await collect(store, owned, report)
    finally:
        await store.close()
    if not found:
        raise NothingToRebuild(
            f"the {len(owned)} blob(s) of volume {volume_dir.name} hold no readable file record"
        )
    keys = _keys_for(volume_dir, volume_id, chain, found[0][0], passphrase)
    records = open_records(found, keys, report)
    if not records:
        raise NothingToRebuild(
            f"no file record of volume {volume_dir.name} could be read: {report.lost[0]}"
        )
    volume_dir.mkdir(parents=True, exist_ok=True)
    new = volume_dir / "meta.db.rebuild"
    await trio.to_thread.run_sync(
        lambda: build(
            new,
            records,
            owned,
            volume_id=volume_id,
            keys=keys,
            checkpoint_seq=seq,
            report=report,
        )
    )
    # only a complete database replaces what is there (which is kept, renamed); the mount
    # writes volume.key when the key comes from the wallet, as for any volume
    _move_aside(volume_dir, report)
    new.rename(volume_dir / "meta.db")
    return report
