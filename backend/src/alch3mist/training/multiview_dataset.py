"""``alch3mist dataset multiview``: MV-Adapter training data (Ortho10View / Rand6View layouts) from textured meshes.

For each mesh — a folder of GLB/glTF/OBJ/PLY files (``--meshes``) or the finished jobs of a data dir (``--jobs``) —
renders every view of the chosen layouts at ``--size``² and writes, in :mod:`.multiview_layout`'s conventions::

    OUT/ortho10/data/<id[:2]>/<id>/   color_NNNN.webp normal_NNNN.webp position_NNNN.webp depth_NNNN.exr meta.json
    OUT/rand6/data/<id[:2]>/<id>/     the same for 6 random views
    OUT/ids.json                      every finished id, ordered train | val | test (upstream slices this list)
    OUT/captions.json                 {id: caption}
    OUT/split.json                    the three lists and the train/val/test_indices to paste into a config

How each view is made: the exact G-buffer (:func:`~alch3mist.mesh.gbuffer.render_gbuffers`: VTK face ids + ray
maths) gives the mask, world normals, positions and depth; the colour is the file itself rendered by VTK's glTF
importer (:func:`~alch3mist.mesh.render.render_glb_cameras`) from the same cameras — every primitive, material, node
transform, vertex colour and metallic-roughness factor, lit by the renderer's neutral studio environment. That is
what MV-Adapter's colour targets are: the whole material rendered under soft environment light ("easylight", Blender
with an environment map in bpy-renderer), not an unlit albedo; the G-buffer's own albedo pass knows one texture only.

Resumable: an object's folder appears (by rename) only when complete, so a rerun skips finished ids. Deterministic:
random views depend on ``(--seed, id)`` alone. Shardable: ``--shard I/N`` keeps the ids whose stable hash is I mod N;
sharded runs write no index (they would race), the same command without ``--shard`` then renders what is missing and
writes it. ``--check`` verifies a dataset folder instead of building one.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ValidationError

from ..errors import Alch3mistError, InvalidMesh, InvalidRequest
from .multiview_layout import (
    BACKGROUNDS,
    LAYOUTS,
    VIEW_COUNTS,
    LayoutName,
    ViewCamera,
    check_scene,
    encode_normal,
    encode_position,
    layout_views,
    rgba,
    scene_dir,
    stable_hash,
    to_world,
    write_depth_exr,
    write_webp,
)

logger = logging.getLogger(__name__)

__all__ = [
    "CheckReport",
    "MeshSource",
    "RenderSettings",
    "SceneOutcome",
    "add_arguments",
    "check_dataset",
    "jobs_sources",
    "main",
    "mesh_dir_sources",
    "render_scene",
    "write_index",
]

MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
IDS_FILE, CAPTIONS_FILE, SPLIT_FILE = "ids.json", "captions.json", "split.json"
MAX_FACES = 4_000_000  # a training mesh may be large; the G-buffer's hard limit is 16.7 M
MAX_BYTES = 1 << 30
SIZES = (32, 4096)
RENDER_TIMEOUT_S = 3600.0
PARTIAL = ".partial"


def layout_root(out: Path, layout: LayoutName) -> Path:
    """``OUT/<layout>/data``: what a training config's ``root_dir`` points at."""
    return out / layout / "data"


# --------------------------------------------------------------------------------------------------------------------
# Sources: a mesh folder, or our jobs
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeshSource:
    """One object of the dataset: its id (folder name), mesh file and caption ("" when none is known)."""

    scene_id: str
    path: Path
    caption: str = ""


def mesh_dir_sources(folder: Path) -> list[MeshSource]:
    """Every GLB/glTF/OBJ/PLY file under ``folder`` (recursively), id = its file name without the suffix (characters
    outside ``A-Z a-z 0-9 _ . -`` become ``_``). Two files with one id are refused, naming both."""
    if not folder.is_dir():
        raise InvalidRequest(f"--meshes {folder}: not a folder")
    sources: dict[str, MeshSource] = {}
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in MESH_SUFFIXES and p.is_file()):
        scene_id = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem).lstrip("._-") or "mesh"
        scene_id = scene_id[:128]
        if scene_id in sources:
            raise InvalidRequest(
                f"{sources[scene_id].path} and {path} would both be id {scene_id!r}: rename one of them"
            )
        sources[scene_id] = MeshSource(scene_id, path)
    if not sources:
        raise InvalidRequest(f"--meshes {folder}: no {', '.join(MESH_SUFFIXES)} files")
    return list(sources.values())


class _JobPrompt(BaseModel):
    subject: str
    materials: list[str]


class JobManifest(BaseModel):
    """The fields of a job's ``manifest.json`` (``alch3mist.chain.Manifest``) this reader needs; others are ignored,
    so any manifest version with these fields reads."""

    status: str
    created_at: datetime | None = None
    request: str | None = None
    prompt: _JobPrompt | None = None
    engine_3d: str | None = None
    engine_is_preview: bool = False
    artifacts: list[str] = []

    def caption(self) -> str:
        """The textured object in a few words: ``subject, material, material`` (else the request)."""
        if self.prompt is not None:
            return ", ".join([self.prompt.subject.strip(), *(m.strip() for m in self.prompt.materials)])
        return (self.request or "").strip()


@dataclass(frozen=True)
class JobQuery:
    """``PATH[?since=YYYY-MM-DD&engine=NAME&text=WORDS&preview=include]``: the finished jobs (status succeeded, with a
    ``model.glb``) in PATH's job folders (PATH = a data dir holding ``jobs/``, or that ``jobs`` folder itself)."""

    folder: Path
    since: datetime | None = None
    engine: str | None = None
    text: str | None = None
    include_preview: bool = False

    @classmethod
    def parse(cls, query: str) -> JobQuery:
        location, _, filters = query.partition("?")
        values = {key: items[-1] for key, items in parse_qs(filters, keep_blank_values=True).items()}
        unknown = set(values) - {"since", "engine", "text", "preview"}
        if unknown:
            raise InvalidRequest(f"--jobs: unknown filter(s) {sorted(unknown)}; use since, engine, text, preview")
        folder = Path(location).expanduser()
        folder = folder / "jobs" if (folder / "jobs").is_dir() else folder
        if not folder.is_dir():
            raise InvalidRequest(f"--jobs {location}: no such folder (give a data dir or its jobs/ folder)")
        since = None
        if "since" in values:
            try:
                since = datetime.fromisoformat(values["since"])
            except ValueError as exc:
                raise InvalidRequest(f"--jobs since={values['since']!r}: not an ISO date ({exc})") from exc
            since = since if since.tzinfo else since.replace(tzinfo=UTC)
        preview = values.get("preview", "exclude")
        if preview not in ("include", "exclude"):
            raise InvalidRequest("--jobs preview= must be include or exclude")
        return cls(folder, since, values.get("engine"), values.get("text"), preview == "include")

    def accepts(self, manifest: JobManifest) -> bool:
        if manifest.status != "succeeded" or (manifest.engine_is_preview and not self.include_preview):
            return False
        if self.since is not None and (manifest.created_at is None or _aware(manifest.created_at) < self.since):
            return False
        if self.engine is not None and manifest.engine_3d != self.engine:
            return False
        haystack = " ".join([manifest.request or "", manifest.caption()]).lower()
        return self.text is None or self.text.lower() in haystack


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


GLB_ARTIFACT = "model.glb"  # alch3mist.stages.image_to_3d.GLB_NAME / stages.texture.GLB_NAME


def jobs_sources(query: str) -> list[MeshSource]:
    """The jobs ``query`` selects (see :class:`JobQuery`), id = the job id, caption from its prompt. A folder whose
    manifest is missing or unreadable is skipped with a log line (it may be a job still running)."""
    parsed = JobQuery.parse(query)
    sources = []
    for job_dir in sorted(p for p in parsed.folder.iterdir() if p.is_dir()):
        try:
            manifest = JobManifest.model_validate_json((job_dir / "manifest.json").read_bytes())
        except (OSError, ValidationError) as exc:
            logger.info("skipping %s: no readable manifest.json (%s)", job_dir.name, type(exc).__name__)
            continue
        glb = job_dir / GLB_ARTIFACT
        if not parsed.accepts(manifest) or not glb.is_file() or not ID_PATTERN.match(job_dir.name):
            continue
        sources.append(MeshSource(job_dir.name, glb, manifest.caption()))
    if not sources:
        raise InvalidRequest(f"--jobs {query}: no finished job with a {GLB_ARTIFACT} matches")
    return sources


def read_captions(path: Path) -> dict[str, str]:
    """A ``{id: caption}`` JSON file (the upstream ``*_captions.json`` form)."""
    try:
        captions = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"--captions {path}: not a readable JSON file ({exc})") from exc
    if not isinstance(captions, dict) or not all(isinstance(v, str) for v in captions.values()):
        raise InvalidRequest(f"--captions {path}: expected a JSON object {{id: caption}}")
    return {str(key): value for key, value in captions.items()}


def shard_of(scene_id: str, shards: int) -> int:
    """Which of ``shards`` shards renders ``scene_id``: a stable hash of the id alone (not of the listing order)."""
    return stable_hash("shard", scene_id) % shards


# --------------------------------------------------------------------------------------------------------------------
# Rendering one object
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderSettings:
    """What every object of a run is rendered with (picklable: workers get a copy)."""

    out: Path
    layouts: tuple[LayoutName, ...]
    size: int
    background: str
    seed: int


@dataclass(frozen=True)
class SceneOutcome:
    """One object's result: ``error`` is None when every layout was written."""

    scene_id: str
    seconds: float
    error: str | None = None


def missing_layouts(settings: RenderSettings, scene_id: str) -> list[LayoutName]:
    """The layouts of this run whose folder for ``scene_id`` is not there yet (a folder appears only complete)."""
    return [
        layout
        for layout in settings.layouts
        if not (scene_dir(layout_root(settings.out, layout), scene_id) / "meta.json").is_file()
    ]


def is_finished(settings: RenderSettings, scene_id: str) -> bool:
    return not missing_layouts(settings, scene_id)


def render_scene(source: MeshSource, settings: RenderSettings) -> SceneOutcome:
    """Render every layout of one object and move each folder into place; a bad mesh is an outcome, not a raise."""
    started = time.perf_counter()
    try:
        _render_scene(source, settings)
    except Alch3mistError as exc:
        logger.warning("%s (%s): %s", source.scene_id, source.path, exc.message)
        return SceneOutcome(source.scene_id, time.perf_counter() - started, exc.message)
    return SceneOutcome(source.scene_id, time.perf_counter() - started)


def _render_scene(source: MeshSource, settings: RenderSettings) -> None:
    from ..mesh.gbuffer import MeshArrays, _depth_range, render_gbuffers  # _depth_range: the G-buffer's planes
    from ..mesh.render import render_glb_cameras
    from ..texturing.mesh_input import MeshLimits, load_mesh

    # 1. Load: world space, y up, bounding box centred, longest side 1 (= bpy-renderer's normalize_scene(1.0))
    loaded = load_mesh(source.path, limits=MeshLimits(max_bytes=MAX_BYTES, max_faces=MAX_FACES))
    try:
        arrays = MeshArrays.from_trimesh(loaded.mesh)
    except ValueError as exc:
        raise InvalidMesh(f"{source.path.name}: {exc}") from exc
    radius = float(np.linalg.norm(arrays.vertices, axis=1).max())
    # 2. Views of every layout still missing, as G-buffer cameras in the mesh's frame
    layouts = missing_layouts(settings, source.scene_id)
    views = {layout: layout_views(layout, scene_id=source.scene_id, seed=settings.seed, radius=radius)
             for layout in layouts}  # fmt: skip
    all_views = [view for layout in layouts for view in views[layout]]
    cameras = [view.camera(settings.size) for view in all_views]
    with tempfile.TemporaryDirectory(prefix="alch3mist-multiview-") as tmp:
        # 3. Exact geometry: mask, normals, positions, depth
        buffers = render_gbuffers(arrays, cameras, timeout_s=RENDER_TIMEOUT_S)
        # 4. Colour: the file's own materials, lit, from the same cameras (node transforms + our normalisation)
        glb = _as_glb(source.path, loaded.source_format, Path(tmp))
        colours = render_glb_cameras(
            glb,
            cameras,
            scene_transform=np.linalg.inv(loaded.to_source).tolist(),
            depth_ranges=[_depth_range(arrays.vertices, camera) for camera in cameras],
            out_dir=Path(tmp) / "colour",
            timeout_s=RENDER_TIMEOUT_S,
        )
        # 5. Encode and write each layout's folder, then move it into place
        background = BACKGROUNDS[settings.background]
        offset = 0
        for layout in layouts:
            count = len(views[layout])
            _write_layout(
                settings, layout, source, views[layout], buffers[offset : offset + count],
                colours[offset : offset + count], background, len(arrays.faces),
            )  # fmt: skip
            offset += count


def _as_glb(path: Path, source_format: str, tmp: Path) -> Path:
    """The mesh as a GLB for VTK's importer: a GLB as it is; another format through trimesh, in its own coordinates
    (vertex colours and materials kept), read from bytes as :func:`load_mesh` reads it."""
    if source_format == "glb":
        return path
    import trimesh

    scene = trimesh.load(file_obj=io.BytesIO(path.read_bytes()), file_type=source_format, force="scene")
    target = tmp / "source.glb"
    target.write_bytes(trimesh.exchange.gltf.export_glb(scene))
    return target


def _write_layout(
    settings: RenderSettings,
    layout: LayoutName,
    source: MeshSource,
    views: list[ViewCamera],
    buffers: list[Any],
    colours: list[Path],
    background: tuple[float, float, float],
    faces: int,
) -> None:
    from PIL import Image

    final = scene_dir(layout_root(settings.out, layout), source.scene_id)
    partial = final.parent / f".{source.scene_id}{PARTIAL}"
    shutil.rmtree(partial, ignore_errors=True)  # a run killed midway leaves one behind
    partial.mkdir(parents=True)
    for view, buffer, colour_path in zip(views, buffers, colours, strict=True):
        mask = buffer.mask
        with Image.open(colour_path) as image:
            colour = _colour_under_mask(np.asarray(image.convert("RGBA")), mask)
        write_webp(partial / f"color_{view.index}.webp", rgba(colour / 255.0, mask, background))
        write_webp(partial / f"normal_{view.index}.webp", encode_normal(to_world(buffer.normal), mask, background))
        write_webp(
            partial / f"position_{view.index}.webp", encode_position(to_world(buffer.position), mask, background)
        )
        write_depth_exr(partial / f"depth_{view.index}.exr", buffer.depth, mask)
    meta = {
        "width": settings.size,
        "height": settings.size,
        "locations": [view.location(settings.size) for view in views],
        "alch3mist": {  # ours; upstream readers ignore it
            "layout": layout,
            "source": source.path.name,
            "faces": faces,
            "seed": settings.seed,
            "world": "z up, front -y (Blender); bounding box centred, longest side 1",
            "normal": "world space, n / 2 + 0.5",
            "position": "(p + 0.5) / 1.0, clamped to [0, 1]",
            "depth": "camera-space z, 65535 where empty",
            "background": list(BACKGROUNDS[settings.background]),
        },
    }
    (partial / "meta.json").write_text(json.dumps(meta, indent=1))  # last: a folder with meta.json is complete
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)


def _colour_under_mask(image: NDArray[np.uint8], mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """The colour render's RGB where the G-buffer sees the object. Both rasterise the same triangles with the same
    matrices, so their coverage agrees; an edge pixel where it does not takes its nearest rendered neighbour."""
    from scipy import ndimage

    rgb = image[..., :3].astype(np.float64)
    covered = image[..., 3] > 0
    if not covered.any():
        raise InvalidMesh("the colour render shows nothing of the mesh")
    if np.any(mask & ~covered):
        _, (rows, cols) = ndimage.distance_transform_edt(~covered, return_indices=True)
        rgb = rgb[rows, cols]
    return rgb


# --------------------------------------------------------------------------------------------------------------------
# The index: ids, captions, split
# --------------------------------------------------------------------------------------------------------------------


def parse_split(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(part) for part in text.split(","))
    except ValueError as exc:
        raise InvalidRequest(f"--split {text!r}: three numbers, e.g. 0.8,0.1,0.1") from exc
    if len(parts) != 3 or any(not math.isfinite(p) or p < 0 for p in parts) or not math.isclose(sum(parts), 1.0):
        raise InvalidRequest(f"--split {text!r}: three non-negative fractions that sum to 1")
    return parts[0], parts[1], parts[2]


def split_ids(ids: Iterable[str], fractions: tuple[float, float, float], seed: int) -> dict[str, list[str]]:
    """Train/val/test lists: ids ordered by a stable hash of ``(seed, id)``, cut at the fractions (rounded counts)."""
    ordered = sorted(ids, key=lambda scene_id: (stable_hash("split", seed, scene_id), scene_id))
    train = round(fractions[0] * len(ordered))
    val = round(fractions[1] * len(ordered))
    return {"train": ordered[:train], "val": ordered[train : train + val], "test": ordered[train + val :]}


def write_index(
    out: Path, captions: dict[str, str], fractions: tuple[float, float, float], seed: int
) -> dict[str, Any]:
    """Write ``ids.json`` (train | val | test order), ``captions.json``, ``split.json`` for the ids in ``captions``."""
    split = split_ids(captions, fractions, seed)
    ids = split["train"] + split["val"] + split["test"]
    train, val = len(split["train"]), len(split["val"])
    split_file = {
        "seed": seed,
        "fractions": list(fractions),
        **split,
        # paste into the MV-Adapter data config with scene_list: ids.json (MultiviewDataset slices the list)
        "train_indices": [0, train],
        "val_indices": [train, train + val],
        "test_indices": [train + val, None],
    }
    _write_json(out / IDS_FILE, ids)
    _write_json(out / CAPTIONS_FILE, {scene_id: captions[scene_id] for scene_id in ids})
    _write_json(out / SPLIT_FILE, split_file)
    return split_file


def _write_json(path: Path, value: Any) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(value, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(temporary, path)


# --------------------------------------------------------------------------------------------------------------------
# Checking a dataset folder
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class CheckReport:
    """What ``--check`` found: ``problems`` make the dataset unusable as it is; ``warnings`` do not."""

    scenes: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_dataset(out: Path, *, progress: bool = False) -> CheckReport:
    """Verify a dataset folder: the index files parse and agree; every listed id has a complete folder in every layout
    present (every file, images decode, EXR depth reads, cameras parse, masks agree); leftovers are warned about."""
    report = CheckReport()
    layouts = [layout for layout in LAYOUTS if layout_root(out, layout).is_dir()]
    if not layouts:
        report.problems.append(f"{out}: no {' or '.join(f'{name}/data' for name in LAYOUTS)} folder")
        return report
    ids = _check_index(out, report)
    folders: list[tuple[LayoutName, Path]] = []
    for layout in layouts:
        root = layout_root(out, layout)
        present = {path.name: path for path in root.glob("*/*") if path.is_dir() and not path.name.startswith(".")}
        report.warnings += [f"{layout}: unfinished folder {p.relative_to(out)}" for p in root.glob(f"*/.*{PARTIAL}")]
        expected = ids if ids is not None else sorted(present)
        report.problems += [
            f"{layout}: {scene_id} is listed but has no folder" for scene_id in expected if scene_id not in present
        ]
        report.warnings += [f"{layout}: {name} is not in {IDS_FILE}" for name in sorted(set(present) - set(expected))]
        folders += [(layout, present[scene_id]) for scene_id in expected if scene_id in present]
    for layout, folder in _progress(folders, progress, "checking"):
        report.problems += [f"{layout}: {problem}" for problem in check_scene(folder, VIEW_COUNTS[layout])]
        report.scenes += 1
    return report


def _check_index(out: Path, report: CheckReport) -> list[str] | None:
    try:
        ids = json.loads((out / IDS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        report.problems.append(f"{IDS_FILE}: unreadable ({exc}); sharded runs write none — rerun without --shard")
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) and ID_PATTERN.match(i) for i in ids):
        report.problems.append(f"{IDS_FILE}: not a list of ids")
        return None
    if len(set(ids)) != len(ids):
        report.problems.append(f"{IDS_FILE}: an id is listed twice")
    try:
        captions = json.loads((out / CAPTIONS_FILE).read_text(encoding="utf-8"))
        split = json.loads((out / SPLIT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        report.problems.append(f"{CAPTIONS_FILE} / {SPLIT_FILE}: unreadable ({exc})")
        return list(ids)
    if not isinstance(captions, dict) or not all(isinstance(v, str) for v in captions.values()):
        report.problems.append(f"{CAPTIONS_FILE}: not a {{id: caption}} object")
    else:
        missing = [scene_id for scene_id in ids if not captions.get(scene_id)]
        if missing:
            report.warnings.append(f'{CAPTIONS_FILE}: {len(missing)} id(s) have no caption (the trainer uses "")')
    try:
        ordered = list(split["train"]) + list(split["val"]) + list(split["test"])
        cuts = (split["train_indices"], split["val_indices"], split["test_indices"])
        consistent = ordered == ids and cuts[0][1] == len(split["train"]) == cuts[1][0]
    except (KeyError, TypeError, IndexError):
        consistent = False
    if not consistent:
        report.problems.append(f"{SPLIT_FILE}: its train/val/test lists and indices do not match {IDS_FILE}")
    return list(ids)


# --------------------------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--meshes", type=Path, default=None, help="Folder of GLB/glTF/OBJ/PLY meshes (recursive).")
    source.add_argument(
        "--jobs",
        default=None,
        metavar="QUERY",
        help="Finished jobs: DATA_DIR[?since=YYYY-MM-DD&engine=NAME&text=WORDS&preview=include] (captions from "
        "their prompts; preview-engine meshes only with preview=include).",
    )
    parser.add_argument("--out", type=Path, required=True, help="Dataset folder (created; reruns resume it).")
    parser.add_argument(
        "--layout", choices=(*LAYOUTS, "both"), default="both", help="Ortho10View, Rand6View or both (default)."
    )
    parser.add_argument("--size", type=int, default=1024, help="Image side in pixels (default 1024, as upstream).")
    parser.add_argument(
        "--background", choices=sorted(BACKGROUNDS), default="gray", help="RGB stored under transparent pixels."
    )
    parser.add_argument("--captions", type=Path, default=None, help="JSON {id: caption}; overrides job captions.")
    parser.add_argument("--split", default="0.8,0.1,0.1", help="Train,val,test fractions (default 0.8,0.1,0.1).")
    parser.add_argument("--workers", type=int, default=1, help="Meshes rendered at once (processes; default 1).")
    parser.add_argument("--shard", default=None, metavar="I/N", help="Render only shard I of N (0 <= I < N).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random views and of the split.")
    parser.add_argument("--check", action="store_true", help="Verify the dataset folder --out instead of building.")


def main(args: argparse.Namespace) -> int:
    if args.check:
        return _check(args.out)
    # 1. Check inputs
    if (args.meshes is None) == (args.jobs is None):
        raise InvalidRequest("give --meshes DIR or --jobs QUERY (or --check)")
    if not SIZES[0] <= args.size <= SIZES[1]:
        raise InvalidRequest(f"--size must be within {SIZES[0]}..{SIZES[1]}")
    if args.workers < 1:
        raise InvalidRequest("--workers must be at least 1")
    fractions = parse_split(args.split)
    shard = _parse_shard(args.shard)
    layouts: tuple[LayoutName, ...] = LAYOUTS if args.layout == "both" else (args.layout,)
    settings = RenderSettings(args.out, layouts, args.size, args.background, args.seed)
    # 2. Sources and captions
    sources = mesh_dir_sources(args.meshes) if args.meshes is not None else jobs_sources(args.jobs)
    if args.captions is not None:
        extra = read_captions(args.captions)
        sources = [MeshSource(s.scene_id, s.path, extra.get(s.scene_id, s.caption)) for s in sources]
        unused = set(extra) - {s.scene_id for s in sources}
        if unused:
            logger.warning("--captions: %d caption(s) name no mesh id, e.g. %s", len(unused), sorted(unused)[0])
    # 3. This shard's share, less what is finished
    mine = [s for s in sources if shard is None or shard_of(s.scene_id, shard[1]) == shard[0]]
    todo = [s for s in mine if not is_finished(settings, s.scene_id)]
    logger.info("%d meshes (%d in this shard), %d finished, %d to render", len(sources), len(mine),
                len(mine) - len(todo), len(todo))  # fmt: skip
    # 4. Render
    args.out.mkdir(parents=True, exist_ok=True)
    outcomes = list(_progress(_render_all(todo, settings, args.workers), True, "meshes", total=len(todo)))
    failed = {o.scene_id: o.error for o in outcomes if o.error is not None}
    # 5. The index (unsharded runs only: concurrent shards would race on it)
    finished = {s.scene_id: s.caption for s in sources if is_finished(settings, s.scene_id)}
    index = write_index(args.out, finished, fractions, args.seed) if shard is None else None
    if shard is not None:
        logger.info("shard %d/%d done; run the same command without --shard to write the index", *shard)
    # 6. Summary
    seconds = [o.seconds for o in outcomes if o.error is None]
    summary = {
        "out": str(args.out.resolve()),
        "layouts": list(layouts),
        "shard": args.shard,
        "rendered": len(seconds),
        "skipped": len(mine) - len(todo),
        "failed": failed,
        "finished": len(finished),
        "split": {name: len(index[name]) for name in ("train", "val", "test")} if index else None,
        "seconds_per_mesh": round(sum(seconds) / len(seconds), 2) if seconds else None,
    }
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return 1 if failed else 0


def _check(out: Path) -> int:
    report = check_dataset(out, progress=True)
    for warning in report.warnings:
        logger.warning("%s", warning)
    for problem in report.problems:
        logger.error("%s", problem)
    summary = {"out": str(out), "scenes": report.scenes, "problems": len(report.problems),
               "warnings": len(report.warnings), "ok": report.ok}  # fmt: skip
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return 0 if report.ok else 1


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match or not int(match[1]) < int(match[2]):
        raise InvalidRequest(f"--shard {text!r}: I/N with 0 <= I < N, e.g. 3/16")
    return int(match[1]), int(match[2])


def _render_all(sources: list[MeshSource], settings: RenderSettings, workers: int) -> Iterator[SceneOutcome]:
    if workers == 1 or len(sources) <= 1:
        for source in sources:
            yield render_scene(source, settings)
        return
    # spawn, not fork: each worker drives its own VTK child processes and threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(render_scene, source, settings) for source in sources]
        for future in as_completed(futures):
            yield future.result()


def _progress(items: Iterable[Any], show: bool, unit: str, total: int | None = None) -> Iterable[Any]:
    if not show:
        return items
    from tqdm import tqdm

    bar: Iterable[Any] = tqdm(items, total=total, unit=unit.split()[0], desc=unit, disable=None)
    return bar
