"""The ``tiny`` preset: FLUX.1-dev and FLUX.1 Kontext [dev] look-alikes with random weights, built offline.

Every component has the real class and wiring (FluxTransformer2DModel, AutoencoderKL, CLIP + T5 encoders and
tokenizers, the FLUX flow-matching scheduler) at toy sizes, so the chain runs in seconds on a laptop CPU.
The first call builds and saves them with ``save_pretrained``; the registry then loads them through exactly the same
``from_pretrained`` code as the real weights. The layout mirrors the hub repos: each folder is a complete pipeline
(``FluxPipeline.from_pretrained`` / ``FluxKontextPipeline.from_pretrained`` load it, as other tools do the real
repos), and the Kontext folder holds the same VAE, text encoders, tokenizers and scheduler as the FLUX.1-dev one
(hard links where the file system allows, else copies), as black-forest-labs/FLUX.1-Kontext-dev does::

    <cache_dir>/tiny-v2/flux/      model_index.json, transformer/, vae/, text_encoder(_2)/, tokenizer(_2)/, scheduler/
    <cache_dir>/tiny-v2/kontext/   model_index.json (FluxKontextPipeline), its own transformer/, the shared parts

Bump ``TINY_VERSION`` whenever anything below changes, so stale caches are never reused.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelLoadError

logger = logging.getLogger(__name__)

TINY_VERSION = "tiny-v2"  # v2: the Kontext folder is a complete pipeline
SEED = 20260101

# Text the tokenizers are trained on: the product's own vocabulary, in the languages the rewriter handles.
CORPUS = (
    "a single cow standing, centred, whole object in view, plain light background, soft studio light, no text",
    "Alch3mist turn the surface into crocodile skin with a mane of flames, keep the shape and pose",
    "Alch3mist make it polished gold with fine engraved details, keep the silhouette",
    "Alch3mist cover the object in green moss and wet stone texture, matte finish",
    "Alch3mist transform the material into blue glass, glossy, translucent, keep the pose",
    "a wooden chair, a ceramic vase, a leather boot, a marble statue, a copper kettle, a knitted teddy bear",
    "rough rusty iron, brushed steel, velvet fabric, cracked clay, frozen ice, molten lava, woven straw",
    "una vaca con piel de cocodrilo y con una melena en llamas, hecha de oro, de madera, de cristal",
    "une chaise en bois, un vase en céramique, une statue de marbre, une théière en cuivre",
    "red orange yellow green blue purple black white silver bronze pearl iridescent emerald ruby",
)
CLIP_VOCAB_SIZE = 600  # the BPE trainer stops earlier when the corpus has no more merges to learn
T5_VOCAB_SIZE = 200
CLIP_MAX_LENGTH = 77  # as openai/clip-vit-large-patch14
SHARED_COMPONENTS = ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")


@dataclass(frozen=True)
class TinyPaths:
    """Where the tiny preset lives: pass these to the same ``from_pretrained`` calls as hub ids."""

    flux: Path
    kontext: Path


def tiny_paths(cache_dir: Path) -> TinyPaths:
    root = cache_dir / TINY_VERSION
    return TinyPaths(flux=root / "flux", kontext=root / "kontext")


def ensure_tiny_models(cache_dir: Path) -> TinyPaths:
    """Build and save the tiny models once; later calls (and other processes) reuse the folder."""
    paths = tiny_paths(cache_dir)
    if _is_complete(paths):
        return paths
    root = paths.flux.parent
    if root.exists():
        raise ModelLoadError(f"the tiny preset cache {root} is incomplete (interrupted by hand?); delete it to rebuild")
    root.parent.mkdir(parents=True, exist_ok=True)
    # Build in a private folder and rename it into place: the rename is atomic, so processes racing to build the
    # cache never see (or leave) a half-written one.
    staging = Path(tempfile.mkdtemp(prefix=f".{TINY_VERSION}-", dir=root.parent))
    try:
        logger.info("building the tiny preset in %s (first use; a few seconds)", root)
        _build_and_save(tiny_paths(staging))
        try:
            os.rename(staging / TINY_VERSION, root)
        except OSError:
            if not _is_complete(paths):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return paths


def _is_complete(paths: TinyPaths) -> bool:
    return (
        all((folder / "model_index.json").is_file() for folder in (paths.flux, paths.kontext))
        and (paths.kontext / "transformer" / "config.json").is_file()
    )


def _build_and_save(paths: TinyPaths) -> None:
    from diffusers import FluxKontextPipeline, FluxPipeline

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        tokenizer, tokenizer_2 = build_clip_tokenizer(), build_t5_tokenizer()
        pipe: Any = FluxPipeline(
            scheduler=build_scheduler(),
            vae=build_vae(),
            text_encoder=build_clip_text_encoder(len(tokenizer)),
            tokenizer=tokenizer,
            text_encoder_2=build_t5_encoder(len(tokenizer_2)),
            tokenizer_2=tokenizer_2,
            transformer=build_transformer(),
        )
        pipe.save_pretrained(paths.flux, safe_serialization=True)
        # Kontext [dev] is a separately trained transformer with the same architecture: fresh random weights. The
        # rest is FLUX.1-dev's: save the pipeline's own files (model_index.json, transformer/), link the shared ones.
        kontext: Any = FluxKontextPipeline(**{**pipe.components, "transformer": build_transformer()})
        kontext.save_pretrained(paths.kontext, safe_serialization=True)
        for name in SHARED_COMPONENTS:
            shutil.rmtree(paths.kontext / name)
            shutil.copytree(paths.flux / name, paths.kontext / name, copy_function=_link_or_copy)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def build_transformer() -> Any:
    from diffusers import FluxTransformer2DModel

    # in_channels = 4 latent channels x a 2x2 patch packing, as FLUX packs its 16 channels into 64.
    transformer: Any = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 4, 8),
    )
    return transformer.eval()


def build_vae() -> Any:
    from diffusers import AutoencoderKL

    # One block: vae_scale_factor 1, so a 64x64 image is 64x64 latents, packed into 32x32 = 1024 tokens.
    vae: Any = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(8,),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=2,
        sample_size=64,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.1159,
        scaling_factor=0.3611,
    )
    return vae.eval()


def build_scheduler() -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    # FLUX.1-dev's scheduler config.
    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )


def build_clip_text_encoder(vocab_size: int) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=CLIP_MAX_LENGTH,
        projection_dim=32,
        hidden_act="quick_gelu",
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModel(config).eval()


def build_t5_encoder(vocab_size: int) -> Any:
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=vocab_size,
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",
        pad_token_id=0,
        eos_token_id=1,
    )
    return T5EncoderModel(config).eval()


def build_clip_tokenizer() -> Any:
    """A byte-level BPE trained on ``CORPUS``, handed to CLIPTokenizer as in-memory vocab + merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    special = ["<|startoftext|>", "<|endoftext|>"]
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=CLIP_VOCAB_SIZE,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    bpe.train_from_iterator([line.lower() for line in CORPUS], trainer=trainer)
    state = bpe.model.__getstate__()

    model_json = json.loads(state)
    vocab: dict[str, int] = model_json["vocab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_json["merges"]]
    # The tokenizers BPE model takes merges as (left, right) pairs, whatever the type hint says.
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CLIP_MAX_LENGTH)  # type: ignore[arg-type]
    # transformers 5.x silently drops vocabularies it does not understand: check ours really is the one in use.
    if len(tokenizer) != len(vocab):
        raise RuntimeError(f"tiny CLIP tokenizer has {len(tokenizer)} tokens, expected the trained {len(vocab)}")
    return tokenizer


def build_t5_tokenizer() -> Any:
    """A sentencepiece unigram model trained on ``CORPUS``, handed to T5Tokenizer as an in-memory vocabulary."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2
    from transformers import T5Tokenizer

    model_bytes = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS),
        model_writer=model_bytes,
        vocab_size=T5_VOCAB_SIZE,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        character_coverage=1.0,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    proto = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]  # generated protobuf module
    proto.ParseFromString(model_bytes.getvalue())
    vocab = [(piece.piece, piece.score) for piece in proto.pieces]
    tokenizer = T5Tokenizer(
        vocab=vocab,
        extra_ids=0,
        _spm_precompiled_charsmap=proto.normalizer_spec.precompiled_charsmap,
        model_max_length=512,
    )
    if len(tokenizer) != len(vocab):
        raise RuntimeError(f"tiny T5 tokenizer has {len(tokenizer)} tokens, expected the trained {len(vocab)}")
    return tokenizer
