"""Logs: --log-format text|json render the same per-call records, and neither ever holds a
bearer token or a value from the request (metadata, entries), on success or failure,
expected or not."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime

import grpc
import httpx
import pytest

from tests.conftest import test_settings as settings_for_test
from tests.inprocess_server import StartServer
from tests.redis_process import RedisProcess
from tests.rpc_helpers import entry, struct
from tests.test_auth import SECRET, bearer, token
from threads_server.ops.logs import TEXT_FORMAT, JsonFormatter
from threads_server.service.auth import Authenticator
from threads_server.service.call import Endpoint, Failure
from threads_server.transports.grpc.registration import GRPC
from threads_service_client.pb import threads_pb2 as pb

MARKER = "s3cr3t-marker-7f1e"


def _rendered(records: list[logging.LogRecord]) -> tuple[str, list[dict[str, object]]]:
    text = logging.Formatter(TEXT_FORMAT)
    as_json = JsonFormatter()
    lines = [json.loads(as_json.format(record)) for record in records]
    return "\n".join(text.format(record) for record in records), lines


class _Buggy:
    """A servicer whose handler has a bug: the INTERNAL path, which logs the request."""

    def __init__(self) -> None:
        self.authenticator: Authenticator | None = Authenticator(SECRET.encode(), "HS256")

    async def Create(self, request: pb.CreateRequest, owner: str) -> pb.Thread:  # noqa: N802
        raise RuntimeError("a bug")


async def test_no_token_or_request_value_is_ever_logged(
    start_server: StartServer, redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    started = await start_server(settings_for_test(auth_jwt_secret=SECRET), redis_server.url)
    secret_token = token("alice", note=MARKER)
    auth = bearer(secret_token)
    with_values = pb.CreateRequest(metadata=struct(k=MARKER), history=[entry(text=MARKER)])
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    created = (await started.stub.Create(with_values, metadata=auth)).thread
    missing = str(uuid.uuid4())
    with pytest.raises(grpc.aio.AioRpcError):
        await started.stub.Update(
            pb.UpdateRequest(thread_id=missing, metadata=struct(k=MARKER)), metadata=auth
        )
    with pytest.raises(grpc.aio.AioRpcError):
        await started.stub.Get(
            pb.GetRequest(thread_id=created.thread_id), metadata=bearer(secret_token + "x")
        )
    base = f"http://127.0.0.1:{started.server.http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        headers = {"authorization": f"Bearer {secret_token}", "x-note": MARKER}
        body = {"metadata": {"k": MARKER}}
        assert (await http.post("/threads", json=body, headers=headers)).is_success
        assert (await http.get(f"/threads/{missing}", headers=headers)).status_code == 404
    outcome = await Endpoint(_Buggy(), "Create", GRPC)(with_values, auth, None)
    assert isinstance(outcome, Failure) and outcome.code == grpc.StatusCode.INTERNAL

    records = [r for r in caplog.records if r.name == "threads.rpc"]
    text, lines = _rendered(records)
    assert len(records) == 7, text  # 6 calls, and the bug's own line with its traceback
    for secret in (secret_token, MARKER):
        assert secret not in text
        assert secret not in json.dumps(lines)
    # The bug's line still says what the request held: field names and sizes.
    assert "CreateRequest{metadata(" in text and "history[1]" in text
    assert "RuntimeError: a bug" in text

    # Every call's JSON line: RFC 3339 time, level, and its structured fields.
    calls = [line for line in lines if "latency_ms" in line]
    assert [(c["method"], c["grpc_code"], c.get("http_status")) for c in calls] == [
        ("Create", "OK", None),
        ("Update", "NOT_FOUND", None),
        ("Get", "UNAUTHENTICATED", None),
        ("Create", "OK", 200),
        ("Get", "NOT_FOUND", 404),
        ("Create", "INTERNAL", None),
    ]
    for line in calls:
        assert datetime.fromisoformat(str(line["time"])).utcoffset() is not None
        assert line["logger"] == "threads.rpc"
        assert line["level"] == ("DEBUG" if line["grpc_code"] == "OK" else "INFO")  # OK: DEBUG
        assert isinstance(line["latency_ms"], float)
        assert "trace_id" not in line  # tracing is off in this process
    assert calls[1]["thread_id"] == missing and calls[1]["reason"] == "THREAD_NOT_FOUND"
    assert calls[2]["reason"] == "TOKEN_INVALID"
    assert calls[4]["route"] == "GET /threads/{thread_id}"
    assert calls[4]["transport"] == "http"
    assert "rpc=Update code=NOT_FOUND" in text
