"""The production files in platform/: systemd units pass ``systemd-analyze verify``, Kubernetes
manifests validate against the API schemas, the compose file has the production shape, and every
environment variable they give the platform is a setting it reads."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

REPO_ROOT = Path(__file__).resolve().parent.parent
PLATFORM = REPO_ROOT / "platform"
UNITS = PLATFORM / "systemd"
INSTALL_DIR = "/opt/responses"
# Read by processes other than Django's settings.
NOT_SETTINGS = {"DJANGO_SETTINGS_MODULE", "PYTHONUNBUFFERED"}


def settings_names() -> set[str]:
    """Every variable config/settings.py reads (``env_*("NAME", …)``), and its ``NAME_FILE``."""
    source = (REPO_ROOT / "config" / "settings.py").read_text()
    names = set(re.findall(r"env_\w+\(\s*\"([A-Z0-9_]+)\"", source))
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ENGINE_MODELS"} <= names
    return names | {f"{name}_FILE" for name in names}


def assert_known(names: set[str], where: str) -> None:
    unknown = names - settings_names() - NOT_SETTINGS
    assert not unknown, f"{where} sets variables no setting reads: {sorted(unknown)}"


# --- systemd -------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_units_verify(tmp_path):
    """``systemd-analyze verify`` checks syntax, known keys and that ExecStart exists: the units
    are copied with the install directory pointed at a stand-in holding the venv's python."""
    install = tmp_path / "install"
    (install / ".venv" / "bin").mkdir(parents=True)
    (install / ".venv" / "bin" / "python").symlink_to(sys.executable)
    units = tmp_path / "units"
    units.mkdir()
    for unit in UNITS.iterdir():
        if unit.suffix in (".service", ".target"):
            (units / unit.name).write_text(unit.read_text().replace(INSTALL_DIR, str(install)))
    names = [
        "responses-web@8001.service", "responses-worker.service", "responses-beat.service",
        "responses-migrate.service", "vllm@0.service", "responses.target",
    ]  # fmt: skip
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(units / name) for name in names)],
        capture_output=True,
        text=True,
        cwd=units,
    )
    # Warnings (unknown keys, bad values) go to stderr with exit 0: they count as failures too.
    output = "\n".join(
        line for line in done.stderr.splitlines() if str(units) in line or "Unknown" in line
    )
    assert done.returncode == 0 and not output, done.stdout + done.stderr


def test_systemd_units_run_the_platform_processes_and_one_beat():
    text = {unit.name: unit.read_text() for unit in UNITS.glob("*.service")}
    assert "config.asgi:application" in text["responses-web@.service"]
    assert "worker" in text["responses-worker.service"]
    assert "beat" in text["responses-beat.service"]
    assert "migrate --noinput" in text["responses-migrate.service"]
    assert "runengine" in text["vllm@.service"]
    # Only the beat unit runs beat (a second beat would run every sweeper twice).
    assert [name for name, body in text.items() if re.search(r"celery .*\bbeat\b", body)] == [
        "responses-beat.service"
    ]


def test_the_environment_file_sets_only_settings():
    lines = (UNITS / "responses.env.example").read_text().splitlines()
    names = {line.split("=", 1)[0] for line in lines if line and not line.startswith("#")}
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY_FILE", "API_KEY_PEPPER_FILE"} <= names
    assert_known(names, "responses.env.example")


# --- Kubernetes ----------------------------------------------------------------------------------


def _manifests() -> list[tuple[str, dict]]:
    return [
        (path.name, document)
        for path in sorted((PLATFORM / "kubernetes").glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


def test_kubernetes_manifests_validate_against_the_api_schemas():
    version = latest_version()
    for name, document in _manifests():
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            raise AssertionError(f"{name}: {document['kind']}: {error}") from error
    # The validator is strict: a misspelt field fails (so passing above means something).
    broken = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
              "spec": {"selectr": {}}}  # fmt: skip
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_kubernetes_has_the_production_shape():
    objects = {
        (document["kind"], document["metadata"]["name"]): document for _, document in _manifests()
    }
    web = objects[("Deployment", "responses-web")]["spec"]["template"]["spec"]["containers"][0]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    hpa = objects[("HorizontalPodAutoscaler", "responses-web")]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "responses-web"
    beat = objects[("Deployment", "responses-beat")]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"
    assert ("Deployment", "responses-worker") in objects
    vllm = objects[("StatefulSet", "vllm")]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" in vllm["containers"][0]["resources"]["limits"]
    assert ("Job", "responses-migrate") in objects


def test_kubernetes_environment_is_settings():
    names: set[str] = set()
    for _, document in _manifests():
        if document["kind"] in ("ConfigMap", "Secret"):
            names |= set(document.get("data") or {}) | set(document.get("stringData") or {})
    assert_known(names, "the Kubernetes ConfigMap/Secret")


# --- compose -------------------------------------------------------------------------------------


def test_compose_has_the_production_shape_and_sets_only_settings():
    compose = yaml.safe_load((PLATFORM / "compose" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "pgbouncer", "redis", "migrate", "web", "worker", "beat", "vllm",
            "proxy"} <= set(services)  # fmt: skip
    assert services["beat"]["deploy"]["replicas"] == 1
    assert services["web"]["deploy"]["replicas"] > 1
    assert "--appendonly" in services["redis"]["command"]
    for name in ("migrate", "web", "worker", "beat"):
        assert_known(set(services[name]["environment"]), f"compose service {name}")
    nginx = (PLATFORM / "compose" / "nginx.conf").read_text()
    assert "proxy_buffering off" in nginx and "Upgrade" in nginx
