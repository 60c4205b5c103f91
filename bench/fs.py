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
import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # before bench/ (whose codec.py would shadow the package)

from bench.fsrows import (  # noqa: E402
    HIGHER,
    ROWS,
    STDLIB,
    Engine,
    Fio,
    MiB,
    PythonLoops,
    Results,
    big_rows,
    small_rows,
    stage_stdlib,
)
from bench.home import WalrusfsHome  # noqa: E402
from bench.peers import PEERS, LocalDir, System, make_peers  # noqa: E402
from bench.provenance import provenance  # noqa: E402
from walrusfs.devnet.launcher import Devnet  # noqa: E402
from walrusfs.validate import parse_size  # noqa: E402

# -- walrusfs ----------------------------------------------------------------------------------


class Walrusfs(System):
    """The mount on a devnet of its own, in a temporary WALRUSFS_HOME."""

    name = "walrusfs"

    def __init__(self, root: Path, n_shards: int, mount_args: tuple[str, ...] = ()) -> None:
        super().__init__(root)
        self.mount_args = mount_args
        self.peaks = (0, 0)  # VmHWM of the mount daemon and its worker, over every mount
        self.home = WalrusfsHome(root, n_shards)
        self.cli = self.home.cli

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
