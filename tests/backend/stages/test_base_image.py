"""Stage 1 on the tiny preset: real FluxPipeline calls with toy weights."""

from __future__ import annotations

import pytest
from alch3mist.errors import Cancelled, InvalidRequest
from alch3mist.models.registry import LoadedModels
from alch3mist.stages.base_image import BaseImageStage
from alch3mist.stages.progress import StageControl

from tests.conftest import png_bytes

PROMPT = "a single cow standing, centred, plain light background"


def run(models: LoadedModels, *, seed: int = 7, steps: int = 2, size: int = 64, control: StageControl | None = None):  # type: ignore[no-untyped-def]
    return BaseImageStage(models).run(
        PROMPT, seed=seed, steps=steps, guidance=3.5, size=size, control=control or StageControl()
    )


def test_same_prompt_and_seed_give_the_same_png_bytes(tiny_models: LoadedModels) -> None:
    assert png_bytes(run(tiny_models)) == png_bytes(run(tiny_models))


def test_another_seed_gives_another_image(tiny_models: LoadedModels) -> None:
    assert png_bytes(run(tiny_models, seed=1)) != png_bytes(run(tiny_models, seed=2))


def test_image_has_the_requested_size(tiny_models: LoadedModels) -> None:
    assert run(tiny_models, size=48).size == (48, 48)


def test_progress_is_reported_per_step(tiny_models: LoadedModels) -> None:
    ticks: list[tuple[float, str]] = []
    run(tiny_models, steps=3, control=StageControl(on_progress=lambda f, m: ticks.append((f, m))))
    assert [f for f, _ in ticks] == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
    assert ticks[-1][1] == "base image 3/3"


def test_cancel_mid_denoise_raises_cancelled_and_stops_early(tiny_models: LoadedModels) -> None:
    control = StageControl()
    steps_seen: list[float] = []

    def cancel_after_first_step(fraction: float, message: str) -> None:
        steps_seen.append(fraction)
        if fraction > 0:
            control.cancel.set()

    control.on_progress = cancel_after_first_step
    with pytest.raises(Cancelled):
        run(tiny_models, steps=5, control=control)
    assert len(steps_seen) == 2  # the start tick and step 1: steps 2..5 never ran


def test_cancelled_before_start_does_not_run(tiny_models: LoadedModels) -> None:
    control = StageControl()
    control.cancel.set()
    with pytest.raises(Cancelled):
        run(tiny_models, control=control)


@pytest.mark.parametrize(("prompt", "size", "steps"), [("  ", 64, 2), (PROMPT, 63, 2), (PROMPT, 0, 2), (PROMPT, 64, 0)])
def test_bad_input_is_refused_clearly(tiny_models: LoadedModels, prompt: str, size: int, steps: int) -> None:
    with pytest.raises(InvalidRequest):
        BaseImageStage(tiny_models).run(prompt, seed=0, steps=steps, guidance=3.5, size=size, control=StageControl())
