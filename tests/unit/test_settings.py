"""Settings: defaults, the Redis password merged into the URL, secrets kept out of reprs and
log lines."""

from __future__ import annotations

import logging
import ssl
from urllib.parse import unquote, urlsplit

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from services.common.logging import JsonFormatter, TextFormatter
from services.common.redaction import Redactor, redact_url
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


def test_predictions_go_to_their_models_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERQ_PREDICT_QUEUE", "online")
    monkeypatch.setenv("INFERQ_MODEL_QUEUES", '{"big-forest": "inference-large"}')
    settings = Settings()
    assert settings.queue_for("big-forest") == "inference-large"
    assert settings.queue_for("iris") == "online"


def test_pools_default_to_the_three_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFERQ_POOL_QUEUES", raising=False)
    assert Settings().pool_queues == {"inference": "inference", "batch": "batch",
                                      "training": "training"}


@pytest.mark.parametrize(("name", "value"), [
    ("INFERQ_PREDICT_QUEUE", "Online Queue"),
    ("INFERQ_MODEL_QUEUES", '{"iris": "inferq:task:x"}'),
    ("INFERQ_POOL_QUEUES", '{"gpu": ""}'),
])
def test_bad_queue_names_are_refused(monkeypatch: pytest.MonkeyPatch, name: str,
                                     value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("INFERQ_").lower()):
        Settings()


def test_a_queue_map_that_is_not_json_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERQ_POOL_QUEUES", "inference")
    with pytest.raises(SettingsError, match="pool_queues"):
        Settings()


def test_queue_kinds_follow_the_pools_not_the_queue_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INFERQ_POOL_QUEUES", '{"inference": "inference", '
                       '"training": "training-gpu", "inference-large": "inference-large"}')
    monkeypatch.setenv("INFERQ_POOL_KINDS", '{"inference-large": "inference"}')
    assert Settings().queue_kinds == {"inference": "inference", "training-gpu": "training",
                                      "inference-large": "inference"}


def test_an_unknown_pool_kind_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERQ_POOL_KINDS", '{"gpu": "gpu"}')
    with pytest.raises(ValidationError, match="pool_kinds"):
        Settings()


def test_a_user_in_the_url_keeps_its_name_with_the_password() -> None:
    settings = Settings(redis_url="rediss://api@redis:6379/0", redis_password="pw")
    assert settings.broker_url == "rediss://api:pw@redis:6379/0"
    assert settings.redis_url_redacted == "rediss://api:***@redis:6379/0"


def test_tls_options_follow_the_scheme_and_the_ca_file() -> None:
    plain = Settings(redis_url="redis://redis:6379/0", redis_ca_file="/ca.crt")
    assert plain.redis_tls == {} and plain.broker_tls is None
    system = Settings(redis_url="rediss://redis:6380/0")
    assert system.redis_tls == {}
    assert system.broker_tls == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    private = Settings(redis_url="rediss://redis:6380/0", redis_ca_file="/etc/ca.crt")
    assert private.redis_tls == {"ssl_ca_certs": "/etc/ca.crt"}
    assert private.broker_tls == {"ssl_cert_reqs": ssl.CERT_REQUIRED,
                                  "ssl_ca_certs": "/etc/ca.crt"}
    unchecked = Settings(redis_url="rediss://redis:6380/0?ssl_cert_reqs=none")
    assert unchecked.broker_tls == {"ssl_cert_reqs": ssl.CERT_NONE}


@pytest.mark.parametrize("port", [0, 70000])
def test_a_metrics_port_out_of_range_is_refused(port: int) -> None:
    with pytest.raises(ValidationError, match="metrics_port"):
        Settings(metrics_port=port)


def test_a_password_of_any_characters_stays_in_its_place_and_hidden() -> None:
    raw = "a/b#c?d@e:f%g"
    settings = Settings(redis_url="redis://api@redis:6379/0", redis_password=raw,
                        auth_secret="the-auth-secret")
    parts = urlsplit(settings.broker_url)
    assert (parts.hostname, parts.port, parts.path) == ("redis", 6379, "/0")
    assert unquote(parts.password or "") == raw
    assert settings.redis_url_redacted == "redis://api:***@redis:6379/0"
    assert set(settings.secret_values) == {raw, "the-auth-secret"}


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://user:pw@host:6380/2", "redis://user:***@host:6380/2"),
    ("redis://:pw@host/0", "redis://:***@host/0"),
    # Not percent-encoded: hidden whole all the same.
    ("redis://user:a/b#c@d@host:6379/0", "redis://user:***@host:6379/0"),
    ("redis://user@host:6379/0", "redis://user@host:6379/0"),
    ("redis://host:6379/0", "redis://host:6379/0"),
    ("s3://bucket/prefix", "s3://bucket/prefix"),
    ("/var/lib/inferq", "/var/lib/inferq"),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize("formatter", [JsonFormatter, TextFormatter])
def test_log_lines_hide_url_passwords_and_secrets(formatter: type[JsonFormatter]) -> None:
    record = logging.LogRecord("kombu", logging.ERROR, "", 0,
                               "Cannot connect to redis://u:a/b#c@host:1/0: %s", ("refused",),
                               None)
    record.secret = "the token is s3cret-value"
    line = formatter(Redactor(["s3cret-value", "a/b#c"])).format(record)
    assert "redis://u:***@host:1/0" in line
    assert "s3cret-value" not in line and "a/b#c" not in line and "a%2Fb%23c" not in line


@pytest.mark.parametrize("url", ["redis://u:xyzzy/plugh@host:6379/0",
                                 "redis://u:xyzzy#plugh@host/0", "redis://u:xyzzy?plugh@host/0"])
def test_a_password_not_percent_encoded_is_refused_unshown(url: str) -> None:
    with pytest.raises(ValidationError, match="percent-encode") as refused:
        Settings(redis_url=url)
    assert "xyzzy" not in str(refused.value) and "plugh" not in str(refused.value)
