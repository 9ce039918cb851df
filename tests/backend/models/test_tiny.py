"""The tiny preset's components: locally trained tokenizers, a cache built once, folders laid out like the hub."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from alch3mist.models.registry import LoadedModels
from alch3mist.models.tiny import (
    SHARED_COMPONENTS,
    TINY_VERSION,
    build_clip_tokenizer,
    build_t5_tokenizer,
    ensure_tiny_models,
    tiny_paths,
)
from transformers import AutoTokenizer


def test_clip_tokenizer_uses_its_trained_vocabulary() -> None:
    tokenizer = build_clip_tokenizer()
    assert len(tokenizer) == tokenizer.backend_tokenizer.get_vocab_size() > 300
    ids = tokenizer("Alch3mist crocodile skin").input_ids
    assert tokenizer.unk_token_id not in ids[1:-1]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "alch 3 mist crocodile skin"


def test_t5_tokenizer_uses_its_trained_vocabulary() -> None:
    tokenizer = build_t5_tokenizer()
    assert len(tokenizer) > 100
    ids = tokenizer("Alch3mist crocodile skin").input_ids
    assert ids[-1] == tokenizer.eos_token_id == 1
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Alch3mist crocodile skin"


def test_saved_tokenizers_reload_with_the_same_vocabulary(tiny_models: LoadedModels) -> None:
    flux_folder = Path(tiny_models.model_ids["flux"])
    for subfolder, component in (("tokenizer", "tokenizer"), ("tokenizer_2", "tokenizer_2")):
        reloaded = AutoTokenizer.from_pretrained(flux_folder / subfolder)
        in_pipeline = getattr(tiny_models.flux, component)
        assert len(reloaded) == len(in_pipeline)
        text_encoder = tiny_models.flux.text_encoder if component == "tokenizer" else tiny_models.flux.text_encoder_2
        assert text_encoder.config.vocab_size == len(in_pipeline)


def test_cache_is_built_once_and_reused_and_an_older_version_is_not(tmp_path: Path) -> None:
    stale = tmp_path / "tiny-v1" / "kontext" / "transformer"  # v1 had no Kontext pipeline folder
    stale.mkdir(parents=True)
    first = ensure_tiny_models(tmp_path)
    stamp = (first.flux / "model_index.json").stat().st_mtime_ns
    assert ensure_tiny_models(tmp_path) == first == tiny_paths(tmp_path)
    assert (first.flux / "model_index.json").stat().st_mtime_ns == stamp
    assert TINY_VERSION != "tiny-v1" and first.kontext.parent.name == TINY_VERSION
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["tiny-v1", TINY_VERSION])  # no staging folder left


def test_the_kontext_folder_is_a_complete_pipeline_like_the_hub_repo(tiny_models: LoadedModels) -> None:
    """Plain diffusers loads it (other tools too); its transformer is the one the registry loads, the rest is the
    FLUX.1-dev folder's, file for file, as in black-forest-labs/FLUX.1-Kontext-dev."""
    from diffusers import FluxKontextPipeline

    flux_folder, kontext_folder = Path(tiny_models.model_ids["flux"]), Path(tiny_models.model_ids["kontext"])
    index = json.loads((kontext_folder / "model_index.json").read_text(encoding="utf-8"))
    assert index["_class_name"] == "FluxKontextPipeline"
    pipe = FluxKontextPipeline.from_pretrained(kontext_folder)
    registry_weights = tiny_models.kontext.transformer.state_dict()
    for name, value in pipe.transformer.state_dict().items():
        assert torch.equal(value, registry_weights[name]), name
    for component in SHARED_COMPONENTS:
        shared = sorted(p.relative_to(flux_folder) for p in (flux_folder / component).rglob("*") if p.is_file())
        assert shared, component
        for relative in shared:
            assert (kontext_folder / relative).read_bytes() == (flux_folder / relative).read_bytes(), relative
    assert not torch.equal(
        pipe.transformer.x_embedder.weight, tiny_models.flux.transformer.x_embedder.weight
    )  # its own transformer


def test_tiny_build_is_deterministic(tmp_path: Path, tiny_models: LoadedModels) -> None:
    rebuilt = ensure_tiny_models(tmp_path)
    original = Path(tiny_models.model_ids["flux"])
    for part in ("transformer/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"):
        assert (rebuilt.flux / part).read_bytes() == (original / part).read_bytes(), part
