"""The product around the mount, as a user meets it: `walrusfs cost` against what the chain
really charges, `walrusfs status` against the chain, the fstab helper through mount(8),
`walrusfs wallet`, shell completion, and their exit codes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chain.client import WalrusChain
from tests.devnet_harness import N_SHARDS, RunningDevnet, SharedDevnets
from tests.mount_harness import Mount, mounted
from tests.mount_harness import mount as mounted_volume

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dn(devnets: SharedDevnets, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevnet]:
    yield devnets.account(N_SHARDS, tmp_path_factory.mktemp("product-home"))


def _tree(root: Path) -> dict[str, bytes]:
    """30 small files, a 900 KB one and a text file. At 10 shards a blob holds at most
    1.8 MB, so all of them are quilt candidates, and the 900 KB one fits no quilt with
    others: the planning the mount and `cost` share must handle that (it once crashed)."""
    files = {f"small/{i:02d}.txt": os.urandom(300 + 97 * i) for i in range(30)}
    files["photo.jpg"] = os.urandom(900_000)
    files["notes.md"] = b"# notes\n" * 100
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def test_cost_is_what_the_chain_charges(dn: RunningDevnet, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = _tree(src)
    out = json.loads(dn.cli("cost", str(src), "--epochs", "3", "--public", "--json").stdout)
    assert out["files"] == len(files) and out["bytes"] == sum(map(len, files.values()))
    single, ours = out["one_blob_per_file"], out["walrusfs"]
    assert single["blobs"] == len(files)
    assert ours["total"] < single["total"] / 2  # quilting: the per-blob floor paid less often

    # one blob per file: exactly what `walrusfs blob store` pays, file by file
    r = json.loads(
        dn.cli(
            "blob",
            "store",
            *(str(src / rel) for rel in files),
            "--epochs",
            "3",
            "--json",
            timeout=600,
        ).stdout
    )
    paid = r["walSpentFrost"]
    assert paid == sum(b["costFrost"] for b in r["blobs"])
    assert paid == single["total"]

    # as walrusfs stores them: what a public volume pays for the same tree, within the
    # estimate's margin (a quilt's real entries are a few bytes off the planned ones)
    m = Mount(dn, tmp_path / "mnt", "cost")
    m.mount("--public", "--epochs", "3", "--upload-delay", "3600")
    try:
        shutil.copytree(src, m.path, dirs_exist_ok=True)
        m.sync()
        st = m.status()
        assert st["uploaded"]["quilts"] == ours["quilts"]
        assert st["uploaded"]["blobs"] + st["uploaded"]["quilts"] == ours["blobs"]
        assert abs(st["uploaded"]["wal_spent"] - ours["total"]) <= 0.1 * ours["total"]
        human = dn.cli("cost", str(src), "--epochs", "3").stdout
        assert "as walrusfs stores them" in human and "one blob per file" in human
    finally:
        m.teardown()
    bad = dn.cli("cost", str(tmp_path / "missing"), check=False)
    assert bad.returncode == 3 and "no such file" in bad.stderr
    assert dn.cli("cost", str(src), "--epochs", "0", check=False).returncode == 2


def _chain_view(dn: RunningDevnet) -> tuple[int, int, int]:
    async def go(chain: WalrusChain) -> tuple[int, int, int]:
        info = await chain.system_info()
        bal = await chain.balances()
        return info.epoch, bal.wal, bal.sui

    return dn.on_chain(go)


def test_status_agrees_with_the_chain(dn: RunningDevnet, tmp_path: Path) -> None:
    m = Mount(dn, tmp_path / "mnt", "status")
    m.mount()
    try:
        (m.path / "a.bin").write_bytes(os.urandom(200_000))
        m.sync()  # uploads, checkpoints and refreshes the balances
        st = m.status()
        epoch, wal, sui = _chain_view(dn)
        assert (st["chain"]["epoch"], st["chain"]["wal"], st["chain"]["sui"]) == (epoch, wal, sui)
        assert st["chain"]["network"] == "devnet"
        assert [n["healthy"] for n in st["nodes"]] == [True] * 4
        assert st["pending"]["chunks"] == 0 and st["checkpoint"]["seq"] >= 1
        wallet = json.loads(dn.cli("wallet", "--json").stdout)
        assert (wallet["wal"], wallet["sui"]) == (wal, sui)

        dn.cli("devnet", "node", "stop", "1")
        try:
            (m.path / "b.bin").write_bytes(os.urandom(100_000))
            m.sync()  # 3 of 4 nodes still certify
            st = m.status()
            assert sum(n["healthy"] for n in st["nodes"]) == 3
            human = dn.cli("status", str(m.path)).stdout
            assert "3 of 4 healthy" in human and "DOWN" in human
            assert "network      devnet, epoch" in human and "checkpoint   #" in human
        finally:
            dn.cli("devnet", "node", "start", "1")

        # a stuck mount: SIGUSR1 writes every thread's stack into its log and it goes on
        os.kill(m.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while "most recent call first" not in m.log_tail(400) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "most recent call first" in m.log_tail(400)
        assert m.status()["pending"]["chunks"] == 0
    finally:
        m.teardown()
    assert dn.cli("status", str(tmp_path), check=False).returncode == 2  # not a mount


@pytest.mark.skipif(os.geteuid() != 0, reason="installs the helper into /sbin (root only)")
def test_fstab_helper_mounts_with_mount_t_fuse_walrusfs(dn: RunningDevnet, tmp_path: Path) -> None:
    helper = Path(sys.executable).parent / "mount.fuse.walrusfs"
    assert helper.exists(), "pip install -e . installs the helper"
    link = Path("/sbin/mount.fuse.walrusfs")
    installed = not link.exists()
    if installed:
        link.symlink_to(helper)
    mnt = tmp_path / "fstab-mnt"
    mnt.mkdir()
    try:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        r = subprocess.run(
            [
                "mount",
                "-t",
                "fuse.walrusfs",
                "fstabvol",
                str(mnt),
                "-o",
                f"noauto,_netdev,home={dn.home},upload_delay=0.3,epochs=4",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout == ""  # a mount(8) helper is quiet on success
        assert mounted(mnt)
        (mnt / "via-fstab.txt").write_text("hello\n")
        dn.cli("sync", str(mnt), timeout=300)
        st = json.loads(dn.cli("status", str(mnt), "--json").stdout)
        assert Path(st["volume"]).name == "fstabvol"
        dn.cli("umount", str(mnt), timeout=300)
        assert not mounted(mnt)
        bad = subprocess.run(
            [str(helper), "fstabvol", str(mnt), "-o", "colour=blue"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert bad.returncode == 2 and "unknown mount option 'colour=blue'" in bad.stderr
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False, capture_output=True)
        if installed:
            link.unlink()


def test_wallet_and_completion(dn: RunningDevnet) -> None:
    before = json.loads(dn.cli("wallet", "--json").stdout)
    got = dn.cli("wallet", "get-wal", "1.5").stdout
    assert "got 1.500000000 WAL" in got
    after = json.loads(dn.cli("wallet", "--json").stdout)
    assert after["wal"] - before["wal"] == 1_500_000_000
    assert dn.cli("wallet", "get-wal", "-3", check=False).returncode == 2
    assert dn.cli("wallet", "get-wal", "999999999", check=False).returncode == 6  # no SUI
    script = dn.cli("completion", "bash").stdout
    r = subprocess.run(
        [
            "bash",
            "-c",
            script + "\nCOMP_WORDS=(walrusfs blob st); COMP_CWORD=2; _walrusfs; "
            'echo "${COMPREPLY[@]}"',
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert r.stdout.split() == ["store", "store-quilt"]


def test_a_configured_network_is_used_like_testnet(dn: RunningDevnet, tmp_path: Path) -> None:
    """The path testnet and mainnet take, for real: a network defined in config.toml (here the
    devnet's endpoints and objects, as a user would copy them from the Walrus docs) and a Sui
    CLI wallet named by path. Another home, so no devnet of its own exists or is started; the
    blob commands, the mount, its upload worker and the [mount] defaults all follow the file."""
    home = tmp_path / "other-home"
    conf = home / "config" / "config.toml"
    conf.parent.mkdir(parents=True)
    p = dn.spec.profile()
    conf.write_text(
        f'network = "local"\nwallet = "{dn.wallet_config}"\n'
        f'[mount]\nvolume = "configured"\nepochs = 3\nupload_delay = 0.3\n'
        f'[networks.local]\ngrpc_url = "{p.grpc_url}"\ntls = false\n'
        f'system_object = "{p.system_object}"\nstaking_object = "{p.staking_object}"\n'
        f'wal_type = "{p.wal_type}"\nexchange_objects = ["{p.exchange_objects[0]}"]\n'
    )
    other = RunningDevnet(home, dn.devnet, dn.spec)  # the CLI in the other home
    shown = json.loads(other.cli("config", "--json").stdout)
    assert shown["network"] == "local" and shown["mount"]["epochs"] == 3

    src = tmp_path / "hello.txt"
    src.write_bytes(b"over a configured network\n")
    stored = json.loads(other.cli("blob", "store", str(src), "--epochs", "2", "--json").stdout)
    blob_id = stored["blobs"][0]["blobId"]
    assert other.cli("blob", "read", blob_id).stdout == src.read_text()
    assert blob_id in dn.cli("blob", "list").stdout  # the same wallet, seen from the devnet home

    mnt = tmp_path / "configured-mnt"
    mnt.mkdir()
    try:
        other.cli("mount", str(mnt))  # volume, epochs and upload delay from [mount]
        (mnt / "file.bin").write_bytes(os.urandom(50_000))
        other.cli("sync", str(mnt), timeout=300)
        st = json.loads(other.cli("status", str(mnt), "--json").stdout)
        assert st["chain"]["network"] == "local"
        assert Path(st["volume"]) == home / "data" / "volumes" / "configured"
        assert st["uploaded"]["blobs"] + st["uploaded"]["quilts"] >= 1
        epoch = st["chain"]["epoch"]
        end = int(os.getxattr(mnt / "file.bin", "user.walrus.end_epoch"))
        assert end == epoch + 3
        other.cli("umount", str(mnt), timeout=300)
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False, capture_output=True)
    assert not (home / "data" / "devnet").exists()


def test_encrypted_chunks_fit_a_blob_when_the_network_caps_them(
    dn: RunningDevnet, tmp_path: Path
) -> None:
    """At 10 shards a blob holds at most 1.83 MB, so chunks are capped to it; sealed (header
    and tags) a chunk of exactly that size no longer fit, and a 5 MB file never uploaded."""
    data = os.urandom(5_000_000)
    with mounted_volume(dn, tmp_path / "enc-mnt", volume="capped") as m:
        (m.path / "five-mb.bin").write_bytes(data)
        m.sync()
        assert m.status()["pending"]["chunks"] == 0
        m.umount()
        m.drop_cache()
        m.mount()
        assert (m.path / "five-mb.bin").read_bytes() == data
