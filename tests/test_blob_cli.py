"""`walrusfs blob ...` end to end: real processes, a devnet in a temporary WALRUSFS_HOME."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

import codec
from chain.wallet import Wallet
from tests.devnet_harness import N_SHARDS, RunningDevnet, SharedDevnets

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def dn(devnets: SharedDevnets, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevnet]:
    yield devnets.account(N_SHARDS, tmp_path_factory.mktemp("cli-home"))


def test_store_read_list_extend_delete(dn: RunningDevnet, tmp_path: Path) -> None:
    data = random.Random(1).randbytes(123_456)
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    out = json.loads(dn.cli("blob", "store", str(src), "--epochs", "2", "--json").stdout)
    (blob,) = out["blobs"]
    assert blob["blobId"] == str(codec.blob_id_of(data, N_SHARDS))
    offline = dn.cli("blob-id", "--n-shards", str(N_SHARDS), str(src)).stdout.strip()
    assert offline == blob["blobId"]
    assert out["walSpentFrost"] == blob["costFrost"] > 0
    dst = tmp_path / "out.bin"
    dn.cli("blob", "read", blob["blobId"], "-o", str(dst), "--no-cache")
    assert dst.read_bytes() == data
    dn.cli("blob", "read", blob["blobId"], "--range", "1000-1100", "-o", str(dst))
    assert dst.read_bytes() == data[1000:1100]
    listed = json.loads(dn.cli("blob", "list", "--json").stdout)
    assert any(b["objectId"] == blob["objectId"] and b["certified"] for b in listed["blobs"])
    ext = dn.cli("blob", "extend", blob["objectId"], "--epochs", "3")
    assert "now ends at epoch 5" in ext.stdout
    dn.cli("blob", "delete", blob["objectId"])
    listed = json.loads(dn.cli("blob", "list", "--json").stdout)
    assert all(b["objectId"] != blob["objectId"] for b in listed["blobs"])


def test_store_quilt_and_read_patches(dn: RunningDevnet, tmp_path: Path) -> None:
    root = tmp_path / "dir"
    (root / "sub").mkdir(parents=True)
    files = {"a.txt": b"alpha\n", "sub/b.bin": bytes(range(256)), "c": b""}
    for name, content in files.items():
        (root / name).write_bytes(content)
    out = json.loads(dn.cli("blob", "store-quilt", str(root), "--json").stdout)
    assert set(out["patches"]) == set(files)
    for name, content in files.items():
        dst = tmp_path / "patch"
        dn.cli("blob", "read-patch", out["patches"][name], "-o", str(dst))
        assert dst.read_bytes() == content


def test_errors_have_stable_exit_codes(dn: RunningDevnet, tmp_path: Path) -> None:
    missing = dn.cli("blob", "read", "A" * 43, check=False)
    assert missing.returncode == 7 and "no storage node has blob" in missing.stderr
    assert dn.cli("blob", "read", "not-an-id", check=False).returncode == 4
    assert dn.cli("blob", "store", str(tmp_path / "nope"), check=False).returncode == 3
    assert dn.cli("blob", "store", str(tmp_path), check=False).returncode == 3
    bad = dn.cli("blob", "read", "A" * 43, "--range", "9-1", check=False)
    assert bad.returncode == 2
    gone = dn.cli("blob", "delete", "0x" + "ab" * 32, check=False)
    assert gone.returncode == 7


def test_the_chain_refusing_is_exit_8(dn: RunningDevnet, tmp_path: Path) -> None:
    """A permanent blob cannot be deleted: the Move contract aborts the transaction and the
    CLI says so with exit 8 (CHAIN_REJECTED); the blob is still there."""
    src = tmp_path / "forever.txt"
    src.write_bytes(b"kept for good\n")
    out = json.loads(
        dn.cli("blob", "store", str(src), "--permanent", "--epochs", "2", "--json").stdout
    )
    obj = out["blobs"][0]["objectId"]
    r = dn.cli("blob", "delete", obj, check=False)
    assert r.returncode == 8, r.stderr
    assert "aborted" in r.stderr and r.stderr.count("\n") == 1
    assert obj in dn.cli("blob", "list").stdout


def test_a_named_wallet_is_a_second_account_funded_by_the_faucet(
    dn: RunningDevnet, tmp_path: Path
) -> None:
    """The home's config names its own wallet (the module's account on the shared devnet): the
    CLI signs with it, not with the devnet's wallet; `devnet fund` moves SUI and WAL to a new
    address in one transaction and refuses what is not an address or an amount (exit 2), or
    more than the devnet's wallet holds (exit 6), sending nothing."""
    assert dn.wallet is not None
    mine = json.loads(dn.cli("wallet", "--json").stdout)
    assert mine["address"] == Wallet.load(dn.wallet).active_address
    assert mine["address"] != dn.spec.wallet_address
    assert json.loads(dn.cli("config", "--json").stdout)["wallet"] == str(dn.wallet)

    new = Wallet.create(tmp_path / "w", env_alias="devnet", rpc=dn.spec.profile().grpc_url)
    sent = dn.cli("devnet", "fund", new.active_address, "--sui", "2.5", "--wal", "1")
    assert new.active_address in sent.stdout
    other = dn.sibling(tmp_path / "other")
    (other.home / "config" / "config.toml").write_text(f'wallet = "{new.config_path}"\n')
    got = json.loads(other.cli("wallet", "--json").stdout)
    assert (got["address"], got["sui"], got["wal"]) == (new.active_address, 2_500_000_000, 10**9)

    assert dn.cli("devnet", "fund", "0x1234", check=False).returncode == 2
    assert dn.cli("devnet", "fund", new.active_address, "--sui", "-1", check=False).returncode == 2
    too_much = dn.cli("devnet", "fund", new.active_address, "--wal", "1000000", check=False)
    assert too_much.returncode == 6, too_much.stderr
    after = json.loads(other.cli("wallet", "--json").stdout)
    assert (after["sui"], after["wal"]) == (2_500_000_000, 10**9)


def test_store_through_the_devnets_upload_relay(dn: RunningDevnet, tmp_path: Path) -> None:
    """`--upload-relay`: the file goes once to the devnet's relay (`devnet up` started it),
    which certifies it; it reads back byte-exact. A relay that does not answer leaves the
    store to the nodes, directly."""
    assert dn.spec.relay_url is not None
    src = tmp_path / "relayed.bin"
    src.write_bytes(random.randbytes(123_456))
    out = json.loads(
        dn.cli("blob", "store", str(src), "--upload-relay", dn.spec.relay_url, "--json").stdout
    )
    relay = out["uploadRelay"]
    assert (relay["bytesSent"], relay["uploadedDirectly"], relay["tipsMist"]) == (123_456, 0, 0)
    blob_id = out["blobs"][0]["blobId"]
    assert blob_id in dn.devnet.log_path("relay").read_text()
    back = tmp_path / "back.bin"
    dn.cli("blob", "read", blob_id, "-o", str(back), "--no-cache")
    assert back.read_bytes() == src.read_bytes()

    src.write_bytes(random.randbytes(5_000))
    gone = "http://127.0.0.1:9"  # nothing listens there
    out = json.loads(dn.cli("blob", "store", str(src), "--upload-relay", gone, "--json").stdout)
    assert out["uploadRelay"]["uploadedDirectly"] == 1
    assert (
        dn.cli("blob", "store", str(src), "--upload-relay", "ftp://x", check=False).returncode == 2
    )
