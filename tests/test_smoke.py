from client.pb import threads_pb2 as pb
from client.pb import threads_pb2_grpc as pb_grpc


async def test_create_and_get(stub: pb_grpc.ThreadServiceStub) -> None:
    created = (await stub.Create(pb.CreateRequest())).thread
    got = (await stub.Get(pb.GetRequest(thread_id=created.thread_id))).thread
    assert got == created
