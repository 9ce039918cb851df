"""``alch3mist engines check [NAME|URL] [--smoke]``: what a 3D engine server offers, and whether a job would work.

The first thing to run on a new GPU box. For each engine (the configured ones, one by name, or a URL) it connects and
prints what the server offers (TRELLIS / TRELLIS.2: the Gradio app's endpoints with their parameters, ranges and
defaults, and which endpoint does which step; Hunyuan3D: its version, field bounds and whether it can texture), what
a job would send (and which values would be clamped), and with ``--smoke`` runs one tiny job and checks the GLB.
Exit status: 0 when every engine checked is usable, 1 otherwise, 2 for a bad argument.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from ..config import Settings, get_settings
from ..errors import Alch3mistError, InvalidRequest, report_errors
from ..stages.progress import StageControl
from .base import EngineParams, ImageTo3DEngine, check_glb
from .hunyuan3d import Hunyuan3DEngine
from .registry import build_engines
from .trellis import ROLES, TrellisEngine, plan_call

Report = dict[str, Any]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        nargs="?",
        default=None,
        help="An engine name (trellis, hunyuan3d, preview) or a server URL; default: every configured engine.",
    )
    parser.add_argument(
        "--kind",
        choices=("trellis", "hunyuan3d"),
        default=None,
        help="What the URL serves (default: try TRELLIS' Gradio app, then Hunyuan3D's api_server).",
    )
    parser.add_argument("--smoke", action="store_true", help="Also run one tiny job and check the GLB it returns.")
    parser.add_argument("--out", type=Path, default=None, help="Folder for the --smoke GLBs (default: a temp folder).")
    parser.add_argument("--json", action="store_true", help="Print the report as JSON instead of text.")


def main(args: argparse.Namespace) -> int:
    """Check; 0 when every engine checked is usable, 1 otherwise, 2 for a bad argument."""
    return report_errors(lambda: _check(args, get_settings()))


def _check(args: argparse.Namespace, settings: Settings) -> int:
    engines = select_engines(args.target, args.kind, settings)
    reports = [check_engine(name, engine, smoke=args.smoke, out_dir=args.out) for name, engine in engines.items()]
    if args.json:
        sys.stdout.write(json.dumps(reports, indent=2, default=str) + "\n")
    else:
        sys.stdout.write("\n\n".join(render(report) for report in reports) + "\n")
    return 0 if all(report["usable"] for report in reports) else 1


def select_engines(target: str | None, kind: str | None, settings: Settings) -> dict[str, ImageTo3DEngine]:
    """The engines to check: a URL (of the given kind, or whichever answers), one configured name, or all of them."""
    timeout = settings.engine_timeout_s
    if target and "://" in target:
        if kind == "hunyuan3d":
            return {"hunyuan3d": _hunyuan(target, settings)}
        if kind == "trellis" or TrellisEngine(target, timeout_s=timeout).health().available:
            return {"trellis": TrellisEngine(target, timeout_s=timeout)}
        return {"hunyuan3d": _hunyuan(target, settings)}
    configured = build_engines(settings)
    if target is None:
        return configured
    if target not in configured:
        known = ", ".join(sorted(configured))
        raise InvalidRequest(f"no engine {target!r} is configured (configured: {known}); give its URL instead")
    return {target: configured[target]}


def _hunyuan(url: str, settings: Settings) -> Hunyuan3DEngine:
    return Hunyuan3DEngine(
        url,
        timeout_s=settings.engine_timeout_s,
        shape_deadline_s=settings.hunyuan3d_shape_deadline_s,
        texture_deadline_s=settings.hunyuan3d_texture_deadline_s,
    )


def check_engine(name: str, engine: ImageTo3DEngine, *, smoke: bool = False, out_dir: Path | None = None) -> Report:
    """Health, what the server offers, what a default job would send; a tiny job with ``smoke``."""
    health = engine.health()
    report: Report = {"engine": name, "usable": health.available, "health": health.model_dump()}
    if health.available:
        describe = DESCRIBERS.get(type(engine))
        if describe is not None:
            report |= describe(engine)
    if smoke and health.available:
        report["smoke"] = smoke_job(engine, out_dir)
        report["usable"] = report["smoke"]["ok"]
    return report


def _describe_trellis(engine: Any) -> Report:
    if engine.url is None:
        return {"mode": "in-process"}
    app = engine.describe()
    plan = plan_call(app, EngineParams())
    return {
        "variant": app.variant,
        "gradio": app.gradio_version,
        "steps": {role: app.roles[role].signature() for role in ROLES if role in app.roles},
        "parameters": {
            role: [p.describe() for p in app.roles[role].parameters if p.component != "Image"]
            for role in ("image_to_3d", "extract_glb")
        },
        "offered": [endpoint.signature() for endpoint in app.offered],
        "would_send": plan.sent,
        "app_defaults_kept": plan.app_defaults,
        "warnings": plan.warnings,
        "texture": "yes (the app bakes the texture into the GLB)",
    }


def _describe_hunyuan(engine: Any) -> Report:
    server = engine.describe()
    texture = engine.texture_capable(server)
    params = EngineParams()
    body, clamps = engine.request_body(_test_image(), params, server, params.texture and texture)
    return {
        "variant": server.label,
        "bounds": {name: list(bounds) for name, bounds in server.bounds.items()},
        "server_defaults": server.defaults,
        "texture": "yes" if texture else "no: started without --enable_tex (jobs get the shape only, with a warning)",
        "would_send": {k: v for k, v in body.items() if k != "image"} | {"image": "PNG, base64"},
        "warnings": [clamp.message(server.label) for clamp in clamps] + engine.ignored_warnings(server, body),
    }


DESCRIBERS: dict[type, Callable[[Any], Report]] = {TrellisEngine: _describe_trellis, Hunyuan3DEngine: _describe_hunyuan}


def smoke_job(engine: ImageTo3DEngine, out_dir: Path | None) -> Report:
    """One tiny job (a 256-px test object), with a progress bar; the GLB is checked like a real job's."""
    from tqdm import tqdm

    folder = out_dir or Path(tempfile.mkdtemp(prefix="alch3mist-engine-check-"))
    out_path = folder / f"{engine.name}-smoke.glb"
    started = time.perf_counter()
    with tqdm(total=100, desc=f"{engine.name} smoke job", unit="%", leave=False) as bar:

        def on_progress(fraction: float, message: str) -> None:
            bar.n = round(100 * fraction)
            bar.set_postfix_str(message[:40])
            bar.refresh()

        try:
            result = engine.generate(_test_image(), EngineParams(seed=1), out_path, StageControl(on_progress))
            check_glb(out_path.read_bytes(), engine.name)
        except Alch3mistError as exc:
            return {"ok": False, "error": exc.message, "seconds": round(time.perf_counter() - started, 1)}
    return {
        "ok": True,
        "glb": str(out_path),
        "glb_bytes": result.glb_bytes,
        "texture": result.texture,
        "sent": result.sent,
        "warnings": result.warnings,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _test_image() -> Image.Image:
    """A plain product shot: a two-coloured object centred on a light backdrop."""
    image = Image.new("RGB", (256, 256), (240, 240, 236))
    draw = ImageDraw.Draw(image)
    draw.ellipse((56, 72, 200, 216), fill=(60, 130, 80))
    draw.rectangle((104, 40, 152, 96), fill=(190, 120, 40))
    return image


def render(report: Report) -> str:
    """The report as indented text lines."""
    health = report["health"]
    state = "OK" if report["usable"] else "NOT USABLE"
    lines = [f"{report['engine']}: {state} — {health['detail']}" + (f" ({health['url']})" if health["url"] else "")]
    for key, value in report.items():
        if key in ("engine", "usable", "health"):
            continue
        lines.append(f"  {key.replace('_', ' ')}:")
        lines.extend(_render_value(value, "    "))
    return "\n".join(lines)


def _render_value(value: Any, indent: str) -> list[str]:
    if isinstance(value, dict):
        return [f"{indent}{k}: {_inline(v)}" for k, v in value.items()]
    if isinstance(value, list):
        return [f"{indent}- {item}" for item in value] or [f"{indent}(none)"]
    return [f"{indent}{value}"]


def _inline(value: Any) -> str:
    return json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
