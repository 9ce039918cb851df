"""3D LoRAs on the tiny Hunyuan3D-2 DiT: loading by name and scale through the engine, and every refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from alch3mist.config import Settings
from alch3mist.engines.base import EngineParams
from alch3mist.engines.hunyuan3d_local import Hunyuan3DLocalEngine
from alch3mist.errors import InvalidLora, UnknownLora
from alch3mist.models.hunyuan3d import ShapeSource, load_shape_pipeline
from alch3mist.models.shape_lora import (
    ADAPTER,
    DIT_TARGETS,
    _lora_layers,
    add_shape_lora,
    list_shape_loras,
    save_shape_lora,
    validate_shape_lora,
)
from alch3mist.models.tiny_hunyuan3d import SUBFOLDER, ensure_tiny_shape_model
from alch3mist.stages.progress import StageControl
from PIL import Image, ImageDraw
from safetensors.torch import save_file

REPO_ROOT = Path(__file__).resolve().parents[3]
TINY_CACHE_DIR = REPO_ROOT / ".cache" / "alch3mist-tests"


def _image() -> Image.Image:
    image = Image.new("RGB", (96, 96), (250, 250, 250))
    ImageDraw.Draw(image).ellipse((24, 12, 72, 84), fill=(40, 140, 60))
    return image


def write_random_shape_lora(path: Path, rank: int = 4, seed: int = 0) -> Path:
    """A LoRA with non-zero A and B on the tiny DiT's attention projections, in the trainer's file format."""
    root = ensure_tiny_shape_model(TINY_CACHE_DIR)
    pipe = load_shape_pipeline(
        ShapeSource(str(root), SUBFOLDER, None, "tiny"), torch.device("cpu"), torch.float32, TINY_CACHE_DIR
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        add_shape_lora(pipe.model, DIT_TARGETS, rank, rank)
        for layer in _lora_layers(pipe.model):
            torch.nn.init.normal_(layer.lora_B[ADAPTER].weight, std=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_shape_lora(path, {"model": pipe.model}, rank, rank)
    return path


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("loras3d")
    write_random_shape_lora(folder / "bumpy.safetensors")
    return folder


def _engine(lora_dir: Path, data_dir: Path, **values: object) -> Hunyuan3DLocalEngine:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        preset="tiny",
        cache_dir=TINY_CACHE_DIR,
        data_dir=data_dir,
        hunyuan3d_local=True,
        hunyuan3d_lora_dir=lora_dir,
        **values,  # type: ignore[arg-type]
    )
    return Hunyuan3DLocalEngine(settings)


def _vertices(engine: Hunyuan3DLocalEngine, lora: tuple[str | None, float]) -> bytes:
    shape = engine.generate_shape(_image(), EngineParams(seed=4), StageControl(), lora=lora)
    return bytes(shape.mesh.vertices.tobytes())


def test_the_saved_lora_changes_the_shape_and_scale_zero_is_the_baseline(lora_dir: Path, tmp_path: Path) -> None:
    engine = _engine(lora_dir, tmp_path)
    baseline = _vertices(engine, (None, 0.0))
    with_lora = _vertices(engine, ("bumpy", 1.0))
    assert with_lora != baseline
    assert engine.loras.active() == ("bumpy", 1.0)
    assert _vertices(engine, ("bumpy", 0.0)) == baseline and engine.loras.active() is None
    assert _vertices(engine, ("bumpy", 0.5)) not in (baseline, with_lora)  # the scale is applied, not just on/off
    assert _vertices(engine, ("bumpy", 1.0)) == with_lora


def test_configured_lora_by_name_and_scale_zero_gives_the_baseline_glb(lora_dir: Path, tmp_path: Path) -> None:
    plain = _engine(lora_dir, tmp_path)
    scaled_off = _engine(lora_dir, tmp_path, hunyuan3d_lora="bumpy", hunyuan3d_lora_scale=0.0)
    scaled_on = _engine(lora_dir, tmp_path, hunyuan3d_lora="bumpy", hunyuan3d_lora_scale=1.0)
    glbs = []
    for index, engine in enumerate((plain, scaled_off, scaled_on)):
        result = engine.generate(_image(), EngineParams(seed=4), tmp_path / f"{index}.glb", StageControl())
        glbs.append((tmp_path / f"{index}.glb").read_bytes())
        assert result.details["lora"] == ({"name": "bumpy", "scale": 1.0} if index == 2 else None)
    assert glbs[0] == glbs[1] != glbs[2]


def _bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    cases: dict[str, tuple[Path, str]] = {}
    pickle = folder / "pickled.pt"
    pickle.write_bytes(b"\x80\x04not really")
    cases["pickle"] = (pickle, "pickles")
    corrupt = folder / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    cases["corrupt"] = (corrupt, "not a readable safetensors")
    flux = folder / "flux.safetensors"
    save_file({"transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 32)}, str(flux))
    cases["flux"] = (flux, "not a Hunyuan3D-2 shape LoRA")
    bigger = folder / "bigger.safetensors"
    save_file(
        {
            "model.double_blocks.7.img_attn.qkv.lora_A.weight": torch.zeros(4, 32),
            "model.double_blocks.7.img_attn.qkv.lora_B.weight": torch.zeros(96, 4),
        },
        str(bigger),
    )
    cases["bigger"] = (bigger, "does not fit this Hunyuan3D-2 model.*double_blocks.7")
    wider = folder / "wider.safetensors"
    save_file(
        {
            "model.double_blocks.0.img_attn.qkv.lora_A.weight": torch.zeros(4, 1024),
            "model.double_blocks.0.img_attn.qkv.lora_B.weight": torch.zeros(3072, 4),
        },
        str(wider),
    )
    cases["wider"] = (wider, "does not fit this Hunyuan3D-2 model")
    return cases


def test_bad_loras_are_refused_with_a_reason_and_leave_the_model_untouched(lora_dir: Path, tmp_path: Path) -> None:
    engine = _engine(lora_dir, tmp_path)
    baseline = _vertices(engine, (None, 0.0))
    for label, (path, reason) in _bad_files(tmp_path / "bad").items():
        with pytest.raises(InvalidLora, match=reason):
            engine.loras.load_file(path, label)
        assert _vertices(engine, (None, 0.0)) == baseline, label  # nothing half-loaded stays behind
    with pytest.raises(UnknownLora, match="unknown 3D LoRA 'missing'; available: bumpy"):
        _vertices(engine, ("missing", 1.0))
    assert _vertices(engine, ("bumpy", 1.0)) != baseline  # and a good one still loads afterwards


def test_listing_and_header_check(lora_dir: Path, tmp_path: Path) -> None:
    lora = validate_shape_lora(lora_dir / "bumpy.safetensors")
    assert lora.rank == 4 and lora.layers == 6 and set(lora.modules) == {"model"}
    assert lora.metadata["format"] == "alch3mist-hunyuan3d-shape-lora"
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.safetensors").write_bytes((lora_dir / "bumpy.safetensors").read_bytes())
    (folder / "broken.safetensors").write_bytes(b"junk")
    listed = {info.name: info.rank for info in list_shape_loras(folder)}
    assert listed == {"broken": None, "good": 4}
