"""A real local Redis Cluster (3 primaries, optionally each with replicas) on free loopback
ports, for the tests.

Debian's ``redis-server`` started with ``--cluster-enabled yes`` in its own directory, then
joined with ``redis-cli --cluster create``; ready once every node reports
``cluster_state:ok`` (and, with replicas, every replica is in sync with its primary). A
node can be SIGKILLed (its replica is promoted after ``cluster-node-timeout``) and
restarted on the same port and directory, where it rejoins as a replica.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.redis_process import FAST_SYNC, RedisProcess

_READY_TIMEOUT = 60.0
_BUS_OFFSET = 10_000  # a node's cluster bus listens on its port + 10000


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out to outgoing connections (and to bind(0))."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_cluster_port() -> int:
    """A free port whose cluster-bus port (+10000) is free too, both below the ephemeral
    range, so that no outgoing connection nor any other test's free_port() (bind to 0)
    can take either between this choice and the node's start."""
    high = min(_ephemeral_low(), 65_536) - 1 - _BUS_OFFSET
    for _ in range(1000):
        port = random.randint(min(10_000, high - 1000), high)
        if _port_free(port) and _port_free(port + _BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def cluster_binaries() -> tuple[str, str] | None:
    """``(redis-server, redis-cli)``, or None when this machine lacks either."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    return (server, cli) if server and cli else None


class RedisCluster:
    def __init__(
        self,
        server: str,
        cli: str,
        workdir: Path,
        *,
        primaries: int = 3,
        replicas: int = 0,
        node_timeout_ms: int | None = None,
    ) -> None:
        """``replicas`` per primary; ``node_timeout_ms``: cluster-node-timeout, after which
        a primary that stopped answering is failed over to its replica."""
        self.cli = cli
        self.replicas = replicas
        extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", *FAST_SYNC]
        if node_timeout_ms is not None:
            # validity factor 0: a replica may always take over, however long it was cut off.
            extra += ["--cluster-node-timeout", str(node_timeout_ms)]
            extra += ["--cluster-replica-validity-factor", "0"]
        self.nodes = [
            RedisProcess(server, workdir / f"node{i}", appendonly=False, extra_args=extra)
            for i in range(primaries * (1 + replicas))
        ]
        taken: set[int] = set()
        for node in self.nodes:
            while (port := free_cluster_port()) in taken:
                pass
            taken.update((port, port + _BUS_OFFSET))
            node.port = port

    @property
    def url(self) -> str:
        """A URL naming one node; the cluster client discovers the others."""
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def redis_cli(self, port: int, *args: str) -> str:
        result = subprocess.run(
            [self.cli, "-h", "127.0.0.1", "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout

    def start(self) -> None:
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            self.redis_cli(
                self.nodes[0].port,
                "--cluster", "create", *addresses,
                "--cluster-replicas", str(self.replicas), "--cluster-yes",
            )  # fmt: skip
            self.wait_ok()
        except BaseException:
            self.stop()
            raise

    def live(self) -> list[RedisProcess]:
        return [node for node in self.nodes if node.process is not None]

    def wait_ok(self) -> None:
        """Until every live node says cluster_state:ok and agrees on who serves what, and
        every replica's link to its primary is up."""
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if self._ok():
                    return
            except subprocess.SubprocessError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"cluster not ok after {_READY_TIMEOUT}s")

    def _ok(self) -> bool:
        live = self.live()
        if not all("cluster_state:ok" in self.redis_cli(n.port, "CLUSTER", "INFO") for n in live):
            return False
        layouts = {frozenset(self.layout(n.port).items()) for n in live}
        if len(layouts) != 1:
            return False
        layout = self.layout(live[0].port)
        live_ports = {n.port for n in live}
        for port, master in layout.items():
            if master is not None and port in live_ports:
                info = self.redis_cli(port, "INFO", "replication")
                if "master_link_status:up" not in info:
                    return False
        return sum(1 for p, m in layout.items() if m is None and p in live_ports) == len(
            self.nodes
        ) // (1 + self.replicas)

    def layout(self, port: int) -> dict[int, int | None]:
        """What the node on ``port`` believes: each healthy node's port and, for a replica,
        its primary's port (None for a primary). Failed nodes are left out."""
        ids: dict[str, int] = {}
        rows = []
        for line in self.redis_cli(port, "CLUSTER", "NODES").splitlines():
            node_id, address, flags, master = line.split()[:4]
            if "fail" in flags.split(",") or "noaddr" in flags:
                continue
            node_port = int(address.split("@")[0].rsplit(":", 1)[1])
            ids[node_id] = node_port
            rows.append((node_port, flags, master))
        return {
            node_port: None if "master" in flags.split(",") else ids.get(master, -1)
            for node_port, flags, master in rows
        }

    def primaries(self) -> list[int]:
        """Ports of the primaries, as the first live node sees them."""
        return sorted(p for p, m in self.layout(self.live()[0].port).items() if m is None)

    def replicas_of(self, primary: int) -> list[int]:
        return sorted(p for p, m in self.layout(self.live()[0].port).items() if m == primary)

    def node(self, port: int) -> RedisProcess:
        [node] = [n for n in self.nodes if n.port == port]
        return node

    def kill(self, port: int) -> None:
        """SIGKILLs the node on ``port`` (no chance to hand anything over)."""
        self.node(port).kill()

    def wait_failover(self, killed: int, replica: int) -> None:
        """Until ``replica`` serves as primary in place of ``killed``, everywhere."""
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            live = self.live()
            try:
                views = [self.layout(n.port) for n in live]
                states = [self.redis_cli(n.port, "CLUSTER", "INFO") for n in live]
            except subprocess.SubprocessError:
                views, states = [], []
            if (
                views
                and all(view.get(replica, -1) is None and killed not in view for view in views)
                and all("cluster_state:ok" in state for state in states)
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{replica} did not replace {killed} within {_READY_TIMEOUT}s")

    def restart(self, port: int) -> None:
        """Starts a killed node again on its port and directory (its nodes.conf): it
        learns that its replica took over and becomes that one's replica."""
        self.node(port).start()
        self.wait_ok()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
