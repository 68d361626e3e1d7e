"""Fuzzes the HTTP/JSON front door of a live server for a bounded time (``make fuzz-http``).

One real ``threads-server`` process of its own (embedded Valkey in a temporary directory,
or ``--redis-url``; bearer-token auth on, so that every request also goes through it), and
two generators in turn, each for half of ``--duration`` seconds:

1. **schemathesis**, from the served ``/openapi.json``: the examples, coverage and fuzzing
   phases, schema-valid and schema-violating data (``--mode all``);
2. **our own generator** of malformed requests: valid requests of every route with one
   mutation each, of a kind drawn at random (``KINDS``): a value swapped for an awkward
   one (NaN, 1e400, 10**400, fractions, lone surrogates, huge strings), a wrong type, a
   key dropped, added or given twice, deep nesting, odd number literals, bytes flipped or
   cut, other encodings, odd paths (``%2F``, trailing slashes, long or odd ids), query
   strings, headers (deadlines, content types, tokens) and methods, and raw HTTP/1.1 over a
   socket (Content-Length with Transfer-Encoding, bad chunking, bad lengths, smuggling).

The oracle, for every request: no 5xx (a 504 only for a request that set its own deadline),
every error a ``google.rpc.Status`` JSON body (uvicorn's plain-text 400 for bytes that are
not HTTP aside), ``/ok`` still answering after every malformed framing, and at the end no
traceback in the server's log. It prints how many requests of each kind got which status,
writes ``build/fuzz-http/summary.json`` and each finding's request to
``build/fuzz-http/findings.jsonl``, and exits 1 on any finding.

    python -m tests.fuzz_http --duration 600 [--seed N] [--redis-url URL] [--only own]
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt

from tests.server_process import REPO, ServerProcess, environment

OUT = REPO / "build" / "fuzz-http"
MAX_REQUESTS = 5_000_000  # a bound on top of the time one
REQUEST_TIMEOUT = 30.0
PROGRESS_EVERY = 2_000  # requests between progress lines
SCHEMATHESIS_CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance,allow_header_conformance,"
    "unsupported_method,negative_data_rejection,missing_required_header"
)
UVICORN_BAD_REQUEST = b"Invalid HTTP request received."
# schemathesis's failure code for a 5xx (not_a_server_error); its other failures (a
# response off the document, data it calls invalid that the server takes) are printed and
# kept in build/fuzz-http/schemathesis.log, and fail nothing here.
SERVER_ERROR = "ST101"


# --- JSON with what json.dumps cannot write ------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A JSON value written exactly as given: ``1e400``, ``NaN``, ``01``, ``"\\ud800"``."""

    text: str


@dataclass(frozen=True)
class Pairs:
    """An object written from a list of (key, value): a key may come twice."""

    items: list[tuple[str, Any]]


def dump(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Pairs):
        return "{" + ", ".join(f"{json.dumps(k)}: {dump(v)}" for k, v in value.items) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dump(v) for v in value) + "]"
    return json.dumps(value)  # NaN and infinities as NaN, Infinity, -Infinity


# --- the requests ----------------------------------------------------------------------------


@dataclass
class Request:
    kind: str
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    params: list[tuple[str, str]] = field(default_factory=list)
    raw: bytes | None = None  # sent as is over a socket (framing)
    variant: str = ""  # which framing

    def record(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "method": self.method,
            "path": self.path,
            "params": self.params,
            "headers": self.headers,
            "body_b64": base64.b64encode(self.body or b"").decode(),
            "raw_b64": base64.b64encode(self.raw).decode() if self.raw is not None else None,
            "variant": self.variant,
        }


class Pool:
    """Thread ids the generator made (so mutations reach threads that exist), refilled as
    the fuzzing deletes them."""

    def __init__(self, client: httpx.Client, rng: random.Random) -> None:
        self.client, self.rng = client, rng
        self.ids: list[str] = []

    def fill(self, count: int = 16) -> None:
        for i in range(count):
            body = {
                "metadata": {"pool": True, "i": i},
                "history": [{"data": {"n": n}} for n in range(3)],
            }
            response = self.client.post("/threads", json=body)
            if response.status_code == 200:
                self.ids.append(response.json()["thread_id"])

    def pick(self) -> str:
        if not self.ids or self.rng.random() < 0.01:
            self.fill(4)
        return self.rng.choice(self.ids) if self.ids else str(uuid.uuid4())


def _metadata(rng: random.Random) -> dict[str, Any]:
    return {
        "user": rng.choice(["ada", "grace", "zoë", "李"]),
        "n": rng.randint(-5, 5),
        "score": rng.random(),
        "tags": ["a", "b"],
        "nested": {"ok": True, "list": [1, {"x": None}]},
    }


def templates(thread_id: str, other_id: str, rng: random.Random) -> list[tuple[str, str, Any]]:
    """A valid request of every route: (method, path, JSON body or query dict)."""
    meta = _metadata(rng)
    return [
        ("POST", "/threads", {
            "thread_id": str(uuid.uuid4()), "metadata": meta,
            "history": [{"data": {"role": "user", "text": "hi"}}], "if_exists": "do_nothing",
            "ttl": {"ttl": 60, "strategy": "delete"}, "request_id": str(uuid.uuid4()),
            "supersteps": None,
        }),
        ("GET", f"/threads/{thread_id}", {}),
        ("PATCH", f"/threads/{thread_id}", {"metadata": meta, "ttl": "3600s"}),
        ("DELETE", f"/threads/{other_id}", {}),
        ("POST", f"/threads/{thread_id}/entries", {
            "entries": [{"data": {"role": "assistant", "n": 1}}, {"data": {}}],
        }),
        ("GET", f"/threads/{thread_id}/entries", {"page_size": "2"}),
        ("POST", f"/threads/{thread_id}/copy", {
            "history_length": 1, "metadata": {"fork": True}, "request_id": str(uuid.uuid4()),
            "ttl": "600s",
        }),
        ("POST", "/threads/search", {
            "metadata": {"pool": True}, "ids": [thread_id], "limit": 10, "offset": 0,
            "sort_by": "created_at", "sort_order": "asc", "status": None, "values": None,
            "select": None, "extract": None,
        }),
        ("POST", "/threads/count", {"metadata": {"pool": True}, "thread_ids": [thread_id]}),
        ("GET", "/ok", {}),
        ("GET", "/openapi.json", {}),
    ]  # fmt: skip


# Values that have broken JSON front doors: numbers no double holds, fractions for
# integers, strings no protobuf string holds, sizes and depths at and past limits.
AWKWARD: list[Any] = [
    Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e400"), Raw("-1e400"),
    Raw("1" + "0" * 400), Raw("1" + "0" * 5000), Raw("1e-400"), Raw("-0"), Raw("-0.0"),
    2**31, 2**31 - 1, -(2**31) - 1, 2**63, 2**63 - 1, -(2**63) - 1, 2**64, 2**53 + 1,
    0.5, 2.9, -1, -1.5, 1.0, 0, 1e308, -1e308, 5e-324,
    True, False, None, "", " ", "x" * 70_000, "\u0000", "\ud800", "\udfff", "\U0001f600",
    "null", "NaN", "1e400", "-1", "0x10", "SORT_BY_UPDATED_AT", "IF_EXISTS_DO_NOTHING",
    "do_nothing", "state_updated_at", "status", "3600s", "-1s", "1e400s", "99999999999s",
    "2026-12-05T00:00:00Z", str(uuid.uuid4()), str(uuid.uuid4()).upper(), "../..",
    [], {}, [None], [[]], {"": None}, {"a": Raw("NaN")}, [Raw("Infinity")],
    {"ttl": Raw("NaN")}, {"ttl": 10**30}, {"ttl": -1, "strategy": "keep"},
]  # fmt: skip
NUMBER_LITERALS = [
    "NaN", "-NaN", "Infinity", "-Infinity", "+1", "01", "1.", ".5", "1e", "1e+", "0x1F",
    "1e400", "-1e400", "1" + "0" * 400, "1" + "0" * 4400, "9" * 20, "-0", "1E2", "2.0",
    "2.9", "1e-400", "4.9e-324", "1.7976931348623157e308", "1.7976931348623159e308",
]  # fmt: skip


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON tree (dict keys and list indexes)."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _nodes(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _nodes(item, (*path, index))
    return found


def _replace(tree: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, *rest = path
    copy = dict(tree) if isinstance(tree, dict) else list(tree)
    copy[head] = _replace(tree[head], tuple(rest), new)
    return copy


def _nest(depth: int, rng: random.Random) -> Raw:
    """Objects and lists ``depth`` deep, as text (any depth, no recursion)."""
    opening = [rng.choice(('{"k": ', "[")) for _ in range(depth)]
    closing = ["}" if part.startswith("{") else "]" for part in reversed(opening)]
    return Raw("".join(opening) + rng.choice(["1", '"x"', "null", "NaN"]) + "".join(closing))


class Mutator:
    """One malformed request at a time, of a kind drawn from ``KINDS``."""

    def __init__(self, rng: random.Random, pool: Pool, token: str) -> None:
        self.rng, self.pool, self.token = rng, pool, token

    def next(self) -> Request:
        kind = self.rng.choice(KINDS)
        method, path, body = self.rng.choice(
            templates(self.pool.pick(), self.pool.pick(), self.rng)
        )
        request = Request(kind, method, path, headers={"authorization": f"Bearer {self.token}"})
        if method in ("GET", "DELETE"):
            request.params = [(k, str(v)) for k, v in body.items()]
            body = None
        getattr(self, kind)(request, body)
        if body is not None and request.body is None and request.raw is None:
            request.body = dump(body).encode()
        if request.body is not None:
            request.headers.setdefault("content-type", "application/json")
        return request

    # Each kind mutates the request (and may set request.body itself).

    def valid(self, request: Request, body: Any) -> None:
        pass

    def value(self, request: Request, body: Any) -> None:
        if body is not None:
            where = self.rng.choice(_nodes(body))
            request.body = dump(_replace(body, where, self.rng.choice(AWKWARD))).encode()
        else:
            self.query(request, body)

    def type(self, request: Request, body: Any) -> None:
        if body is None:
            return
        key = self.rng.choice(list(body) or ["x"])
        body = dict(body)
        body[key] = self.rng.choice([1, 1.5, "s", True, None, [], {}, [1, "a"], {"a": 1}])
        request.body = dump(body).encode()

    def key(self, request: Request, body: Any) -> None:
        if body is None:
            return
        items = list(body.items())
        choice = self.rng.random()
        if choice < 0.4 and items:  # a key twice, with the same or another value
            key, value = self.rng.choice(items)
            items.insert(
                self.rng.randrange(len(items) + 1), (key, self.rng.choice([value, 1, None]))
            )
        elif choice < 0.7:
            items.append(
                (self.rng.choice(["colour", "", "Thread_ID", "metadata ", "limit", "ids"]), 1)
            )
        elif items:
            items.pop(self.rng.randrange(len(items)))
        request.body = dump(Pairs(items)).encode()

    def nesting(self, request: Request, body: Any) -> None:
        if body is None:
            return
        depth = self.rng.choice([20, 21, 22, 31, 32, 33, 45, 50, 100, 500, 5_000, 50_000])
        where = self.rng.choice(_nodes(body))
        request.body = dump(_replace(body, where, _nest(depth, self.rng))).encode()

    def number(self, request: Request, body: Any) -> None:
        if body is None:
            return
        numbers = [p for p in _nodes(body) if p and not isinstance(_get(body, p), dict | list)]
        where = self.rng.choice(numbers or [()])
        request.body = dump(_replace(body, where, Raw(self.rng.choice(NUMBER_LITERALS)))).encode()

    def text(self, request: Request, body: Any) -> None:
        data = bytearray(dump(body if body is not None else {}).encode())
        for _ in range(self.rng.randint(1, 4)):
            if not data:
                break
            at = self.rng.randrange(len(data))
            op = self.rng.randrange(5)
            if op == 0:
                del data[at:]
            elif op == 1:
                data.insert(at, self.rng.randrange(256))
            elif op == 2:
                data[at] ^= 1 << self.rng.randrange(8)
            elif op == 3:
                del data[at]
            else:
                data[at:at] = data[at : at + self.rng.randint(1, 50)]
        request.body = bytes(data)

    def encoding(self, request: Request, body: Any) -> None:
        text = dump(body if body is not None else {"metadata": {"name": "Zoë"}})
        codec = self.rng.choice(["utf-16", "utf-16-le", "utf-32", "latin-1", "bom", "cesu", "nul"])
        if codec == "bom":
            request.body = b"\xef\xbb\xbf" + text.encode()
        elif codec == "cesu":  # a surrogate pair encoded as two 3-byte sequences
            request.body = text.replace("}", ', "e": "\xed\xa0\xbd\xed\xb8\x80"}', 1).encode(
                "latin-1", "replace"
            )
        elif codec == "nul":
            request.body = text.encode().replace(b" ", b"\x00", 1)
        else:
            request.body = text.encode(codec, errors="replace")
        if self.rng.random() < 0.5:
            request.headers["content-type"] = "application/json; charset=" + self.rng.choice(
                ["utf-8", "utf-16", "latin-1", "bogus"]
            )

    def path(self, request: Request, body: Any) -> None:
        thread_id = self.pool.pick()
        request.path = self.rng.choice([
            f"/threads/{thread_id}%2Fentries", f"/threads/{thread_id}%2fcopy", "/threads%2Fsearch",
            f"/threads/{thread_id}/", "/threads/", "/threads/search/", "/ok/", "//threads",
            f"/threads/{thread_id}//entries", f"/threads/{thread_id.upper()}",
            f"/threads/{thread_id}%00", "/threads/%ff%fe", "/threads/" + "a" * 10_000,
            "/threads/%E2%82%AC", "/threads/..%2F..%2Fok", f"/threads/{thread_id}/entries/",
            "/threads/count", "/threads/search", "/threads/%7Bthread_id%7D", "/metrics/",
            f"/threads/{thread_id};x=1", f"/threads/{thread_id}/copy%3F", "/%2e%2e/ok",
        ])  # fmt: skip

    def query(self, request: Request, body: Any) -> None:
        names = ["page_size", "page_token", "include", "colour", "limit", "thread_id", ""]
        values = [
            "NaN",
            "1e400",
            "-1",
            "2.5",
            "",
            "99999999999",
            "ttl",
            "%ff",
            "\u00e9",
            "x" * 5000,
            "0x10",
        ]
        request.params = [
            (self.rng.choice(names), self.rng.choice(values)) for _ in range(self.rng.randint(1, 3))
        ]

    def header(self, request: Request, body: Any) -> None:
        choice = self.rng.randrange(5)
        if choice == 0:
            request.headers["x-request-timeout"] = self.rng.choice(
                ["0", "-1", "NaN", "inf", "1e400", "abc", "0.000001", "1e-400", "", " 5", "5s"]
            )
        elif choice == 1:
            request.headers["content-type"] = self.rng.choice(
                ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                 "application/json; charset=utf-16", "", "application/json;;;", "*/*"]
            )  # fmt: skip
        elif choice == 2:
            request.headers["authorization"] = self.rng.choice(
                ["Bearer", "Bearer ", "Basic YTpi", "Bearer a.b.c", "Bearer " + "x" * 9000,
                 f"Bearer {self.token}x", "bearer " + self.token, f"Bearer {self.token} extra"]
            )  # fmt: skip
        elif choice == 3:
            request.headers["prefer"] = self.rng.choice(
                ["return=minimal", "return=minimal, x", "", "=" * 50]
            )
        else:
            request.headers["x-" + secrets.token_hex(4)] = "v" * self.rng.choice([1, 1000, 60_000])

    def method(self, request: Request, body: Any) -> None:
        request.method = self.rng.choice(
            ["PUT", "OPTIONS", "HEAD", "TRACE", "PATCH", "POST", "GET", "DELETE", "QUERY"]
        )
        if (
            request.method in ("GET", "HEAD", "DELETE", "OPTIONS", "TRACE")
            and self.rng.random() < 0.5
        ):
            request.body = dump(body if body is not None else {"a": 1}).encode()

    def framing(self, request: Request, body: Any) -> None:
        payload = dump(body if body is not None else {}).encode()
        target = request.path.encode()
        head = b"%s %s HTTP/1.1\r\nHost: fuzz\r\nAuthorization: Bearer %s\r\n" % (
            request.method.encode(),
            target,
            self.token.encode(),
        )
        smuggled = b"POST /threads HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 2\r\n\r\n{}"
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
        length = b"Content-Length: %d\r\n" % len(payload)
        variants = {
            # one request, per either length: the bytes after the chunked body must not run
            "cl+te": head
            + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(chunked + smuggled)
            + chunked
            + smuggled,
            "te+cl": head
            + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
            + chunked
            + smuggled,
            "te-gzip": head + b"Transfer-Encoding: gzip, chunked\r\n\r\n" + chunked,
            "te-twice": head
            + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n"
            + chunked,
            "chunk-size-junk": head
            + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"
            + payload
            + b"\r\n0\r\n\r\n",
            "chunk-size-huge": head + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
            "cl-negative": head + b"Content-Length: -1\r\n\r\n" + payload,
            "cl-list": head + b"Content-Length: 1, 2\r\n\r\n" + payload,
            "cl-twice": head + length + b"Content-Length: 3\r\n\r\n" + payload,
            "cl-huge": head + b"Content-Length: 99999999999999999999999\r\n\r\n" + payload,
            "pipelined": head + length + b"\r\n" + payload + smuggled,
            "space-before-colon": head + b"Content-Length : 2\r\n\r\n{}",
            "obs-fold": head + b"X-Folded: a\r\n b\r\n\r\n",
            "no-colon": head + b"NoColon\r\n\r\n",
            "http-1.0": b"%s %s HTTP/1.0\r\n\r\n" % (request.method.encode(), target),
            "http-2.0": b"%s %s HTTP/2.0\r\nHost: fuzz\r\n\r\n" % (request.method.encode(), target),
            "http-0.9": b"GET /ok\r\n\r\n",
            "tls-hello": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(32),
            "h2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "bare-lf": head.replace(b"\r\n", b"\n") + b"\n",
            "random-bytes": bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 200))),
        }
        request.variant = self.rng.choice(sorted(variants))
        request.raw = variants[request.variant]


# Framings that are one request, however read: never two answers.
ONE_REQUEST = frozenset({"cl+te", "te+cl"})


KINDS = [
    "valid", "value", "value", "value", "type", "key", "key", "nesting", "number", "number",
    "text", "text", "encoding", "path", "query", "header", "method", "framing",
]  # fmt: skip
"""The kinds drawn from, as often as listed."""


def _get(tree: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        tree = tree[step]
    return tree


# --- sending and judging ---------------------------------------------------------------------


@dataclass
class Tally:
    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    statuses: dict[str, collections.Counter[str]] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    findings: list[dict[str, Any]] = field(default_factory=list)

    def count(self, kind: str, outcome: str) -> None:
        self.requests[kind] += 1
        self.statuses[kind][outcome] += 1

    def finding(self, request: Request, why: str, answer: str = "") -> None:
        if len(self.findings) < 1000:
            self.findings.append({"why": why, "answer": answer[:2000], **request.record()})


def judge(request: Request, response: httpx.Response, tally: Tally) -> None:
    status = response.status_code
    tally.count(request.kind, str(status))
    deadline = "x-request-timeout" in request.headers
    if status >= 500 and not (status == 504 and deadline):
        tally.finding(request, f"a {status}", response.text)
    elif status >= 400 and request.method != "HEAD":
        if response.content.strip() == UVICORN_BAD_REQUEST:
            return  # uvicorn's own: bytes that are no HTTP request
        try:
            error = response.json()
        except ValueError:
            tally.finding(request, f"a {status} without a JSON body", response.text)
            return
        if not (isinstance(error, dict) and {"code", "message", "details"} <= set(error)):
            tally.finding(request, f"a {status} whose body is no google.rpc.Status", response.text)


def send_raw(port: int, request: Request, tally: Tally) -> None:
    """Malformed framing: any answer but a 5xx, or none (the server may wait for bytes
    that never come); then /ok must still answer on a new connection."""
    assert request.raw is not None
    answer = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(request.raw)
            sock.settimeout(0.3)  # answers to these come at once, or never
            while len(answer) < 1_000_000 and (chunk := sock.recv(65536)):
                answer += chunk
    except (TimeoutError, ConnectionResetError, BrokenPipeError):
        pass
    status = answer[9:12].decode("latin-1") if answer.startswith(b"HTTP/1.") else "none"
    tally.count(request.kind, status)
    if status.startswith("5"):
        tally.finding(request, f"a {status} to malformed framing", answer.decode("latin-1"))
    if request.variant in ONE_REQUEST and answer.count(b"HTTP/1.1 ") > 1:
        tally.finding(request, "the bytes after a request ran as another", answer.decode("latin-1"))
    try:
        ok = httpx.get(f"http://127.0.0.1:{port}/ok", timeout=REQUEST_TIMEOUT)
        if ok.status_code != 200:
            tally.finding(request, f"/ok answered {ok.status_code} after it", ok.text)
    except httpx.HTTPError as exc:
        tally.finding(request, f"/ok failed after it: {exc!r}")


def run_own(port: int, token: str, seconds: float, seed: int, tally: Tally) -> None:
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=REQUEST_TIMEOUT) as client:
        client.headers["authorization"] = f"Bearer {token}"
        pool = Pool(client, rng)
        pool.fill()
        mutator = Mutator(rng, pool, token)
        sent = 0
        while time.monotonic() < deadline and sent < MAX_REQUESTS:
            request = mutator.next()
            sent += 1
            if request.raw is not None:
                send_raw(port, request, tally)
            else:
                _send(client, request, tally)
            if sent % PROGRESS_EVERY == 0:
                _progress(sent, deadline, tally)


def _send(client: httpx.Client, request: Request, tally: Tally) -> None:
    try:
        built = client.build_request(
            request.method, request.path, content=request.body, params=tuple(request.params) or None
        )
        for name, value in request.headers.items():
            built.headers[name] = value
        if "authorization" not in request.headers:
            del built.headers["authorization"]
        try:
            response = client.send(built)
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
            # A kept-alive connection the server closed as idle (uvicorn's keep-alive
            # timeout; raw framings wait between requests) just as it was reused: the
            # client's race, not the server's answer. Once more, on a new connection.
            response = client.send(built)
    except (httpx.LocalProtocolError, httpx.InvalidURL, UnicodeEncodeError) as exc:
        tally.count(request.kind, f"unsendable:{type(exc).__name__}")  # httpx refused to send it
        return
    except httpx.HTTPError as exc:
        tally.count(request.kind, f"error:{type(exc).__name__}")
        tally.finding(request, f"no answer: {exc!r}")
        return
    judge(request, response, tally)


def _progress(sent: int, deadline: float, tally: Tally) -> None:
    left = max(0, round(deadline - time.monotonic()))
    print(
        f"  own generator: {sent} requests, {len(tally.findings)} findings, {left}s left",
        flush=True,
    )


# --- schemathesis ----------------------------------------------------------------------------


def run_schemathesis(url: str, token: str, seconds: float, seed: int, out: Path) -> dict[str, Any]:
    report = out / "schemathesis"
    shutil.rmtree(report, ignore_errors=True)
    command = [
        str(Path(sys.executable).parent / "schemathesis"), "run", f"{url}/openapi.json",
        "--mode", "all", "--phases", "examples,coverage,fuzzing",
        "--checks", SCHEMATHESIS_CHECKS, "--max-time", str(max(1, int(seconds))),
        "--continue-on-failure", "--workers", "2", "--seed", str(seed),
        "--request-timeout", str(REQUEST_TIMEOUT), "--no-color",
        "-H", f"Authorization: Bearer {token}",
        "--report", "json,ndjson", "--report-dir", str(report),
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=out, capture_output=True, text=True, timeout=seconds + 600, check=False
    )
    (out / "schemathesis.log").write_text(result.stdout + result.stderr)
    [summary_path] = report.glob("json-*.json")
    summary: dict[str, Any] = json.loads(summary_path.read_text())
    statuses: collections.Counter[str] = collections.Counter()
    modes: collections.Counter[str] = collections.Counter()
    [events] = report.glob("ndjson-*.ndjson")
    for line in events.read_text().splitlines():
        finished = json.loads(line).get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished["recorder"]
        for case_id, interaction in recorder.get("interactions", {}).items():
            response = interaction.get("response") or {}
            statuses[str(response.get("status_code", "none"))] += 1
            case = recorder["cases"].get(case_id, {}).get("value", {})
            modes[case.get("meta", {}).get("generation", {}).get("mode", "?")] += 1
    return {
        "exit_code": result.returncode,
        "test_cases": summary["test_cases"],
        "requests": sum(statuses.values()),
        "statuses": dict(sorted(statuses.items())),
        "data": dict(modes),
        "failures": [
            {k: f[k] for k in ("code", "title", "count", "operations")} for f in summary["failures"]
        ],
        "errors": summary["errors"],
    }


# --- the run ---------------------------------------------------------------------------------


def start_server(work: Path, redis_url: str | None, secret: str) -> ServerProcess:
    args = ["--workers", "1", "--log-level", "WARNING", "--auth-jwt-secret", secret]
    args += ["--redis-url", redis_url] if redis_url else ["--data-dir", str(work / "data")]
    server = ServerProcess(args, work / "server.log", environment(), None)
    server.wait_serving()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds in all (default 600)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--redis-url", default=None, help="default: an embedded Valkey")
    parser.add_argument("--only", choices=["schemathesis", "own"], default=None)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**32)
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="thr-fuzz-", dir="/tmp"))
    secret = secrets.token_hex(32)
    token = jwt.encode({"sub": "fuzz", "exp": int(time.time()) + int(args.duration) + 3600}, secret)
    server = start_server(work, args.redis_url, secret)
    summary: dict[str, Any] = {"seed": seed, "duration_seconds": args.duration}
    tally = Tally()
    share = args.duration if args.only else args.duration / 2
    try:
        if args.only != "own":
            print(
                f"schemathesis for {share:.0f}s against {server.http_url} (seed {seed})", flush=True
            )
            started = time.monotonic()
            summary["schemathesis"] = run_schemathesis(server.http_url, token, share, seed, OUT)
            summary["schemathesis"]["seconds"] = round(time.monotonic() - started)
        if args.only != "schemathesis":
            print(f"own generator for {share:.0f}s (seed {seed})", flush=True)
            started = time.monotonic()
            run_own(server.http_port, token, share, seed, tally)
            summary["own"] = {
                "seconds": round(time.monotonic() - started),
                "requests": sum(tally.requests.values()),
                "by_kind": {
                    k: dict(sorted(tally.statuses[k].items())) for k in sorted(tally.statuses)
                },
                "findings": len(tally.findings),
            }
    finally:
        code = server.stop()
        log = server.log()
        shutil.copy(server.log_path, OUT / "server.log")
        shutil.rmtree(work, ignore_errors=True)
    for marker in ("Traceback", "failed unexpectedly", "Exception in ASGI application"):
        if marker in log:
            tally.findings.append(
                {"why": f"{marker!r} in the server log (build/fuzz-http/server.log)"}
            )
    if code != 0:
        tally.findings.append({"why": f"the server exited with {code}"})
    summary["findings"] = tally.findings[:50]
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    with open(OUT / "findings.jsonl", "w") as findings:
        for finding in tally.findings:
            findings.write(json.dumps(finding) + "\n")
    _print(summary, tally)
    st = summary.get("schemathesis", {})
    schemathesis_5xx = any(status.startswith("5") for status in st.get("statuses", {})) or any(
        failure["code"] == SERVER_ERROR for failure in st.get("failures", [])
    )
    return 1 if tally.findings or schemathesis_5xx or st.get("errors") else 0


def _print(summary: dict[str, Any], tally: Tally) -> None:
    st = summary.get("schemathesis")
    if st:
        print(f"\nschemathesis: {st['requests']} requests in {st['seconds']}s "
              f"({st['test_cases']['generated']} test cases; data {st['data']})")  # fmt: skip
        print(f"  statuses: {st['statuses']}")
        for failure in st["failures"]:
            where = ", ".join(failure["operations"][:4])
            print(f"  {failure['code']} {failure['title']}: {failure['count']} ({where})")
    own = summary.get("own")
    if own:
        print(f"\nown generator: {own['requests']} requests in {own['seconds']}s")
        for kind, statuses in own["by_kind"].items():
            print(f"  {kind:9} {sum(statuses.values()):7}  {statuses}")
    print(f"\nfindings: {len(tally.findings)} (build/fuzz-http/findings.jsonl)")
    for finding in tally.findings[:10]:
        request = f"{finding.get('method', '')} {finding.get('path', '')[:100]}"
        print(f"  {finding['why']}: {finding.get('kind', '')} {request}")


if __name__ == "__main__":
    sys.exit(main())
