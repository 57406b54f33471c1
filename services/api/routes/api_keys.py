"""API keys: creating, listing, reading and revoking them (the ``admin`` scope).

An admin key may create keys for any tenant. The key itself is in the answer of its
creation only; every other answer shows its id and attributes, never the key or its hash.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request

from services.api.auth import Authenticator
from services.api.errors import ApiKeyNotFound, ApiKeysUnavailable, InvalidApiKeySpec
from services.api.openapi import (
    API_KEY_CREATE_RESPONSES,
    API_KEY_LIST_RESPONSES,
    API_KEY_RESPONSES,
)
from services.api.schemas import ApiKeyCreated, ApiKeyInfo, ApiKeyList, ApiKeyRequest
from services.common.api_keys import ApiKeyStore, InvalidKeySpec, NoAuthSecret, parse_time

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])


def _store(request: Request) -> ApiKeyStore:
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator.store


def _not_found(key_id: str) -> ApiKeyNotFound:
    return ApiKeyNotFound(f"no API key {key_id!r}; GET /v1/api-keys lists them",
                          {"key_id": key_id})


@router.post("", summary="Create an API key", status_code=201, response_model=ApiKeyCreated,
             responses=API_KEY_CREATE_RESPONSES)
async def create_api_key(request: Request, body: ApiKeyRequest) -> dict[str, Any]:
    """Make a key for a tenant, with its scopes, expiry and limits. The answer holds the
    key itself, shown this once: only its keyed hash is stored."""
    try:
        expires_at = (parse_time(body.expires_at) if body.expires_at is not None
                      else time.time() + body.expires_in_seconds
                      if body.expires_in_seconds is not None else None)
    except ValueError as exc:
        raise InvalidApiKeySpec(f"expires_at: {exc}", {"field": "expires_at"}) from None
    try:
        record, key = await _store(request).create(
            body.tenant, body.scopes, body.name, expires_at, body.requests_per_second,
            body.rows_per_minute)
    except InvalidKeySpec as exc:
        raise InvalidApiKeySpec(f"{exc.field}: {exc}", {"field": exc.field}) from None
    except NoAuthSecret:
        raise ApiKeysUnavailable from None
    return {**record.to_public(), "key": key}


@router.get("", summary="List the API keys", response_model=ApiKeyList,
            responses=API_KEY_LIST_RESPONSES)
async def list_api_keys(request: Request) -> dict[str, Any]:
    """Every key of every tenant, revoked ones included, oldest first."""
    return {"api_keys": [record.to_public() for record in await _store(request).all()]}


@router.get("/{key_id}", summary="Describe an API key", response_model=ApiKeyInfo,
            responses=API_KEY_RESPONSES)
async def get_api_key(request: Request, key_id: str) -> dict[str, Any]:
    """The key's tenant, scopes, expiry, limits, revocation and last use (to a minute)."""
    record = await _store(request).get(key_id)
    if record is None:
        raise _not_found(key_id)
    return record.to_public()


@router.delete("/{key_id}", summary="Revoke an API key", response_model=ApiKeyInfo,
               responses=API_KEY_RESPONSES)
async def revoke_api_key(request: Request, key_id: str) -> dict[str, Any]:
    """Revoke the key: every API process refuses it within a second. Its record stays,
    with `revoked_at`; revoking it again changes nothing."""
    record = await _store(request).revoke(key_id)
    if record is None:
        raise _not_found(key_id)
    return record.to_public()
