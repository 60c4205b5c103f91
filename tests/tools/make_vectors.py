"""Regenerate the golden vectors in tests/vectors/ with the official Walrus wasm encoder.

The oracle (`shared/tools/oracle`, npm `@mysten/walrus-wasm`) is walrus-core compiled to wasm;
our codec must agree with it bit for bit. This script copies the oracle to a scratch directory,
installs its pinned packages there (nothing lands in the repository), runs it on inputs that
the tests regenerate deterministically, and writes what it printed as JSON.

    python -m tests.tools.make_vectors [--oracle-dir ../shared/tools/oracle]

Inputs are `random.Random(seed).randbytes(size)` or a literal, so the vectors hold no blobs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.tools.oracle import DEFAULT_SOURCE, install_oracle

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"

# (name, n_shards, input spec). Sizes straddle symbol-size boundaries: at n=10, K=28 source
# symbols, so 1792 B gives s=64 (a whole 64-byte RS block), 1793 and 1848 give s=66 (a tail),
# 3584 gives s=128 and 1,834,952 is the largest blob (s=65534). At n=4 (K=6) 12 B is s=2 and 13 B
# s=4; at n=1000 (K=222,778) 445,556 B is the last size with s=2.
BLOB_CASES: list[tuple[str, int, dict[str, Any]]] = [
    ("empty", 4, {"literal": ""}),
    ("empty", 10, {"literal": ""}),
    ("empty", 100, {"literal": ""}),
    ("empty", 1000, {"literal": ""}),
    ("one_byte", 10, {"literal": "2a"}),
    ("one_byte", 1000, {"literal": "2a"}),
    ("docs_some_other_string", 1000, {"literal": b"some other string".hex()}),
    ("walrus_core_regression", 10, {"literal": b"walrus blob id v1 regression test".hex()}),
    ("s2_max_n4", 4, {"seed": 1, "size": 12}),
    ("s4_min_n4", 4, {"seed": 2, "size": 13}),
    ("odd_63_n4", 4, {"seed": 3, "size": 63}),
    ("s64_n10", 10, {"seed": 4, "size": 1792}),
    ("s66_tail_n10", 10, {"seed": 5, "size": 1793}),
    ("s66_n10", 10, {"seed": 6, "size": 1848}),
    ("s128_n10", 10, {"seed": 7, "size": 3584}),
    ("max_blob_n10", 10, {"seed": 8, "size": 1834952}),
    ("odd_4097_n100", 100, {"seed": 9, "size": 4097}),
    ("odd_123457_n100", 100, {"seed": 10, "size": 123457}),
    ("s2_max_n1000", 1000, {"seed": 11, "size": 445556}),
    ("s4_min_n1000", 1000, {"seed": 12, "size": 445557}),
    ("rand_1MiB_n1000", 1000, {"seed": 0, "size": 1 << 20}),
    ("odd_3MiB_n1000", 1000, {"seed": 13, "size": 3 * (1 << 20) + 12345}),
]

# Full sliver bodies are committed for these (small) cases, so tests compare exact PUT bodies.
DUMP_CASES = {("docs_some_other_string", 10), ("one_byte", 10)}
DUMP_EXTRA: list[tuple[str, int, dict[str, Any]]] = [
    ("docs_some_other_string", 10, {"literal": b"some other string".hex()}),
]

# (name, n_shards, [(identifier, input spec, tags)])
QUILT_CASES: list[tuple[str, int, list[tuple[str, dict[str, Any], dict[str, str]]]]] = [
    (
        "docs_example_n10",
        10,
        [
            ("a.txt", {"literal": b"hello walrus".hex()}, {}),
            ("img-2.bin", {"seed": 7, "size": 5000}, {"zeta": "1", "b": "x", "aa": "y"}),
            ("empty", {"literal": ""}, {}),
        ],
    ),
    ("single_n7", 7, [("only", {"seed": 21, "size": 777}, {"k": "v"})]),
    (
        "forty_files_n1000",
        1000,
        [
            (
                f"dir/file-{i:02d}.dat",
                {"seed": 100 + i, "size": (i * 7919) % 20000},
                {"path": f"/home/u/{i}"} if i % 3 == 0 else {},
            )
            for i in range(40)
        ],
    ),
    (
        "mixed_sizes_n100",
        100,
        [
            ("big", {"seed": 31, "size": 200_000}, {}),
            ("small", {"seed": 32, "size": 10}, {"mode": "0644"}),
            ("medium", {"seed": 33, "size": 30_000}, {}),
            ("zero", {"literal": ""}, {}),
        ],
    ),
]


def make_input(spec: dict[str, Any]) -> bytes:
    """The bytes an input spec stands for; tests use the same function."""
    if "literal" in spec:
        return bytes.fromhex(spec["literal"])
    return random.Random(spec["seed"]).randbytes(spec["size"])


def run_json(cmd: list[str], cwd: Path) -> dict[str, Any]:
    out = subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def blob_vectors(oracle: Path, work: Path) -> list[dict[str, Any]]:
    vectors = []
    for name, n, spec in BLOB_CASES:
        data = make_input(spec)
        path = work / f"{name}.bin"
        path.write_bytes(data)
        out = run_json(["node", "blob_id.mjs", str(path), str(n)], oracle)
        vectors.append(
            {
                "name": name,
                "n_shards": n,
                "input": spec,
                "input_sha256": hashlib.sha256(data).hexdigest(),
                "blob_id": out["blob_id"],
                "blob_id_u256": out["blob_id_u256_le_decimal"],
                "root_hash": out["root_hash"],
                "unencoded_length": out["unencoded_length"],
                "symbol_size": out["symbol_size"],
                "primary_sliver_len": out["primary_sliver_len"],
                "secondary_sliver_len": out["secondary_sliver_len"],
                "encoded_length": out["encoded_length"],
                "rotation_offset": out["rotation_offset"],
                "metadata_bcs_len": out["metadata_bcs_len"],
                "metadata_bcs_sha256": out["metadata_bcs_sha256"],
                "all_slivers_sha256": out["all_slivers_sha256"],
                "pair0_primary_hash": out["sliver_pair_0"]["primary_hash"],
                "pair0_secondary_hash": out["sliver_pair_0"]["secondary_hash"],
                "pair0_primary_bcs_sha256": out["sliver_pair_0"]["primary_sliver_bcs_sha256"],
                "pair0_secondary_bcs_sha256": out["sliver_pair_0"]["secondary_sliver_bcs_sha256"],
            }
        )
        print(f"  {name} n={n}: {out['blob_id']}", file=sys.stderr)
    return vectors


def dump_bodies(oracle: Path, work: Path) -> None:
    """Exact metadata and sliver PUT bodies for small cases, as files under vectors/bodies/."""
    for name, n, spec in [c for c in BLOB_CASES if (c[0], c[1]) in DUMP_CASES] + DUMP_EXTRA:
        data = make_input(spec)
        path = work / f"dump-{name}-{n}.bin"
        path.write_bytes(data)
        dest = VECTORS / "bodies" / f"{name}_n{n}"
        if dest.exists():
            shutil.rmtree(dest)
        run_json(["node", "blob_id.mjs", str(path), str(n), "--dump-dir", str(dest)], oracle)
        (dest / "metadata.json").unlink()  # everything in it is already in blob_ids.json


def quilt_vectors(oracle: Path, work: Path) -> list[dict[str, Any]]:
    vectors = []
    for name, n, items in QUILT_CASES:
        args = []
        for i, (ident, spec, tags) in enumerate(items):
            f = work / f"{name}-{i}.bin"
            f.write_bytes(make_input(spec))
            arg = f"{ident}={f}"
            if tags:
                t = work / f"{name}-{i}.tags.json"
                t.write_text(json.dumps(tags))
                arg += f"@{t}"
            args.append(arg)
        out = run_json(["node", "quilt.mjs", str(n), *args], oracle)
        vectors.append(
            {
                "name": name,
                "n_shards": n,
                "items": [{"identifier": i, "input": s, "tags": t} for i, s, t in items],
                "quilt_id": out["quilt_id"],
                "quilt_sha256": out["quilt_sha256"],
                "quilt_unencoded_length": out["quilt_unencoded_length"],
                "symbol_size": out["symbol_size"],
                "index_columns": out["index_columns"],
                "patches": [
                    {
                        "identifier": p["identifier"],
                        "start": p["start_index"],
                        "end": p["end_index"],
                        "patch_id": p["quilt_patch_id"],
                    }
                    for p in out["patches"]
                ],
            }
        )
        print(f"  quilt {name} n={n}: {out['quilt_id']}", file=sys.stderr)
    return vectors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oracle-dir", type=Path, default=DEFAULT_SOURCE)
    args = parser.parse_args()
    if not (args.oracle_dir / "blob_id.mjs").exists():
        parser.error(f"no oracle at {args.oracle_dir}")
    with tempfile.TemporaryDirectory(prefix="walrusfs-vectors-") as tmp:
        work = Path(tmp)
        oracle = install_oracle(work / "oracle", args.oracle_dir)
        meta = {
            "oracle": "@mysten/walrus-wasm 0.3.0 (walrus-core 1.40.0) and @mysten/walrus "
            "1.2.13 encodeQuilt, via shared/tools/oracle",
            "regenerate": "python -m tests.tools.make_vectors",
        }
        VECTORS.mkdir(parents=True, exist_ok=True)
        blobs = {"about": meta, "vectors": blob_vectors(oracle, work)}
        (VECTORS / "blob_ids.json").write_text(json.dumps(blobs, indent=1) + "\n")
        quilts = {"about": meta, "vectors": quilt_vectors(oracle, work)}
        (VECTORS / "quilts.json").write_text(json.dumps(quilts, indent=1) + "\n")
        dump_bodies(oracle, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
