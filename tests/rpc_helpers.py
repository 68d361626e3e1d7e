"""Message builders and call checks shared by the tests that talk gRPC."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc import aio
from grpc_status import rpc_status

from threads_service_client.pb import threads_pb2 as pb

if TYPE_CHECKING:
    from threads_service_client.pb.threads_pb2_grpc import ThreadServiceAsyncStub as Stub


def error_reason(error: grpc.RpcError) -> str:
    """The ErrorInfo reason from a failed call's google.rpc.Status details."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, f"no status details on {error}"
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            assert info.domain == "threads.v1"
            return str(info.reason)
    raise AssertionError(f"no ErrorInfo in {status}")


def struct(**fields: Any) -> struct_pb2.Struct:
    value = struct_pb2.Struct()
    value.update(fields)
    return value


def entry(**fields: Any) -> pb.Entry:
    return pb.Entry(data=struct(**fields))


def entries(*items: dict[str, Any]) -> list[pb.Entry]:
    return [entry(**item) for item in items]


async def new_thread(stub: Stub, n: int = 0, **metadata: Any) -> pb.Thread:
    history = entries(*({"i": i} for i in range(n)))
    response = await stub.Create(pb.CreateRequest(metadata=struct(**metadata), history=history))
    return response.thread


async def history(stub: Stub, thread_id: str, page_size: int = 1000) -> list[pb.Entry]:
    result: list[pb.Entry] = []
    token = ""
    while True:
        page = await stub.GetHistory(
            pb.GetHistoryRequest(thread_id=thread_id, page_size=page_size, page_token=token)
        )
        result.extend(page.entries)
        token = page.next_page_token
        if not token:
            return result


async def expect_error(
    call: Awaitable[Any], code: grpc.StatusCode, reason: str | None = None
) -> aio.AioRpcError:
    """Awaits a call that must fail with ``code`` (and ErrorInfo ``reason``, when given)."""
    with pytest.raises(aio.AioRpcError) as raised:
        await call
    error = raised.value
    assert error.code() == code, f"{error.code()} {error.details()}"
    assert error.details(), "every error carries a message"
    if reason is not None:
        assert error_reason(error) == reason
    return error
