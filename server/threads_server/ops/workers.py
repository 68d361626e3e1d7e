"""Several server processes on one port: fork N workers, supervise them, drain them all.

A Python process runs its handlers on one core, so ``--workers N`` forks N copies of the
server, each with its own gRPC server and Redis pool, all listening on the same port with
SO_REUSEPORT; the kernel spreads incoming connections across them. The parent forks before
any gRPC or asyncio state exists (gRPC does not survive a fork), never serves itself, and:

* holds the ports (gRPC, and HTTP/JSON unless --http-listen is empty): it checks nobody
  listens there, then keeps a bound (not listening) SO_REUSEPORT socket so no
  non-reuseport process can take it while workers restart;
* forwards SIGTERM/SIGINT to every worker and waits for all of them to drain;
* restarts a worker that dies on its own, and gives up (exit 1) if they keep dying or
  cannot listen.

The embedded Redis, if any, is started once by the parent before the fork.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threads_server.ops.embedded import die_with_parent

log = logging.getLogger("threads.workers")

# A worker's exit code when it cannot start as configured (port taken, TLS files or auth
# keys unusable): restarting it would not help.
EXIT_LISTEN_FAILED = 3
# More deaths than this within RESTART_WINDOW seconds and the supervisor gives up.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0

_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
_WATCHED = {*_STOP_SIGNALS, signal.SIGCHLD}


# prometheus_client's multiprocess mode: where every process writes its metric values.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def metrics_dir() -> Iterator[Path]:
    """A fresh, empty directory for the processes' metric files, named in the environment
    for as long as the server runs, then removed. Enter it before anything imports
    prometheus_client (which reads the variable at import) and before forking, so every
    worker, first or replacement, writes there and ``/metrics`` sums them all."""
    path = Path(tempfile.mkdtemp(prefix="threads-metrics-"))
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


def forget_live_metrics(pid: int) -> None:
    """A worker exited: its files of live gauges (health) go, so that they stop counting;
    its counters' files stay, so that sums never go back. Imports prometheus_client only
    here, in the parent: importing threads_server.ops.metrics would create the parent's own
    values (a health of 0 that never dies)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess  # noqa: PLC0415

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class ListenError(RuntimeError):
    """The gRPC listen address is malformed or taken by another process."""


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` to (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ListenError(f"listen address {listen!r} is not host:port")
    return host.strip("[]"), int(port)


def resolve_listen(listen: str, flag: str) -> tuple[int, int, int, tuple[Any, ...]]:
    """``host:port`` as (family, type, proto, address) for a listening TCP socket."""
    host, port = split_listen(listen)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ListenError(f"cannot resolve {flag} host {host!r}: {exc}") from exc
    return family, kind, proto, address


def reserve_port(listen: str, flag: str = "--listen") -> tuple[socket.socket, str]:
    """Checks the address is free, then holds it with a SO_REUSEPORT socket (the gRPC
    port, and the HTTP one: ``flag`` names the setting in errors).

    Returns the socket (close it to release the port) and the concrete listen address
    (port 0 becomes the port the kernel picked, so every worker binds the same one).
    """
    host = split_listen(listen)[0]
    family, kind, proto, address = resolve_listen(listen, flag)
    # A plain bind first: it fails if anyone, SO_REUSEPORT or not, has the port. With
    # SO_REUSEADDR, as every server sets it: connections of a server that just stopped,
    # left in TIME_WAIT for up to a minute, do not count as the port being in use (a
    # listening socket still does), so a restart is immediate.
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ListenError(
                f"cannot listen on {listen} ({exc.strerror}); is another server using the "
                f"port? Pass another {flag}"
            ) from exc
        port = probe.getsockname()[1]
    holder = socket.socket(family, kind, proto)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        _bind_holder(holder, (address[0], port, *address[2:]))
    except OSError as exc:
        holder.close()
        raise ListenError(f"cannot hold {listen} ({exc.strerror})") from exc
    bracketed = f"[{host}]" if ":" in host else host
    return holder, f"{bracketed}:{port}"


def _bind_holder(holder: socket.socket, address: tuple[Any, ...]) -> None:
    """Binds the holder with SO_REUSEPORT alone, which keeps off every process that does
    not set it, SO_REUSEADDR or not. Nobody listens there (the probe said so), so a
    refusal means connections in TIME_WAIT without SO_REUSEPORT (left by a --workers 1
    server or another program). SO_REUSEADDR binds beside them, at a price: this holder
    then keeps off only processes that set neither option."""
    try:
        holder.bind(address)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(address)


@dataclass
class Supervisor:
    """Runs ``serve(index)`` in ``count`` forked processes until they are told to stop.

    ``serve`` runs in the child and returns its exit code; it must not return before its
    server has drained.
    """

    count: int
    serve: Callable[[int], int]
    # Run in each worker right after the fork: drops what only the parent should hold.
    in_child: Callable[[], None] = lambda: None
    max_restarts: int = MAX_RESTARTS
    restart_window: float = RESTART_WINDOW
    _workers: dict[int, int] = field(default_factory=dict)  # pid -> worker index
    _deaths: list[float] = field(default_factory=list)
    _stopping: bool = False
    _failed: bool = False

    def run(self) -> int:
        """Forks the workers and supervises them; returns the parent's exit code."""
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)
        try:
            for index in range(self.count):
                self._fork(index)
            log.info("supervising %d workers: %s", self.count, sorted(self._workers))
            while self._workers:
                received = signal.sigtimedwait(_WATCHED, 1.0)
                if received is not None and received.si_signo in _STOP_SIGNALS:
                    name = signal.Signals(received.si_signo).name
                    self._stop(f"{name}: draining {len(self._workers)} workers")
                self._reap()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        return 1 if self._failed else 0

    def _fork(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                for sig in _WATCHED:
                    signal.signal(sig, signal.SIG_DFL)
                # SIGTERM/SIGINT stay blocked (pending) until the worker's event loop has
                # its handlers: a stop during start-up then drains instead of killing it.
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
                die_with_parent()
                self.in_child()
                code = self.serve(index)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self._workers[pid] = index

    def _stop(self, why: str) -> None:
        if not self._stopping:
            log.info("%s", why)
        self._stopping = True
        for pid in self._workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _reap(self) -> None:
        for pid, index in list(self._workers.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == 0:
                continue
            del self._workers[pid]
            forget_live_metrics(pid)
            code = os.waitstatus_to_exitcode(status)
            if self._stopping:
                if code != 0:
                    log.warning("worker %d (pid %d) exited with %d", index, pid, code)
                    self._failed = True
                continue
            self._on_unexpected_exit(index, pid, code)

    def _on_unexpected_exit(self, index: int, pid: int, code: int) -> None:
        log.error("worker %d (pid %d) exited with %d while serving", index, pid, code)
        now = time.monotonic()
        self._deaths = [t for t in self._deaths if now - t < self.restart_window]
        self._deaths.append(now)
        if code == EXIT_LISTEN_FAILED or len(self._deaths) > self.max_restarts:
            self._failed = True
            self._stop("giving up: stopping the other workers")
            return
        self._fork(index)
        log.info("restarted worker %d", index)
