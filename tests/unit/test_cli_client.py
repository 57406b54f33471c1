"""The CLI's client of the REST API: the API key it sends."""

from __future__ import annotations

import pytest

from services.cli.client import API_KEY_VARIABLE, api_client


def test_the_key_in_the_environment_is_sent_as_a_bearer_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(API_KEY_VARIABLE, " inferq_0123456789abcdef_secret\n")
    with api_client(5) as client:
        assert client.headers["Authorization"] == "Bearer inferq_0123456789abcdef_secret"


def test_without_a_key_no_authorization_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_VARIABLE, raising=False)
    with api_client(5) as client:
        assert "Authorization" not in client.headers
    monkeypatch.setenv(API_KEY_VARIABLE, "")
    with api_client(5) as client:
        assert "Authorization" not in client.headers
