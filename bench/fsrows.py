"""The rows of bench/fs.py and how each is measured, the way
../shared/tools/bench/fsbench.sh measures them (fio where fio measures, the same sizes, the
page cache dropped the same way); bench/fs.py's docstring describes every row. Apart from the
systems and the run so that both stay short enough to read.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import subprocess
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.peers import System

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
