"""A real Redis Sentinel set-up on free loopback ports, for the tests: one primary, its
replicas (``redis-server --replicaof``) and three ``redis-sentinel`` processes watching it.

Each process has its own directory (the sentinels rewrite their config file there). The
primary can be SIGKILLed; the sentinels promote a replica after ``down-after-milliseconds``
and the test waits until every live sentinel names the new primary. A killed node is
started again as a replica of the current primary (never as an empty primary).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.redis_process import (
    FAST_SYNC,
    RedisProcess,
    answers_ping_tls,
    free_port,
    refuses_unauthenticated,
)
from threads_server.ops.embedded import answers_ping

MASTER_NAME = "threads"


@dataclass(frozen=True)
class TLSFiles:
    """A server certificate (SAN 127.0.0.1), its key and the CA, for TLS-only processes.
    Clients need no certificate (``tls-auth-clients no``)."""

    cert: Path
    key: Path
    ca: Path

    def config(self, port: int) -> list[str]:
        """Config lines (also usable as ``--name value`` pairs) for TLS on ``port`` only."""
        return [
            "port 0",
            f"tls-port {port}",
            f"tls-cert-file {self.cert}",
            f"tls-key-file {self.key}",
            f"tls-ca-cert-file {self.ca}",
            "tls-auth-clients no",
            "tls-replication yes",
        ]

    def args(self, port: int) -> list[str]:
        return [part for line in self.config(port) for part in ("--" + line).split(" ", 1)]


_READY_TIMEOUT = 60.0


def sentinel_binaries() -> tuple[str, str, str] | None:
    """``(redis-server, redis-sentinel, redis-cli)``, or None when this machine lacks one."""
    found = [shutil.which(name) for name in ("redis-server", "redis-sentinel", "redis-cli")]
    if not all(found):
        return None
    server, sentinel, cli = found
    assert server and sentinel and cli
    return server, sentinel, cli


class SentinelProcess:
    """One ``redis-sentinel`` with its own config file, port and log."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        primary_port: int,
        down_after_ms: int,
        *,
        password: str | None = None,
        sentinel_password: str | None = None,
        tls: TLSFiles | None = None,
    ) -> None:
        """``password``: the primary's and replicas' (auth-pass); ``sentinel_password``:
        the sentinels' own requirepass (and sentinel-pass, to talk to each other);
        ``tls``: TLS only, to clients and to the nodes."""
        self.tls = tls
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "sentinel.conf"
        self.config.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            "daemonize no\n"
            f"dir {workdir}\n"
            f"logfile {workdir / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 2\n"
            + (f"sentinel auth-pass {MASTER_NAME} {password}\n" if password else "")
            + (
                f"requirepass {sentinel_password}\nsentinel sentinel-pass {sentinel_password}\n"
                if sentinel_password
                else ""
            )
            + ("".join(f"{line}\n" for line in tls.config(self.port)) if tls else "")
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.workdir / "sentinel.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-sentinel exited with {self.process.returncode}: {log}")
            if self.tls is not None:
                ready = answers_ping_tls(self.port, self.tls.ca)
            else:
                ready = answers_ping(("127.0.0.1", self.port))
            if ready or refuses_unauthenticated(self.port):
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-sentinel not ready on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        self.process = None


class RedisSentinel:
    """A primary, ``replicas`` replicas and ``sentinels`` sentinels (quorum 2)."""

    def __init__(
        self,
        server: str,
        sentinel: str,
        cli: str,
        workdir: Path,
        *,
        replicas: int = 2,
        sentinels: int = 3,
        down_after_ms: int = 2000,
        password: str | None = None,
        sentinel_password: str | None = None,
        tls: TLSFiles | None = None,
    ) -> None:
        """``down_after_ms``: Sentinel's down-after-milliseconds. At 1000 on this shared
        2-core machine, sentinels sometimes failed the *new* primary over again moments
        after a failover, to a replica still re-syncing (acknowledged writes lost even
        with --min-replica-acks 1; see docs/ha-and-durability.md); 2000 did not."""
        self.cli = cli
        self.password = password
        self.sentinel_password = sentinel_password
        self.tls = tls
        auth = ["--requirepass", password, "--masterauth", password] if password else []
        self.nodes = [
            RedisProcess(
                server,
                workdir / f"redis{i}",
                appendonly=False,
                extra_args=[*FAST_SYNC, *auth],
                tls_ca=tls.ca if tls else None,
            )
            for i in range(1 + replicas)
        ]
        for node in self.nodes:
            node.extra_args += tls.args(node.port) if tls else []
        primary = self.nodes[0].port
        for node in self.nodes[1:]:
            node.extra_args += ["--replicaof", "127.0.0.1", str(primary)]
        self.sentinels = [
            SentinelProcess(
                sentinel,
                workdir / f"sentinel{i}",
                primary,
                down_after_ms,
                password=password,
                sentinel_password=sentinel_password,
                tls=tls,
            )
            for i in range(sentinels)
        ]

    @property
    def addresses(self) -> str:
        """The ``--redis-sentinel`` value naming every sentinel."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def redis_cli(self, port: int, *args: str) -> str:
        """redis-cli against a node or a sentinel, with its password if it has one."""
        is_sentinel = any(s.port == port for s in self.sentinels)
        password = self.sentinel_password if is_sentinel else self.password
        auth = ["--no-auth-warning", "-a", password] if password else []
        if self.tls is not None:
            auth += ["--tls", "--cacert", str(self.tls.ca)]
        result = subprocess.run(
            [self.cli, "-h", "127.0.0.1", "-p", str(port), *auth, *args],
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
            self._wait_replicas_in_sync()
            for sentinel in self.sentinels:
                sentinel.start()
            self._wait(lambda: self._sentinels_agree(self.nodes[0].port), "sentinels ready")
        except BaseException:
            self.stop()
            raise

    def node(self, port: int) -> RedisProcess:
        [node] = [n for n in self.nodes if n.port == port]
        return node

    def primary(self) -> int:
        """The port the first live sentinel names as primary."""
        for sentinel in self.sentinels:
            if sentinel.process is None:
                continue
            with_port = self.redis_cli(
                sentinel.port, "SENTINEL", "get-master-addr-by-name", MASTER_NAME
            ).split()
            return int(with_port[1])
        raise RuntimeError("no sentinel running")

    def kill_primary(self) -> int:
        """SIGKILLs the primary; returns its port."""
        port = self.primary()
        self.node(port).kill()
        return port

    def wait_failover(self, killed: int) -> int:
        """Until every sentinel names a new, live primary that says role:master and has its
        other live replicas attached; returns its port."""
        self._wait(lambda: self._sentinels_agree(None, not_port=killed), "failover")
        return self.primary()

    def restart_as_replica(self, port: int) -> None:
        """Starts a killed node again as a replica of the current primary, in sync."""
        node = self.node(port)
        node.extra_args = _without_replicaof(node.extra_args)
        node.extra_args += ["--replicaof", "127.0.0.1", str(self.primary())]
        node.start()
        self._wait_replicas_in_sync()
        self._wait(self._sentinels_see_replicas, "sentinels see the replicas")

    def _wait_replicas_in_sync(self) -> None:
        def in_sync() -> bool:
            live = [n for n in self.nodes if n.process is not None]
            masters = [n for n in live if self._role(n.port) == "master"]
            if len(masters) != 1:
                return False
            master = self.redis_cli(masters[0].port, "INFO", "replication")
            return f"connected_slaves:{len(live) - 1}" in master and all(
                "master_link_status:up" in self.redis_cli(n.port, "INFO", "replication")
                for n in live
                if n is not masters[0]
            )

        self._wait(in_sync, "replicas in sync")

    def _role(self, port: int) -> str:
        return self.redis_cli(port, "ROLE").split("\n")[0]

    def _sentinels_agree(self, port: int | None, not_port: int | None = None) -> bool:
        named = set()
        for sentinel in self.sentinels:
            reply = self.redis_cli(
                sentinel.port, "SENTINEL", "get-master-addr-by-name", MASTER_NAME
            ).split()
            if len(reply) != 2:
                return False
            named.add(int(reply[1]))
        if len(named) != 1:
            return False
        (current,) = named
        if (port is not None and current != port) or current == not_port:
            return False
        if self.node(current).process is None or self._role(current) != "master":
            return False
        # Every sentinel has settled on it: no failover in progress, not (subjectively)
        # down, and linked to it. Restarting the old primary earlier can make a sentinel
        # that is still switching over fail over the new primary as well.
        for sentinel in self.sentinels:
            lines = self.redis_cli(sentinel.port, "SENTINEL", "MASTER", MASTER_NAME).split("\n")
            state = dict(zip(lines[::2], lines[1::2], strict=False))
            if state.get("flags") != "master":
                return False
            if int(state.get("last-ok-ping-reply", "99999")) > 500:
                return False
        return True

    def _sentinels_see_replicas(self) -> bool:
        want = len([n for n in self.nodes if n.process is not None]) - 1
        for sentinel in self.sentinels:
            lines = self.redis_cli(sentinel.port, "SENTINEL", "replicas", MASTER_NAME).split("\n")
            healthy = [v for k, v in itertools.pairwise(lines) if k == "flags"]
            if sum(flags == "slave" for flags in healthy) < want:
                return False
        return True

    @staticmethod
    def _wait(check: object, what: str) -> None:
        assert callable(check)
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except subprocess.SubprocessError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"not within {_READY_TIMEOUT}s: {what}")

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for node in self.nodes:
            node.stop()


def _without_replicaof(args: list[str]) -> list[str]:
    """``args`` without any ``--replicaof host port`` triple."""
    out: list[str] = []
    skip = 0
    for arg in args:
        if skip:
            skip -= 1
            continue
        if arg == "--replicaof":
            skip = 2
            continue
        out.append(arg)
    return out
