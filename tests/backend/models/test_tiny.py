"""The tiny preset's components: locally trained tokenizers and a cache that is built once."""

from __future__ import annotations

from pathlib import Path

from alch3mist.models.registry import LoadedModels
from alch3mist.models.tiny import build_clip_tokenizer, build_t5_tokenizer, ensure_tiny_models, tiny_paths
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


def test_cache_is_built_once_and_reused(tmp_path: Path) -> None:
    first = ensure_tiny_models(tmp_path)
    stamp = (first.flux / "model_index.json").stat().st_mtime_ns
    assert ensure_tiny_models(tmp_path) == first == tiny_paths(tmp_path)
    assert (first.flux / "model_index.json").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-v1"]  # no staging folder left behind


def test_tiny_build_is_deterministic(tmp_path: Path, tiny_models: LoadedModels) -> None:
    rebuilt = ensure_tiny_models(tmp_path)
    original = Path(tiny_models.model_ids["flux"])
    for part in ("transformer/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"):
        assert (rebuilt.flux / part).read_bytes() == (original / part).read_bytes(), part
