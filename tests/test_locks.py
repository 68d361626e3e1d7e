"""The committed locks agree with the ranges they were made from (tests/lockfiles.py).

A range changed without ``make lock`` leaves a pin outside it or a dependency missing; both
fail here, before an install from the lock silently differs from what pyproject.toml says.
"""

from __future__ import annotations

import json
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.lockfiles import (
    DEV,
    LOCKS,
    REPO,
    SERVER,
    LockSet,
    disagreements,
    moved,
    read_lock,
    requirements_of,
)


@pytest.mark.parametrize("lock", LOCKS, ids=[lock.path for lock in LOCKS])
def test_every_lock_pins_each_range_within_it_with_hashes(lock: LockSet) -> None:
    problems = disagreements(requirements_of(lock), read_lock(REPO / lock.path))
    assert not problems, f"{lock.path} disagrees with {lock.sources} (run make lock):\n" + (
        "\n".join(problems)
    )


@pytest.mark.parametrize(
    "lock", [lock for lock in LOCKS if lock.constrained_by], ids=lambda lock: lock.path
)
def test_what_ships_is_pinned_as_the_suite_ran_it(lock: LockSet) -> None:
    """The server's and the client's locks pin each package at the dev lock's version."""
    assert lock.constrained_by is not None
    tested = read_lock(REPO / lock.constrained_by)
    shipped = read_lock(REPO / lock.path)
    differ = {
        name: ([str(p.version) for p in pins], [str(p.version) for p in tested.get(name, [])])
        for name, pins in shipped.items()
        if {p.version for p in pins} - {p.version for p in tested.get(name, [])}
    }
    assert not differ, f"{lock.path} pins other versions than {lock.constrained_by}: {differ}"


def test_a_pin_outside_its_range_is_found(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.txt"
    lock.write_text("grpcio==1.80.0 \\\n    --hash=sha256:00\n")
    problems = disagreements([Requirement("grpcio>=1.85.1,<2")], read_lock(lock))
    assert problems == [
        "grpcio==1.80.0 in the lock is outside the range grpcio<2,>=1.85.1 (Python 3.11 on linux)"
    ]


def test_a_dependency_missing_from_the_lock_is_found(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.txt"
    lock.write_text("grpcio==1.85.1 --hash=sha256:00\n")
    problems = disagreements(
        [Requirement("grpcio>=1.85.1"), Requirement("starlette>=1,<2")], read_lock(lock)
    )
    assert problems == ["starlette<2,>=1 is required but not in the lock (Python 3.11 on linux)"]


def test_a_platform_dependency_must_be_locked_where_it_applies(tmp_path: Path) -> None:
    """uvloop is not installed on Windows, but must be locked everywhere else."""
    lock = tmp_path / "requirements.txt"
    lock.write_text("uvloop==0.21.0 ; sys_platform == 'linux' --hash=sha256:00\n")
    problems = disagreements(
        [Requirement("uvloop>=0.21; sys_platform != 'win32'")], read_lock(lock)
    )
    assert problems == [
        'uvloop>=0.21; sys_platform != "win32" is required but not in the lock '
        "(Python 3.11 on darwin)"
    ]


def test_a_pin_without_hashes_is_found(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.txt"
    lock.write_text("grpcio==1.85.1\n")
    assert disagreements([Requirement("grpcio")], read_lock(lock)) == [
        "grpcio==1.85.1 has no --hash"
    ]


def test_a_lock_must_pin_exactly(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.txt"
    lock.write_text("grpcio>=1.85.1 --hash=sha256:00\n")
    with pytest.raises(ValueError, match="not pinned with =="):
        read_lock(lock)


def test_the_dev_venv_runs_what_the_dev_lock_pins() -> None:
    """make install put exactly the dev lock's versions in this venv (so the suite tests the
    locked bytes), and every locked package's own dependencies are locked too. The lock is
    the one make install names in the venv's stamp (make upgrade-check's, in its venv)."""
    stamp = Path(sys.prefix) / ".installed-stamp"
    named = stamp.read_text().strip() if stamp.exists() else ""
    pins = read_lock(REPO / (named or DEV.path))
    installed = {
        str(canonicalize_name(dist.metadata["Name"])): dist
        for dist in metadata.distributions()
        if dist.metadata["Name"]
    }
    here = {key: str(value) for key, value in default_environment().items()}
    environment = {"extra": ""}
    wrong = []
    for name, entries in pins.items():
        versions = {str(pin.version) for pin in entries if pin.applies(here)}
        if versions and installed[name].version not in versions:
            wrong.append(f"{name}: {installed[name].version} installed, lock has {versions}")
        for line in installed[name].requires or [] if versions else []:
            requirement = Requirement(line)
            needed = requirement.marker is None or requirement.marker.evaluate(environment)
            if needed and canonicalize_name(requirement.name) not in pins:
                wrong.append(f"{name} needs {requirement}, which the lock lacks")
    assert not wrong, "\n".join(wrong)


def test_the_server_lock_holds_the_client_runtime() -> None:
    """The image installs the server lock alone; the client's stubs in it need the same."""
    client = next(lock for lock in LOCKS if lock.path.startswith("client/"))
    problems = disagreements(requirements_of(client), read_lock(REPO / SERVER.path))
    assert not problems, problems


INTEROP = REPO / "tests" / "interop"


@pytest.mark.parametrize("project", ["node", "langgraph-js"])
def test_node_installs_exact_versions_from_its_lock(project: str) -> None:
    """package.json names exact versions, and npm ci installs package-lock.json's, each
    with its integrity hash."""
    manifest = json.loads((INTEROP / project / "package.json").read_text())
    loose = {n: v for n, v in manifest["dependencies"].items() if not re.fullmatch(r"\d[\w.-]*", v)}
    assert not loose, f"{project}/package.json has ranges: {loose}"
    lock = json.loads((INTEROP / project / "package-lock.json").read_text())
    packages = {path: meta for path, meta in lock["packages"].items() if path}
    assert packages, f"{project}/package-lock.json locks nothing"
    unhashed = [path for path, meta in packages.items() if not meta.get("integrity")]
    assert not unhashed, f"{project}/package-lock.json without integrity: {unhashed}"
    assert "npm ci" in (INTEROP / "npm_setup.sh").read_text()


def test_maven_names_every_version_exactly() -> None:
    """No version range, LATEST or RELEASE, and every plugin the build uses pinned."""
    pom = (INTEROP / "java" / "pom.xml").read_text()
    properties = dict(re.findall(r"<([\w.-]+\.version)>([^<]+)</", pom))
    versions = [
        properties.get(v[2:-1], v) if v.startswith("${") else v
        for v in re.findall(r"<version>([^<]+)</version>", pom)
    ]
    loose = [v for v in versions if not re.fullmatch(r"\d[\w.-]*", v)]
    assert not loose, f"pom.xml versions that float: {loose}"
    plugins = re.findall(r"<plugin>(.*?)</plugin>", pom, flags=re.DOTALL)
    extensions = re.findall(r"<extension>(.*?)</extension>", pom, flags=re.DOTALL)
    unpinned = [p for p in plugins + extensions if "<version>" not in p]
    assert not unpinned, f"pom.xml plugins without a version: {unpinned}"


@pytest.mark.parametrize("module", ["tests/interop/go", "tests/k8s"])
def test_go_modules_build_from_go_sum_read_only(module: str) -> None:
    """Each Go module has its go.sum, and is built with -mod=readonly (never rewritten)."""
    folder = REPO / module
    required = re.findall(r"^\s+(\S+) (v\S+)", (folder / "go.mod").read_text(), re.MULTILINE)
    summed = (folder / "go.sum").read_text()
    missing = [f"{m} {v}" for m, v in required if f"{m} {v}/go.mod h1:" not in summed]
    assert required and not missing, f"{module}/go.sum lacks {missing}"
    runner = folder / "run.sh"
    uses = (
        runner.read_text() if runner.exists() else (REPO / "tests" / "test_deploy.py").read_text()
    )
    assert "-mod=readonly" in uses


def test_upgrade_check_names_what_moved(tmp_path: Path) -> None:
    old, new = tmp_path / "old.txt", tmp_path / "new.txt"
    old.write_text("grpcio==1.85.1 --hash=sha256:00\nsix==1.16.0 --hash=sha256:00\n")
    new.write_text("grpcio==1.86.0 --hash=sha256:00\nanyio==4.16.0 --hash=sha256:00\n")
    assert moved(read_lock(old), read_lock(new)) == [
        "anyio: (none) -> 4.16.0",
        "grpcio: 1.85.1 -> 1.86.0",
        "six: 1.16.0 -> (removed)",
    ]
