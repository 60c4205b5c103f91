"""Where a devnet keeps its things, and `devnet.json`, the network it was created as.

Everything lives under `<data_dir>/devnet` (`walrusfs paths` shows data_dir):

    devnet.json            the network: shard count, ports, object IDs, wallet address
    wallet/client.yaml     the funded devnet wallet (Sui CLI format) and its keystore
    sui/ledger.db          the stand-in's ledger; sui/sui.log, sui/pid
    nodes/node-<i>/        one storage node: node.json, bls.key (0600), node.db, blobs/,
                           faults.json (test switches), node.log, pid

A service is named `sui` or `node-<i>`; a node's log is its process's, the log of the first
node of the group the process serves (`DevnetSpec.processes`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chain.client import NetworkProfile, devnet_profile
from chain.wallet import Wallet
from walrusfs.errors import ServiceError

DEVNET_FILE = "devnet.json"


@dataclass
class DevnetSpec:
    """`devnet.json`."""

    n_nodes: int
    n_shards: int
    epoch_duration_ms: int
    sui_port: int
    node_ports: list[int]
    chain: dict[str, Any]  # devnet_profile(**chain)
    wallet_address: str
    version: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    #: the node indices each storage-node process serves (empty: one process per node)
    processes: list[list[int]] = field(default_factory=list)
    #: the upload relay's port (None: a devnet made before it had one; `up` gives it one)
    relay_port: int | None = None

    @property
    def relay_url(self) -> str | None:
        """The devnet's upload relay (`walrusfs/devnet/relay.py`), if it has one."""
        return None if self.relay_port is None else f"http://127.0.0.1:{self.relay_port}"

    def groups(self) -> list[list[int]]:
        """The node indices of each storage-node process, in order."""
        return self.processes or [[i] for i in range(self.n_nodes)]

    def group_of(self, index: int) -> list[int]:
        """The group of node `index`.

        Raises:
            StopIteration: no group holds `index` (not a node of this devnet).
        """
        return next(g for g in self.groups() if index in g)

    def profile(self) -> NetworkProfile:
        return devnet_profile(**self.chain)


def node_index(service: str) -> int:
    """`node-<i>` -> i."""
    return int(service.removeprefix("node-"))


class DevnetLayout:
    """The paths of one devnet's files."""

    def __init__(self, data_dir: Path) -> None:
        # resolved: a process is recognised by the path in its command line, and a devnet
        # reached through a symlink (a data directory moved to another disk) is the same devnet
        self.root = (data_dir / "devnet").resolve()
        self.spec_path = self.root / DEVNET_FILE
        self.sui_dir = self.root / "sui"
        self.relay_dir = self.root / "relay"
        self.wallet_dir = self.root / "wallet"

    def node_dir(self, index: int) -> Path:
        return self.root / "nodes" / f"node-{index}"

    @property
    def exists(self) -> bool:
        return self.spec_path.exists()

    def spec(self) -> DevnetSpec:
        """`devnet.json`.

        Raises:
            ServiceError: there is no devnet here.
        """
        if not self.exists:
            raise ServiceError(f"no devnet under {self.root}: run `walrusfs devnet up` first")
        return DevnetSpec(**json.loads(self.spec_path.read_text(encoding="utf-8")))

    def write_spec(self, spec: DevnetSpec, root: Path | None = None) -> None:
        """`devnet.json` of `spec`, under `root` (default: this devnet's; genesis writes into
        its temporary directory before renaming it into place)."""
        path = self.spec_path if root is None else root / DEVNET_FILE
        path.write_text(json.dumps(asdict(spec), indent=2) + "\n", encoding="utf-8")

    def wallet(self) -> Wallet:
        """The devnet's funded wallet.

        Raises:
            chain.errors.WalletNotFound, MalformedKeystore: it is missing or unreadable.
        """
        return Wallet.load(self.wallet_dir / "client.yaml")

    def pid_file(self, service: str) -> Path:
        if service == "sui":
            return self.sui_dir / "pid"
        if service == "relay":
            return self.relay_dir / "pid"
        return self.node_dir(node_index(service)) / "pid"

    def group(self, service: str) -> list[int]:
        """The nodes served by the process that serves `service` (a node-<i>).

        Raises:
            ServiceError: there is no devnet here.
        """
        return self.spec().group_of(node_index(service))

    def log_path(self, service: str) -> Path:
        if service in ("sui", "relay"):
            return self.pid_file(service).with_name(f"{service}.log")
        # the log of the process serving the node: its first node's
        return self.pid_file(f"node-{self.group(service)[0]}").with_name("node.log")

    def log_tail(self, service: str, lines: int = 15) -> str:
        """The last `lines` lines of the service's log ("" while there is none)."""
        try:
            text = self.log_path(service).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
