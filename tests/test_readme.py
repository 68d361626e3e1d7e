"""The README's quick-start snippet works as printed (against a real server)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import sys
from pathlib import Path

from threads_server.errors import Reason
from threads_server.ops.config import Settings, env_name, flag_name
from threads_server.server import ThreadsServer

README = Path(__file__).resolve().parent.parent / "README.md"


def quickstart_snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
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


def test_every_error_reason_is_documented() -> None:
    """A caller reads the README's error table to handle reasons: none may be missing."""
    text = README.read_text()
    missing = sorted(reason for reason in Reason if f"`{reason}`" not in text)
    assert not missing, f"reasons missing from README.md: {missing}"


def test_every_reason_the_server_raises_comes_from_the_enum() -> None:
    """A reason written as a bare string would escape the enum and so the README check."""
    server = README.parent / "server" / "threads_server"
    bare = [
        f"{path.name}:{number}"
        for path in server.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"reason=[\"']", line)
    ]
    assert not bare, f"reasons not taken from errors.Reason: {bare}"


def test_every_setting_is_in_the_readme_table_with_its_flag_and_variable() -> None:
    """The settings table is the operator's reference: each row names the flag and the
    environment variable that ``Settings`` derives from the setting's name."""
    rows = [line for line in README.read_text().splitlines() if line.startswith("| `--")]
    for setting in dataclasses.fields(Settings):
        row = f"| `{flag_name(setting.name)}` | `{env_name(setting.name)}` |"
        assert any(line.startswith(row) for line in rows), f"README lacks the row {row}"
