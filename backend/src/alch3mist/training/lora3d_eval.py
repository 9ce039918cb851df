"""``alch3mist lora3d eval``: the hunyuan3d-local engine with and without a 3D LoRA on held-out pairs.

For every held-out pair (``DATA/test/<pair>``) and seed, the engine makes the shape twice — LoRA off, LoRA on at
``--scale`` — with the same seed, through the engine's own code (segmentation, hy3dgen, the LoRA loader). Each mesh is
scored against the pair's reference mesh after both are normalised (centred, longest side 1; orientation as given):
Chamfer distance (lower is better) and F-score at ``--threshold`` (higher is better). Both meshes are rendered
(``mesh.render``) next to each other. Outputs in ``--out``: ``report.json``, ``report.md`` and ``renders/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidRequest, report_errors
from .lora3d_data import load_mesh, read_pairs
from .shape_metrics import FSCORE_THRESHOLD, score

logger = logging.getLogger(__name__)

__all__ = ["Lora3DCase", "Lora3DReport", "add_arguments", "evaluate", "main"]

RENDER_VIEWS = 2
RENDER_SIZE = 256


@dataclass
class Lora3DCase:
    pair: str
    seed: int
    base: dict[str, float]  # chamfer, f_score
    lora: dict[str, float]
    renders: dict[str, list[str]] = field(default_factory=dict)  # "base"/"lora" -> render paths, relative to --out


@dataclass
class Lora3DReport:
    lora: str
    scale: float
    threshold: float
    cases: list[Lora3DCase]
    summary: dict[str, dict[str, float]] = field(default_factory=dict)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="Pairs folder with test/<pair>/{image.png,model.glb}.")
    parser.add_argument("--lora", type=Path, required=True, help="The 3D LoRA file (.safetensors).")
    parser.add_argument("--out", type=Path, required=True, help="Report folder (report.json, report.md, renders/).")
    parser.add_argument("--scale", type=float, default=1.0, help="LoRA scale of the 'with' runs.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="Seeds; every pair runs once per seed.")
    parser.add_argument("--threshold", type=float, default=FSCORE_THRESHOLD, help="F-score distance threshold.")
    parser.add_argument(
        "--preset", choices=("tiny", "full", "auto"), default=None, help="Base model (default: settings)."
    )
    parser.add_argument("--renders", type=int, default=RENDER_VIEWS, help="Views rendered per mesh (0 = none).")


def main(args: argparse.Namespace) -> int:
    return report_errors(lambda: _evaluate_and_log(args))


def _evaluate_and_log(args: argparse.Namespace) -> int:
    if args.lora.suffix != ".safetensors" or not args.lora.is_file():
        raise InvalidRequest(f"--lora {args.lora} is not an existing .safetensors file")
    if args.scale <= 0 or args.threshold <= 0:
        raise InvalidRequest("--scale and --threshold must be positive")
    report = evaluate(args)
    for key, values in report.summary.items():
        logger.info("%s: %s", key, ", ".join(f"{name} {value:.4f}" for name, value in values.items()))
    return 0


def evaluate(args: argparse.Namespace) -> Lora3DReport:
    """The whole evaluation, as numbered steps."""
    from PIL import Image

    from ..config import Settings
    from ..engines.base import EngineParams
    from ..engines.hunyuan3d_local import Hunyuan3DLocalEngine
    from ..stages.progress import StageControl

    # 1. Held-out pairs; the engine, reading 3D LoRAs from the LoRA file's folder
    pairs = read_pairs(args.data, "test")
    overrides: dict[str, Any] = {"hunyuan3d_local": True, "hunyuan3d_lora_dir": args.lora.parent}
    if args.preset is not None:
        overrides["preset"] = args.preset
    engine = Hunyuan3DLocalEngine(Settings(**overrides))
    name = args.lora.stem
    args.out.mkdir(parents=True, exist_ok=True)
    report = Lora3DReport(lora=str(args.lora), scale=args.scale, threshold=args.threshold, cases=[])

    # 2. Every pair and seed: the shape without and with the LoRA, scored against the reference, rendered
    for pair in pairs:
        reference = load_mesh(pair.mesh)
        with Image.open(pair.image) as handle:
            image = handle.convert("RGBA")
        for seed in args.seeds:
            scores: dict[str, dict[str, float]] = {}
            renders: dict[str, list[str]] = {}
            for label, lora in (("base", (None, 0.0)), ("lora", (name, args.scale))):
                shape = engine.generate_shape(image, EngineParams(seed=seed), StageControl(), lora=lora)
                result = score(shape.mesh, reference, threshold=args.threshold)
                scores[label] = {"chamfer": result.chamfer, "f_score": result.f_score}
                renders[label] = _render(shape.mesh, args.out, f"{pair.name}-seed{seed}-{label}", args.renders)
            report.cases.append(Lora3DCase(pair.name, seed, scores["base"], scores["lora"], renders))

    # 3. Summary and report files
    report.summary = _summarise(report.cases)
    (args.out / "report.json").write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    (args.out / "report.md").write_text(render_markdown(report), encoding="utf-8")
    return report


def _render(mesh: Any, out: Path, stem: str, views: int) -> list[str]:
    """A plain-grey GLB of ``mesh`` and ``views`` turntable renders of it; paths relative to ``out``."""
    import trimesh

    from ..mesh.glb import export_glb
    from ..mesh.render import render_glb, turntable

    folder = out / "renders" / stem
    folder.mkdir(parents=True, exist_ok=True)
    scene = trimesh.Scene()
    scene.add_geometry(mesh, geom_name=stem)
    export_glb(scene, folder / "mesh.glb")
    if views == 0:
        return []
    paths = render_glb(folder / "mesh.glb", turntable(views), size=RENDER_SIZE, out_dir=folder)
    return [path.relative_to(out).as_posix() for path in paths]


def _summarise(cases: list[Lora3DCase]) -> dict[str, dict[str, float]]:
    summary = {}
    for label in ("base", "lora"):
        runs = [getattr(case, label) for case in cases]
        summary[label] = {key: statistics.fmean(run[key] for run in runs) for key in ("chamfer", "f_score")}
    summary["delta (lora - base)"] = {
        key: summary["lora"][key] - summary["base"][key] for key in ("chamfer", "f_score")
    }
    return summary


def render_markdown(report: Lora3DReport) -> str:
    lines = [
        f"# 3D LoRA evaluation: {Path(report.lora).name} at scale {report.scale}",
        "",
        f"Chamfer distance (lower is better) and F-score at {report.threshold} (higher is better), meshes normalised "
        "to a longest side of 1.",
        "",
        "| pair | seed | chamfer base | chamfer LoRA | F base | F LoRA | renders |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case in report.cases:
        images = " ".join(f"![{label}]({path})" for label, paths in case.renders.items() for path in paths[:1])
        lines.append(
            f"| {case.pair} | {case.seed} | {case.base['chamfer']:.4f} | {case.lora['chamfer']:.4f} | "
            f"{case.base['f_score']:.3f} | {case.lora['f_score']:.3f} | {images} |"
        )
    lines += ["", "| runs | chamfer | F-score |", "| --- | --- | --- |"]
    lines += [f"| {key} | {v['chamfer']:.4f} | {v['f_score']:.3f} |" for key, v in report.summary.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - python -m alch3mist.training.lora3d_eval
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _parser = argparse.ArgumentParser(prog="alch3mist lora3d eval", description=(__doc__ or "").splitlines()[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
