"""The RPC layer: status mapping of store failures and one log line per RPC."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import grpc
import pytest
import redis.exceptions

from client.pb import threads_pb2 as pb
from server.errors import DeadlineExceeded, NotFound, ResourceExhausted, Unavailable
from server.rpc import to_threads_error

if TYPE_CHECKING:
    from client.pb.threads_pb2_grpc import ThreadServiceAsyncStub as Stub


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (redis.exceptions.ConnectionError("refused"), Unavailable),
        (redis.exceptions.TimeoutError("slow"), Unavailable),
        (redis.exceptions.BusyLoadingError("loading"), Unavailable),
        (redis.exceptions.ReadOnlyError("replica"), Unavailable),
        (TimeoutError(), DeadlineExceeded),
        (redis.exceptions.ResponseError("OOM command not allowed"), ResourceExhausted),
    ],
)
def test_store_failures_map_to_retryable_statuses(raised: Exception, expected: type) -> None:
    error = to_threads_error(raised)
    assert isinstance(error, expected)
    assert error is not None
    assert error.message


def test_domain_errors_pass_through_and_bugs_become_internal() -> None:
    not_found = NotFound("gone", reason="THREAD_NOT_FOUND")
    assert to_threads_error(not_found) is not_found
    assert to_threads_error(KeyError("bug")) is None
    assert to_threads_error(redis.exceptions.ResponseError("ERR syntax")) is None


async def test_one_log_line_per_rpc_with_method_code_and_latency(
    stub: Stub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="threads.rpc")
    created = (await stub.Create(pb.CreateRequest())).thread
    with pytest.raises(grpc.RpcError):
        await stub.Get(pb.GetRequest(thread_id=str(uuid.uuid4())))
    await stub.Get(pb.GetRequest(thread_id=created.thread_id))
    lines = [r.getMessage() for r in caplog.records if r.name == "threads.rpc"]
    assert len(lines) == 3
    assert lines[0].startswith("rpc=Create code=OK ms=")
    assert lines[1].startswith("rpc=Get code=NOT_FOUND ms=")
    assert "reason=THREAD_NOT_FOUND" in lines[1]
    assert lines[2].startswith("rpc=Get code=OK ms=")
