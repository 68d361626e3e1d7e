"""The README's HTTP/JSON section: its route table is the proto's, and its curl commands work
as printed against a live server (only the port is changed to the test server's)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil

import httpx
import pytest

from tests.http_helpers import base_url
from tests.test_readme import README
from threads_server.server import ThreadsServer
from threads_server.transports.http.routes import ROUTES

_DEFAULT = "http://127.0.0.1:8080"


def _http_section() -> str:
    text = README.read_text()
    start = text.index("## HTTP/JSON")
    return text[start : text.index("\n## ", start + 1)]


def test_the_route_table_is_the_protos() -> None:
    rows = re.findall(r"^\| `(\w+)` \| `(\w+) (/[^`]*)` \|", _http_section(), flags=re.M)
    assert rows == [(r.name, r.verb, r.path) for r in ROUTES]


def test_langgraphs_three_copy_lines_are_quoted_word_for_word() -> None:
    section = _http_section()
    for line in (
        "copied_thread = await client.threads.copy(<THREAD_ID>)",
        "const copiedThread = await client.threads.copy(<THREAD_ID>);",
        "curl --request POST --url <DEPLOYMENT_URL>/threads/<THREAD_ID>/copy "
        "--header 'Content-Type: application/json'",
    ):
        assert line in section


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_the_readme_curl_commands_run_as_printed(threads_server: ThreadsServer) -> None:
    (block,) = re.findall(r"```sh\n(curl .*?)```", _http_section(), flags=re.S)
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
