"""Configuration: ``PIER_*`` environment variables, then a TOML config file, then defaults.

The config file is ``$PIER_CONFIG`` or ``$PIER_HOME/config.toml``; keys are the field names
below (``port = 8000``). Environment variables win over the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = ["DEFAULT_PORT", "Settings", "default_home"]

DEFAULT_PORT = 7437


def default_home() -> Path:
    env = os.environ.get("PIER_HOME")
    return Path(env).expanduser() if env else Path.home() / ".pier"


def _config_file() -> Path:
    env = os.environ.get("PIER_CONFIG")
    return Path(env).expanduser() if env else default_home() / "config.toml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PIER_", extra="forbid")

    home: Path = Field(default_factory=default_home)
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)
    url: str | None = None
    database_url: str | None = None
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    """The Ray dashboard (Jobs API) of the cluster ``executor = "ray"`` runs on:
    ``http://HOST:8265``."""
    ray_token: SecretStr | None = None
    """The Ray cluster's auth token (``RAY_AUTH_MODE=token``), sent as a bearer token."""
    local_gpus: int | None = Field(None, ge=0, le=1024)
    local_gpu_model: str = "simulated"
    local_cpus: float | None = Field(None, gt=0)
    local_memory: int | None = Field(None, gt=0)
    container_runtime: Literal["auto", "podman", "docker", "none"] = "auto"
    """Runs tasks that give an ``image`` in containers on the local executor
    (docs/local-executor.md). ``auto``: podman, else docker, whichever CLI is found and works
    (``podman info``; docker: its daemon answers); ``none``: images are recorded only, and an
    image without a command is refused at submit. A named runtime that does not work stops
    the server from starting."""
    cgroup_root: Path | None = None
    """A writable cgroup v2 directory: each replica gets a child cgroup with memory.max and
    cpu.max from its limits. Unset: limits are rlimits (memory) or recorded only (cpu)."""
    admin_user: str = "admin"
    admin_password: SecretStr | None = None
    token_ttl_seconds: int = Field(30 * 86400, ge=60)
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    scheduler_interval_seconds: float = Field(1.0, gt=0)
    workers: int = Field(1, ge=1, le=64)
    """API worker processes. One process serves about one core (the GIL); with more, the
    control loop runs in one more process of its own and the API workers hand it work (see
    ``pier.workers``). 1 (the default): API and control loop in one process."""
    scheduler_policy: Literal["quota", "las", "gittins", "fifo"] = "quota"
    """``quota``: deserved quotas, borrowing, reclaim, fair share (docs/scheduler.md);
    ``las``: the same with least-attained-service order for training jobs; ``gittins``: LAS
    with ranks from a Gittins index learned from the project's finished jobs; ``fifo``: the
    first, greedy policy (project hard limits only)."""
    metrics_public: bool = False
    """Serve ``/metrics`` without a token (default: a pier bearer token is required)."""
    log_level: str = "info"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=_config_file()),
        )

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'pier.db'}"

    @property
    def effective_url(self) -> str:
        if self.url:
            return self.url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def credentials_file(self) -> Path:
        return self.home / "credentials.json"
