"""The dataset builder: layout, captions, held-out split, determinism, resume, imports and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from alch3mist.prompting.schema import TRIGGER_WORD
from alch3mist.training import dataset
from alch3mist.training.dataset import (
    DEFAULT_PROMPTS,
    DatasetError,
    ensure_trigger,
    load_prompt_specs,
    plan_pairs,
    read_records,
    read_test_records,
)
from alch3mist.training.recipe import DEFAULTS
from PIL import Image

from .conftest import PAIRS, TEST_SIZE, parse


def test_the_curated_prompt_set_is_varied_enough() -> None:
    prompt_set = load_prompt_specs(DEFAULT_PROMPTS)
    assert len(prompt_set.families) >= 5
    for name, (objects, materials) in prompt_set.families.items():
        assert 20 <= len(objects) <= 30, name
        assert len(set(objects)) == len(objects), name
        assert len(materials) >= 5, name
    every_object = [obj for objects, _m in prompt_set.families.values() for obj in objects]
    assert len(set(every_object)) >= 0.9 * len(every_object)


def test_the_plan_is_deterministic_by_seed_and_any_prefix_covers_every_family() -> None:
    prompt_set = load_prompt_specs(DEFAULT_PROMPTS)
    first, again, other = plan_pairs(prompt_set, 0), plan_pairs(prompt_set, 0), plan_pairs(prompt_set, 1)
    assert first == again and first != other
    families = len(prompt_set.families)
    assert {spec.family for spec in first[:families]} == set(prompt_set.families)
    assert all(spec.edit_prompt.startswith(TRIGGER_WORD) for spec in first)
    assert all(spec.object in spec.base_prompt and spec.material in spec.edit_prompt for spec in first)


def test_a_text_prompt_file_keeps_its_pairs(tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_text("# mine\nteapot | crocodile skin\nboot | molten gold  # shiny\n", encoding="utf-8")
    plan = plan_pairs(load_prompt_specs(path), 0)
    assert sorted((spec.object, spec.material) for spec in plan) == [
        ("boot", "molten gold"),
        ("teapot", "crocodile skin"),
    ]
    path.write_text("teapot crocodile skin\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"expected .object \| material."):
        load_prompt_specs(path)


def test_build_writes_pairs_captions_split_and_ai_toolkit_config(tiny_dataset: Path) -> None:
    records = read_records(tiny_dataset)
    assert [r.id for r in records] == [f"{i:03d}" for i in range(1, PAIRS + 1)]
    for record in records:
        assert record.original == f"img0/img0_{record.id}.png" and record.transformed == f"img1/img1_{record.id}.png"
        with (
            Image.open(tiny_dataset / record.original) as original,
            Image.open(tiny_dataset / record.transformed) as edit,
        ):
            # FLUX.1-dev at the preset's size; Kontext at its own area (the tiny preset's is 96²), kept as made.
            assert original.size == (64, 64) and edit.width == edit.height >= 64
        assert record.caption.startswith(TRIGGER_WORD) and record.material and record.material in record.caption
        assert record.base_prompt and record.object and record.object in record.base_prompt
    tests = read_test_records(tiny_dataset)
    assert len(tests) == TEST_SIZE and all(t.original is None for t in tests)
    assert {t.edit_prompt for t in tests}.isdisjoint({r.edit_prompt for r in records})
    assert {t.seed for t in tests}.isdisjoint({r.seed for r in records})

    config = yaml.safe_load((tiny_dataset / "ai_toolkit.yaml").read_text(encoding="utf-8"))
    process = config["config"]["process"][0]
    # The run 'alch3mist lora train --data' makes with its defaults (test_ai_toolkit checks the rest).
    assert process["network"]["linear"] == DEFAULTS.rank and process["network"]["linear_alpha"] == DEFAULTS.lora_alpha
    assert process["trigger_word"] == TRIGGER_WORD and process["model"]["arch"] == "flux_kontext"
    folder = Path(process["datasets"][0]["folder_path"])
    control = Path(process["datasets"][0]["control_path"])
    targets = sorted(p.name for p in folder.glob("*.png"))
    assert targets == sorted(p.name for p in control.glob("*.png")) and len(targets) == PAIRS
    assert all(
        (folder / name).with_suffix(".txt").read_text(encoding="utf-8").startswith(TRIGGER_WORD) for name in targets
    )


def test_an_existing_output_is_refused_without_overwrite(
    tiny_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse(dataset, ["--out", str(tiny_dataset), "--limit", "1"])
    assert dataset.main(args) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err


def test_an_interrupted_build_resumes_and_redoes_only_the_missing_pair_identically(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "data"
    shutil.copytree(tiny_dataset, copy)
    # Simulate a crash while pair 006 was being made: its edit missing, its record not written.
    (copy / "img1" / "img1_006.png").unlink()
    lines = (copy / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
    (copy / "metadata.jsonl").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    untouched = (copy / "img0" / "img0_001.png").stat().st_mtime_ns

    argv = ["--out", str(copy), "--limit", str(PAIRS), "--test-size", str(TEST_SIZE), "--seed", "0"]
    assert dataset.main(parse(dataset, [*argv, "--resume"])) == 0
    assert len(read_records(copy)) == PAIRS
    assert (copy / "img0" / "img0_001.png").stat().st_mtime_ns == untouched
    for name in ("img0/img0_006.png", "img1/img1_006.png"):  # same seed, same pixels
        assert (copy / name).read_bytes() == (tiny_dataset / name).read_bytes(), name

    changed = [*argv[:-1], "1", "--resume"]  # another seed: resuming would mix two datasets
    assert dataset.main(parse(dataset, changed)) == 2
    assert "different settings (seed)" in capsys.readouterr().err


def _picture(path: Path, colour: tuple[int, int, int], size: int = 48) -> Path:
    image = Image.new("RGB", (size, size), (240, 240, 240))
    image.paste(colour, (12, 12, 36, 36))
    image.save(path)
    return path


def _pairs_made_elsewhere(root: Path, count: int) -> tuple[Path, Path]:
    originals, transformed = root / "orig", root / "edit"
    originals.mkdir()
    transformed.mkdir()
    for i in range(count):
        _picture(originals / f"thing{i}.png", (100, 100, 100))
        _picture(transformed / f"thing{i}.png", (200, 40 * i, 20))
        (transformed / f"thing{i}.txt").write_text(f"{TRIGGER_WORD} make it copper number {i}", encoding="utf-8")
    return originals, transformed


def test_pairs_made_elsewhere_are_imported_resized_with_a_test_split(tmp_path: Path) -> None:
    originals, transformed = _pairs_made_elsewhere(tmp_path, 4)
    (transformed / "thing2.txt").write_text("make it rusty", encoding="utf-8")  # no trigger word
    out = tmp_path / "data"
    args = parse(dataset, ["--originals", str(originals), "--transformed", str(transformed), "--out", str(out)])
    args.resolution, args.test_size = 512, 1
    with pytest.warns(UserWarning, match="lacks the trigger word"):
        assert dataset.build(args) == 0
    records = read_records(out)
    assert len(records) == 3 and all(r.source == "imported" for r in records)
    assert records[2].caption == f"{TRIGGER_WORD} make it rusty"
    with Image.open(out / records[0].transformed) as image:  # type: ignore[operator]
        assert image.size == (512, 512)
    (test,) = read_test_records(out)
    assert test.original is not None and (out / test.original).is_file() and test.base_prompt is None


def test_imports_with_bad_input_fail_with_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    originals, transformed = _pairs_made_elsewhere(tmp_path, 3)

    def run(*extra: str) -> str:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        argv = ["--originals", str(originals), "--transformed", str(transformed), "--out", str(out), *extra]
        assert dataset.main(parse(dataset, argv)) == 2
        return capsys.readouterr().err

    (transformed / "thing2.png").unlink()
    assert "mismatched pair counts: 3 originals but 2 transformed" in run()
    (transformed / "thing2.png").write_bytes(b"this is not a png")
    err = run()
    assert "cannot read image" in err and "thing2.png" in err
    _picture(transformed / "thing2.png", (1, 2, 3))
    (transformed / "thing1.txt").unlink()
    assert "no caption for 1 transformed image" in run()
    captions = tmp_path / "captions.txt"
    captions.write_text("one\ntwo\n", encoding="utf-8")
    assert "2 captions for 3 pairs" in run("--captions", str(captions))
    assert "either --prompts" in run("--prompts", str(DEFAULT_PROMPTS))


def test_trigger_word_is_added_once() -> None:
    assert ensure_trigger("make it  gold") == (f"{TRIGGER_WORD} make it gold", True)
    assert ensure_trigger(f"an {TRIGGER_WORD.lower()} edit") == (f"an {TRIGGER_WORD.lower()} edit", False)


def test_options_that_contradict_each_other_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in [
        (["--resume", "--overwrite"], "contradict"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--size", "50"], "multiple of 16"),
        (["--originals", str(tmp_path)], "needs both --originals and --transformed"),
        (["--prompts", str(tmp_path / "missing.json")], "does not exist"),
    ]:
        assert dataset.main(parse(dataset, ["--out", str(tmp_path / "x"), *argv])) == 2, argv
        assert message in capsys.readouterr().err, argv
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"families": [{"name": "x", "objects": ["a"]}]}), encoding="utf-8")
    assert dataset.main(parse(dataset, ["--out", str(tmp_path / "y"), "--prompts", str(bad)])) == 2
    assert "not a valid prompt set" in capsys.readouterr().err
