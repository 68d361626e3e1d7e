"""The README works as printed: its quick-start snippet against a real server, and
LangGraph's three documented ways to copy a thread, quoted word for word."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from threads_server.server import ThreadsServer

README = Path(__file__).resolve().parent.parent / "README.md"


def quickstart_snippet(readme: Path = README) -> str:
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.DOTALL)
    (snippet,) = [b for b in blocks if "get_client(" in b and "asyncio.run" in b]
    return str(snippet)


async def test_readme_quickstart_prints_the_copied_history(threads_server: ThreadsServer) -> None:
    snippet = quickstart_snippet()
    assert '"127.0.0.1:50051"' in snippet
    code = snippet.replace('"127.0.0.1:50051"', f'"127.0.0.1:{threads_server.port}"')
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        cwd=README.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    assert stdout.decode().strip() == "['hi', 'hello']"


def test_langgraphs_three_copy_lines_are_quoted_word_for_word() -> None:
    """LangGraph's docs show the copy as these three lines; a LangGraph user finds them here
    unchanged (tests/test_langgraph_sdk.py and make interop run the SDKs themselves)."""
    text = README.read_text()
    start = text.index("## LangGraph's SDKs and curl")
    section = text[start : text.index("\n## ", start + 1)]
    for line in (
        "copied_thread = await client.threads.copy(<THREAD_ID>)",
        "const copiedThread = await client.threads.copy(<THREAD_ID>);",
        "curl --request POST --url <DEPLOYMENT_URL>/threads/<THREAD_ID>/copy "
        "--header 'Content-Type: application/json'",
    ):
        assert line in section
