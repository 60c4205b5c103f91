"""The local network: a Sui stand-in, N storage nodes and an upload relay as background
processes on 127.0.0.1.

`Devnet` is what the CLI and the tests drive; the work is in modules of their own: the files
(`layout.py`), genesis (`genesis.py`), the processes (`processes.py`), the chain's admin calls
(`chain_admin.py`), the test switches (`faults.py`) and the status report (`status.py`).

Genesis happens on the first `up`. `up` is idempotent: it starts whatever is not running and
waits until every service answers.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from chain.wallet import Wallet
from walrusfs.devnet import chain_admin
from walrusfs.devnet.faults import write_faults
from walrusfs.devnet.genesis import genesis
from walrusfs.devnet.layout import DevnetLayout, DevnetSpec
from walrusfs.devnet.processes import START_TIMEOUT, Processes, free_port
from walrusfs.devnet.status import devnet_status
from walrusfs.errors import ServiceError, UsageError


class Devnet:
    """One devnet under `<data_dir>/devnet`. The methods that read its `devnet.json` (`spec`
    and the node and chain commands) raise `ServiceError` when there is no devnet there."""

    def __init__(self, data_dir: Path) -> None:
        self.layout = DevnetLayout(data_dir)
        self.processes = Processes(self.layout)
        self.root = self.layout.root

    # -- layout -----------------------------------------------------------------------------

    def node_dir(self, index: int) -> Path:
        return self.layout.node_dir(index)

    @property
    def exists(self) -> bool:
        return self.layout.exists

    def spec(self) -> DevnetSpec:
        return self.layout.spec()

    def wallet(self) -> Wallet:
        return self.layout.wallet()

    def log_path(self, service: str) -> Path:
        return self.layout.log_path(service)

    def log_tail(self, service: str, lines: int = 15) -> str:
        return self.layout.log_tail(service, lines)

    def pid(self, service: str) -> int | None:
        """The pid of the running service (`sui` or `node-<i>`), or None."""
        return self.processes.pid(service)

    def _check_index(self, spec: DevnetSpec, index: int) -> None:
        if not 0 <= index < spec.n_nodes:
            raise UsageError(f"no node {index}: this devnet has nodes 0..{spec.n_nodes - 1}")

    # -- commands ---------------------------------------------------------------------------

    def genesis(
        self,
        n_nodes: int,
        n_shards: int,
        epoch_duration_ms: int,
        processes: int | None = None,
        stakes: list[int] | None = None,
    ) -> DevnetSpec:
        """Create the devnet (`walrusfs.devnet.genesis.genesis` explains the arguments).

        Raises:
            UsageError: counts, stakes or the epoch duration out of range.
        """
        return genesis(
            self.layout, n_nodes, n_shards, epoch_duration_ms, processes=processes, stakes=stakes
        )

    def up(
        self,
        n_nodes: int = 4,
        n_shards: int = 1000,
        epoch_duration_ms: int = 86_400_000,
        processes: int | None = None,
        stakes: list[int] | None = None,
    ) -> DevnetSpec:
        """Genesis on first use (`genesis` explains `processes` and `stakes`), then start
        whatever is not running and wait until it answers. The arguments matter only at
        genesis: an existing devnet keeps its own.

        Args:
            epoch_duration_ms: the length of an epoch by the clock, in ms.

        Raises:
            UsageError: genesis arguments out of range.
            ServiceError: a port is taken, or a service exited or did not answer in time.
        """
        spec = (
            self.spec()
            if self.exists
            else self.genesis(n_nodes, n_shards, epoch_duration_ms, processes, stakes)
        )
        run = self.processes
        deadline = time.monotonic() + START_TIMEOUT * max(1, spec.n_nodes // 30)
        proc = run.start("sui", spec)
        run.wait_ready("sui", spec.sui_port, deadline, proc)
        procs = {g[0]: run.start(f"node-{g[0]}", spec) for g in spec.groups()}
        for group in spec.groups():
            for i in group:
                run.wait_ready(f"node-{i}", spec.node_ports[i], deadline, procs[group[0]])
        if spec.relay_port is None:  # a devnet made before it had a relay
            spec = replace(spec, relay_port=free_port())
            self.layout.write_spec(spec)
        assert spec.relay_port is not None
        proc = run.start("relay", spec)
        run.wait_ready("relay", spec.relay_port, deadline, proc)
        return spec

    def down(self) -> list[str]:
        """Stop every running service; the names of those stopped (none without a devnet)."""
        if not self.exists:
            return []
        spec = self.spec()
        stopped: list[str] = []
        if self.processes.stop("relay"):
            stopped.append("relay")
        for group in spec.groups():
            if self.processes.stop(f"node-{group[0]}"):
                stopped.extend(f"node-{i}" for i in group)
        if self.processes.stop("sui"):
            stopped.append("sui")
        return stopped

    def destroy(self) -> None:
        self.down()
        if self.root.exists():
            shutil.rmtree(self.root)

    def node_stop(self, index: int, kill: bool = False) -> bool:
        """Stop the process serving node `index` (with its whole group); False if it was not
        running.

        Args:
            kill: SIGKILL at once instead of SIGTERM (SIGKILL follows after 10 s anyway).

        Raises:
            UsageError: the devnet has no node `index`.
        """
        spec = self.spec()
        self._check_index(spec, index)
        return self.processes.stop(f"node-{index}", kill=kill)

    def node_start(self, index: int) -> int:
        """Start the process serving node `index` unless it runs, and wait until the node
        answers; its pid.

        Raises:
            UsageError: the devnet has no node `index`.
            ServiceError: the chain is not running, the node's port is taken, or the node
                exited or did not answer in time.
        """
        spec = self.spec()
        self._check_index(spec, index)
        if self.pid("sui") is None:
            raise ServiceError("the devnet's chain is not running: run `walrusfs devnet up`")
        proc = self.processes.start(f"node-{index}", spec)
        self.processes.wait_ready(
            f"node-{index}", spec.node_ports[index], time.monotonic() + START_TIMEOUT, proc
        )
        pid = self.pid(f"node-{index}")
        assert pid is not None
        return pid

    def set_faults(self, index: int, **faults: Any) -> dict[str, Any]:
        """Merge `faults` into the node's switches; no arguments clears them (heal).

        Raises:
            UsageError: the devnet has no node `index`.
        """
        spec = self.spec()
        self._check_index(spec, index)
        return write_faults(self.node_dir(index), faults)

    def advance_epoch(self, count: int = 1) -> int:
        """Start the next epoch now, `count` times; the epoch reached.

        Raises:
            ServiceError: refused while the previous epoch change is still moving shards, as
                on Walrus (epochs started before that stay started).
        """
        return chain_admin.advance_epoch(self.spec(), count)

    def invalidate_blob(self, blob_id_raw: bytes) -> None:
        """Mark a blob ID invalid on the chain (an `InvalidBlobID` event, as after an
        invalidity certificate); nodes then report its status as invalid.

        Raises:
            ServiceError: refused (invalid already), or the chain did not answer.
        """
        chain_admin.invalidate_blob(self.spec(), blob_id_raw)

    def set_stake(self, index: int, frost: int) -> None:
        """The WAL (FROST) staked with node `index`; the next epoch's committee is apportioned
        from the stakes (`committee::transition`: shards move only as far as the new counts
        need). 0 takes the node out of the committee.

        Raises:
            UsageError: the devnet has no node `index`.
            ServiceError: the chain refused or did not answer.
        """
        spec = self.spec()
        self._check_index(spec, index)
        chain_admin.set_stake(spec, index, frost)

    def chain_epoch(self, spec: DevnetSpec) -> int | None:
        return chain_admin.chain_epoch(spec)

    def status(self) -> dict[str, Any]:
        return devnet_status(self.processes)
