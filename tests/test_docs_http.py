"""docs/http.md's curl commands work as printed against a live server (only the port is
changed to the test server's). Its route table is generated from the proto
(tests/test_docs.py checks it is fresh)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path

import httpx
import pytest

from tests.http_helpers import base_url
from threads_server.server import ThreadsServer

HTTP_PAGE = Path(__file__).resolve().parent.parent / "docs" / "http.md"
_DEFAULT = "http://127.0.0.1:8080"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_the_http_pages_curl_commands_run_as_printed(threads_server: ThreadsServer) -> None:
    (block,) = re.findall(r"```sh\n(curl .*?)```", HTTP_PAGE.read_text(), flags=re.S)
    assert _DEFAULT in block
    script = block.replace(_DEFAULT, base_url(threads_server))
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        script,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    # The replies, back to back (curl adds no newline; Delete's 204 adds nothing).
    replies, text, at = [], stdout.decode(), 0
    while at < len(text):
        reply, at = json.JSONDecoder().raw_decode(text, at)
        replies.append(reply)
    created, appended, copied, page, found, count = (json.dumps(r) for r in replies)
    thread_id = json.loads(created)["thread_id"]
    assert json.loads(created)["metadata"] == {"user": "ada"}
    assert json.loads(appended)["history_length"] >= 1
    copy = json.loads(copied)
    assert copy["copied_from"] == thread_id and copy["history_length"] >= 1
    assert json.loads(page)["entries"][0]["data"] == {"role": "user", "text": "hi"}
    # Search answers a bare array and Count a bare integer, as LangGraph's do.
    assert copy["thread_id"] in [t["thread_id"] for t in json.loads(found)]
    assert json.loads(count) == len(json.loads(found)) >= 1
    assert len(replies) == 6  # Delete: 204, no body
    async with httpx.AsyncClient(base_url=base_url(threads_server)) as http:
        assert (await http.get(f"/threads/{thread_id}")).status_code == 404
