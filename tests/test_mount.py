"""The drive, mounted for real (a `walrusfs mount` daemon over a devnet of real processes):
files round-trip through Walrus, survive unmount + lost cache, and the tools users point at
it (cp, rsync -a, git, tar) work."""

from __future__ import annotations

import errno
import filecmp
import os
import subprocess
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.devnet_harness import RunningDevnet, SharedDevnets, heal_all
from tests.mount_harness import Mount, mount, xattr

N_SHARDS = 100  # k_s 67: quilts of up to 66 files, blobs up to 149 MB


@pytest.fixture(scope="module")
def dn(devnets: SharedDevnets, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevnet]:
    yield devnets.account(N_SHARDS, tmp_path_factory.mktemp("mount-home"))


@pytest.fixture
def mnt(dn: RunningDevnet, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Mount]:
    volume = request.node.name.replace("[", "-").replace("]", "")[:60]
    with mount(dn, tmp_path / "mnt", volume=volume) as m:
        yield m
    heal_all(dn)


def _random_file(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(os.urandom(n))
            left -= n


def test_files_round_trip_and_survive_remount_without_cache(mnt: Mount, tmp_path: Path) -> None:
    dev = os.stat(mnt.path).st_dev
    bdi = Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb")
    if os.geteuid() == 0:  # root sets the kernel's read-ahead to 1 MiB requests
        assert bdi.read_text().strip() == "1024"
    sizes = [0, 1, 4095, 4096, 65537, (1 << 20) + 1, 5 << 20, 70 << 20]
    src = tmp_path / "src"
    src.mkdir()
    for size in sizes:
        _random_file(src / f"f{size}", size)
        subprocess.run(["cp", str(src / f"f{size}"), str(mnt.path)], check=True)
        assert filecmp.cmp(src / f"f{size}", mnt.path / f"f{size}", shallow=False)
    mnt.sync()
    for size in sizes:
        assert xattr(mnt.path / f"f{size}", "state") == "certified"
        if size:
            ids = xattr(mnt.path / f"f{size}", "blob_id").split()
            assert len(ids) == (2 if size > 64 << 20 else 1)
    status = mnt.status()
    assert status["pending"]["chunks"] == 0
    assert status["uploaded"]["quilts"] >= 1 and status["uploaded"]["blobs"] >= 3
    mnt.umount()
    mnt.drop_cache()
    mnt.mount()
    for size in sizes:
        assert (mnt.path / f"f{size}").stat().st_size == size
        assert filecmp.cmp(src / f"f{size}", mnt.path / f"f{size}", shallow=False), size


def test_overwrite_and_truncate_after_upload(mnt: Mount) -> None:
    f = mnt.path / "doc"
    data = bytearray(os.urandom(3 << 20))
    f.write_bytes(data)
    mnt.sync()
    first = xattr(f, "blob_id")
    with f.open("r+b") as h:  # in-place change of an uploaded file
        h.seek(1000)
        h.write(b"X" * 10)
        data[1000:1010] = b"X" * 10
    assert f.read_bytes() == data
    os.truncate(f, 2000)
    del data[2000:]
    with f.open("ab") as h:
        h.write(b"tail")
    data += b"tail"
    assert f.read_bytes() == data
    mnt.sync()
    assert xattr(f, "blob_id") != first
    mnt.umount()
    mnt.drop_cache()
    mnt.mount()
    assert f.read_bytes() == data


def test_rsync_of_the_standard_library_round_trips(mnt: Mount) -> None:
    stdlib = sysconfig.get_paths()["stdlib"]
    excludes = ["--exclude", "site-packages", "--exclude", "__pycache__"]
    dest = str(mnt.path / "stdlib")
    subprocess.run(["rsync", "-a", *excludes, f"{stdlib}/", dest], check=True)
    mnt.sync()
    assert mnt.status()["pending"]["chunks"] == 0
    mnt.umount()
    mnt.drop_cache()
    mnt.mount()
    out = subprocess.run(
        ["rsync", "-a", "-c", "--dry-run", "--itemize-changes", *excludes, f"{stdlib}/", dest],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert out == "", out[:2000]


def test_git_repository_inside_the_mount(mnt: Mount) -> None:
    repo = mnt.path / "repo"
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
    )

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env
        ).stdout

    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    for i in range(3):
        (repo / f"file{i}.txt").write_text(f"version {i}\n" * 1000)
        (repo / "sub").mkdir(exist_ok=True)
        (repo / "sub" / "x.bin").write_bytes(os.urandom(100_000))
        git("add", "-A")
        git("commit", "-q", "-m", f"commit {i}")
    git("gc", "-q")
    assert "commit 2" in git("log", "--oneline")
    subprocess.run(["git", "-C", str(repo), "fsck", "--full", "--strict"], check=True, env=env)
    mnt.sync()
    mnt.umount()
    mnt.drop_cache()
    mnt.mount()
    subprocess.run(["git", "-C", str(repo), "fsck", "--full", "--strict"], check=True, env=env)
    assert git("status", "--porcelain") == ""


def test_tar_extract_and_compare(mnt: Mount, tmp_path: Path) -> None:
    src = Path(sysconfig.get_paths()["stdlib"]) / "email"
    tarball = tmp_path / "email.tar"
    subprocess.run(["tar", "-cf", str(tarball), "-C", str(src.parent), "email"], check=True)
    subprocess.run(["tar", "-xf", str(tarball), "-C", str(mnt.path)], check=True)
    subprocess.run(["tar", "-df", str(tarball), "-C", str(mnt.path)], check=True)
    mnt.sync()
    mnt.umount()
    mnt.drop_cache()
    mnt.mount()
    subprocess.run(["tar", "-df", str(tarball), "-C", str(mnt.path)], check=True)


def test_uploads_certify_with_one_node_stopped(mnt: Mount, dn: RunningDevnet) -> None:
    dn.cli("devnet", "node", "stop", "0")
    files = {f"n{i}": os.urandom(size) for i, size in enumerate([10, 200_000, 6 << 20])}
    for name, data in files.items():
        (mnt.path / name).write_bytes(data)
    mnt.sync()
    for name in files:
        assert xattr(mnt.path / name, "state") == "certified"
    mnt.umount()
    mnt.drop_cache()
    mnt.mount()
    for name, data in files.items():
        assert (mnt.path / name).read_bytes() == data


def test_files_just_uploaded_read_back_with_every_node_down(mnt: Mount, dn: RunningDevnet) -> None:
    """What was just uploaded stays on this machine: a quilted file of up to 1 MiB in the
    mount's memory, a file of its own blobs (over the 4 MiB quilt threshold) in the block
    cache (its stored, sealed bytes, kept by the upload worker). Reading what was just
    written costs no fetch, so it works with no storage node reachable, at random offsets
    too; without the cache, the nodes are needed."""
    files = {f"s{i}": os.urandom(3000 + i) for i in range(5)}
    files["large"] = os.urandom((5 << 20) + 12345)
    for name, data in files.items():
        (mnt.path / name).write_bytes(data)
    mnt.sync()
    for name in files:
        assert xattr(mnt.path / name, "state") == "certified"
    for i in range(dn.spec.n_nodes):
        dn.cli("devnet", "node", "stop", str(i))
    Path("/proc/sys/vm/drop_caches").write_text("3\n")  # the next reads reach the mount
    large = files["large"]
    with (mnt.path / "large").open("rb", buffering=0) as f:
        for offset in (2 << 20, 70_000, len(large) - 4096, 0):
            assert os.pread(f.fileno(), 4096, offset) == large[offset : offset + 4096]
    for name, data in files.items():
        assert (mnt.path / name).read_bytes() == data
    mnt.umount()
    mnt.drop_cache()
    mnt.mount()  # which starts the stopped nodes again (`walrusfs mount` brings the devnet up)
    for i in range(dn.spec.n_nodes):
        dn.cli("devnet", "node", "stop", str(i))
    with pytest.raises(OSError) as failed:
        (mnt.path / "large").read_bytes()
    assert failed.value.errno == errno.EIO


def _backup_source(tmp_path: Path) -> Path:
    src = tmp_path / "home"
    subprocess.run(
        ["cp", "-a", str(Path(sysconfig.get_paths()["stdlib"]) / "json"), str(src)], check=True
    )
    _random_file(src / "photo.raw", 9 << 20)
    (src / "notes.txt").write_text("remember the milk\n" * 100)
    return src


def test_restic_backup_check_and_restore(mnt: Mount, tmp_path: Path) -> None:
    src = _backup_source(tmp_path)
    env = dict(
        os.environ,
        RESTIC_PASSWORD="correct horse",
        RESTIC_REPOSITORY=str(mnt.path / "restic"),
        RESTIC_CACHE_DIR=str(tmp_path / "restic-cache"),
    )

    def restic(*args: str) -> None:
        subprocess.run(["restic", "-q", *args], check=True, env=env, capture_output=True)

    restic("init")
    restic("backup", str(src))
    mnt.umount()
    mnt.drop_cache()
    mnt.mount()
    restic("check", "--read-data")
    restic("restore", "latest", "--target", str(tmp_path / "restored"))
    restored = tmp_path / "restored" / src.relative_to("/")
    diff = subprocess.run(
        ["diff", "-r", str(src), str(restored)], capture_output=True, text=True, check=False
    )
    assert diff.returncode == 0, diff.stdout[:2000]


def test_borg_backup_check_and_restore(mnt: Mount, tmp_path: Path) -> None:
    src = _backup_source(tmp_path)
    repo = str(mnt.path / "borg")
    env = dict(
        os.environ,
        BORG_PASSPHRASE="correct horse",
        BORG_BASE_DIR=str(tmp_path / "borg-base"),
        BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
        BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
    )

    def borg(*args: str, cwd: Path | None = None) -> None:
        subprocess.run(["borg", *args], check=True, env=env, capture_output=True, cwd=cwd)

    borg("init", "--encryption=repokey", repo)
    borg("create", f"{repo}::first", str(src))
    mnt.umount()
    mnt.drop_cache()
    mnt.mount()
    borg("check", "--verify-data", repo)
    out = tmp_path / "restored"
    out.mkdir()
    borg("extract", f"{repo}::first", cwd=out)
    diff = subprocess.run(
        ["diff", "-r", str(src), str(out / src.relative_to("/"))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert diff.returncode == 0, diff.stdout[:2000]


def test_300_mib_file_round_trips(mnt: Mount, tmp_path: Path) -> None:
    src = tmp_path / "big"
    _random_file(src, 300 << 20)
    subprocess.run(["cp", str(src), str(mnt.path / "big")], check=True)
    subprocess.run(["cmp", str(src), str(mnt.path / "big")], check=True)
    mnt.sync()
    assert len(xattr(mnt.path / "big", "blob_id").split()) == 5  # 64 MiB chunks
    mnt.umount()
    mnt.drop_cache()
    mnt.mount()
    subprocess.run(["cmp", str(src), str(mnt.path / "big")], check=True)


def test_mount_errors_reach_the_terminal(dn: RunningDevnet, tmp_path: Path) -> None:
    missing = dn.cli("mount", str(tmp_path / "nowhere"), check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    (tmp_path / "file").write_text("x")
    not_dir = dn.cli("mount", str(tmp_path / "file"), check=False)
    assert not_dir.returncode == 2 and "not a directory" in not_dir.stderr
    with mount(dn, tmp_path / "mnt", volume="twice") as m:
        again = dn.cli("mount", str(m.path), "--volume", "twice", check=False)
        assert again.returncode == 2 and "already a mountpoint" in again.stderr
    own = dn.cli("mount", str(dn.home), check=False)  # would serve its own files: a hang
    assert own.returncode == 2 and "contains walrusfs's own files" in own.stderr
    not_mounted = dn.cli("sync", str(tmp_path / "mnt"), check=False)
    assert not_mounted.returncode == 2 and "not a walrusfs mount" in not_mounted.stderr
