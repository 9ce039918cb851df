"""The objective's recipe knobs, on the tiny Kontext transformer: timestep weightings and caption dropout.

Known answers: with the same generator the uniform schemes draw the same noise and timesteps, so a weighted loss is
exactly the unweighted one times the scheme's weight at the drawn timestep.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from alch3mist.models.registry import LoadedModels
from alch3mist.training.buckets import Sample
from alch3mist.training.objective import AI_TOOLKIT_WEIGHTS, PairCache, ai_toolkit_weights, kontext_loss, loss_weights
from alch3mist.training.recipe import TrainingRecipe
from diffusers import FlowMatchEulerDiscreteScheduler


def test_ai_toolkit_weighted_schedule_follows_its_table() -> None:
    # ai-toolkit's toolkit/timestep_weighing/default_weighing_scheme.py at these indices (timestep 1000 - i).
    table = {
        0: 0.905706524848938,
        100: 1.5068002939224243,
        124: 1.5226575136184692,
        450: 1.0004172325134277,
        500: 0.9254037141799927,
        750: 0.715220034122467,
        900: 0.7162171602249146,
        999: 0.4472601115703583,
    }
    ours = ai_toolkit_weights(torch.tensor(list(table)))
    assert torch.allclose(ours, torch.tensor(list(table.values())), atol=0.026)
    every = ai_toolkit_weights(torch.arange(1000))
    assert every.mean().item() == pytest.approx(1.0, abs=0.005)  # like the table: the loss keeps its scale
    assert int(every.argmax()) == 125 and [i for i, _w in AI_TOOLKIT_WEIGHTS][-1] == 999


def test_diffusers_loss_weightings_are_its_formulas() -> None:
    sigmas, indices = torch.tensor([0.5, 0.25]).view(2, 1, 1, 1), torch.tensor([500, 750])
    assert torch.allclose(loss_weights("sigma_sqrt", sigmas, indices).flatten(), torch.tensor([4.0, 16.0]))
    cosmap = 2 / (torch.pi * (1 - 2 * sigmas + 2 * sigmas**2))
    assert torch.allclose(loss_weights("cosmap", sigmas, indices), cosmap)
    for density in ("none", "logit_normal", "mode"):  # these shape the sampling instead: weight 1
        assert torch.equal(loss_weights(density, sigmas, indices), torch.ones_like(sigmas))


@pytest.fixture(scope="module")
def cache(tiny_models: LoadedModels) -> PairCache:
    """Two pairs of random latents at 16² (the tiny VAE keeps the size), captions of the tiny encoders' shapes."""
    config = tiny_models.kontext.transformer.config
    generator = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    return PairCache(
        samples=[Sample(0, 16, 16), Sample(1, 16, 16)],
        target=[randn(4, 16, 16), randn(4, 16, 16)],
        cond=[randn(4, 16, 16), randn(4, 16, 16)],
        prompt_embeds=randn(2, 8, config.joint_attention_dim),
        pooled=randn(2, config.pooled_projection_dim),
        text_ids=torch.zeros(8, 3),
        dropout_embeds=randn(1, 8, config.joint_attention_dim),
        dropout_pooled=randn(1, config.pooled_projection_dim),
    )


def _loss(models: LoadedModels, cache: PairCache, recipe: TrainingRecipe, indices: list[int], seed: int) -> float:
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(models.kontext.scheduler.config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        loss = kontext_loss(
            models.kontext.transformer, cache, scheduler, indices, generator, recipe, torch.device("cpu")
        )
    return float(loss)


def _drawn_index(seed: int, shape: tuple[int, ...]) -> int:
    """The timestep index a uniform scheme draws from the generator after the batch's noise."""
    generator = torch.Generator().manual_seed(seed)
    torch.randn(shape, generator=generator)
    return int((torch.rand(1, generator=generator) * 1000).long())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_weighted_schemes_scale_the_uniform_loss_by_their_weight(
    tiny_models: LoadedModels, cache: PairCache, seed: int
) -> None:
    plain = TrainingRecipe(weighting_scheme="none", caption_dropout=0.0)
    base = _loss(tiny_models, cache, plain, [0], seed)
    index = _drawn_index(seed, (1, 4, 16, 16))
    sigma = (1000 - index) / 1000  # the FLUX scheduler's sigma at that index (unshifted: dynamic shifting)
    expected = {
        "weighted": float(ai_toolkit_weights(torch.tensor([index]))[0]),
        "sigma_sqrt": sigma**-2,
        "cosmap": 2 / (torch.pi * (1 - 2 * sigma + 2 * sigma**2)),
    }
    for scheme, weight in expected.items():
        loss = _loss(tiny_models, cache, replace(plain, weighting_scheme=scheme), [0], seed)
        assert loss == pytest.approx(weight * base, rel=1e-4), scheme


def test_guidance_scale_reaches_the_transformer(tiny_models: LoadedModels, cache: PairCache) -> None:
    one = _loss(tiny_models, cache, TrainingRecipe(guidance_scale=1.0, caption_dropout=0.0), [0, 1], 7)
    again = _loss(tiny_models, cache, TrainingRecipe(guidance_scale=1.0, caption_dropout=0.0), [0, 1], 7)
    diffusers_default = _loss(tiny_models, cache, TrainingRecipe(guidance_scale=3.5, caption_dropout=0.0), [0, 1], 7)
    assert one == again and diffusers_default != one


def test_a_dropped_caption_is_the_trigger_word_alone(tiny_models: LoadedModels, cache: PairCache) -> None:
    recipe = TrainingRecipe(weighting_scheme="none", caption_dropout=0.0)
    always = replace(recipe, caption_dropout=0.999999)  # every sample dropped (the draw is < 0.999999)
    # Known answer: dropping every caption is the same as training on the trigger word's embeddings as captions.
    trigger_only = replace(
        cache,
        prompt_embeds=cache.dropout_embeds.expand_as(cache.prompt_embeds),
        pooled=cache.dropout_pooled.expand_as(cache.pooled),
    )
    dropped = _loss(tiny_models, cache, always, [0, 1], 11)
    assert dropped == pytest.approx(_loss(tiny_models, trigger_only, recipe, [0, 1], 11), rel=1e-6)
    assert dropped != pytest.approx(_loss(tiny_models, cache, recipe, [0, 1], 11), rel=1e-6)
