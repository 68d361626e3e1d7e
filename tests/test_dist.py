"""The release artifacts work as shipped: both wheels, built from this checkout, installed
into a fresh venv from the server's lock, serve the README snippet from the installed
``threads-server`` (embedded Valkey), and every place that reports the version agrees with
client/VERSION."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.lockfiles import REPO, SERVER
from tests.server_process import ServerProcess
from tests.venvs import (
    OURS,
    README_OUTPUT,
    VERSION,
    Venv,
    build_wheels,
    pip_environment,
    run,
    run_readme_snippet,
    short_data_dir,
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh venv: the server lock, then both wheels with no index."""
    scratch = tmp_path_factory.mktemp("dist")
    wheels = build_wheels(scratch / "dist")
    venv = Venv.create(scratch / "venv")
    venv.install_lock(REPO / SERVER.path)
    report = venv.install_ours(list(wheels.values()), scratch / "report.json")
    assert sorted(item["metadata"]["name"] for item in report) == sorted(OURS)
    venv.check()
    return venv


@pytest.fixture
def server(installed: Venv, tmp_path: Path) -> Iterator[ServerProcess]:
    data_dir = short_data_dir()
    process = ServerProcess(
        ["--workers", "1", "--data-dir", str(data_dir)],
        tmp_path / "server.log",
        pip_environment(),
        None,
        command=[str(installed.script("threads-server"))],
        cwd=tmp_path,
    )
    try:
        process.wait_serving()
        yield process
    finally:
        process.kill_all()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_the_readme_snippet_runs_against_the_installed_server(
    installed: Venv, server: ServerProcess, tmp_path: Path
) -> None:
    assert run_readme_snippet(installed.python, server.port, tmp_path) == README_OUTPUT
    # The client's own README (its page on the index) runs too.
    client_readme = REPO / "client" / "README.md"
    assert run_readme_snippet(installed.python, server.port, tmp_path, client_readme) == "['hi']"
    assert server.stop() == 0, server.tail()


def test_every_report_of_the_version_is_the_one_in_client_version(
    installed: Venv, server: ServerProcess, tmp_path: Path
) -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", VERSION), VERSION
    told = run([installed.script("threads-server"), "--version"], cwd=tmp_path).stdout
    assert told.strip() == f"threads-server {VERSION}"
    client = run(
        [installed.python, "-I", "-c", "import threads_service_client as c; print(c.__version__)"],
        cwd=tmp_path,
    ).stdout
    assert client.strip() == VERSION
    # The metric carries its labels once the health loop has asked the server for INFO.
    scraped = httpx.get(f"{server.http_url}/metrics", timeout=10).text
    (line,) = [line for line in scraped.splitlines() if line.startswith("threads_build_info{")]
    assert f'version="{VERSION}"' in line, line
    assert 'server="valkey"' in line, line
