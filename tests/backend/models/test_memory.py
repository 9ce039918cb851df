"""Memory plans: the choice from free VRAM, and what can honestly run on a CPU-only machine."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from alch3mist.errors import ModelLoadError, OutOfMemory
from alch3mist.models.memory import (
    PLANS,
    apply_memory_plan,
    choose_memory_plan,
    next_lighter_plan,
    run_with_oom_retry,
    unique_modules,
)
from alch3mist.models.registry import LoadedModels

GB = 10**9


@pytest.mark.parametrize(
    ("free_gb", "plan"),
    [
        (141, "resident"),  # H200
        (80, "resident"),  # H100 / A100 80 GB
        (48, "model_offload"),  # L40S / A6000
        (24, "group_offload"),  # RTX 4090: a 12B bf16 transformer alone is ~23.8 GB, model offload cannot fit it
        (16, "group_offload"),
        (4, "sequential_offload"),
    ],
)
def test_plan_for_simulated_free_vram(free_gb: int, plan: str) -> None:
    assert choose_memory_plan(free_gb * GB) == plan


def test_no_cuda_means_resident_on_the_cpu() -> None:
    assert choose_memory_plan(None) == "resident"


def test_plans_get_lighter_in_order() -> None:
    assert [next_lighter_plan(p) for p in PLANS] == [*PLANS[1:], None]


def test_tiny_preset_is_resident_in_float32_on_the_cpu_and_bf16_on_a_gpu(tiny_models: LoadedModels) -> None:
    cuda = torch.cuda.is_available()
    expected_device, expected_dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    assert (tiny_models.device, tiny_models.memory_plan, tiny_models.dtype) == (
        expected_device,
        "resident",
        expected_dtype,
    )
    assert all(p.device.type == expected_device for m in unique_modules(tiny_models) for p in m.parameters())


def test_shared_modules_are_counted_once(tiny_models: LoadedModels) -> None:
    # flux: transformer, vae, 2 text encoders; kontext adds only its own transformer.
    assert len(list(unique_modules(tiny_models))) == 5


@pytest.mark.parametrize("plan", ["model_offload", "group_offload", "sequential_offload"])
def test_offload_plans_are_refused_on_cpu_with_the_setting_to_change(tiny_models: LoadedModels, plan: str) -> None:
    on_cpu = dataclasses.replace(tiny_models, device="cpu")
    with pytest.raises(ModelLoadError, match="ALCH3MIST_MEMORY_PLAN"):
        apply_memory_plan(on_cpu, plan)
    assert on_cpu.memory_plan == "resident"


def test_unknown_plan_is_refused(tiny_models: LoadedModels) -> None:
    with pytest.raises(ModelLoadError, match="unknown memory plan"):
        apply_memory_plan(tiny_models, "everything_on_disk")


def test_oom_on_the_lightest_plan_raises_out_of_memory_naming_the_knobs(tiny_models: LoadedModels) -> None:
    models = dataclasses.replace(tiny_models, memory_plan="sequential_offload")
    calls = []

    def out_of_memory() -> None:
        calls.append(1)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(OutOfMemory, match="ALCH3MIST_MEMORY_PLAN") as raised:
        run_with_oom_retry(models, models.flux, out_of_memory)
    assert calls == [1]  # nothing lighter to retry with
    assert "image size" in str(raised.value)


def test_a_successful_call_passes_its_result_through(tiny_models: LoadedModels) -> None:
    assert run_with_oom_retry(tiny_models, tiny_models.flux, lambda: 42) == 42


@pytest.mark.parametrize(
    ("offload_type", "t5_groups", "clip_groups"),
    [
        ("block_level", ["encoder.block.0", "encoder.block.1"], ["encoder.layers.0", "encoder.layers.1"]),
        ("leaf_level", ["encoder.block.1.layer.1.DenseReluDense.wo"], ["encoder.layers.1.mlp.fc2"]),
    ],
)
def test_group_offload_splits_the_text_encoders_into_their_blocks(
    tiny_models: LoadedModels, offload_type: str, t5_groups: list[str], clip_groups: list[str]
) -> None:
    """The group-offload wiring, on the CPU (onload device = cpu): T5/CLIP split up, outputs unchanged."""
    from alch3mist.models.memory import _enable_group_offload
    from diffusers.hooks.group_offloading import _GROUP_OFFLOADING
    from transformers import CLIPTextModel, T5EncoderModel

    folder = tiny_models.model_ids["flux"]
    t5 = T5EncoderModel.from_pretrained(folder, subfolder="text_encoder_2").eval()
    clip = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder").eval()
    ids = torch.tensor([[5, 6, 7, 1]])
    expected = t5(ids).last_hidden_state, clip(ids).pooler_output

    for model in (t5, clip):
        _enable_group_offload(model, torch.device("cpu"), offload_type)

    def grouped(model: torch.nn.Module) -> set[str]:
        return {
            name
            for name, module in model.named_modules()
            if getattr(module, "_diffusers_hook", None) and module._diffusers_hook.get_hook(_GROUP_OFFLOADING)
        }

    assert set(t5_groups) <= grouped(t5)
    assert set(clip_groups) <= grouped(clip)
    assert torch.equal(t5(ids).last_hidden_state, expected[0])
    assert torch.equal(clip(ids).pooler_output, expected[1])
