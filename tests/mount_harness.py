"""Real FUSE mounts for tests: `walrusfs mount` as a daemon on a devnet, and a sure teardown."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.devnet_harness import RunningDevnet
from walrusfs import mounts

MOUNT_OPTS = ("--upload-delay", "0.3")


def mounted(path: Path) -> bool:
    return mounts.mounted_at(path) is not None


@dataclass
class Mount:
    dn: RunningDevnet
    path: Path
    volume: str = "default"

    def mount(self, *extra: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.dn.cli("mount", str(self.path), "--volume", self.volume, *MOUNT_OPTS, *extra)
        assert mounted(self.path)

    def umount(self, *extra: str) -> None:
        self.dn.cli("umount", str(self.path), *extra, timeout=600)
        assert not mounted(self.path)

    def sync(self) -> None:
        self.dn.cli("sync", str(self.path), timeout=600)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.dn.cli("status", str(self.path), "--json").stdout)
        return out

    @property
    def pid(self) -> int:
        return int(json.loads(os.getxattr(self.path, "user.walrusfs.ctl.pid")))

    def kill(self) -> None:
        """kill -9 the daemon and detach the dead mount (what a crash leaves)."""
        pid = self.pid
        os.kill(pid, signal.SIGKILL)
        while Path(f"/proc/{pid}").exists():
            time.sleep(0.02)
        subprocess.run(["fusermount3", "-u", "-z", str(self.path)], check=False)

    @property
    def volume_dir(self) -> Path:
        return self.dn.home / "data" / "volumes" / self.volume

    def log_tail(self, n: int = 40) -> str:
        with contextlib.suppress(FileNotFoundError):
            return "\n".join((self.volume_dir / "mount.log").read_text().splitlines()[-n:])
        return ""

    def drop_cache(self) -> None:
        shutil.rmtree(self.dn.home / "cache", ignore_errors=True)

    def teardown(self) -> None:
        if not mounted(self.path):
            return
        with contextlib.suppress(OSError, ValueError):
            pid = self.pid
            subprocess.run(["fusermount3", "-u", "-z", str(self.path)], check=False)
            deadline = time.monotonic() + 30
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["fusermount3", "-u", "-z", str(self.path)], check=False)


@contextlib.contextmanager
def mount(dn: RunningDevnet, path: Path, *extra: str, volume: str = "default") -> Iterator[Mount]:
    m = Mount(dn, path, volume)
    m.mount(*extra)
    try:
        yield m
    finally:
        m.teardown()


def xattr(path: Path, name: str) -> str:
    return os.getxattr(path, f"user.walrus.{name}").decode()
