"""``make image-check``: the container image at work, with every byte of traffic on 127.0.0.1.

    python -m tests.check_image --image localhost/threads-service:0.2.0 \
        --redis-image localhost/threads-redis:bookworm --ca-bundle /etc/ssl/ca.pem

1. The image as built: non-root user, both ports exposed, a HEALTHCHECK (kept only by
   ``--format docker``), and the CA bundle given to the build as a secret in none of its
   layers (``podman save``, every file of every layer compared with it).
2. Next to a Redis container (Debian's redis-server, ``--network host``): ``/ok``, a thread
   created, appended to and copied over HTTP, the copy's history read back, gRPC health
   SERVING, ``podman healthcheck run`` healthy, the data in that Redis; then SIGTERM (a
   clean drain, exit 0) and both containers removed.
3. Alone, as the image starts by default: no THREADS_REDIS_URL, the embedded Valkey.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.redis_process import free_port

STARTUP_BOUND = 90.0
NON_ROOT_UID = "10001"


def podman(
    *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done


def check_config(image: str) -> None:
    [inspected] = json.loads(podman("image", "inspect", image).stdout)
    config = inspected["Config"]
    assert config.get("User") == f"{NON_ROOT_UID}:{NON_ROOT_UID}", config.get("User")
    assert {"50051/tcp", "8080/tcp"} <= set(config.get("ExposedPorts", {})), config
    health = config.get("Healthcheck") or inspected.get("Healthcheck")
    assert health and health["Test"][0] in ("CMD", "CMD-SHELL"), "no HEALTHCHECK in the image"
    env = dict(item.split("=", 1) for item in config.get("Env", []))
    assert "THREADS_REDIS_URL" not in env, "the image must default to the embedded Valkey"
    print(
        f"{image}: {inspected['Size'] / 1e6:.0f} MB, user {config['User']}, ports "
        f"{sorted(config['ExposedPorts'])}, healthcheck {' '.join(health['Test'][1:])}"
    )


def check_secret_in_no_layer(image: str, ca_bundle: Path, scratch: Path) -> None:
    """The build secret was mounted for one RUN only: no layer has its path or its bytes."""
    secret = ca_bundle.read_bytes()
    digest, size = hashlib.sha256(secret).hexdigest(), len(secret)
    archive = scratch / "image.tar"
    podman("save", "--format", "docker-archive", "--output", str(archive), image, timeout=600)
    layers = files = 0
    with tarfile.open(archive) as outer:
        for member in outer.getmembers():
            if not member.name.endswith(".tar"):
                continue
            layers += 1
            extracted = outer.extractfile(member)
            assert extracted is not None
            with tarfile.open(fileobj=extracted) as layer:
                for entry in layer:
                    files += 1
                    name = entry.name.lstrip("./")
                    assert not name.startswith("run/secrets/"), f"{name} is in a layer"
                    if entry.isfile() and entry.size == size:
                        body = layer.extractfile(entry)
                        assert body is not None
                        same = hashlib.sha256(body.read()).hexdigest() == digest
                        assert not same, f"the CA bundle given as a secret is in a layer: {name}"
    archive.unlink()
    assert layers > 0, "podman save wrote no layers"
    print(f"the build secret ({ca_bundle}) is in none of {layers} layers ({files} entries)")


@contextlib.contextmanager
def container(name: str, *args: str) -> Iterator[str]:
    """``podman run -d --network host``; removed at the end, whatever happened."""
    podman("rm", "--force", "--ignore", name)
    podman("run", "--detach", "--name", name, "--network", "host", *args)
    try:
        yield name
    finally:
        podman("rm", "--force", "--ignore", name, check=False)


def logs(name: str) -> str:
    done = podman("logs", name, check=False)
    return f"\n--- podman logs {name} ---\n{done.stdout[-4000:]}{done.stderr[-4000:]}"


def wait_ok(name: str, http: str) -> None:
    deadline = time.monotonic() + STARTUP_BOUND
    while time.monotonic() < deadline:
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        assert state["Running"], f"{name} exited with {state['ExitCode']}{logs(name)}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{http}/ok", timeout=2).json() == {"ok": True}:
                return
        time.sleep(0.5)
    raise AssertionError(f"{name}: /ok not ok within {STARTUP_BOUND}s{logs(name)}")


def copy_over_http(http: str) -> str:
    """Create, Append, Copy and GetHistory of the copy; returns the copy's id."""
    with httpx.Client(base_url=http, timeout=10) as client:
        created = client.post("/threads", json={"metadata": {"user": "ada"}})
        assert created.status_code == 200, created.text
        thread_id = created.json()["thread_id"]
        entries = [{"data": {"role": "user", "text": "hi"}}, {"data": {"text": "hello"}}]
        appended = client.post(f"/threads/{thread_id}/entries", json={"entries": entries})
        assert appended.json() == {"history_length": 2}, appended.text
        copied = client.post(f"/threads/{thread_id}/copy")
        assert copied.status_code == 200, copied.text
        copy = copied.json()
        assert copy["thread_id"] != thread_id and copy["history_length"] == 2, copy
        history = client.get(f"/threads/{copy['thread_id']}/entries").json()["entries"]
        assert [e["data"]["text"] for e in history] == ["hi", "hello"], history
        return str(copy["thread_id"])


def grpc_serving(port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING, reply


def check_running(name: str, grpc_port: int, http: str) -> str:
    wait_ok(name, http)
    copy_id = copy_over_http(http)
    grpc_serving(grpc_port)
    healthcheck = podman("healthcheck", "run", name, check=False)
    assert healthcheck.returncode == 0, f"podman healthcheck run: {healthcheck.stdout}{logs(name)}"
    uid = podman("exec", name, "id", "-u").stdout.strip()
    assert uid == NON_ROOT_UID, f"the server runs as uid {uid}"
    print(f"  {name}: /ok, copy {copy_id} over HTTP, gRPC health SERVING, healthy, uid {uid}")
    return copy_id


def stop_cleanly(name: str) -> None:
    podman("stop", "--time", "30", name, timeout=60)
    state: dict[str, Any] = json.loads(podman("inspect", name).stdout)[0]["State"]
    assert state["ExitCode"] == 0, f"{name} exited {state['ExitCode']} on SIGTERM{logs(name)}"
    print(f"  {name}: stopped by SIGTERM, exit 0")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.check_image")
    parser.add_argument("--image", required=True)
    parser.add_argument("--redis-image", required=True)
    parser.add_argument("--ca-bundle", type=Path, required=True)
    args = parser.parse_args()
    tag = f"threads-check-{os.getpid()}"
    check_config(args.image)
    with tempfile.TemporaryDirectory(prefix="threads-image-") as scratch:
        check_secret_in_no_layer(args.image, args.ca_bundle, Path(scratch))

    redis_port, grpc_port, http_port = free_port(), free_port(), free_port()
    http = f"http://127.0.0.1:{http_port}"
    listen = ["--env", f"THREADS_LISTEN=127.0.0.1:{grpc_port}"]
    listen += ["--env", f"THREADS_HTTP_LISTEN=127.0.0.1:{http_port}"]
    print(f"--- next to a Redis container (Redis on 127.0.0.1:{redis_port})")
    redis_args = ["--user", "redis", args.redis_image, "redis-server", "--port", str(redis_port)]
    redis_args += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with container(f"{tag}-redis", *redis_args) as redis_name:
        deadline = time.monotonic() + STARTUP_BOUND
        with redis.Redis(port=redis_port, socket_timeout=5) as store:
            while not _pings(store):
                assert time.monotonic() < deadline, f"Redis not answering{logs(redis_name)}"
                time.sleep(0.2)
            service_args = [*listen, "--env", f"THREADS_REDIS_URL=redis://127.0.0.1:{redis_port}/0"]
            with container(f"{tag}-service", *service_args, args.image) as name:
                check_running(name, grpc_port, http)
                assert store.dbsize() > 0, "the service wrote nothing to the Redis container"
                stop_cleanly(name)
        podman("stop", "--time", "10", redis_name, timeout=60)
        print(f"  {redis_name}: stopped")

    print("--- alone: no THREADS_REDIS_URL, the embedded Valkey")
    with container(f"{tag}-embedded", *listen, args.image) as name:
        check_running(name, grpc_port, http)
        stop_cleanly(name)
    print("image-check: passed")
    return 0


def _pings(store: redis.Redis) -> bool:
    try:
        return bool(store.ping())
    except redis.RedisError:
        return False


if __name__ == "__main__":
    sys.exit(main())
