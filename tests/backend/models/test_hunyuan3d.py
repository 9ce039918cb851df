"""The Hunyuan3D-2 shape model through hy3dgen's own loader: the tiny model, the config allowlist, the DINOv2 rename."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from alch3mist.errors import ModelLoadError
from alch3mist.models.hunyuan3d import (
    DINOV2_FUSED_SWIGLU,
    DINOV2_RENAMES,
    ShapeSource,
    check_shape_config,
    import_hy3dgen,
    load_shape_pipeline,
)
from alch3mist.models.tiny_hunyuan3d import (
    LEVEL_MID,
    LEVEL_SWING,
    SUBFOLDER,
    TINY_VERSION,
    ensure_tiny_shape_model,
    latent_size_signal,
)
from PIL import Image, ImageDraw
from safetensors.torch import load_file, save_file

REPO_ROOT = Path(__file__).resolve().parents[3]
TINY_CACHE_DIR = REPO_ROOT / ".cache" / "alch3mist-tests"


@pytest.fixture(scope="module")
def tiny_root() -> Path:
    return ensure_tiny_shape_model(TINY_CACHE_DIR)


def _load(root: Path, cache: Path = TINY_CACHE_DIR) -> object:
    return load_shape_pipeline(
        ShapeSource(str(root), SUBFOLDER, None, "tiny"), torch.device("cpu"), torch.float32, cache
    )


def _disc(size: int = 96) -> Image.Image:
    image = Image.new("RGB", (size, size), (255, 255, 255))
    ImageDraw.Draw(image).ellipse((20, 14, 76, 84), fill=(180, 40, 40))
    return image


def test_tiny_model_is_hy3dgens_own_classes_loaded_by_its_loader(tiny_root: Path) -> None:
    shapegen = import_hy3dgen()
    from hy3dgen.shapegen.models import Hunyuan3DDiT, ShapeVAE, SingleImageEncoder
    from transformers import Dinov2Model

    assert sorted(p.name for p in (tiny_root / SUBFOLDER).iterdir()) == ["config.yaml", "model.safetensors"]
    pipe = _load(tiny_root)
    assert isinstance(pipe, shapegen.Hunyuan3DDiTFlowMatchingPipeline)
    assert isinstance(pipe.model, Hunyuan3DDiT) and len(pipe.model.double_blocks) == len(pipe.model.single_blocks) == 1
    assert isinstance(pipe.vae, ShapeVAE) and isinstance(pipe.conditioner, SingleImageEncoder)
    assert isinstance(pipe.conditioner.main_image_encoder.model, Dinov2Model)  # built from a config, as hy3dgen does
    # the saved weights are the ones in use (strict load by hy3dgen's from_single_file)
    saved = load_file(str(tiny_root / SUBFOLDER / "model.safetensors"))
    assert torch.equal(saved["model.latent_in.weight"], pipe.model.latent_in.weight)


def test_tiny_model_makes_a_closed_mesh_and_repeats_itself(tiny_root: Path) -> None:
    pipe = _load(tiny_root)
    runs = [
        pipe(image=_disc().convert("RGBA"), num_inference_steps=2, generator=torch.Generator().manual_seed(5),
             octree_resolution=32, num_chunks=4000, enable_pbar=False)[0]
        for _ in range(2)
    ]  # fmt: skip
    mesh = runs[0]
    assert mesh.is_watertight and mesh.volume > 0  # closed, outward normals
    assert (abs(mesh.bounds) < 1.01).all()  # inside hy3dgen's decoding box, not cut open by it
    assert (mesh.vertices == runs[1].vertices).all() and (mesh.faces == runs[1].faces).all()


@pytest.mark.parametrize("channel0", [-2.0, 0.0, 1.5])
def test_tiny_decoder_draws_the_blob_its_latent_names(tiny_root: Path, channel0: float) -> None:
    """Known answer: the surface is where cos x + cos y + cos z = LEVEL_MID - LEVEL_SWING * m(latent); on the x axis
    that is x* = arccos(LEVEL_MID - LEVEL_SWING * m - 2)."""
    pipe = _load(tiny_root)
    latent = torch.zeros((1, *pipe.vae.latent_shape))
    latent[..., 0] = channel0
    m = float(latent_size_signal(latent)[0])
    surface = math.acos(LEVEL_MID - LEVEL_SWING * m - 2.0)
    points = torch.tensor([[0.95 * surface, 0.0, 0.0], [1.05 * surface, 0.0, 0.0], [0.0, 0.0, 0.95 * surface]])
    with torch.no_grad():
        logits = pipe.vae.geo_decoder(queries=points[None], latents=pipe.vae(latent))[0, :, 0]
    assert logits[0] > 0 > logits[1] and logits[2] > 0


def test_hostile_config_is_refused_before_anything_is_instantiated(tmp_path: Path, tiny_root: Path) -> None:
    folder = tmp_path / "evil" / SUBFOLDER
    folder.mkdir(parents=True)
    config = yaml.safe_load((tiny_root / SUBFOLDER / "config.yaml").read_text())
    config["scheduler"] = {"target": "subprocess.Popen", "params": {"args": ["touch", str(tmp_path / "pwned")]}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "model.safetensors").write_bytes((tiny_root / SUBFOLDER / "model.safetensors").read_bytes())
    with pytest.raises(ModelLoadError, match=r"'scheduler' names 'subprocess\.Popen'"):
        _load(tmp_path / "evil")
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(ModelLoadError, match="not a Hunyuan3D-2 config"):
        (folder / "config.yaml").write_text("just text")
        check_shape_config(folder / "config.yaml")


def test_missing_weights_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="ALCH3MIST_HUNYUAN3D_MODEL"):
        _load(tmp_path / "nowhere")


def test_transformers4_dinov2_names_are_converted_once_and_load_the_same_model(tmp_path: Path, tiny_root: Path) -> None:
    """A checkpoint saved with transformers 4 (old DINOv2 names, fused SwiGLU input) loads into transformers 5."""
    tensors = load_file(str(tiny_root / SUBFOLDER / "model.safetensors"))
    old: dict[str, torch.Tensor] = {}
    fused, (gate, up) = DINOV2_FUSED_SWIGLU
    for key, value in tensors.items():
        if gate in key:
            old[key.replace(gate, fused)] = torch.cat([value, tensors[key.replace(gate, up)]])
        elif up not in key:
            for old_name, new_name in DINOV2_RENAMES:
                key = key.replace(new_name, old_name)
            old[key] = value
    assert any(".attention.attention.query." in key for key in old) and len(old) == len(tensors) - 2
    folder = tmp_path / "old" / SUBFOLDER
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_bytes((tiny_root / SUBFOLDER / "config.yaml").read_bytes())
    save_file(old, str(folder / "model.safetensors"))

    converted, original = _load(tmp_path / "old", tmp_path / "cache"), _load(tiny_root)
    pixels = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(converted.conditioner(image=pixels)["main"], original.conditioner(image=pixels)["main"])
    written = list((tmp_path / "cache").rglob("model.safetensors"))
    assert len(written) == 1 and written[0].parent.parent.name == "hunyuan3d-converted"
    _load(tmp_path / "old", tmp_path / "cache")  # the second load reuses the converted copy
    assert list((tmp_path / "cache").rglob("model.safetensors")) == written


def test_cache_is_versioned_and_built_once(tiny_root: Path) -> None:
    stamp = (tiny_root / SUBFOLDER / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny_shape_model(TINY_CACHE_DIR) == tiny_root and tiny_root.name == TINY_VERSION
    assert (tiny_root / SUBFOLDER / "model.safetensors").stat().st_mtime_ns == stamp
