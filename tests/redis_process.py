"""A real Redis/Valkey server process on a free loopback port, for the tests.

Never a shared server and never a fake: each instance gets its own port and directory,
and can be stopped, killed and restarted on the same port to test outages.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from threads_server.ops.embedded import answers_ping, find_binary, free_port

BACKENDS = ("valkey", "redis")
# A primary sends a new replica its data at once (Redis 7 waits 5 s for more replicas).
FAST_SYNC = ("--repl-diskless-sync-delay", "0")
__all__ = [
    "BACKENDS",
    "FAST_SYNC",
    "RedisProcess",
    "answers_ping_tls",
    "backend_binary",
    "free_port",
    "process_alive",
    "refuses_unauthenticated",
    "unix_socket_accepts",
]


def backend_binary(backend: str) -> str | None:
    """The server binary for a backend name, or None when this machine lacks it."""
    if backend == "valkey":
        try:
            return find_binary()
        except RuntimeError:
            return None
    if backend == "redis":
        return shutil.which("redis-server")
    raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")


class RedisProcess:
    def __init__(
        self,
        binary: str,
        workdir: Path,
        *,
        appendonly: bool = True,
        extra_args: Sequence[str] = (),
        tls_ca: Path | None = None,
    ) -> None:
        """``tls_ca``: the server listens with TLS only (its ``extra_args`` say how); its
        readiness PING then goes over TLS, trusting this CA."""
        self.binary = binary
        self.tls_ca = tls_ca
        self.workdir = workdir
        self.appendonly = appendonly
        self.extra_args = list(extra_args)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> None:
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.workdir / "server.log"),
            *self.extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.workdir / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.binary} exited with {self.process.returncode}: {log}")
            if self.ping():
                return
            time.sleep(0.02)
        raise RuntimeError(f"{self.binary} not ready on port {self.port} after {timeout}s")

    def ping(self) -> bool:
        """Whether it answers: PONG, or NOAUTH when started with --requirepass."""
        if self.tls_ca is not None:
            return answers_ping_tls(self.port, self.tls_ca)
        return answers_ping(("127.0.0.1", self.port)) or refuses_unauthenticated(self.port)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
            self.process.wait(timeout=30)
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def answers_ping_tls(port: int, ca: Path) -> bool:
    """Whether a TLS-only server on ``port`` (certificate from ``ca``) answers PONG."""
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=1.0) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as s,
        ):
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def refuses_unauthenticated(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"-NOAUTH")
    except OSError:
        return False


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (exited, not yet reaped by init) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: fall back to signal 0, which cannot tell zombies apart
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def unix_socket_accepts(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(str(path))
    except OSError:
        return False
    return True
