"""inferq's configuration: one typed object read from ``INFERQ_*`` environment variables."""

from __future__ import annotations

import ssl
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.pools import NAME_PATTERN, POOLS
from services.common.redaction import redact_url


def _default_model_store() -> str:
    return str(Path.home() / ".inferq" / "models")


def _default_storage_url() -> str:
    return str(Path.home() / ".inferq" / "storage")


class Settings(BaseSettings):
    """Every setting of the API and the workers. Secrets are ``SecretStr`` and never logged."""

    # An error names the setting and what is wrong, never the value given: it may be a secret.
    model_config = SettingsConfigDict(env_prefix="INFERQ_", extra="ignore", frozen=True,
                                      hide_input_in_errors=True)

    # -- Redis: broker, task records and notifications.
    redis_url: SecretStr = SecretStr("redis://localhost:6379/0")
    redis_password: SecretStr | None = None
    redis_socket_timeout: float = Field(5.0, gt=0)
    # Connections one API process keeps to Redis; requests beyond them wait their turn.
    redis_max_connections: int = Field(64, ge=4)
    # The CA bundle that signs the certificate of a Redis reached over TLS (``rediss://``);
    # unset: the system's CAs. The user name, if any, is the URL's (``rediss://user@host``).
    redis_ca_file: Path | None = None

    # -- Model store: a directory or s3://bucket/prefix (the AWS variables as for storage_url).
    model_store: str = Field(default_factory=_default_model_store, min_length=1)

    # -- Object storage for datasets and job outputs: a directory or s3://bucket/prefix,
    # with the endpoint and credentials from the standard AWS variables.
    storage_url: str = Field(default_factory=_default_storage_url, min_length=1)
    # The largest dataset file an upload may send.
    max_dataset_bytes: int = Field(5 * 1024**3, gt=0)

    # -- Tasks and requests.
    task_ttl_seconds: int = Field(86_400, gt=0)
    max_rows: int = Field(10_000, gt=0)
    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0)
    max_wait_seconds: float = Field(30.0, ge=0)

    # -- Rate limits of each API key (its own, when its record sets them, else these):
    # requests per second and rows (of predictions) per minute, shared by every API
    # process through Redis. 0 is unlimited. With authentication off nothing is limited.
    rate_limit_requests_per_second: float = Field(100.0, ge=0)
    rate_limit_rows_per_minute: int = Field(600_000, ge=0)

    # -- Routing: which queue a prediction goes to, and the pools the API reports.
    # Predictions go to ``predict_queue`` unless ``model_queues`` routes their model
    # elsewhere (a JSON object, model name to queue).
    predict_queue: str = "inference"
    model_queues: dict[str, str] = Field(default_factory=dict)
    # The pools of the deployment (a JSON object, pool name to queue): their backlog is
    # exported and reported by ``GET /v1/pools``.
    pool_queues: dict[str, str] = Field(default_factory=lambda: {p: p for p in POOLS})
    # The kind of each pool not named after its kind (a JSON object, pool name to kind):
    # the queue gauges carry it, so alerts follow a pool's kind, not its queue's name.
    pool_kinds: dict[str, str] = Field(default_factory=dict)

    # -- Worker: per-pool defaults from services.common.pools apply where these are unset.
    soft_time_limit: float | None = Field(None, gt=0)
    hard_time_limit: float | None = Field(None, gt=0)
    visibility_timeout: float | None = Field(None, gt=0)
    batch_max_rows: int | None = Field(None, gt=0)
    batch_max_wait_ms: float | None = Field(None, ge=0)
    inline_max_ms: float | None = Field(None, ge=0)
    worker_prefetch: int | None = Field(None, gt=0)
    worker_max_memory_mib: int | None = Field(None, ge=0)

    # -- Batch jobs: rows per chunk (one message of the batch queue), the queue, and how
    # long a job's record and outputs are kept; expired outputs are deleted by the API's
    # sweep, every ``job_sweep_seconds``.
    batch_chunk_rows: int = Field(50_000, gt=0)
    batch_queue: str = "batch"
    job_retention_seconds: int = Field(7 * 86_400, gt=0)
    job_sweep_seconds: float = Field(3600.0, gt=0)
    # -- Training jobs: the queue their tasks go to (their records share the jobs' retention),
    # and how many part tasks a forest's fit on every row after a search is split into at
    # most, so that every training worker takes some of its trees (1: one task fits it).
    training_queue: str = "training"
    training_fit_parts: int = Field(1, ge=1, le=64)

    # -- The API's /metrics on a port of its own (then the main port answers 404 for it),
    # so that whatever reaches the API's port does not reach its metrics.
    metrics_port: int | None = Field(None, ge=1, le=65535)

    # -- Authentication: every request under /v1 carries an API key (docs/security.md).
    # ``off``: every caller is the default tenant with every scope (local use only).
    auth: Literal["on", "off"] = "on"
    # The key of the keyed hash (HMAC-SHA256) under which API keys are stored; required
    # when authentication is on. Changing it invalidates every key.
    auth_secret: SecretStr | None = None
    # A JSON list of keys the API stores at start (``services.common.api_keys``).
    auth_seed_file: Path | None = None

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

    @field_validator("redis_url")
    @classmethod
    def _parsable_url(cls, value: SecretStr) -> SecretStr:
        """A password that reserved characters cut short would reach Redis wrong, and the
        rest of it would be read as the host, the port or the path: and shown in their
        errors. The message names neither."""
        parts = urlsplit(value.get_secret_value())
        try:
            parts.port  # noqa: B018 (parsed on access)
        except ValueError:
            broken = True
        else:
            broken = "@" in parts.path + parts.query + parts.fragment
        if broken:
            raise ValueError(
                "INFERQ_REDIS_URL does not parse as redis://[user:password@]host[:port][/db]: "
                "percent-encode the characters / # ? @ : % of its password, or give the "
                "password in INFERQ_REDIS_PASSWORD")
        return value

    @field_validator("predict_queue", "batch_queue", "training_queue")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        _check_queue(value)
        return value

    @field_validator("model_queues", "pool_queues")
    @classmethod
    def _queue_names(cls, value: dict[str, str]) -> dict[str, str]:
        for queue in value.values():
            _check_queue(queue)
        return value

    @field_validator("pool_kinds")
    @classmethod
    def _kinds(cls, value: dict[str, str]) -> dict[str, str]:
        for pool_name, kind in value.items():
            if kind not in POOLS:
                raise ValueError(f"pool {pool_name!r}: {kind!r} is not a kind of pool; "
                                 f"known kinds: {', '.join(POOLS)}")
        return value

    @property
    def queue_kinds(self) -> dict[str, str]:
        """The queue of every pool, to the kind of that pool (``unknown`` when not given)."""
        return {queue: self.pool_kinds.get(name, name if name in POOLS else "unknown")
                for name, queue in self.pool_queues.items()}

    def queue_for(self, model: str) -> str:
        """The queue a prediction of ``model`` is sent to."""
        return self.model_queues.get(model, self.predict_queue)

    @property
    def broker_url(self) -> str:
        """The Redis URL with the password from ``INFERQ_REDIS_PASSWORD`` merged in,
        percent-encoded: any character of it (``/``, ``#``, ``@`` ...) reaches Redis as
        given, and never spills into the URL's host or path."""
        url = self.redis_url.get_secret_value()
        if self.redis_password is None:
            return url
        parts = urlsplit(url)
        host = parts.netloc.rsplit("@", 1)[-1]
        user = parts.username or ""
        password = quote(self.redis_password.get_secret_value(), safe="")
        return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))

    @property
    def redis_uses_tls(self) -> bool:
        return urlsplit(self.redis_url.get_secret_value()).scheme == "rediss"

    @property
    def redis_tls(self) -> dict[str, Any]:
        """Keyword arguments of a redis-py client: the CA bundle ``redis_ca_file`` for a
        ``rediss://`` URL (redis-py checks the certificate unless the URL's
        ``ssl_cert_reqs`` says otherwise). Empty for ``redis://``, whose connections take
        no TLS arguments, or without a CA file (the system's CAs)."""
        if not self.redis_uses_tls or self.redis_ca_file is None:
            return {}
        return {"ssl_ca_certs": str(self.redis_ca_file)}

    @property
    def broker_tls(self) -> dict[str, Any] | None:
        """Celery's ``broker_use_ssl`` for a ``rediss://`` URL, None for ``redis://``: the
        same checks as redis-py's (kombu on its own would not check the certificate)."""
        if not self.redis_uses_tls:
            return None
        query = dict(parse_qsl(urlsplit(self.redis_url.get_secret_value()).query))
        requirement = query.get("ssl_cert_reqs", "required").lower().removeprefix("cert_")
        options: dict[str, Any] = {
            "ssl_cert_reqs": _CERT_REQUIREMENTS.get(requirement, ssl.CERT_REQUIRED)}
        if self.redis_ca_file is not None:
            options["ssl_ca_certs"] = str(self.redis_ca_file)
        return options

    @property
    def redis_url_redacted(self) -> str:
        """The Redis URL safe for logs: any password replaced by ``***``."""
        return redact_url(self.broker_url)

    @property
    def secret_values(self) -> tuple[str, ...]:
        """The values of the secret settings (the Redis password, in the URL or on its
        own, and the auth secret): what the logs hide wherever they appear."""
        url_password = urlsplit(self.redis_url.get_secret_value()).password
        found = [unquote(url_password) if url_password else None,
                 *(s.get_secret_value() if s else None
                   for s in (self.redis_password, self.auth_secret))]
        return tuple(value for value in found if value)


_CERT_REQUIREMENTS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
                      "required": ssl.CERT_REQUIRED}


def _check_queue(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise ValueError(f"queue name {name!r} must be lowercase letters, digits and dashes, "
                         "starting with a letter, at most 40 characters")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
