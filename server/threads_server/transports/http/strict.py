"""How strictly the HTTP/JSON front door reads a request, as grpc-gateway and Envoy do.

A request means one thing, to this server and to every proxy, gateway or audit log that
reads it on the way. The rules, each a function here, whatever parses the bytes (the
``json`` module today; a faster parser must keep them, and pass tests/test_http_strict.py):

* **UTF-8 only** (RFC 8259 §8.1): no other encoding, no byte order mark, whatever the
  Content-Type says. ``json.loads`` on bytes would guess UTF-16 or UTF-32.
* **Unicode text only**: no string or key with a lone surrogate (a ``\\ud800`` escape
  without its pair), which no protobuf string can hold.
* **No key twice** in one object: a reader that keeps the first value would see another
  request than the one applied.
* **Integers in integer and enum fields**: ``2.9``, ``NaN``, ``1e400`` are not ``2``; nor
  is ``true`` a ``1``.
* **Non-finite numbers** (``NaN``, ``Infinity``, and numbers past a double's range such as
  ``1e400``) in metadata, entry data and filters are read as the doubles they name, so
  that the handlers refuse them with NUMBER_NOT_FINITE, as over gRPC (``validation``).
* **Framing**: a request with both Content-Length and Transfer-Encoding is refused and its
  connection closed (RFC 9112 §6.1), so no bytes of it can run as a second request.
* **Paths**: ``%2F`` does not separate path segments, as a gRPC-JSON transcoder reads it:
  ``/threads/<id>%2Fentries`` names the thread ``<id>%2Fentries`` (an invalid id), never
  the entries route.

Each refusal is INVALID_ARGUMENT (400) with the reason MALFORMED_REQUEST and, when there
is one, the field in the ErrorInfo's ``field``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import unquote

from google.protobuf import descriptor

from threads_server.errors import InvalidArgument, Reason

FD = descriptor.FieldDescriptor
_INTEGRAL = frozenset(
    {
        FD.TYPE_INT32,
        FD.TYPE_INT64,
        FD.TYPE_UINT32,
        FD.TYPE_UINT64,
        FD.TYPE_SINT32,
        FD.TYPE_SINT64,
        FD.TYPE_FIXED32,
        FD.TYPE_FIXED64,
        FD.TYPE_SFIXED32,
        FD.TYPE_SFIXED64,
        FD.TYPE_ENUM,
    }
)
_ENCODED_SLASH = re.compile(r"%2f", re.IGNORECASE)
# A \\u escape of a surrogate (\\ud800 to \\udfff), or a backslash then such text.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
# The smallest integer a double cannot hold: it rounds to 2**1024, past the largest double.
_PAST_DOUBLES = 2**1024 - 2**970


def malformed(message_text: str, field: str | None = None) -> InvalidArgument:
    extra = {"field": field} if field else {}
    return InvalidArgument(message_text, reason=Reason.MALFORMED_REQUEST, **extra)


# --- the body ------------------------------------------------------------------------------


class _Duplicated(dict[str, Any]):
    """An object in which ``key`` came twice; only ever made on the way to a refusal."""

    key: str


def loads(data: bytes) -> dict[str, Any]:
    """The request body, a JSON object, read by the rules above."""
    if b"\x00" in data:  # never in UTF-8 JSON (control characters are escaped); UTF-16/32's
        raise malformed(
            "the request body must be UTF-8 (RFC 8259 §8.1); it holds NUL bytes, as UTF-16 "
            "and UTF-32 do"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise malformed(
            f"the request body must be UTF-8 (RFC 8259 §8.1): {exc.reason} at byte {exc.start}"
        ) from None
    duplicated = False

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal duplicated
        found = dict(pairs)
        if len(found) == len(pairs):
            return found
        duplicated = True
        marked = _Duplicated(found)
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                marked.key = key
                break
            seen.add(key)
        return marked

    try:
        body = json.loads(text, object_pairs_hook=pairs_hook)
    except (ValueError, RecursionError) as exc:
        raise malformed(f"the request body is not valid JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(text):  # the one way a JSON text holds no Unicode text
        where = next(_lone_surrogates(body, ""), None)
        if where is not None:
            raise malformed(
                f"{where or 'a key'} holds a lone surrogate (an escape from \\ud800 to "
                "\\udfff without its pair): JSON strings must be Unicode text (RFC 8259 "
                "§8.2), and no protobuf string can hold it",
                where or None,
            )
    if duplicated:
        field = next(_duplicates(body, ""))
        raise malformed(f"{field} is given twice; give each key once", field)
    if not isinstance(body, dict):
        raise malformed(f"the request body must be a JSON object, not {type(body).__name__}")
    return body


def _duplicates(value: Any, path: str) -> Iterator[str]:
    """The path of each key given twice (``metadata.a``, ``entries[0].data.x``)."""
    if isinstance(value, dict):
        if isinstance(value, _Duplicated):
            yield path + value.key
        for key, item in value.items():
            yield from _duplicates(item, f"{path}{key}.")
    elif isinstance(value, list):
        prefix = path.removesuffix(".")
        for index, item in enumerate(value):
            yield from _duplicates(item, f"{prefix}[{index}].")


def _lone_surrogates(value: Any, path: str) -> Iterator[str]:
    """The path of each string, or object holding a key, with a lone surrogate (json
    decodes a ``\\ud800`` escape without its pair to one); keys before it printed
    with escapes, so that the path itself is Unicode text."""
    if isinstance(value, str):
        if not _is_text(value):
            yield path.removesuffix(".")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not _is_text(key):
                yield path.removesuffix(".")
            yield from _lone_surrogates(item, f"{path}{_printable(key)}.")
    elif isinstance(value, list):
        prefix = path.removesuffix(".")
        for index, item in enumerate(value):
            yield from _lone_surrogates(item, f"{prefix}[{index}].")


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(key: str) -> str:
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


def check_fields(message_type: descriptor.Descriptor, body: Any, prefix: str = "") -> None:
    """What ``json_format`` lets through and should not: a boolean for a number or enum
    (Python's bool is an int), a fraction or a non-finite number for an integer or enum
    (an enum takes ``2.9`` as 2), and for a message (an entry) anything but an object
    (it reads ``""`` and ``[]`` as an empty one). Whole numbers written ``2.0`` are
    integers, as in protojson; Structs (metadata, data) hold any JSON and are not looked
    into."""
    if not isinstance(body, dict):
        return
    for field in message_type.fields:
        value = body.get(field.name)
        if value is None:
            continue
        items = value if isinstance(value, list) else (value,)
        name = prefix + field.name
        if field.message_type is None:
            _check_scalars(field, items, name)
        elif not field.message_type.full_name.startswith("google.protobuf."):
            for index, item in enumerate(items):
                where = f"{name}[{index}]" if isinstance(value, list) else name
                if item is not None and not isinstance(item, dict):
                    kind = type(item).__name__
                    raise malformed(
                        f"{where} must be a JSON object, not {kind} {item!r:.40}", where
                    )
                check_fields(field.message_type, item, where + ".")


def _check_scalars(field: descriptor.FieldDescriptor, items: Sequence[Any], name: str) -> None:
    for item in items:
        if isinstance(item, bool):
            if field.type != FD.TYPE_BOOL:
                raise malformed(f"{name}: a boolean where a number, string or enum belongs", name)
        elif isinstance(item, float) and field.type in _INTEGRAL and not item.is_integer():
            kind = "an enum's name or number" if field.type == FD.TYPE_ENUM else "an integer"
            raise malformed(f"{name} must be {kind}, not {json.dumps(item)}", name)


def past_doubles_as_infinity(body: dict[str, Any]) -> None:
    """Makes every integer in ``body`` past a double's range ±infinity, as ``1e400``
    already is: a Struct holds numbers as doubles, and ``json_format`` fails on such an
    integer with an OverflowError. As infinity, the handlers refuse it (NUMBER_NOT_FINITE)
    with the field and key it is under, as any non-finite number. In place, iterative."""
    pending: list[Any] = [body]
    while pending:
        node = pending.pop()
        keys = node.keys() if isinstance(node, dict) else range(len(node))
        for key in keys:
            value = node[key]
            if isinstance(value, dict | list):
                pending.append(value)
            elif isinstance(value, int) and abs(value) >= _PAST_DOUBLES:
                node[key] = math.inf if value > 0 else -math.inf


# --- framing and paths -----------------------------------------------------------------------


def framing_problem(headers: Sequence[tuple[bytes, bytes]]) -> InvalidArgument | None:
    """Both Content-Length and Transfer-Encoding: the lengths disagree on where the request
    ends, and what one reader takes for the body another runs as the next request (request
    smuggling). RFC 9112 §6.1 lets a server refuse it, and makes it close the connection."""
    names = {name for name, _ in headers}  # lowercase in ASGI
    if b"content-length" in names and b"transfer-encoding" in names:
        return malformed(
            "a request may not have both Content-Length and Transfer-Encoding (RFC 9112 "
            "§6.1); send one. The connection is closed",
            "Transfer-Encoding",
        )
    return None


def route_path(raw_path: bytes) -> str | None:
    """The path to route by when ``raw_path`` has a ``%2F``: decoded but for those, which
    stay inside their segment, as a transcoder keeps them (grpc-gateway's and Envoy's
    default for a ``{thread_id}`` variable). None when there is none: the server's own
    decoding stands."""
    if b"%2" not in raw_path:
        return None
    text = raw_path.decode("latin-1")
    if not _ENCODED_SLASH.search(text):
        return None
    return "%2F".join(unquote(part) for part in _ENCODED_SLASH.split(text))
