"""Stage 2 on the tiny preset: real FluxKontextPipeline calls (shared encoders/VAE, own transformer)."""

from __future__ import annotations

import pytest
from alch3mist.errors import Cancelled, InvalidRequest, UnknownLora
from alch3mist.models.registry import LoadedModels
from alch3mist.stages.material_edit import MaterialEditStage, fit_to_area
from alch3mist.stages.progress import StageControl
from PIL import Image

from tests.conftest import png_bytes

EDIT = "Alch3mist turn its skin into crocodile leather, keep the shape and pose"


def source_image(width: int = 64, height: int = 64) -> Image.Image:
    return Image.radial_gradient("L").resize((width, height)).convert("RGB")


def edit(
    models: LoadedModels,
    image: Image.Image | None = None,
    *,
    seed: int = 3,
    steps: int = 2,
    lora: str | None = None,
    control: StageControl | None = None,
) -> Image.Image:
    return MaterialEditStage(models).run(
        image or source_image(),
        EDIT,
        seed=seed,
        steps=steps,
        guidance=2.5,
        lora=lora,
        lora_scale=1.0,
        control=control or StageControl(),
    )


def test_same_input_and_seed_give_the_same_png_bytes(tiny_models: LoadedModels) -> None:
    assert png_bytes(edit(tiny_models)) == png_bytes(edit(tiny_models))


def test_the_input_image_matters(tiny_models: LoadedModels) -> None:
    other = Image.linear_gradient("L").resize((64, 64)).convert("RGB")
    assert png_bytes(edit(tiny_models)) != png_bytes(edit(tiny_models, other))


def test_output_size_follows_max_area_not_the_input(tiny_models: LoadedModels) -> None:
    max_area = tiny_models.defaults.kontext_max_area
    out = edit(tiny_models, source_image(128, 64))  # 2:1, four times the max area
    assert out.width / out.height == pytest.approx(2.0, rel=0.1)
    # Kontext scales to max_area, then rounds each side to a multiple of vae_scale_factor * 2: within one step of it.
    multiple = tiny_models.kontext.vae_scale_factor * 2
    assert out.width % multiple == 0 and out.height % multiple == 0
    assert 0.8 * max_area <= out.width * out.height <= (max_area**0.5 + multiple) ** 2


def test_cancel_mid_denoise_raises_cancelled(tiny_models: LoadedModels) -> None:
    control = StageControl()
    control.on_progress = lambda fraction, message: control.cancel.set() if fraction > 0 else None
    with pytest.raises(Cancelled):
        edit(tiny_models, steps=4, control=control)


def test_unknown_lora_lists_the_available_ones(tiny_models: LoadedModels) -> None:
    with pytest.raises(UnknownLora, match="available"):
        edit(tiny_models, lora="no-such-lora")


@pytest.mark.parametrize(("prompt", "steps", "scale"), [(" ", 2, 1.0), (EDIT, 0, 1.0), (EDIT, 2, -1.0)])
def test_bad_input_is_refused_clearly(tiny_models: LoadedModels, prompt: str, steps: int, scale: float) -> None:
    with pytest.raises(InvalidRequest):
        MaterialEditStage(tiny_models).run(
            source_image(),
            prompt,
            seed=0,
            steps=steps,
            guidance=2.5,
            lora=None,
            lora_scale=scale,
            control=StageControl(),
        )


def test_first_block_cache_works_with_kontext(tiny_models: LoadedModels) -> None:
    from diffusers.hooks import FirstBlockCacheConfig

    transformer = tiny_models.kontext.transformer
    transformer.enable_cache(FirstBlockCacheConfig(threshold=0.05))
    try:
        side = round(tiny_models.defaults.kontext_max_area**0.5)  # a square input fills max_area exactly
        assert edit(tiny_models).size == (side, side)  # Kontext opens no cache context itself: the stage must
    finally:
        transformer.disable_cache()


@pytest.mark.parametrize(("size", "expected"), [((4000, 3000), (74, 54)), ((64, 64), (64, 64)), ((10, 1000), (6, 640))])
def test_a_large_input_is_brought_down_to_the_edit_area_first(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert fit_to_area(Image.new("RGB", size), 64 * 64, multiple_of=2).size == expected
