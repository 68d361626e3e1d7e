"""Fresh venvs with this project installed as a user would, from the locks and nothing else.

Used by ``make check-package`` (tests/check_package.py) and the suite's test of the built
wheels (tests/test_dist.py). A venv gets its third-party packages from a lock with
``--require-hashes``, then ours with ``--no-index``: no index can serve anything at that
point, so none of our names can come from one, and pip's ``--report`` says where each
came from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.lockfiles import DEV, REPO, read_lock
from tests.test_readme import quickstart_snippet

VERSION = (REPO / "client" / "VERSION").read_text().strip()
# Distribution name -> its import package, the only top-level name it may install.
OURS = {"threads-service": "threads_server", "threads-service-client": "threads_service_client"}
# Owned on PyPI by an unrelated project (a Meta Threads Graph API SDK, 0.1.0-0.2.1): our
# packages must neither need nor shadow it.
STRANGER = {"threads-client": "threads_client"}
# What setuptools builds with when pip installs from the checkout (no build isolation).
BUILD_BACKEND = ("setuptools", "wheel", "packaging")  # wheel needs packaging
README_OUTPUT = "['hi', 'hello']"


def pip_environment() -> dict[str, str]:
    """This process's environment without pip settings that could add a package source."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in {"PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"}
        and not key.startswith("THREADS_")
        and key not in {"PYTHONPATH", "VIRTUAL_ENV"}
    }


def run(command: Sequence[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Runs ``command``; on failure raises with its output (the assertion message)."""
    shown = " ".join(str(part) for part in command)
    done = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        env=kwargs.pop("env", pip_environment()),
        timeout=kwargs.pop("timeout", 600),
        check=False,
        **kwargs,
    )
    if done.returncode != 0:
        raise AssertionError(f"{shown} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


@dataclass
class Venv:
    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def script(self, name: str) -> Path:
        return self.path / "bin" / name

    @classmethod
    def create(cls, path: Path) -> Venv:
        """A new venv from the interpreter this one was made from (not a venv of a venv)."""
        base = getattr(sys, "_base_executable", sys.executable)
        run([base, "-m", "venv", "--clear", path])
        return cls(path)

    def install_lock(self, lock: Path) -> None:
        run([self.python, "-m", "pip", "install", "--quiet", "--require-hashes", "-r", lock])

    def install_build_backend(self, scratch: Path) -> None:
        """setuptools and wheel at the dev lock's pins and hashes, to build from a checkout."""
        subset = scratch / "build-backend.txt"
        subset.write_text(lock_subset(REPO / DEV.path, BUILD_BACKEND))
        self.install_lock(subset)

    def install_ours(self, targets: Sequence[str | Path], report: Path) -> list[dict[str, Any]]:
        """Installs our distributions (checkout folders or wheels) with no index at all;
        returns pip's report of what it installed."""
        run(
            [
                self.python,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-index",
                "--no-build-isolation",
                "--report",
                report,
                *targets,
            ]
        )
        installed: list[dict[str, Any]] = json.loads(report.read_text())["install"]
        return installed

    def check(self) -> None:
        """pip check: every installed distribution's requirements are met (ours included)."""
        run([self.python, "-m", "pip", "check"])


def lock_subset(lock: Path, names: Sequence[str]) -> str:
    """The blocks of ``lock`` (pin, hashes, comments) that pin ``names``."""
    wanted = set(names)
    pins = read_lock(lock)
    missing = wanted - pins.keys()
    assert not missing, f"{lock} pins none of {sorted(missing)}"
    blocks, keep = [], False
    for line in lock.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            keep = line.split("==", 1)[0].strip().lower() in wanted
        if keep:
            blocks.append(line)
    return "\n".join(blocks) + "\n"


def wheels(dist_dir: Path) -> dict[str, Path]:
    """Our built wheels in ``dist_dir``, by distribution name, at this checkout's version."""
    found = {}
    for name in OURS:
        stem = name.replace("-", "_")
        matches = sorted(dist_dir.glob(f"{stem}-{VERSION}-*.whl"))
        assert len(matches) == 1, f"want one {stem}-{VERSION} wheel in {dist_dir}: {matches}"
        found[name] = matches[0]
    return found


def build_wheels(outdir: Path) -> dict[str, Path]:
    """Builds both wheels from this checkout (PEP 517, the backend from the dev venv)."""
    for source in (REPO / "client", REPO):
        run(
            [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", outdir, source]
        )
    return wheels(outdir)


def short_data_dir() -> Path:
    """A data directory short enough for the embedded server's Unix socket path."""
    return Path(tempfile.mkdtemp(prefix="thr-", dir="/tmp"))


def run_readme_snippet(python: Path, port: int, cwd: Path, readme: Path | None = None) -> str:
    """Runs the README snippet (or ``readme``'s one) with ``python`` (isolated: nothing of
    the checkout on its path) against the server on ``port``; returns what it printed."""
    snippet = quickstart_snippet() if readme is None else quickstart_snippet(readme)
    assert '"127.0.0.1:50051"' in snippet
    code = snippet.replace('"127.0.0.1:50051"', f'"127.0.0.1:{port}"')
    return run([python, "-I", "-c", code], cwd=cwd, timeout=120).stdout.strip()
