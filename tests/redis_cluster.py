"""A real local Redis Cluster (3 primaries, no replicas) on free loopback ports, for the tests.

Debian's ``redis-server`` started with ``--cluster-enabled yes`` in its own directory, then
joined with ``redis-cli --cluster create``; ready once every node reports
``cluster_state:ok``.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.redis_process import RedisProcess

_READY_TIMEOUT = 60.0
_BUS_OFFSET = 10_000  # a node's cluster bus listens on its port + 10000


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port() -> int:
    """A free port at most 55535 whose cluster-bus port (+10000) is free too."""
    for _ in range(1000):
        port = random.randint(20_000, 65_535 - _BUS_OFFSET)
        if _port_free(port) and _port_free(port + _BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def cluster_binaries() -> tuple[str, str] | None:
    """``(redis-server, redis-cli)``, or None when this machine lacks either."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    return (server, cli) if server and cli else None


class RedisCluster:
    def __init__(self, server: str, cli: str, workdir: Path, *, primaries: int = 3) -> None:
        self.cli = cli
        self.nodes = [
            RedisProcess(
                server,
                workdir / f"node{i}",
                appendonly=False,
                extra_args=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"],
            )
            for i in range(primaries)
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
                "--cluster-replicas", "0", "--cluster-yes",
            )  # fmt: skip
            self._wait_ok()
        except BaseException:
            self.stop()
            raise

    def _wait_ok(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            states = [self.redis_cli(n.port, "CLUSTER", "INFO") for n in self.nodes]
            if all("cluster_state:ok" in state for state in states):
                return
            time.sleep(0.1)
        raise RuntimeError(f"cluster not ok after {_READY_TIMEOUT}s")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
