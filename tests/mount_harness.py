"""Real FUSE mounts for tests: `walrusfs mount` as a daemon on a devnet, and a sure teardown."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.devnet_harness import RunningDevnet
from walrusfs import mounts

MOUNT_OPTS = ("--upload-delay", "0.3")


def mounted(path: Path) -> bool:
    return mounts.mounted_at(path) is not None


#: what a mount's log must never hold: an exception that escaped (a bug), whatever the test did
LOG_ORACLE = ("Traceback (most recent call last)", "internal error")


@dataclass
class Mount:
    dn: RunningDevnet
    path: Path
    volume: str = "default"
    #: bytes of mount.log written before this object first mounted: only what came after is
    #: this test's (a module's mounts of one volume share the log)
    log_start: int | None = None

    def mount(self, *extra: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        if self.log_start is None:
            log = self.volume_dir / "mount.log"
            self.log_start = log.stat().st_size if log.exists() else 0
        self.dn.cli("mount", str(self.path), "--volume", self.volume, *MOUNT_OPTS, *extra)
        assert mounted(self.path)

    def check_log(self) -> None:
        """Fail when the mount's log holds a traceback or an internal error since this test
        first mounted (the log oracle: the daemon must never let an exception escape)."""
        log = self.volume_dir / "mount.log"
        if self.log_start is None or not log.exists():
            return
        with open(log, "rb") as f:
            f.seek(self.log_start)
            text = f.read().decode("utf-8", "replace")
        for needle in LOG_ORACLE:
            at = text.find(needle)
            if at >= 0:
                raise AssertionError(
                    f"{log} holds {needle!r}:\n{text[max(0, at - 2000) : at + 3000]}"
                )

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
        """Unmount whatever is left, then apply the log oracle (unless the test is already
        failing: its own error is the one to see)."""
        self._detach()
        if sys.exc_info()[0] is None:
            self.check_log()

    def _detach(self) -> None:
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


def errno_of(fn: Callable[..., object], *args: object, **kwargs: object) -> int:
    """The errno `fn(*args, **kwargs)` fails with (the test fails if it does not)."""
    with pytest.raises(OSError) as info:
        fn(*args, **kwargs)
    assert info.value.errno is not None
    return info.value.errno


def xattr(path: Path, name: str) -> str:
    return os.getxattr(path, f"user.walrus.{name}").decode()
