"""An ostris ai-toolkit config for the same dataset, for people who train the LoRA with that tool.

ai-toolkit wants the targets (transformed images) in ``folder_path`` with ``.txt`` captions of the same stem, and
the Kontext inputs (originals) in ``control_path`` under the *same* file names. Our dataset names them
``img0_001.png`` / ``img1_001.png``, so the export links (or copies, where links are impossible) each pair to
``<data>/ai_toolkit/{targets,control}/pair_001.png`` and writes the captions next to the targets.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from ..prompting.schema import TRIGGER_WORD
from .dataset import PairRecord, read_records

logger = logging.getLogger(__name__)

__all__ = ["ai_toolkit_config", "write_ai_toolkit_export"]

EXPORT_DIR = "ai_toolkit"
CONFIG_NAME = "ai_toolkit.yaml"


def ai_toolkit_config(
    targets: Path,
    control: Path,
    *,
    name: str = "alch3mist_kontext_lora",
    rank: int = 16,
    alpha: int | None = None,
    lr: float = 1e-4,
    steps: int = 2000,
    batch_size: int = 1,
    resolution: int = 512,
    samples: list[tuple[str, Path]] | None = None,
    model: str = "black-forest-labs/FLUX.1-Kontext-dev",
) -> dict[str, Any]:
    """The config as a dict (``yaml.safe_dump`` it); ``samples`` are (caption, control image) pairs to preview."""
    prompts = [f"{caption}  --ctrl_img {path}" for caption, path in (samples or [])]
    process: dict[str, Any] = {
        "type": "sd_trainer",
        "training_folder": "output",
        "device": "cuda:0",
        "trigger_word": TRIGGER_WORD,
        "network": {"type": "lora", "linear": rank, "linear_alpha": alpha if alpha is not None else rank},
        "save": {"dtype": "float16", "save_every": 250, "max_step_saves_to_keep": 4, "push_to_hub": False},
        "datasets": [
            {
                "folder_path": str(targets),
                "control_path": str(control),
                "caption_ext": "txt",
                "caption_dropout_rate": 0.05,
                "shuffle_tokens": False,
                "cache_latents_to_disk": True,
                "resolution": [resolution],
            }
        ],
        "train": {
            "batch_size": batch_size,
            "steps": steps,
            "gradient_accumulation_steps": 1,
            "train_unet": True,
            "train_text_encoder": False,
            "gradient_checkpointing": True,
            "noise_scheduler": "flowmatch",
            "optimizer": "adamw8bit",
            "lr": lr,
            "timestep_type": "weighted",
            "dtype": "bf16",
        },
        "model": {"name_or_path": model, "arch": "flux_kontext", "quantize": True},
        "sample": {
            "sampler": "flowmatch",
            "sample_every": 250,
            "width": resolution,
            "height": resolution,
            "prompts": prompts,
            "neg": "",
            "seed": 42,
            "walk_seed": True,
            "guidance_scale": 2.5,
            "sample_steps": 20,
        },
    }
    return {
        "job": "extension",
        "config": {"name": name, "process": [process]},
        "meta": {"name": "[name]", "version": "1.0"},
    }


def _link_or_copy(source: Path, target: Path) -> None:
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _export_pair(data_dir: Path, record: PairRecord, targets: Path, control: Path) -> Path:
    assert record.original is not None and record.transformed is not None  # read_records checked both exist
    stem = f"pair_{record.id}"
    _link_or_copy(data_dir / record.transformed, targets / f"{stem}.png")
    (targets / f"{stem}.txt").write_text(record.caption + "\n", encoding="utf-8")
    control_image = control / f"{stem}.png"
    _link_or_copy(data_dir / record.original, control_image)
    return control_image


def write_ai_toolkit_export(data_dir: Path, *, rank: int = 16, resolution: int = 512, lr: float = 1e-4) -> Path:
    """Lay out ``<data>/ai_toolkit/`` and write ``<data>/ai_toolkit.yaml``; returns the YAML's path."""
    records = read_records(data_dir)
    targets, control = data_dir / EXPORT_DIR / "targets", data_dir / EXPORT_DIR / "control"
    targets.mkdir(parents=True, exist_ok=True)
    control.mkdir(parents=True, exist_ok=True)
    controls = [_export_pair(data_dir, record, targets, control) for record in records]
    samples = [(record.caption, path.resolve()) for record, path in zip(records[:4], controls[:4], strict=True)]
    config = ai_toolkit_config(
        targets.resolve(),
        control.resolve(),
        rank=rank,
        lr=lr,
        resolution=resolution,
        steps=max(500, 20 * len(records)),
        samples=samples,
    )
    path = data_dir / CONFIG_NAME
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    logger.info("wrote the ai-toolkit config %s (%d pairs)", path, len(records))
    return path
