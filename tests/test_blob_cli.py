"""`walrusfs blob ...` end to end: real processes, a devnet in a temporary WALRUSFS_HOME."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

import codec
from tests.devnet_harness import N_SHARDS, RunningDevnet, start_devnet

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def dn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevnet]:
    yield from start_devnet(tmp_path_factory.mktemp("cli-home"))


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
