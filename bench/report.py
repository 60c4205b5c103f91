"""The benchmark report: runs bench/fs.py and bench/wal_size.py (or reads their --json
results) and writes docs/benchmarks/report.md with two plots:

    .venv/bin/python bench/report.py [--fs-json F] [--wal-json F] [--out docs/benchmarks]
                                     [--size 1G] [--files 10000] [--n-shards 1000]

- throughput.png: every row of bench/fs.py for walrusfs and the peer filesystems measured in
  the same run: against the best peer of the row, and as a fraction of the local directory;
- wal_per_gib.png: WAL per GiB of file data by file size, walrusfs (quilted, measured) against
  one blob per file (the chain's price).

The report states the command, commit and machine of each result it shows, and nothing else:
a result is only comparable with what was measured beside it.

Needs matplotlib (`pip install -e '.[bench]'`, `make bench-report`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.provenance import provenance  # noqa: E402
from chain.pricing import FROST_PER_WAL  # noqa: E402

HIGHER = "higher"
COLORS = {"walrusfs": "#2f7ed8", "juicefs": "#8bbc21", "rclone": "#d8572f"}
MARKERS = ("o", "s", "^", "D")


def ratio(better: str | None, x: float | None, other: float | None) -> float | None:
    """x against `other`, above 1 when x is better (for times and memory: other / x)."""
    if better is None or not x or not other:
        return None
    return x / other if better == HIGHER else other / x


def best_of(better: str | None, values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    if better is None or not vals:
        return None
    return max(vals) if better == HIGHER else min(vals)


def run_json(script: str, out: Path, *args: str) -> dict[str, Any]:
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args, "--json", str(out)], check=True
    )
    return dict(json.loads(out.read_text()))


def check_fs(fs: dict[str, Any], source: str) -> None:
    if "results" not in fs or "rows" not in fs:
        raise SystemExit(
            f"{source} is not a result of this bench/fs.py (no 'results' and 'rows'): "
            "run bench/fs.py --json again"
        )


def compared(fs: dict[str, Any]) -> list[tuple[str, str]]:
    """The rows that have a direction and a walrusfs value: (row, better)."""
    ours = fs["results"].get("walrusfs", {})
    return [(k, b) for k, b in fs["rows"] if b is not None and ours.get(k) is not None]


def throughput_plot(fs: dict[str, Any], path: Path) -> None:
    """Left: walrusfs and each peer against the best peer of the row, all from this run (the
    target: walrusfs at 1 or more). Right: each system as a fraction of the local directory."""
    res, peers = fs["results"], fs["peers"]
    rows = compared(fs)
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 0.45 * len(rows) + 2.5))
    y = list(range(len(rows)))
    best = {k: best_of(b, [res[p].get(k) for p in peers]) for k, b in rows}
    left.barh(
        y,
        [ratio(b, res["walrusfs"][k], best[k]) or 0 for k, b in rows],
        color=COLORS["walrusfs"],
        label="walrusfs",
    )
    for j, name in enumerate(peers):
        pts = [(ratio(b, res[name].get(k), best[k]), i) for i, (k, b) in enumerate(rows)]
        pts = [(x, i) for x, i in pts if x is not None]
        left.scatter(
            [x for x, _ in pts],
            [i for _, i in pts],
            marker=MARKERS[j % len(MARKERS)],
            color="black",
            facecolors="none",
            zorder=3,
            label=name,
        )
    left.set_xscale("log")
    left.set_yticks(y, [k for k, _ in rows])
    left.invert_yaxis()
    left.axvline(1.0, color="grey", linewidth=0.8)
    left.set_xlabel("against the best peer of the row (log; 1 = as good as the best peer)")
    left.set_title("against the best peer, same run")
    left.legend(loc="upper center", bbox_to_anchor=(0.45, -0.12), ncol=4, fontsize=8)
    local = res.get("local", {})
    local_rows = [(k, b) for k, b in rows if local.get(k)]
    y = list(range(len(local_rows)))
    systems = ["walrusfs", *peers]
    height = 0.8 / len(systems)
    for j, name in enumerate(systems):
        right.barh(
            [i - 0.4 + height * (j + 0.5) for i in y],
            [ratio(b, res[name].get(k), local[k]) or 0 for k, b in local_rows],
            height=height,
            color=COLORS.get(name, f"C{j}"),
            label=name,
        )
    right.set_xscale("log")
    right.set_yticks(y, [k for k, _ in local_rows])
    right.invert_yaxis()
    right.axvline(1.0, color="grey", linewidth=0.8)
    right.set_xlabel("fraction of the local directory (log; 1 = as fast)")
    right.set_title("against the local directory, same run")
    right.legend(loc="upper center", bbox_to_anchor=(0.45, -0.12), ncol=4, fontsize=8)
    fig.suptitle(
        f"bench/fs.py: {fs['size']} files, {fs['files']} small files, "
        f"devnet {fs['n_shards']} shards, commit {fs.get('commit', '?')}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def wal_plot(wal: dict[str, Any], path: Path) -> None:
    rows = wal["rows"]
    x = [r["bytes"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(
        x,
        [r["walrusfs_per_gib"] / FROST_PER_WAL for r in rows],
        "o-",
        color="#2f7ed8",
        label="walrusfs (quilts for small files; measured)",
    )
    ax.plot(
        x,
        [r["one_blob_per_file_per_gib"] / FROST_PER_WAL for r in rows],
        "s--",
        color="#d8572f",
        label="one blob per file (chain price)",
    )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(x, [r["size"] for r in rows])
    ax.set_xlabel("file size")
    ax.set_ylabel(f"WAL per GiB of files, {wal['epochs']} epochs")
    ax.set_title(f"bench/wal_size.py: devnet {wal['n_shards']} shards, encrypted volume")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fmt(v: float | None) -> str:
    if v is None:
        return ""
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"


def made_by(r: dict[str, Any]) -> str:
    if "command" not in r:
        return "a run whose result does not record its command, commit and machine"
    return f"`{r['command']}` at commit `{r['commit']}` on {r['date']} ({r['machine']})"


def fs_table(fs: dict[str, Any]) -> list[str]:
    res, peers = fs["results"], fs["peers"]
    cols = [c for c in ("local", "walrusfs", *peers) if c in res]
    lines = [
        "| row | " + " | ".join(cols) + " | walrusfs / best peer | walrusfs / local |",
        "|---|" + "---:|" * (len(cols) + 2),
    ]
    for key, better in fs["rows"]:
        if not any(key in res[c] for c in cols):
            continue
        cells = [
            ("FAIL" if res[c][key] is None else fmt(res[c][key])) if key in res[c] else ""
            for c in cols
        ]
        ours = res.get("walrusfs", {}).get(key)
        vs_best = ratio(better, ours, best_of(better, [res[p].get(key) for p in peers]))
        vs_local = ratio(better, ours, res.get("local", {}).get(key))
        lines.append(
            f"| {key} | "
            + " | ".join(cells)
            + f" | {'' if vs_best is None else f'{vs_best:.2f}'}"
            + f" | {'' if vs_local is None else f'{vs_local:.3f}'} |"
        )
    return lines


def report(fs: dict[str, Any], wal: dict[str, Any], me: dict[str, str], note: str | None) -> str:
    peers = fs["peers"]
    versions = ", ".join(
        v if k == "fio" else f"{k} {v}" for k, v in fs.get("versions", {}).items() if v
    )
    lines = [
        "# Benchmark report",
        "",
        f"Written by {made_by(me)}. The devnet's storage nodes and Sui stand-in run on the same "
        "machine as the mount (at a lower CPU priority), so every upload also pays for the "
        "nodes' work; on a real network that work is elsewhere. Regenerate: "
        "`make bench-report`.",
        "",
        *([f"Note: {note}", ""] if note else []),
        "## Throughput: walrusfs, the peers and a local directory",
        "",
        f"Measured by {made_by(fs)}: a local directory, "
        + (", ".join(peers) + " and walrusfs" if peers else "and walrusfs (no peer could run)")
        + f", one after the other in that run ({versions}). The method is fsbench.sh's (fio "
        "psync jobs, the page cache dropped before reads, 4 KiB small files, rsync of the "
        "standard library) plus the rows after upload and cold; docs/benchmarks.md describes "
        'each row and what "uploaded" and "cache dropped" mean for each peer. '
        '"walrusfs / best peer" is walrusfs against the best peer of the row in this run, '
        '"walrusfs / local" against the local directory; above 1 is walrusfs ahead (times '
        "and memory are compared as the other / walrusfs).",
        "",
        "![throughput](throughput.png)",
        "",
        *fs_table(fs),
    ]
    if fs.get("notes"):
        lines += ["", "Notes printed by the run:", ""]
        lines += [f"- {n}" for n in fs["notes"]]
    lines += [
        "",
        "## WAL per GiB by file size",
        "",
        f"Measured by {made_by(wal)}: files of one size, "
        f"{wal['rows'][0]['data_bytes'] >> 20} MiB of them per size, written into a "
        "new encrypted volume and synced; WAL is what the uploads "
        "paid (storage and write fees; gas is SUI). The baseline is `walrusfs cost`'s one "
        "blob per file. Every blob pays for its metadata (two 32-byte hashes per shard, "
        "whatever its size) and a write fee, so small files alone are expensive; quilts share "
        "that cost among up to hundreds of files. A metadata checkpoint (one small blob per "
        "sync, not counted here) adds a fixed amount per sync.",
        "",
        "![WAL per GiB](wal_per_gib.png)",
        "",
        "| file size | files | walrusfs WAL/GiB | one blob per file WAL/GiB | saving "
        "| blobs + quilts |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in wal["rows"]:
        ours, single = r["walrusfs_per_gib"], r["one_blob_per_file_per_gib"]
        lines.append(
            f"| {r['size']} | {r['files']} | {ours / FROST_PER_WAL:,.3f} | "
            f"{single / FROST_PER_WAL:,.3f} | {single / ours:.1f}x | "
            f"{r['blobs']} + {r['quilts']} |"
        )
    lines += [
        "",
        "Files larger than the mount's chunk (64 MiB) are stored as one blob per chunk, each "
        "paying the fixed metadata, so a 256 MiB file costs somewhat more than one blob of it "
        "would; chunks bound the mount's memory and let a changed chunk upload alone.",
        "",
        "Raw results: [fs.json](fs.json), [wal_size.json](wal_size.json).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fs-json", type=Path, help="use this bench/fs.py --json result")
    ap.add_argument("--wal-json", type=Path, help="use this bench/wal_size.py --json result")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    ap.add_argument("--size", default="1G")
    ap.add_argument("--files", default="10000")
    ap.add_argument("--n-shards", default="1000")
    ap.add_argument("--note", help="a remark printed under the report's header")
    args = ap.parse_args()
    me = provenance()
    args.out.mkdir(parents=True, exist_ok=True)
    fs_path, wal_path = args.out / "fs.json", args.out / "wal_size.json"
    if args.fs_json:
        fs = json.loads(args.fs_json.read_text())
        check_fs(fs, str(args.fs_json))
        fs_path.write_text(json.dumps(fs, indent=1))
    else:
        fs = run_json(
            "fs.py",
            fs_path,
            "--size",
            args.size,
            "--files",
            args.files,
            "--n-shards",
            args.n_shards,
        )
        check_fs(fs, str(fs_path))
    if "walrusfs" not in fs["results"]:
        raise SystemExit("the bench/fs.py result has no walrusfs rows (its run failed)")
    if args.wal_json:
        wal = json.loads(args.wal_json.read_text())
        wal_path.write_text(json.dumps(wal, indent=1))
    else:
        wal = run_json("wal_size.py", wal_path, "--n-shards", args.n_shards)
    throughput_plot(fs, args.out / "throughput.png")
    wal_plot(wal, args.out / "wal_per_gib.png")
    (args.out / "report.md").write_text(report(fs, wal, me, args.note))
    print(f"wrote {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
