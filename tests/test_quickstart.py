"""The README's first command, verbatim, as a new user runs it: a copy of the project, a new
user's home (no WALRUSFS_HOME, no XDG variables, no venv, no devnet), `make run`. It must
build the venv, start the embedded devnet, mount the drive on ~/walrus and print its status
and what to try; then the drive works and `walrusfs umount` / `devnet down` end it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mount_harness import mounted

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    repo, home = tmp_path / "walrusfs", tmp_path / "home"
    home.mkdir()
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src, dst = ROOT / os.fsdecode(name), repo / os.fsdecode(name)
        if src.exists():  # a file deleted in the working tree and not yet committed
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst, follow_symlinks=False)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WALRUSFS_", "XDG_", "VIRTUAL_ENV", "PYTHON"))
    }
    env["HOME"] = str(home)
    # the machine's pip cache: the same packages, without downloading them again
    env["PIP_CACHE_DIR"] = str(Path.home() / ".cache" / "pip")
    env["PATH"] = ":".join(p for p in env["PATH"].split(":") if ".venv" not in p)
    yield repo, env
    walrusfs = repo / ".venv" / "bin" / "walrusfs"
    mnt = home / "walrus"
    if mounted(mnt):
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
    if walrusfs.exists():
        subprocess.run([str(walrusfs), "devnet", "down"], env=env, check=False, timeout=60)


def test_make_run_mounts_a_drive_for_a_new_user(fresh: tuple[Path, dict[str, str]]) -> None:
    repo, env = fresh
    home = Path(env["HOME"])
    r = subprocess.run(
        ["make", "run"], cwd=repo, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    mnt = home / "walrus"
    assert f"walrusfs: mounted on {mnt}" in r.stdout
    assert "network      devnet" in r.stdout and "nodes        4 of 4 healthy" in r.stdout
    assert "Try it:" in r.stdout and "walrusfs umount" in r.stdout
    assert mounted(mnt)
    # XDG defaults of the new user: config, data (volume, devnet), cache
    assert (home / ".local/share/walrusfs/volumes/default/meta.db").exists()
    assert (home / ".local/share/walrusfs/devnet/devnet.json").exists()

    walrusfs = str(repo / ".venv" / "bin" / "walrusfs")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [walrusfs, *args], env=env, capture_output=True, text=True, timeout=600, check=True
        )

    data = os.urandom(3 << 20)
    (mnt / "hello.txt").write_text("hello, walrus\n")
    (mnt / "photo.bin").write_bytes(data)
    cli("sync")
    st = json.loads(cli("status", "--json").stdout)
    assert st["pending"]["chunks"] == 0 and st["uploaded"]["wal_spent"] > 0
    assert os.getxattr(mnt / "photo.bin", "user.walrus.blob_id")  # where it is on Walrus
    assert os.getxattr(mnt / "photo.bin", "user.walrus.state") == b"certified"
    assert (mnt / "photo.bin").read_bytes() == data
    assert (mnt / "hello.txt").read_text() == "hello, walrus\n"
    cli("umount")
    assert not mounted(mnt)
    cli("devnet", "down")
