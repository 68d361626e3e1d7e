"""The tables of the docs that repeat the proto, generated from it (``make docs``).

A new RPC needs no hand edit of the docs: its comment, ``google.api.http`` route and
retry rule are in the proto already, so ``make docs`` rewrites every table between a
``<!-- begin generated: NAME -->`` and ``<!-- end generated: NAME -->`` marker from
``protos/threads/v1/threads.proto``, and ``tests/test_docs.py`` fails (naming ``make
docs``) when a committed table differs from what this module makes of the proto.

Usage: ``python -m tests.docs_tables`` rewrites the tables; ``--check`` only reports stale
ones (exit 1).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path

from google.protobuf import descriptor, descriptor_pb2
from grpc_tools import protoc  # type: ignore[import-untyped]

from threads_server.transports.http.routes import ROUTES, Route
from threads_service_client import _retry

ROOT = Path(__file__).resolve().parent.parent
PROTO = "threads/v1/threads.proto"
FD = descriptor.FieldDescriptor
_MARKERS = re.compile(
    r"(<!-- begin generated: (?P<name>[\w-]+)[^>]*-->\n)"
    r"(?P<body>.*?)"
    r"(<!-- end generated: (?P=name) -->)",
    flags=re.S,
)


def method_comments() -> dict[str, str]:
    """Each RPC's leading comment in the proto, on one line (protoc's source info: the
    Python stubs do not keep comments)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "threads.binpb"
        status = protoc.main(
            [
                "protoc",
                f"-I{ROOT / 'protos'}",
                f"-I{resources.files('grpc_tools') / '_proto'}",
                "--include_source_info",
                f"--descriptor_set_out={out}",
                PROTO,
            ]
        )
        if status != 0:
            raise RuntimeError(f"protoc could not read {PROTO} (exit {status})")
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    (proto,) = files.file
    (service,) = proto.service
    # A method's location path: service (6), its index, method (2), its index.
    comments = {
        tuple(location.path): " ".join(location.leading_comments.split())
        for location in proto.source_code_info.location
    }
    return {
        method.name: comments.get((6, 0, 2, index), "")
        for index, method in enumerate(service.method)
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def rpc_table() -> list[str]:
    """docs/api.md: each RPC, its HTTP route, what its proto comment says it does, and
    whether the Python client retries it on UNAVAILABLE (from the proto as well)."""
    comments = method_comments()
    rows = [
        "| RPC | HTTP | What it does | Client retries `UNAVAILABLE` |",
        "| --- | --- | --- | --- |",
    ]
    for route in ROUTES:
        rule = _retry.retry_rule(route.method).value
        rows.append(
            f"| `{route.name}` | `{route.verb} {route.path}` | "
            f"{_cell(comments[route.name])} | {rule} |"
        )
    return rows


_JSON_SCALARS = {
    FD.TYPE_STRING: ("a bare JSON string", '"…"'),
    FD.TYPE_BOOL: ("a bare JSON boolean", "true"),
    FD.TYPE_DOUBLE: ("a bare JSON number", "N"),
    FD.TYPE_FLOAT: ("a bare JSON number", "N"),
}


def _scalar(field: FD) -> tuple[str, str]:
    if field.enum_type is not None:
        return _JSON_SCALARS[FD.TYPE_STRING]
    # Every integer type, int64 included: the service writes them as JSON numbers.
    return _JSON_SCALARS.get(field.type, ("a bare JSON integer", "N"))


def _request(route: Route) -> str:
    if route.has_body:
        return "JSON body"
    if route.query_fields:
        query = "`?" + "&".join(f"{f.name}=" for f in route.query_fields) + "`"
        return query + ", or `Last-Event-ID`" if route.method.server_streaming else query
    return "(none)"


def _reply(route: Route) -> str:
    if route.empty_reply:
        return "`204`, no body"
    if route.method.server_streaming:
        return "`text/event-stream`: an event per message ([Following a thread](watch.md))"
    output = route.method.output_type
    if route.response_body:
        field = output.fields_by_name[route.response_body]
        if field.message_type is not None:
            noun = field.message_type.name.lower()
            return f"a bare JSON array of {noun}s" if field.is_repeated else f"the {noun}"
        what, _ = _scalar(field)
        return "a bare JSON array" if field.is_repeated else what
    members = []
    for field in output.fields:
        if field.is_repeated:
            value = "[…]"
        elif field.message_type is not None:
            value = "{…}"
        else:
            _, value = _scalar(field)
        members.append(f'"{field.name}": {value}')
    return "`{" + ", ".join(members) + "}`"


def route_table() -> list[str]:
    """docs/http.md: each RPC's route, where its request comes from, and what it answers."""
    rows = ["| RPC | Route | Request | Reply |", "| --- | --- | --- | --- |"]
    rows += [f"| `{r.name}` | `{r.verb} {r.path}` | {_request(r)} | {_reply(r)} |" for r in ROUTES]
    return rows


TABLES: Mapping[str, Mapping[str, Callable[[], list[str]]]] = {
    "docs/api.md": {"rpcs": rpc_table},
    "docs/http.md": {"routes": route_table},
}
"""Page -> marker name -> the function that makes the table."""


def render(page: str, text: str) -> str:
    """``text`` (the page) with each of its generated tables made afresh."""
    wanted = TABLES[page]
    found: set[str] = set()

    def fill(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in wanted:
            raise ValueError(f"{page}: no generator for the table {name!r}")
        found.add(name)
        return match[1] + "\n".join(wanted[name]()) + "\n" + match[4]

    rendered = _MARKERS.sub(fill, text)
    if missing := sorted(set(wanted) - found):
        raise ValueError(f"{page}: no markers for the generated tables {missing}")
    return rendered


def stale() -> list[str]:
    """The pages whose committed tables differ from what the proto makes now."""
    found = []
    for page in TABLES:
        text = (ROOT / page).read_text()
        if render(page, text) != text:
            found.append(page)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="report stale tables, write none")
    args = parser.parse_args(argv)
    if args.check:
        pages = stale()
        for page in pages:
            print(f"{page}: generated tables are stale; run `make docs`", file=sys.stderr)
        return 1 if pages else 0
    for page in TABLES:
        path = ROOT / page
        text = path.read_text()
        rendered = render(page, text)
        if rendered != text:
            path.write_text(rendered)
            print(f"rewrote the generated tables of {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
