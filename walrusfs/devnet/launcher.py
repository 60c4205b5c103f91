"""The local network: a Sui stand-in and N storage nodes as background processes on 127.0.0.1.

Everything lives under `<data_dir>/devnet` (`walrusfs paths` shows data_dir):

    devnet.json            the network: shard count, ports, object IDs, wallet address
    wallet/client.yaml     the funded devnet wallet (Sui CLI format) and its keystore
    sui/ledger.db          the stand-in's ledger; sui/sui.log, sui/pid
    nodes/node-<i>/        one storage node: node.json, bls.key (0600), node.db, blobs/,
                           faults.json (test switches), node.log, pid

Genesis happens on the first `up`: a BLS key per node, shards split into contiguous ranges
(node i of N holds shards [i*n/N, (i+1)*n/N)), the committee written into System and Staking
with each node's 127.0.0.1:<port> as its network address, and the wallet funded with SUI and
WAL. Ports are chosen once, at genesis, because they are on chain. `up` is idempotent: it
starts whatever is not running and waits until every service answers.

A process is "running" when its pid file names a live process whose command line is ours
(a recycled pid is not mistaken for a node).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpclib.client
import grpclib.const
import httpx
import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from chain.bls import BlsKeypair
from chain.client import NetworkProfile, devnet_profile
from chain.localnet.node import GenesisConfig, Localnet, NodeSpec
from chain.localnet.server import ADVANCE_EPOCH_PATH, INVALIDATE_BLOB_PATH, SET_STAKE_PATH
from chain.wallet import Wallet
from walrusfs.devnet.node import FAULTS_FILE, NodeConfig, write_bls_key
from walrusfs.errors import ServiceError, UsageError

DEVNET_FILE = "devnet.json"
SUI_PER_WALLET = 10_000 * 10**9  # MIST
WAL_PER_WALLET = 10_000 * 10**9  # FROST
DEVNET_NICE = 10  # scheduling priority of the devnet's processes (see _start)
START_TIMEOUT = 60.0


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

    def groups(self) -> list[list[int]]:
        return self.processes or [[i] for i in range(self.n_nodes)]

    def group_of(self, index: int) -> list[int]:
        return next(g for g in self.groups() if index in g)

    def profile(self) -> NetworkProfile:
        return devnet_profile(**self.chain)


@dataclass
class ServiceStatus:
    name: str
    pid: int | None
    port: int
    running: bool
    healthy: bool
    detail: dict[str, Any] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_ports(n: int) -> list[int]:
    """`n` distinct free ports: all bound at once (one at a time, the kernel may hand out a
    port it just gave back)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _network_key() -> bytes:
    """A node's network public key as Walrus publishes it: a compressed P-256 point (what a
    client pins a node's self-signed TLS certificate to). Devnet nodes serve plain HTTP on
    loopback, so the private half is not kept."""
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    return public.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)


def shard_ranges(n_shards: int, n_nodes: int) -> list[list[int]]:
    return [
        list(range(i * n_shards // n_nodes, (i + 1) * n_shards // n_nodes)) for i in range(n_nodes)
    ]


class Devnet:
    def __init__(self, data_dir: Path) -> None:
        # resolved: a process is recognised by the path in its command line, and a devnet
        # reached through a symlink (a data directory moved to another disk) is the same devnet
        self.root = (data_dir / "devnet").resolve()
        self.spec_path = self.root / DEVNET_FILE
        self.sui_dir = self.root / "sui"
        self.wallet_dir = self.root / "wallet"

    # -- layout -----------------------------------------------------------------------------

    def node_dir(self, index: int) -> Path:
        return self.root / "nodes" / f"node-{index}"

    @property
    def exists(self) -> bool:
        return self.spec_path.exists()

    def spec(self) -> DevnetSpec:
        if not self.exists:
            raise ServiceError(f"no devnet under {self.root}: run `walrusfs devnet up` first")
        return DevnetSpec(**json.loads(self.spec_path.read_text(encoding="utf-8")))

    def wallet(self) -> Wallet:
        return Wallet.load(self.wallet_dir / "client.yaml")

    def _check_index(self, spec: DevnetSpec, index: int) -> None:
        if not 0 <= index < spec.n_nodes:
            raise UsageError(f"no node {index}: this devnet has nodes 0..{spec.n_nodes - 1}")

    # -- genesis ----------------------------------------------------------------------------

    def genesis(
        self,
        n_nodes: int,
        n_shards: int,
        epoch_duration_ms: int,
        processes: int | None = None,
        stakes: list[int] | None = None,
    ) -> DevnetSpec:
        """`processes`: how many storage-node processes serve the nodes (each node keeps its
        own key, port and disk; default one process per node). `stakes`: WAL (FROST) staked
        with each node; the shards are then apportioned by stake as the contract does
        (D'Hondt, `chain/localnet/committee.py`) instead of in equal contiguous ranges."""
        if n_nodes < 1 or n_shards < n_nodes:
            raise UsageError(f"need 1 <= nodes <= shards, got {n_nodes} nodes, {n_shards} shards")
        if processes is not None and not 1 <= processes <= n_nodes:
            raise UsageError(f"need 1 <= processes <= nodes, got {processes}")
        if stakes is not None and (len(stakes) != n_nodes or min(stakes) <= 0):
            raise UsageError("one positive stake per node")
        if n_shards > 65535:
            raise UsageError("at most 65535 shards")
        if epoch_duration_ms < 1000:
            raise UsageError("epoch duration must be at least 1s")
        tmp = self.root.with_name("devnet.partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        (tmp / "sui").mkdir(parents=True)
        sui_port, *ports = _free_ports(n_nodes + 1)
        ranges = shard_ranges(n_shards, n_nodes)
        specs: list[NodeSpec] = []
        for i in range(n_nodes):
            node_dir = tmp / "nodes" / f"node-{i}"
            node_dir.mkdir(parents=True)
            seed = os.urandom(32)
            write_bls_key(node_dir, seed)
            key = BlsKeypair.from_seed(seed)
            specs.append(
                NodeSpec(
                    f"node-{i}",
                    f"127.0.0.1:{ports[i]}",
                    key.public_key_uncompressed,
                    _network_key(),
                    [] if stakes is not None else ranges[i],
                    stakes[i] if stakes is not None else 0,
                )
            )
        wallet = Wallet.create(tmp / "wallet", env_alias="devnet", rpc=f"localhost:{sui_port}")
        config = GenesisConfig(
            n_shards,
            specs,
            [(wallet.active_address, SUI_PER_WALLET, WAL_PER_WALLET)],
            epoch_duration_ms=epoch_duration_ms,
            seed=os.urandom(16).hex(),
        )
        net = Localnet.genesis(tmp / "sui" / "ledger.db", config)
        dep = net.deployment
        net.close()
        chain = {
            "port": sui_port,
            "system_object": dep.system_id,
            "staking_object": dep.staking_id,
            "wal_type": dep.wal_type,
            "exchange": dep.exchange_id,
        }
        for i in range(n_nodes):
            NodeConfig(f"node-{i}", "127.0.0.1", ports[i], chain).save(tmp / "nodes" / f"node-{i}")
        # The wallet's keystore path must point at its final place.
        cfg = (tmp / "wallet" / "client.yaml").read_text(encoding="utf-8")
        (tmp / "wallet" / "client.yaml").write_text(
            cfg.replace(str(tmp / "wallet"), str(self.wallet_dir)), encoding="utf-8"
        )
        groups: list[list[int]] = []
        if processes is not None and processes < n_nodes:
            groups = [
                list(range(j * n_nodes // processes, (j + 1) * n_nodes // processes))
                for j in range(processes)
            ]
        spec = DevnetSpec(
            n_nodes,
            n_shards,
            epoch_duration_ms,
            sui_port,
            ports,
            chain,
            wallet.active_address,
            processes=groups,
        )
        (tmp / DEVNET_FILE).write_text(json.dumps(asdict(spec), indent=2) + "\n")
        tmp.rename(self.root)  # genesis is all or nothing
        return spec

    # -- processes --------------------------------------------------------------------------

    def _pid_file(self, service: str) -> Path:
        if service == "sui":
            return self.sui_dir / "pid"
        return self.node_dir(int(service.removeprefix("node-"))) / "pid"

    def _group(self, service: str) -> list[int]:
        """The nodes served by the process that serves `service` (a node-<i>)."""
        return self.spec().group_of(int(service.removeprefix("node-")))

    def _command(self, service: str, spec: DevnetSpec) -> list[str]:
        if service == "sui":
            ledger = str(self.sui_dir / "ledger.db")
            return [sys.executable, "-m", "walrusfs.devnet.sui", ledger, str(spec.sui_port)]
        group = spec.group_of(int(service.removeprefix("node-")))
        return [
            sys.executable,
            "-m",
            "walrusfs.devnet.node",
            *(str(self.node_dir(i)) for i in group),
        ]

    def pid(self, service: str) -> int | None:
        """The pid of the running service, or None."""
        try:
            pid = int(self._pid_file(service).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                return None
        except (OSError, IndexError):
            return None
        marker = (
            str(self.sui_dir / "ledger.db")
            if service == "sui"
            else str(self.node_dir(int(service.removeprefix("node-"))))
        )
        return pid if marker.encode() in cmdline else None

    def _start(self, service: str, spec: DevnetSpec) -> subprocess.Popen[bytes] | None:
        """Start the service unless it runs; the new process, or None if it was running. A
        node's process serves its whole group (`DevnetSpec.processes`)."""
        if self.pid(service) is not None:
            return None
        members = [] if service == "sui" else spec.group_of(int(service.removeprefix("node-")))
        ports = [spec.sui_port] if service == "sui" else [spec.node_ports[i] for i in members]
        for port in ports:
            if _port_open(port):
                raise ServiceError(
                    f"the devnet cannot start: port {port} of its {service} is taken by another "
                    "process (`ss -ltnp` names it); stop that process, or `walrusfs devnet "
                    "destroy` and `walrusfs devnet up` for a new devnet on free ports"
                )
        log_path = self.log_path(service)
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                self._command(service, spec),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                cwd=self.root,
            )
        # The devnet stands in for remote machines: at a lower priority its CPU use does not
        # slow down the mount it serves on this machine (the nodes of a real network run
        # elsewhere).
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, proc.pid, DEVNET_NICE)
        for name in [service] if service == "sui" else [f"node-{i}" for i in members]:
            self._pid_file(name).write_text(f"{proc.pid}\n")
        return proc

    def _wait_ready(
        self,
        service: str,
        port: int,
        deadline: float,
        proc: subprocess.Popen[bytes] | None,
    ) -> None:
        while time.monotonic() < deadline:
            # A child just forked still shows our command line in /proc: ask the handle.
            exited = proc.poll() is not None if proc is not None else self.pid(service) is None
            if exited:
                raise ServiceError(
                    f"{service} exited while starting; see {self.log_path(service)}:\n"
                    + self.log_tail(service)
                )
            if service == "sui":
                if _port_open(port):
                    return
            elif self._node_health(port) is not None:
                return
            time.sleep(0.1)
        raise ServiceError(
            f"{service} did not answer on 127.0.0.1:{port} within {START_TIMEOUT:.0f}s; "
            f"see {self.log_path(service)}"
        )

    def log_path(self, service: str) -> Path:
        if service != "sui":  # the log of the process serving the node: its first node's
            service = f"node-{self._group(service)[0]}"
        return self._pid_file(service).with_name("sui.log" if service == "sui" else "node.log")

    def log_tail(self, service: str, lines: int = 15) -> str:
        try:
            text = self.log_path(service).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _stop(self, service: str, kill: bool = False, timeout: float = 10.0) -> bool:
        """Stop the process serving `service` (for a node: its whole group)."""
        names = [service]
        if service != "sui":
            names = [f"node-{i}" for i in self._group(service)]
        stopped = self._stop_one(service, kill, timeout)
        for name in names:
            self._pid_file(name).unlink(missing_ok=True)
        return stopped

    def _stop_one(self, service: str, kill: bool, timeout: float) -> bool:
        pid = self.pid(service)
        if pid is None:
            self._pid_file(service).unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.pid(service) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.pid(service) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while self.pid(service) is not None:
                time.sleep(0.05)
        self._pid_file(service).unlink(missing_ok=True)
        return True

    # -- commands ---------------------------------------------------------------------------

    def up(
        self,
        n_nodes: int = 4,
        n_shards: int = 1000,
        epoch_duration_ms: int = 86_400_000,
        processes: int | None = None,
        stakes: list[int] | None = None,
    ) -> DevnetSpec:
        """Genesis on first use (`genesis` explains `processes` and `stakes`), then start
        whatever is not running and wait until it answers."""
        exists = self.exists
        spec = (
            self.spec()
            if exists
            else self.genesis(n_nodes, n_shards, epoch_duration_ms, processes, stakes)
        )
        deadline = time.monotonic() + START_TIMEOUT * max(1, spec.n_nodes // 30)
        proc = self._start("sui", spec)
        self._wait_ready("sui", spec.sui_port, deadline, proc)
        procs = {g[0]: self._start(f"node-{g[0]}", spec) for g in spec.groups()}
        for group in spec.groups():
            for i in group:
                self._wait_ready(f"node-{i}", spec.node_ports[i], deadline, procs[group[0]])
        return spec

    def down(self) -> list[str]:
        if not self.exists:
            return []
        spec = self.spec()
        stopped: list[str] = []
        for group in spec.groups():
            if self._stop(f"node-{group[0]}"):
                stopped.extend(f"node-{i}" for i in group)
        if self._stop("sui"):
            stopped.append("sui")
        return stopped

    def destroy(self) -> None:
        self.down()
        if self.root.exists():
            shutil.rmtree(self.root)

    def node_stop(self, index: int, kill: bool = False) -> bool:
        spec = self.spec()
        self._check_index(spec, index)
        return self._stop(f"node-{index}", kill=kill)

    def node_start(self, index: int) -> int:
        spec = self.spec()
        self._check_index(spec, index)
        if self.pid("sui") is None:
            raise ServiceError("the devnet's chain is not running: run `walrusfs devnet up`")
        proc = self._start(f"node-{index}", spec)
        self._wait_ready(
            f"node-{index}", spec.node_ports[index], time.monotonic() + START_TIMEOUT, proc
        )
        pid = self.pid(f"node-{index}")
        assert pid is not None
        return pid

    def set_faults(self, index: int, **faults: Any) -> dict[str, Any]:
        """Merge `faults` into the node's switches; no arguments clears them (heal)."""
        spec = self.spec()
        self._check_index(spec, index)
        path = self.node_dir(index) / FAULTS_FILE
        current: dict[str, Any] = {}
        if faults:
            with contextlib.suppress(FileNotFoundError, ValueError):
                current = json.loads(path.read_text(encoding="utf-8"))
            current.update(faults)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(current) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return current

    def advance_epoch(self, count: int = 1) -> int:
        """Start the next epoch now, `count` times. Refused (ServiceError) while the previous
        epoch change is still moving shards, as on Walrus."""
        spec = self.spec()
        reply = self._chain_call(spec, ADVANCE_EPOCH_PATH, pb.GetEpochRequest(epoch=count))
        return int(reply.epoch.epoch or 0)

    def invalidate_blob(self, blob_id_raw: bytes) -> None:
        """Mark a blob ID invalid on the chain (an `InvalidBlobID` event, as after an
        invalidity certificate); nodes then report its status as invalid."""
        spec = self.spec()
        self._chain_call(spec, INVALIDATE_BLOB_PATH, pb.Bcs(value=blob_id_raw), pb.Bcs)

    def set_stake(self, index: int, frost: int) -> None:
        """The WAL (FROST) staked with node `index`; the next epoch's committee is apportioned
        from the stakes (`committee::transition`: shards move only as far as the new counts
        need). 0 takes the node out of the committee."""
        spec = self.spec()
        self._check_index(spec, index)
        request = pb.Bcs(name=f"node-{index}", value=frost.to_bytes(8, "little"))
        self._chain_call(spec, SET_STAKE_PATH, request, pb.Bcs)

    def chain_epoch(self, spec: DevnetSpec) -> int | None:
        try:
            reply = self._chain_call(
                spec, "/sui.rpc.v2.LedgerService/GetEpoch", pb.GetEpochRequest()
            )
        except ServiceError:
            return None
        return int(reply.epoch.epoch or 0)

    def _chain_call(
        self, spec: DevnetSpec, path: str, request: Any, request_type: Any = pb.GetEpochRequest
    ) -> Any:
        async def call() -> Any:
            channel = grpclib.client.Channel("127.0.0.1", spec.sui_port)
            try:
                async with channel.request(
                    path,
                    grpclib.const.Cardinality.UNARY_UNARY,
                    request_type,
                    pb.GetEpochResponse,
                    timeout=10,
                ) as stream:
                    await stream.send_message(request, end=True)
                    return await stream.recv_message()
            finally:
                channel.close()

        try:
            return asyncio.run(call())
        except grpclib.exceptions.GRPCError as exc:
            raise ServiceError(f"the devnet chain refused: {exc.message}") from None
        except (OSError, TimeoutError) as exc:
            raise ServiceError(f"the devnet chain on port {spec.sui_port}: {exc}") from None

    @staticmethod
    def _node_health(port: int) -> dict[str, Any] | None:
        try:
            rsp = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2.0)
        except httpx.HTTPError:
            return None
        if rsp.status_code != 200:
            return None
        data: dict[str, Any] = rsp.json()["success"]["data"]
        return data

    def status(self) -> dict[str, Any]:
        spec = self.spec()
        sui_pid = self.pid("sui")
        services = [
            ServiceStatus(
                "sui",
                sui_pid,
                spec.sui_port,
                sui_pid is not None,
                False,
                {"log": str(self.log_path("sui"))},
            )
        ]
        epoch = self.chain_epoch(spec) if sui_pid is not None else None
        services[0].healthy = epoch is not None
        for i in range(spec.n_nodes):
            name = f"node-{i}"
            pid = self.pid(name)
            health = self._node_health(spec.node_ports[i]) if pid is not None else None
            faults: dict[str, Any] = {}
            with contextlib.suppress(FileNotFoundError, ValueError):
                faults = json.loads((self.node_dir(i) / FAULTS_FILE).read_text())
            owned = None if health is None else health.get("shardSummary", {}).get("owned")
            detail: dict[str, Any] = {
                "shards": owned,
                "faults": {k: v for k, v in faults.items() if v},
                "diskUse": _du(self.node_dir(i)),
                "log": str(self.log_path(name)),
            }
            if health is not None:
                detail["epoch"] = health.get("epoch")
                detail["checkpoint"] = health.get("eventProgress", {}).get("persisted")
            services.append(
                ServiceStatus(
                    name, pid, spec.node_ports[i], pid is not None, health is not None, detail
                )
            )
        return {
            "home": str(self.root),
            "nShards": spec.n_shards,
            "epoch": epoch,
            "epochDurationMs": spec.epoch_duration_ms,
            "wallet": spec.wallet_address,
            "walletConfig": str(self.wallet_dir / "client.yaml"),
            "grpc": f"localhost:{spec.sui_port}",
            "diskUse": _du(self.root),
            "services": [asdict(s) for s in services],
        }


def _du(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total
