"""One Settings object for the whole backend, read from the environment (prefix ``ALCH3MIST_``) or ``.env``."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Preset = Literal["tiny", "full", "auto"]
MemoryPlanName = Literal["auto", "resident", "model_offload", "group_offload", "sequential_offload"]
EngineName = Literal["preview", "trellis", "hunyuan3d", "hunyuan3d-local"]
TextureEngineName = Literal["alch3mist", "hunyuan3d", "trellis2"]  # texturing/engines.py
# Seeds are int32 end to end: TRELLIS' and Hunyuan3D's servers (and many UIs) take no larger.
MAX_SEED = 2**31 - 1


def _default_home() -> Path:
    return Path.home() / ".local" / "share" / "alch3mist"


class Limits(BaseModel):
    """What one API key may do: quotas (0 = no limit) and parameter ceilings. ``Settings.limits_for`` builds it from
    the ``ALCH3MIST_*`` defaults and the key's entry in ``ALCH3MIST_KEY_LIMITS``."""

    max_active: int = Field(ge=0, description="Queued + running jobs of the key, all its end users together.")
    jobs_per_hour: int = Field(ge=0, description="Jobs the key may start in any hour, all its end users together.")
    max_active_per_user: int = Field(ge=0, description="Queued + running jobs of one end user of the key.")
    user_jobs_per_hour: int = Field(ge=0, description="Jobs one end user of the key may start in any hour.")
    max_steps: int = Field(ge=1, le=100, description="Highest `steps` and `edit_steps`.")
    max_size: int = Field(ge=64, le=2048, description="Highest base image side `size`, pixels.")
    max_views: int = Field(ge=0, le=36, description="Highest number of multiview renders `views`.")
    max_view_size: int = Field(ge=64, le=2048, description="Highest side of a multiview render `view_size`, pixels.")
    max_texture_size: int = Field(ge=256, le=4096, description="Highest GLB texture side `texture_size`, pixels.")


@dataclass(frozen=True)
class ApiKey:
    """One entry of ``ALCH3MIST_API_KEYS``: ``name:key``, ``name@admin:key`` (sees every job) or a bare key."""

    name: str
    key: str
    admin: bool = False


_KEY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALCH3MIST_", env_file=".env", extra="ignore")

    # --- service ---
    host: str = Field("127.0.0.1", description="Interface the API listens on.")
    port: int = Field(8765, description="Port the API listens on.")
    api_keys: SecretStr = Field(
        SecretStr(""),
        description="Comma-separated API keys, each `name:key`, `name@admin:key` (an admin key sees every job) or a "
        "bare key. Empty = no auth: only on a loopback address, or with --insecure-no-auth.",
    )
    public_url: str | None = Field(None, description="How browsers reach this service, e.g. https://gpu.example.org.")
    data_dir: Path = Field(default_factory=_default_home, description="Jobs database and artifacts.")
    database_url: SecretStr | None = Field(
        None,
        description="Shared job database, e.g. postgresql+psycopg://user:pass@host:5432/alch3mist (cluster mode). "
        "Unset = the embedded SQLite file <data_dir>/jobs.sqlite3.",
    )
    link_secret: SecretStr = Field(
        default_factory=lambda: SecretStr(secrets.token_urlsafe(32)),
        description="HMAC key for signed browser links. Set it to keep links valid across restarts.",
    )
    link_ttl_s: int = Field(
        3600,
        description="Lifetime of the links a viewer page renders for its GLB, poster and bundle (fresh on every load), "
        "seconds. Links in API answers, which chats keep, last as long as the job (ALCH3MIST_RETENTION_DAYS).",
    )
    retention_days: float = Field(30.0, description="Finished jobs older than this are deleted with their artifacts.")
    max_request_chars: int = Field(2000, description="Longest free-text request accepted.")
    max_upload_bytes: int = Field(
        20 * 1024 * 1024,
        description="Largest accepted request body (input image); a mesh's base64 (ALCH3MIST_MESH_MAX_BYTES) adds on.",
    )
    stage_timeout_s: float = Field(900.0, description="Longest any one stage may run before the job fails.")
    stage_kill_grace_s: float = Field(
        30.0,
        gt=0,
        description="How long a timed-out, cancelled or stopping stage gets to reach a step boundary before its worker "
        "process is killed (and restarted, reloading the models).",
    )

    # --- cluster mode (jobs/cluster.py, jobs/cluster_worker.py; docs/deploy.md, "From one box to several") ---
    broker_url: SecretStr | None = Field(
        None,
        description="Celery broker of the cluster mode, e.g. redis://host:6379/0. Unset = embedded mode: `serve` runs "
        "the worker in its own process tree. Set = `serve` only queues jobs; `alch3mist worker` processes run them.",
    )
    chain_factory: str = Field(
        "alch3mist.chain:build_chain",
        description="module:function building the chain from the Settings, called where the models load (a cluster "
        "worker's pool process).",
    )
    job_time_limit_s: float = Field(
        4 * 3600.0,
        gt=0,
        description="Cluster mode: the hard limit of one whole job (Celery's time_limit); the broker's visibility "
        "timeout is longer, so a running job is never handed to a second worker.",
    )
    worker_load_timeout_s: float = Field(
        1800.0, gt=0, description="Cluster mode: how long a worker's pool process may take to load the models."
    )

    # --- artifact storage (storage/; docs/deploy.md, "Artifact storage") ---
    storage_url: str | None = Field(
        None,
        description="Where finished artifacts are kept: unset = the job folders under <data_dir>/jobs; "
        "s3://bucket/prefix = an S3-compatible bucket (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or "
        "boto3's other standard sources). Checked at start: a bad URL or an unreachable bucket stops `serve`.",
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="S3 endpoint for MinIO, R2 and other S3-compatible services (unset: AWS), e.g. http://minio:9000.",
    )

    # --- safety: ownership, quotas, parameter ceilings, startup without keys (issue 10; jobs/policy.py) ---
    insecure_no_auth: bool = Field(
        False,
        description="Serve without API keys on a non-loopback address (`alch3mist serve --insecure-no-auth`): anyone "
        "who reaches the port can run jobs. Only for a trusted, isolated network.",
    )
    max_queue: int = Field(100, ge=1, description="Queued jobs the whole service holds; more: 503 with Retry-After.")
    queue_retry_after_s: int = Field(60, ge=1, description="Retry-After (seconds) of a 503 for a full queue.")
    key_max_active: int = Field(32, ge=0, description="Queued + running jobs per API key (0 = no limit).")
    key_jobs_per_hour: int = Field(240, ge=0, description="Jobs an API key may start per hour (0 = no limit).")
    max_queued_per_user: int = Field(
        4, ge=0, description="Queued + running jobs per end user of a key (a key's requests without one: one user)."
    )
    user_jobs_per_hour: int = Field(60, ge=0, description="Jobs one end user of a key may start per hour (0 = none).")
    max_steps: int = Field(50, ge=1, le=100, description="Ceiling of `steps` and `edit_steps` for every key.")
    max_size: int = Field(1024, ge=64, le=2048, description="Ceiling of the base image side `size`, pixels.")
    max_views: int = Field(16, ge=0, le=36, description="Ceiling of the number of multiview renders `views`.")
    max_view_size: int = Field(1024, ge=64, le=2048, description="Ceiling of `view_size`, pixels.")
    max_texture_size: int = Field(2048, ge=256, le=4096, description="Ceiling of `texture_size`, pixels.")
    key_limits: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description='Per-key overrides of the limits above, JSON by key name, e.g. {"tool": {"max_active": 4, '
        '"max_steps": 30}} (names: the fields of alch3mist.config.Limits).',
    )

    # --- models ---
    preset: Preset = Field("auto", description="tiny: random local components; full: real weights; auto: full on CUDA.")
    cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "alch3mist",
        description="Where the tiny preset and the offline rewriter's look-up indexes (lexicon/) are cached.",
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

    # --- hunyuan3d-local: Hunyuan3D-2 shape (hy3dgen) in-process; optional, off by default ---
    hunyuan3d_local: bool = Field(
        False,
        description="Enable the in-process hunyuan3d-local engine. Its weights are under the Tencent Hunyuan 3D 2.0 "
        "Community Licence, which excludes the EU, the UK and South Korea: read it before turning this on.",
    )
    hunyuan3d_model: str = Field(
        "tencent/Hunyuan3D-2", description="Hub id or local folder holding the shape model's subfolder."
    )
    hunyuan3d_subfolder: str = Field(
        "hunyuan3d-dit-v2-0", description="Subfolder with config.yaml + model(.fp16).safetensors."
    )
    hunyuan3d_num_chunks: int | None = Field(
        None, ge=1000, description="Query points per volume-decoding chunk (default: from free VRAM)."
    )
    hunyuan3d_octree_resolution: int | None = Field(
        None, ge=16, le=1024, description="Marching-cubes grid resolution (default: from free VRAM)."
    )
    hunyuan3d_lora_dir: Path | None = Field(
        None, description="Folder of 3D-stage LoRAs (.safetensors; default: <data_dir>/loras3d)."
    )
    hunyuan3d_lora: str | None = Field(None, description="3D-stage LoRA applied to every hunyuan3d-local job.")
    hunyuan3d_lora_scale: float = Field(1.0, description="Its scale (0 runs the base model).")

    # --- viewer ---
    model_viewer_bundle: Path | None = Field(
        None, description="The @google/model-viewer UMD bundle (default: the repository's vendored copy)."
    )

    @field_validator("public_url", "comfyui_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @property
    def max_body_bytes(self) -> int:
        """The request body limit: ``max_upload_bytes`` plus room for the largest mesh as base64 (4 bytes per 3)."""
        return self.max_upload_bytes + -(-self.mesh_max_bytes // 3) * 4

    @property
    def loras_path(self) -> Path:
        return self.lora_dir or self.data_dir / "loras"

    @property
    def loras3d_path(self) -> Path:
        return self.hunyuan3d_lora_dir or self.data_dir / "loras3d"

    def database_url_value(self) -> str | None:
        """``ALCH3MIST_DATABASE_URL`` in clear (it may hold a password: pass it to ``JobStore``, never log it)."""
        return self.database_url.get_secret_value() if self.database_url is not None else None

    def broker_url_value(self) -> str | None:
        """The broker URL (it may hold a password: never log it)."""
        return self.broker_url.get_secret_value() if self.broker_url is not None else None

    def parsed_api_keys(self) -> dict[str, ApiKey]:
        """``{name: ApiKey}``; a bare key is named ``key1``, ``key2``… Raises ``ValueError`` for a malformed entry
        (the message names the entry's position, never the key)."""
        keys: dict[str, ApiKey] = {}
        for index, item in enumerate(filter(None, (p.strip() for p in self.api_keys.get_secret_value().split(","))), 1):
            label, sep, key = item.partition(":")
            if not sep:
                label, key = f"key{index}", item
            name, _, role = label.partition("@")
            if not _KEY_NAME.fullmatch(name) or role not in ("", "admin") or not key or name in keys:
                raise ValueError(
                    f"ALCH3MIST_API_KEYS entry {index}: expected name:key or name@admin:key with a unique name of "
                    "letters, digits, '_', '.', '-' and a non-empty key"
                )
            keys[name] = ApiKey(name=name, key=key, admin=role == "admin")
        return keys

    def limits_for(self, key_name: str | None) -> Limits:
        """The limits of one API key: these settings, overridden by its entry in ``key_limits``."""
        defaults = {
            "max_active": self.key_max_active,
            "jobs_per_hour": self.key_jobs_per_hour,
            "max_active_per_user": self.max_queued_per_user,
            "user_jobs_per_hour": self.user_jobs_per_hour,
            "max_steps": self.max_steps,
            "max_size": self.max_size,
            "max_views": self.max_views,
            "max_view_size": self.max_view_size,
            "max_texture_size": self.max_texture_size,
        }
        overrides = self.key_limits.get(key_name, {}) if key_name is not None else {}
        unknown = set(overrides) - set(Limits.model_fields)
        if unknown:
            raise ValueError(f"ALCH3MIST_KEY_LIMITS[{key_name!r}]: unknown limit(s) {', '.join(sorted(unknown))}")
        try:
            return Limits(**{**defaults, **overrides})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"limits of key {key_name!r} (ALCH3MIST_KEY_LIMITS): {where}: {first['msg']}") from exc

    @property
    def chat_link_ttl_s(self) -> int | None:
        """Lifetime of the links in API answers (kept in chats): the job's own lifetime; None = no expiry."""
        return int(self.retention_days * 86400) if self.retention_days > 0 else None


@lru_cache
def get_settings() -> Settings:
    return Settings()
