"""LoRAs on the tiny Kontext transformer: real PEFT adapters, real files, real pipeline calls."""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from alch3mist.errors import InvalidLora, UnknownLora
from alch3mist.models.lora import validate_lora_file
from alch3mist.models.registry import LoadedModels
from alch3mist.stages.base_image import BaseImageStage
from alch3mist.stages.material_edit import MaterialEditStage
from alch3mist.stages.progress import StageControl
from PIL import Image
from safetensors.torch import load_file, save_file

from tests.conftest import LoraFactory, png_bytes, transformer_probe, write_tiny_lora

EDIT = "Alch3mist make it polished gold, keep the shape"


@pytest.fixture
def models(tiny_models: LoadedModels) -> Iterator[LoadedModels]:
    """The shared tiny models, with every adapter removed again afterwards."""
    yield tiny_models
    tiny_models.loras.unload()


@pytest.fixture
def lora_dir(models: LoadedModels) -> Iterator[Path]:
    folder = models.loras.lora_dir
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    shutil.rmtree(folder)


def edit(models: LoadedModels, lora: str | None, scale: float = 1.0) -> bytes:
    image = Image.radial_gradient("L").resize((64, 64)).convert("RGB")
    out = MaterialEditStage(models).run(
        image, EDIT, seed=5, steps=2, guidance=2.5, lora=lora, lora_scale=scale, control=StageControl()
    )
    return png_bytes(out)


def test_validate_reads_rank_and_format(tiny_lora_file: Path) -> None:
    info = validate_lora_file(tiny_lora_file)
    assert info["rank"] == 4
    assert info["format"] == "diffusers"


def test_listing_shows_name_file_size_and_rank(models: LoadedModels, lora_dir: Path, tiny_lora_file: Path) -> None:
    shutil.copy(tiny_lora_file, lora_dir / "alch3mist.safetensors")
    (lora_dir / "notes.txt").write_text("not a LoRA")
    [info] = models.loras.available()
    assert (info.name, info.file, info.rank) == ("alch3mist", "alch3mist.safetensors", 4)
    assert info.size_bytes == tiny_lora_file.stat().st_size


def test_scale_one_changes_the_edit_and_scale_zero_and_unload_restore_the_baseline(
    models: LoadedModels, lora_dir: Path, tiny_lora_file: Path
) -> None:
    shutil.copy(tiny_lora_file, lora_dir / "alch3mist.safetensors")
    baseline = edit(models, None)

    with_lora = edit(models, "alch3mist", 1.0)
    assert with_lora != baseline
    assert models.loras.active() == ("alch3mist", 1.0)

    assert edit(models, "alch3mist", 0.0) == baseline
    assert models.loras.active() is None
    assert edit(models, "alch3mist", 1.0) == with_lora  # re-enabled without reloading

    models.loras.unload()
    assert edit(models, None) == baseline


def test_hot_swap_between_two_loras_without_reloading_the_base(
    models: LoadedModels, lora_dir: Path, tiny_lora_factory: LoraFactory
) -> None:
    tiny_lora_factory(lora_dir / "gold.safetensors", seed=1)
    tiny_lora_factory(lora_dir / "moss.safetensors", seed=2)
    base_weights = models.kontext.transformer

    gold = edit(models, "gold")
    moss = edit(models, "moss")
    assert gold != moss
    assert models.loras.active() == ("moss", 1.0)
    assert edit(models, "gold") == gold  # both adapters stay loaded: switching back is exact
    assert models.kontext.transformer is base_weights


def test_scale_is_applied(models: LoadedModels, lora_dir: Path, tiny_lora_file: Path) -> None:
    shutil.copy(tiny_lora_file, lora_dir / "alch3mist.safetensors")
    assert edit(models, "alch3mist", 0.5) != edit(models, "alch3mist", 1.0)


def test_load_file_loads_any_path_under_its_adapter_name(models: LoadedModels, tiny_lora_file: Path) -> None:
    baseline = edit(models, None)
    models.loras.load_file(tiny_lora_file, "trainer-step-100")
    assert models.loras.active() is None  # loading does not activate
    assert edit(models, None) == baseline
    assert edit(models, "trainer-step-100") != baseline


def test_unknown_name_lists_the_available_loras(models: LoadedModels, lora_dir: Path, tiny_lora_file: Path) -> None:
    shutil.copy(tiny_lora_file, lora_dir / "alch3mist.safetensors")
    with pytest.raises(UnknownLora, match=r"unknown LoRA 'nope'; available: alch3mist"):
        models.loras.activate("nope", 1.0)


def test_unknown_name_with_an_empty_folder_says_where_to_put_loras(models: LoadedModels) -> None:
    with pytest.raises(UnknownLora, match=r"put \.safetensors files in"):
        models.loras.activate("alch3mist", 1.0)


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".ckpt"])
def test_pickle_files_are_refused_without_being_opened(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"lora{suffix}"
    path.write_bytes(pickle.dumps({"transformer.x.lora_A.weight": [0.0]}))
    with pytest.raises(InvalidLora, match="pickle"):
        validate_lora_file(path)


def test_a_pickle_renamed_to_safetensors_is_refused_as_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "sneaky.safetensors"
    path.write_bytes(pickle.dumps({"transformer.x.lora_A.weight": [0.0]}))
    with pytest.raises(InvalidLora, match="not a readable safetensors"):
        validate_lora_file(path)


def test_corrupt_bytes_are_refused(tmp_path: Path, tiny_lora_file: Path) -> None:
    path = tmp_path / "truncated.safetensors"
    path.write_bytes(tiny_lora_file.read_bytes()[:100])
    with pytest.raises(InvalidLora, match="corrupt"):
        validate_lora_file(path)


def test_a_file_without_lora_weights_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    save_file({"transformer.x_embedder.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(InvalidLora, match="no LoRA weights"):
        validate_lora_file(path)


def test_a_lora_for_another_base_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sdxl.safetensors"
    save_file(
        {
            "unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": torch.zeros(4, 8),
            "unet.down_blocks.0.attentions.0.proj_in.lora_B.weight": torch.zeros(8, 4),
        },
        str(path),
    )
    with pytest.raises(InvalidLora, match="another base model"):
        validate_lora_file(path)


def test_a_flux_lora_with_the_wrong_shapes_is_refused_and_leaves_no_adapter(
    models: LoadedModels, tmp_path: Path
) -> None:
    path = tmp_path / "full-size.safetensors"
    # Real FLUX.1 names, but FLUX.1's 3072-wide attention: not this transformer.
    save_file(
        {
            "transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.ones(4, 3072),
            "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.ones(3072, 4),
        },
        str(path),
    )
    baseline = edit(models, None)
    with pytest.raises(InvalidLora, match="another base model"):
        models.loras.load_file(path, "full-size")
    assert not getattr(models.kontext.transformer, "peft_config", {})
    assert edit(models, None) == baseline


def test_a_lora_naming_modules_this_transformer_lacks_is_refused(models: LoadedModels, tmp_path: Path) -> None:
    path = tmp_path / "deeper.safetensors"
    # Block 5 does not exist in the tiny transformer (1 double block): PEFT would load nothing for it.
    save_file(
        {
            "transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.ones(4, 32),
            "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.ones(32, 4),
            "transformer.transformer_blocks.5.attn.to_q.lora_A.weight": torch.ones(4, 32),
            "transformer.transformer_blocks.5.attn.to_q.lora_B.weight": torch.ones(32, 4),
        },
        str(path),
    )
    with pytest.raises(InvalidLora, match="another base model"):
        models.loras.load_file(path, "deeper")


def test_an_unprefixed_peft_state_dict_is_refused_not_silently_ignored(models: LoadedModels, tmp_path: Path) -> None:
    path = write_tiny_lora(models, tmp_path / "raw-peft.safetensors", seed=3, prefix="")
    assert validate_lora_file(path)["format"] == "peft-unprefixed"
    with pytest.raises(InvalidLora, match=r"'transformer\.' prefix"):
        models.loras.load_file(path, "raw-peft")


def write_kohya_lora(path: Path, seed: int) -> Path:
    """A LoRA in kohya's key format for the tiny transformer (fused qkv, BFL module names, alphas)."""
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for module, (fan_in, fan_out) in {
        "double_blocks_0_img_attn_qkv": (32, 96),
        "double_blocks_0_img_attn_proj": (32, 32),
        "single_blocks_0_linear2": (32 + 128, 32),
    }.items():
        tensors[f"lora_unet_{module}.lora_down.weight"] = torch.randn(4, fan_in, generator=generator)
        tensors[f"lora_unet_{module}.lora_up.weight"] = torch.randn(fan_out, 4, generator=generator)
        tensors[f"lora_unet_{module}.alpha"] = torch.tensor(4.0)
    save_file(tensors, str(path))
    return path


def test_a_kohya_lora_is_converted_and_changes_the_edit(models: LoadedModels, lora_dir: Path) -> None:
    path = write_kohya_lora(lora_dir / "kohya.safetensors", seed=4)
    assert validate_lora_file(path) | {"metadata": None} == {
        "rank": 4,
        "format": "kohya",
        "num_tensors": 9,
        "metadata": None,
    }
    assert edit(models, "kohya") != edit(models, None)


def test_text_encoder_weights_in_a_lora_are_ignored_so_stage_one_is_untouched(
    models: LoadedModels, lora_dir: Path, tiny_lora_file: Path
) -> None:
    tensors = load_file(str(tiny_lora_file))
    tensors["text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"] = torch.ones(4, 32)
    tensors["text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight"] = torch.ones(32, 4)
    save_file(tensors, str(lora_dir / "with-te.safetensors"))

    def base_image() -> bytes:
        image = BaseImageStage(models).run("a cow", seed=1, steps=2, guidance=3.5, size=64, control=StageControl())
        return png_bytes(image)

    before = base_image()
    edit(models, "with-te")
    assert models.loras.active() == ("with-te", 1.0)
    assert not hasattr(models.flux.text_encoder, "peft_config")
    assert base_image() == before


def test_a_lora_retrained_under_the_same_name_is_reloaded(
    models: LoadedModels, lora_dir: Path, tiny_lora_factory: LoraFactory
) -> None:
    path = tiny_lora_factory(lora_dir / "alch3mist.safetensors", seed=10)
    first = edit(models, "alch3mist")
    tiny_lora_factory(path, seed=11)  # the trainer writes a new version
    second = edit(models, "alch3mist")
    assert second != first
    path.unlink()
    with pytest.raises(UnknownLora):
        edit(models, "alch3mist")


def write_diffusers_script_lora(
    models: LoadedModels, path: Path, *, rank: int, alpha: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A LoRA saved the way diffusers' train_dreambooth_lora_flux_kontext.py saves one: PEFT adapter on its default
    targets (attention + ff + ff_context + proj_mlp), ``lora_B`` as trained (alpha not folded in), alpha only in the
    adapter metadata (``_collate_lora_metadata`` -> ``save_lora_weights``).

    Returns the adapted transformer's probe at its scale alpha / rank, and at scale 1 (alpha ignored)."""
    from alch3mist.training.recipe import ATTENTION_FF
    from diffusers import FluxKontextPipeline, FluxTransformer2DModel
    from diffusers.training_utils import _collate_lora_metadata
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    transformer = FluxTransformer2DModel.from_pretrained(models.model_ids["kontext"], subfolder="transformer")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=ATTENTION_FF)
        transformer.add_adapter(config)
        for name, parameter in transformer.named_parameters():
            if "lora_B" in name:  # as if trained: B starts at zero
                parameter.data.normal_(std=0.5)
    FluxKontextPipeline.save_lora_weights(
        str(path.parent),
        transformer_lora_layers=get_peft_model_state_dict(transformer),
        weight_name=path.name,
        **_collate_lora_metadata({"transformer": transformer}),
    )
    intended = transformer_probe(transformer)
    transformer.set_adapters(["default"], weights=[rank / alpha])  # PEFT scaling alpha / rank * weight = 1
    return intended, transformer_probe(transformer)


def test_a_lora_from_the_diffusers_script_acts_at_its_alpha_over_rank(models: LoadedModels, tmp_path: Path) -> None:
    path = tmp_path / "diffusers-script.safetensors"
    intended, at_scale_one = write_diffusers_script_lora(models, path, rank=8, alpha=2, seed=21)  # scale 2 / 8
    transformer = models.kontext.transformer
    base = transformer_probe(transformer)

    models.loras.load_file(path, "script")
    models.loras.activate("script", 1.0)
    loaded = transformer_probe(transformer)
    torch.testing.assert_close(loaded, intended, rtol=1e-4, atol=1e-5)

    # Known answer: the same tensors without the metadata act at scale 1 (what this loader did before).
    save_file(load_file(str(path)), str(tmp_path / "no-metadata.safetensors"))
    models.loras.load_file(tmp_path / "no-metadata.safetensors", "alpha-ignored")
    models.loras.activate("alpha-ignored", 1.0)
    torch.testing.assert_close(transformer_probe(transformer), at_scale_one, rtol=1e-4, atol=1e-5)
    assert (intended - base).abs().mean() > 1e-3 and (at_scale_one - intended).abs().mean() > 1e-3

    image = Image.radial_gradient("L").resize((64, 64)).convert("RGB")
    edit_with = MaterialEditStage(models).run(
        image, EDIT, seed=5, steps=2, guidance=2.5, lora="script", lora_scale=1.0, control=StageControl()
    )
    assert png_bytes(edit_with) != edit(models, None)  # it changes the chain's edit too
