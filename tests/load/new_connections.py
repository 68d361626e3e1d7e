"""HTTP callers that open a connection per request and close it themselves, as an httpx
pool does with every connection past its keep-alive limit (LangGraph's SDK past 20 calls
in flight): the request asks for nothing special, the client reads the response and closes.
hey's ``-disable-keepalive`` instead sends ``Connection: close`` and the server closes.

    python -m tests.load.new_connections URL SECONDS CALLERS [BODY]

POSTs BODY (default ``{}``) to URL from CALLERS callers for SECONDS, then prints the count
of each status as JSON (``{"200": 12345}``). For ``make bench-fast``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

import uvloop


async def _caller(url: str, body: bytes, deadline: float, counts: dict[str, int]) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    while time.monotonic() < deadline:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = next(
                int(line.split(":", 1)[1])
                for line in lines
                if line.lower().startswith("content-length:")
            )
            await reader.readexactly(length)
            status = lines[0].split(" ")[1]
            counts[status] = counts.get(status, 0) + 1
        finally:
            writer.close()


async def run(url: str, seconds: float, callers: int, body: bytes) -> dict[str, int]:
    counts: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(_caller(url, body, deadline, counts) for _ in range(callers)))
    return counts


def main() -> None:
    url, seconds, callers = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    body = sys.argv[4].encode() if len(sys.argv) > 4 else b"{}"
    print(json.dumps(uvloop.run(run(url, seconds, callers, body))))


if __name__ == "__main__":
    main()
