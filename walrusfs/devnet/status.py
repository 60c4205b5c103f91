"""`walrusfs devnet status`: each service's process, health, shards, disk use and switches."""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from walrusfs.devnet.chain_admin import chain_epoch
from walrusfs.devnet.faults import read_faults
from walrusfs.devnet.processes import Processes, node_health, port_open


@dataclass
class ServiceStatus:
    name: str
    pid: int | None
    port: int
    running: bool
    healthy: bool
    detail: dict[str, Any] = field(default_factory=dict)


def disk_use(path: Path) -> int:
    """Bytes of the files under `path` (apparent sizes; files vanishing meanwhile skipped)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def devnet_status(processes: Processes) -> dict[str, Any]:
    """The status report as `devnet status --json` prints it.

    Raises:
        ServiceError: there is no devnet.
    """
    layout = processes.layout
    spec = layout.spec()
    sui_pid = processes.pid("sui")
    services = [
        ServiceStatus(
            "sui",
            sui_pid,
            spec.sui_port,
            sui_pid is not None,
            False,
            {"log": str(layout.log_path("sui"))},
        )
    ]
    epoch = chain_epoch(spec) if sui_pid is not None else None
    services[0].healthy = epoch is not None
    for i in range(spec.n_nodes):
        name = f"node-{i}"
        pid = processes.pid(name)
        health = node_health(spec.node_ports[i]) if pid is not None else None
        faults = read_faults(layout.node_dir(i))
        owned = None if health is None else health.get("shardSummary", {}).get("owned")
        detail: dict[str, Any] = {
            "shards": owned,
            "faults": {k: v for k, v in faults.items() if v},
            "diskUse": disk_use(layout.node_dir(i)),
            "log": str(layout.log_path(name)),
        }
        if health is not None:
            detail["epoch"] = health.get("epoch")
            detail["checkpoint"] = health.get("eventProgress", {}).get("persisted")
        services.append(
            ServiceStatus(
                name, pid, spec.node_ports[i], pid is not None, health is not None, detail
            )
        )
    if spec.relay_port is not None:
        pid = processes.pid("relay")
        services.append(
            ServiceStatus(
                "relay",
                pid,
                spec.relay_port,
                pid is not None,
                pid is not None and port_open(spec.relay_port),
                {"log": str(layout.log_path("relay")), "url": spec.relay_url},
            )
        )
    return {
        "home": str(layout.root),
        "nShards": spec.n_shards,
        "epoch": epoch,
        "epochDurationMs": spec.epoch_duration_ms,
        "wallet": spec.wallet_address,
        "walletConfig": str(layout.wallet_dir / "client.yaml"),
        "grpc": f"localhost:{spec.sui_port}",
        "diskUse": disk_use(layout.root),
        "services": [asdict(s) for s in services],
    }
