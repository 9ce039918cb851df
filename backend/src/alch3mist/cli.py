"""``alch3mist`` — the command line: generate, retexture, serve, info, dataset build, lora train/eval/list."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Any, get_args

from .config import Settings, TextureEngineName
from .domain import LoraChoice
from .errors import report_errors

if TYPE_CHECKING:
    from .chain import Chain, GenerationRequest, Manifest

logger = logging.getLogger("alch3mist")

EXAMPLE_REQUEST = "Material Alch3mist, a cow with crocodile skin and a mane on fire"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return report_errors(lambda: handler(args))
    except KeyboardInterrupt:
        logger.error("interrupted")
        return 130
    except Exception as exc:  # the CLI's edge: an unexpected failure is logged with its traceback, then exit 1
        logger.exception("unexpected error: %s", exc)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alch3mist", description="Text → material-rich image → textured 3D model.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    _add_generate(commands)
    _add_module_command(commands, "retexture", "alch3mist.texturing.retexture", "Texture a given mesh (a request).")
    _add_serve(commands)
    _add_worker(commands)
    info = commands.add_parser("info", help="Show the preset, device, engines and LoRAs this machine would use.")
    _add_preset(info)
    info.set_defaults(handler=_info)

    dataset = commands.add_parser("dataset", help="Build the LoRA's (original, transformed) training pairs.")
    dataset_commands = dataset.add_subparsers(title="dataset commands", metavar="COMMAND")
    _add_module_command(
        dataset_commands,
        "build",
        "alch3mist.training.dataset",
        "Generate pairs from a prompt file, or import pairs made elsewhere (--originals/--transformed).",
    )
    _add_module_command(
        dataset_commands, "multiview", "alch3mist.training.multiview_dataset", "MV-Adapter data from meshes."
    )

    lora = commands.add_parser("lora", help="Train, evaluate and list Alch3mist LoRAs.")
    lora_commands = lora.add_subparsers(title="lora commands", metavar="COMMAND")
    _add_module_command(lora_commands, "train", "alch3mist.training.train", "Train the Kontext LoRA on a dataset.")
    _add_module_command(
        lora_commands, "eval", "alch3mist.training.evaluate", "Compare the chain with and without a LoRA."
    )
    lora_list = lora_commands.add_parser("list", help="List the LoRAs in the LoRA folder.")
    lora_list.set_defaults(handler=_lora_list)

    lora3d = commands.add_parser("lora3d", help="Train and evaluate LoRAs for the 3D stage (hunyuan3d-local).")
    lora3d_commands = lora3d.add_subparsers(title="lora3d commands", metavar="COMMAND")
    _add_module_command(
        lora3d_commands, "train", "alch3mist.training.lora3d", "Train a shape LoRA on (image, mesh) pairs."
    )
    _add_module_command(
        lora3d_commands, "eval", "alch3mist.training.lora3d_eval", "Compare shapes with/without a LoRA."
    )
    _add_module_command(lora3d_commands, "pairs", "alch3mist.training.lora3d_data", "Make pairs from finished jobs.")

    engines = commands.add_parser("engines", help="Check the 3D engine servers (TRELLIS, Hunyuan3D) before a job.")
    engine_commands = engines.add_subparsers(title="engines commands", metavar="COMMAND")
    _add_module_command(engine_commands, "check", "alch3mist.engines.check", "What an engine offers; --smoke runs one.")

    comfyui = commands.add_parser("comfyui", help="The ComfyUI workflows, and a ComfyUI server as image backend.")
    comfyui_commands = comfyui.add_subparsers(title="comfyui commands", metavar="COMMAND")
    _add_module_command(comfyui_commands, "export", "alch3mist.comfyui.export", "Write the four ComfyUI workflows.")
    _add_module_command(comfyui_commands, "check", "alch3mist.comfyui.check", "Report what a ComfyUI server has.")
    return parser


# ---------------------------------------------------------------------------------------------------- generate


def _add_generate(commands: Any) -> None:
    p = commands.add_parser("generate", help="Run the whole chain once and write the results to a folder.")
    p.add_argument(
        "request", nargs="?", default=None, help=f'What to make, in any language (e.g. "{EXAMPLE_REQUEST}").'
    )
    p.add_argument("--out", type=Path, required=True, help="Output folder (manifest.json, base.png, textured.png, …).")
    _add_preset(p)
    p.add_argument("--seed", type=int, default=None, help="Seed; the same request + seed + preset repeats the result.")
    p.add_argument("--lora", default=None, help="LoRA name from the LoRA folder (default: the server default).")
    p.add_argument("--lora-scale", type=float, default=1.0, help="LoRA strength; 0 runs the edit without it.")
    p.add_argument(
        "--engine-3d", default=None, help="preview | trellis | hunyuan3d | hunyuan3d-local (default: by preset)."
    )
    p.add_argument("--image", type=Path, default=None, help="Use this picture as the base image (skips FLUX.1-dev).")
    p.add_argument("--base-prompt", default=None, help="Already-written FLUX.1-dev prompt (skips the rewrite).")
    p.add_argument("--edit-prompt", default=None, help="Already-written Kontext instruction (starts with Alch3mist).")
    p.add_argument("--steps", type=int, default=None, help="FLUX.1-dev denoising steps (default: by preset).")
    p.add_argument("--edit-steps", type=int, default=None, help="Kontext denoising steps (default: by preset).")
    p.add_argument("--size", type=int, default=None, help="Base image side in pixels (default: by preset).")
    p.add_argument("--texture-size", type=int, default=None, help="GLB texture side in pixels.")
    p.add_argument("--views", type=int, default=None, help="Number of multiview renders (0 = none; default 8).")
    p.add_argument("--view-size", type=int, default=512, help="Side of each render in pixels.")
    p.add_argument(
        "--retexture",
        choices=("auto", "always", "never"),
        default="auto",
        help="Paint the engine's mesh with the texture step: auto = when it comes back untextured (default).",
    )
    p.add_argument(
        "--texture-engine",
        choices=get_args(TextureEngineName),
        default=None,
        help="Who paints it (default: ALCH3MIST_TEXTURE_ENGINE, else alch3mist, the built-in multi-view Kontext).",
    )
    p.set_defaults(handler=_generate)


def _generate(args: argparse.Namespace) -> int:
    from PIL import Image, UnidentifiedImageError

    from .chain import GenerationRequest, build_chain
    from .errors import InvalidRequest

    base_image = None
    if args.image is not None:
        try:
            base_image = Image.open(args.image)
            base_image.load()
        except (OSError, UnidentifiedImageError) as exc:
            raise InvalidRequest(f"--image {args.image}: not a readable image ({exc})") from exc
    req = GenerationRequest(
        request=args.request,
        base_prompt=args.base_prompt,
        edit_prompt=args.edit_prompt,
        base_image=base_image,
        seed=args.seed,
        engine_3d=args.engine_3d,
        lora=LoraChoice(name=args.lora, scale=args.lora_scale) if args.lora or args.lora_scale != 1.0 else None,
        steps=args.steps,
        edit_steps=args.edit_steps,
        size=args.size,
        texture_size=args.texture_size,
        views=args.views,
        view_size=args.view_size,
        retexture=args.retexture,
        texture_engine=args.texture_engine,
    )
    settings = _settings(args)
    chain = build_chain(settings)
    chain.validate(req)
    return finish(run_with_progress(chain, req, args.out), args.out)


def run_with_progress(chain: Chain, req: GenerationRequest, out: Path) -> Manifest:
    """Run the chain into ``out`` with one tqdm bar per stage; Ctrl-C cancels at the next step, twice aborts."""
    cancel = threading.Event()
    previous = signal.signal(signal.SIGINT, _cancel_on_signal(cancel))
    try:
        with _StageBars() as bars:
            return chain.run(req, out, on_event=bars.update, cancel=cancel)
    finally:
        signal.signal(signal.SIGINT, previous)


def finish(manifest: Manifest, out: Path, **extra: Any) -> int:
    """Log the warnings, print a JSON summary (status, folder, seed, ``extra``, artifacts but single views) and
    return the exit status: 0 succeeded, 1 failed, 130 cancelled."""
    for warning in manifest.warnings:
        logger.warning("%s", warning)
    summary = {"status": manifest.status, "out": str(out.resolve()), "seed": manifest.seed, **extra}
    summary["artifacts"] = [name for name in manifest.artifacts if not name.startswith("views/view_")]
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    if manifest.error is not None:
        logger.error("stage %s failed: %s", manifest.error.stage, manifest.error.message)
        return 1 if manifest.status == "failed" else 130
    return 0


def _cancel_on_signal(cancel: threading.Event) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        logger.warning("cancelling at the next step (Ctrl-C again to abort)")
        cancel.set()

    return handler


class _StageBars:
    """One tqdm bar per stage, fed by the chain's events."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._bars: dict[str, Any] = {}

    def __enter__(self) -> _StageBars:
        return self

    def __exit__(self, *exc: object) -> None:
        for bar in self._bars.values():
            bar.close()

    def update(self, event: Any) -> None:
        if event.stage is None:
            return
        bar = self._bars.get(event.stage)
        if bar is None:
            position = len(self._bars)  # stages start in order; a flow may skip some or have its own
            bar = self._tqdm(total=100, desc=f"{event.stage:>13}", position=position, leave=True, bar_format=_BAR)
            self._bars[event.stage] = bar
        if event.type == "progress":
            bar.n = round(event.stage_progress * 100)
            bar.set_postfix_str(event.message[:40], refresh=True)
        elif event.type == "artifact":
            bar.n = 100
            bar.set_postfix_str(event.artifact or "", refresh=True)


_BAR = "{desc} {percentage:3.0f}%|{bar:30}| {postfix}"


# ---------------------------------------------------------------------------------------------------- serve / info


def _add_serve(commands: Any) -> None:
    p = commands.add_parser("serve", help="Run the jobs API (one GPU, FIFO queue).")
    p.add_argument("--host", default=None, help="Interface to listen on (default ALCH3MIST_HOST or 127.0.0.1).")
    p.add_argument("--port", type=int, default=None, help="Port (default ALCH3MIST_PORT or 8765).")
    p.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="Serve without API keys on a non-loopback address: anyone who reaches the port can run jobs and read "
        "every job. Only on a trusted, isolated network (docs/api.md).",
    )
    _add_preset(p)
    p.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from .api.main import serve

    overrides = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
    if args.insecure_no_auth:
        overrides["insecure_no_auth"] = True
    serve(_settings(args, **overrides))
    return 0


def _add_worker(commands: Any) -> None:
    p = commands.add_parser(
        "worker",
        help="Run a cluster worker: one GPU, one job at a time, jobs from ALCH3MIST_BROKER_URL (docs/deploy.md).",
    )
    p.add_argument("--gpu", type=int, default=None, help="The GPU this worker uses (sets CUDA_VISIBLE_DEVICES).")
    p.add_argument("--name", default=None, help="Worker name (default alch3mist-gpu<N>@<host>); unique per worker.")
    _add_preset(p)
    p.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace) -> int:
    from .errors import UnsafeConfiguration
    from .jobs.cluster_worker import run_worker

    settings = _settings(args)
    if not settings.broker_url_value():
        raise UnsafeConfiguration("`alch3mist worker` needs ALCH3MIST_BROKER_URL (e.g. redis://host:6379/0)")
    return run_worker(settings, gpu=args.gpu, name=args.name)


def _info(args: argparse.Namespace) -> int:
    from .chain import build_chain

    settings = _settings(args)
    info: dict[str, Any] = build_chain(settings).info().model_dump(mode="json")
    if settings.comfyui_url:  # what the image backend's server has (nodes, model files, what is missing)
        from .comfyui.check import server_summary

        info["comfyui"] = server_summary(settings)
    sys.stdout.write(json.dumps(info, indent=2) + "\n")
    return 0


def _lora_list(args: argparse.Namespace) -> int:
    from .models.lora import list_loras

    settings = Settings()
    loras = list_loras(settings.loras_path)
    if not loras:
        sys.stdout.write(f"no LoRAs in {settings.loras_path}\n")
    for info in loras:
        sys.stdout.write(f"{info.name}\trank={info.rank}\t{info.size_bytes} bytes\t{info.file}\n")
    return 0


# ---------------------------------------------------------------------------------------------------- helpers


def _add_preset(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        choices=["tiny", "full", "auto"],
        default=None,
        help="tiny: random local models (CPU, offline); full: real weights; auto: full on CUDA "
        "(default: ALCH3MIST_PRESET).",
    )


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    if getattr(args, "preset", None):
        overrides["preset"] = args.preset
    return Settings(**overrides)


def _add_module_command(commands: Any, name: str, module: str, help_text: str) -> None:
    """A subcommand whose options and body live in a module exposing ``add_arguments`` and ``main``."""
    loaded = _import(module)
    parser = commands.add_parser(name, help=help_text, description=help_text)
    loaded.add_arguments(parser)
    parser.set_defaults(handler=loaded.main)


def _import(module: str) -> ModuleType:
    return importlib.import_module(module)


if __name__ == "__main__":
    raise SystemExit(main())
