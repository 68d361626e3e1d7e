"""Property-based tests (hypothesis) against the live in-process server and its real Redis.

What is thrown at the server: malformed thread ids, JSON-like and huge/deep
``google.protobuf.Struct`` values (-0.0, the extreme doubles, NaN and infinities anywhere,
unicode keys, many keys, long strings, nesting far beyond protobuf's recursion limit),
garbled, tampered, foreign and
forged page tokens, int32/int64 extremes for ``page_size``, ``expected_length`` and
``history_length``, arbitrary ``request_id`` strings, and raw random or mutated bytes as
the request body of every method. The properties:

1. every answer is OK or one of the documented codes, and every non-OK answer carries a
   message and a ``google.rpc.ErrorInfo`` with domain ``threads.v1`` (never INTERNAL or
   UNKNOWN);
2. the server survives it all (the last test checks health and a Create + Get);
3. a failed call leaves Redis exactly as it was (every key of the hash tags involved, and
   no new ``thr:*`` key anywhere), and after a successful write a thread's meta HASH
   exists iff Get finds it, with Get's ``history_length`` equal to ``LLEN`` of its list;
4. valid random input round-trips: metadata through Create/Update/Copy/Get and entries
   through Append/GetHistory come back byte for byte (so -0.0 included);
5. a NaN or an infinity anywhere in metadata, entry data or a filter is refused
   (NUMBER_NOT_FINITE: no JSON reply could carry it) and writes nothing.

How hypothesis runs here: the tests are ``async def`` functions decorated with ``@given``.
pytest-asyncio (1.x) recognises hypothesis tests and replaces ``inner_test`` with a sync
wrapper that runs each example to completion on the test's event loop, which here is the
session loop that also runs the in-process server and owns the gRPC channel, so every
example uses the real ``stub``/``channel``/``redis`` fixtures with no threads involved.
The fixtures are created once per test, not per example (hence the suppressed
``function_scoped_fixture`` health check): every example therefore works on threads it
creates itself. ``derandomize=True`` makes every run, locally and in CI, try the same
examples; explicit ``@example``\\ s pin the boundary cases that matter most.
"""

from __future__ import annotations

import base64
import math
import string
import time
import uuid
from typing import Any

import grpc
from google.protobuf import duration_pb2, message, struct_pb2
from google.rpc import error_details_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from threads_server.service import page_tokens, validation
from threads_server.store import codec
from threads_server.store.keys import ThreadKeys
from threads_server.store.limits import Limits
from threads_service_client.pb import threads_pb2 as pb

LIMITS = Limits()  # the session server runs with the default limits


def size_of(metadata: struct_pb2.Struct) -> int:
    return codec.metadata_size(codec.metadata_args(metadata))


SERVICE = "/threads.v1.ThreadService/"
CALL_TIMEOUT = 10.0

DOCUMENTED_ERRORS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)

METHODS: dict[str, tuple[type[message.Message], type[message.Message]]] = {
    "Create": (pb.CreateRequest, pb.CreateResponse),
    "Get": (pb.GetRequest, pb.GetResponse),
    "Update": (pb.UpdateRequest, pb.UpdateResponse),
    "Delete": (pb.DeleteRequest, pb.DeleteResponse),
    "Append": (pb.AppendRequest, pb.AppendResponse),
    "GetHistory": (pb.GetHistoryRequest, pb.GetHistoryResponse),
    "Copy": (pb.CopyRequest, pb.CopyResponse),
}
WRITES = frozenset({"Create", "Update", "Delete", "Append", "Copy"})

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# --- calls and checks -------------------------------------------------------------------


class Answer:
    """What one call got: the status code and, when OK, the response bytes."""

    def __init__(self, code: grpc.StatusCode, body: bytes = b"", error: Any = None) -> None:
        self.code = code
        self.body = body
        self.error = error

    @property
    def ok(self) -> bool:
        return self.code == grpc.StatusCode.OK

    def reason(self) -> str:
        """The ErrorInfo reason; asserts the error is well formed (property 1)."""
        assert self.code in DOCUMENTED_ERRORS, f"undocumented {self.code}: {self.error}"
        assert self.error.details(), f"{self.code} without a message"
        status = rpc_status.from_call(self.error)
        assert status is not None, f"{self.code} without status details: {self.error}"
        infos = []
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                infos.append(info)
        assert len(infos) == 1, f"{self.code} without exactly one ErrorInfo: {status}"
        assert infos[0].domain == "threads.v1"
        assert infos[0].reason, "ErrorInfo without a reason"
        return str(infos[0].reason)

    def expect(self, code: grpc.StatusCode, reason: str | None = None) -> None:
        if code == grpc.StatusCode.OK:
            assert self.ok, f"expected OK, got {self.code}: {self.error and self.error.details()}"
            return
        got = self.reason()
        assert self.code == code, f"expected {code}, got {self.code}: {self.error.details()}"
        if reason is not None:
            assert got == reason, f"expected {reason}, got {got}"

    def parse(self, response_type: type[message.Message]) -> Any:
        assert self.ok, f"no response: {self.code}"
        return response_type.FromString(self.body)


async def raw_call(channel: aio.Channel, method: str, body: bytes) -> Answer:
    """Sends ``body`` as is (no client-side serialization) and returns what came back."""
    # No (de)serializers: the bytes go out and come back as they are.
    call = channel.unary_unary(
        SERVICE + method, request_serializer=None, response_deserializer=None
    )
    try:
        response: bytes = await call(body, timeout=CALL_TIMEOUT)
    except aio.AioRpcError as error:
        return Answer(error.code(), error=error)
    return Answer(grpc.StatusCode.OK, response)


async def send(channel: aio.Channel, method: str, request: message.Message) -> Answer:
    return await raw_call(channel, method, request.SerializeToString())


async def check_answer(channel: aio.Channel, method: str, answer: Answer) -> None:
    """Property 1 for any answer; an OK answer must parse as the method's response."""
    if answer.ok:
        METHODS[method][1].FromString(answer.body)
    else:
        answer.reason()


Snapshot = tuple[frozenset[bytes], dict[bytes, Any]]


async def snapshot(redis: Any, *thread_ids: str) -> Snapshot:
    """Every ``thr:*`` key name, plus type and content of every key of the ids (a thread
    and its Copy request records), their entries in their shard's search index, and the
    number of threads the index holds (a new copy would add one)."""
    names = frozenset(await redis.keys("thr:*"))
    contents: dict[bytes, Any] = {}
    for thread_id in thread_ids:
        shard = ThreadKeys(thread_id).shard
        for index in (shard.by_created, shard.by_updated, shard.by_id, shard.expiring):
            contents[f"{index} {thread_id}".encode()] = await redis.zscore(index, thread_id)
        contents[shard.entries.encode()] = await redis.hget(shard.entries, thread_id)
        contents[f"{shard.by_created} size".encode()] = await redis.zcard(shard.by_created)
        base = ThreadKeys(thread_id).meta.removesuffix("meta")
        for key in await redis.keys(base.replace("{", "[{]").replace("}", "[}]") + "*"):
            kind = await redis.type(key)
            if kind == b"hash":
                value: Any = await redis.hgetall(key)
            elif kind == b"list":
                value = await redis.lrange(key, 0, -1)
            else:
                value = await redis.dump(key)
            contents[key] = (kind, value, await redis.ttl(key) > 0)
    return names, contents


async def assert_unchanged(redis: Any, before: Snapshot, thread_ids: list[str]) -> None:
    names, contents = await snapshot(redis, *thread_ids)
    assert names <= before[0], f"a failed call created keys: {sorted(names - before[0])}"
    assert contents == before[1], "a failed call changed the keys of its thread(s)"


async def check_thread_invariants(channel: aio.Channel, redis: Any, thread_id: str) -> None:
    """The meta HASH exists iff Get finds the thread; history_length == LLEN."""
    keys = ThreadKeys(thread_id)
    answer = await send(channel, "Get", pb.GetRequest(thread_id=thread_id))
    exists = await redis.exists(keys.meta)
    length = await redis.llen(keys.history)
    if answer.ok:
        assert exists, f"Get finds {thread_id} but its meta HASH is gone"
        assert answer.parse(pb.GetResponse).thread.history_length == length
    else:
        answer.expect(grpc.StatusCode.NOT_FOUND, "THREAD_NOT_FOUND")
        assert not exists, f"{thread_id} has a meta HASH but Get does not find it"
        assert length == 0, f"{thread_id} is gone but its history list is not"


async def new_thread(channel: aio.Channel, n: int = 0) -> str:
    history = [pb.Entry(data=to_struct({"i": float(i)})) for i in range(n)]
    answer = await send(channel, "Create", pb.CreateRequest(history=history))
    return str(answer.parse(pb.CreateResponse).thread.thread_id)


# --- values -----------------------------------------------------------------------------


def to_value(item: Any) -> struct_pb2.Value:
    value = struct_pb2.Value()
    if item is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif isinstance(item, bool):
        value.bool_value = item
    elif isinstance(item, float):
        value.number_value = item
    elif isinstance(item, str):
        value.string_value = item
    elif isinstance(item, list):
        value.list_value.values.extend(to_value(x) for x in item)
    else:
        value.struct_value.CopyFrom(to_struct(item))
    return value


def to_struct(items: dict[str, Any]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    for key, item in items.items():
        result.fields[key].CopyFrom(to_value(item))
    return result


def wire(struct: struct_pb2.Struct) -> dict[str, bytes]:
    """A Struct by key, each Value as its deterministic bytes: exact, NaN-safe equality."""
    return {k: v.SerializeToString(deterministic=True) for k, v in struct.fields.items()}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field_bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, for requests the Python API cannot build."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def deep_struct(depth: int) -> bytes:
    """The bytes of ``{"k": {"k": ... {"k": 1}}}`` with ``depth`` Structs: past ~33 levels
    the Python API refuses to build it, so it is written by hand."""
    inner = struct_pb2.Value(number_value=1).SerializeToString()
    body = b""
    for _ in range(depth):
        body = field_bytes(1, field_bytes(1, b"k") + field_bytes(2, inner))  # Struct.fields
        inner = field_bytes(5, body)  # Value.struct_value
    return body


keys_text = st.text(max_size=12)
json_scalars = (
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([-0.0, 0.0, 5e-324, -1.7976931348623157e308, 2.0**53 + 2, -(2.0**63)])
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys_text, inner, max_size=4),
    max_leaves=24,
)
metadata_dicts = st.dictionaries(keys_text, json_values, max_size=8)
# A JSON-like value with a NaN or an infinity somewhere inside (never JSON: property 5).
poisoned_values = st.recursive(
    st.sampled_from([math.nan, math.inf, -math.inf]),
    lambda inner: (
        st.builds(lambda v, xs: [*xs, v], inner, st.lists(json_scalars, max_size=2))
        | st.builds(
            lambda v, k, d: {**d, k: v}, inner, keys_text, st.dictionaries(keys_text, json_scalars)
        )
    ),
    max_leaves=6,
)

_uuids = st.uuids().map(str)


@st.composite
def any_case_ids(draw: st.DrawFn) -> str:
    raw = draw(_uuids)
    flips = draw(st.lists(st.booleans(), min_size=len(raw), max_size=len(raw)))
    return "".join(c.upper() if f else c for c, f in zip(raw, flips, strict=True))


@st.composite
def near_uuids(draw: st.DrawFn) -> str:
    """A UUID with one character replaced, deleted or inserted (never another UUID)."""
    raw = draw(any_case_ids())
    at = draw(st.integers(0, len(raw) - 1))
    how = draw(st.sampled_from(["replace", "delete", "insert"]))
    if how == "delete":
        return raw[:at] + raw[at + 1 :]
    other = draw(st.characters(exclude_characters=string.hexdigits + "-"))
    if how == "insert":
        return raw[:at] + other + raw[at:]
    return raw[:at] + other + raw[at + 1 :]


def _not_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) != text.lower() or len(text) != 36
    except ValueError:
        return True


bad_ids = st.one_of(
    st.just(""),
    st.text(max_size=60).filter(_not_uuid),
    near_uuids(),
    _uuids.map(lambda u: "{" + u + "}"),
    _uuids.map(lambda u: "urn:uuid:" + u),
    _uuids.map(lambda u: u.replace("-", "")),
    _uuids.map(lambda u: u + "\n"),
    _uuids.map(lambda u: " " + u),
    # Unicode look-alikes: fullwidth digits/letters and Arabic-Indic digits.
    _uuids.map(lambda u: u.translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789abcdef"})),
    _uuids.map(lambda u: u.translate({ord(c): 0x0660 + int(c) for c in "0123456789"})),
    st.text(min_size=1000, max_size=5000),
)


def make_request(method: str, thread_id: str) -> message.Message:
    """A valid request of each method for ``thread_id`` (so only the id is wrong)."""
    one = [pb.Entry(data=to_struct({"a": 1.0}))]
    requests: dict[str, message.Message] = {
        "Create": pb.CreateRequest(thread_id=thread_id),
        "Get": pb.GetRequest(thread_id=thread_id),
        "Update": pb.UpdateRequest(thread_id=thread_id, metadata=to_struct({"a": 1.0})),
        "Delete": pb.DeleteRequest(thread_id=thread_id),
        "Append": pb.AppendRequest(thread_id=thread_id, entries=one),
        "GetHistory": pb.GetHistoryRequest(thread_id=thread_id),
        "Copy": pb.CopyRequest(thread_id=thread_id),
    }
    return requests[method]


# --- 1. random and mutated bytes --------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, body: bytes) -> bytes:
    """``body`` with a few random edits: flipped bytes, cuts, insertions, junk appended."""
    data = bytearray(body)
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "cut", "insert", "append"]))
        at = draw(st.integers(0, len(data)))
        if how == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif how == "cut":
            del data[at : at + draw(st.integers(1, 8))]
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            data += draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@fuzz_settings(max_examples=150)
@given(method=st.sampled_from(sorted(METHODS)), data=st.data())
@example(method="Create", data=None)
async def test_raw_bytes_get_only_documented_answers_and_failures_write_nothing(
    channel: aio.Channel, redis: Any, method: str, data: st.DataObject | None
) -> None:
    thread_id = await new_thread(channel, 2)
    valid = make_request(method, thread_id).SerializeToString()
    if data is None:  # a request nested far too deep, as raw bytes
        body = pb.CreateRequest().SerializeToString() + field_bytes(2, deep_struct(10_000))
    else:
        body = data.draw(
            st.binary(max_size=300) | mutated(valid) | st.just(b"\xff" * 64), label="body"
        )
    involved = [thread_id]
    try:
        parsed = METHODS[method][0].FromString(body)
        if not _not_uuid(getattr(parsed, "thread_id", "")):
            involved.append(getattr(parsed, "thread_id", "").lower())
    except message.DecodeError:
        parsed = None
    before = await snapshot(redis, *involved)
    answer = await raw_call(channel, method, body)
    await check_answer(channel, method, answer)
    if parsed is None:
        answer.expect(grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")
    if not answer.ok or method not in WRITES:
        await assert_unchanged(redis, before, involved)
    for involved_id in involved:
        await check_thread_invariants(channel, redis, involved_id)


# --- 2. thread ids ----------------------------------------------------------------------


@fuzz_settings(max_examples=120)
@given(method=st.sampled_from(sorted(METHODS)), bad_id=bad_ids)
@example(method="Get", bad_id="")
@example(method="Copy", bad_id="x" * 100_000)
async def test_malformed_ids_are_invalid_thread_id_and_write_nothing(
    channel: aio.Channel, redis: Any, method: str, bad_id: str
) -> None:
    before = await snapshot(redis)
    answer = await send(channel, method, make_request(method, bad_id))
    if method == "Create" and bad_id == "":
        answer.expect(grpc.StatusCode.OK)  # an empty id on Create means "make one up"
        return
    answer.expect(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_THREAD_ID")
    await assert_unchanged(redis, before, [])


@fuzz_settings(max_examples=40)
@given(cases=st.lists(st.booleans(), min_size=36, max_size=36), other_case=st.data())
async def test_ids_in_any_case_name_the_same_thread(
    channel: aio.Channel, redis: Any, cases: list[bool], other_case: st.DataObject
) -> None:
    # A fresh id each time (hypothesis may replay examples); hypothesis picks its case.
    canonical = str(uuid.uuid4())
    thread_id = "".join(c.upper() if up else c for c, up in zip(canonical, cases, strict=True))
    created = (await send(channel, "Create", pb.CreateRequest(thread_id=thread_id))).parse(
        pb.CreateResponse
    )
    assert created.thread.thread_id == canonical
    again = other_case.draw(
        st.sampled_from([thread_id.upper(), thread_id.lower(), thread_id.swapcase()])
    )
    got = (await send(channel, "Get", pb.GetRequest(thread_id=again))).parse(pb.GetResponse)
    assert got.thread.thread_id == canonical
    before = await snapshot(redis, canonical)
    taken = await send(channel, "Create", pb.CreateRequest(thread_id=again))
    taken.expect(grpc.StatusCode.ALREADY_EXISTS, "THREAD_ALREADY_EXISTS")
    await assert_unchanged(redis, before, [canonical])
    await check_thread_invariants(channel, redis, canonical)


# --- 3. numbers -------------------------------------------------------------------------


@fuzz_settings(max_examples=60)
@given(n=st.integers(0, 4), page_size=st.integers(INT32_MIN, INT32_MAX))
@example(n=3, page_size=INT32_MIN)
@example(n=3, page_size=INT32_MAX)
@example(n=3, page_size=0)
@example(n=3, page_size=-1)
async def test_page_size_any_int32(
    channel: aio.Channel, redis: Any, n: int, page_size: int
) -> None:
    thread_id = await new_thread(channel, n)
    request = pb.GetHistoryRequest(thread_id=thread_id, page_size=page_size)
    answer = await send(channel, "GetHistory", request)
    if page_size < 0:
        answer.expect(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_SIZE")
        return
    page = answer.parse(pb.GetHistoryResponse)
    assert [e.index for e in page.entries] == list(range(min(n, page_size or 100)))
    assert bool(page.next_page_token) == (page_size != 0 and page_size < n)


@fuzz_settings(max_examples=60)
@given(n=st.integers(0, 4), expected=st.integers(INT64_MIN, INT64_MAX))
@example(n=2, expected=INT64_MIN)
@example(n=2, expected=INT64_MAX)
@example(n=2, expected=2)
@example(n=2, expected=2**53 + 2)
@example(n=0, expected=-1)
async def test_expected_length_any_int64(
    channel: aio.Channel, redis: Any, n: int, expected: int
) -> None:
    thread_id = await new_thread(channel, n)
    request = pb.AppendRequest(
        thread_id=thread_id,
        entries=[pb.Entry(data=to_struct({"x": 1.0}))],
        expected_length=expected,
    )
    before = await snapshot(redis, thread_id)
    answer = await send(channel, "Append", request)
    if expected == n:
        assert answer.parse(pb.AppendResponse).history_length == n + 1
    else:
        if expected < 0:
            answer.expect(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_EXPECTED_LENGTH")
        else:
            answer.expect(grpc.StatusCode.ABORTED, "HISTORY_LENGTH_MISMATCH")
        await assert_unchanged(redis, before, [thread_id])
    await check_thread_invariants(channel, redis, thread_id)


@fuzz_settings(max_examples=60)
@given(n=st.integers(0, 4), want=st.integers(INT64_MIN, INT64_MAX))
@example(n=2, want=INT64_MIN)
@example(n=2, want=INT64_MAX)
@example(n=2, want=2**53 + 1)
@example(n=2, want=0)
@example(n=2, want=-1)
async def test_copy_history_length_any_int64(
    channel: aio.Channel, redis: Any, n: int, want: int
) -> None:
    thread_id = await new_thread(channel, n)
    before = await snapshot(redis, thread_id)
    answer = await send(channel, "Copy", pb.CopyRequest(thread_id=thread_id, history_length=want))
    if 0 <= want <= n:
        copy = answer.parse(pb.CopyResponse).thread
        assert copy.history_length == want
        assert copy.copied_from == thread_id
        await check_thread_invariants(channel, redis, copy.thread_id)
    else:
        if want < 0:
            answer.expect(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_HISTORY_LENGTH")
        elif want > LIMITS.max_history_length:
            answer.expect(grpc.StatusCode.INVALID_ARGUMENT, "HISTORY_TOO_LONG")
        else:
            answer.expect(grpc.StatusCode.OUT_OF_RANGE, "HISTORY_LENGTH_OUT_OF_RANGE")
        await assert_unchanged(redis, before, [thread_id])
    await check_thread_invariants(channel, redis, thread_id)


@fuzz_settings(max_examples=60)
@given(
    seconds=st.integers(INT64_MIN, INT64_MAX),
    nanos=st.integers(INT32_MIN, INT32_MAX),
    method=st.sampled_from(["Create", "Update", "Copy"]),
)
@example(seconds=0, nanos=1, method="Copy")
@example(seconds=2**62, nanos=0, method="Create")
@example(seconds=-1, nanos=0, method="Update")
@example(seconds=3600, nanos=-5, method="Update")
async def test_ttl_any_duration(
    channel: aio.Channel, redis: Any, seconds: int, nanos: int, method: str
) -> None:
    """Any Duration, valid or not, is either applied whole or INVALID_TTL with no write."""
    thread_id = await new_thread(channel, 1)
    ttl = duration_pb2.Duration(seconds=seconds, nanos=nanos)
    request: message.Message = {
        "Create": pb.CreateRequest(thread_id=str(uuid.uuid4()), ttl=ttl),
        "Update": pb.UpdateRequest(thread_id=thread_id, ttl=ttl),
        "Copy": pb.CopyRequest(thread_id=thread_id, ttl=ttl),
    }[method]
    target = getattr(request, "thread_id")  # noqa: B009 - one name on three message types
    before = await snapshot(redis, thread_id, target)
    answer = await send(channel, method, request)
    valid = 0 <= seconds <= validation.MAX_TTL_SECONDS and 0 <= nanos <= 999_999_999
    if not valid:
        answer.expect(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_TTL")
        await assert_unchanged(redis, before, [thread_id, target])
        return
    response_type = {"Create": pb.CreateResponse, "Update": pb.UpdateResponse}.get(
        method, pb.CopyResponse
    )
    thread = answer.parse(response_type).thread
    keys = ThreadKeys(thread.thread_id)
    stored = await redis.pexpiretime(keys.meta)
    if seconds == 0 and nanos == 0:
        assert not thread.HasField("expire_time")
        assert stored == -1
    elif stored == -2:  # a ttl of a few ms may be over before we look: all keys gone
        assert thread.expire_time.ToMilliseconds() <= time.time() * 1000
        assert await redis.exists(keys.meta, keys.history) == 0
    else:
        assert stored == thread.expire_time.ToMilliseconds()
    if seconds == nanos == 0 or seconds >= 60:  # else it may expire while being checked
        await check_thread_invariants(channel, redis, thread.thread_id)


@fuzz_settings(max_examples=30)
@given(if_exists=st.integers(INT32_MIN, INT32_MAX))
@example(if_exists=3)
@example(if_exists=-1)
async def test_if_exists_any_int32(channel: aio.Channel, redis: Any, if_exists: int) -> None:
    thread_id = str(uuid.uuid4())
    before = await snapshot(redis, thread_id)
    request = pb.CreateRequest(thread_id=thread_id, if_exists=if_exists)  # type: ignore[arg-type]
    answer = await send(channel, "Create", request)
    if if_exists in pb.IfExists.values():
        answer.expect(grpc.StatusCode.OK)
    else:
        answer.expect(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_IF_EXISTS")
        await assert_unchanged(redis, before, [thread_id])
    await check_thread_invariants(channel, redis, thread_id)


# --- 4. page tokens ---------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


@fuzz_settings(max_examples=120)
@given(
    kind=st.sampled_from(["text", "base64", "tampered", "foreign", "forged"]),
    data=st.data(),
)
@example(kind="forged", data=2**63)
@example(kind="forged", data=2**64 - 1)
@example(kind="forged", data=2**53 + 1)
async def test_bad_page_tokens_are_rejected_and_forged_ones_never_break_the_server(
    channel: aio.Channel, redis: Any, kind: str, data: st.DataObject | int
) -> None:
    """Garbled, tampered and foreign tokens are INVALID_PAGE_TOKEN. A token's checksum
    is unkeyed, so anyone can forge one with any 64-bit offset: the server must then
    answer the page at that offset (empty past the end) or INVALID_PAGE_TOKEN."""
    n = 3
    thread_id = await new_thread(channel, n)
    first = await send(
        channel, "GetHistory", pb.GetHistoryRequest(thread_id=thread_id, page_size=1)
    )
    real = first.parse(pb.GetHistoryResponse).next_page_token
    offset: int | None = None
    if isinstance(data, int):
        offset, token = data, page_tokens.encode(thread_id, data)
    elif kind == "text":
        token = data.draw(st.text(min_size=1, max_size=80), label="token")
    elif kind == "base64":
        token = _b64(data.draw(st.binary(min_size=1, max_size=60), label="bytes"))
    elif kind == "tampered":
        raw = bytearray(_unb64(real))
        at = data.draw(st.integers(0, len(raw) - 1), label="at")
        raw[at] ^= data.draw(st.integers(1, 255), label="xor")
        token = _b64(bytes(raw))
    elif kind == "foreign":
        other = await new_thread(channel, n)
        reply = await send(
            channel, "GetHistory", pb.GetHistoryRequest(thread_id=other, page_size=1)
        )
        token = reply.parse(pb.GetHistoryResponse).next_page_token
    else:
        offset = data.draw(st.integers(0, 2**64 - 1), label="offset")
        token = page_tokens.encode(thread_id, offset)
    request = pb.GetHistoryRequest(thread_id=thread_id, page_size=2, page_token=token)
    answer = await send(channel, "GetHistory", request)
    if offset is None:
        answer.expect(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")
        return
    if not answer.ok:
        answer.expect(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")
        return
    page = answer.parse(pb.GetHistoryResponse)
    assert [e.index for e in page.entries] == list(range(offset, min(n, offset + 2)))
    assert bool(page.next_page_token) == (offset + 2 < n)


# --- 5. request ids ---------------------------------------------------------------------

printable_ascii = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E))


@fuzz_settings(max_examples=80)
@given(
    request_id=st.one_of(
        printable_ascii.filter(lambda s: 0 < len(s) <= 140),
        st.text(min_size=1, max_size=140),
        st.text(alphabet="0123456789abcdef- \t\x00\x7f", min_size=1, max_size=40),
    )
)
@example(request_id="a" * 128)
@example(request_id="a" * 129)
@example(request_id="{x}:*?[]")
async def test_copy_request_ids_any_text(channel: aio.Channel, redis: Any, request_id: str) -> None:
    thread_id = await new_thread(channel, 1)
    before = await snapshot(redis, thread_id)
    request = pb.CopyRequest(thread_id=thread_id, request_id=request_id)
    answer = await send(channel, "Copy", request)
    if len(request_id) > 128 or not all("!" <= c <= "~" for c in request_id):
        answer.expect(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST_ID")
        await assert_unchanged(redis, before, [thread_id])
        return
    copy_id = answer.parse(pb.CopyResponse).thread.thread_id
    after_first = await snapshot(redis, thread_id)
    retry = await send(channel, "Copy", request)
    assert retry.parse(pb.CopyResponse).thread.thread_id == copy_id
    await assert_unchanged(redis, after_first, [thread_id])  # the retry wrote nothing
    await check_thread_invariants(channel, redis, copy_id)


@fuzz_settings(max_examples=30)
@given(
    metadata=st.dictionaries(keys_text, json_scalars, min_size=2, max_size=8),
    data=st.data(),
)
async def test_copy_retry_with_the_same_metadata_in_another_order_returns_the_same_copy(
    channel: aio.Channel, redis: Any, metadata: dict[str, Any], data: st.DataObject
) -> None:
    """Protobuf map order on the wire is unspecified (Go, for one, randomizes it), so a
    retry that sends the same metadata map in another order is the same request."""
    thread_id = await new_thread(channel, 1)
    head = pb.CopyRequest(thread_id=thread_id, request_id=str(uuid.uuid4())).SerializeToString()

    def body(keys: list[str]) -> bytes:
        # Concatenated messages merge: one map entry per chunk, in the order given.
        return head + b"".join(
            pb.CopyRequest(metadata=to_struct({k: metadata[k]})).SerializeToString() for k in keys
        )

    order = list(metadata)
    other = data.draw(st.permutations(order).filter(lambda p: p != order), label="retry order")
    first = await raw_call(channel, "Copy", body(order))
    copy = first.parse(pb.CopyResponse).thread
    assert wire(copy.metadata) == wire(to_struct(metadata))
    retry = await raw_call(channel, "Copy", body(other))
    retry.expect(grpc.StatusCode.OK)
    assert retry.parse(pb.CopyResponse).thread.thread_id == copy.thread_id


@fuzz_settings(max_examples=40)
@given(
    base=metadata_dicts,
    key=keys_text,
    poisoned=poisoned_values,
    method=st.sampled_from(
        ["Create", "CreateHistory", "Update", "Append", "Copy", "Search", "Count"]
    ),
)
async def test_non_finite_numbers_anywhere_are_refused_and_write_nothing(
    channel: aio.Channel,
    redis: Any,
    *,
    base: dict[str, Any],
    key: str,
    poisoned: Any,
    method: str,
) -> None:
    """Property 5, over the wire (a Struct's number_value may be NaN or infinite there)."""
    thread_id = await new_thread(channel, 1)
    data = to_struct({**base, key: poisoned})
    request: message.Message = {
        "Create": pb.CreateRequest(metadata=data),
        "CreateHistory": pb.CreateRequest(history=[pb.Entry(data=data)]),
        "Update": pb.UpdateRequest(thread_id=thread_id, metadata=data),
        "Append": pb.AppendRequest(thread_id=thread_id, entries=[pb.Entry(data=data)]),
        "Copy": pb.CopyRequest(thread_id=thread_id, metadata=data),
        "Search": pb.SearchRequest(metadata=data),
        "Count": pb.CountRequest(metadata=data),
    }[method]
    before = await snapshot(redis, thread_id)
    answer = await send(channel, method.removesuffix("History"), request)
    answer.expect(grpc.StatusCode.INVALID_ARGUMENT, "NUMBER_NOT_FINITE")
    await assert_unchanged(redis, before, [thread_id])


# --- 6. round trips ---------------------------------------------------------------------


@fuzz_settings(max_examples=80)
@given(
    created=metadata_dicts,
    updated=metadata_dicts,
    copied=metadata_dicts,
    history=st.lists(metadata_dicts, max_size=4),
)
@example(
    created={
        "max": 1.7976931348623157e308,
        "-0": -0.0,
        "tiny": 5e-324,
        "": None,
        "\x00é😀": "\x00" * 3,
    },
    updated={"max": -1.7976931348623157e308},
    copied={"-0": 0.0},
    history=[{"n": -0.0}, {}],
)
async def test_valid_random_input_round_trips(
    channel: aio.Channel,
    redis: Any,
    *,
    created: dict[str, Any],
    updated: dict[str, Any],
    copied: dict[str, Any],
    history: list[dict[str, Any]],
) -> None:
    metadata = to_struct(created)
    entries = [pb.Entry(data=to_struct(item)) for item in history]
    request = pb.CreateRequest(metadata=metadata, history=entries)
    thread = (await send(channel, "Create", request)).parse(pb.CreateResponse).thread
    thread_id = thread.thread_id
    assert wire(thread.metadata) == wire(metadata)
    got = (await send(channel, "Get", pb.GetRequest(thread_id=thread_id))).parse(pb.GetResponse)
    assert wire(got.thread.metadata) == wire(metadata)
    assert got.thread.history_length == len(entries)
    await check_thread_invariants(channel, redis, thread_id)

    more = pb.Entry(data=to_struct(updated))
    appended = await send(channel, "Append", pb.AppendRequest(thread_id=thread_id, entries=[more]))
    assert appended.parse(pb.AppendResponse).history_length == len(entries) + 1
    page = await send(channel, "GetHistory", pb.GetHistoryRequest(thread_id=thread_id))
    stored = page.parse(pb.GetHistoryResponse).entries
    assert [wire(e.data) for e in stored] == [wire(e.data) for e in [*entries, more]]
    assert [e.index for e in stored] == list(range(len(entries) + 1))

    update = pb.UpdateRequest(thread_id=thread_id, metadata=to_struct(updated))
    merged = wire(metadata) | wire(to_struct(updated))
    after = (await send(channel, "Update", update)).parse(pb.UpdateResponse).thread
    assert wire(after.metadata) == merged
    await check_thread_invariants(channel, redis, thread_id)

    copy_request = pb.CopyRequest(thread_id=thread_id, metadata=to_struct(copied))
    copy = (await send(channel, "Copy", copy_request)).parse(pb.CopyResponse).thread
    assert wire(copy.metadata) == merged | wire(to_struct(copied))
    got = (await send(channel, "Get", pb.GetRequest(thread_id=copy.thread_id))).parse(
        pb.GetResponse
    )
    assert wire(got.thread.metadata) == wire(copy.metadata)
    await check_thread_invariants(channel, redis, copy.thread_id)

    deleted = await send(channel, "Delete", pb.DeleteRequest(thread_id=thread_id))
    deleted.expect(grpc.StatusCode.OK)
    await check_thread_invariants(channel, redis, thread_id)
    await check_thread_invariants(channel, redis, copy.thread_id)


@fuzz_settings(max_examples=8)
@given(
    keys=st.integers(1, 4000),
    string_bytes=st.sampled_from([0, 1, 1 << 10, 1 << 14, 1 << 16, 1 << 20]),
)
@example(keys=2000, string_bytes=1 << 14)  # 58 KiB: within every default limit, round trips
@example(keys=2501, string_bytes=1 << 14)  # the metadata is past 64 KiB, the entry is not
@example(keys=2501, string_bytes=1 << 20)  # the entry is past 1 MiB
async def test_huge_structs_round_trip_or_hit_a_limit(
    channel: aio.Channel, redis: Any, keys: int, string_bytes: int
) -> None:
    """Big Structs either round-trip whole or, past the default limits, are refused with
    the limit's reason and nothing written."""
    metadata = to_struct({f"k{i}": float(i) for i in range(keys)} | {"s": "é" * string_bytes})
    thread_id = str(uuid.uuid4())
    before = await snapshot(redis, thread_id)
    request = pb.CreateRequest(
        thread_id=thread_id, metadata=metadata, history=[pb.Entry(data=metadata)]
    )
    created = await send(channel, "Create", request)
    if metadata.ByteSize() > LIMITS.max_entry_bytes:
        created.expect(grpc.StatusCode.INVALID_ARGUMENT, "ENTRY_TOO_LARGE")
        await assert_unchanged(redis, before, [thread_id])
        return
    if size_of(metadata) > LIMITS.max_metadata_bytes:
        created.expect(grpc.StatusCode.INVALID_ARGUMENT, "METADATA_TOO_LARGE")
        await assert_unchanged(redis, before, [thread_id])
        return
    created.expect(grpc.StatusCode.OK)
    got = (await send(channel, "Get", pb.GetRequest(thread_id=thread_id))).parse(pb.GetResponse)
    assert wire(got.thread.metadata) == wire(metadata)
    update = pb.UpdateRequest(thread_id=thread_id, metadata=to_struct({"s": "", "new": True}))
    after = (await send(channel, "Update", update)).parse(pb.UpdateResponse).thread
    assert wire(after.metadata) == wire(metadata) | wire(to_struct({"s": "", "new": True}))
    before_copy = await snapshot(redis, thread_id)
    copy_request = pb.CopyRequest(thread_id=thread_id, metadata=metadata)
    copied = await send(channel, "Copy", copy_request)
    merged = struct_pb2.Struct()
    merged.MergeFrom(after.metadata)
    merged.MergeFrom(metadata)
    if size_of(merged) > LIMITS.max_metadata_bytes:
        copied.expect(grpc.StatusCode.FAILED_PRECONDITION, "METADATA_TOO_LARGE")
        await assert_unchanged(redis, before_copy, [thread_id])
        return
    copy = copied.parse(pb.CopyResponse).thread
    assert wire(copy.metadata) == wire(merged)
    page = await send(channel, "GetHistory", pb.GetHistoryRequest(thread_id=copy.thread_id))
    assert [wire(e.data) for e in page.parse(pb.GetHistoryResponse).entries] == [wire(metadata)]
    for thread in (thread_id, copy.thread_id):
        await check_thread_invariants(channel, redis, thread)


# --- 7. deep nesting --------------------------------------------------------------------


def _deep_request(where: str, thread_id: str, depth: int) -> tuple[str, bytes]:
    deep = field_bytes(2, deep_struct(depth))  # field 2 holds the Struct/entries in all three
    if where == "Create":
        return "Create", pb.CreateRequest(thread_id=thread_id).SerializeToString() + deep
    if where == "Update":
        return "Update", pb.UpdateRequest(thread_id=thread_id).SerializeToString() + deep
    if where == "Append":  # entries (2) -> Entry.data (1)
        body = field_bytes(2, field_bytes(1, deep_struct(depth)))
        return "Append", pb.AppendRequest(thread_id=thread_id).SerializeToString() + body
    return "Copy", pb.CopyRequest(thread_id=thread_id).SerializeToString() + field_bytes(
        4, deep_struct(depth)
    )


@fuzz_settings(max_examples=60)
@given(where=st.sampled_from(["Create", "Update", "Append", "Copy"]), depth=st.integers(1, 300))
@example(where="Create", depth=100)
@example(where="Update", depth=150)
@example(where="Copy", depth=33)
@example(where="Append", depth=33)
@example(where="Update", depth=21)  # 63 levels: the deepest Structs-only data under the cap
@example(where="Append", depth=22)  # 66 levels: past it, though the request parses
async def test_deep_structs_are_stored_and_returned_or_refused(
    channel: aio.Channel, redis: Any, where: str, depth: int
) -> None:
    """Whatever nesting the server accepts, it can give back to a stock client (whose
    parser has the same recursion limit). ``depth`` Structs, each holding the next, are
    3 * depth levels (validation.too_deep): past MAX_NESTING_DEPTH the server refuses them
    (METADATA_TOO_DEEP, ENTRY_TOO_DEEP) and past the parser's limit they do not even parse
    (MALFORMED_REQUEST); refused, nothing is written."""
    thread_id = str(uuid.uuid4()) if where == "Create" else await new_thread(channel)
    method, body = _deep_request(where, thread_id, depth)
    before = await snapshot(redis, thread_id)
    answer = await raw_call(channel, method, body)
    if 3 * depth > validation.MAX_NESTING_DEPTH:
        try:
            METHODS[method][0].FromString(body)
            reason = "ENTRY_TOO_DEEP" if method == "Append" else "METADATA_TOO_DEEP"
        except message.DecodeError:
            reason = "MALFORMED_REQUEST"
        answer.expect(grpc.StatusCode.INVALID_ARGUMENT, reason)
        await assert_unchanged(redis, before, [thread_id])
        await check_thread_invariants(channel, redis, thread_id)
        return
    response = answer.parse(METHODS[method][1])  # a stock client can read the answer
    target = response.thread.thread_id if method == "Copy" else thread_id
    await check_thread_invariants(channel, redis, target)
    if method == "Append":
        page = await send(channel, "GetHistory", pb.GetHistoryRequest(thread_id=target))
        [stored] = page.parse(pb.GetHistoryResponse).entries
        assert stored.data.SerializeToString() == deep_struct(depth)
    else:
        got = await send(channel, "Get", pb.GetRequest(thread_id=target))
        assert got.parse(pb.GetResponse).thread.metadata.SerializeToString() == deep_struct(depth)


# --- 8. still standing ------------------------------------------------------------------


async def test_server_still_serves_after_the_fuzzing(channel: aio.Channel, redis: Any) -> None:
    """Runs last in this module: health is SERVING and a Create + Get works."""
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "threads.v1.ThreadService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    thread_id = await new_thread(channel, 2)
    got = (await send(channel, "Get", pb.GetRequest(thread_id=thread_id))).parse(pb.GetResponse)
    assert got.thread.history_length == 2
    await check_thread_invariants(channel, redis, thread_id)
