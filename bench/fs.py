"""The mount, the peer filesystems and a local directory measured the way
../shared/tools/bench/fsbench.sh measures them, all in one run on one machine, so that every
ratio (walrusfs against the best peer, and against the local disk) compares numbers taken
minutes apart under the same load rather than on different days.

    .venv/bin/python bench/fs.py [--size 1G] [--files 10000] [--rand-seconds 20]
                                 [--n-shards 1000] [--peers juicefs,rclone|none] [--json F]
    .venv/bin/python bench/fs.py --size 4G --only big --peers none     # the memory run
    .venv/bin/python bench/fs.py --size 512M --only big --memory 878M --peers none

Systems, in this order: a local directory (the disk of /var/tmp), JuiceFS and rclone
(bench/peers.py: which are set up how, and what "uploaded" and "cache dropped" mean for
each), then walrusfs on a devnet of its own (4 storage nodes, started in a temporary
WALRUSFS_HOME and removed afterwards). Each runs alone: a peer is mounted only for its turn.

Rows, as fsbench.sh measures them (fio, ioengine=psync, --fallocate=none, JSON output; the
kernel page cache dropped before each read phase):
- seq write 1M: fio rw=write bs=1M of SIZE with end_fsync=1 into a new file A;
- seq read 1M: fio rw=read bs=1M of A; rand read 4K: fio rw=randread bs=4k, time-based
  (RAND_SECONDS), randrepeat=0, on A. Whatever the filesystem holds of A right after the write
  serves these (walrusfs: its staging area while the uploads run; rclone: its VFS cache);
- small files: FILES files of 4 KiB, 100 per directory: create (then sync(2)), stat, read,
  delete, in files/s;
- rsync: `rsync -a` of this Python's standard library (without site-packages and __pycache__,
  from a private copy), again (no-op), again after 1% of its .py files changed; then a
  checksum dry run counts files that differ (0 when the copy is right); ls -lR of the copy.

Rows fsbench.sh lacks:
- seq write + upload: fio writes a new file B, then the system's sync returns (walrusfs:
  `walrusfs sync`, certified on Walrus); MiB/s over fio's runtime plus the sync's. A is
  uploaded and deleted first so that its upload does not overlap B's;
- after upload: a file written and uploaded but never read since (B for the sequential read,
  C, written and uploaded the same way, for the random one), after `drop_local_cache` and the
  page cache dropped. For walrusfs: `walrusfs sync` returns once every staged chunk is
  committed, and the commit removes the staged copy in the same step (walrusfs/fs/commits.py);
  the upload worker keeps each blob it stored in the block cache (sealed, as stored), which
  is where these reads come from, as a file read the day after its upload would (memory is
  new: nothing of B or C was read since it was written);
- cold: first 4K read: milliseconds of one 4 KiB pread in the middle of C right after the
  cold remount below (the time to first byte; walrusfs notes the storage-node requests it
  made: the target is one metadata fetch and the slivers of one row);
- cold: seq read 1M of B after unmounting, deleting the system's on-disk cache and mounting
  again (walrusfs: the sliver cache; every byte from the storage nodes);
- peak RSS: the daemons' resident high-water marks over every mount (walrusfs: the mount and
  its upload worker, each process's own peak, added).

Ratios: "walrusfs / best peer" takes the best peer on each row; times (rows in s) and memory
are compared the other way round (peer / walrusfs), so above 1 is walrusfs ahead everywhere.
Without fio, the big-file rows fall back to Python loops, which the output says (not comparable
with fio's).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import traceback
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # before bench/ (whose codec.py would shadow the package)

from bench.peers import PEERS, LocalDir, System, make_peers  # noqa: E402
from bench.provenance import provenance  # noqa: E402
from walrusfs.devnet.launcher import Devnet  # noqa: E402
from walrusfs.validate import parse_size  # noqa: E402

BLOCK = 1 << 20
MiB = 1 << 20
HIGHER, LOWER = "higher", "lower"

#: every row in print order, and which way is better (None: not a speed, no ratio)
ROWS: list[tuple[str, str | None]] = [
    ("seq write 1M MiB/s", HIGHER),
    ("seq read 1M MiB/s", HIGHER),
    ("rand read 4K IOPS", HIGHER),
    ("seq write + upload MiB/s", HIGHER),
    ("after upload: seq read 1M MiB/s", HIGHER),
    ("after upload: rand read 4K IOPS", HIGHER),
    ("cold: first 4K read ms", LOWER),
    ("cold: seq read 1M MiB/s", HIGHER),
    ("small create files/s", HIGHER),
    ("small stat files/s", HIGHER),
    ("small read files/s", HIGHER),
    ("small delete files/s", HIGHER),
    ("rsync stdlib s", LOWER),
    ("rsync no-op s", LOWER),
    ("rsync 1% changed s", LOWER),
    ("rsync verify diffs", None),
    ("ls -lR s", LOWER),
    ("peak RSS MiB", LOWER),
    ("mount peak RSS MiB", None),
    ("worker peak RSS MiB", None),
]
BIG_ROWS = ROWS[:7]
SMALL_ROWS = ROWS[7:16]

Results = dict[str, float | None]


class BenchError(Exception):
    """A measurement failed; its row is reported as failed and the run goes on."""


def drop_page_cache() -> None:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        warn_once("cannot drop the page cache (not root): reads may come from it")


@functools.cache
def warn_once(text: str) -> None:
    print(f"# {text}", flush=True)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# -- the big file: fio as fsbench.sh runs it, or Python loops without fio ----------------------


class Fio:
    """fsbench.sh's three fio jobs on one file: `--ioengine=psync --fallocate=none`, JSON."""

    def __init__(self, size: int, rand_seconds: float) -> None:
        self.size = size
        self.rand_seconds = rand_seconds
        out = subprocess.run(["fio", "--version"], capture_output=True, text=True, check=True)
        self.version = out.stdout.strip()

    def _job(self, path: Path, side: str, *args: str) -> dict[str, Any]:
        cmd = [
            "fio",
            *args,
            f"--filename={path}",
            f"--size={self.size}",
            "--ioengine=psync",
            "--fallocate=none",
            "--output-format=json",
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise BenchError(f"{' '.join(cmd[:3])}: " + " | ".join(r.stderr.splitlines()[:3]))
        txt = r.stdout[r.stdout.index("{") :]  # fio may print warnings before the JSON
        return dict(json.loads(txt)["jobs"][0][side])

    def write(self, path: Path) -> tuple[float, float]:
        """MiB/s and seconds of a sequential 1 MiB write of a new file, fsync at the end."""
        j = self._job(path, "write", "--name=seqwrite", "--rw=write", "--bs=1M", "--end_fsync=1")
        return j["bw_bytes"] / MiB, j["runtime"] / 1000

    def read(self, path: Path) -> float:
        return float(self._job(path, "read", "--name=seqread", "--rw=read", "--bs=1M")["bw_bytes"])

    def randread(self, path: Path) -> float:
        j = self._job(
            path,
            "read",
            "--name=randread",
            "--rw=randread",
            "--bs=4k",
            "--time_based",
            f"--runtime={self.rand_seconds:g}",
            "--randrepeat=0",
        )
        return float(j["iops"])


class PythonLoops:
    """The same three jobs in Python, for a machine without fio (not comparable with fio)."""

    version = "none: Python loops"

    def __init__(self, size: int, rand_seconds: float) -> None:
        self.size = size
        self.rand_seconds = rand_seconds

    def write(self, path: Path) -> tuple[float, float]:
        block = os.urandom(BLOCK)

        def go() -> None:
            fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
            try:
                for _ in range(self.size // BLOCK):
                    os.write(fd, block)
                os.fsync(fd)
            finally:
                os.close(fd)

        dt = timed(go)
        return self.size / MiB / dt, dt

    def read(self, path: Path) -> float:
        def go() -> None:
            with path.open("rb", buffering=0) as f:
                while f.read(BLOCK):
                    pass

        return self.size / timed(go)

    def randread(self, path: Path) -> float:
        size = path.stat().st_size
        rng = random.Random()
        ops = 0
        fd = os.open(path, os.O_RDONLY)
        try:
            end = time.perf_counter() + self.rand_seconds
            while time.perf_counter() < end:
                os.pread(fd, 4096, rng.randrange(0, size // 4096) * 4096)
                ops += 1
        finally:
            os.close(fd)
        return ops / self.rand_seconds


Engine = Fio | PythonLoops


def measure(res: Results, key: str, fn: Callable[[], float], notes: list[str]) -> None:
    """res[key] = fn(), or None with a note when it fails (the run goes on)."""
    try:
        res[key] = fn()
    except (BenchError, OSError, subprocess.SubprocessError, RuntimeError) as exc:
        res[key] = None
        notes.append(f"{key}: FAILED: {exc}")


def big_rows(s: System, work: Path, io: Engine, res: Results) -> None:
    a, b, c = work / "a.bin", work / "b.bin", work / "c.bin"
    n = s.notes
    measure(res, "seq write 1M MiB/s", lambda: io.write(a)[0], n)
    drop_page_cache()
    measure(res, "seq read 1M MiB/s", lambda: io.read(a) / MiB, n)
    drop_page_cache()
    measure(res, "rand read 4K IOPS", lambda: io.randread(a), n)
    s.sync()  # A uploaded, then gone: nothing of it in flight while B is measured
    a.unlink(missing_ok=True)
    s.sync()

    def write_upload() -> float:
        _, seconds = io.write(b)
        return io.size / MiB / (seconds + timed(s.sync))

    measure(res, "seq write + upload MiB/s", write_upload, n)
    io.write(c)
    s.sync()
    s.drop_local_cache([b, c])
    drop_page_cache()
    measure(res, "after upload: seq read 1M MiB/s", lambda: io.read(b) / MiB, n)
    drop_page_cache()
    measure(res, "after upload: rand read 4K IOPS", lambda: io.randread(c), n)
    s.remount_cold()
    drop_page_cache()
    measure(res, "cold: first 4K read ms", lambda: first_read(s, c, io.size), n)
    drop_page_cache()
    measure(res, "cold: seq read 1M MiB/s", lambda: io.read(b) / MiB, n)
    b.unlink(missing_ok=True)
    c.unlink(missing_ok=True)


def first_read(s: System, path: Path, size: int) -> float:
    """Milliseconds to the first byte: one 4 KiB pread in the middle of a file nothing of
    which is cached (the time to first byte of a cold random read), with the storage
    requests it made in the notes where the system can tell."""
    before = s.node_requests()
    fd = os.open(path, os.O_RDONLY)
    try:
        t0 = time.perf_counter()
        os.pread(fd, 4096, size // 2 // 4096 * 4096)
        ms = (time.perf_counter() - t0) * 1000
    finally:
        os.close(fd)
    after = s.node_requests()
    if before is not None and after is not None:
        made = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
        s.notes.append(f"cold first 4K read: requests to the storage nodes {made}")
    return ms


# -- small files and rsync, as fsbench.sh ------------------------------------------------------


def small_files(root: Path, n: int) -> dict[str, float]:
    data = os.urandom(4096)
    paths = [root / f"d{i // 100:04d}" / f"f{i:06d}" for i in range(n)]
    root.mkdir()
    out = {}

    def create() -> None:
        for i in range(0, n, 100):
            paths[i].parent.mkdir()
        for p in paths:
            with p.open("wb") as f:
                f.write(data)

    def stat() -> None:
        for p in paths:
            p.stat()

    def read() -> None:
        for p in paths:
            if p.read_bytes() != data:
                raise BenchError(f"content mismatch in {p}")

    def delete() -> None:
        for p in paths:
            p.unlink()
        for i in range(0, n, 100):
            paths[i].parent.rmdir()

    out["create"] = n / timed(create)
    os.sync()
    for name, fn in (("stat", stat), ("read", read), ("delete", delete)):
        out[name] = n / timed(fn)
    return out


STDLIB = sysconfig.get_paths()["stdlib"]
EXCLUDE = ["--exclude", "site-packages", "--exclude", "__pycache__"]
#: itemized changes that fsbench.sh counts as a difference (`rsync -anc --itemize-changes`)
DIFF_TYPES = {"<f", ">f", "cf", ".f"}


def stage_stdlib(stage: Path) -> None:
    """(Re)make `stage` an exact copy of the standard library as fsbench.sh stages it."""
    subprocess.run(["rsync", "-a", "--delete", *EXCLUDE, f"{STDLIB}/", f"{stage}/"], check=True)


def rsync_rows(stage: Path, dest: Path, res: Results, notes: list[str]) -> None:
    def xfer() -> tuple[float, int]:
        cmd = ["rsync", "-a", "--stats", f"{stage}/", f"{dest}/"]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            raise BenchError(f"rsync: {r.stderr.strip()[:200]}")
        sent = [
            int(line.split(":")[1].replace(",", ""))
            for line in r.stdout.splitlines()
            if line.startswith("Number of regular files transferred")
        ]
        return dt, sent[0] if sent else -1

    try:
        res["rsync stdlib s"], first = xfer()
        res["rsync no-op s"], again = xfer()
        py = sorted(str(p) for p in stage.rglob("*.py") if p.is_file())
        changed = py[99::100]  # fsbench.sh: every 100th .py file, sorted by path
        for f in changed:
            with open(f, "a") as fh:
                fh.write("# fsbench\n")
        res["rsync 1% changed s"], third = xfer()
        check = subprocess.run(
            ["rsync", "-anc", "--itemize-changes", f"{stage}/", f"{dest}/"],
            capture_output=True,
            text=True,
            check=True,
        )
        diffs = [line for line in check.stdout.splitlines() if line[:2] in DIFF_TYPES]
        res["rsync verify diffs"] = float(len(diffs))
        if diffs:
            kinds = {"c": "content", "s": "size", "t": "mtime", "p": "permissions", "o": "owner"}
            seen = {
                name: sum(1 for d in diffs if d[i] == flag)
                for i, (flag, name) in enumerate(kinds.items(), start=2)
            }
            notes.append(
                f"rsync verify: {len(diffs)} files differ from the source ("
                + ", ".join(f"{k}: {v}" for k, v in seen.items() if v)
                + ")"
            )
        if again != 0 or third != len(changed):
            notes.append(
                f"rsync sent {first}, then {again} (no-op), then {third} files "
                f"({len(changed)} changed)"
            )
        drop_page_cache()
        ls = ["ls", "-lR", str(dest)]
        res["ls -lR s"] = timed(lambda: subprocess.run(ls, check=True, stdout=subprocess.DEVNULL))
    except (BenchError, OSError, subprocess.SubprocessError) as exc:
        notes.append(f"rsync: FAILED: {exc}")
    finally:
        stage_stdlib(stage)


def small_rows(s: System, work: Path, args: argparse.Namespace, stage: Path, res: Results) -> None:
    try:
        for k, v in small_files(work / "small", args.files).items():
            res[f"small {k} files/s"] = v
    except (BenchError, OSError) as exc:
        s.notes.append(f"small files: FAILED: {exc}")
    rsync_rows(stage, work / "stdlib", res, s.notes)


# -- walrusfs ----------------------------------------------------------------------------------


class Walrusfs(System):
    """The mount on a devnet of its own, in a temporary WALRUSFS_HOME."""

    name = "walrusfs"

    def __init__(self, root: Path, n_shards: int, mount_args: tuple[str, ...] = ()) -> None:
        super().__init__(root)
        self.mount_args = mount_args
        self.env = dict(os.environ, WALRUSFS_HOME=str(root), PYTHONPATH=str(ROOT))
        self.peaks = (0, 0)  # VmHWM of the mount daemon and its worker, over every mount
        root.mkdir(parents=True, exist_ok=True)
        self.cli("devnet", "up", "--n-shards", str(n_shards))

    def cli(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "walrusfs.cli", *args],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def mount(self) -> None:
        super().mount()
        self.cli("mount", str(self.mnt), *self.mount_args)

    def umount(self) -> None:
        self.sample_rss()
        self.cli("umount", str(self.mnt))

    def sync(self) -> None:
        self.cli("sync", str(self.mnt))
        status = json.loads(os.getxattr(self.mnt, "user.walrusfs.ctl.status"))
        staged = status["staging"]["bytes"]
        if staged:
            self.notes.append(f"{staged} bytes still staged after `walrusfs sync`")

    def clear_cache(self) -> None:
        shutil.rmtree(self.root / "cache", ignore_errors=True)

    def node_requests(self) -> dict[str, int] | None:
        """Requests the devnet's storage nodes answered, by handler, summed over the nodes."""
        spec = Devnet(self.root / "data").spec()
        total: dict[str, int] = {}
        for port in spec.node_ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/devnet/requests") as rsp:
                for name, count in json.load(rsp)["success"]["data"].items():
                    total[name] = total.get(name, 0) + int(count)
        return total

    def sample_rss(self) -> None:
        """VmHWM (resident memory high-water mark) of the mount daemon and of its upload
        worker process, the highest of every mount so far."""
        try:
            pid = int(os.getxattr(self.mnt, "user.walrusfs.ctl.pid"))
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return

        def hwm(p: int | str) -> int:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
            return 0

        mount, worker = hwm(pid), sum(hwm(c) for c in children)
        self.peaks = (max(self.peaks[0], mount), max(self.peaks[1], worker))

    def rss_rows(self) -> dict[str, float]:
        self.sample_rss()
        mount, worker = self.peaks
        return {
            "peak RSS MiB": (mount + worker) / MiB,
            "mount peak RSS MiB": mount / MiB,
            "worker peak RSS MiB": worker / MiB,
        }

    def close(self) -> None:
        log = self.root / "data" / "volumes" / "default" / "mount.log"
        if log.exists():
            shutil.copy(log, "/tmp/fsbench-mount.log")
        subprocess.run(
            ["fusermount3", "-u", "-z", str(self.mnt)], check=False, stderr=subprocess.DEVNULL
        )
        self.cli("devnet", "down")


# -- one run -----------------------------------------------------------------------------------


def run_system(s: System, args: argparse.Namespace, io: Engine, stage: Path) -> Results:
    print(f"# {s.name}: measuring", flush=True)
    res: Results = {}
    s.mount()
    work = s.mnt / "fsbench"
    work.mkdir()
    if args.only != "small":
        big_rows(s, work, io, res)
    if args.only != "big":
        small_rows(s, work, args, stage, res)
    res.update(s.rss_rows())
    shutil.rmtree(work, ignore_errors=True)
    s.umount()
    return res


def fmt(v: float | None) -> str:
    if v is None:
        return "FAIL"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def ratio(better: str | None, ours: float | None, other: float | None) -> float | None:
    """walrusfs against `other`, above 1 when walrusfs is better."""
    if better is None or not ours or not other:
        return None
    return ours / other if better == HIGHER else other / ours


def best_peer(better: str | None, values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    if better is None or not vals:
        return None
    return max(vals) if better == HIGHER else min(vals)


def table(results: dict[str, Results], peers: list[str]) -> list[str]:
    cols = ["local", "walrusfs", *peers]
    head = f"{'row':33}" + "".join(f"{c:>11}" for c in cols) + f"{'wfs/best':>10}{'wfs/local':>10}"
    lines = [head]
    for key, better in ROWS:
        if not any(key in results.get(c, {}) for c in cols):
            continue
        cells = "".join(
            f"{fmt(results[c][key]) if key in results.get(c, {}) else '':>11}" for c in cols
        )
        ours = results.get("walrusfs", {}).get(key)
        best = best_peer(better, [results[p].get(key) for p in peers if p in results])
        vs_best = ratio(better, ours, best)
        vs_local = ratio(better, ours, results.get("local", {}).get(key))
        lines.append(
            f"{key:33}{cells}"
            + (f"{vs_best:10.2f}" if vs_best is not None else f"{'':10}")
            + (f"{vs_local:10.3f}" if vs_local is not None else "")
        )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", default="1G", help="size of the big files (default 1G)")
    p.add_argument("--files", type=int, default=10_000, help="small files (default 10000)")
    p.add_argument("--rand-seconds", type=float, default=20.0, help="random reads (default 20)")
    p.add_argument("--n-shards", type=int, default=1000)
    p.add_argument(
        "--peers",
        help="comma-separated peers to measure beside walrusfs, or none "
        f"(default: every one that can run: {','.join(PEERS)})",
    )
    p.add_argument(
        "--only",
        choices=["big", "small"],
        help="big: only the rows of the big files (the memory run); small: only the "
        "small-file, rsync and ls rows",
    )
    p.add_argument("--memory", help="the mount's --memory bound (default: the mount's default)")
    p.add_argument("--json", type=Path, help="also write the results here (bench/report.py)")
    args = p.parse_args()
    if args.peers is None or args.peers == "":
        wanted = list(PEERS)
    elif args.peers == "none":
        wanted = []
    else:
        wanted = [x.strip() for x in args.peers.split(",") if x.strip()]
        unknown = sorted(set(wanted) - set(PEERS))
        if unknown:
            p.error(f"unknown peer(s) {', '.join(unknown)}; known: {', '.join(PEERS)}, none")
    size = parse_size(args.size)
    made = provenance()
    notes: list[str] = []
    io: Engine
    if shutil.which("fio"):
        io = Fio(size, args.rand_seconds)
    else:
        io = PythonLoops(size, args.rand_seconds)
        notes.append(
            "fio not found: the big-file rows are Python loops, not fsbench.sh's fio jobs "
            "(install fio for comparable numbers)"
        )
        print(f"# {notes[-1]}", flush=True)
    results: dict[str, Results] = {}
    versions: dict[str, str] = {"fio": io.version}
    failed = False
    with tempfile.TemporaryDirectory(prefix="fsbench-", dir="/var/tmp") as tmp_name:
        tmp = Path(tmp_name)
        stage = tmp / "rsync-src"
        if args.only != "big":
            stage_stdlib(stage)
            files = sum(1 for f in stage.rglob("*") if f.is_file())
            mb = sum(f.stat().st_size for f in stage.rglob("*") if f.is_file()) / 1e6
            notes.append(f"rsync source: {STDLIB} ({files} files, {mb:.0f} MB)")
        peers, skipped = make_peers(wanted, tmp)
        for note in skipped:
            print(f"# {note}", flush=True)
        notes += skipped
        extra = ("--memory", args.memory) if args.memory else ()
        # walrusfs last and made only then: its devnet runs during its own turn only
        order: list[System | Callable[[], System]] = [
            LocalDir(tmp / "local"),
            *peers,
            lambda: Walrusfs(tmp / "walrusfs", args.n_shards, extra),
        ]
        for item in order:
            s: System | None = None
            try:
                s = item if isinstance(item, System) else item()
                versions[s.name] = made["commit"] if s.name == "walrusfs" else s.version()
                results[s.name] = run_system(s, args, io, stage)
            except Exception as exc:  # one system failing leaves the others' rows
                failed = True
                name = s.name if s is not None else "walrusfs"
                traceback.print_exc()
                notes.append(f"{name}: FAILED: {exc}")
            finally:
                if s is not None:
                    notes += [f"{s.name}: {n}" for n in s.notes]
                    s.close()
    peer_names = [p.name for p in peers if p.name in results]
    print()
    print(
        f"# fs.py: {args.size} big files, {args.files} small files, random reads "
        f"{args.rand_seconds:g} s, devnet 4 nodes / {args.n_shards} shards; fio {io.version}"
    )
    print(f"# commit {made['commit']}, {made['machine']}, {made['date']}")
    print("\n".join(table(results, peer_names)))
    ours = results.get("walrusfs", {})
    if ours.get("peak RSS MiB"):
        bound = parse_size(args.memory or "2G") / MiB
        both = ours["peak RSS MiB"] or 0.0
        # each process's own high-water mark, added: at least the peak of the two together
        print(f"{'memory bound MiB':33}{'':22}{bound:>11,.0f}  {both / bound:.2f} (peaks / bound)")
    print(
        "# wfs/best: walrusfs against the best peer of the row, wfs/local: against the local "
        "directory (above 1: walrusfs ahead; for times and memory, the other / walrusfs)"
    )
    for note in notes:
        print(f"# {note}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    **made,
                    "size": args.size,
                    "files": args.files,
                    "rand_seconds": args.rand_seconds,
                    "n_shards": args.n_shards,
                    "only": args.only,
                    "systems": [s for s in ("local", "walrusfs", *peer_names) if s in results],
                    "peers": peer_names,
                    "versions": versions,
                    "rows": ROWS,
                    "results": results,
                    "notes": notes,
                },
                indent=1,
            )
        )
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
