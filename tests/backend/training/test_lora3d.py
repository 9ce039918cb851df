"""``alch3mist lora3d``: pairs, the decoder-inverted latents, training (loss, checkpoints, exact resume), evaluation.

Everything runs on the tiny Hunyuan3D-2 model (``ALCH3MIST_PRESET=tiny`` from this folder's conftest), loaded by
hy3dgen's own loader like the engine does.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch
import trimesh
from alch3mist.cli import main as cli_main
from alch3mist.models.shape_lora import validate_shape_lora
from alch3mist.models.tiny_hunyuan3d import LEVEL_MID, LEVEL_SWING, latent_size_signal
from alch3mist.training import lora3d, lora3d_data, lora3d_eval
from alch3mist.training.dataset import DatasetError
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from .conftest import parse

FAST = ["--preset", "tiny", "--rank", "4", "--alpha", "8", "--lr", "5e-3", "--fit-steps", "40", "--fit-points", "512"]


def _pair(folder: Path, colour: tuple[int, int, int], mesh: trimesh.Trimesh) -> None:
    folder.mkdir(parents=True)
    image = Image.new("RGB", (96, 96), (255, 255, 255))
    ImageDraw.Draw(image).ellipse((20, 16, 76, 80), fill=colour)
    image.save(folder / "image.png")
    mesh.export(folder / "model.glb")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shape-pairs")
    _pair(root / "train" / "ball", (200, 40, 40), trimesh.creation.icosphere(subdivisions=2))
    _pair(root / "train" / "brick", (40, 160, 40), trimesh.creation.box(extents=(1.0, 0.8, 0.9)))
    _pair(root / "train" / "egg", (40, 40, 200), trimesh.creation.icosphere(subdivisions=2).apply_scale((1, 1.2, 1)))
    _pair(root / "test" / "pebble", (120, 120, 40), trimesh.creation.icosphere(subdivisions=2).apply_scale((1.1, 1, 1)))
    return root


@pytest.fixture(scope="module")
def trained(
    pairs: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[lora3d.Shape3DTrainResult, argparse.Namespace]:
    out = tmp_path_factory.mktemp("lora3d") / "shape.safetensors"
    args = parse(
        lora3d, ["--data", str(pairs), "--out", str(out), *FAST, "--steps", "12", "--checkpointing-steps", "6"]
    )
    lora3d._check_args(args)
    return lora3d.train(args), args


def test_fitted_latents_decode_back_to_the_mesh() -> None:
    """Known answer: a sphere normalised to radius 0.9 → the tiny decoder's blob reaches ~0.9 on the x axis."""
    pipe, _ = lora3d.load_training_pipeline("tiny")
    pipe.vae.requires_grad_(False)
    fit = lora3d_data.FitSettings(steps=60, points=1024)
    latents, iou = lora3d_data.fit_latents(pipe, trimesh.creation.icosphere(subdivisions=2, radius=5.0), fit)
    m = float(latent_size_signal(latents)[0])
    axis_radius = math.acos(LEVEL_MID - LEVEL_SWING * m - 2.0)
    assert iou > 0.85 and abs(axis_radius - 0.9) < 0.1


def test_training_lowers_the_loss_and_writes_a_loadable_lora(
    trained: tuple[lora3d.Shape3DTrainResult, argparse.Namespace],
) -> None:
    result, args = trained
    assert result.steps == 12 and len(result.losses) == 12
    assert result.eval_loss_end < result.eval_loss_start
    lora = validate_shape_lora(result.out)
    assert lora.rank == 4 and lora.layers == 6 and set(lora.modules) == {"model"}
    assert json.loads(lora.metadata["trained"])["targets"] == list(lora3d.DIT_TARGETS)
    work = args.work_dir
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == ["checkpoint-000006"]
    assert len(list((work / "cache").glob("*.safetensors"))) == 3  # one per training pair


def test_resume_continues_exactly_like_the_uninterrupted_run(
    trained: tuple[lora3d.Shape3DTrainResult, argparse.Namespace], pairs: Path
) -> None:
    result, first = trained
    out = result.out.with_name("resumed.safetensors")
    argv = ["--data", str(pairs), "--out", str(out), "--work-dir", str(first.work_dir), *FAST]
    args = parse(lora3d, [*argv, "--steps", "12", "--checkpointing-steps", "6", "--resume"])
    lora3d._check_args(args)
    resumed = lora3d.train(args)
    assert resumed.resumed_from == 6 and len(resumed.losses) == 6
    assert resumed.losses == result.losses[6:]
    a, b = load_file(str(result.out)), load_file(str(out))
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    changed = parse(lora3d, [*argv, "--steps", "12", "--resume", "--seed", "9"])
    changed.out = out.with_name("other.safetensors")
    with pytest.raises(Exception, match="different seed"):
        lora3d._check_args(changed)
        lora3d.train(changed)


def test_eval_scores_and_renders_with_and_without_the_lora(
    trained: tuple[lora3d.Shape3DTrainResult, argparse.Namespace], pairs: Path, tmp_path: Path
) -> None:
    args = parse(lora3d_eval, ["--data", str(pairs), "--lora", str(trained[0].out), "--out", str(tmp_path / "eval")])
    args.preset, args.renders, args.seeds = "tiny", 1, [0]
    report = lora3d_eval.evaluate(args)
    (case,) = report.cases
    assert case.pair == "pebble" and case.base != case.lora  # same seed, the LoRA changed the shape
    for scores in (case.base, case.lora):
        assert 0 < scores["chamfer"] < 1 and 0 <= scores["f_score"] <= 1
    for paths in case.renders.values():
        assert len(paths) == 1 and (tmp_path / "eval" / paths[0]).stat().st_size > 1000
    saved = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert set(saved["summary"]) == {"base", "lora", "delta (lora - base)"}
    assert "| pebble | 0 |" in (tmp_path / "eval" / "report.md").read_text()


def test_pairs_from_our_jobs(tmp_path: Path, pairs: Path) -> None:
    jobs = []
    for index, source in enumerate(sorted((pairs / "train").iterdir())):
        job = tmp_path / "jobs" / f"job{index}"
        job.mkdir(parents=True)
        (job / "textured.png").write_bytes((source / "image.png").read_bytes())
        (job / "model.glb").write_bytes((source / "model.glb").read_bytes())
        jobs.append(job)
    unfinished = tmp_path / "jobs" / "failed"
    unfinished.mkdir()
    (unfinished / "textured.png").write_bytes(b"")
    code = cli_main(
        ["lora3d", "pairs", *map(str, [*jobs, unfinished]), "--out", str(tmp_path / "pairs"), "--test", "1"]
    )
    assert code == 0
    assert [p.name for p in lora3d_data.read_pairs(tmp_path / "pairs", "train")] == ["0000-job0", "0001-job1"]
    assert [p.name for p in lora3d_data.read_pairs(tmp_path / "pairs", "test")] == ["0002-job2"]
    with pytest.raises(DatasetError, match="cannot give 3 test pairs"):
        lora3d_data.pairs_from_jobs(jobs, tmp_path / "more", test=3)


def test_bad_input_gets_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["lora3d", "train", "--data", str(tmp_path), "--out", str(tmp_path / "x.pt")]) == 2
    assert "--out must be a .safetensors file" in capsys.readouterr().err
    assert cli_main(["lora3d", "train", "--data", str(tmp_path), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "has no train/ folder" in capsys.readouterr().err
    (tmp_path / "train" / "half").mkdir(parents=True)
    (tmp_path / "train" / "half" / "image.png").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"needs one of image\.png.*and model\.glb"):
        lora3d_data.read_pairs(tmp_path, "train")


def test_conditioner_lora_trains_and_the_engine_loads_both_groups(pairs: Path, tmp_path: Path) -> None:
    from alch3mist.config import Settings
    from alch3mist.engines.base import EngineParams
    from alch3mist.engines.hunyuan3d_local import Hunyuan3DLocalEngine
    from alch3mist.stages.progress import StageControl

    out = tmp_path / "loras3d" / "both.safetensors"
    args = parse(lora3d, ["--data", str(pairs), "--out", str(out), *FAST, "--steps", "2", "--train-conditioner"])
    lora3d._check_args(args)
    result = lora3d.train(args)
    lora = validate_shape_lora(result.out)
    assert set(lora.modules) == {"model", "conditioner"} and len(lora.modules["conditioner"]) == 4  # q, k, v, o
    engine = Hunyuan3DLocalEngine(Settings(preset="tiny", hunyuan3d_local=True, hunyuan3d_lora_dir=out.parent))
    image = Image.open(pairs / "test" / "pebble" / "image.png")
    shape = engine.generate_shape(image, EngineParams(seed=0), StageControl(), lora=("both", 1.0))
    assert engine.loras.active() == ("both", 1.0) and shape.mesh.is_watertight
