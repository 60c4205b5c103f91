"""What the xfstests-findings modules share: each module's own account on the worker's shared
10-shard devnet, and one volume mounted with `--allow-other` on a directory every user can
traverse (some findings need another uid), a fresh directory in it per test."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.devnet_harness import RunningDevnet, SharedDevnets
from tests.mount_harness import Mount, mount

N_SHARDS = 10


@pytest.fixture(scope="module")
def dn(
    devnets: SharedDevnets, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[RunningDevnet]:
    name = request.module.__name__.rsplit(".", 1)[-1]
    yield devnets.account(N_SHARDS, tmp_path_factory.mktemp(f"{name}-home"))


@pytest.fixture(scope="module")
def public_dir() -> Iterator[Path]:
    """A directory every user can traverse (pytest's own are 0700), for a mountpoint that
    another uid must reach."""
    path = Path(tempfile.mkdtemp(prefix="walrusfs-xfstests-"))
    path.chmod(0o755)
    yield path
    for child in path.iterdir():
        child.rmdir()
    path.rmdir()


@pytest.fixture(scope="module")
def mnt(dn: RunningDevnet, public_dir: Path) -> Iterator[Mount]:
    with mount(dn, public_dir / "mnt", "--allow-other", volume="xfstests") as m:
        yield m


@pytest.fixture
def d(mnt: Mount, request: pytest.FixtureRequest) -> Path:
    path: Path = mnt.path / str(request.node.name)
    path.mkdir()
    return path
