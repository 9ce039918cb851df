"""The Kontext LoRA objective: one batch's flow-matching loss, its timestep sampling/weighting and caption dropout.

The loss is the one of diffusers' ``examples/dreambooth/train_dreambooth_lora_flux_kontext.py`` (checked
numerically against it):

- flow matching on the *transformed* image's latents x0: ``x_t = (1 - sigma) x0 + sigma noise``, target
  ``noise - x0``; timestep index ``(u * 1000).long()`` into the FLUX scheduler's timesteps and sigmas;
- the *original* image's latents are packed and appended to the noisy target's token sequence, their position ids
  marked with ``ids[..., 0] = 1`` (that is how Kontext tells the reference image from the image being made);
- the loss is taken on the target tokens only (the condition tokens' predictions are dropped), a per-sample mean of
  the (weighted) squared error, then the batch mean.

What varies by recipe: the timestep scheme (``TrainingRecipe.weighting_scheme``), the guidance embedding's value
and caption dropout (ai-toolkit's: a dropped caption is the trigger word alone, ``get_dropout_caption``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .buckets import Sample
from .recipe import TrainingRecipe

if TYPE_CHECKING:
    import torch

__all__ = ["AI_TOOLKIT_WEIGHTS", "PairCache", "ai_toolkit_weights", "kontext_loss", "loss_weights"]

# ai-toolkit's "weighted" timestep weighting (toolkit/timestep_weighing/default_weighing_scheme.py, a table of 1000
# weights "calculated using flex.1-alpha", indexed like its linear timesteps 1000..1: index i is timestep 1000 - i,
# sigma (1000 - i) / 1000), sampled here at these indices and linearly interpolated in between. Within 0.026 of the
# table everywhere (3.2 %), 0.0012 on average; the mean weight is 1.000, as the table's.
AI_TOOLKIT_WEIGHTS: tuple[tuple[int, float], ...] = (
    (0, 0.906), (5, 0.962), (10, 1.043), (15, 1.121), (20, 1.176), (25, 1.220), (30, 1.256), (35, 1.297),
    (40, 1.330), (45, 1.356), (50, 1.375), (75, 1.471), (100, 1.507), (125, 1.522), (150, 1.507), (175, 1.481),
    (200, 1.441), (225, 1.400), (250, 1.355), (275, 1.309), (300, 1.264), (325, 1.218), (350, 1.172),
    (375, 1.126), (400, 1.083), (425, 1.041), (450, 1.000), (475, 0.962), (500, 0.925), (525, 0.891),
    (550, 0.860), (575, 0.831), (600, 0.805), (625, 0.782), (650, 0.762), (675, 0.745), (700, 0.731),
    (725, 0.721), (750, 0.715), (775, 0.714), (800, 0.716), (825, 0.721), (850, 0.729), (875, 0.732),
    (900, 0.716), (925, 0.666), (950, 0.582), (975, 0.493), (999, 0.447),
)  # fmt: skip


@dataclass
class PairCache:
    """Everything a step needs, computed once: each sample's latents and each pair's caption embeddings."""

    samples: list[Sample]
    target: list[torch.Tensor]  # per sample [C, h, w]: the transformed image, scaled and shifted like the pipeline
    cond: list[torch.Tensor]  # per sample [C, h, w]: the original image at the same bucket
    prompt_embeds: torch.Tensor  # [pairs, L, D] T5
    pooled: torch.Tensor  # [pairs, P] CLIP
    text_ids: torch.Tensor  # [L, 3]
    dropout_embeds: torch.Tensor  # [1, L, D] the caption a dropped sample gets: the trigger word alone
    dropout_pooled: torch.Tensor  # [1, P]

    def __len__(self) -> int:
        return len(self.samples)


def ai_toolkit_weights(step_indices: torch.Tensor) -> torch.Tensor:
    """ai-toolkit's ``weighted`` loss weight of each timestep index (0 = timestep 1000, pure noise)."""
    import numpy as np
    import torch

    knots, weights = zip(*AI_TOOLKIT_WEIGHTS, strict=True)
    values = np.interp(step_indices.detach().cpu().numpy(), knots, weights)
    return torch.as_tensor(values, dtype=torch.float32, device=step_indices.device)


def loss_weights(scheme: str, sigmas: torch.Tensor, step_indices: torch.Tensor) -> torch.Tensor:
    """The per-sample loss weight, shaped like ``sigmas`` ([B, 1, 1, 1])."""
    from diffusers.training_utils import compute_loss_weighting_for_sd3

    if scheme == "weighted":
        return ai_toolkit_weights(step_indices).view_as(sigmas)
    weighting: torch.Tensor = compute_loss_weighting_for_sd3(scheme, sigmas)
    return weighting


def _timesteps(
    scheduler: Any, recipe: TrainingRecipe, bsz: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(step indices, timesteps, sigmas): u from the scheme's density (uniform unless logit_normal or mode)."""
    from diffusers.training_utils import compute_density_for_timestep_sampling

    # Schemes that weight the loss instead ("sigma_sqrt", "cosmap", ai-toolkit's "weighted") sample uniformly:
    # compute_density_for_timestep_sampling falls through to torch.rand for every name but the two densities.
    u = compute_density_for_timestep_sampling(
        recipe.weighting_scheme, bsz, recipe.logit_mean, recipe.logit_std, recipe.mode_scale, generator=generator
    )
    step_indices = (u * scheduler.config.num_train_timesteps).long()
    return step_indices, scheduler.timesteps[step_indices], scheduler.sigmas[step_indices]


def kontext_loss(
    transformer: Any,
    cache: PairCache,
    scheduler: Any,
    indices: list[int],
    generator: torch.Generator,
    recipe: TrainingRecipe,
    device: torch.device,
    sigma_override: torch.Tensor | None = None,
) -> torch.Tensor:
    """Flow-matching loss of one batch (sample ``indices``, all of one bucket), Kontext-style.

    ``sigma_override`` fixes the sigmas and gives the plain mean squared error with the full captions (no weighting,
    no dropout): the held-in loss, comparable between recipes.
    """
    import torch
    from diffusers import FluxKontextPipeline

    # 1. The batch: its latents, noise and timesteps (all from this micro-batch's generator)
    x0 = torch.stack([cache.target[i] for i in indices])
    cond = torch.stack([cache.cond[i] for i in indices])
    pairs = [cache.samples[i].pair for i in indices]
    bsz, channels, height, width = x0.shape
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(device, x0.dtype)
    step_indices = None
    if sigma_override is None:
        step_indices, timesteps, sigmas = _timesteps(scheduler, recipe, bsz, generator)
        timesteps, sigmas = timesteps.to(device), sigmas.to(device, x0.dtype)
    else:
        sigmas = sigma_override.to(device, x0.dtype)
        timesteps = sigmas * scheduler.config.num_train_timesteps
    sigmas_4d = sigmas.view(bsz, 1, 1, 1)

    # 2. Captions: each pair's, or the trigger word alone for the dropped ones
    prompt_embeds, pooled = cache.prompt_embeds[pairs], cache.pooled[pairs]
    if recipe.caption_dropout > 0 and sigma_override is None:
        dropped = (torch.rand(bsz, generator=generator) < recipe.caption_dropout).to(device)
        prompt_embeds = torch.where(dropped.view(bsz, 1, 1), cache.dropout_embeds, prompt_embeds)
        pooled = torch.where(dropped.view(bsz, 1), cache.dropout_pooled, pooled)

    # 3. Noisy target, packed; the original's latents packed and appended with their ids marked (ids[..., 0] = 1)
    noisy = (1.0 - sigmas_4d) * x0 + sigmas_4d * noise
    packed = FluxKontextPipeline._pack_latents(noisy, bsz, channels, height, width)
    packed_cond = FluxKontextPipeline._pack_latents(cond, bsz, channels, cond.shape[2], cond.shape[3])
    target_tokens = packed.shape[1]
    image_ids = FluxKontextPipeline._prepare_latent_image_ids(bsz, height // 2, width // 2, device, x0.dtype)
    cond_ids = FluxKontextPipeline._prepare_latent_image_ids(
        bsz, cond.shape[2] // 2, cond.shape[3] // 2, device, x0.dtype
    )
    cond_ids[..., 0] = 1
    hidden = torch.cat([packed, packed_cond], dim=1)
    ids = torch.cat([image_ids, cond_ids], dim=0)

    # 4. Predict the velocity; keep the target tokens only
    guidance = None
    if transformer.config.guidance_embeds:
        guidance = torch.full((bsz,), recipe.guidance_scale, device=device, dtype=torch.float32)
    prediction = transformer(
        hidden_states=hidden,
        timestep=timesteps / 1000,
        guidance=guidance,
        pooled_projections=pooled,
        encoder_hidden_states=prompt_embeds,
        txt_ids=cache.text_ids,
        img_ids=ids,
        return_dict=False,
    )[0][:, :target_tokens]
    prediction = FluxKontextPipeline._unpack_latents(prediction, height, width, 1)

    # 5. Flow-matching target and (scheme-weighted) MSE
    if step_indices is None:
        weighting = torch.ones_like(sigmas_4d, dtype=torch.float32)
    else:
        weighting = loss_weights(recipe.weighting_scheme, sigmas_4d, step_indices.to(device)).float()
    error: torch.Tensor = (weighting * (prediction.float() - (noise - x0).float()) ** 2).reshape(bsz, -1)
    return error.mean(dim=1).mean()
