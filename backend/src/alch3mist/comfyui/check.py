"""``alch3mist comfyui check``: what a ComfyUI server has, read from ``/object_info``, and which of ours is missing.

The node classes are the keys of ``/object_info``; the model files are the choices of the loader nodes' file inputs
(``UNETLoader.unet_name`` lists ``models/diffusion_models``, and so on), which is how ComfyUI itself reports them.
Exit status 0 when the image backend has everything it needs, 1 when something is missing or the server is down.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from ..errors import ComfyUIError, InvalidRequest, report_errors
from .client import ComfyUIClient
from .nodes import NODES
from .workflows import (
    EXAMPLE,
    HUNYUAN3D_CHECKPOINT,
    INPUT_IMAGE,
    ModelFiles,
    base_image_graph,
    material_edit_graph,
)

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["ServerReport", "add_arguments", "inventory", "main", "server_summary"]

logger = logging.getLogger(__name__)

# Where ComfyUI lists the files of each model folder: (loader node, its file input).
FOLDER_LISTS = {
    "diffusion_models": ("UNETLoader", "unet_name"),
    "text_encoders": ("DualCLIPLoader", "clip_name1"),
    "vae": ("VAELoader", "vae_name"),
    "loras": ("LoraLoaderModelOnly", "lora_name"),
    "checkpoints": ("ImageOnlyCheckpointLoader", "ckpt_name"),
}


def _backend_nodes() -> frozenset[str]:
    """The node classes stages 1-2 submit: those of the base-image and material-edit workflows."""
    files, example = ModelFiles.defaults(), EXAMPLE
    graphs = (base_image_graph(files, example.base()), material_edit_graph(files, example.edit(), INPUT_IMAGE))
    return frozenset(node.schema.class_type for graph in graphs for node in graph.nodes)


BACKEND_NODES = _backend_nodes()


class ServerReport(BaseModel):
    """What the server has and what our backend (stages 1-2) and the exported workflows need of it."""

    url: str
    comfyui_version: str | None = None
    nodes_total: int = 0
    nodes_missing: list[str] = Field(default_factory=list, description="Our workflows' node classes it lacks.")
    models: dict[str, list[str]] = Field(default_factory=dict, description="Files per ComfyUI models/ folder.")
    missing_for_backend: list[str] = Field(default_factory=list, description="folder/file the image backend needs.")
    missing_for_workflows: list[str] = Field(
        default_factory=list, description="folder/file only the mesh and wizard workflows need."
    )
    loras: list[str] = Field(default_factory=list, description="LoRA files a job may name (models/loras).")

    @property
    def backend_ready(self) -> bool:
        backend_nodes_missing = [n for n in self.nodes_missing if n in BACKEND_NODES]
        return not backend_nodes_missing and not self.missing_for_backend

    def problems(self, backend_only: bool = False) -> list[str]:
        """One line per missing node class or model file; ``backend_only``: only what stages 1-2 need."""
        nodes = [n for n in self.nodes_missing if n in BACKEND_NODES or not backend_only]
        found = [f"missing node class {name} (update ComfyUI)" for name in nodes]
        found += [f"missing model file models/{item} (the image backend needs it)" for item in self.missing_for_backend]
        if not backend_only:
            found += [f"missing model file models/{x} (for the mesh workflows)" for x in self.missing_for_workflows]
        return found


def inventory(client: ComfyUIClient, files: ModelFiles, lora_file: str | None = None) -> ServerReport:
    """Read ``/object_info`` (and ``/system_stats`` for the version) into a ``ServerReport``."""
    from .backend import combo_choices

    info = client.object_info()
    try:
        version = client.system_stats().get("system", {}).get("comfyui_version")
    except ComfyUIError:
        version = None  # an old server without /system_stats still runs workflows
    models: dict[str, list[str]] = {}
    for folder, (node, name) in FOLDER_LISTS.items():
        choices = combo_choices(info.get(node, {}), name)
        models[folder] = [c for c in choices if not (folder == "vae" and c == "pixel_space")]
    needed = {folder: list(names) for folder, names in files.required().items()}
    if lora_file:
        needed["loras"] = [lora_file]
    return ServerReport(
        url=client.url,
        comfyui_version=str(version) if version else None,
        nodes_total=len(info),
        nodes_missing=sorted(name for name in NODES if name not in info),
        models=models,
        missing_for_backend=_missing(needed, models),
        missing_for_workflows=_missing({"checkpoints": [HUNYUAN3D_CHECKPOINT]}, models),
        loras=models.get("loras", []),
    )


def _missing(needed: dict[str, list[str]], models: dict[str, list[str]]) -> list[str]:
    return [f"{folder}/{name}" for folder, names in needed.items() for name in names if name not in models[folder]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None, help="ComfyUI server to check (default: ALCH3MIST_COMFYUI_URL).")
    parser.add_argument("--json", action="store_true", help="Print the report as JSON instead of text.")


def main(args: argparse.Namespace) -> int:
    """Report the server; 0 when the image backend has all it needs, 1 otherwise (2 without a URL)."""
    return report_errors(lambda: _check(args))


def _check(args: argparse.Namespace) -> int:
    from ..config import Settings

    settings = Settings()
    url = args.url or settings.comfyui_url
    if not url:
        raise InvalidRequest("no ComfyUI server: pass --url or set ALCH3MIST_COMFYUI_URL")
    report = _report(settings, url)
    sys.stdout.write(report.model_dump_json(indent=2) + "\n" if args.json else _text(report))
    return 0 if report.backend_ready else 1


def _report(settings: Settings, url: str) -> ServerReport:
    lora = f"{settings.default_lora}.safetensors" if settings.default_lora else None
    client = ComfyUIClient(url, timeout_s=settings.comfyui_timeout_s)
    return inventory(client, ModelFiles.from_settings(settings), lora)


def _text(report: ServerReport) -> str:
    lines = [f"ComfyUI at {report.url} (version {report.comfyui_version or 'unknown'}): {report.nodes_total} nodes"]
    for folder, names in report.models.items():
        lines.append(f"  models/{folder}: {', '.join(names) or '(empty)'}")
    problems = report.problems()
    lines += [f"  ! {problem}" for problem in problems] or ["  everything the Alch3mist workflows need is there"]
    lines.append("backend: ready" if report.backend_ready else "backend: NOT ready (see the ! lines)")
    return "\n".join(lines) + "\n"


def server_summary(settings: Settings) -> dict[str, Any]:
    """What ``alch3mist info`` shows of the server: the report, or why there is none."""
    assert settings.comfyui_url is not None
    try:
        report = _report(settings, settings.comfyui_url)
    except ComfyUIError as error:
        return {"url": settings.comfyui_url, "error": error.message, "backend_ready": False}
    return report.model_dump(mode="json") | {"backend_ready": report.backend_ready, "problems": report.problems()}
