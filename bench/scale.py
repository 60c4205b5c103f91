"""Metadata at scale: listing a 100,000-entry directory, and mounting a volume of 1,000,000
files with 10,000 uploads pending.

    .venv/bin/python bench/scale.py                   # both, on a devnet of its own
    .venv/bin/python bench/scale.py --only mount --rounds 5
    .venv/bin/python bench/scale.py --files 100000 --wide 10000 --pending 1000   # a quick run
    .venv/bin/python bench/scale.py --keep /var/tmp/scale    # keep the home for profiling

Why it builds the volume behind the mount's back: a million files created through FUSE take
hours, and what this measures is what the mount does with the metadata, not how it came to
be. So the volume is made the ordinary way once (mount and unmount on a devnet, in a
temporary WALRUSFS_HOME: its database, keys, parameters and checkpoint are real), then rows
are added to its `meta.db` with the meanings walrusfs/fs/schema.py gives them, consistent
enough that fsck's database check (`fsck.check_database`) changes nothing:

- `--files` files: `--wide` of them in one directory `wide/`, the rest in directories of
  `--per-dir` files (`d0000/`, `d0001/`, ...);
- every 100th file (`--pending` in all) is staged and not uploaded: `chunks.staged = 1`, its
  bytes a row of the staging area's `small.db` (a hundredth of them, 256 KiB, a chunk file
  `staging/<inode>.0` instead), as cache/staging.py stores them;
- the others are uploaded: 1% a blob of their own, the rest patches of quilts (k_s - 1 patches
  per quilt), each referring to a `blobs` row whose reference count matches. The blobs exist
  only in the database (never read here: the rows are what a mount or a listing touches).

(b) mount: the wall time of `walrusfs mount` (the command returns once the daemon has called
`pyfuse3.init` and reported ready over its pipe, walrusfs/daemon.py) with `--upload-delay`
so long that nothing uploads while it is measured, median of `--rounds`; after a clean
unmount, and after a crash (clean_unmount = '0': the mount repairs). Target: < 2 s.

(a) listing: `ls -f` and `ls -l` of `wide/` in the mount and of a local directory with as
many files of the same sizes beside it (same disk, same run), the page cache dropped the same
way before each (`sync; echo 3 > /proc/sys/vm/drop_caches`, which also drops the kernel's
FUSE dentries and attributes), median of `--rounds`. Target: mount / local < 3.

The devnet (--n-shards, default 100: shards cost the devnet time, not the metadata) runs on
the same cores; the home is removed afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # before bench/ (whose codec.py would shadow the package)

import codec  # noqa: E402
from bench.home import WalrusfsHome  # noqa: E402
from codec.quilt import QuiltPatchId  # noqa: E402

FILE = 0o100644
DIR = 0o040755
STAGED_EVERY = 100  # every 100th file is staged
BIG_EVERY = 100  # of the uploaded files, every 100th is a blob of its own
STAGED_FILE_EVERY = 100  # of the staged files, every 100th is a chunk file, not a small.db row
BATCH = 20_000


def drop_page_cache() -> None:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        print("# cannot drop the page cache (not root): the listings may come from it")


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class Home(WalrusfsHome):
    """A WALRUSFS_HOME with a devnet and the volume `default`."""

    def __init__(self, path: Path, n_shards: int) -> None:
        super().__init__(path, n_shards)
        self.mnt = path / "mnt"
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.volume = path / "data" / "volumes" / "default"

    def mount(self) -> float:
        """Seconds `walrusfs mount` takes to return (the mount is live then)."""
        return timed(lambda: self.cli("mount", str(self.mnt), "--upload-delay", "1e9"))

    def umount(self) -> None:
        """Unmount and wait until the daemon has let the volume go (its lock): `walrusfs
        umount` returns at once when another mount has the same source (`walrusfs:default`
        of another WALRUSFS_HOME on this machine), taking it for a bind mount of this one."""
        self.cli("umount", "--no-sync", str(self.mnt))
        fd = os.open(self.volume / "lock", os.O_RDWR)
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        finally:
            os.close(fd)

    def close(self) -> None:
        subprocess.run(
            ["fusermount3", "-u", "-z", str(self.mnt)], check=False, stderr=subprocess.DEVNULL
        )
        self.cli("devnet", "down")


def _sizes(rng: random.Random, n: int) -> list[int]:
    """File sizes: mostly small (quilted), a hundredth 1-8 MiB."""
    return [
        rng.randint(1 << 20, 8 << 20) if i % BIG_EVERY == BIG_EVERY // 2 else rng.randint(1, 16384)
        for i in range(n)
    ]


def _fake_blob_id(rng: random.Random) -> codec.BlobId:
    return codec.BlobId(rng.randbytes(32))


def build_volume(
    volume: Path, *, files: int, wide: int, per_dir: int, n_shards: int, seed: int = 7
) -> dict[str, int]:
    """Add the files to the volume's database and staging area (see the module docstring);
    what was added. The volume must not be mounted."""
    rng = random.Random(seed)
    db = sqlite3.connect(volume / "meta.db", isolation_level=None)
    small = sqlite3.connect(volume / "staging" / "small.db", isolation_level=None)
    max_patches = codec.EncodingParams(n_shards).k_s - 1
    (epoch_row,) = db.execute("SELECT coalesce(max(end_epoch), 0) FROM blobs").fetchone()
    end_epoch = int(epoch_row) + 10_000  # far from any renewal horizon
    uid, gid = os.getuid(), os.getgid()
    now = time.time_ns()
    (next_inode,) = db.execute("SELECT max(id) + 1 FROM inodes").fetchone()
    (next_blob,) = db.execute("SELECT coalesce(max(id), 0) + 1 FROM blobs").fetchone()
    dirs = [("wide", wide)] + [
        (f"d{i:04d}", per_dir) for i in range((files - wide + per_dir - 1) // per_dir)
    ]
    counts = {"files": 0, "dirs": 0, "staged": 0, "staged_files": 0, "blobs": 0, "quilts": 0}
    db.execute("BEGIN")
    small.execute("BEGIN")
    quilt: tuple[int, codec.BlobId] | None = None
    in_quilt = 0
    quilt_refs: dict[int, tuple[int, int]] = {}  # quilt row -> (patches, bytes)
    left = files
    for name, wanted in dirs:
        n = min(wanted, left)
        left -= n
        dir_inode = next_inode
        next_inode += 1
        db.execute(
            "INSERT INTO inodes (id, mode, uid, gid, nlink, atime_ns, mtime_ns, ctime_ns, "
            "btime_ns) VALUES (?, ?, ?, ?, 2, ?, ?, ?, ?)",
            (dir_inode, DIR, uid, gid, now, now, now, now),
        )
        db.execute(
            "INSERT INTO dentries (parent, name, inode) VALUES (1, ?, ?)",
            (name.encode(), dir_inode),
        )
        counts["dirs"] += 1
        for start in range(0, n, BATCH):
            part = range(start, min(n, start + BATCH))
            sizes = _sizes(rng, len(part))
            inodes: list[tuple[int, ...]] = []
            dentries: list[tuple[int, bytes, int]] = []
            chunks: list[tuple[int, int, int, int | None, str | None, int]] = []
            blob_rows: list[tuple[object, ...]] = []
            smalls: list[tuple[int, int, bytes]] = []
            for i, size in zip(part, sizes, strict=True):
                inode = next_inode
                next_inode += 1
                t = now - rng.randrange(10**12)
                inodes.append((inode, FILE, uid, gid, size, t, t, t, t))
                dentries.append((dir_inode, f"f{i:06d}".encode(), inode))
                counts["files"] += 1
                if counts["files"] % STAGED_EVERY == 0:
                    counts["staged"] += 1
                    if counts["staged"] % STAGED_FILE_EVERY == 0:
                        staged_size = 256 << 10
                        inodes[-1] = (inode, FILE, uid, gid, staged_size, t, t, t, t)
                        path = volume / "staging" / f"{inode}.0"
                        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
                        with os.fdopen(fd, "wb") as f:
                            f.write(rng.randbytes(staged_size))
                        counts["staged_files"] += 1
                    else:
                        smalls.append((inode, 0, rng.randbytes(min(size, 16384))))
                        inodes[-1] = (inode, FILE, uid, gid, min(size, 16384), t, t, t, t)
                    chunks.append((inode, 0, 1, None, None, 0))
                elif size > 16384:  # a blob of its own
                    blob_id = _fake_blob_id(rng)
                    blob_rows.append(
                        (
                            next_blob,
                            str(blob_id),
                            f"0x{rng.randbytes(32).hex()}",
                            "blob",
                            size + 27 + 16 * (size // 65536 + 1),
                            size * 5,
                            end_epoch,
                            1,
                            None,
                        )
                    )
                    chunks.append((inode, 0, 0, next_blob, None, size))
                    next_blob += 1
                    counts["blobs"] += 1
                else:  # a patch of a quilt
                    if quilt is None or in_quilt >= max_patches:
                        quilt = (next_blob, _fake_blob_id(rng))
                        quilt_refs[next_blob] = (0, 0)
                        next_blob += 1
                        in_quilt = 0
                        counts["quilts"] += 1
                    row, quilt_id = quilt
                    patch = QuiltPatchId(quilt_id, in_quilt + 1, in_quilt + 2)
                    in_quilt += 1
                    refs, nbytes = quilt_refs[row]
                    quilt_refs[row] = (refs + 1, nbytes + size)
                    chunks.append((inode, 0, 0, row, str(patch), size))
            db.executemany(
                "INSERT INTO inodes (id, mode, uid, gid, nlink, size, atime_ns, mtime_ns, "
                "ctime_ns, btime_ns) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
                [(i, m, u, g, s, a, b, c, d) for i, m, u, g, s, a, b, c, d in inodes],
            )
            db.executemany("INSERT INTO dentries (parent, name, inode) VALUES (?, ?, ?)", dentries)
            db.executemany(
                "INSERT INTO chunks (inode, chunkno, staged, blob, patch, length) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                chunks,
            )
            db.executemany(
                "INSERT INTO blobs (id, blob_id, object_id, kind, size, encoded_size, "
                "end_epoch, refcount, deleted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                blob_rows,
            )
            small.executemany("INSERT INTO small VALUES (?, ?, ?)", smalls)
    db.executemany(
        "INSERT INTO blobs (id, blob_id, object_id, kind, size, encoded_size, end_epoch, "
        "refcount, deleted_at) VALUES (?, ?, ?, 'quilt', ?, ?, ?, ?, NULL)",
        [
            (
                row,
                str(_fake_blob_id(rng)),
                f"0x{rng.randbytes(32).hex()}",
                nbytes + 4096,
                (nbytes + 4096) * 5,
                end_epoch,
                refs,
            )
            for row, (refs, nbytes) in quilt_refs.items()
        ],
    )
    db.execute("UPDATE inodes SET nlink = nlink + ? WHERE id = 1", (counts["dirs"],))
    small.execute("COMMIT")
    db.execute("COMMIT")
    small.close()
    db.close()
    return counts


def fsck_database(volume: Path) -> list[str]:
    """fsck's database check on a copy (it must find nothing to do); what it reported."""
    from cache.staging import Staging  # noqa: PLC0415
    from walrusfs.fs.fsck import Report, check_database  # noqa: PLC0415

    with tempfile.TemporaryDirectory(dir=volume.parent) as tmp:
        copy = Path(tmp)
        shutil.copy(volume / "meta.db", copy / "meta.db")
        shutil.copytree(volume / "staging", copy / "staging")
        db = sqlite3.connect(copy / "meta.db", isolation_level=None)
        staging = Staging(copy / "staging")
        report = Report()
        try:
            check_database(db, staging, report)
        finally:
            staging.close()
            db.close()
    return report.repaired + report.lost


def local_copy(volume: Path, dest: Path, directory: bytes) -> int:
    """Files of the sizes of the mount's `directory`, in a local directory; how many."""
    db = sqlite3.connect(volume / "meta.db")
    rows = db.execute(
        "SELECT d.name, i.size FROM dentries d JOIN inodes i ON i.id = d.inode "
        "WHERE d.parent = (SELECT inode FROM dentries WHERE parent = 1 AND name = ?)",
        (directory,),
    ).fetchall()
    db.close()
    dest.mkdir()
    for name, size in rows:
        fd = os.open(dest / name.decode(), os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            if size:
                os.pwrite(fd, b"x", size - 1)  # sparse beyond one block: sizes as in the mount
        finally:
            os.close(fd)
    return len(rows)


def ls_seconds(flag: str, path: Path) -> float:
    """`ls FLAG PATH` with the page cache dropped first; its wall time."""
    drop_page_cache()
    t0 = time.perf_counter()
    subprocess.run(["ls", flag, str(path)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def ls_times(path: Path, rounds: int) -> dict[str, float]:
    """Median seconds of `ls -f` and `ls -l` of `path` over `rounds` runs."""
    return {
        f"ls {flag}": statistics.median(ls_seconds(flag, path) for _ in range(rounds))
        for flag in ("-f", "-l")
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--files", type=int, default=1_000_000)
    p.add_argument("--wide", type=int, default=100_000, help="files in the one wide directory")
    p.add_argument("--per-dir", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--n-shards", type=int, default=100)
    p.add_argument("--only", choices=["mount", "list"])
    p.add_argument("--keep", type=Path, help="make the home here and keep it (no devnet down)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    tmp = None
    if args.keep is None:
        tmp = tempfile.TemporaryDirectory(prefix="scale-", dir="/var/tmp")
        base = Path(tmp.name)
    else:
        base = args.keep
        base.mkdir(parents=True, exist_ok=False)
    res: dict[str, object] = {"files": args.files, "wide": args.wide}
    home = Home(base / "home", args.n_shards)
    try:
        res["empty mount s"] = home.mount()
        home.umount()
        t = timed(
            lambda: res.update(
                build_volume(
                    home.volume,
                    files=args.files,
                    wide=args.wide,
                    per_dir=args.per_dir,
                    n_shards=args.n_shards,
                )
            )
        )
        print(f"# built in {t:.0f} s: {json.dumps(res)}", flush=True)
        found = fsck_database(home.volume)
        print(f"# fsck's database check: {found or 'nothing to repair'}", flush=True)
        if args.only != "list":
            clean, crashed = [], []
            for _ in range(args.rounds):
                clean.append(home.mount())
                home.umount()
            for _ in range(args.rounds):
                db = sqlite3.connect(home.volume / "meta.db")
                db.execute("UPDATE params SET value = '0' WHERE key = 'clean_unmount'")
                db.commit()
                db.close()
                crashed.append(home.mount())
                home.umount()
            res["mount s"] = statistics.median(clean)
            res["mount after crash s"] = statistics.median(crashed)
            res["mount all s"] = clean + crashed
        if args.only != "mount":
            local = base / "local-wide"
            local_copy(home.volume, local, b"wide")
            res["local"] = ls_times(local, args.rounds)
            home.mount()
            res["walrusfs"] = ls_times(home.mnt / "wide", args.rounds)
            home.umount()
    finally:
        if tmp is not None:
            home.close()
            tmp.cleanup()
    print(
        f"# {args.files} files ({args.wide} in wide/), {res.get('staged')} staged; "
        f"devnet 4 nodes / {args.n_shards} shards"
    )
    print(f"{'row':28} {'value':>10} {'target':>10} {'ratio':>7}")
    print(f"{'mount, empty volume s':28} {res['empty mount s']:10.2f}")
    for key in ("mount s", "mount after crash s"):
        if key in res:
            value = float(res[key])  # type: ignore[arg-type]
            print(f"{key:28} {value:10.2f} {2.0:10.2f} {value / 2.0:7.2f}")
    if "local" in res:
        local_t, ours = res["local"], res["walrusfs"]
        assert isinstance(local_t, dict) and isinstance(ours, dict)
        for key, value in local_t.items():
            print(f"{key + ' local s':28} {value:10.3f}")
            print(
                f"{key + ' walrusfs s':28} {ours[key]:10.3f} {3.0:10.2f} {ours[key] / value:7.2f}"
            )
    print("# ratio: value / target for the mount; walrusfs / local for ls (target < 3)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
