"""The devnet's background processes: start, recognise, wait for, stop.

A process is "running" when its pid file names a live process whose command line is ours
(a recycled pid is not mistaken for a node). A storage-node process serves a group of nodes
(`DevnetSpec.processes`); every node of the group has the process's pid in its pid file.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from walrusfs.devnet.layout import DevnetLayout, DevnetSpec, node_index
from walrusfs.errors import ServiceError

DEVNET_NICE = 10  # scheduling priority of the devnet's processes (see Processes.start)
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports: all bound at once (one at a time, the kernel may hand out a
    port it just gave back)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def node_health(port: int) -> dict[str, Any] | None:
    """The node's `/v1/health` data, or None when it does not answer 200.

    A bare http.client request: httpx builds a TLS context for every client first, which took
    longer than the request to a local node, and every `walrusfs mount` asks each node."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
    try:
        conn.request("GET", "/v1/health")
        rsp = conn.getresponse()
        body = rsp.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    if rsp.status != 200:
        return None
    data: dict[str, Any] = json.loads(body)["success"]["data"]
    return data


class Processes:
    """The processes of the devnet in `layout`."""

    def __init__(self, layout: DevnetLayout) -> None:
        self.layout = layout

    def _command(self, service: str, spec: DevnetSpec) -> list[str]:
        if service == "sui":
            ledger = str(self.layout.sui_dir / "ledger.db")
            return [sys.executable, "-m", "walrusfs.devnet.sui", ledger, str(spec.sui_port)]
        if service == "relay":
            return [
                sys.executable,
                "-m",
                "walrusfs.devnet.relay",
                str(self.layout.relay_dir),
                "--port",
                str(spec.relay_port),
            ]
        group = spec.group_of(node_index(service))
        return [
            sys.executable,
            "-m",
            "walrusfs.devnet.node",
            *(str(self.layout.node_dir(i)) for i in group),
        ]

    def pid(self, service: str) -> int | None:
        """The pid of the running service, or None."""
        try:
            pid = int(self.layout.pid_file(service).read_text().strip())
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
        if service == "sui":
            marker = str(self.layout.sui_dir / "ledger.db")
        elif service == "relay":
            marker = str(self.layout.relay_dir)
        else:
            marker = str(self.layout.node_dir(node_index(service)))
        return pid if marker.encode() in cmdline else None

    def start(self, service: str, spec: DevnetSpec) -> subprocess.Popen[bytes] | None:
        """Start the service unless it runs; the new process, or None if it was running. A
        node's process serves its whole group (`DevnetSpec.processes`).

        Raises:
            ServiceError: a port of the service is taken by another process.
        """
        if self.pid(service) is not None:
            return None
        single = service in ("sui", "relay")
        members = [] if single else spec.group_of(node_index(service))
        if service == "sui":
            ports = [spec.sui_port]
        elif service == "relay":
            assert spec.relay_port is not None
            ports = [spec.relay_port]
        else:
            ports = [spec.node_ports[i] for i in members]
        for port in ports:
            if port_open(port):
                raise ServiceError(
                    f"the devnet cannot start: port {port} of its {service} is taken by another "
                    "process (`ss -ltnp` names it); stop that process, or `walrusfs devnet "
                    "destroy` and `walrusfs devnet up` for a new devnet on free ports"
                )
        log_path = self.layout.log_path(service)
        log_path.parent.mkdir(exist_ok=True)
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
                cwd=self.layout.root,
            )
        # The devnet stands in for remote machines: at a lower priority its CPU use does not
        # slow down the mount it serves on this machine (the nodes of a real network run
        # elsewhere).
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, proc.pid, DEVNET_NICE)
        for name in [service] if single else [f"node-{i}" for i in members]:
            self.layout.pid_file(name).write_text(f"{proc.pid}\n")
        return proc

    def wait_ready(
        self,
        service: str,
        port: int,
        deadline: float,
        proc: subprocess.Popen[bytes] | None,
    ) -> None:
        """Wait until the service answers on `port`.

        Raises:
            ServiceError: it exited, or did not answer by `deadline` (time.monotonic()).
        """
        while time.monotonic() < deadline:
            # A child just forked still shows our command line in /proc: ask the handle.
            exited = proc.poll() is not None if proc is not None else self.pid(service) is None
            if exited:
                raise ServiceError(
                    f"{service} exited while starting; see {self.layout.log_path(service)}:\n"
                    + self.layout.log_tail(service)
                )
            if service in ("sui", "relay"):
                if port_open(port):
                    return
            elif node_health(port) is not None:
                return
            time.sleep(0.1)
        raise ServiceError(
            f"{service} did not answer on 127.0.0.1:{port} within {START_TIMEOUT:.0f}s; "
            f"see {self.layout.log_path(service)}"
        )

    def stop(self, service: str, kill: bool = False, timeout: float = 10.0) -> bool:
        """Stop the process serving `service` (for a node: its whole group); False if it was
        not running.

        Args:
            kill: SIGKILL at once instead of SIGTERM.
            timeout: seconds to wait after SIGTERM before SIGKILL.
        """
        names = [service]
        if service not in ("sui", "relay"):
            names = [f"node-{i}" for i in self.layout.group(service)]
        stopped = self._stop_one(service, kill, timeout)
        for name in names:
            self.layout.pid_file(name).unlink(missing_ok=True)
        return stopped

    def _stop_one(self, service: str, kill: bool, timeout: float) -> bool:
        pid = self.pid(service)
        if pid is None:
            self.layout.pid_file(service).unlink(missing_ok=True)
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
        self.layout.pid_file(service).unlink(missing_ok=True)
        return True
