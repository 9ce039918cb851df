"""``alch3mist lora eval``: the held-out prompts through the whole chain, without and with the LoRA.

For every held-out prompt of a dataset (``test.jsonl``) the chain runs twice — LoRA scale 0 (bare Kontext) and
``--scale`` (1 by default) — with the same seed, to the textured GLB and its multiview renders. The report
``<out>/report.html`` (and ``report.json``) shows the two runs side by side with their metrics:

- model-free image statistics of the edited image and of the views, always (``metrics.IMAGE_STAT_NAMES``);
- CLIP similarity between the views (and the edited image) and the material prompt, when ``--clip-model`` names a
  local CLIP model folder. The report says which metrics were not available, and why.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
import shutil
import statistics
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DatasetError, InvalidRequest, report_errors
from ..prompting.schema import TRIGGER_WORD
from .metrics import IMAGE_STAT_NAMES, ClipScorer, image_stats
from .records import PairRecord, read_test_records

if TYPE_CHECKING:
    from PIL import Image

    from ..chain import Chain

logger = logging.getLogger(__name__)

__all__ = ["EvalReport", "add_arguments", "evaluate", "main"]

REPORT_HTML, REPORT_JSON = "report.html", "report.json"
LORA_LINK_DIR = ".lora"


@dataclass
class RunResult:
    scale: float
    status: str
    folder: str  # relative to the report
    base: str | None = None
    textured: str | None = None
    glb: str | None = None
    views: list[str] = field(default_factory=list)
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class CaseResult:
    id: str
    edit_prompt: str
    base_prompt: str | None
    material: str
    seed: int
    runs: list[RunResult] = field(default_factory=list)


@dataclass
class EvalReport:
    lora: str
    data: str
    preset: str
    engine: str
    scales: list[float]
    created_at: str
    cases: list[CaseResult] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)


# --- command line ---------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lora", type=Path, required=True, help="The LoRA to evaluate (.safetensors).")
    parser.add_argument("--data", type=Path, required=True, help="Dataset folder; its test.jsonl prompts are used.")
    parser.add_argument("--out", type=Path, required=True, help="Report folder (report.html, report.json, runs).")
    parser.add_argument(
        "--preset", choices=("tiny", "full", "auto"), default=None, help="Base models (default: settings)."
    )
    parser.add_argument(
        "--engine", default=None, help="3D engine: preview | trellis | hunyuan3d (default: the server's default)."
    )
    parser.add_argument("--scale", type=float, default=1.0, help="LoRA scale of the 'with' column (the other is 0).")
    parser.add_argument("--limit", type=int, default=None, help="Evaluate only the first N held-out prompts.")
    parser.add_argument("--views", type=int, default=4, help="Multiview renders per run.")
    parser.add_argument("--view-size", type=int, default=256, help="Side of each view, pixels.")
    parser.add_argument(
        "--clip-model", type=Path, default=None, help="Local CLIP model folder for image-text similarity (optional)."
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing report folder.")


def _check_args(args: argparse.Namespace) -> None:
    if not 0 < args.scale <= 2:
        raise InvalidRequest("--scale must be in (0, 2]")
    if args.limit is not None and args.limit < 1:
        raise InvalidRequest("--limit must be at least 1")
    if not 1 <= args.views <= 36:
        raise InvalidRequest("--views must be between 1 and 36")
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        if not args.overwrite:
            raise InvalidRequest(f"report folder {args.out} already exists; pass --overwrite to replace it")
        shutil.rmtree(args.out) if args.out.is_dir() else args.out.unlink()


def main(args: argparse.Namespace) -> int:
    """Run the evaluation; 0 on success, 2 with a message on bad input, 1 on other failures."""
    return report_errors(lambda: _evaluate_and_log(args))


def _evaluate_and_log(args: argparse.Namespace) -> int:
    _check_args(args)
    report = evaluate(args)
    failed = [run for case in report.cases for run in case.runs if run.status != "succeeded"]
    logger.info("report: %s (%d prompts, %d failed runs)", args.out / REPORT_HTML, len(report.cases), len(failed))
    return 1 if failed else 0


# --- the evaluation -------------------------------------------------------------------------------------------


def evaluate(args: argparse.Namespace) -> EvalReport:
    """The whole evaluation as numbered steps; writes ``report.html`` and ``report.json`` under ``args.out``."""
    from tqdm.auto import tqdm

    # 1. Check the inputs: the LoRA file and the held-out prompts
    from ..models.lora import validate_lora_file

    validate_lora_file(args.lora)
    records = read_test_records(args.data)[: args.limit]
    if not records:
        raise DatasetError(f"{args.data} has no held-out prompts (test.jsonl); build it with --test-size > 0")

    # 2. A chain whose LoRA folder holds exactly this LoRA
    args.out.mkdir(parents=True, exist_ok=True)
    lora_name = _link_lora(args.lora, args.out / LORA_LINK_DIR)
    chain = _build_chain(args, args.out / LORA_LINK_DIR)
    scorer, clip_reason = ClipScorer.try_load(args.clip_model)
    report = EvalReport(
        lora=str(args.lora),
        data=str(args.data),
        preset=chain.models.preset,
        engine=args.engine or chain.default_engine,
        scales=[0.0, args.scale],
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    if clip_reason:
        report.unavailable["clip"] = clip_reason

    # 3. Each prompt at both scales, same seed
    for record in tqdm(records, desc="held-out prompts", unit="prompt"):
        case = _case(record)
        for scale in report.scales:
            case.runs.append(_run_one(chain, args, record, lora_name, scale, scorer))
        report.cases.append(case)

    # 4. Summaries and the report
    report.summary = _summarise(report)
    _write_report(args.out, report)
    return report


def _link_lora(path: Path, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    name = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in path.stem) or "lora"
    target = folder / f"{name}.safetensors"
    if target.exists() or target.is_symlink():
        target.unlink()
    try:
        os.symlink(path.resolve(), target)
    except OSError:
        shutil.copy2(path, target)
    return name


def _build_chain(args: argparse.Namespace, lora_dir: Path) -> Chain:
    from ..chain import build_chain
    from ..config import Settings

    overrides: dict[str, Any] = {"lora_dir": lora_dir, "default_lora": None, "data_dir": args.out / ".chain-data"}
    if args.preset is not None:
        overrides["preset"] = args.preset
    if args.engine is not None:
        overrides["engine_3d"] = args.engine
    return build_chain(Settings(**overrides))


def _case(record: PairRecord) -> CaseResult:
    material = record.material or record.edit_prompt.replace(TRIGGER_WORD, "").strip(" ,")
    return CaseResult(
        id=record.id,
        edit_prompt=record.edit_prompt,
        base_prompt=record.base_prompt,
        material=material,
        seed=record.seed if record.seed is not None else 0,
    )


def _run_one(
    chain: Chain, args: argparse.Namespace, record: PairRecord, lora: str, scale: float, scorer: ClipScorer | None
) -> RunResult:
    from ..chain import GenerationRequest
    from ..domain import LoraChoice

    folder = Path(record.id) / f"scale_{scale:g}"
    fields: dict[str, Any] = {
        "base_prompt": record.base_prompt,
        "edit_prompt": record.edit_prompt,
        "base_image": _original_of(args.data, record),
        "seed": record.seed if record.seed is not None else 0,
        "lora": LoraChoice(name=lora, scale=scale),
        "engine_3d": args.engine,
        "views": args.views,
        "view_size": args.view_size,
    }
    request = GenerationRequest(**fields)
    manifest = chain.run(request, args.out / folder)
    run = RunResult(scale=scale, status=manifest.status, folder=folder.as_posix())
    if manifest.error is not None:
        run.error = f"{manifest.error.stage}: {manifest.error.message}"
    artifacts = [folder / name for name in manifest.artifacts]
    run.base = _first(artifacts, "base.png")
    run.textured = _first(artifacts, "textured.png")
    run.glb = next((a.as_posix() for a in artifacts if a.suffix == ".glb"), None)
    run.views = [a.as_posix() for a in artifacts if a.parent.name == "views" and a.suffix == ".png"]
    run.metrics = _metrics(args.out, run, _material_text(record), scorer)
    return run


def _original_of(data: Path, record: PairRecord) -> Image.Image | None:
    """Imported datasets have no base prompt: their held-out originals are the chain's input images."""
    if record.base_prompt is not None or record.original is None:
        return None
    from PIL import Image

    with Image.open(data / record.original) as handle:
        return handle.convert("RGB")


def _first(artifacts: list[Path], name: str) -> str | None:
    return next((a.as_posix() for a in artifacts if a.name == name), None)


def _material_text(record: PairRecord) -> str:
    return record.material or record.edit_prompt.replace(TRIGGER_WORD, "").strip(" ,")


def _metrics(out: Path, run: RunResult, text: str, scorer: ClipScorer | None) -> dict[str, float]:
    from PIL import Image

    def load(rel: str) -> Image.Image:
        with Image.open(out / rel) as handle:
            return handle.convert("RGB")

    metrics: dict[str, float] = {}
    textured = load(run.textured) if run.textured else None
    views = [load(rel) for rel in run.views]
    if textured is not None:
        metrics.update({f"edit.{k}": v for k, v in image_stats(textured).items()})
    if views:
        per_view = [image_stats(view) for view in views]
        metrics.update({f"views.{k}": statistics.fmean(s[k] for s in per_view) for k in IMAGE_STAT_NAMES})
    if scorer is not None:
        if views:
            metrics["clip.views"] = statistics.fmean(scorer.similarity(views, text))
        if textured is not None:
            metrics["clip.edit"] = scorer.similarity([textured], text)[0]
    return metrics


def _summarise(report: EvalReport) -> dict[str, dict[str, float]]:
    """``{metric: {"0": mean at scale 0, "1": mean at the LoRA scale, "delta": difference}}`` over succeeded runs."""
    names = sorted({name for case in report.cases for run in case.runs for name in run.metrics})
    summary: dict[str, dict[str, float]] = {}
    for name in names:
        row: dict[str, float] = {}
        for scale in report.scales:
            values = [
                run.metrics[name]
                for case in report.cases
                for run in case.runs
                if run.scale == scale and name in run.metrics
            ]
            if values:
                row[f"{scale:g}"] = statistics.fmean(values)
        if len(row) == 2:
            low, high = (row[f"{scale:g}"] for scale in report.scales)
            row["delta"] = high - low
        summary[name] = row
    return summary


# --- the report -----------------------------------------------------------------------------------------------


def _write_report(out: Path, report: EvalReport) -> None:
    (out / REPORT_JSON).write_text(json.dumps(asdict(report), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / REPORT_HTML).write_text(render_html(report), encoding="utf-8")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _img(rel: str | None, alt: str, css: str = "") -> str:
    if rel is None:
        return '<div class="missing">not produced</div>'
    return f'<img src="{_e(rel)}" alt="{_e(alt)}" class="{css}" loading="lazy">'


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def render_html(report: EvalReport) -> str:
    """The report page: header, unavailable metrics, summary table, then each prompt without | with the LoRA."""
    low, high = report.scales
    heading = [f"without LoRA (scale {low:g})", f"with LoRA (scale {high:g})"]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Alch3mist LoRA evaluation — {_e(Path(report.lora).name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Alch3mist LoRA evaluation: {_e(Path(report.lora).name)}</h1>",
        f"<p>Data <code>{_e(report.data)}</code> · preset <b>{_e(report.preset)}</b> · 3D engine "
        f"<b>{_e(report.engine)}</b> · {len(report.cases)} held-out prompts · {_e(report.created_at)}</p>",
        _unavailable_html(report),
        _summary_html(report, heading),
    ]
    for case in report.cases:
        parts.append(_case_html(case, heading))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _unavailable_html(report: EvalReport) -> str:
    items = [f"<li><b>{_e(name)}</b>: {_e(reason)}</li>" for name, reason in sorted(report.unavailable.items())]
    failed = [
        f"<li>{_e(case.id)} at scale {run.scale:g}: {_e(run.error or run.status)}</li>"
        for case in report.cases
        for run in case.runs
        if run.status != "succeeded"
    ]
    text = '<h2>Metrics not available</h2><ul class="unavailable">'
    text += "".join(items) if items else "<li>none: every metric was computed</li>"
    text += "</ul>"
    if failed:
        text += '<h2>Failed runs</h2><ul class="failed">' + "".join(failed) + "</ul>"
    return text


def _summary_html(report: EvalReport, heading: list[str]) -> str:
    rows = []
    for name, row in report.summary.items():
        values = [row.get(f"{scale:g}") for scale in report.scales]
        rows.append(
            f"<tr><td>{_e(name)}</td><td>{_fmt(values[0])}</td><td>{_fmt(values[1])}</td>"
            f"<td>{_fmt(row.get('delta'))}</td></tr>"
        )
    return (
        '<h2>Summary (mean over prompts)</h2><table class="summary"><tr><th>metric</th>'
        f"<th>{_e(heading[0])}</th><th>{_e(heading[1])}</th><th>difference</th></tr>" + "".join(rows) + "</table>"
    )


def _case_html(case: CaseResult, heading: list[str]) -> str:
    cells = []
    for title, run in zip(heading, case.runs, strict=True):
        metrics = "".join(f"<tr><td>{_e(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in sorted(run.metrics.items()))
        views = "".join(_img(view, f"view {i}", "view") for i, view in enumerate(run.views))
        status = "" if run.status == "succeeded" else f'<p class="error">{_e(run.status)}: {_e(run.error)}</p>'
        cells.append(
            f"<td><h4>{_e(title)}</h4>{status}{_img(run.textured, 'edited image', 'edit')}"
            f'<div class="views">{views}</div>'
            + (f'<p><a href="{_e(run.glb)}">GLB</a></p>' if run.glb else "")
            + f'<table class="metrics">{metrics}</table></td>'
        )
    base = case.runs[0].base if case.runs else None
    prompt = f"<p><b>base</b>: {_e(case.base_prompt)}</p>" if case.base_prompt else ""
    return (
        f'<section class="case"><h3>{_e(case.id)} — {_e(case.material)}</h3>{prompt}'
        f"<p><b>edit</b>: {_e(case.edit_prompt)} · seed {case.seed}</p>"
        f'<table class="pair"><tr><td><h4>base image</h4>{_img(base, "base image", "edit")}</td>'
        + "".join(cells)
        + "</tr></table></section>"
    )


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 8px;vertical-align:top}
img.edit{width:256px;height:auto;image-rendering:pixelated}img.view{width:96px;margin:2px}
.missing{width:256px;padding:2em 0;text-align:center;background:#eee}.error{color:#b00}
section.case{margin:2em 0;border-top:2px solid #444}
"""


if __name__ == "__main__":  # pragma: no cover - python -m alch3mist.training.evaluate
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _parser = argparse.ArgumentParser(prog="alch3mist lora eval", description=(__doc__ or "").splitlines()[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
