"""The hash-pinned lock files: which ranges each one locks and how uv writes them.

Every dependency set is installed from its lock with ``pip install --require-hashes``, so a
commit installs the same bytes on any day; this project's own packages go in after it with
``--no-deps``. The ranges stay in the pyproject.toml files (what a user installing from the
index gets); the locks are what we test and ship.

    python -m tests.lockfiles compile [--upgrade] [--into DIR]   # make lock / upgrade-check
    python -m tests.lockfiles moved OLD NEW                      # what an upgrade moved

uv (``uv pip compile``) writes them: it resolves one universal lock for every platform and
Python >= 3.11 in about a second, with every file's hash, keeps existing pins unless asked to
upgrade, and is itself installed from the dev lock. ``tests/test_locks.py`` fails when a lock
and the ranges it was made from disagree.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class LockSet:
    """One lock file and the ranges it pins: pyproject.toml files (their dependencies and
    ``extras``) or requirements ``.in`` files."""

    path: str
    sources: tuple[str, ...]
    extras: tuple[str, ...] = ()
    # Pins taken from this other lock, so that what ships is exactly what the suite tested.
    constrained_by: str | None = None
    what: str = ""


DEV = LockSet(
    "tests/requirements.txt",
    ("pyproject.toml", "client/pyproject.toml"),
    extras=("dev",),
    what="the dev venv (make install), CI, make bench-http's driver",
)
SERVER = LockSet(
    "server/requirements.txt",
    ("pyproject.toml",),
    constrained_by=DEV.path,
    what="the server's runtime: the container image, make check-package",
)
CLIENT = LockSet(
    "client/requirements.txt",
    ("client/pyproject.toml",),
    constrained_by=DEV.path,
    what="the client's runtime: make check-package",
)
LANGGRAPH = LockSet(
    "tests/load/requirements-langgraph.txt",
    ("tests/load/requirements-langgraph.in",),
    what="make bench-http's LangGraph server (build/langgraph-venv), apart: its pins fight ours",
)
# In the order make lock writes them: a constrained lock after the one it takes pins from.
LOCKS = (DEV, SERVER, CLIENT, LANGGRAPH)
# Every lock covers any platform, for the oldest Python we support and up.
UV_FLAGS = ("--universal", "--python-version", "3.11", "--generate-hashes")
# The environments a lock must serve (markers are evaluated for each).
ENVIRONMENTS = tuple(
    {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": platform,
        "platform_system": system,
        "os_name": "nt" if platform == "win32" else "posix",
        "platform_machine": "x86_64",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    for python in ("3.11", "3.12", "3.13")
    for platform, system in (("linux", "Linux"), ("darwin", "Darwin"), ("win32", "Windows"))
)


@dataclass(frozen=True)
class Pin:
    name: str  # canonical
    version: Version
    marker: Marker | None
    hashes: tuple[str, ...]

    def applies(self, environment: Mapping[str, str]) -> bool:
        return self.marker is None or self.marker.evaluate(dict(environment))


def read_lock(path: Path) -> dict[str, list[Pin]]:
    """The pins of a requirements lock, by canonical name (a universal lock may pin one name
    twice, under markers that exclude each other)."""
    pins: dict[str, list[Pin]] = {}
    logical = ""
    for raw in [*path.read_text().splitlines(), ""]:
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        if logical.strip():
            pin = _parse_pin(logical, path)
            pins.setdefault(pin.name, []).append(pin)
        logical = ""
    return pins


def _parse_pin(line: str, path: Path) -> Pin:
    words = line.split()
    hashes = tuple(w.split("=", 1)[1] for w in words if w.startswith("--hash="))
    requirement = Requirement(" ".join(w for w in words if not w.startswith("--hash=")))
    (spec,) = requirement.specifier or [None]
    if spec is None or spec.operator != "==":
        raise ValueError(f"{path}: {line!r} is not pinned with ==")
    return Pin(
        canonicalize_name(requirement.name), Version(spec.version), requirement.marker, hashes
    )


def requirements_of(lock: LockSet, repo: Path = REPO) -> list[Requirement]:
    """The ranges a lock was made from, as written in its sources."""
    found: list[Requirement] = []
    for source in lock.sources:
        path = repo / source
        if path.suffix == ".toml":
            project = tomllib.loads(path.read_text())["project"]
            lines = list(project.get("dependencies", []))
            for extra in lock.extras:
                lines += project.get("optional-dependencies", {}).get(extra, [])
        else:
            lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
        found += [Requirement(line) for line in lines if line]
    return found


def disagreements(
    requirements: Iterable[Requirement],
    pins: Mapping[str, Sequence[Pin]],
    environments: Sequence[Mapping[str, str]] = ENVIRONMENTS,
) -> list[str]:
    """Each way the pins fail the ranges: a requirement with no pin, a pin outside its range,
    a pin without hashes."""
    problems: list[str] = []
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        for environment in environments:
            if requirement.marker is not None and not requirement.marker.evaluate(
                {**environment, "extra": ""}
            ):
                continue
            chosen = [pin for pin in pins.get(name, ()) if pin.applies(environment)]
            where = f"(Python {environment['python_version']} on {environment['sys_platform']})"
            if not chosen:
                problems.append(f"{requirement} is required but not in the lock {where}")
                break
            outside = [
                pin
                for pin in chosen
                if not requirement.specifier.contains(pin.version, prereleases=True)
            ]
            if outside:
                problems.append(
                    f"{name}=={outside[0].version} in the lock is outside the range "
                    f"{requirement} {where}"
                )
                break
    for entries in pins.values():
        problems += [
            f"{pin.name}=={pin.version} has no --hash" for pin in entries if not pin.hashes
        ]
    return problems


def compile_command(
    lock: LockSet, output: Path, *, upgrade: bool = False, constraint: Path | None = None
) -> list[str]:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or "uv"
    command = [uv, "pip", "compile", "--quiet", *UV_FLAGS, "--custom-compile-command", "make lock"]
    command += [arg for extra in lock.extras for arg in ("--extra", extra)]
    if constraint is not None:
        command += ["--constraint", str(constraint)]
    if upgrade:
        command.append("--upgrade")
    return [*command, *lock.sources, "--output-file", str(output)]


def compile_locks(into: Path | None, *, upgrade: bool) -> None:
    """Writes every lock (into ``into`` instead of the repository, for upgrade-check)."""
    written: dict[str, Path] = {}
    for lock in LOCKS:
        output = REPO / lock.path if into is None else into / lock.path
        output.parent.mkdir(parents=True, exist_ok=True)
        constraint = written[lock.constrained_by] if lock.constrained_by else None
        command = compile_command(lock, output, upgrade=upgrade, constraint=constraint)
        subprocess.run(command, cwd=REPO, check=True)
        written[lock.path] = output
        print(f"{output.relative_to(into or REPO)}: {lock.what}")


def moved(old: Mapping[str, Sequence[Pin]], new: Mapping[str, Sequence[Pin]]) -> list[str]:
    """What changed between two versions of a lock, one line per package."""

    def versions(pins: Mapping[str, Sequence[Pin]], name: str) -> str:
        return ", ".join(sorted({str(pin.version) for pin in pins.get(name, ())}))

    lines = []
    for name in sorted(old.keys() | new.keys()):
        before, after = versions(old, name), versions(new, name)
        if before != after:
            lines.append(f"{name}: {before or '(none)'} -> {after or '(removed)'}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lockfiles")
    commands = parser.add_subparsers(dest="command", required=True)
    compiling = commands.add_parser("compile", help="write the locks (make lock)")
    compiling.add_argument("--upgrade", action="store_true", help="newest the ranges allow")
    compiling.add_argument("--into", type=Path, help="write under this folder instead")
    diffing = commands.add_parser("moved", help="what changed from one lock to another")
    diffing.add_argument("old", type=Path)
    diffing.add_argument("new", type=Path)
    args = parser.parse_args(argv)
    if args.command == "compile":
        compile_locks(args.into, upgrade=args.upgrade)
        return 0
    lines = moved(read_lock(args.old), read_lock(args.new))
    print("\n".join(lines) if lines else f"nothing moved from {args.old}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
