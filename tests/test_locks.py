"""The committed locks agree with the ranges they were made from (tests/lockfiles.py).

A range changed without ``make lock`` leaves a pin outside it or a dependency missing; both
fail here, before an install from the lock silently differs from what pyproject.toml says.
"""

from __future__ import annotations

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
    locked bytes), and every locked package's own dependencies are locked too."""
    pins = read_lock(REPO / DEV.path)
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
