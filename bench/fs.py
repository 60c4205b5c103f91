"""The mount against a local directory, same machine, same run (the method of
../shared/tools/bench/fsbench.sh, self-contained): ratios mount/local per row.

    .venv/bin/python bench/fs.py [--size 1G] [--files 10000] [--n-shards 1000] [--json F]
    .venv/bin/python bench/fs.py --size 4G --only big     # the memory run
    .venv/bin/python bench/fs.py --size 512M --only big --memory 878M   # the bound at its floor

Rows: sequential write of SIZE in 1 MiB blocks + fsync; the same + `walrusfs sync` (certified
on Walrus); sequential read warm (mount's caches warm, kernel page cache dropped) and cold
(remounted, sliver cache deleted: every byte from the storage nodes); random 4 KiB reads for
a fixed time; create/stat/read/delete of FILES 4 KiB files (100 per directory); rsync -a of
this Python's standard library as fsbench.sh copies it (without site-packages and
__pycache__, from a copy in /tmp/fsbench-rsync-src that both runs read from the page cache:
2450 files, 104 MB for Python 3.11; the peers' 7.1-15.7 s were measured so); ls -lR of it.

It starts its own devnet in a temporary WALRUSFS_HOME and removes it afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # before bench/ (whose codec.py would shadow the package)

from walrusfs.validate import parse_size  # noqa: E402

BLOCK = 1 << 20


def drop_page_cache() -> None:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        print("# cannot drop the page cache (not root): warm reads may come from it")


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def seq_write(path: Path, size: int) -> None:
    block = os.urandom(BLOCK)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    try:
        for _ in range(size // BLOCK):
            os.write(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)


def seq_read(path: Path) -> int:
    n = 0
    with path.open("rb", buffering=0) as f:
        while chunk := f.read(BLOCK):
            n += len(chunk)
    return n


def rand_read(path: Path, seconds: float) -> int:
    size = path.stat().st_size
    rng = random.Random(7)
    ops = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            os.pread(fd, 4096, rng.randrange(0, size // 4096) * 4096)
            ops += 1
    finally:
        os.close(fd)
    return ops


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
                raise SystemExit(f"content mismatch in {p}")

    def delete() -> None:
        for p in paths:
            p.unlink()
        for i in range(0, n, 100):
            paths[i].parent.rmdir()

    for name, fn in (("create", create), ("stat", stat), ("read", read), ("delete", delete)):
        out[name] = n / timed(fn)
    return out


RSYNC_SOURCE = Path("/tmp/fsbench-rsync-src")  # the path fsbench.sh stages it at


def rsync_source() -> Path:
    """The standard library as fsbench.sh stages it for its rsync row."""
    if not RSYNC_SOURCE.is_dir():
        stdlib = sysconfig.get_paths()["stdlib"]
        subprocess.run(
            [
                "rsync",
                "-a",
                "--exclude",
                "site-packages",
                "--exclude",
                "__pycache__",
                f"{stdlib}/",
                f"{RSYNC_SOURCE}/",
            ],
            check=True,
        )
    return RSYNC_SOURCE


class Mounted:
    def __init__(self, home: Path, n_shards: int, mount_args: tuple[str, ...] = ()) -> None:
        self.home = home
        self.mount_args = mount_args
        self.mnt = home / "mnt"
        self.env = dict(os.environ, WALRUSFS_HOME=str(home), PYTHONPATH=str(ROOT))
        self.peaks = (0, 0)  # VmHWM of the mount daemon and its worker, over every mount
        self.cli("devnet", "up", "--n-shards", str(n_shards))

    def cli(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "walrusfs.cli", *args],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def mount(self) -> None:
        self.mnt.mkdir(exist_ok=True)
        self.cli("mount", str(self.mnt), *self.mount_args)

    def umount(self) -> None:
        self.cli("umount", str(self.mnt))

    def sync(self) -> None:
        self.cli("sync", str(self.mnt))

    def peak_rss(self) -> tuple[int, int]:
        """VmHWM (resident memory high-water mark) of the mount daemon and of its upload
        worker process, the highest of every mount so far."""
        pid = int(os.getxattr(self.mnt, "user.walrusfs.ctl.pid"))
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()

        def hwm(p: int | str) -> int:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
            return 0

        mount, worker = hwm(pid), sum(hwm(c) for c in children)
        self.peaks = (max(self.peaks[0], mount), max(self.peaks[1], worker))
        return self.peaks

    def close(self) -> None:
        log = self.home / "data" / "volumes" / "default" / "mount.log"
        if log.exists():
            shutil.copy(log, "/tmp/fsbench-mount.log")
        subprocess.run(
            ["fusermount3", "-u", "-z", str(self.mnt)], check=False, stderr=subprocess.DEVNULL
        )
        self.cli("devnet", "down")


def run(target: Path, args: argparse.Namespace, m: Mounted | None) -> dict[str, float]:
    size = parse_size(args.size)
    res: dict[str, float] = {}
    if args.only == "small":
        return _small_rows(target, args, res)
    big = target / "big.bin"
    dt = timed(lambda: seq_write(big, size))
    res["seq write MiB/s"] = size / BLOCK / dt
    if m is not None:
        dt += timed(m.sync)
    res["seq write + upload MiB/s"] = size / BLOCK / dt
    drop_page_cache()
    res["seq read warm MiB/s"] = size / BLOCK / timed(lambda: seq_read(big))
    if m is not None:
        m.peak_rss()  # the daemon and worker that wrote, before the remount replaces them
        m.umount()
        shutil.rmtree(m.home / "cache", ignore_errors=True)
        m.mount()
    drop_page_cache()
    res["seq read cold MiB/s"] = size / BLOCK / timed(lambda: seq_read(big))
    drop_page_cache()
    res["rand read 4K IOPS"] = rand_read(big, args.rand_seconds) / args.rand_seconds
    big.unlink()
    if args.only == "big":
        return res
    return _small_rows(target, args, res)


def _small_rows(target: Path, args: argparse.Namespace, res: dict[str, float]) -> dict[str, float]:
    for k, v in small_files(target / "small", args.files).items():
        res[f"small {k} files/s"] = v
    dest = target / "stdlib"
    rsync = ["rsync", "-a", f"{rsync_source()}/", str(dest)]
    res["rsync stdlib s"] = timed(lambda: subprocess.run(rsync, check=True))
    drop_page_cache()
    res["ls -lR s"] = timed(
        lambda: subprocess.run(["ls", "-lR", str(dest)], check=True, stdout=subprocess.DEVNULL)
    )
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", default="1G")
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--rand-seconds", type=float, default=10.0)
    p.add_argument("--n-shards", type=int, default=1000)
    p.add_argument(
        "--only",
        choices=["big", "small"],
        help="big: only the rows of the SIZE "
        "file (the memory run: write, upload and read back a 4G file); small: only "
        "the small-file, rsync and ls rows",
    )
    p.add_argument("--memory", help="the mount's --memory bound (default: the mount's default)")
    p.add_argument("--json", type=Path, help="also write the results here (bench/report.py)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="fsbench-", dir="/var/tmp") as tmp:
        local = Path(tmp) / "local"
        local.mkdir()
        base = run(local, args, None)
        extra = ("--memory", args.memory) if args.memory else ()
        m = Mounted(Path(tmp) / "home", args.n_shards, extra)
        try:
            m.mount()
            ours = run(m.mnt, args, m)
            mount_rss, worker_rss = m.peak_rss()
            ours["mount peak RSS MiB"] = mount_rss / (1 << 20)
            ours["worker peak RSS MiB"] = worker_rss / (1 << 20)
            m.umount()
        finally:
            m.close()
    print(f"# size {args.size}, {args.files} small files, devnet 4 nodes / {args.n_shards} shards")
    print(f"{'row':28} {'local':>10} {'walrusfs':>10} {'ratio':>7}")
    for key, value in base.items():
        mine = ours[key]
        ratio = value / mine if key.endswith(" s") else mine / value
        print(f"{key:28} {value:10.1f} {mine:10.1f} {ratio:7.2f}")
    for key in ("mount peak RSS MiB", "worker peak RSS MiB"):
        print(f"{key:28} {'':10} {ours[key]:10.0f}")
    bound = parse_size(args.memory or "2G") / (1 << 20)
    both = ours["mount peak RSS MiB"] + ours["worker peak RSS MiB"]
    # each process's own high-water mark, added: at least the peak of the two together
    print(f"{'memory bound MiB':28} {'':10} {bound:10.0f} {both / bound:7.2f}  (peaks / bound)")
    print("# ratio: walrusfs as a fraction of local (higher is better; for times local/walrusfs)")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "size": args.size,
                    "files": args.files,
                    "n_shards": args.n_shards,
                    "local": base,
                    "walrusfs": ours,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
