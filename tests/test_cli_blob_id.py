"""`walrusfs blob-id` and `walrusfs paths`, run as a user would: the installed console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_codec_vectors import BLOBS
from tests.tools.make_vectors import make_input

WALRUSFS = shutil.which("walrusfs", path=str(Path(sys.executable).parent)) or "walrusfs"


def run(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [WALRUSFS, *args], input=stdin, capture_output=True, env=env, timeout=120, check=False
    )


@pytest.mark.parametrize(
    "name", ["docs_some_other_string", "walrus_core_regression", "odd_123457_n100"]
)
def test_blob_id_json_matches_oracle(tmp_path: Path, name: str) -> None:
    vec = next(v for v in BLOBS if v["name"] == name)
    f = tmp_path / "input.bin"
    f.write_bytes(make_input(vec["input"]))
    proc = run("blob-id", str(f), "--n-shards", str(vec["n_shards"]), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["blobId"] == vec["blob_id"]
    assert out["unencodedLength"] == vec["unencoded_length"]
    assert out["encodedLength"] == vec["encoded_length"]
    assert out["storageUnits"] == -(-vec["encoded_length"] // (1 << 20))
    assert out["rootHash"] == vec["root_hash"]
    assert out["blobIdU256"] == vec["blob_id_u256"]


def test_blob_id_plain_defaults_to_1000_shards_and_reads_stdin() -> None:
    proc = run("blob-id", "-", stdin=b"some other string")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().strip() == "M4hsZGQ1oCktdzegB6HnI6Mi28S2nqOPHxK-W7_4BUk"


def test_blob_id_missing_file_exit_3(tmp_path: Path) -> None:
    proc = run("blob-id", str(tmp_path / "nope"))
    assert proc.returncode == 3
    assert b"no such file" in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_blob_id_directory_exit_3(tmp_path: Path) -> None:
    proc = run("blob-id", str(tmp_path))
    assert proc.returncode == 3
    assert b"is a directory" in proc.stderr


def test_blob_id_bad_shards_exit_2() -> None:
    proc = run("blob-id", "-", "--n-shards", "3", stdin=b"")
    assert proc.returncode == 2
    assert b"at least 4" in proc.stderr


def test_blob_id_too_large_exit_4(tmp_path: Path) -> None:
    f = tmp_path / "big.bin"
    f.write_bytes(bytes(393205))  # max blob at n=4 is 393204 bytes
    proc = run("blob-id", str(f), "--n-shards", "4")
    assert proc.returncode == 4
    assert b"exceeds the maximum of 393204 bytes" in proc.stderr


def test_walrusfs_home_isolates_instances(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    env["WALRUSFS_HOME"] = str(tmp_path / "inst")
    out = json.loads(run("paths", "--json", env=env).stdout)
    assert out["config_dir"] == str(tmp_path / "inst" / "config")
    assert out["data_dir"] == str(tmp_path / "inst" / "data")
    assert out["cache_dir"] == str(tmp_path / "inst" / "cache")

    del env["WALRUSFS_HOME"]
    env["HOME"] = str(tmp_path / "home")
    env["XDG_CACHE_HOME"] = str(tmp_path / "xc")
    out = json.loads(run("paths", "--json", env=env).stdout)
    assert out["config_dir"] == str(tmp_path / "home" / ".config" / "walrusfs")
    assert out["data_dir"] == str(tmp_path / "home" / ".local" / "share" / "walrusfs")
    assert out["cache_dir"] == str(tmp_path / "xc" / "walrusfs")
