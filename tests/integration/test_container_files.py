"""Dockerfile, compose.yaml and .dockerignore checked without a container engine.

No Docker engine (and no Compose v2 plugin) runs on the CI machines, so ``docker compose config`` cannot be the
check there. Instead: compose.yaml is parsed and checked for the structure a GPU deployment needs, every
``ALCH3MIST_*`` variable it sets must be a real ``Settings`` field, and where the ``docker-compose`` (v1, Debian's
``apt install docker-compose``) binary exists, its ``config`` validates the file against the Compose schema and
resolves the interpolation, engine-free.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from alch3mist.config import Settings

ROOT = Path(__file__).resolve().parents[2]
REQUIRED_ENV = {"ALCH3MIST_API_KEYS": "openwebui:k", "ALCH3MIST_LINK_SECRET": "s", "WEBUI_SECRET_KEY": "w"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def test_compose_has_the_gpu_backend_and_open_webui(compose: dict[str, Any]) -> None:
    services = compose["services"]
    cluster = {"redis", "postgres", "minio", "minio-bucket", "api", "worker-gpu0", "worker-gpu1"}
    assert set(services) == {"backend", "open-webui", *cluster}
    backend, webui = services["backend"], services["open-webui"]
    assert backend["profiles"] == ["embedded"] and "profiles" not in webui  # Open WebUI runs in both profiles
    assert all(services[name]["profiles"] == ["cluster"] for name in cluster)
    assert backend["build"]["context"] == "." and (ROOT / backend["build"]["dockerfile"]).is_file()
    devices = backend["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "/healthz" in " ".join(backend["healthcheck"]["test"])
    assert webui["image"] == "ghcr.io/open-webui/open-webui:v0.12.4"
    assert "backend" in services["api"]["networks"]["default"]["aliases"]  # the plugins' URL in both profiles


def test_compose_cluster_has_an_api_node_and_one_worker_per_gpu(compose: dict[str, Any]) -> None:
    services = compose["services"]
    api = services["api"]
    assert api["command"][0] == "serve" and "deploy" not in api  # no GPU: it loads no model
    assert api["environment"]["ALCH3MIST_BROKER_URL"] == "redis://redis:6379/0"
    workers = [services[name] for name in ("worker-gpu0", "worker-gpu1")]
    devices = [w["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] for w in workers]
    assert devices == [["0"], ["1"]]
    for worker in workers:
        assert worker["command"][:3] == ["worker", "--gpu", "0"]  # the one GPU the container sees
        assert worker["environment"]["ALCH3MIST_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert worker["environment"]["ALCH3MIST_STORAGE_URL"].startswith("s3://")


def test_compose_mounts_the_plugins_and_declares_its_volumes(compose: dict[str, Any]) -> None:
    mounts = compose["services"]["open-webui"]["volumes"]
    sources = [m.split(":")[0] for m in mounts]
    for plugin in ("./pipelines", "./tools"):
        assert plugin in sources and (ROOT / plugin).is_dir()
    assert all(m.endswith(":ro") for m in mounts if m.startswith("./"))
    all_mounts = [m for service in compose["services"].values() for m in service.get("volumes", [])]
    named = {m.split(":")[0] for m in all_mounts if not m.startswith(("./", "$"))}
    assert named <= set(compose["volumes"])


def test_compose_settings_are_real_settings_fields(compose: dict[str, Any]) -> None:
    fields = {f"ALCH3MIST_{name.upper()}" for name in Settings.model_fields}
    environments = [service.get("environment", {}) for service in compose["services"].values()]
    used = {key for environment in environments for key in environment if key.startswith("ALCH3MIST_")}
    assert used and used <= fields, used - fields
    secrets = {k for k, v in compose["services"]["backend"]["environment"].items() if ":?" in str(v)}
    assert secrets == {"ALCH3MIST_API_KEYS", "ALCH3MIST_LINK_SECRET"}, "secrets must be required, never defaulted"


def test_compose_interpolations_are_well_formed() -> None:
    text = (ROOT / "compose.yaml").read_text()
    for match in re.finditer(r"\$\{([^}]*)\}", text):
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*(:?[-?].*)?", match.group(1)), match.group(0)


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    # Compose v1 validates the file offline without a Docker engine (none runs on these machines).
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is missing: run `bash scripts/install-system-deps.sh` (Debian's docker-compose)")
    result = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "compose.yaml"), "config", "--quiet"],
        env={**os.environ, **REQUIRED_ENV},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    missing = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "compose.yaml"), "config", "--quiet"],
        env={k: v for k, v in os.environ.items() if k not in REQUIRED_ENV},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert missing.returncode != 0 and "ALCH3MIST_API_KEYS" in missing.stderr


def test_dockerfile_is_a_cuda_image_installing_the_pinned_requirements() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM nvidia/cuda:\S+", dockerfile, re.M)
    assert "pip install -r requirements.txt" in dockerfile
    assert re.search(r'^CMD \["serve"', dockerfile, re.M) and 'ENTRYPOINT ["alch3mist"]' in dockerfile
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()]
    ignored = [line for line in ignored if not line.startswith("#")]
    for source in re.findall(r"^COPY (\S+) ", dockerfile, re.M):
        assert (ROOT / source).exists(), f"COPY {source}: missing"
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), f"COPY {source} is .dockerignored"
    assert ".venv" in ignored and ".git" in ignored and ".cache" in ignored
