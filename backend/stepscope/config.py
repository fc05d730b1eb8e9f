"""One Settings object for every process; each field is read from STEPSCOPE_<FIELD>."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STEPSCOPE_", extra="ignore")

    redis_url: str | None = Field(None, description="Redis to use; unset: `stepscope up` starts an embedded one")
    store: str = Field("runs", description="run directories: a local path or an fsspec URL (s3://bucket/runs)")
    cache_dir: str = Field(str(Path.home() / ".cache" / "stepscope"), description="fitted preview maps")
    device: str = Field("cpu", description="torch device for workers and `stepscope run`")
    dtype: str | None = Field(None, description="model dtype; default per preset")
    offload: str = Field("none", description="none | model | sequential CPU offload")
    compile: str = Field("auto", pattern="^(auto|on|off)$", description="torch.compile block forwards; auto = on CUDA")
    step_decode_dtype: str = Field(
        "auto",
        pattern="^(auto|float32|float16|bfloat16)$",
        description="dtype of the full decodes of steps (background and on request). auto = float16 on CUDA "
        "without offload (~35% less GPU time per decode on an H100, frames within 1/255 of float32's), "
        "otherwise the VAE's own (float32). A decode that overflows is redone with the VAE as loaded; the "
        "final decode always uses the VAE's own dtype",
    )
    token: str | None = Field(None, description="bearer token required on every API route when set")
    host: str = "127.0.0.1"
    port: int = 8000
    models: str = Field("tiny", description="comma-separated models the API offers (besides announced ones)")
    job_timeout: int = Field(3600, description="seconds a job may run before the worker stops it")
    result_ttl: int = Field(7 * 24 * 3600, description="seconds job records and event streams are kept")
    max_queued: int = Field(1000, description="jobs waiting per queue before submissions get 429 (with Retry-After)")
    max_upload_bytes: int = Field(20 * 2**20)
    sse_heartbeat: float = Field(15.0, description="seconds between SSE heartbeat comments")
    lost_after: float = Field(30.0, description="seconds without a worker heartbeat before its job fails")
    janitor_every: float = Field(5.0, description="seconds between checks for lost workers")
    redis_patience: float = Field(120.0, description="seconds a running job waits out a Redis outage before failing")


def compile_on(settings: Settings, device: str) -> bool:
    """Whether workers compile the transformer blocks on this device."""
    return settings.compile == "on" or (settings.compile == "auto" and device.startswith("cuda"))


def step_decode_dtype_for(settings: Settings, device: str, offload: str) -> str | None:
    """The dtype of step decodes on this device (None: the VAE's own)."""
    if settings.step_decode_dtype == "auto":
        return "float16" if device.startswith("cuda") and offload == "none" else None
    return settings.step_decode_dtype


@lru_cache
def get_settings() -> Settings:
    return Settings()
