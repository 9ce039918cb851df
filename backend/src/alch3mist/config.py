"""One Settings object for the whole backend, read from the environment (prefix ``ALCH3MIST_``) or ``.env``."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Preset = Literal["tiny", "full", "auto"]
MemoryPlanName = Literal["auto", "resident", "model_offload", "group_offload", "sequential_offload"]
EngineName = Literal["preview", "trellis", "hunyuan3d"]
TextureEngineName = Literal["alch3mist", "hunyuan3d", "trellis2"]  # texturing/engines.py
# Seeds are int32 end to end: TRELLIS' and Hunyuan3D's servers (and many UIs) take no larger.
MAX_SEED = 2**31 - 1


def _default_home() -> Path:
    return Path.home() / ".local" / "share" / "alch3mist"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALCH3MIST_", env_file=".env", extra="ignore")

    # --- service ---
    host: str = Field("127.0.0.1", description="Interface the API listens on.")
    port: int = Field(8765, description="Port the API listens on.")
    api_keys: SecretStr = Field(
        SecretStr(""),
        description="Comma-separated API keys, each `name:key` or a bare key. Empty = no auth (development only).",
    )
    public_url: str | None = Field(None, description="How browsers reach this service, e.g. https://gpu.example.org.")
    data_dir: Path = Field(default_factory=_default_home, description="Jobs database and artifacts.")
    link_secret: SecretStr = Field(
        default_factory=lambda: SecretStr(secrets.token_urlsafe(32)),
        description="HMAC key for signed browser links. Set it to keep links valid across restarts.",
    )
    link_ttl_s: int = Field(7 * 24 * 3600, description="Lifetime of a signed browser link, seconds.")
    retention_days: float = Field(30.0, description="Finished jobs older than this are deleted with their artifacts.")
    max_request_chars: int = Field(2000, description="Longest free-text request accepted.")
    max_upload_bytes: int = Field(20 * 1024 * 1024, description="Largest accepted request body (input image).")
    max_queued_per_user: int = Field(4, description="Queued + running jobs one end user may have at once.")
    stage_timeout_s: float = Field(900.0, description="Longest any one stage may run before the job fails.")

    # --- models ---
    preset: Preset = Field("auto", description="tiny: random local components; full: real weights; auto: full on CUDA.")
    cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "alch3mist", description="Where the tiny preset is cached."
    )
    flux_model: str = Field("black-forest-labs/FLUX.1-dev", description="Hub id or local folder of FLUX.1-dev.")
    kontext_model: str = Field(
        "black-forest-labs/FLUX.1-Kontext-dev", description="Hub id or local folder of FLUX.1 Kontext [dev]."
    )
    memory_plan: MemoryPlanName = Field("auto", description="Force a memory plan instead of choosing from free VRAM.")
    lora_dir: Path | None = Field(None, description="Folder of .safetensors LoRAs (default: <data_dir>/loras).")
    default_lora: str | None = Field("alch3mist", description="LoRA used when a job names none (if present).")
    default_lora_scale: float = Field(1.0, description="Its scale.")

    # --- prompt rewrite (any OpenAI-compatible endpoint; offline rewriter when unset or failing) ---
    llm_url: str | None = Field(None, description="Base URL of an OpenAI-compatible API, e.g. http://host:11434/v1.")
    llm_api_key: SecretStr = Field(SecretStr(""), description="Its API key, if any.")
    llm_model: str = Field("gpt-4o-mini", description="Model name for the rewrite.")
    llm_timeout_s: float = Field(30.0, description="Timeout of one rewrite call.")

    # --- offline rewriter: language resources (Debian dict-freedict-*-eng and wordnet-base) ---
    dictionary_dir: Path = Field(
        Path("/usr/share/dictd"),
        description="Folder of the FreeDict dictd dictionaries (freedict-deu-eng.index + .dict.dz …).",
    )
    wordnet_dir: Path = Field(
        Path("/usr/share/wordnet"), description="Folder of English WordNet 3.0 (index.noun, data.noun …)."
    )

    # --- 3D engines ---
    engine_3d: EngineName | Literal["auto"] = Field(
        "auto", description="Default engine: auto = trellis on the full preset, else preview."
    )
    trellis_url: str | None = Field(None, description="URL of a TRELLIS Gradio app.")
    hunyuan3d_url: str | None = Field(None, description="URL of a Hunyuan3D-2.x api_server.")
    engine_timeout_s: float = Field(600.0, description="Timeout of one 3D engine call.")
    # Hunyuan3D-2.1 never reports a failed stage, so each phase of a job has a no-progress deadline (engines issue)
    hunyuan3d_shape_deadline_s: float = Field(
        300.0, description="Longest a Hunyuan3D job may stay 'processing' (shape) before it fails."
    )
    hunyuan3d_texture_deadline_s: float = Field(
        420.0, description="Longest it may stay 'texturing' before the untextured shape is delivered with a warning."
    )

    # --- ComfyUI as the image backend (alch3mist.comfyui): stages 1-2 run as workflows on the user's ComfyUI ---
    comfyui_url: str | None = Field(
        None,
        description="Base URL of a ComfyUI server, e.g. http://gpu-box:8188. When set, the base image and material "
        "edit run there as API-format workflows and FLUX is not loaded in this process.",
    )
    comfyui_timeout_s: float = Field(600.0, description="Longest one ComfyUI workflow may take, queue wait included.")
    comfyui_flux_unet: str = Field(
        "flux1-dev.safetensors", description="FLUX.1-dev in the server's models/diffusion_models."
    )
    comfyui_kontext_unet: str = Field(
        "flux1-dev-kontext_fp8_scaled.safetensors",
        description="FLUX.1 Kontext [dev] in the server's models/diffusion_models.",
    )
    comfyui_clip_l: str = Field("clip_l.safetensors", description="CLIP-L in the server's models/text_encoders.")
    comfyui_t5: str = Field(
        "t5xxl_fp16.safetensors",
        description="T5-XXL in the server's models/text_encoders (t5xxl_fp8_e4m3fn_scaled.safetensors also works).",
    )
    comfyui_vae: str = Field("ae.safetensors", description="The FLUX VAE in the server's models/vae.")

    # --- texturing a given mesh (alch3mist retexture; texture stage) ---
    mesh_max_bytes: int = Field(64 * 1024 * 1024, description="Largest mesh file accepted for texturing (bytes).")
    mesh_max_faces: int = Field(300_000, description="Most faces of a mesh to texture (more: refused or decimated).")
    texture_engine: TextureEngineName = Field(
        "alch3mist",
        description="Default texture engine: alch3mist (built in: multi-view Kontext + LoRA), hunyuan3d (a "
        "Hunyuan3D-2.0 api_server with --enable_tex at ALCH3MIST_HUNYUAN3D_URL) or trellis2 (TRELLIS.2's texturing "
        "app at ALCH3MIST_TRELLIS2_TEXTURING_URL).",
    )
    trellis2_texturing_url: str | None = Field(
        None, description="URL of TRELLIS.2's texturing Gradio app (app_texturing.py), for the trellis2 texture engine."
    )

    # --- viewer ---
    model_viewer_bundle: Path | None = Field(
        None, description="The @google/model-viewer UMD bundle (default: the repository's vendored copy)."
    )

    @field_validator("public_url", "comfyui_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @property
    def loras_path(self) -> Path:
        return self.lora_dir or self.data_dir / "loras"

    def parsed_api_keys(self) -> dict[str, str]:
        """``{name: key}``; a bare key is named ``key1``, ``key2``…"""
        keys: dict[str, str] = {}
        for index, item in enumerate(filter(None, (p.strip() for p in self.api_keys.get_secret_value().split(","))), 1):
            name, sep, key = item.partition(":")
            keys[name if sep else f"key{index}"] = key if sep else name
        return keys


@lru_cache
def get_settings() -> Settings:
    return Settings()
