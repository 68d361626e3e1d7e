"""Settings.load: precedence (flag > environment variable > default) and validation.

Pure unit tests: ``Settings.load`` takes argv and an environment mapping, so nothing here
touches the process environment except the one test that checks ``os.environ`` is the
default source.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from threads_server.ops.config import Settings, env_name

# One row per setting: (field, a raw value, what it parses to, another raw value, its parse).
# Two distinct values per setting, so precedence tests can tell which source won.
_CASES: list[tuple[str, str, Any, str, Any]] = [
    ("listen", "127.0.0.1:7001", "127.0.0.1:7001", "0.0.0.0:7002", "0.0.0.0:7002"),
    ("http_listen", "127.0.0.1:8081", "127.0.0.1:8081", "0.0.0.0:8082", "0.0.0.0:8082"),
    ("redis_url", "redis://h1:6379/0", "redis://h1:6379/0", "unix:///tmp/r.sock", "unix:///tmp/r.sock"),
    ("redis_cluster", "1", True, "false", False),
    ("redis_sentinel", "s1:26379", (("s1", 26379),), "a:1, [::1]:3", (("a", 1), ("::1", 3))),
    ("redis_sentinel_master", "mymaster", "mymaster", "threads", "threads"),
    ("redis_sentinel_password", "sp1", "sp1", "sp2", "sp2"),
    ("redis_username", "threads", "threads", "svc", "svc"),
    ("redis_password", "pw1", "pw1", "pw2", "pw2"),
    ("redis_tls", "1", True, "0", False),
    ("redis_tls_ca_file", "/tls/r.crt", Path("/tls/r.crt"), "r2.crt", Path("r2.crt")),
    ("min_replica_acks", "1", 1, "2", 2),
    ("replica_ack_timeout_ms", "250", 250, "5000", 5000),
    ("data_dir", "/srv/a", Path("/srv/a"), "rel/b", Path("rel/b")),
    ("appendfsync", "always", "always", "no", "no"),
    ("embedded_server", "/opt/valkey-server", "/opt/valkey-server", "redis-server", "redis-server"),
    ("grace_seconds", "2.5", 2.5, "30", 30.0),
    ("redis_timeout_seconds", "0.25", 0.25, "7", 7.0),
    ("redis_pipelining", "off", False, "true", True),
    ("health_interval_seconds", "0.1", 0.1, "3", 3.0),
    ("metrics", "off", False, "1", True),
    ("max_message_bytes", "65536", 65536, "1048576", 1048576),
    ("max_entries_per_request", "5", 5, "20000", 20000),
    ("max_entry_bytes", "1000", 1000, "2048", 2048),
    ("max_history_length", "10", 10, "5000000", 5000000),
    ("max_metadata_bytes", "100", 100, "1000000", 1000000),
    ("watch_progress_seconds", "2.5", 2.5, "30", 30.0),
    ("max_watchers", "100", 100, "20000", 20000),
    ("search_index", "0", False, "true", True),
    ("default_ttl_seconds", "60", 60, "86400", 86400),
    ("auth_jwt_secret", "s" * 32, "s" * 32, "t" * 40, "t" * 40),
    ("auth_jwt_public_key_file", "/etc/a.pem", Path("/etc/a.pem"), "b.pem", Path("b.pem")),
    ("auth_jwt_audience", "threads", "threads", "other", "other"),
    ("auth_jwt_issuer", "https://idp", "https://idp", "issuer-2", "issuer-2"),
    ("tls_cert_file", "/tls/a.crt", Path("/tls/a.crt"), "b.crt", Path("b.crt")),
    ("tls_key_file", "/tls/a.key", Path("/tls/a.key"), "b.key", Path("b.key")),
    ("tls_client_ca_file", "/tls/ca.crt", Path("/tls/ca.crt"), "ca2.crt", Path("ca2.crt")),
    ("workers", "1", 1, "4", 4),
    ("event_loop", "asyncio", "asyncio", "uvloop", "uvloop"),
    ("log_level", "debug", "DEBUG", "Warning", "WARNING"),
    ("log_format", "json", "json", "text", "text"),
]  # fmt: skip

_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
# Settings that only make sense with others (Settings.problems): given with each case.
_SENTINEL = {"THREADS_REDIS_SENTINEL": "s:26379", "THREADS_REDIS_SENTINEL_MASTER": "m"}
_COMPANIONS: dict[str, dict[str, str]] = {
    "redis_sentinel": {"THREADS_REDIS_SENTINEL_MASTER": "m"},
    "redis_sentinel_master": {"THREADS_REDIS_SENTINEL": "s:26379"},
    "redis_sentinel_password": _SENTINEL,
    "redis_username": _SENTINEL,
    "redis_password": _SENTINEL,
    "redis_tls": _SENTINEL,
    "redis_tls_ca_file": _SENTINEL | {"THREADS_REDIS_TLS": "1"},
    "min_replica_acks": {"THREADS_REDIS_URL": "redis://r:6379/0"},
    "tls_cert_file": {"THREADS_TLS_KEY_FILE": "/tls/k.key"},
    "tls_key_file": {"THREADS_TLS_CERT_FILE": "/tls/c.crt"},
    "tls_client_ca_file": {
        "THREADS_TLS_CERT_FILE": "/tls/c.crt",
        "THREADS_TLS_KEY_FILE": "/tls/k.key",
    },
}


def _with_companions(name: str, environ: dict[str, str]) -> dict[str, str]:
    return _COMPANIONS.get(name, {}) | environ


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _env(name: str) -> str:
    return env_name(name)


def test_cases_cover_every_setting() -> None:
    """A new setting must get a row above, so its flag and variable are tested."""
    assert {case[0] for case in _CASES} == set(_FIELDS)


def test_every_setting_has_its_own_threads_variable() -> None:
    envs = [_env(name) for name in _FIELDS]
    assert len(set(envs)) == len(envs)
    for name in _FIELDS:
        assert _env(name) == "THREADS_" + name.upper()


def test_defaults_without_flags_or_environment() -> None:
    settings = Settings.load([], {})
    assert settings == Settings()
    assert settings.listen == "127.0.0.1:50051"
    assert settings.redis_url is None
    assert settings.data_dir == Path(".threads-data")
    assert settings.appendfsync == "everysec"
    assert settings.grace_seconds == 10.0
    assert settings.max_message_bytes == 16 * 1024 * 1024


@pytest.mark.parametrize(
    ("name", "raw", "parsed", "_raw2", "_parsed2"), _CASES, ids=[c[0] for c in _CASES]
)
def test_environment_overrides_default(
    name: str, raw: str, parsed: Any, _raw2: str, _parsed2: Any
) -> None:
    settings = Settings.load([], _with_companions(name, {_env(name): raw}))
    assert getattr(settings, name) == parsed
    assert getattr(settings, name) != getattr(Settings(), name)
    # Every other setting keeps its default.
    given = {name} | {f for f in _FIELDS if _env(f) in _COMPANIONS.get(name, {})}
    others = {f: getattr(settings, f) for f in _FIELDS if f not in given}
    assert others == {f: getattr(Settings(), f) for f in _FIELDS if f not in given}


@pytest.mark.parametrize(
    ("name", "raw", "parsed", "_raw2", "_parsed2"), _CASES, ids=[c[0] for c in _CASES]
)
def test_flag_overrides_default(
    name: str, raw: str, parsed: Any, _raw2: str, _parsed2: Any
) -> None:
    settings = Settings.load([_flag(name), raw], _with_companions(name, {}))
    assert getattr(settings, name) == parsed


@pytest.mark.parametrize(
    ("name", "env_raw", "_env_parsed", "flag_raw", "flag_parsed"),
    _CASES,
    ids=[c[0] for c in _CASES],
)
def test_flag_overrides_environment(
    name: str, env_raw: str, _env_parsed: Any, flag_raw: str, flag_parsed: Any
) -> None:
    settings = Settings.load([_flag(name), flag_raw], _with_companions(name, {_env(name): env_raw}))
    assert getattr(settings, name) == flag_parsed


def test_flag_wins_even_over_an_invalid_environment_value() -> None:
    settings = Settings.load(["--grace-seconds", "3"], {"THREADS_GRACE_SECONDS": "not-a-number"})
    assert settings.grace_seconds == 3.0


def test_empty_environment_variable_counts_as_unset() -> None:
    settings = Settings.load([], {"THREADS_REDIS_URL": "", "THREADS_GRACE_SECONDS": ""})
    assert settings.redis_url is None
    assert settings.grace_seconds == 10.0


def test_unrelated_environment_variables_are_ignored() -> None:
    environ = {"LISTEN": "1.2.3.4:1", "REDIS_URL": "redis://x", "THREADS_LISTEN_X": "y"}
    assert Settings.load([], environ) == Settings()


def test_process_environment_is_the_default_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADS_MAX_ENTRIES_PER_REQUEST", "42")
    monkeypatch.setenv("THREADS_LISTEN", "127.0.0.1:9999")
    settings = Settings.load(["--listen", "127.0.0.1:8888"])
    assert settings.max_entries_per_request == 42
    assert settings.listen == "127.0.0.1:8888"


def test_mixed_sources_each_setting_from_its_own_highest_source() -> None:
    settings = Settings.load(
        ["--grace-seconds", "1.5", "--data-dir", "/flag/dir"],
        {
            "THREADS_GRACE_SECONDS": "99",
            "THREADS_REDIS_URL": "redis://env:1/0",
            "THREADS_APPENDFSYNC": "always",
        },
    )
    assert settings.grace_seconds == 1.5
    assert settings.data_dir == Path("/flag/dir")
    assert settings.redis_url == "redis://env:1/0"
    assert settings.appendfsync == "always"
    assert settings.listen == "127.0.0.1:50051"


@pytest.mark.parametrize(
    ("argv", "environ", "names"),
    [
        (["--grace-seconds", "-1"], {}, "--grace-seconds"),
        (["--grace-seconds", "0"], {}, "--grace-seconds"),
        (["--grace-seconds", "soon"], {}, "--grace-seconds"),
        ([], {"THREADS_GRACE_SECONDS": "-2"}, "THREADS_GRACE_SECONDS"),
        ([], {"THREADS_REDIS_TIMEOUT_SECONDS": "0"}, "THREADS_REDIS_TIMEOUT_SECONDS"),
        (["--health-interval-seconds", "-0.5"], {}, "--health-interval-seconds"),
        (["--max-message-bytes", "0"], {}, "--max-message-bytes"),
        ([], {"THREADS_MAX_MESSAGE_BYTES": "1.5"}, "THREADS_MAX_MESSAGE_BYTES"),
        (["--max-entries-per-request", "-3"], {}, "--max-entries-per-request"),
        ([], {"THREADS_MAX_ENTRIES_PER_REQUEST": "many"}, "THREADS_MAX_ENTRIES_PER_REQUEST"),
        (["--appendfsync", "sometimes"], {}, "--appendfsync"),
        (["--log-format", "yaml"], {}, "--log-format"),
        (["--event-loop", "trio"], {}, "--event-loop"),
        ([], {"THREADS_APPENDFSYNC": "bogus"}, "THREADS_APPENDFSYNC"),
    ],
)
def test_invalid_value_exits_2_naming_the_setting(
    argv: list[str], environ: dict[str, str], names: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc_info:
        Settings.load(argv, environ)
    assert exc_info.value.code == 2
    err = capsys.readouterr().err
    assert names in err, err
    raw = argv[1] if argv else next(iter(environ.values()))
    assert repr(raw) in err, err


def test_appendfsync_error_lists_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        Settings.load(["--appendfsync", "fast"], {})
    err = capsys.readouterr().err
    for choice in ("always", "everysec", "no"):
        assert choice in err, err


def test_unknown_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        Settings.load(["--no-such-flag", "x"], {})
    assert exc_info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_flag_without_value_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        Settings.load(["--listen"], {})
    assert exc_info.value.code == 2
    assert "--listen" in capsys.readouterr().err


def test_help_exits_0_and_lists_every_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        Settings.load(["--help"], {})
    assert exc_info.value.code == 0
    out = capsys.readouterr().out
    for name in _FIELDS:
        assert _flag(name) in out
        assert _env(name) in out


@pytest.mark.parametrize(
    ("argv", "environ"), [(["--log-level", "bogus"], {}), ([], {"THREADS_LOG_LEVEL": "loud"})]
)
def test_invalid_log_level_exits_2(
    argv: list[str], environ: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc_info:
        Settings.load(argv, environ)
    assert exc_info.value.code == 2
    assert "LOG" in capsys.readouterr().err.upper()


@pytest.mark.parametrize("flag", ["--grace-seconds", "--health-interval-seconds"])
def test_nan_is_rejected(flag: str) -> None:
    with pytest.raises(SystemExit):
        Settings.load([flag, "nan"], {})


def test_redis_cluster_is_a_bare_flag_or_a_boolean_value() -> None:
    assert Settings.load(["--redis-cluster"], {}).redis_cluster is True
    assert Settings.load(["--redis-cluster", "--listen", "h:1"], {}).redis_cluster is True
    assert (
        Settings.load(["--redis-cluster", "no"], {"THREADS_REDIS_CLUSTER": "1"}).redis_cluster
        is False
    )
    assert Settings.load([], {"THREADS_REDIS_CLUSTER": "yes"}).redis_cluster is True
    with pytest.raises(SystemExit):
        Settings.load([], {"THREADS_REDIS_CLUSTER": "maybe"})


def test_workers_default_to_the_cpus_this_process_may_use() -> None:
    assert Settings.load([], {}).workers == len(os.sched_getaffinity(0))
    with pytest.raises(SystemExit):
        Settings.load(["--workers", "0"], {})


@pytest.mark.parametrize(
    ("argv", "environ", "names"),
    [
        (["--default-ttl-seconds", "-1"], {}, "--default-ttl-seconds"),
        ([], {"THREADS_MAX_HISTORY_LENGTH": "0"}, "THREADS_MAX_HISTORY_LENGTH"),
        (["--max-entry-bytes", "1k"], {}, "--max-entry-bytes"),
        ([], {"THREADS_MAX_METADATA_BYTES": "-5"}, "THREADS_MAX_METADATA_BYTES"),
    ],
)
def test_invalid_limit_exits_2_naming_the_setting(
    argv: list[str], environ: dict[str, str], names: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc_info:
        Settings.load(argv, environ)
    assert exc_info.value.code == 2
    assert names in capsys.readouterr().err


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        (
            {"THREADS_AUTH_JWT_SECRET": "s" * 32, "THREADS_AUTH_JWT_PUBLIC_KEY_FILE": "k.pem"},
            ["--auth-jwt-secret", "--auth-jwt-public-key-file"],
        ),
        ({"THREADS_TLS_CERT_FILE": "c.crt"}, ["--tls-cert-file", "--tls-key-file"]),
        ({"THREADS_TLS_KEY_FILE": "k.key"}, ["--tls-cert-file", "--tls-key-file"]),
        ({"THREADS_TLS_CLIENT_CA_FILE": "ca.crt"}, ["--tls-client-ca-file", "--tls-cert-file"]),
        (_SENTINEL | {"THREADS_REDIS_URL": "redis://r:1"}, ["--redis-sentinel", "--redis-url"]),
        (
            _SENTINEL | {"THREADS_REDIS_CLUSTER": "1"},
            ["--redis-sentinel", "--redis-cluster"],
        ),
        ({"THREADS_REDIS_SENTINEL": "s:1"}, ["--redis-sentinel", "--redis-sentinel-master"]),
        ({"THREADS_REDIS_SENTINEL_MASTER": "m"}, ["--redis-sentinel-master", "--redis-url"]),
        (
            {"THREADS_REDIS_URL": "redis://r:1", "THREADS_REDIS_PASSWORD": "p"},
            ["--redis-password", "--redis-sentinel", "rediss://user:password@host"],
        ),
        (_SENTINEL | {"THREADS_REDIS_TLS_CA_FILE": "ca.crt"}, ["--redis-tls-ca-file"]),
        ({"THREADS_MIN_REPLICA_ACKS": "1"}, ["--min-replica-acks", "embedded", "--redis-url"]),
    ],
)
def test_settings_that_need_each_other_exit_2_naming_both(
    environ: dict[str, str], names: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc_info:
        Settings.load([], environ)
    assert exc_info.value.code == 2
    err = capsys.readouterr().err
    for name in names:
        assert name in err, err


def test_sentinel_addresses_must_each_be_host_and_port(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for bad in ("s1", "s1:", ":26379", "s1:0", "s1:70000", "s1:26379,", "s1:x"):
        with pytest.raises(SystemExit):
            Settings.load(["--redis-sentinel", bad, "--redis-sentinel-master", "m"], {})
        assert "--redis-sentinel" in capsys.readouterr().err, bad


def test_redis_passwords_stay_out_of_repr() -> None:
    settings = Settings.load([], _SENTINEL | {
        "THREADS_REDIS_PASSWORD": "primary-secret",
        "THREADS_REDIS_SENTINEL_PASSWORD": "sentinel-secret",
    })  # fmt: skip
    assert "primary-secret" not in repr(settings)
    assert "sentinel-secret" not in repr(settings)


def test_the_jwt_secret_stays_out_of_repr_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    secret = "do-not-print-me-0123456789abcdef"
    settings = Settings.load([], {"THREADS_AUTH_JWT_SECRET": secret})
    assert settings.auth_enabled
    assert secret not in repr(settings)
    with pytest.raises(SystemExit):
        Settings.load(["--help"], {"THREADS_AUTH_JWT_SECRET": secret})
    assert secret not in capsys.readouterr().out


@pytest.mark.parametrize("source", ["flag", "env"])
def test_an_empty_http_listen_turns_http_off(source: str) -> None:
    """Empty means "no HTTP port" for --http-listen and THREADS_HTTP_LISTEN alike (for
    other settings an empty variable counts as unset)."""
    if source == "flag":
        settings = Settings.load(["--http-listen", ""], {})
    else:
        settings = Settings.load([], {"THREADS_HTTP_LISTEN": ""})
    assert settings.http_listen == ""
    assert Settings.load([], {"THREADS_LISTEN": ""}).listen == Settings().listen
