"""The manual (README.md and docs/*.md) held to the code: its generated tables are fresh,
every link and anchor resolves, and the tables an operator or caller looks things up in
(errors, settings, metrics) list everything the code has."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge, Histogram

from tests import docs_tables
from threads_server.errors import Reason
from threads_server.ops import metrics
from threads_server.ops.config import Settings, env_name, flag_name
from threads_service_client import _retry

ROOT = docs_tables.ROOT
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
ERRORS_PAGE = DOCS / "api.md"
CONFIGURATION_PAGE = DOCS / "configuration.md"
METRICS_PAGE = DOCS / "observability.md"
CLIENT_PAGE = DOCS / "python-client.md"

_FENCE = re.compile(r"^(```|~~~)")
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")


def prose(text: str) -> list[str]:
    """The page's lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchors(path: Path) -> set[str]:
    """The heading anchors GitHub makes for a page: lower case, punctuation dropped, spaces
    to hyphens, ``-1``, ``-2``... after a repeated one."""
    seen: Counter[str] = Counter()
    found = set()
    for line in prose(path.read_text()):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading is None:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading[1])  # a link: its text
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        found.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return found


def links(path: Path) -> list[str]:
    """The targets of the page's inline links, outside code."""
    return [
        target
        for line in prose(path.read_text())
        for target in _LINK.findall(_CODE_SPAN.sub("", line))
    ]


def test_the_manual_has_its_pages() -> None:
    names = {path.name for path in PAGES}
    assert {"README.md", "api.md", "http.md", "configuration.md", "search.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists():
            broken.append(f"{target}: no file {path.relative_to(ROOT)}")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading #{anchor} in {path.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {broken}"


def test_the_anchor_rules_are_githubs(tmp_path: Path) -> None:
    """Pins ``anchors`` on headings like the pages': a slash, an apostrophe, a repeated
    heading, code, a link, and a comment in a code block that is no heading."""
    page = tmp_path / "page.md"
    page.write_text(
        "# HTTP/JSON\n## LangGraph's SDKs and curl\n## Notes\n## Notes\n"
        "## `--workers` and [cores](x.md)\n```sh\n# not a heading\n```\n"
    )
    assert anchors(page) == {
        "httpjson",
        "langgraphs-sdks-and-curl",
        "notes",
        "notes-1",
        "--workers-and-cores",
    }


@pytest.mark.parametrize("page", sorted(docs_tables.TABLES))
def test_the_generated_tables_are_the_protos(page: str) -> None:
    """A table that repeats the proto is made from it; a proto change without ``make docs``
    fails here rather than leaving the page wrong."""
    text = (ROOT / page).read_text()
    assert docs_tables.render(page, text) == text, (
        f"{page}: its generated tables are stale; run `make docs`"
    )


def _errors_table() -> list[str]:
    text = ERRORS_PAGE.read_text()
    start = text.index("\n## Errors\n")
    section = text[start : text.index("\n## ", start + 1)]
    return [line for line in section.splitlines() if line.startswith("|")]


def test_every_error_reason_is_in_the_errors_table() -> None:
    """A caller reads the errors table to handle reasons: none may be missing, and a row may
    not name a reason the service no longer sends."""
    reasons_column = " ".join(row.split("|")[2] for row in _errors_table()[2:])
    listed = set(re.findall(r"`([A-Z][A-Z_]+)`", reasons_column))
    missing = sorted(set(Reason) - listed)
    assert not missing, f"reasons missing from the errors table of {ERRORS_PAGE.name}: {missing}"
    unknown = sorted(listed - set(Reason))
    assert not unknown, f"{ERRORS_PAGE.name}'s errors table names no-longer reasons: {unknown}"


def test_every_reason_the_server_raises_comes_from_the_enum() -> None:
    """A reason written as a bare string would escape the enum and so the table check."""
    server = ROOT / "server" / "threads_server"
    bare = [
        f"{path.relative_to(server)}:{number}"
        for path in server.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"reason=[\"']", line)
    ]
    assert not bare, f"reasons not taken from errors.Reason: {bare}"


def _default_cell(default: object) -> str | None:
    """How the configuration table writes a default, or None where it says it in words
    (unset, the number of CPUs)."""
    if isinstance(default, bool):
        return "on" if default else "off"
    if default is None:
        return None
    if isinstance(default, float) and default.is_integer():
        default = int(default)
    return f"`{default}`"


def test_every_setting_is_in_the_configuration_table_with_its_flag_and_variable() -> None:
    """The settings table is the operator's reference: each row names the flag and the
    environment variable that ``Settings`` derives from the setting's name, and a default
    it writes as a value is the code's."""
    rows = {
        line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:4]]
        for line in CONFIGURATION_PAGE.read_text().splitlines()
        if line.startswith("| `--")
    }
    for setting in dataclasses.fields(Settings):
        flag = f"`{flag_name(setting.name)}`"
        assert flag in rows, f"{CONFIGURATION_PAGE.name} lacks a row for {flag}"
        variable, default = rows[flag]
        assert variable == f"`{env_name(setting.name)}`", flag
        written = _default_cell(setting.default)
        if written is not None and (written in ("on", "off") or default.startswith("`")):
            assert default.split(" ")[0] == written, f"{flag}: default {default}, code {written}"
    assert len(rows) == len(dataclasses.fields(Settings)), "a row for a setting that is gone"


def test_every_metric_is_in_the_metrics_table() -> None:
    """Dashboards are built from the metrics table: every metric the server defines is in
    it, under the name Prometheus scrapes (a counter's with ``_total``)."""
    table = "\n".join(
        line for line in METRICS_PAGE.read_text().splitlines() if line.startswith("| `")
    )
    defined = [
        family.name + ("_total" if isinstance(collector, PromCounter) else "")
        for collector in vars(metrics).values()
        if isinstance(collector, PromCounter | Gauge | Histogram)
        for family in collector.describe()
    ]
    assert len(defined) >= 9
    missing = [name for name in defined if f"| `{name}` |" not in table]
    assert not missing, f"metrics missing from {METRICS_PAGE.name}'s table: {missing}"


_RETRIED = {
    "yes": _retry.RetryRule.ALWAYS,
    "with a `request_id`": _retry.RetryRule.WITH_REQUEST_ID,
    "never": _retry.RetryRule.NEVER,
}


def test_the_clients_retry_table_says_what_the_proto_does() -> None:
    """The Python client page's table of which calls are retried (with why) repeats what
    ``_retry.retry_rule`` reads from the proto; each method it names has that rule."""
    checked = {}
    for line in CLIENT_PAGE.read_text().splitlines():
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        if len(cells) != 3 or cells[1] not in _RETRIED:
            continue
        for name in re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", cells[0])):
            rpc = "".join(part.title() for part in name.split("_"))  # get_history: GetHistory
            checked[name] = (_retry.retry_rule(_retry.SERVICE.methods_by_name[rpc]), cells[1])
    assert len(checked) >= 9, checked
    wrong = {name: rule for name, (rule, written) in checked.items() if _RETRIED[written] != rule}
    assert not wrong, f"{CLIENT_PAGE.name}'s retry table disagrees with the proto: {wrong}"
