"""``make check-package``: what an installed distribution puts on a clean venv's path.

Run by the venv's own python from outside the repository (so the checkout's folders are not
on ``sys.path``): ``client`` after ``pip install ./client``, ``server`` after installing the
server distribution as well.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

# Names a service that installs us may well have as its own modules.
_MUST_NOT_EXIST = ("client", "server", "tests")


def _check_common() -> None:
    for name in _MUST_NOT_EXIST:
        spec = importlib.util.find_spec(name)
        assert spec is None, f"installing put a top-level {name!r} on the path: {spec.origin}"


def check_client() -> None:
    import threads_service_client  # noqa: PLC0415
    from threads_service_client import get_client, get_sync_client  # noqa: PLC0415
    from threads_service_client.pb import threads_pb2  # noqa: PLC0415

    assert "site-packages" in (threads_service_client.__file__ or ""), (
        threads_service_client.__file__
    )
    assert threads_pb2.DESCRIPTOR.package == "threads.v1"
    get_sync_client("127.0.0.1:1").close()
    assert callable(get_client)
    for name in ("redis", "threads_server"):
        assert importlib.util.find_spec(name) is None, f"the client install carries {name!r}"
    print(
        "threads_service_client importable from", Path(threads_service_client.__file__ or "").parent
    )


def check_server() -> None:
    import threads_server  # noqa: PLC0415
    from threads_server.server import ThreadsServer  # noqa: PLC0415
    from threads_server.store.scripts import all_scripts  # noqa: PLC0415

    assert callable(ThreadsServer)
    # The Lua scripts and their includes are package data: every script builds from them.
    assert "copy" in all_scripts() and all_scripts()["copy"].source.helpers
    script = shutil.which("threads-server", path=str(Path(sys.executable).parent))
    assert script, "the threads-server console script is not installed"
    shown = subprocess.run([script, "--help"], capture_output=True, text=True, check=True)
    assert "--redis-url" in shown.stdout, shown.stdout
    print("threads_server importable from", Path(threads_server.__file__ or "").parent)
    print("console script:", script)


if __name__ == "__main__":
    _check_common()
    {"client": check_client, "server": check_server}[sys.argv[1]]()
