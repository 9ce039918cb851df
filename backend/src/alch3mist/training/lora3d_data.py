"""The 3D LoRA's data: (image, mesh) pair folders, and what the trainer caches for each pair.

Layout of a pairs folder (``alch3mist lora3d pairs`` makes one from our own jobs' ``textured.png`` + ``model.glb``)::

    DIR/train/<pair>/image.png    the picture (.png/.jpg/.jpeg/.webp): one object, plain background or alpha
    DIR/train/<pair>/model.glb    its mesh (any GLB: y up, front towards +z, as glTF and our chain make them)
    DIR/test/<pair>/…             held-out pairs, the same way (``lora3d eval`` reads these)

For each pair the trainer caches:

- the image's conditioning tokens: our segmentation → RGBA → hy3dgen's own image processor → the DINOv2 conditioner
  (the very steps the engine runs);
- the mesh's shape latents, the ones the DiT denoises. hy3dgen 2.0.2's ShapeVAE is decoder-only, and the published
  Hunyuan3D-2 checkpoint (loaded with a strict ``load_state_dict``) has no encoder weights, so the latents are found by
  *inverting the decoder*: starting from zero, Adam fits the latent so the ShapeVAE's own occupancy decoder reproduces
  the mesh's inside/outside (generalised winding number) at points near its surface (surface samples moved along their
  normals) and across the box, with a small pull towards the N(0, 1) region the DiT samples from. The fit's IoU on
  those points is recorded; a low one is a warning.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from ..errors import report_errors
from .dataset import DatasetError
from .shape_metrics import normalise, sample_surface, winding_numbers

if TYPE_CHECKING:
    import trimesh

logger = logging.getLogger(__name__)

IMAGE_NAMES = ("image.png", "image.jpg", "image.jpeg", "image.webp")
MESH_NAME = "model.glb"
SPLITS = ("train", "test")
MESH_EXTENT = 1.8  # meshes are fitted inside hy3dgen's ±1.01 decoding box with a margin
FIT_LOW_IOU = 0.6  # below this the latent does not describe the mesh well: said in the log


@dataclass(frozen=True)
class ShapePair:
    name: str
    image: Path
    mesh: Path


@dataclass(frozen=True)
class FitSettings:
    steps: int = 300
    points: int = 4096  # per kind: near-surface and uniform
    batch: int = 1024  # occupancy samples per Adam step
    lr: float = 0.05
    prior: float = 1e-3
    seed: int = 0


def read_pairs(data: Path, split: str) -> list[ShapePair]:
    """The pairs of ``data/<split>``, by name; ``DatasetError`` naming what is missing."""
    folder = data / split
    if not folder.is_dir():
        raise DatasetError(f"{data} has no {split}/ folder of (image, model.glb) pairs (see docs/training.md)")
    pairs = []
    for pair in sorted(p for p in folder.iterdir() if p.is_dir()):
        image = next((pair / name for name in IMAGE_NAMES if (pair / name).is_file()), None)
        if image is None or not (pair / MESH_NAME).is_file():
            raise DatasetError(f"pair {pair} needs one of {', '.join(IMAGE_NAMES)} and {MESH_NAME}")
        pairs.append(ShapePair(name=pair.name, image=image, mesh=pair / MESH_NAME))
    if not pairs:
        raise DatasetError(f"{folder} holds no pairs (one sub-folder per pair)")
    return pairs


def load_mesh(path: Path) -> trimesh.Trimesh:
    """Every primitive of a GLB in world space, as one triangle mesh (only the geometry matters here)."""
    import trimesh

    from ..mesh.glb import load_glb

    mesh: Any = load_glb(path, "reference mesh").to_geometry()  # node transforms applied, primitives concatenated
    return trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces, process=False)


def pairs_from_jobs(jobs: list[Path], out: Path, test: int) -> int:
    """Copy our own jobs' ``textured.png`` + ``model.glb`` into a pairs folder; the last ``test`` go to test/."""
    usable = [job for job in jobs if (job / "textured.png").is_file() and (job / "model.glb").is_file()]
    skipped = sorted(set(jobs) - set(usable))
    for job in skipped:
        logger.warning("skipping %s: no textured.png + model.glb (a job that did not finish?)", job)
    if len(usable) <= test:
        raise DatasetError(f"{len(usable)} usable jobs cannot give {test} test pairs and any training pair")
    for index, job in enumerate(usable):
        split = "test" if index >= len(usable) - test else "train"
        target = out / split / f"{index:04d}-{job.name}"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(job / "textured.png", target / "image.png")
        shutil.copyfile(job / "model.glb", target / MESH_NAME)
    return len(usable)


# --- what a pair becomes ---------------------------------------------------------------------------------------


def image_tensor(pipe: Any, image: Image.Image) -> torch.Tensor:
    """(1, 3, H, W) in [-1, 1]: our segmentation as alpha, then hy3dgen's image processor (recentre, resize)."""
    from ..engines.hunyuan3d_local import with_object_alpha
    from ..mesh.segment import segment_object

    rgba = with_object_alpha(image, segment_object(image))
    prepared: torch.Tensor = pipe.prepare_image(rgba)["image"]
    return prepared


def condition(pipe: Any, pixels: torch.Tensor) -> torch.Tensor:
    """The conditioner's tokens for (B, 3, H, W) prepared images: (B, T, D), on the conditioner's device."""
    module = pipe.conditioner
    parameter = next(module.parameters())
    tokens: torch.Tensor = module(image=pixels.to(parameter.device, parameter.dtype))["main"]
    return tokens


def fit_latents(pipe: Any, mesh: trimesh.Trimesh, fit: FitSettings) -> tuple[torch.Tensor, float]:
    """(1, num_latents, channels) latents in the DiT's space whose decoding reproduces ``mesh``; and the fit's IoU."""
    vae = pipe.vae
    parameter = next(vae.parameters())
    device, dtype = parameter.device, parameter.dtype
    points, labels = occupancy_samples(mesh, fit.points, fit.seed)
    points, labels = points.to(device, dtype), labels.to(device)
    generator = torch.Generator().manual_seed(fit.seed)
    latent = torch.zeros((1, *vae.latent_shape), device=device, dtype=torch.float32, requires_grad=True)
    optimiser = torch.optim.Adam([latent], lr=fit.lr)
    batch = min(fit.batch, points.shape[0])
    for _ in range(fit.steps):
        chosen = torch.randperm(points.shape[0], generator=generator)[:batch].to(device)
        logits = _decode(vae, latent, points[chosen][None])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), labels[chosen][None].float())
        loss = loss + fit.prior * latent.pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        predicted = _decode(vae, latent, points[None])[0] > 0
        union = (predicted | labels).sum().item()
        iou = float((predicted & labels).sum().item() / union) if union else 1.0
    return (latent.detach() * vae.scale_factor).to(dtype), iou


def _decode(vae: Any, latent: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Occupancy logits at (1, P, 3) queries, as hy3dgen's pipeline decodes a DiT sample (scale 1 here)."""
    parameter = next(vae.parameters())
    logits: torch.Tensor = vae.geo_decoder(queries=queries, latents=vae(latent.to(parameter.dtype))).squeeze(-1)
    return logits


def occupancy_samples(mesh: trimesh.Trimesh, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(2·count, 3) points in hy3dgen's box — ``count`` near the normalised mesh's surface, ``count`` uniform — and
    whether each is inside (winding number > 0.5)."""
    shaped = normalise(mesh, MESH_EXTENT)
    surface, normals = sample_surface(shaped, count, seed=seed)
    rng = np.random.default_rng(seed)
    near = surface + normals * rng.normal(0.0, 0.03, size=(count, 1))
    uniform = rng.uniform(-1.01, 1.01, size=(count, 3))
    points = torch.from_numpy(np.concatenate([near, uniform])).float()
    triangles = torch.from_numpy(np.array(shaped.triangles, dtype=np.float32))
    inside = winding_numbers(points, triangles) > 0.5
    return points, inside


def cache_key(pair: ShapePair, model: str, fit: FitSettings) -> str:
    """Changes whenever the pair's files, the model or the fit change (a stale cache is never reused)."""
    digest = hashlib.sha256()
    for path in (pair.image, pair.mesh):
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(json.dumps([model, fit.__dict__], sort_keys=True).encode())
    return digest.hexdigest()[:16]


# --- ``alch3mist lora3d pairs`` ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("jobs", type=Path, nargs="+", help="Job output folders (textured.png + model.glb each).")
    parser.add_argument("--out", type=Path, required=True, help="The pairs folder to write (train/ and test/).")
    parser.add_argument("--test", type=int, default=1, help="How many of the jobs (the last ones) are held out.")


def main(args: argparse.Namespace) -> int:
    def run() -> int:
        if args.test < 0:
            raise DatasetError("--test must be 0 or more")
        count = pairs_from_jobs(list(args.jobs), args.out, args.test)
        logger.info("%d pairs written to %s (%d held out in test/)", count, args.out, args.test)
        return 0

    return report_errors(run)
