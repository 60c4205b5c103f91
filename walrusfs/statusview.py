"""The status of a running mount as text (`walrusfs status`): one labelled line per aspect,
with the alarming ones (EXPIRING, PAUSED, UNFINISHED, UNCOMMITTED) in capitals.

A pure function of the daemon's status answer (`user.walrusfs.ctl.status`, made by
`Volume.status` in walrusfs/fs/volume.py; `walrusfs status --json` prints it as it is), so it
can be read and tested without a mount.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chain.pricing import format_wal


def _mib(n: int | None) -> str:
    """Bytes as MiB with one decimal; `?` when the daemon does not know."""
    return "?" if n is None else f"{n / (1 << 20):.1f} MiB"


def render(st: Mapping[str, Any]) -> str:
    """The status answer as the lines `walrusfs status` prints (without a final newline).

    Raises:
        KeyError: the answer lacks a field this rendering needs (a daemon of another
            walrusfs version).
    """
    p, up, stored, ch, cache = st["pending"], st["uploaded"], st["stored"], st["chain"], st["cache"]
    looked = cache["hits"] + cache["misses"]
    healthy = [n for n in st["nodes"] if n["healthy"]]
    lines = [
        f"volume       {Path(st['volume']).name} on {st['mountpoint']} (pid {st['pid']})",
        f"network      {ch['network']}, epoch {ch['epoch']}, "
        + (
            f"{format_wal(ch['wal'])}, {ch['sui'] / 1e9:.3f} SUI, prepaid storage "
            f"{_mib(ch['prepaid_bytes'])}"
            if ch["wal"] is not None
            else "balances not known yet"
        ),
        *_pool_line(st.get("pool")),
        f"pending      {p['chunks']} chunk(s), {_mib(p['bytes'])} to upload "
        f"({p['uploading']} uploading, {_mib(p['uploading_bytes'])})",
        f"staging      {_mib(st['staging']['bytes'])} of {_mib(st['staging']['limit'])}",
        f"cache        {_mib(cache['bytes'])} of {_mib(cache['limit'])}"
        + (f", hit rate {100 * cache['hits'] / looked:.0f}% of {looked} lookups" if looked else ""),
        f"stored       {stored['blobs']} blob(s), {_mib(stored['bytes'])} "
        f"({_mib(stored['encoded_bytes'])} encoded), earliest end epoch "
        f"{stored['earliest_end_epoch']}",
        f"this mount   {up['blobs']} blob(s) + {up['quilts']} quilt(s), {_mib(up['bytes'])}, "
        f"{format_wal(up['wal_spent'])} spent"
        + (f", {up['compacted_quilts']} quilt(s) compacted" if up["compacted_quilts"] else ""),
    ]
    if st["nodes"]:
        lines.append(
            f"nodes        {len(healthy)} of {len(st['nodes'])} healthy"
            + "".join(f"; {n['name']} DOWN" for n in st["nodes"] if not n["healthy"])
        )
    lt, cp = st["lifetime"], st["checkpoint"]
    privacy = "public (plaintext)" if st["encryption"] == "none" else "encrypted"
    lines.append(
        f"lifetime     {privacy}, "
        + (
            f"renewals on (within {lt['horizon']} epochs, +{lt['extend_by']})"
            if lt["renew"]
            else "renewals OFF"
        )
        + f", {lt['extended']} extended this mount"
    )
    if lt["expiring_blobs"]:
        lines.append(
            f"EXPIRING     {lt['expiring_blobs']} blob(s) by epoch {lt['expiring_by_epoch']}"
            + (
                f": {lt['last_error']}"
                if lt["last_error"]
                else ""
                if lt["renew"]
                else ": renewals are off (mount with --renew)"
            )
        )
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(cp["time"])) if cp["time"] else "-"
    lines.append(
        f"checkpoint   #{cp['seq']} at {when}"
        + (", metadata changed since" if cp["pending"] else "")
        + (f", last failed: {cp['last_error']}" if cp["last_error"] else "")
    )
    funds = st["funds"]
    if funds["paused"]:
        amount = (
            format_wal(funds["missing"])
            if funds["currency"] == "WAL"
            else f"{funds['missing'] / 1e9:.3f} SUI"
        )
        lines.append(
            f"PAUSED       uploads wait for {funds['currency']}: the next upload needs {amount} "
            "more"
            + (
                f"; all that is staged needs about {format_wal(funds['staged_cost'])}"
                if funds["staged_cost"]
                else ""
            )
            + "; writes go on into staging until it is full, then fail with ENOSPC. "
            + (
                "Get WAL: `walrusfs wallet get-wal SUI` (devnet, testnet)"
                if funds["currency"] == "WAL"
                else "Send SUI to the wallet's address (`walrusfs wallet`)"
            )
        )
    if up.get("uncertified_blobs"):
        lines.append(
            f"UNFINISHED   {up['uncertified_blobs']} registered blob(s) not certified yet (paid; "
            "the retry of their upload continues them, or deletes them if the file changed)"
        )
    if up.get("uncommitted_uploads"):
        lines.append(
            f"UNCOMMITTED  {up['uncommitted_uploads']} certified upload(s) wait for room on the "
            "local disk to be recorded (free space under WALRUSFS_HOME)"
        )
    if up["last_error"]:
        lines.append(f"last error   {up['last_error']} ({up['failures']} failed upload(s))")
    return "\n".join(lines)


def _pool_line(pool: dict[str, Any] | None) -> list[str]:
    """The storage pool's line of status (none for a volume of owned Blobs)."""
    if pool is None:
        return []
    return [
        f"pool         {pool['id']}: {_mib(pool['used'])} of {_mib(pool['capacity'])} used "
        f"by {pool['blobs']} blob(s), ends at epoch {pool['end_epoch']}; renewal "
        f"+{pool['renewal_epochs']} epochs costs about {format_wal(pool['renewal_cost'])}"
    ]
