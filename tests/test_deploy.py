"""deploy/kubernetes, validated offline: strictly decoded into the k8s.io/api Go types by
tests/k8s (an unknown or misspelt field fails), then checked against the service itself:
every ConfigMap key is a setting the server accepts, the probes and Service reach the
ports the settings listen on, and the pod's grace covers the preStop sleep plus the drain.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from threads_server.ops.config import Settings, env_name

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = sorted((REPO / "deploy" / "kubernetes").glob("*.yaml"))
VALIDATOR = REPO / "tests" / "k8s"
CONTAINERFILE = REPO / "deploy" / "Containerfile"


def validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is not installed here (the manifests' validator is a Go program)")
    binary = REPO / "build" / "bin" / "k8s-manifests"
    subprocess.run(
        [go, "build", "-mod=readonly", "-o", str(binary), "."],
        cwd=VALIDATOR,
        check=True,
        timeout=600,
    )
    return subprocess.run(
        [str(binary), *map(str, paths)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def objects() -> dict[str, dict[str, Any]]:
    done = validate(*MANIFESTS)
    assert done.returncode == 0, done.stderr
    return {obj["kind"]: obj for obj in json.loads(done.stdout)}


@pytest.fixture(scope="module")
def container(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (only,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return dict(only)


def test_an_unknown_field_is_refused(tmp_path: Path) -> None:
    text = (REPO / "deploy" / "kubernetes" / "deployment.yaml").read_text()
    bad = tmp_path / "deployment.yaml"
    bad.write_text(text.replace("readinessProbe:", "readynessProbe:", 1))
    done = validate(bad)
    assert done.returncode == 1
    assert 'unknown field "readynessProbe"' in done.stderr, done.stderr


def test_the_configmap_holds_only_settings_the_server_accepts(
    objects: dict[str, dict[str, Any]],
) -> None:
    data: dict[str, str] = objects["ConfigMap"]["data"]
    known = {env_name(name) for name in Settings.__dataclass_fields__}
    assert set(data) <= known, f"not settings of threads-server: {set(data) - known}"
    Settings.load([], environ=data)  # exits (SystemExit) on a value the server refuses


def test_the_deployment_reads_the_configmap_and_probes_the_grpc_port(
    objects: dict[str, dict[str, Any]], container: dict[str, Any]
) -> None:
    settings = Settings.load([], environ=objects["ConfigMap"]["data"])
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {
        "grpc": int(settings.listen.rsplit(":", 1)[1]),
        "http": int(settings.http_listen.rsplit(":", 1)[1]),
    }
    assert container["envFrom"] == [
        {"configMapRef": {"name": objects["ConfigMap"]["metadata"]["name"]}}
    ]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["grpc"]["port"] == ports["grpc"], probe


def test_termination_grace_covers_prestop_and_the_drain(
    objects: dict[str, dict[str, Any]], container: dict[str, Any]
) -> None:
    grace = Settings.load([], environ=objects["ConfigMap"]["data"]).grace_seconds
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + grace + 1, (pod, grace)


def test_the_pod_runs_as_the_images_user(objects: dict[str, dict[str, Any]]) -> None:
    (user,) = re.findall(r"^USER (\d+):(\d+)$", CONTAINERFILE.read_text(), flags=re.MULTILINE)
    context = objects["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    assert (str(context["runAsUser"]), str(context["runAsGroup"])) == user
    assert context["runAsNonRoot"] is True


def test_the_service_selects_the_pods_and_names_their_ports(
    objects: dict[str, dict[str, Any]], container: dict[str, Any]
) -> None:
    service = objects["Service"]["spec"]
    labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    names = {port["name"] for port in container["ports"]}
    assert {port["targetPort"] for port in service["ports"]} == names
