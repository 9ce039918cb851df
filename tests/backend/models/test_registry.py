"""load_models on the tiny preset: one copy of the shared components, the same from_pretrained path as full."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from alch3mist.config import Settings
from alch3mist.errors import ModelLoadError
from alch3mist.models.registry import (
    FULL_DEFAULTS,
    TINY_DEFAULTS,
    LoadedModels,
    _load_flux,
    load_models,
    resolve_preset,
)
from alch3mist.models.tiny import TINY_VERSION


def test_kontext_shares_vae_text_encoders_and_tokenizers_with_flux(tiny_models: LoadedModels) -> None:
    flux, kontext = tiny_models.flux, tiny_models.kontext
    for name in ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"):
        assert getattr(kontext, name) is getattr(flux, name), name


def test_kontext_has_its_own_transformer(tiny_models: LoadedModels) -> None:
    flux_weights = tiny_models.flux.transformer.state_dict()
    kontext_weights = tiny_models.kontext.transformer.state_dict()
    assert tiny_models.kontext.transformer is not tiny_models.flux.transformer
    assert not torch.equal(flux_weights["x_embedder.weight"], kontext_weights["x_embedder.weight"])


def test_tiny_models_load_from_the_saved_folders(tiny_models: LoadedModels, tiny_settings: Settings) -> None:
    root = tiny_settings.cache_dir / TINY_VERSION
    assert tiny_models.model_ids == {"flux": str(root / "flux"), "kontext": str(root / "kontext")}
    assert tiny_models.preset == "tiny"
    assert tiny_models.defaults == TINY_DEFAULTS


def test_every_model_is_in_eval_mode(tiny_models: LoadedModels) -> None:
    for pipe in (tiny_models.flux, tiny_models.kontext):
        for name, component in pipe.components.items():
            if isinstance(component, torch.nn.Module):
                assert not component.training, name


def test_full_defaults_are_the_published_flux_settings() -> None:
    assert (FULL_DEFAULTS.steps, FULL_DEFAULTS.guidance, FULL_DEFAULTS.size) == (28, 3.5, 1024)
    assert (FULL_DEFAULTS.edit_guidance, FULL_DEFAULTS.kontext_max_area) == (2.5, 1024**2)


def test_auto_preset_on_cpu_is_tiny_and_says_so_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="alch3mist.models.registry"):
        assert resolve_preset("auto", cuda_available=False) == "tiny"
    assert "TINY preset" in caplog.text


@pytest.mark.parametrize(
    ("preset", "cuda", "expected"), [("auto", True, "full"), ("tiny", True, "tiny"), ("full", False, "full")]
)
def test_explicit_presets_and_auto_on_cuda(preset: str, cuda: bool, expected: str) -> None:
    assert resolve_preset(preset, cuda_available=cuda) == expected  # type: ignore[arg-type]


def test_missing_weights_raise_model_load_error_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="ALCH3MIST_FLUX_MODEL"):
        _load_flux(str(tmp_path), torch.float32)  # the loader both presets use, on a folder without weights


def test_full_preset_without_cuda_is_refused_before_loading_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this machine, wherever the test runs
    settings = Settings(_env_file=None, preset="full", data_dir=tmp_path)  # type: ignore[call-arg]
    with pytest.raises(ModelLoadError, match="needs a CUDA GPU"):
        load_models(settings)
