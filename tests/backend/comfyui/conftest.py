"""A ComfyUI stand-in (tests/servers/comfyui_server.py) as a real subprocess on a free port, with a ComfyUI-like
folder holding the model files our workflows name (placeholders: the stand-in lists model folders, it never loads
weights)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from alch3mist.comfyui.workflows import HUNYUAN3D_CHECKPOINT, ModelFiles
from alch3mist.config import Settings

from tests.backend.engines.servers import REPO_ROOT, free_port
from tests.integration.conftest import wait_until_healthy

SERVER = REPO_ROOT / "tests" / "servers" / "comfyui_server.py"
LORA = "alch3mist.safetensors"


@dataclass
class ComfyUIStandIn:
    url: str
    root: Path
    fault_file: Path
    calls_log: Path

    def set_fault(self, **fault: object) -> None:
        """``step_delay_s=…`` / ``fail_node=…`` from the next prompt on; no arguments = behave."""
        self.fault_file.write_text(json.dumps(fault) if fault else "")

    def calls(self, route: str) -> list[dict[str, object]]:
        if not self.calls_log.is_file():
            return []
        lines = [json.loads(line) for line in self.calls_log.read_text().splitlines() if line.strip()]
        return [line["body"] for line in lines if line["route"] == route]

    def settings(self, tmp_path: Path, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "comfyui_url": self.url,
            "comfyui_timeout_s": 60.0,
            "data_dir": tmp_path / "data",
            "engine_3d": "preview",
            "llm_url": None,
            "trellis_url": None,
            "hunyuan3d_url": None,
        }
        return Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg, arg-type]


def make_comfyui_root(root: Path, *, lora: bool = True, skip: tuple[str, ...] = ()) -> Path:
    """models/ as a ComfyUI install has them for our workflows (diffusion models under unet/, as older installs)."""
    files = ModelFiles.defaults()
    wanted = {
        f"models/unet/{files.flux_unet}": True,
        f"models/diffusion_models/{files.kontext_unet}": True,
        f"models/clip/{files.clip_l}": True,
        f"models/text_encoders/{files.t5}": True,
        f"models/vae/{files.vae}": True,
        f"models/checkpoints/{HUNYUAN3D_CHECKPOINT}": True,
        f"models/loras/{LORA}": lora,
        "models/loras/other/moss.safetensors": True,
    }
    for rel, present in wanted.items():
        if present and not any(rel.endswith(name) for name in skip):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(b"placeholder: the stand-in never loads weights")
    return root


def start_comfyui(root: Path, workdir: Path) -> Iterator[ComfyUIStandIn]:
    port = free_port()
    log_path = workdir / "comfyui.log"
    server = ComfyUIStandIn(f"http://127.0.0.1:{port}", root, workdir / "fault.json", workdir / "calls.jsonl")
    command = [sys.executable, str(SERVER), "--port", str(port), "--root", str(root),
               "--fault-file", str(server.fault_file), "--calls-log", str(server.calls_log)]  # fmt: skip
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:
        wait_until_healthy(process, f"{server.url}/system_stats", "ComfyUI stand-in", 60, 0.1, log_path.read_text)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def comfyui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComfyUIStandIn]:
    """One stand-in for the module's tests, with every model file our workflows need (and the LoRA)."""
    work = tmp_path_factory.mktemp("comfyui")
    yield from start_comfyui(make_comfyui_root(work / "ComfyUI"), work)


@pytest.fixture()
def comfyui_behaves(comfyui: ComfyUIStandIn) -> Iterator[ComfyUIStandIn]:
    comfyui.set_fault()
    yield comfyui
    comfyui.set_fault()
