"""A stand-in for a ComfyUI server: ComfyUI's HTTP + websocket API on aiohttp (as upstream), no model.

    .venv/bin/python tests/servers/comfyui_server.py --port 8188 --root DIR [--fault-file F] [--calls-log F]

ROOT is laid out like a ComfyUI install: ``models/{diffusion_models,unet,text_encoders,clip,vae,loras,checkpoints}``,
``input/``, ``output/``, ``temp/``. Written from Comfy-Org/ComfyUI (each behaviour cites its upstream place):

* routes — ``server.py`` ``PromptServer.__init__``: ``GET /ws`` (``clientId``; ``status`` on connect; a first
  ``feature_flags`` message is answered), ``POST /prompt`` (``{prompt_id, number, node_errors}``, or 400 ``{error,
  node_errors}``; a client ``prompt_id`` must be a canonical UUID), ``GET /prompt``, ``GET/POST /queue``,
  ``POST /interrupt`` (optionally for one ``prompt_id``), ``GET /history``, ``GET /history/{id}``, ``POST /history``,
  ``GET /view`` (``filename``, ``subfolder``, ``type``, ``channel``, ``preview``; ``..`` and absolute names refused),
  ``POST /upload/image`` (``image``, ``type``, ``subfolder``, ``overwrite``; same-name files get `` (1)`` unless
  identical), ``GET /object_info[/{class}]``, ``GET /models[/{folder}]``, ``GET /system_stats``; every route also
  under ``/api``.
* validation — ``execution.py`` ``validate_prompt`` / ``validate_inputs`` and ``comfy_execution/validation.py``
  ``validate_node_input``, against the node schemas of ``alch3mist.comfyui.nodes`` (checked against the official
  templates): the same error ``type``/``message``/``details``/``extra_info`` and ``node_errors`` shape.
* execution — ``main.py`` ``prompt_worker`` (a worker thread; history written, then ``executing`` with
  ``node: null``), ``execution.py`` ``PromptExecutor.execute_async`` (``execution_start``, ``execution_cached``,
  ``executing``, ``executed``, ``execution_success`` / ``execution_error`` / ``execution_interrupted``), ``main.py``
  ``hijack_progress`` (``progress`` per sampler step, where an interrupt is noticed) and
  ``comfy_execution/progress.py`` ``WebUIProgressHandler`` (``progress_state``); outputs cached by input signature.

What the nodes "compute" is the stand-in part: a KSampler's latent is a digest of everything it depends on, and
VAEDecode paints a smooth picture from that digest at the latent's size (so the same seed and prompt give the same
pixels, and another seed, prompt or LoRA another picture); VAEDecode of an encoded image gives that image back;
FluxKontextImageScale resizes to Kontext's preferred resolutions exactly as ``nodes_flux.py``; the 3D nodes make a
sphere whose size comes from the digest, saved as a real GLB.

Test control (not ComfyUI's): ``--fault-file`` holds JSON read per prompt, ``{"step_delay_s": 0.1}`` slows each
sampler step, ``{"fail_node": "VAEDecode"}`` makes that node raise.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import heapq
import io
import json
import logging
import mimetypes
import os
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "backend" / "src"))
from alch3mist.comfyui.nodes import NODES

logger = logging.getLogger("comfyui-standin")

# folder_paths.py: folder_names_and_paths (the folders each model kind is read from) and supported_pt_extensions.
MODEL_FOLDERS = {
    "checkpoints": ["checkpoints"], "loras": ["loras"], "vae": ["vae"], "text_encoders": ["text_encoders", "clip"],
    "diffusion_models": ["unet", "diffusion_models"], "clip_vision": ["clip_vision"], "vae_approx": ["vae_approx"],
}  # fmt: skip
SUPPORTED_PT_EXTENSIONS = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
# comfy_extras/nodes_flux.py PREFERED_KONTEXT_RESOLUTIONS
KONTEXT_RESOLUTIONS = [
    (672, 1568), (688, 1504), (720, 1456), (752, 1392), (800, 1328), (832, 1248), (880, 1184), (944, 1104),
    (1024, 1024), (1104, 944), (1184, 880), (1248, 832), (1328, 800), (1392, 752), (1456, 720), (1504, 688),
    (1568, 672),
]  # fmt: skip
SAMPLER_NODES = {"KSampler"}
MAXIMUM_HISTORY_SIZE = 10000  # execution.py


class Interrupted(Exception):
    """comfy.model_management.InterruptProcessingException."""


# ---------------------------------------------------------------------------------------------------- folders


class Folders:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.models = self.root / "models"
        self.input, self.output, self.temp = self.root / "input", self.root / "output", self.root / "temp"
        for path in (self.input, self.output, self.temp):
            path.mkdir(parents=True, exist_ok=True)

    def filenames(self, kind: str) -> list[str]:
        """folder_paths.get_filename_list: files under every folder of a kind, relative, '/'-separated, sorted."""
        found: set[str] = set()
        for sub in MODEL_FOLDERS.get(kind, []):
            base = self.models / sub
            if not base.is_dir():
                continue
            for dirpath, _dirs, files in os.walk(base, followlinks=True):
                for name in files:
                    if Path(name).suffix.lower() in SUPPORTED_PT_EXTENSIONS:
                        found.add((Path(dirpath) / name).relative_to(base).as_posix())
        return sorted(found)

    def input_images(self) -> list[str]:
        """nodes.py LoadImage.INPUT_TYPES: files (not folders) of the input dir, filtered to image content types."""
        names = [p.name for p in self.input.iterdir() if p.is_file()]
        return sorted(n for n in names if (mimetypes.guess_type(n, strict=False)[0] or "").startswith("image/"))

    def by_type(self, kind: str | None) -> Path | None:
        """folder_paths.get_directory_by_type."""
        return {"output": self.output, "input": self.input, "temp": self.temp}.get(kind or "output")

    def annotated(self, name: str, default: Path) -> Path:
        """folder_paths.get_annotated_filepath: ``name [input|output|temp]`` picks the folder."""
        for kind in ("output", "input", "temp"):
            if name.endswith(f" [{kind}]"):
                return self.by_type(kind) / name[: -len(kind) - 3]  # type: ignore[operator]
        return default / name

    def object_info(self) -> dict[str, Any]:
        files = {kind: self.filenames(kind) for kind in MODEL_FOLDERS}
        images = self.input_images()
        return {name: node.object_info(files, images) for name, node in NODES.items()}


# ---------------------------------------------------------------------------------------------------- validation


def validate_node_input(received_type: str, input_type: str) -> bool:
    """comfy_execution/validation.py validate_node_input (non-strict): comma-separated types must overlap."""
    if received_type == input_type:
        return True
    return bool({t.strip() for t in received_type.split(",")} & {t.strip() for t in input_type.split(",")})


class Validator:
    """execution.py validate_prompt / validate_inputs over NODES and the server's folders."""

    def __init__(self, folders: Folders) -> None:
        self.folders = folders

    def validate_prompt(self, prompt: dict[str, Any]) -> tuple[bool, Any, list[str], dict[str, Any]]:
        info = self.folders.object_info()
        outputs = set()
        for node_id in prompt:
            if "class_type" not in prompt[node_id]:
                title = (prompt[node_id].get("_meta") or {}).get("title")
                return False, _missing_node(node_id, None, title), [], {}
            class_type = prompt[node_id]["class_type"]
            if class_type not in NODES:
                title = (prompt[node_id].get("_meta") or {}).get("title", class_type)
                return False, _missing_node(node_id, class_type, title), [], {}
            if NODES[class_type].output_node:
                outputs.add(node_id)
        if not outputs:
            return False, _error("prompt_no_outputs", "Prompt has no outputs", ""), [], {}

        good_outputs, errors, node_errors, validated = set(), [], {}, {}
        for output in sorted(outputs):
            try:
                valid, reasons, _ = self.validate_inputs(prompt, output, validated, info, [])
            except Exception as ex:  # execution.py: exception_during_validation
                valid, reasons = False, [_error("exception_during_validation", "Exception when validating node",
                                                str(ex), {"exception_type": type(ex).__name__})]  # fmt: skip
                validated[output] = (False, reasons, output)
            if valid:
                good_outputs.add(output)
                continue
            errors.append((output, reasons))
            for node_id, result in validated.items():
                if result[0] is not True and result[1]:
                    entry = node_errors.setdefault(
                        node_id,
                        {"errors": result[1], "dependent_outputs": [], "class_type": prompt[node_id]["class_type"]},
                    )
                    entry["dependent_outputs"].append(output)
        if not good_outputs:
            details = "\n".join(f"{e['message']}: {e['details']}" for _o, reasons in errors for e in reasons)
            error = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details)
            return False, error, list(good_outputs), node_errors
        return True, None, sorted(good_outputs), node_errors

    def validate_inputs(
        self,
        prompt: dict[str, Any],
        unique_id: str,
        validated: dict[str, Any],
        info: dict[str, Any],
        visiting: list[str],
    ) -> tuple[bool, list[dict[str, Any]], str]:
        if unique_id in validated:
            return validated[unique_id]
        if unique_id in visiting:  # execution.py: dependency_cycle
            cycle = [*visiting[visiting.index(unique_id) :], unique_id]
            path = " -> ".join(f"{n} ({prompt[n]['class_type']})" for n in cycle)
            for node_id in dict.fromkeys(cycle):
                validated[node_id] = (False, [_error("dependency_cycle", "Dependency cycle detected", path,
                                                     {"node_id": node_id, "cycle_nodes": list(dict.fromkeys(cycle))})],
                                      node_id)  # fmt: skip
            return validated[unique_id]
        inputs = prompt[unique_id].get("inputs", {})
        node = NODES[prompt[unique_id]["class_type"]]
        described = info[node.class_type]["input"]
        errors: list[dict[str, Any]] = []
        valid = True
        for item in node.inputs:
            spec = described.get("optional" if item.optional else "required", {})[item.name]
            input_type = spec[0] if isinstance(spec[0], str) else "COMBO_V1"
            extra = spec[1] if len(spec) > 1 else {}
            config = [spec[0], extra]
            if item.name not in inputs:
                if not item.optional:
                    errors.append(_error("required_input_missing", "Required input is missing", item.name,
                                         {"input_name": item.name}))  # fmt: skip
                continue
            value = inputs[item.name]
            if isinstance(value, list):
                if len(value) != 2:
                    errors.append(
                        _error(
                            "bad_linked_input",
                            "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                            item.name,
                            {"input_name": item.name, "input_config": config, "received_value": value},
                        )
                    )
                    continue  # fmt: skip
                source_id, slot = str(value[0]), value[1]
                source = NODES[prompt[source_id]["class_type"]]  # a missing node raises: exception_during_validation
                received = source.outputs[slot].type
                if not validate_node_input(received, item.type):
                    details = f"{item.name}, received_type({received}) mismatch input_type({item.type})"
                    errors.append(_error("return_type_mismatch", "Return type mismatch between linked nodes", details,
                                         {"input_name": item.name, "input_config": config, "received_type": received,
                                          "linked_node": value}))  # fmt: skip
                    continue
                visiting.append(unique_id)
                try:
                    result = self.validate_inputs(prompt, source_id, validated, info, visiting)
                finally:
                    visiting.pop()
                if result[0] is False:
                    valid = False
                continue
            try:
                if isinstance(value, dict) and "__value__" in value:
                    value = value["__value__"]
                value = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}.get(item.type, lambda v: v)(value)
                inputs[item.name] = value
            except (TypeError, ValueError) as ex:
                errors.append(_error("invalid_input_type", f"Failed to convert an input value to a {item.type} value",
                                     f"{item.name}, {value}, {ex}", {"input_name": item.name, "input_config": config,
                                     "received_value": value, "exception_message": str(ex)}))  # fmt: skip
                continue
            if item.name in node.custom_validation:
                continue  # checked by the node's VALIDATE_INPUTS below, not by the generic range/list checks
            if "min" in extra and value < extra["min"]:
                errors.append(_error("value_smaller_than_min", f"Value {value} smaller than min of {extra['min']}",
                                     item.name, {"input_name": item.name, "input_config": config,
                                                 "received_value": value}))  # fmt: skip
                continue
            if "max" in extra and value > extra["max"]:
                errors.append(_error("value_bigger_than_max", f"Value {value} bigger than max of {extra['max']}",
                                     item.name, {"input_name": item.name, "input_config": config,
                                                 "received_value": value}))  # fmt: skip
                continue
            if item.type == "COMBO":
                options = spec[0] if input_type == "COMBO_V1" else extra.get("options", [])
                if value not in options:
                    listed = f"(list of length {len(options)})" if len(options) > 20 else str(options)
                    errors.append(_error("value_not_in_list", "Value not in list", f"{item.name}: {value!r} not in "
                                         f"{listed}", {"input_name": item.name,
                                                       "input_config": None if len(options) > 20 else config,
                                                       "received_value": value}))  # fmt: skip
                    continue
        for name in node.custom_validation:  # nodes.py LoadImage.VALIDATE_INPUTS
            image = inputs.get(name)
            if isinstance(image, str) and not self.folders.annotated(image, self.folders.input).is_file():
                errors.append(_error("custom_validation_failed", "Custom validation failed for node",
                                     f"{name} - Invalid image file: {image}", {"input_name": name}))  # fmt: skip
        previous = validated.get(unique_id, (True, [], unique_id))
        result = (
            previous[0] and valid and not errors,
            previous[1] + [e for e in errors if e not in previous[1]],
            unique_id,
        )
        validated[unique_id] = result
        return result


def _error(kind: str, message: str, details: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra or {}}


def _missing_node(node_id: str, class_type: str | None, title: str | None) -> dict[str, Any]:
    if class_type is None:
        name = title or f"ID #{node_id}"
        message = f"Node '{name}' has no class_type. The workflow may be corrupted or a custom node is missing."
    else:
        message = f"Node '{title}' not found. The custom node may not be installed."
    return _error("missing_node_type", message, f"Node ID '#{node_id}'",
                  {"node_id": node_id, "class_type": class_type, "node_title": title})  # fmt: skip


# ---------------------------------------------------------------------------------------------------- the nodes


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _pixels_digest(pixels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray((pixels * 255).round().astype(np.uint8)).tobytes()).hexdigest()


def _picture(digest: str, width: int, height: int, batch: int) -> np.ndarray:
    """A smooth picture of ``width`` x ``height`` drawn from ``digest``: (B, H, W, 3) floats like an IMAGE tensor."""
    rng = np.random.default_rng(int(digest[:16], 16))
    out = []
    for _ in range(batch):
        coarse = Image.fromarray((rng.random((4, 4, 3)) * 255).astype(np.uint8), "RGB")
        out.append(np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0)
    return np.stack(out)


class Executor:
    """Runs one prompt node by node; ``send`` is PromptServer.send_sync bound to the prompt's client."""

    def __init__(self, server: PromptServer) -> None:
        self.server = server
        self.cache: dict[str, tuple[tuple[Any, ...], dict[str, Any] | None]] = {}

    def signature(self, prompt: dict[str, Any], node_id: str, memo: dict[str, str]) -> str:
        """comfy_execution/caching.py CacheKeySetInputSignature: class, constants, and the inputs' signatures."""
        if node_id not in memo:
            node = prompt[node_id]
            parts: list[Any] = [node["class_type"]]
            for name, value in sorted(node["inputs"].items()):
                if isinstance(value, list):
                    parts.append([name, self.signature(prompt, str(value[0]), memo), value[1]])
                else:
                    parts.append([name, value])
            if node["class_type"] == "LoadImage":  # LoadImage.IS_CHANGED: the file's sha256
                path = self.server.folders.annotated(str(node["inputs"]["image"]), self.server.folders.input)
                parts.append(hashlib.sha256(path.read_bytes()).hexdigest())
            memo[node_id] = _digest(parts)
        return memo[node_id]

    def order(self, prompt: dict[str, Any], outputs: list[str]) -> list[str]:
        seen: list[str] = []

        def visit(node_id: str) -> None:
            if node_id in seen:
                return
            for value in prompt[node_id]["inputs"].values():
                if isinstance(value, list):
                    visit(str(value[0]))
            seen.append(node_id)

        for output in outputs:
            visit(output)
        return seen

    def execute(
        self, prompt: dict[str, Any], prompt_id: str, extra: dict[str, Any], outputs: list[str]
    ) -> dict[str, Any]:
        """execution.py PromptExecutor.execute_async; returns the history result and status."""
        client_id = extra.get("client_id")
        fault = self.server.fault()
        messages: list[Any] = []

        def message(event: str, data: dict[str, Any], broadcast: bool = False) -> None:
            data = {**data, "timestamp": int(time.time() * 1000)}
            messages.append([event, data])
            if client_id is not None or broadcast:
                self.server.send_sync(event, data, client_id)

        self.server.interrupt_flag.clear()  # nodes.interrupt_processing(False) at the start of every prompt
        message("execution_start", {"prompt_id": prompt_id})
        memo: dict[str, str] = {}
        order = self.order(prompt, outputs)
        cached = [n for n in order if self.signature(prompt, n, memo) in self.cache]
        message("execution_cached", {"nodes": cached, "prompt_id": prompt_id})
        values: dict[str, tuple[Any, ...]] = {}
        ui_outputs: dict[str, Any] = {}
        executed: list[str] = []
        progress: dict[str, dict[str, Any]] = {}
        for node_id in order:
            class_type = prompt[node_id]["class_type"]
            key = self.signature(prompt, node_id, memo)
            if key in self.cache:
                values[node_id], ui = self.cache[key]
                if ui:
                    ui_outputs[node_id] = ui
                    self.server.send_sync("executed", {"node": node_id, "display_node": node_id, "output": ui,
                                                       "prompt_id": prompt_id}, client_id)  # fmt: skip
                continue
            inputs = {
                name: values[str(value[0])][value[1]] if isinstance(value, list) else value
                for name, value in prompt[node_id]["inputs"].items()
            }
            if client_id is not None:
                self.server.last_node_id = node_id
                self.server.send_sync("executing", {"node": node_id, "display_node": node_id, "prompt_id": prompt_id},
                                      client_id)  # fmt: skip
            progress[node_id] = {
                "value": 0,
                "max": 1,
                "state": "running",
                "node_id": node_id,
                "prompt_id": prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }
            self.server.send_sync("progress_state", {"prompt_id": prompt_id, "nodes": progress}, client_id)
            try:
                if self.server.interrupt_flag.is_set():  # nodes.before_node_execution
                    raise Interrupted()
                if fault.get("fail_node") == class_type:
                    raise RuntimeError(f"stand-in fault: {class_type} failed")
                result, ui = self.run_node(class_type, inputs, node_id, prompt_id, client_id, fault, progress)
            except Interrupted:
                message(
                    "execution_interrupted",
                    {"prompt_id": prompt_id, "node_id": node_id, "node_type": class_type, "executed": executed},
                    broadcast=True,
                )
                return self._history(ui_outputs, "error", False, messages)  # fmt: skip
            except Exception as ex:  # execution.py execute(): the error is reported, the prompt stops
                message("execution_error", {
                    "prompt_id": prompt_id, "node_id": node_id, "node_type": class_type, "executed": executed,
                    "exception_message": f"{ex}\n", "exception_type": type(ex).__name__,
                    "traceback": traceback.format_tb(ex.__traceback__),
                    "current_inputs": {k: [str(v)] for k, v in inputs.items() if not isinstance(v, np.ndarray)},
                    "current_outputs": [],
                })  # fmt: skip
                return self._history(ui_outputs, "error", False, messages)
            progress[node_id]["state"] = "finished"
            values[node_id] = result
            self.cache[key] = (result, ui)
            executed.append(node_id)
            if ui:
                ui_outputs[node_id] = ui
                if client_id is not None:
                    self.server.send_sync("executed", {"node": node_id, "display_node": node_id, "output": ui,
                                                       "prompt_id": prompt_id}, client_id)  # fmt: skip
        message("execution_success", {"prompt_id": prompt_id})
        return self._history(ui_outputs, "success", True, messages)

    @staticmethod
    def _history(ui_outputs: dict[str, Any], status: str, completed: bool, messages: list[Any]) -> dict[str, Any]:
        meta = {n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n} for n in ui_outputs}
        return {"outputs": ui_outputs, "meta": meta,
                "status": {"status_str": status, "completed": completed, "messages": messages}}  # fmt: skip

    # -------------------------------------------------------------------------------------------- node bodies

    def run_node(
        self, class_type: str, inputs: dict[str, Any], node_id: str, prompt_id: str, client_id: str | None,
        fault: dict[str, Any], progress: dict[str, dict[str, Any]],
    ) -> tuple[tuple[Any, ...], dict[str, Any] | None]:  # fmt: skip
        folders = self.server.folders
        if class_type in ("UNETLoader", "DualCLIPLoader", "VAELoader", "ImageOnlyCheckpointLoader"):
            token = {"class": class_type, **{k: v for k, v in inputs.items()}}
            return tuple(dict(token, output=i) for i in range(len(NODES[class_type].outputs))), None
        if class_type == "LoraLoaderModelOnly":
            if inputs["strength_model"] == 0:  # nodes.py LoraLoader.load_lora: strength 0 returns the model as is
                return (inputs["model"],), None
            return ({**inputs["model"], "loras": [*inputs["model"].get("loras", []),
                                                  [inputs["lora_name"], inputs["strength_model"]]]},), None  # fmt: skip
        if class_type == "ModelSamplingAuraFlow":
            return ({**inputs["model"], "shift": inputs["shift"], "sampling": inputs.get("sampling", "flow")},), None
        if class_type == "CLIPTextEncode":
            return ({"text": inputs["text"], "clip": inputs["clip"]},), None
        if class_type == "FluxGuidance":
            return ({**inputs["conditioning"], "guidance": inputs["guidance"]},), None
        if class_type == "ConditioningZeroOut":
            return ({**inputs["conditioning"], "zero": True},), None
        if class_type == "ReferenceLatent":
            latent = inputs.get("latent")
            refs = [*inputs["conditioning"].get("reference_latents", [])] + ([latent["digest"]] if latent else [])
            return ({**inputs["conditioning"], "reference_latents": refs},), None
        if class_type == "CLIPVisionEncode":
            return ({"image": _pixels_digest(inputs["image"]), "crop": inputs["crop"]},), None
        if class_type == "Hunyuan3Dv2Conditioning":
            return (
                {"vision": inputs["clip_vision_output"]},
                {"vision": inputs["clip_vision_output"], "zero": True},
            ), None
        if class_type == "EmptySD3LatentImage":
            w, h, b = inputs["width"], inputs["height"], inputs["batch_size"]
            return ({"width": w, "height": h, "batch": b, "digest": _digest("empty", w, h, b)},), None
        if class_type == "EmptyLatentHunyuan3Dv2":
            r, b = inputs["resolution"], inputs["batch_size"]
            return ({"type": "hunyuan3dv2", "resolution": r, "batch": b, "digest": _digest("empty3d", r, b)},), None
        if class_type == "LoadImage":
            path = folders.annotated(inputs["image"], folders.input)
            with Image.open(path) as handle:
                pixels = np.asarray(ImageOps.exif_transpose(handle).convert("RGB"), dtype=np.float32) / 255.0
            return (pixels[None], np.zeros((1, 64, 64), dtype=np.float32)), None
        if class_type == "FluxKontextImageScale":  # nodes_flux.py FluxKontextImageScale.execute
            image = inputs["image"]
            height, width = image.shape[1], image.shape[2]
            _, new_w, new_h = min((abs(width / height - w / h), w, h) for w, h in KONTEXT_RESOLUTIONS)
            scaled = [np.asarray(Image.fromarray((i * 255).round().astype(np.uint8)).resize(
                (new_w, new_h), Image.Resampling.LANCZOS), dtype=np.float32) / 255.0 for i in image]  # fmt: skip
            return (np.stack(scaled),), None
        if class_type == "VAEEncode":
            pixels = inputs["pixels"]
            height, width = pixels.shape[1] // 8 * 8, pixels.shape[2] // 8 * 8
            crop = pixels[:, :height, :width, :3]
            return ({"width": width, "height": height, "batch": crop.shape[0], "pixels": crop,
                     "digest": _digest("encoded", _pixels_digest(crop))},), None  # fmt: skip
        if class_type == "KSampler":
            return (self._sample(inputs, node_id, prompt_id, client_id, fault, progress),), None
        if class_type == "VAEDecode":
            latent = inputs["samples"]
            if "pixels" in latent:
                return (latent["pixels"],), None
            return (_picture(latent["digest"], latent["width"], latent["height"], latent["batch"]),), None
        if class_type == "VAEDecodeHunyuan3D":
            return ({"digest": inputs["samples"]["digest"], "octree_resolution": inputs["octree_resolution"]},), None
        if class_type == "VoxelToMesh":
            return ({"digest": _digest(inputs["voxel"], inputs["algorithm"], inputs["threshold"])},), None
        if class_type == "SaveImage":
            return (inputs["images"],), {"images": self._save_images(inputs["images"], inputs["filename_prefix"])}
        if class_type == "SaveGLB":
            return (), {"3d": [self._save_glb(inputs["mesh"], inputs["filename_prefix"])]}
        raise RuntimeError(f"the stand-in cannot run {class_type}")

    def _sample(self, inputs: dict[str, Any], node_id: str, prompt_id: str, client_id: str | None,
                fault: dict[str, Any], progress: dict[str, dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
        latent = inputs["latent_image"]
        steps = inputs["steps"]
        for step in range(1, steps + 1):
            time.sleep(float(fault.get("step_delay_s", 0)))
            # main.py hijack_progress: throw_exception_if_processing_interrupted, then the progress message
            if self.server.interrupt_flag.is_set():
                raise Interrupted()
            self.server.send_sync("progress", {"value": step, "max": steps, "prompt_id": prompt_id, "node": node_id},
                                  client_id)  # fmt: skip
            progress[node_id].update(value=step, max=steps)
            self.server.send_sync("progress_state", {"prompt_id": prompt_id, "nodes": progress}, client_id)
        keep = {k: v for k, v in inputs.items() if k != "latent_image"}
        return {k: v for k, v in latent.items() if k not in ("pixels",)} | {"digest": _digest(keep, latent["digest"])}

    def _save_path(self, prefix: str, extension: str) -> tuple[Path, str, str]:
        """folder_paths.get_save_image_path: subfolder from the prefix, counter after the highest existing one."""
        subfolder = os.path.dirname(os.path.normpath(prefix))
        filename = os.path.basename(os.path.normpath(prefix))
        folder = self.server.folders.output / subfolder
        if os.path.commonpath((self.server.folders.output, folder.resolve())) != str(self.server.folders.output):
            raise RuntimeError("**** ERROR: Saving image outside the output folder is not allowed.")
        folder.mkdir(parents=True, exist_ok=True)
        counters = [
            int(p.name[len(filename) + 1 :].split("_")[0])
            for p in folder.iterdir()
            if p.name.startswith(filename + "_") and p.name[len(filename) + 1 :].split("_")[0].isdigit()
        ]
        counter = max(counters, default=0) + 1  # fmt: skip
        name = f"{filename}_{counter:05}_.{extension}"
        return folder / name, name, subfolder

    def _save_images(self, images: np.ndarray, prefix: str) -> list[dict[str, str]]:
        results = []
        for image in images:  # nodes.py SaveImage.save_images
            path, name, subfolder = self._save_path(prefix, "png")
            Image.fromarray(np.clip(image * 255.0, 0, 255).astype(np.uint8)).save(path, compress_level=4)
            results.append({"filename": name, "subfolder": subfolder, "type": "output"})
        return results

    def _save_glb(self, mesh: dict[str, Any], prefix: str) -> dict[str, str]:
        import trimesh

        radius = 0.5 + int(mesh["digest"][:4], 16) / 0xFFFF
        path, name, subfolder = self._save_path(prefix, "glb")
        path.write_bytes(trimesh.creation.icosphere(subdivisions=2, radius=radius).export(file_type="glb"))
        return {"filename": name, "subfolder": subfolder, "type": "output"}


# ---------------------------------------------------------------------------------------------------- the server


class PromptServer:
    def __init__(self, folders: Folders, fault_file: Path | None, calls_log: Path | None) -> None:
        self.folders = folders
        self.fault_file, self.calls_log = fault_file, calls_log
        self.validator = Validator(folders)
        self.executor = Executor(self)
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.messages: asyncio.Queue[tuple[str, Any, str | None]] | None = None
        self.mutex = threading.RLock()
        self.not_empty = threading.Condition(self.mutex)
        self.queue: list[tuple[Any, ...]] = []
        self.currently_running: dict[int, tuple[Any, ...]] = {}
        self.history: dict[str, Any] = {}
        self.number = 0
        self.task_counter = 0
        self.last_node_id: str | None = None
        self.interrupt_flag = threading.Event()

    def fault(self) -> dict[str, Any]:
        if self.fault_file is not None and self.fault_file.is_file() and self.fault_file.read_text().strip():
            return dict(json.loads(self.fault_file.read_text()))
        return {}

    def log_call(self, route: str, body: Any) -> None:
        if self.calls_log is not None:
            with self.calls_log.open("a") as log:
                log.write(json.dumps({"route": route, "body": body}, default=str) + "\n")

    # --- messages (server.py send_sync / publish_loop / send_json)
    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        assert self.loop is not None and self.messages is not None
        self.loop.call_soon_threadsafe(self.messages.put_nowait, (event, data, sid))

    async def publish_loop(self) -> None:
        assert self.messages is not None
        while True:
            event, data, sid = await self.messages.get()
            message = {"type": event, "data": data}
            targets = list(self.sockets.values()) if sid is None else [self.sockets[sid]] if sid in self.sockets else []
            for ws in targets:
                try:
                    await ws.send_json(message)
                except (ConnectionError, RuntimeError) as err:
                    logger.warning("send error: %s", err)

    def queue_info(self) -> dict[str, Any]:
        with self.mutex:
            return {"exec_info": {"queue_remaining": len(self.queue) + len(self.currently_running)}}

    def queue_updated(self) -> None:
        self.send_sync("status", {"status": self.queue_info()})

    # --- execution.py PromptQueue + main.py prompt_worker
    def put(self, item: tuple[Any, ...]) -> None:
        with self.mutex:
            heapq.heappush(self.queue, item)
            self.queue_updated()
            self.not_empty.notify()

    def worker(self) -> None:
        while True:
            with self.not_empty:
                while not self.queue:
                    self.not_empty.wait()
                item = heapq.heappop(self.queue)
                item_id = self.task_counter
                self.currently_running[item_id] = item
                self.task_counter += 1
                self.queue_updated()
            _number, prompt_id, prompt, extra, outputs = item[:5]
            result = self.executor.execute(prompt, prompt_id, extra, outputs)
            with self.mutex:
                self.currently_running.pop(item_id)
                if len(self.history) > MAXIMUM_HISTORY_SIZE:
                    self.history.pop(next(iter(self.history)))
                self.history[prompt_id] = {"prompt": list(item[:5]), **result}
                self.queue_updated()
            if extra.get("client_id") is not None:
                self.send_sync("executing", {"node": None, "prompt_id": prompt_id}, extra["client_id"])
            self.last_node_id = None

    # --- routes
    def routes(self) -> web.RouteTableDef:
        routes = web.RouteTableDef()

        @routes.get("/ws")
        async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            sid = request.rel_url.query.get("clientId", "") or uuid.uuid4().hex
            self.sockets.pop(sid, None)
            self.sockets[sid] = ws
            try:
                await ws.send_json({"type": "status", "data": {"status": self.queue_info(), "sid": sid}})
                first = True
                async for msg in ws:
                    if msg.type == WSMsgType.TEXT:
                        try:
                            data = json.loads(msg.data)
                        except json.JSONDecodeError:
                            continue
                        if first and isinstance(data, dict) and data.get("type") == "feature_flags":
                            await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
                        first = False
            finally:
                if self.sockets.get(sid) is ws:
                    self.sockets.pop(sid, None)
            return ws

        @routes.post("/prompt")
        async def post_prompt(request: web.Request) -> web.Response:
            json_data = await request.json()
            self.log_call("POST /prompt", json_data)
            if "number" in json_data:
                number = float(json_data["number"])
            else:
                number = self.number
                if json_data.get("front"):
                    number = -number
                self.number += 1
            if "prompt" not in json_data:
                error = _error("no_prompt", "No prompt provided", "No prompt provided")
                return web.json_response({"error": error, "node_errors": {}}, status=400)
            prompt = json_data["prompt"]
            client_prompt_id = json_data.get("prompt_id")
            if client_prompt_id is None:
                prompt_id = str(uuid.uuid4())
            else:  # comfy_execution/jobs.py validate_job_id: a canonical lowercase UUID
                try:
                    if str(uuid.UUID(str(client_prompt_id))) != client_prompt_id:
                        raise ValueError(client_prompt_id)
                except ValueError:
                    error = _error(
                        "invalid_prompt_id",
                        "prompt_id must be a valid UUID",
                        "prompt_id must be a UUID "
                        "string in canonical lowercase hyphenated form; omit it to let the server generate one",
                    )
                    return web.json_response({"error": error, "node_errors": {}}, status=400)  # fmt: skip
                prompt_id = client_prompt_id
            valid, error, outputs, node_errors = self.validator.validate_prompt(prompt)
            extra_data = dict(json_data.get("extra_data", {}))
            if "client_id" in json_data:
                extra_data["client_id"] = json_data["client_id"]
            if not valid:
                logger.warning("invalid prompt: %s", error)
                return web.json_response({"error": error, "node_errors": node_errors}, status=400)
            extra_data["create_time"] = int(time.time() * 1000)
            self.put((number, prompt_id, prompt, extra_data, outputs))
            return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})

        @routes.get("/prompt")
        async def get_prompt(request: web.Request) -> web.Response:
            return web.json_response(self.queue_info())

        @routes.get("/queue")
        async def get_queue(request: web.Request) -> web.Response:
            with self.mutex:
                running = [list(x[:5]) for x in self.currently_running.values()]
                pending = [list(x[:5]) for x in self.queue]
            return web.json_response({"queue_running": running, "queue_pending": pending})

        @routes.post("/queue")
        async def post_queue(request: web.Request) -> web.Response:
            json_data = await request.json()
            self.log_call("POST /queue", json_data)
            with self.mutex:
                if json_data.get("clear"):
                    self.queue = []
                for prompt_id in json_data.get("delete", []):
                    self.queue = [x for x in self.queue if x[1] != prompt_id]
                    heapq.heapify(self.queue)
                self.queue_updated()
            return web.Response(status=200)

        @routes.post("/interrupt")
        async def post_interrupt(request: web.Request) -> web.Response:
            try:
                json_data = await request.json()
            except json.JSONDecodeError:
                json_data = {}
            self.log_call("POST /interrupt", json_data)
            prompt_id = json_data.get("prompt_id")
            with self.mutex:
                running = [x[1] for x in self.currently_running.values()]
            if not prompt_id or prompt_id in running:
                self.interrupt_flag.set()
            return web.Response(status=200)

        @routes.get("/history")
        async def get_history(request: web.Request) -> web.Response:
            max_items = request.rel_url.query.get("max_items")
            with self.mutex:
                items = list(self.history.items())
            if max_items is not None:
                items = items[-int(max_items) :]
            return web.json_response(_jsonable(dict(items)))

        @routes.get("/history/{prompt_id}")
        async def get_history_prompt_id(request: web.Request) -> web.Response:
            prompt_id = request.match_info["prompt_id"]
            with self.mutex:
                found = {prompt_id: self.history[prompt_id]} if prompt_id in self.history else {}
            return web.json_response(_jsonable(found))

        @routes.post("/history")
        async def post_history(request: web.Request) -> web.Response:
            json_data = await request.json()
            with self.mutex:
                if json_data.get("clear"):
                    self.history = {}
                for prompt_id in json_data.get("delete", []):
                    self.history.pop(prompt_id, None)
            return web.Response(status=200)

        @routes.get("/object_info")
        async def get_object_info(request: web.Request) -> web.Response:
            return web.json_response(self.folders.object_info())

        @routes.get("/object_info/{node_class}")
        async def get_object_info_node(request: web.Request) -> web.Response:
            node_class = request.match_info["node_class"]
            info = self.folders.object_info()
            return web.json_response({node_class: info[node_class]} if node_class in info else {})

        @routes.get("/models")
        async def list_model_types(request: web.Request) -> web.Response:
            return web.json_response(list(MODEL_FOLDERS))

        @routes.get("/models/{folder}")
        async def get_models(request: web.Request) -> web.Response:
            folder = request.match_info["folder"]
            if folder not in MODEL_FOLDERS:
                return web.Response(status=404)
            return web.json_response(self.folders.filenames(folder))

        @routes.get("/system_stats")
        async def system_stats(request: web.Request) -> web.Response:
            return web.json_response({
                "system": {"os": sys.platform, "comfyui_version": "stand-in", "python_version": sys.version,
                           "embedded_python": False, "argv": sys.argv},
                "devices": [],
            })  # fmt: skip

        @routes.post("/upload/image")
        async def upload_image(request: web.Request) -> web.Response:
            post = await request.post()
            return self.image_upload(post)

        @routes.get("/view")
        async def view_image(request: web.Request) -> web.StreamResponse:
            return self.view(request)

        return routes

    def image_upload(self, post: Any) -> web.Response:
        """server.py image_upload: into input/ (or the ``type`` folder), `` (i)`` suffix unless identical bytes."""
        image = post.get("image")
        upload_dir = self.folders.by_type(post.get("type") or "input")
        if upload_dir is None or image is None or not hasattr(image, "file") or not image.filename:
            return web.Response(status=400)
        subfolder = post.get("subfolder", "")
        folder = Path(os.path.join(upload_dir, os.path.normpath(subfolder)))
        filename = image.filename
        filepath = Path(os.path.abspath(folder / filename))
        if os.path.commonpath((upload_dir, filepath)) != str(upload_dir):
            return web.Response(status=400)
        folder.mkdir(parents=True, exist_ok=True)
        content = image.file.read()
        stem, suffix = os.path.splitext(filename)
        duplicate = False
        if post.get("overwrite") not in ("true", "1"):
            i = 1
            while filepath.exists():
                if hashlib.sha256(filepath.read_bytes()).digest() == hashlib.sha256(content).digest():
                    duplicate = True
                    break
                filename = f"{stem} ({i}){suffix}"
                filepath = folder / filename
                i += 1
        if not duplicate:
            filepath.write_bytes(content)
        self.log_call("POST /upload/image", {"name": filename, "subfolder": subfolder})
        return web.json_response({"name": filename, "subfolder": subfolder, "type": post.get("type") or "input"})

    def view(self, request: web.Request) -> web.StreamResponse:
        """server.py view_image: filename/subfolder/type, path checks, optional preview and channel."""
        query = request.rel_url.query
        if "filename" not in query:
            return web.Response(status=404)
        filename = query["filename"]
        output_dir = None
        for kind in ("output", "input", "temp"):
            if filename.endswith(f" [{kind}]"):
                filename, output_dir = filename[: -len(kind) - 3], self.folders.by_type(kind)
        if not filename:
            return web.Response(status=400)
        if filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        if output_dir is None:
            output_dir = self.folders.by_type(query.get("type", "output"))
        if output_dir is None:
            return web.Response(status=400)
        if "subfolder" in query:
            full = os.path.join(output_dir, query["subfolder"])
            if os.path.commonpath((os.path.abspath(full), str(output_dir))) != str(output_dir):
                return web.Response(status=403)
            output_dir = Path(full)
        file = Path(output_dir) / os.path.basename(filename)
        if not file.is_file():
            return web.Response(status=404)
        headers = {"Content-Disposition": f'filename="{file.name}"'}
        if "preview" in query:
            info = query["preview"].split(";")
            fmt = info[0] if info[0] in ("webp", "jpeg") and "a" not in query.get("channel", "") else "webp"
            quality = int(info[-1]) if info[-1].isdigit() else 90
            with Image.open(file) as img:
                buffer = io.BytesIO()
                (img.convert("RGB") if fmt == "jpeg" or query.get("channel") == "rgb" else img).save(
                    buffer, format=fmt, quality=quality)  # fmt: skip
            return web.Response(body=buffer.getvalue(), content_type=f"image/{fmt}", headers=headers)
        channel = query.get("channel", "rgba")
        if channel in ("rgb", "a"):
            with Image.open(file) as img:
                if channel == "rgb":
                    out = img.convert("RGB")
                else:
                    alpha = img.getchannel("A") if img.mode == "RGBA" else Image.new("L", img.size, 255)
                    out = Image.new("RGBA", img.size)
                    out.putalpha(alpha)
                buffer = io.BytesIO()
                out.save(buffer, format="PNG")
            return web.Response(body=buffer.getvalue(), content_type="image/png", headers=headers)
        content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        return web.FileResponse(file, headers={**headers, "Content-Type": content_type,
                                               "X-Content-Type-Options": "nosniff"})  # fmt: skip


def _jsonable(value: Any) -> Any:
    """History holds the submitted prompt as given; numpy never gets there, but be strict about it."""
    return json.loads(json.dumps(value, default=str))


async def serve(args: argparse.Namespace) -> None:
    server = PromptServer(Folders(args.root), args.fault_file, args.calls_log)
    server.loop = asyncio.get_running_loop()
    server.messages = asyncio.Queue()
    app = web.Application(client_max_size=100 * 1024 * 1024)  # server.py: args.max_upload_size MB
    routes = server.routes()
    app.add_routes([web.route(r.method, "/api" + r.path, r.handler) for r in routes if isinstance(r, web.RouteDef)])
    app.add_routes(routes)
    threading.Thread(target=server.worker, name="prompt_worker", daemon=True).start()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    logger.info("To see the GUI go to: http://%s:%d", args.host, args.port)
    await server.publish_loop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", type=Path, required=True, help="A ComfyUI-like folder: models/, input/, output/.")
    parser.add_argument("--fault-file", type=Path, default=None, help="JSON test faults, read for every prompt.")
    parser.add_argument("--calls-log", type=Path, default=None, help="Append each call's route and body here.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
