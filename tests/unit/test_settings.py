"""Settings: defaults, the Redis password merged into the URL, secrets kept out of reprs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.common.settings import Settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("INFERQ_REDIS_URL", "INFERQ_MAX_ROWS", "INFERQ_TASK_TTL_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.broker_url == "redis://localhost:6379/0"
    assert settings.max_rows == 10_000 and settings.max_body_bytes == 10 * 1024 * 1024
    assert settings.task_ttl_seconds == 86_400


def test_password_is_merged_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERQ_REDIS_URL", "redis://redis.inferq.svc:6379/0")
    monkeypatch.setenv("INFERQ_REDIS_PASSWORD", "s3cret-pw")
    settings = Settings()
    assert settings.broker_url == "redis://:s3cret-pw@redis.inferq.svc:6379/0"
    assert settings.redis_url_redacted == "redis://:***@redis.inferq.svc:6379/0"
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in str(settings.model_dump())


def test_password_in_url_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFERQ_REDIS_PASSWORD", raising=False)
    monkeypatch.setenv("INFERQ_REDIS_URL", "redis://user:pw@host:6380/2")
    settings = Settings()
    assert settings.redis_url_redacted == "redis://user:***@host:6380/2"
    assert "pw@" not in repr(settings)


@pytest.mark.parametrize(("name", "value"), [("INFERQ_MAX_ROWS", "0"),
                                             ("INFERQ_LOG_FORMAT", "xml")])
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()
