"""Server reflection: what ghz and grpcurl rely on to call the service without proto files."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc import aio
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from threads_server.app import ThreadsServer
from threads_server.reflection import MethodResolvingPool

THREAD_METHODS = {
    "Create",
    "Get",
    "Update",
    "Delete",
    "Append",
    "GetHistory",
    "Copy",
    "Search",
    "Count",
    "Watch",
}


async def _reflect(
    channel: aio.Channel, *requests: reflection_pb2.ServerReflectionRequest
) -> list[reflection_pb2.ServerReflectionResponse]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(iter(requests), timeout=10)
    return [response async for response in call]


def _symbol(name: str) -> reflection_pb2.ServerReflectionRequest:
    return reflection_pb2.ServerReflectionRequest(file_containing_symbol=name)


def _files(response: reflection_pb2.ServerReflectionResponse) -> list[str]:
    assert response.WhichOneof("message_response") == "file_descriptor_response", response
    return [
        descriptor_pb2.FileDescriptorProto.FromString(raw).name
        for raw in response.file_descriptor_response.file_descriptor_proto
    ]


async def test_lists_services_and_describes_thread_service(channel: aio.Channel) -> None:
    [listed] = await _reflect(channel, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {service.name for service in listed.list_services_response.service}
    assert {
        "threads.v1.ThreadService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names, names

    [described] = await _reflect(channel, _symbol("threads.v1.ThreadService"))
    assert described.WhichOneof("message_response") == "file_descriptor_response"
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in described.file_descriptor_response.file_descriptor_proto
    ]
    [threads_file] = [f for f in files if f.package == "threads.v1"]
    [service] = threads_file.service
    assert service.name == "ThreadService"
    assert {m.name for m in service.method} == THREAD_METHODS
    assert "AppendRequest" in {m.name for m in threads_file.message_type}


@pytest.mark.parametrize(
    ("symbol", "file"),
    [
        *((f"threads.v1.ThreadService.{m}", "threads/v1/threads.proto") for m in THREAD_METHODS),
        ("grpc.health.v1.Health.Check", "grpc_health/v1/health.proto"),
    ],
)
async def test_fully_qualified_method_names_resolve(
    channel: aio.Channel, symbol: str, file: str
) -> None:
    """The symbol ghz asks for (grpc/grpc#34743); stock grpcio-reflection says NOT_FOUND."""
    [response] = await _reflect(channel, _symbol(symbol))
    files = _files(response)
    assert files[0] == file, files
    assert "google/protobuf/struct.proto" in files or file != "threads/v1/threads.proto"


@pytest.mark.parametrize(
    "symbol", ["no.such.Service", "threads.v1.ThreadService.NoSuchMethod", "threads.v1.Nope.Copy"]
)
async def test_unknown_symbol_is_not_found(channel: aio.Channel, symbol: str) -> None:
    [response] = await _reflect(channel, _symbol(symbol))
    assert response.WhichOneof("message_response") == "error_response"
    assert response.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def _method_via_reflection_client(target: str, method: str) -> tuple[str, str, str]:
    """What a reflection-driven tool does: build a pool from the server, find the method."""
    with grpc.insecure_channel(target) as sync_channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(sync_channel))
        found = pool.FindMethodByName(method)
        return found.full_name, found.input_type.full_name, found.output_type.full_name


async def test_reflection_client_resolves_copy_from_its_method_name(
    threads_server: ThreadsServer,
) -> None:
    # grpcio-reflection's own client, over a real channel; it asks for the method symbol.
    found = await asyncio.to_thread(
        _method_via_reflection_client,
        f"127.0.0.1:{threads_server.port}",
        "threads.v1.ThreadService.Copy",
    )
    assert found == (
        "threads.v1.ThreadService.Copy",
        "threads.v1.CopyRequest",
        "threads.v1.CopyResponse",
    )


def test_pool_delegates_everything_else() -> None:
    pool = MethodResolvingPool()
    assert pool.FindMessageTypeByName("threads.v1.CopyRequest").name == "CopyRequest"
    assert pool.FindFileContainingSymbol("threads.v1.Thread").name == "threads/v1/threads.proto"
    with pytest.raises(KeyError):
        pool.FindFileContainingSymbol("threads.v1.Thread.Copy")
