"""The Kontext LoRA trainer on the tiny preset: loss goes down, the LoRA loads and changes Kontext, kill + resume."""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from alch3mist.errors import OutOfMemory
from alch3mist.models.registry import LoadedModels
from alch3mist.stages.material_edit import MaterialEditStage
from alch3mist.stages.progress import StageControl
from alch3mist.training import train
from alch3mist.training.dataset import read_records
from alch3mist.training.recipe import ATTENTION, ATTENTION_FF, DEFAULTS, TrainingRecipe
from safetensors import safe_open
from safetensors.torch import load_file

from tests.conftest import transformer_probe

from .conftest import TRAIN_ARGS, parse, subprocess_env


def test_thirty_steps_lower_the_loss_on_the_training_pairs(trained: train.TrainResult) -> None:
    assert trained.steps == 30 and trained.resumed_from == 0 and len(trained.losses) == 30
    assert all(math.isfinite(loss) for loss in trained.losses)
    # Same pairs, same noise, same sigmas before and after: a like-for-like measure of fit.
    assert trained.eval_loss_end < trained.eval_loss_start
    # The (noisy) per-step training loss falls too.
    assert np.mean(trained.losses[-10:]) < np.mean(trained.losses[:10])


def lora_modules(keys: list[str]) -> set[str]:
    """The module names (within a block) that a LoRA file's keys put adapters on, e.g. ``attn.to_q``."""
    modules = set()
    for key in keys:
        match = re.fullmatch(r"transformer\.(single_)?transformer_blocks\.\d+\.(.+)\.lora_[AB]\.weight", key)
        assert match, f"not a LoRA key of a transformer block: {key}"
        modules.add(match.group(2))
    return modules


BLOCK_MODULES = {  # what each --targets puts a LoRA on, in the tiny transformer's two kinds of block
    "attention": set(ATTENTION),
    "attention-ff": set(ATTENTION_FF),
    "all-linear": {*ATTENTION_FF, "proj_out", "norm1.linear", "norm1_context.linear", "norm.linear"},
}


def read_lora(path: Path) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    """Keys, adapter metadata (``transformer.``-prefixed, as diffusers writes it) and our recipe record."""
    with safe_open(str(path), framework="pt") as handle:
        keys = list(handle.keys())
        header = handle.metadata() or {}
    return keys, json.loads(header["lora_adapter_metadata"]), json.loads(header[train.RECIPE_METADATA_KEY])


def test_the_lora_file_is_in_diffusers_format_with_work_files_beside_it(trained: train.TrainResult) -> None:
    keys, adapter, recipe = read_lora(trained.out)
    assert lora_modules(keys) == BLOCK_MODULES[DEFAULTS.targets]
    assert adapter["transformer.r"] == adapter["transformer.lora_alpha"] == 4  # alpha folded: every loader at 1
    assert (recipe["rank"], recipe["alpha"], recipe["targets"]) == (4, 4.0, DEFAULTS.targets)
    assert recipe["alpha_folded_into_lora_B"] is True and recipe["steps"] == 30
    state = load_file(str(trained.out))
    assert all(value.shape[0] == 4 for key, value in state.items() if "lora_A" in key)  # rank 4
    assert any(value.abs().sum() > 0 for key, value in state.items() if "lora_B" in key)  # it learned something

    work = trained.out.with_name(f"{trained.out.stem}-training")
    assert [p.name for p in train.list_checkpoints(work)] == ["checkpoint-000010", "checkpoint-000020"]
    for checkpoint in train.list_checkpoints(work):
        assert sorted(p.name for p in checkpoint.iterdir()) == [
            "lora.safetensors",
            "optimizer.safetensors",
            "state.json",
        ]
    assert sorted(p.name for p in (work / "validation").iterdir()) == ["step_000015.png", "step_000030.png"]
    assert list((work / "logs").glob("events.out.tfevents.*"))
    assert (work / "ai_toolkit.yaml").is_file()


def test_the_lora_loads_through_our_lora_manager_and_changes_the_kontext_edit(
    trained: train.TrainResult, tiny_models: LoadedModels, tiny_dataset: Path
) -> None:
    from PIL import Image

    record = read_records(tiny_dataset)[0]
    with Image.open(tiny_dataset / str(record.original)) as handle:
        original = handle.convert("RGB")
    stage = MaterialEditStage(tiny_models)

    def edit(lora: str | None) -> np.ndarray:
        image = stage.run(
            original, record.caption, seed=1, steps=2, guidance=2.5, lora=lora, lora_scale=1.0, control=StageControl()
        )
        return np.asarray(image, dtype=np.int16)

    try:
        tiny_models.loras.load_file(trained.out, "trained")
        without, with_lora, without_again = edit(None), edit("trained"), edit(None)
    finally:
        tiny_models.loras.unload()
    assert np.abs(with_lora - without).mean() > 0.5
    assert np.array_equal(without, without_again)


def test_the_lora_loads_with_diffusers_load_lora_weights(trained: train.TrainResult, tiny_models: LoadedModels) -> None:
    from diffusers import FluxKontextPipeline, FluxTransformer2DModel
    from peft.tuners.lora import LoraLayer

    transformer = FluxTransformer2DModel.from_pretrained(tiny_models.model_ids["kontext"], subfolder="transformer")
    pipe = FluxKontextPipeline.from_pretrained(tiny_models.model_ids["flux"], transformer=transformer)
    pipe.load_lora_weights(str(trained.out), adapter_name="alch3mist")
    layers = [m for m in pipe.transformer.modules() if isinstance(m, LoraLayer) and "alch3mist" in m.lora_A]
    with safe_open(str(trained.out), framework="pt") as handle:
        expected = sum(1 for key in handle.keys() if "lora_A" in key)  # noqa: SIM118 - safe_open is not a dict
    assert len(layers) == expected > 0
    assert all(layer.scaling["alch3mist"] == 1.0 for layer in layers)  # alpha folded into lora_B


def test_a_killed_run_resumes_from_its_checkpoint_and_ends_where_an_uninterrupted_run_ends(
    trained: train.TrainResult, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "resumed.safetensors"
    argv = ["--data", str(tiny_dataset), "--out", str(out), *TRAIN_ARGS, "--checkpointing-steps", "5"]
    work = tmp_path / "resumed-training"
    process = subprocess.Popen(
        [sys.executable, "-m", "alch3mist.training.train", *argv],
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        while not train.list_checkpoints(work):
            assert process.poll() is None, f"trainer ended before its first checkpoint: {process.stderr.read()!r}"  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
        assert process.stderr is not None
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert not out.exists(), "the run was killed before it could write the LoRA"
    killed_at = int(train.list_checkpoints(work)[-1].name.removeprefix("checkpoint-"))
    assert 5 <= killed_at < 30

    # Without --resume the leftover checkpoints are not silently overwritten.
    assert train.main(parse(train, argv)) == 2
    assert "--resume" in capsys.readouterr().err

    args = parse(train, [*argv, "--resume"])
    train._check_args(args)
    result = train.train(args)
    assert result.resumed_from == killed_at and len(result.losses) == 30 - killed_at
    # Every draw is seeded by (seed, step): the resumed run ends with the uninterrupted run's weights.
    resumed, reference = load_file(str(out)), load_file(str(trained.out))
    assert resumed.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(resumed[key], reference[key], rtol=1e-4, atol=1e-6, msg=key)


def test_bad_training_input_fails_with_a_clear_message(
    trained: train.TrainResult, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(*argv: str) -> str:
        assert train.main(parse(train, list(argv))) == 2, argv
        return capsys.readouterr().err

    base = ["--data", str(tiny_dataset), "--preset", "tiny"]
    assert "already exists; pass --overwrite" in run(*base, "--out", str(trained.out))
    assert "must be a .safetensors file" in run(*base, "--out", str(tmp_path / "lora.bin"))
    message = run(*base, "--out", str(tmp_path / "big.safetensors"), "--rank", "64", "--resolution", "32")
    assert "--rank 64 does not fit" in message and "at most rank 32" in message
    assert "not a dataset folder" in run("--data", str(tmp_path), "--out", str(tmp_path / "x.safetensors"))
    assert "--steps or --epochs, not both" in run(
        *base, "--out", str(tmp_path / "y.safetensors"), "--steps", "1", "--epochs", "1"
    )


def test_8bit_adam_without_bitsandbytes_says_what_to_install() -> None:
    import importlib.util

    from alch3mist.errors import InvalidRequest

    assert importlib.util.find_spec("bitsandbytes") is None, "this check is for machines without bitsandbytes"
    with pytest.raises(InvalidRequest, match="pip install bitsandbytes=="):
        train._make_optimizer([torch.nn.Parameter(torch.zeros(2))], TrainingRecipe(use_8bit_adam=True))


def test_cuda_out_of_memory_names_the_knobs_left_to_turn(tmp_path: Path) -> None:
    args = parse(train, ["--data", str(tmp_path), "--out", str(tmp_path / "x.safetensors"), "--batch-size", "2"])
    with pytest.raises(OutOfMemory) as caught, train._oom_advice(args, (1024, 1024)):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    message = caught.value.message
    for knob in ("--batch-size 1 --gradient-accumulation-steps 2", "--resolution 512", "--gradient-checkpointing"):
        assert knob in message
    assert "--use-8bit-adam" in message and "1024x1024" in message

    args = parse(train, ["--data", str(tmp_path), "--out", str(tmp_path / "x.safetensors"), "--gradient-checkpointing"])
    with pytest.raises(OutOfMemory) as caught, train._oom_advice(args, (512, 512)):
        raise torch.OutOfMemoryError("CUDA out of memory.")
    assert "--gradient-checkpointing" not in caught.value.message and "--resolution" not in caught.value.message


def test_every_knob_runs_for_a_couple_of_steps(tiny_dataset: Path, tmp_path: Path) -> None:
    """As diffusers' script tests: a short run with the other options on, then the output file and its keys."""
    out = tmp_path / "knobs.safetensors"
    argv = ["--data", str(tiny_dataset), "--out", str(out), "--preset", "tiny", "--rank", "2", "--alpha", "4"]
    argv += ["--epochs", "1", "--batch-size", "2", "--gradient-accumulation-steps", "2", "--gradient-checkpointing"]
    argv += ["--lr-scheduler", "cosine", "--lr-warmup-steps", "1", "--weighting-scheme", "logit_normal"]
    argv += ["--resolution", "16", "--max-sequence-length", "32", "--mixed-precision", "no"]
    assert train.main(parse(train, argv)) == 0
    state = load_file(str(out))
    assert state and all(key.startswith("transformer.") for key in state)
    assert all(value.shape[0] == 2 for key, value in state.items() if "lora_A" in key)
    assert not train.list_checkpoints(tmp_path / "knobs-training")  # 2 steps (6 pairs / (2 x 2)), none due


def test_the_learning_rate_schedule_is_a_function_of_the_step(tmp_path: Path) -> None:
    recipe = TrainingRecipe(lr=1e-3, lr_warmup_steps=2, lr_scheduler="cosine")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    lrs = [train._set_lr(optimizer, step, 10, recipe) for step in range(10)]
    assert lrs[0] == pytest.approx(5e-4) and lrs[1] == pytest.approx(1e-3)
    assert lrs[2:] == sorted(lrs[2:], reverse=True) and lrs[-1] < 1e-4
    assert optimizer.param_groups[0]["lr"] == lrs[-1]


OPTIONS = {  # each a 2-step run; together they cover every option value the recipe can take but the defaults'
    "attention, diffusers' guidance, sigma_sqrt": ["--targets", "attention", "--guidance-scale", "3.5",
                                                   "--weighting-scheme", "sigma_sqrt"],
    "attention-ff, alpha != rank, cosmap": ["--targets", "attention-ff", "--alpha", "1",
                                            "--weighting-scheme", "cosmap"],
    "all-linear, mode": ["--targets", "all-linear", "--weighting-scheme", "mode", "--mode-scale", "1.0"],
    "logit_normal, caption dropout": ["--weighting-scheme", "logit_normal", "--caption-dropout", "0.5"],
    "weighted, two resolutions": ["--weighting-scheme", "weighted", "--resolution", "32", "16"],
}  # fmt: skip


@pytest.mark.parametrize("label", list(OPTIONS))
def test_each_option_trains_and_the_file_records_it(label: str, tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "option.safetensors"
    argv = ["--data", str(tiny_dataset), "--out", str(out), "--preset", "tiny", "--rank", "2", "--steps", "2"]
    argv += ["--resolution", "16", "--max-sequence-length", "32", "--held-in-pairs", "1", *OPTIONS[label]]
    args = parse(train, argv)
    train._check_args(args)
    result = train.train(args)
    expected = TrainingRecipe.from_args(args)

    assert len(result.losses) == 2 and all(math.isfinite(loss) for loss in result.losses)
    keys, adapter, recipe = read_lora(out)
    state = load_file(str(out))
    assert lora_modules(keys) == BLOCK_MODULES[expected.targets]
    assert all(value.shape[0] == 2 for key, value in state.items() if "lora_A" in key)
    assert any(value.abs().sum() > 0 for key, value in state.items() if "lora_B" in key)  # it trained
    assert adapter["transformer.r"] == adapter["transformer.lora_alpha"] == 2
    assert recipe == {**expected.to_json_dict(), "alpha_folded_into_lora_B": True}
    assert recipe["alpha"] == expected.lora_alpha and recipe["resolutions"] == sorted(args.resolution)
    assert result.samples == 6 * len(args.resolution)  # 6 pairs of 96² targets, one bucket per resolution
    assert result.ai_toolkit_config is not None and result.ai_toolkit_config.is_file()


def test_alpha_is_folded_so_ours_acts_as_trained_in_our_chain_and_in_plain_diffusers(
    tiny_models: LoadedModels, tmp_path: Path
) -> None:
    from diffusers import FluxKontextPipeline, FluxTransformer2DModel

    kontext_folder = tiny_models.model_ids["kontext"]
    transformer = FluxTransformer2DModel.from_pretrained(kontext_folder, subfolder="transformer")
    recipe = TrainingRecipe(targets="attention-ff", rank=4, alpha=1, steps=1)  # PEFT scale 1 / 4
    torch.manual_seed(0)
    train._add_lora(transformer, recipe)
    for name, parameter in transformer.named_parameters():
        if "lora_B" in name:  # as if trained
            parameter.data.normal_(std=0.5)
    trained_b = {
        name: parameter.detach().clone() for name, parameter in transformer.named_parameters() if "lora_B" in name
    }
    as_trained = transformer_probe(transformer)
    out = tmp_path / "folded.safetensors"
    train.save_lora(transformer, out, recipe)

    # Known answer: the file's B is the trained B times alpha / rank.
    saved = load_file(str(out))
    for name, value in trained_b.items():
        key = "transformer." + name.replace(f".{train.ADAPTER_NAME}", "")
        torch.testing.assert_close(saved[key], value * 0.25)

    # Our chain's loader, and plain diffusers on the tiny Kontext folder (a complete pipeline), act as trained.
    try:
        tiny_models.loras.load_file(out, "folded")
        tiny_models.loras.activate("folded", 1.0)
        torch.testing.assert_close(transformer_probe(tiny_models.kontext.transformer), as_trained, rtol=1e-4, atol=1e-5)
    finally:
        tiny_models.loras.unload()
    pipe = FluxKontextPipeline.from_pretrained(kontext_folder)
    pipe.load_lora_weights(str(out), adapter_name="folded")
    torch.testing.assert_close(transformer_probe(pipe.transformer), as_trained, rtol=1e-4, atol=1e-5)


def test_the_trainers_defaults_are_the_recipes() -> None:
    args = parse(train, ["--data", "d", "--out", "x.safetensors"])
    assert TrainingRecipe.from_args(args) == DEFAULTS
