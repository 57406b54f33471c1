"""inferq's configuration: one typed object read from ``INFERQ_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_model_store() -> Path:
    return Path.home() / ".inferq" / "models"


class Settings(BaseSettings):
    """Every setting of the API and the workers. Secrets are ``SecretStr`` and never logged."""

    model_config = SettingsConfigDict(env_prefix="INFERQ_", extra="ignore", frozen=True)

    # -- Redis: broker, task records and notifications.
    redis_url: SecretStr = SecretStr("redis://localhost:6379/0")
    redis_password: SecretStr | None = None
    redis_socket_timeout: float = Field(5.0, gt=0)
    # Connections one API process keeps to Redis; requests beyond them wait their turn.
    redis_max_connections: int = Field(64, ge=4)

    # -- Model store.
    model_store: Path = Field(default_factory=_default_model_store)

    # -- Tasks and requests.
    task_ttl_seconds: int = Field(86_400, gt=0)
    max_rows: int = Field(10_000, gt=0)
    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0)
    max_wait_seconds: float = Field(30.0, ge=0)

    # -- Worker: per-pool defaults from services.common.pools apply where these are unset.
    soft_time_limit: float | None = Field(None, gt=0)
    hard_time_limit: float | None = Field(None, gt=0)
    visibility_timeout: float | None = Field(None, gt=0)
    batch_max_rows: int | None = Field(None, gt=0)
    batch_max_wait_ms: float | None = Field(None, ge=0)
    worker_prefetch: int | None = Field(None, gt=0)

    # -- Logging.
    log_level: str = "INFO"
    log_format: str = Field("json", pattern="^(json|text)$")

    # -- Cluster view: where the API finds worker Deployments when it runs in Kubernetes.
    k8s_namespace: str | None = None
    k8s_worker_selector: str | None = None

    @field_validator("log_level")
    @classmethod
    def _upper_level(cls, value: str) -> str:
        return value.upper()

    @property
    def broker_url(self) -> str:
        """The Redis URL with the password from ``INFERQ_REDIS_PASSWORD`` merged in."""
        url = self.redis_url.get_secret_value()
        if self.redis_password is None:
            return url
        parts = urlsplit(url)
        host = parts.netloc.rsplit("@", 1)[-1]
        user = parts.username or ""
        netloc = f"{user}:{self.redis_password.get_secret_value()}@{host}"
        return urlunsplit(parts._replace(netloc=netloc))

    @property
    def redis_url_redacted(self) -> str:
        """The Redis URL safe for logs: any password replaced by ``***``."""
        parts = urlsplit(self.broker_url)
        if parts.password is None:
            return self.broker_url
        host = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
