"""The proto checks in ``make lint`` are real: ``buf breaking`` against the committed image of
the released API (protos/released/) passes for protos/ as it stands and fails for a copy of
it with a breaking change. An empty or stale image would pass everything; this catches it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROTOS = REPO / "protos"
IMAGE = PROTOS / "released" / "threads.v1.binpb"
PROTO_FILE = Path("threads", "v1", "threads.proto")
# buf comes from the buf-bin wheel in the dev extra (make install), beside this Python.
BUF = Path(sys.executable).with_name("buf")


def buf(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert BUF.exists(), f"{BUF} is missing: run make install (buf-bin is in the dev extra)"
    return subprocess.run(
        [str(BUF), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def breaking(root: Path) -> tuple[int, set[str]]:
    """Exit code of ``buf breaking`` for ``root/protos`` against the image, and the rules hit."""
    result = buf("breaking", "protos", "--against", str(IMAGE), "--error-format", "json", cwd=root)
    rules = {json.loads(line)["type"] for line in result.stdout.splitlines() if line.strip()}
    assert result.returncode == 0 or rules, result.stderr
    return result.returncode, rules


@pytest.fixture
def protos_copy(tmp_path: Path) -> Path:
    """A copy of protos/ (with its buf.yaml) in a temporary root, free to be edited."""
    shutil.copytree(PROTOS, tmp_path / "protos", ignore=shutil.ignore_patterns("released"))
    return tmp_path


def edit(root: Path, old: str, new: str) -> None:
    path = root / "protos" / PROTO_FILE
    text = path.read_text()
    assert text.count(old) == 1, f"expected {old!r} once in {PROTO_FILE}: update this test"
    path.write_text(text.replace(old, new))


def test_the_proto_passes_buf_lint_and_breaking(protos_copy: Path) -> None:
    assert buf("lint", "protos", cwd=protos_copy).returncode == 0
    assert breaking(protos_copy) == (0, set())


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        ("  string owner = 7;", "  string caller = 7;", "FIELD_SAME_NAME"),
        ("  string owner = 7;", "  string owner = 9;", "FIELD_NO_DELETE"),
        ("  int64 history_length = 5;", "  int32 history_length = 5;", "FIELD_SAME_TYPE"),
        ("  IF_EXISTS_DO_NOTHING = 2;", "  IF_EXISTS_DO_NOTHING = 3;", "ENUM_VALUE_NO_DELETE"),
    ],
    ids=["renamed field", "renumbered field", "retyped field", "renumbered enum value"],
)
def test_buf_breaking_refuses_a_breaking_change(
    protos_copy: Path, old: str, new: str, rule: str
) -> None:
    edit(protos_copy, old, new)
    code, rules = breaking(protos_copy)
    assert code != 0
    assert rule in rules


def test_an_added_field_is_not_breaking(protos_copy: Path) -> None:
    """Additions stay possible without refreshing the image (the check is not just "differs")."""
    edit(protos_copy, "  string owner = 7;", "  string owner = 7;\n  string note = 9;")
    assert breaking(protos_copy) == (0, set())
