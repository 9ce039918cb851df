"""The LoRA evaluation: held-out prompts through the whole chain at LoRA scale 0 and 1, and its report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alch3mist.training import evaluate, train
from alch3mist.training.evaluate import CaseResult, EvalReport, RunResult, render_html
from alch3mist.training.metrics import IMAGE_STAT_NAMES
from PIL import Image, ImageChops

from .conftest import TEST_SIZE, parse


@pytest.fixture(scope="module")
def report_dir(
    trained: train.TrainResult, tiny_dataset: Path, tiny_clip_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, int]:
    out = tmp_path_factory.mktemp("eval") / "report"
    argv = ["--lora", str(trained.out), "--data", str(tiny_dataset), "--out", str(out), "--preset", "tiny"]
    argv += ["--engine", "preview", "--views", "2", "--view-size", "64", "--clip-model", str(tiny_clip_folder)]
    return out, evaluate.main(parse(evaluate, argv))


def test_the_report_shows_every_held_out_prompt_without_and_with_the_lora(report_dir: tuple[Path, int]) -> None:
    out, code = report_dir
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    page = (out / "report.html").read_text(encoding="utf-8")
    assert report["scales"] == [0.0, 1.0] and len(report["cases"]) == TEST_SIZE
    assert page.count("without LoRA (scale 0)") == TEST_SIZE + 1 and page.count("with LoRA (scale 1)") == TEST_SIZE + 1
    assert "Metrics not available" in page and "none: every metric was computed" in page and not report["unavailable"]
    assert code == 0
    for case in report["cases"]:
        low, high = case["runs"]
        assert (low["scale"], high["scale"]) == (0.0, 1.0)
        for run in (low, high):  # every run went all the way: base, edit, GLB, views
            assert run["status"] == "succeeded" and run["error"] is None
            assert (out / run["base"]).is_file() and (out / run["textured"]).is_file() and (out / run["glb"]).is_file()
            assert len(run["views"]) == 2 and all((out / view).is_file() for view in run["views"])
            expected = {f"{where}.{stat}" for where in ("edit", "views") for stat in IMAGE_STAT_NAMES}
            assert expected | {"clip.views", "clip.edit"} <= set(run["metrics"])
            assert -1 <= run["metrics"]["clip.views"] <= 1
            manifest = json.loads((out / run["folder"] / "manifest.json").read_text(encoding="utf-8"))
            assert manifest["seed"] == case["seed"] and manifest["lora"]["scale"] == run["scale"]
            assert f'<img src="{run["textured"]}"' in page and f'<img src="{run["views"][0]}"' in page
        # Same seed, same base image; the trained LoRA changes the material edit inside the chain.
        assert (out / low["base"]).read_bytes() == (out / high["base"]).read_bytes()
        with Image.open(out / low["textured"]) as a, Image.open(out / high["textured"]) as b:
            assert ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getbbox() is not None
    assert set(report["summary"]["edit.sharpness"]) == {"0", "1", "delta"}


def test_report_text_is_escaped() -> None:
    run = RunResult(scale=0.0, status="failed", folder="x", error="<b>boom</b>")
    case = CaseResult(
        id="t1", edit_prompt="Alch3mist <script>alert(1)</script>", base_prompt='a "cow"', material="m&m", seed=1
    )
    case.runs = [run, RunResult(scale=1.0, status="succeeded", folder="y", textured="y/textured.png")]
    report = EvalReport("l.safetensors", "d", "tiny", "preview", [0.0, 1.0], "now", cases=[case])
    report.unavailable["clip"] = "no CLIP model folder given (--clip-model)"
    page = render_html(report)
    assert "Metrics not available" in page and "no CLIP model folder given (--clip-model)" in page
    assert "Failed runs" in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>boom</b>" not in page and "m&amp;m" in page and "&quot;cow&quot;" in page


def test_bad_evaluation_input_fails_with_a_clear_message(
    report_dir: tuple[Path, int],
    trained: train.TrainResult,
    tiny_dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def run(*argv: str) -> str:
        assert evaluate.main(parse(evaluate, list(argv))) == 2, argv
        return capsys.readouterr().err

    out, _code = report_dir
    assert "already exists; pass --overwrite" in run(
        "--lora", str(trained.out), "--data", str(tiny_dataset), "--out", str(out)
    )
    pickle = tmp_path / "lora.bin"
    pickle.write_bytes(b"\x80\x04")
    assert "pickle" in run("--lora", str(pickle), "--data", str(tiny_dataset), "--out", str(tmp_path / "a"))
    assert "no held-out prompts" in run(
        "--lora", str(trained.out), "--data", str(tmp_path), "--out", str(tmp_path / "b")
    )
    assert "--scale must be" in run(
        "--lora", str(trained.out), "--data", str(tiny_dataset), "--out", str(tmp_path / "c"), "--scale", "0"
    )


def test_the_cli_wires_the_three_commands() -> None:
    from alch3mist.cli import build_parser
    from alch3mist.training import dataset

    parser = build_parser()
    commands = {
        ("dataset", "build", "--out", "d"): dataset.main,
        ("lora", "train", "--data", "d", "--out", "l.safetensors"): train.main,
        ("lora", "eval", "--lora", "l.safetensors", "--data", "d", "--out", "r"): evaluate.main,
    }
    for argv, handler in commands.items():
        assert parser.parse_args(list(argv)).handler is handler


def test_an_imported_dataset_is_evaluated_from_its_held_out_originals(
    trained: train.TrainResult, tmp_path: Path
) -> None:
    from alch3mist.prompting.schema import TRIGGER_WORD
    from alch3mist.training import dataset

    originals, transformed = tmp_path / "orig", tmp_path / "edit"
    originals.mkdir()
    transformed.mkdir()
    for i in range(3):
        picture = Image.new("RGB", (64, 64), (235, 235, 235))
        picture.paste((60 * i, 90, 160), (16, 16, 48, 48))
        picture.save(originals / f"p{i}.png")
        picture.rotate(90).save(transformed / f"p{i}.png")
        (transformed / f"p{i}.txt").write_text(f"{TRIGGER_WORD} make it lapis lazuli", encoding="utf-8")
    data = tmp_path / "data"
    argv = ["--originals", str(originals), "--transformed", str(transformed), "--out", str(data), "--test-size", "1"]
    assert dataset.main(parse(dataset, argv)) == 0

    out = tmp_path / "report"
    argv = ["--lora", str(trained.out), "--data", str(data), "--out", str(out), "--preset", "tiny"]
    assert evaluate.main(parse(evaluate, [*argv, "--engine", "preview", "--views", "1", "--view-size", "64"])) == 0
    (case,) = json.loads((out / "report.json").read_text(encoding="utf-8"))["cases"]
    assert case["base_prompt"] is None and case["edit_prompt"] == f"{TRIGGER_WORD} make it lapis lazuli"
    for run in case["runs"]:  # no FLUX.1-dev: the held-out original is the chain's input image
        assert run["status"] == "succeeded"
        with Image.open(out / run["base"]) as base, Image.open(data / "test" / "img0_003.png") as original:
            assert ImageChops.difference(base.convert("RGB"), original.convert("RGB")).getbbox() is None
