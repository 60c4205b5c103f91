"""Conformance with the official Walrus TypeScript SDK (`@mysten/walrus` and `@mysten/sui`,
pinned in conformance/package-lock.json), run with its defaults against the devnet: its Sui
client talks gRPC-web to the stand-in, its Walrus client to the storage nodes. Blobs and quilts
go both ways between the SDK and walrusfs, byte-exact; the SDK's storage-node client calls
every node endpoint; the SDK extends, annotates and deletes blobs walrusfs registered.

`make test` installs Node.js and the SDK first (`make conformance`); the tests skip only where
`node` or `npm` is missing.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.devnet_harness import ROOT, RunningDevnet, start_devnet

CONFORMANCE = ROOT / "conformance"
NODE = shutil.which("node")
NPM = shutil.which("npm")

pytestmark = pytest.mark.skipif(
    NODE is None or NPM is None, reason="node and npm are needed (make conformance installs them)"
)


def _install() -> None:
    """`npm ci` unless the pinned packages are installed (make conformance did it)."""
    lock = json.loads((CONFORMANCE / "package-lock.json").read_text())
    installed = CONFORMANCE / "node_modules" / ".package-lock.json"
    wanted = {
        name: entry["version"]
        for name, entry in lock["packages"].items()
        if name.startswith("node_modules/")
    }
    if installed.exists():
        have = json.loads(installed.read_text())["packages"]
        if all(have.get(name, {}).get("version") == v for name, v in wanted.items()):
            return
    assert NPM is not None
    subprocess.run(
        [NPM, "ci", "--prefix", str(CONFORMANCE), "--no-audit", "--no-fund"],
        check=True,
        capture_output=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def dn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevnet]:
    _install()
    yield from start_devnet(tmp_path_factory.mktemp("sdk"))


def sdk(dn: RunningDevnet, *operations: dict[str, Any]) -> list[Any]:
    """Run SDK operations (conformance/sdk.mjs) in one Node process; their results."""
    assert NODE is not None
    env = {**os.environ, "WALRUSFS_DEVNET": str(dn.devnet.root)}
    proc = subprocess.run(
        [NODE, str(CONFORMANCE / "sdk.mjs"), json.dumps(list(operations))],
        cwd=CONFORMANCE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"sdk.mjs printed nothing (exit {proc.returncode}):\n{proc.stderr}"
    reply = json.loads(lines[-1])
    assert proc.returncode == 0 and "error" not in reply, (
        f"SDK failed: {reply.get('error')}\n{proc.stderr[-3000:]}"
    )
    results: list[Any] = reply["results"]
    return results


def _data(path: Path, size: int, seed: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def _store(dn: RunningDevnet, *args: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(dn.cli("blob", *args, "--json").stdout)
    return out


def test_sdk_sui_client_reads_the_stand_in(dn: RunningDevnet) -> None:
    """The chain identifier is the genesis checkpoint's digest; the system state, reference
    gas price and WAL balance come over gRPC-web."""
    (chain,) = sdk(dn, {"op": "chain"})
    assert chain["epoch"] == "0" and int(chain["referenceGasPrice"]) > 0
    assert int(chain["wal"]) > 0
    assert chain["chainIdentifier"] == chain["genesisCheckpointDigest"]
    assert len(chain["chainIdentifier"]) >= 43  # base58 of a 32-byte digest


def test_sdk_stores_and_walrusfs_reads_byte_exact(dn: RunningDevnet, tmp_path: Path) -> None:
    deletable = _data(tmp_path / "deletable.bin", 300_000, 1)
    permanent = _data(tmp_path / "permanent.bin", 1_234, 2)
    written = sdk(
        dn,
        {"op": "write", "file": str(tmp_path / "deletable.bin"), "deletable": True, "epochs": 2},
        {"op": "write", "file": str(tmp_path / "permanent.bin"), "deletable": False, "epochs": 3},
    )
    for blob, data, name in ((written[0], deletable, "d"), (written[1], permanent, "p")):
        dn.cli("blob", "read", blob["blobId"], "-o", str(tmp_path / name))
        assert (tmp_path / name).read_bytes() == data
    listed = dn.cli("blob", "list").stdout
    assert f"certified,deletable  {written[0]['objectId']}" in listed
    assert f"certified,permanent  {written[1]['objectId']}" in listed


def test_walrusfs_stores_and_sdk_reads_byte_exact(dn: RunningDevnet, tmp_path: Path) -> None:
    deletable = _data(tmp_path / "d.bin", 200_001, 3)
    permanent = _data(tmp_path / "p.bin", 17, 4)
    d = _store(dn, "store", "--epochs", "2", str(tmp_path / "d.bin"))["blobs"][0]
    p = _store(dn, "store", "--permanent", str(tmp_path / "p.bin"))["blobs"][0]
    results = sdk(
        dn,
        {"op": "read", "blobId": d["blobId"], "out": str(tmp_path / "d.out")},
        {"op": "read", "blobId": p["blobId"], "out": str(tmp_path / "p.out")},
        {"op": "blobObject", "objectId": d["objectId"]},
        {"op": "blobObject", "objectId": p["objectId"]},
        {"op": "status", "blobId": p["blobId"]},
    )
    assert (tmp_path / "d.out").read_bytes() == deletable
    assert (tmp_path / "p.out").read_bytes() == permanent
    assert results[2]["deletable"] is True and results[2]["endEpoch"] == d["endEpoch"]
    assert results[3]["deletable"] is False and results[3]["certifiedEpoch"] == 0
    assert results[4]["type"] == "permanent" and results[4]["isCertified"] is True


def test_quilts_both_ways(dn: RunningDevnet, tmp_path: Path) -> None:
    files = {
        "notes.txt": b"hello walrus\n",
        "empty": b"",
        "image-2.bin": random.Random(5).randbytes(5_000),
    }
    tags = {"notes.txt": {"type": "text", "lang": "en"}, "empty": {}, "image-2.bin": {"k": "v"}}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    # SDK writes a quilt (writeFiles), walrusfs reads each patch.
    (written,) = sdk(
        dn,
        {
            "op": "writeFiles",
            "files": [{"path": str(tmp_path / n), "identifier": n, "tags": tags[n]} for n in files],
            "deletable": True,
            "epochs": 2,
        },
    )
    assert len({w["blobId"] for w in written}) == 1
    # writeFiles lists the patches in the quilt index's order: sorted by identifier.
    for name, patch in zip(sorted(files), written, strict=True):
        out = tmp_path / f"{name}.patch"
        dn.cli("blob", "read-patch", patch["id"], "-o", str(out))
        assert out.read_bytes() == files[name]
    # walrusfs writes a quilt (store-quilt), the SDK reads it by patch IDs and as a quilt.
    quilt_dir = tmp_path / "quilt"
    quilt_dir.mkdir()
    for name, data in files.items():
        (quilt_dir / name).write_bytes(data)
    stored = _store(dn, "store-quilt", str(quilt_dir))
    names = sorted(stored["patches"])
    by_id, whole = sdk(
        dn,
        {
            "op": "getFiles",
            "ids": [stored["patches"][n] for n in names],
            "outDir": str(tmp_path / "by-id"),
        },
        {"op": "quiltFiles", "blobId": stored["quilt"]["blobId"], "outDir": str(tmp_path / "all")},
    )
    for i, name in enumerate(names):
        assert by_id[i]["identifier"] == name
        assert (tmp_path / "by-id" / str(i)).read_bytes() == files[name]
    assert sorted(f["identifier"] for f in whole) == names
    for i, entry in enumerate(whole):
        assert (tmp_path / "all" / str(i)).read_bytes() == files[entry["identifier"]]


def test_sdk_storage_node_client_on_every_endpoint(dn: RunningDevnet, tmp_path: Path) -> None:
    """GET/PUT metadata, metadata status, blob status, GET/PUT both slivers of every pair a
    node holds, sliver status, confirmations and an unknown blob, on every node."""
    _data(tmp_path / "n.bin", 50_000, 6)
    mine = _store(dn, "store", "--permanent", str(tmp_path / "n.bin"))["blobs"][0]
    (theirs,) = sdk(
        dn, {"op": "write", "file": str(tmp_path / "n.bin"), "deletable": True, "epochs": 2}
    )
    assert theirs["blobId"] == mine["blobId"]  # the same encoding, the same blob ID
    permanent, deletable = sdk(
        dn,
        {"op": "nodes", "blobId": mine["blobId"], "deletable": False},
        {
            "op": "nodes",
            "blobId": theirs["blobId"],
            "deletable": True,
            "objectId": theirs["objectId"],
        },
    )
    n_shards = dn.spec.n_shards
    for nodes in (permanent, deletable):
        assert len(nodes) == dn.spec.n_nodes
        assert sorted(s for node in nodes for s in node["shards"]) == list(range(n_shards))
        for node in nodes:
            assert node["metadataBlobId"] == mine["blobId"]
            assert node["metadataStatus"] == "stored"
            assert node["blobStatus"]["type"] == "permanent"
            assert node["blobStatus"]["isCertified"] is True
            assert node["storeMetadata"]["success"]["code"] == 200
            assert len(node["slivers"]) == 2 * len(node["shards"])
            for sliver in node["slivers"]:
                assert sliver["status"] == "stored" and sliver["bytes"] > 0
                assert sliver["store"]["success"]["code"] == 200
            assert node["confirmationSigned"] is True
            assert node["unknownBlob"] == "NotFoundError"
            assert node["blobStatus"]["deletableCounts"]["count_deletable_certified"] == 1


def test_sdk_extends_annotates_and_deletes_walrusfs_blobs(
    dn: RunningDevnet, tmp_path: Path
) -> None:
    _data(tmp_path / "m.bin", 4_321, 7)
    blob = _store(dn, "store", "--epochs", "2", str(tmp_path / "m.bin"))["blobs"][0]
    object_id = blob["objectId"]
    # The SDK's writeBlobAttributes(blobObjectId) reads the blob's `metadata` field first and
    # fails (ObjectError, as on any full node) when the blob has none: walrusfs sets one.
    dn.on_chain(lambda c: c.set_attributes(object_id, {"origin": "walrusfs", "a": "0"}))
    results = sdk(
        dn,
        {"op": "extend", "objectId": object_id, "epochs": 3},
        {"op": "readAttributes", "objectId": object_id},
        {"op": "writeAttributes", "objectId": object_id, "attributes": {"a": "1", "b": "2"}},
        {"op": "writeAttributes", "objectId": object_id, "attributes": {"a": None, "c": "3"}},
        {"op": "readAttributes", "objectId": object_id},
    )
    assert results[1] == {"origin": "walrusfs", "a": "0"}
    assert results[4] == {"origin": "walrusfs", "b": "2", "c": "3"}
    # A new client (the SDK caches objects it loaded) sees the extension.
    (extended,) = sdk(dn, {"op": "blobObject", "objectId": object_id})
    assert extended["endEpoch"] == blob["endEpoch"] + 3
    assert f"end    {blob['endEpoch'] + 3}" in dn.cli("blob", "list").stdout
    attributes = dn.on_chain(lambda c: c.attributes(object_id))
    assert attributes == {"origin": "walrusfs", "b": "2", "c": "3"}
    sdk(dn, {"op": "delete", "objectId": object_id})
    assert object_id not in dn.cli("blob", "list").stdout
    assert dn.cli("blob", "read", blob["blobId"], check=False).returncode != 0


def test_browser_facing_http(dn: RunningDevnet) -> None:
    """What a browser needs beyond the SDK's Node runs: CORS preflights on the stand-in's
    gRPC-web and on the nodes, HEAD on node routes, and gRPC statuses in the trailer frame."""
    node = f"http://127.0.0.1:{dn.spec.node_ports[0]}"
    sui = f"http://127.0.0.1:{dn.spec.sui_port}"
    with httpx.Client(timeout=30) as http:
        head = http.head(f"{node}/v1/health")
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) > 0
        assert head.headers["access-control-allow-origin"] == "*"
        preflight = {"origin": "http://app.test", "access-control-request-method": "PUT"}
        rsp = http.options(f"{node}/v1/blobs/{'A' * 43}/metadata", headers=preflight)
        assert rsp.status_code == 200
        assert rsp.headers["access-control-allow-methods"] == "*"
        rsp = http.options(
            f"{sui}/sui.rpc.v2.LedgerService/GetServiceInfo",
            headers={**preflight, "access-control-request-method": "POST"},
        )
        assert rsp.status_code == 204
        assert rsp.headers["access-control-allow-origin"] == "http://app.test"
        assert "grpc-status" in rsp.headers["access-control-expose-headers"]
        web = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
        rsp = http.post(f"{sui}/sui.rpc.v2.NoSuchService/Method", content=b"\0" * 5, headers=web)
        assert rsp.status_code == 200 and rsp.content[0] == 0x80
        assert b"grpc-status:12" in rsp.content
