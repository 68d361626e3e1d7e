"""``make check-package``: each distribution installs alone, as a user installs it, and
carries only what it should.

    python -m tests.check_package [--dist build/dist] [--work build/pkg]

For each distribution (``threads-service``, ``threads-service-client``) and each source (the
checkout folder, the built wheel), in a fresh venv of its own:

- its runtime lock first (``--require-hashes``), then it with ``--no-index``: so it
  installs alone, and nothing can come from an index under one of our names (pip's
  ``--report`` must list exactly this distribution, from the local file);
- ``pip check`` passes, and the checks below run in that venv's Python, isolated from the
  checkout (``--inside``).

The built wheels' metadata must name none of our distributions (nor the stranger's
``threads-client``) as a requirement, and each must install only its own import package.
Last, the README snippet runs in the client-only venv against ``threads-server`` started
from the server-only venv (embedded Valkey): the console script starts, and the client
works without the server.
"""

from __future__ import annotations

import argparse
import email.parser
import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

# Only the standard library and this file at module level: ``--inside`` runs in a venv that
# holds nothing but one of our distributions and its locked dependencies.

# Names a service that installs us may well have as its own modules.
_MUST_NOT_EXIST = ("client", "server", "tests")


def inside_client(version: str) -> None:
    from importlib import metadata  # noqa: PLC0415

    import threads_service_client  # noqa: PLC0415
    from threads_service_client import get_client, get_sync_client  # noqa: PLC0415
    from threads_service_client.pb import threads_pb2  # noqa: PLC0415

    assert "site-packages" in (threads_service_client.__file__ or ""), (
        threads_service_client.__file__
    )
    assert threads_service_client.__version__ == version, threads_service_client.__version__
    assert metadata.packages_distributions()["threads_service_client"] == ["threads-service-client"]
    assert threads_pb2.DESCRIPTOR.package == "threads.v1"
    get_sync_client("127.0.0.1:1").close()
    assert callable(get_client)
    for name in ("redis", "threads_server", "threads_client"):
        assert importlib.util.find_spec(name) is None, f"the client venv holds {name!r}"
    print("  threads_service_client", version, "from", Path(threads_service_client.__file__ or ""))


def inside_server(version: str) -> None:
    import threads_server  # noqa: PLC0415
    from threads_server.pb import threads_pb2  # noqa: PLC0415
    from threads_server.server import ThreadsServer  # noqa: PLC0415
    from threads_server.store.scripts import all_scripts  # noqa: PLC0415

    assert callable(ThreadsServer)
    assert threads_pb2.DESCRIPTOR.package == "threads.v1"
    assert threads_server.__version__ == version, threads_server.__version__
    for name in ("threads_service_client", "threads_client"):
        assert importlib.util.find_spec(name) is None, f"the server venv holds {name!r}"
    # The Lua scripts and their includes are package data: every script builds from them.
    assert "copy" in all_scripts() and all_scripts()["copy"].source.helpers
    script = shutil.which("threads-server", path=str(Path(sys.executable).parent))
    assert script, "the threads-server console script is not installed"
    shown = subprocess.run([script, "--help"], capture_output=True, text=True, check=True)
    assert "--redis-url" in shown.stdout, shown.stdout
    told = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
    assert told.stdout.strip() == f"threads-server {version}", told.stdout
    print("  threads_server", version, "from", Path(threads_server.__file__ or "").parent)
    print("  console script:", script, "->", told.stdout.strip())


def _inside(which: str, version: str) -> None:
    for name in _MUST_NOT_EXIST:
        spec = importlib.util.find_spec(name)
        assert spec is None, f"installing put a top-level {name!r} on the path: {spec.origin}"
    {"client": inside_client, "server": inside_server}[which](version)


def check_wheel_metadata(wheel: Path, name: str, import_name: str, version: str) -> None:
    """Name and version; no requirement on one of ours or the stranger's; one package."""
    from packaging.requirements import Requirement  # noqa: PLC0415
    from packaging.utils import canonicalize_name  # noqa: PLC0415

    from tests.venvs import OURS, STRANGER  # noqa: PLC0415

    with zipfile.ZipFile(wheel) as archive:
        files = archive.namelist()
        (meta_path,) = [f for f in files if f.endswith(".dist-info/METADATA")]
        meta = email.parser.Parser().parsestr(archive.read(meta_path).decode())
    assert (meta["Name"], meta["Version"]) == (name, version), (meta["Name"], meta["Version"])
    required = {
        canonicalize_name(Requirement(line).name) for line in meta.get_all("Requires-Dist") or []
    }
    forbidden = required & {*OURS, *STRANGER}
    assert not forbidden, f"{wheel.name} requires {forbidden}: pip would fetch it from the index"
    top = {f.split("/", 1)[0] for f in files if not f.split("/", 1)[0].endswith(".dist-info")}
    assert top == {import_name}, f"{wheel.name} installs {top}, not just {import_name}"
    print(f"{wheel.name}: {name} {version}, installs only {import_name}/, requires none of ours")


def main() -> int:
    from tests.lockfiles import CLIENT, REPO, SERVER  # noqa: PLC0415
    from tests.server_process import ServerProcess  # noqa: PLC0415
    from tests.venvs import (  # noqa: PLC0415
        OURS,
        VERSION,
        Venv,
        pip_environment,
        run_readme_snippet,
        short_data_dir,
    )
    from tests.venvs import wheels as find_wheels  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m tests.check_package")
    parser.add_argument("--dist", type=Path, default=REPO / "build" / "dist")
    parser.add_argument("--work", type=Path, default=REPO / "build" / "pkg")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    wheels = find_wheels(args.dist)
    for name, import_name in OURS.items():
        check_wheel_metadata(wheels[name], name, import_name, VERSION)

    sources = {"threads-service": REPO, "threads-service-client": REPO / "client"}
    locks = {"threads-service": SERVER.path, "threads-service-client": CLIENT.path}
    which = {"threads-service": "server", "threads-service-client": "client"}
    venvs = {}
    for name in OURS:
        for source, target in (("checkout", sources[name]), ("wheel", wheels[name])):
            label = f"{which[name]}-{source}"
            print(f"--- {label}: {name} alone from {target}, its lock {locks[name]}")
            venv = venvs[label] = Venv.create(args.work / label)
            venv.install_lock(REPO / locks[name])
            if source == "checkout":
                venv.install_build_backend(args.work)
            report = venv.install_ours([target], args.work / f"{label}.report.json")
            got = [(item["metadata"]["name"], item["download_info"]["url"]) for item in report]
            assert got == [(name, target.resolve().as_uri())], f"pip installed {got}"
            print(f"  pip --no-index installed only {got[0][0]} from {got[0][1]}")
            venv.check()
            subprocess.run(
                [venv.python, "-I", __file__, "--inside", which[name], VERSION],
                cwd=args.work,
                check=True,
            )

    print("--- the README snippet, client-wheel venv -> threads-server of the server-wheel venv")
    data_dir = short_data_dir()
    server = ServerProcess(
        ["--workers", "1", "--data-dir", str(data_dir)],
        args.work / "server.log",
        pip_environment(),
        None,
        command=[str(venvs["server-wheel"].script("threads-server"))],
        cwd=args.work,
    )
    try:
        server.wait_serving()
        printed = run_readme_snippet(venvs["client-wheel"].python, server.port, args.work)
        assert printed == "['hi', 'hello']", printed
        print(f"  printed {printed}")
        assert server.stop() == 0, server.tail()
    finally:
        server.kill_all()
        shutil.rmtree(data_dir, ignore_errors=True)
    print("check-package: passed")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--inside"]:
        _inside(sys.argv[2], sys.argv[3])
        sys.exit(0)
    sys.exit(main())
