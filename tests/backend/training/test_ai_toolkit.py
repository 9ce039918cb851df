"""The ai-toolkit export, read back by ai-toolkit's own config rules (written here from its source, not imported).

Sources (ostris/ai-toolkit): ``toolkit/config.py`` (YAML loader, ``preprocess_config``), ``jobs/BaseJob.py`` and
``jobs/ExtensionJob.py`` (job, name, process list), ``jobs/process/BaseProcess.py``, ``BaseTrainProcess.py`` and
``BaseSDTrainProcess.py`` (the process keys read with ``get_conf``), ``toolkit/config_modules.py``
(``NetworkConfig``, ``TrainConfig``, ``DatasetConfig``, ``ModelConfig``, ``SaveConfig``, ``SampleConfig``,
``preprocess_dataset_raw_config``, ``GenerateImageConfig._process_prompt_string``), ``toolkit/lora_special.py``
(which Linear layers get a LoRA), ``toolkit/scheduler.py`` (``get_lr_scheduler``) and ``toolkit/optimizer.py``.

The key sets below are keys those classes read (``kwargs.get(...)``); for the big classes only the ones a Kontext
LoRA run can need, each checked in the source: a key we write that is in none of them fails the test.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from alch3mist.models.registry import LoadedModels
from alch3mist.prompting.schema import TRIGGER_WORD
from alch3mist.training import ai_toolkit, train
from alch3mist.training.ai_toolkit import write_ai_toolkit_export
from alch3mist.training.recipe import TARGET_SETS, TrainingRecipe

# jobs/process/BaseProcess.py, BaseTrainProcess.py, BaseSDTrainProcess.py: get_conf(...) of the process section.
PROCESS_KEYS = {
    "type", "name", "performance_log_every", "training_seed", "training_folder", "log_dir", "network", "train",
    "model", "save", "sample", "first_sample", "logging", "trigger_word", "guidance", "datasets", "embedding",
    "decorator", "adapter", "do_lorm", "lorm_extract_mode", "lorm_extract_mode_param", "torch_profiler",
}  # fmt: skip
NETWORK_KEYS = {
    "type", "rank", "linear", "conv", "alpha", "linear_alpha", "conv_alpha", "dropout", "network_kwargs", "lorm",
    "transformer_only", "lokr_full_rank", "lokr_factor", "old_lokr_format", "split_multistage_loras",
    "layer_offloading", "pretrained_lora_path", "all_layers",
}  # fmt: skip
# LoRASpecialNetwork.__init__ keyword arguments that network_kwargs may set (toolkit/lora_special.py).
NETWORK_KWARGS = {"ignore_if_contains", "only_if_contains", "full_if_contains", "parameter_threshold"}
SAVE_KEYS = {"save_every", "dtype", "max_step_saves_to_keep", "save_format", "push_to_hub", "hf_repo_id", "hf_private"}
SAMPLE_KEYS = {
    "sampler", "sample_every", "sample_start_step", "width", "height", "neg", "seed", "walk_seed", "guidance_scale",
    "sample_steps", "network_multiplier", "guidance_rescale", "format", "adapter_conditioning_scale",
    "refiner_start_at", "extra_values", "num_frames", "fps", "prompts", "samples", "do_cfg_norm",
}  # fmt: skip
TRAIN_KEYS = {
    "noise_scheduler", "steps", "lr", "unet_lr", "text_encoder_lr", "optimizer", "optimizer_params", "lr_scheduler",
    "lr_scheduler_params", "min_denoising_steps", "max_denoising_steps", "batch_size", "dtype", "train_unet",
    "train_text_encoder", "noise_offset", "skip_first_sample", "gradient_checkpointing", "max_grad_norm",
    "gradient_accumulation_steps", "gradient_accumulation", "cfg_scale", "timestep_type", "linear_timesteps",
    "disable_sampling", "cache_text_embeddings", "unload_text_encoder", "bypass_guidance_embedding", "loss_type",
    "ema_config", "content_or_style",
}  # fmt: skip
DATASET_KEYS = {
    "folder_path", "dataset_path", "control_path", "caption_ext", "caption_type", "default_caption", "trigger_word",
    "caption_dropout_rate", "token_dropout_rate", "shuffle_tokens", "keep_tokens", "resolution", "buckets",
    "bucket_tolerance", "random_crop", "square_crop", "flip_x", "flip_y", "num_repeats", "cache_latents",
    "cache_latents_to_disk", "cache_text_embeddings", "is_reg", "network_weight", "num_workers",
}  # fmt: skip
MODEL_KEYS = {
    "name_or_path", "arch", "quantize", "quantize_te", "qtype", "qtype_te", "low_vram", "dtype", "vae_path",
    "lora_path", "ignore_if_contains", "only_if_contains", "extras_name_or_path", "layer_offloading",
}  # fmt: skip
TIMESTEP_TYPES = {"sigmoid", "linear", "lognorm_blend", "next_sample", "weighted", "one_step", "flux_shift", "shift"}
LR_SCHEDULERS = {"cosine", "cosine_with_restarts", "step", "constant", "linear", "constant_with_warmup"}
OPTIMIZERS = {"adamw", "adamw8bit", "adam", "adam8bit", "prodigy", "adafactor", "lion"}
DTYPES = {"float", "fp32", "single", "float32", "fp16", "half", "float16", "bf16", "bfloat16"}  # get_torch_dtype


class _AiToolkitLoader(yaml.SafeLoader):
    """toolkit/config.py loads YAML with SafeLoader plus a float resolver that also reads ``1e-4`` (no dot)."""


_AiToolkitLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.[0-9_]+)$"),
    list("-+0123456789."),
)


def read_like_ai_toolkit(path: Path) -> dict[str, Any]:
    """Load and check a config as ``run.py`` would; returns the config with ``[name]`` filled in."""
    config = yaml.load(path.read_text(encoding="utf-8"), Loader=_AiToolkitLoader)  # a SafeLoader subclass
    assert config["job"] == "extension" and "config" in config and config["config"].get("name")  # preprocess_config
    name = config["config"]["name"]
    config = json.loads(json.dumps(config).replace("[name]", name))
    assert set(config) <= {"job", "config", "meta"} and set(config["config"]) <= {"name", "process", "device"}
    processes = config["config"]["process"]
    assert isinstance(processes, list) and processes and all(p["type"] == "sd_trainer" for p in processes)
    return config


def _unread(section: dict[str, Any], read: set[str]) -> set[str]:
    return set(section) - read


def check_run_config(path: Path, recipe: TrainingRecipe, data: Path) -> None:
    """Every key of ``path`` is one ai-toolkit reads, and it reads back the values of ``recipe``'s run on ``data``."""
    (process,) = read_like_ai_toolkit(path)["config"]["process"]
    assert not _unread(process, PROCESS_KEYS)
    network, train_section, model = process["network"], process["train"], process["model"]
    save, sample, datasets = process["save"], process["sample"], process["datasets"]
    assert not _unread(network, NETWORK_KEYS) and not _unread(network.get("network_kwargs", {}), NETWORK_KWARGS)
    assert not _unread(train_section, TRAIN_KEYS) and not _unread(model, MODEL_KEYS)
    assert not _unread(save, SAVE_KEYS) and not _unread(sample, SAMPLE_KEYS)
    assert all(not _unread(dataset, DATASET_KEYS) for dataset in datasets)

    # NetworkConfig: rank falls back to linear; linear_alpha to alpha (default 1.0), so it must be written.
    assert (network["type"], network.get("rank", network["linear"]), network["linear_alpha"]) == (
        "lora",
        recipe.rank,
        recipe.lora_alpha,
    )
    # TrainConfig: the values of the run; gradient_accumulation and gradient_accumulation_steps are exclusive.
    assert train_section["lr"] == recipe.lr and isinstance(train_section["lr"], float)
    assert (train_section["steps"], train_section["batch_size"]) == (recipe.steps, recipe.batch_size)
    assert train_section["gradient_accumulation"] == recipe.gradient_accumulation_steps
    assert train_section.get("gradient_accumulation_steps", 1) == 1
    assert train_section["cfg_scale"] == recipe.guidance_scale  # SDTrainer: guidance_embedding_scale = cfg_scale
    assert train_section["timestep_type"] in TIMESTEP_TYPES and train_section["noise_scheduler"] == "flowmatch"
    assert train_section["optimizer"] == ("adamw8bit" if recipe.use_8bit_adam else "adamw")
    assert train_section["optimizer"] in OPTIMIZERS
    assert train_section["optimizer_params"] == {"weight_decay": recipe.adam_weight_decay}
    assert train_section["max_grad_norm"] == recipe.max_grad_norm
    assert train_section["gradient_checkpointing"] == recipe.gradient_checkpointing
    assert train_section["lr_scheduler"] in LR_SCHEDULERS and train_section["dtype"] in DTYPES
    # ModelConfig: name_or_path is required.
    assert model["name_or_path"] and model["arch"] == "flux_kontext"
    assert save["dtype"] in DTYPES and save.get("save_format", "safetensors") in ("safetensors", "diffusers")
    assert process["trigger_word"] == TRIGGER_WORD and process["training_seed"] == recipe.seed

    # DatasetConfig via preprocess_dataset_raw_config: one dataset per resolution, caption_ext gets its dot.
    split = [{**dataset, "resolution": side} for dataset in datasets for side in dataset["resolution"]]
    assert [dataset["resolution"] for dataset in split] == list(recipe.resolutions)
    for dataset in split:
        ext = dataset["caption_ext"] if dataset["caption_ext"].startswith(".") else "." + dataset["caption_ext"]
        assert dataset["caption_dropout_rate"] == recipe.caption_dropout
        images = sorted(Path(dataset["folder_path"]).glob("*.png"))
        assert len(images) == len((data / "metadata.jsonl").read_text(encoding="utf-8").splitlines())
        for image in images:  # the control image under the same name, the caption beside the target
            assert (Path(dataset["control_path"]) / image.name).is_file()
            assert image.with_suffix(ext).read_text(encoding="utf-8").startswith(TRIGGER_WORD)
    # SampleConfig: each prompt's "--ctrl_img" flag (GenerateImageConfig._process_prompt_string) names a control.
    for prompt in sample["prompts"]:
        flags = {part.split(" ")[0]: part[len(part.split(" ")[0]) :].strip() for part in prompt.split("--")[1:]}
        assert set(flags) == {"ctrl_img"} and Path(flags["ctrl_img"]).is_file()


def test_the_trained_runs_config_reads_back_with_the_runs_values(
    trained: train.TrainResult, tiny_dataset: Path
) -> None:
    assert trained.ai_toolkit_config is not None
    assert trained.ai_toolkit_config == trained.out.with_name(f"{trained.out.stem}-training") / "ai_toolkit.yaml"
    check_run_config(trained.ai_toolkit_config, trained.recipe, tiny_dataset)
    text = trained.ai_toolkit_config.read_text(encoding="utf-8")
    assert text.startswith("# ostris ai-toolkit config") and "# No ai-toolkit equivalent" in text
    assert "max-sequence-length 64" in text  # this run's 64 T5 tokens: ai-toolkit always encodes 512


RECIPES = {
    "attention, cosine, 8-bit": TrainingRecipe(
        targets="attention", rank=8, alpha=4, lr=3e-4, lr_scheduler="cosine", use_8bit_adam=True, steps=40,
        resolutions=(512,), weighting_scheme="none", guidance_scale=3.5, caption_dropout=0.0,
    ),
    "all-linear, linear decay with warm-up, mode": TrainingRecipe(
        targets="all-linear", lr_scheduler="linear", lr_warmup_steps=5, weighting_scheme="mode", steps=30,
        gradient_accumulation_steps=4, batch_size=2, gradient_checkpointing=True,
    ),
    "logit_normal, constant with warm-up": TrainingRecipe(
        weighting_scheme="logit_normal", logit_mean=0.5, lr_warmup_steps=3, steps=12, resolutions=(512, 1024),
    ),
}  # fmt: skip


@pytest.mark.parametrize("label", list(RECIPES))
def test_every_recipe_is_written_as_fields_ai_toolkit_reads(label: str, tiny_dataset: Path, tmp_path: Path) -> None:
    recipe = RECIPES[label]
    path = write_ai_toolkit_export(tiny_dataset, recipe, tmp_path / "run.yaml", dtype="fp32")
    check_run_config(path, recipe, tiny_dataset)
    header = "".join(line for line in path.read_text(encoding="utf-8").splitlines(True) if line.startswith("#"))
    for note in ai_toolkit.untranslated(recipe):
        assert note in header
    if recipe.weighting_scheme == "mode":
        assert "--weighting-scheme mode" in header
    if recipe.lr_warmup_steps and recipe.lr_scheduler != "constant":
        assert "ai-toolkit has no warm-up" in header


def test_default_recipe_without_steps_gets_one_epoch_of_samples(tiny_dataset: Path, tmp_path: Path) -> None:
    path = write_ai_toolkit_export(tiny_dataset, TrainingRecipe(), tmp_path / "defaults.yaml")
    (process,) = read_like_ai_toolkit(path)["config"]["process"]
    # 6 pairs of 96² targets: never upscaled, so 512/768/1024 give one 96² bucket each -> 6 samples, 6 steps.
    assert process["train"]["steps"] == 6 and process["train"]["timestep_type"] == "weighted"


@pytest.mark.parametrize(
    ("scheduler", "warmup"), [("constant", 0), ("cosine", 0), ("linear", 0), ("constant", 4)]
)  # fmt: skip
def test_ai_toolkits_lr_schedule_is_ours(scheduler: str, warmup: int) -> None:
    """get_lr_scheduler(name, optimizer, total_iters=steps, **lr_scheduler_params), stepped once per step."""
    from diffusers.optimization import get_constant_schedule_with_warmup

    steps = 20
    recipe = TrainingRecipe(lr_scheduler=scheduler, lr_warmup_steps=warmup, steps=steps)  # type: ignore[arg-type]
    name, params, _note = ai_toolkit._lr_scheduler(recipe)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    kwargs = {**params, "total_iters": steps}
    if name == "cosine":
        schedule: Any = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=kwargs.pop("total_iters"))
    elif name == "constant":
        schedule = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, **kwargs)
    elif name == "linear":
        schedule = torch.optim.lr_scheduler.LinearLR(optimizer, **kwargs)
    else:
        del kwargs["total_iters"]
        schedule = get_constant_schedule_with_warmup(optimizer, **kwargs)
    theirs = []
    for _step in range(steps):
        theirs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # (no gradient: nothing moves) the order torch expects
        schedule.step()
    ours = [train._set_lr(optimizer, step, steps, recipe) for step in range(steps)]
    if warmup:  # ai-toolkit's warm-up is one step later (step / N, ours (step + 1) / N): the YAML's comment says so
        assert theirs[1 : warmup + 1] == pytest.approx(ours[:warmup], abs=1e-12)
        assert theirs[warmup:] == pytest.approx(ours[warmup:], abs=1e-12)
    else:
        assert theirs == pytest.approx(ours, abs=1e-12)


def _ai_toolkit_lora_layers(transformer: torch.nn.Module, only_if_contains: list[str] | None) -> set[str]:
    """toolkit/lora_special.py create_modules for FluxTransformer2DModel with transformer_only: every Linear child
    whose name ``transformer.<child>`` holds "transformer_blocks", kept if it contains an only_if_contains word."""
    names = set()
    for child_name, child in transformer.named_modules():
        clean_name = f"transformer.{child_name}"
        if type(child).__name__ != "Linear" or "transformer_blocks" not in clean_name:
            continue
        if only_if_contains is not None and not any(word in clean_name for word in only_if_contains):
            continue
        names.add(child_name)
    return names


@pytest.mark.parametrize("targets", list(TARGET_SETS))
def test_ai_toolkit_puts_the_lora_on_the_layers_we_do(targets: str, tiny_models: LoadedModels) -> None:
    transformer = tiny_models.kontext.transformer
    ours = {name for name, _layer in train.target_layers(transformer, TrainingRecipe(targets=targets))}  # type: ignore[arg-type]
    assert _ai_toolkit_lora_layers(transformer, ai_toolkit.ONLY_IF_CONTAINS[targets]) == ours


def test_the_export_does_not_import_the_dataset_builder() -> None:
    """ai_toolkit -> dataset -> ai_toolkit was an import cycle: the export reads records, the builder calls it."""
    import alch3mist.training.ai_toolkit as module

    tree = ast.parse(Path(str(module.__file__)).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "dataset" not in imported and "train" not in imported and "records" in imported
