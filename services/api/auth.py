"""Authenticating every request under ``/v1``: the API key, its scopes, the caller.

Each request under ``/v1`` carries ``Authorization: Bearer <key>``. Without one it is a 401
``missing_credentials``; with a key that is malformed, unknown, revoked or expired, a 401
``invalid_api_key``; both with a ``WWW-Authenticate: Bearer`` challenge (RFC 6750). A key
without the scope its route needs (``ROUTE_SCOPES``) is a 403 ``insufficient_scope``. A
path under ``/v1`` that no route takes still needs a valid key, then is a 404. Requests
outside ``/v1`` (probes, metrics, docs) pass untouched.

Verified keys are kept in the process (``KeyCache``): a request with a known key costs one
HMAC and a dict lookup. A change to a key is announced on ``keys.API_KEYS_CHANNEL``, which
the API follows through the task waiter's subscription: the key is dropped from every
process's cache at once, and the whole cache each time the subscription is (re)made.

With ``INFERQ_AUTH=off`` every caller is ``ANONYMOUS``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.error_responses import error_response
from services.api.errors import (
    ApiError,
    InsufficientScope,
    InvalidApiKey,
    Unauthenticated,
)
from services.api.periodic import Background
from services.api.principal import PRINCIPAL
from services.common.api_keys import ApiKey, ApiKeyStore, key_id_of, matches, read_seed_file
from services.common.metrics import AUTH_REFUSED, series
from services.common.principal import ANONYMOUS, SCOPES, Principal
from services.common.settings import Settings

log = logging.getLogger(__name__)

_ANY = frozenset(SCOPES)
_READ_MODELS = frozenset({"predict", "jobs", "train"})

#: The scopes, any of which a route takes, by method and path template: every route under
#: /v1, the hot routes included (a test walks the application's routes against it).
ROUTE_SCOPES: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/v1/models"): _READ_MODELS,
    ("GET", "/v1/models/{model}"): _READ_MODELS,
    ("GET", "/v1/models/{model}/versions"): _READ_MODELS,
    ("PUT", "/v1/models/{model}/aliases/{alias}"): frozenset({"train"}),
    ("DELETE", "/v1/models/{model}/aliases/{alias}"): frozenset({"train"}),
    ("POST", "/v1/models/{model}/predict"): frozenset({"predict"}),
    ("GET", "/v1/tasks/{task_id}"): frozenset({"predict"}),
    ("DELETE", "/v1/tasks/{task_id}"): frozenset({"predict"}),
    ("POST", "/v1/datasets"): frozenset({"jobs", "train"}),
    ("GET", "/v1/datasets"): frozenset({"jobs", "train"}),
    ("GET", "/v1/datasets/{dataset_id}"): frozenset({"jobs", "train"}),
    ("DELETE", "/v1/datasets/{dataset_id}"): frozenset({"jobs", "train"}),
    ("POST", "/v1/models/{model}/batch-jobs"): frozenset({"jobs"}),
    ("GET", "/v1/batch-jobs"): frozenset({"jobs"}),
    ("GET", "/v1/batch-jobs/{job_id}"): frozenset({"jobs"}),
    ("DELETE", "/v1/batch-jobs/{job_id}"): frozenset({"jobs"}),
    ("GET", "/v1/batch-jobs/{job_id}/results"): frozenset({"jobs"}),
    ("GET", "/v1/batch-jobs/{job_id}/errors"): frozenset({"jobs"}),
    ("POST", "/v1/models/{model}/training-jobs"): frozenset({"train"}),
    ("GET", "/v1/training-jobs"): frozenset({"train"}),
    ("GET", "/v1/training-jobs/{job_id}"): frozenset({"train"}),
    ("DELETE", "/v1/training-jobs/{job_id}"): frozenset({"train"}),
    ("GET", "/v1/pools"): _ANY,
    ("POST", "/v1/api-keys"): frozenset({"admin"}),
    ("GET", "/v1/api-keys"): frozenset({"admin"}),
    ("GET", "/v1/api-keys/{key_id}"): frozenset({"admin"}),
    ("DELETE", "/v1/api-keys/{key_id}"): frozenset({"admin"}),
}

#: How long a verified key is trusted without reading its record again, should an
#: announcement be lost while the subscription stays up.
CACHE_SECONDS = 60.0
#: At most one write of a key's ``last_used_at`` per process in this many seconds.
TOUCH_SECONDS = 60.0


def in_v1(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


@dataclass(frozen=True, slots=True)
class RouteTemplate:
    """What the metrics and the trace read of a route (its ``path`` template), for a request
    refused before any route ran."""

    path: str


class ScopeTable:
    """Finds the route template and the scopes of a request from its method and raw path."""

    def __init__(self, table: dict[tuple[str, str], frozenset[str]]) -> None:
        self._by_shape: dict[tuple[str, int],
                             list[tuple[list[str], RouteTemplate, frozenset[str]]]] = {}
        for (method, template), scopes in table.items():
            segments = template.split("/")[1:]
            self._by_shape.setdefault((method, len(segments)), []).append(
                (segments, RouteTemplate(template), scopes))
        for candidates in self._by_shape.values():
            # A literal segment wins over a parameter, as the routers are declared.
            candidates.sort(key=lambda c: -sum(not s.startswith("{") for s in c[0]))

    def match(self, method: str, path: str) -> tuple[RouteTemplate, frozenset[str]] | None:
        """The route and the scopes any of which the request needs; None when no route
        takes it."""
        parts = path.split("/")[1:]
        for segments, route, scopes in self._by_shape.get((method, len(parts)), ()):
            if all(part if segment.startswith("{") else part == segment
                   for part, segment in zip(parts, segments, strict=True)):
                return route, scopes
        return None


@dataclass(slots=True)
class _Cached:
    record: ApiKey
    principal: Principal
    read_at: float


_REFUSALS = {"revoked": "the API key has been revoked", "expired": "the API key has expired"}


def auth_problem(settings: Settings) -> str | None:
    """Why the API cannot start with these settings' authentication; None when it can."""
    if settings.auth == "on" and not (settings.auth_secret
                                      and settings.auth_secret.get_secret_value()):
        return ("authentication is on (INFERQ_AUTH=on) but INFERQ_AUTH_SECRET is not set: set "
                "it to a long random string (e.g. the output of `openssl rand -hex 32`), the "
                "same on every API process; or set INFERQ_AUTH=off to run without API keys "
                "(local use only)")
    return None


class Authenticator:
    """Turns an ``Authorization`` header into the caller, with a cache of verified keys."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.auth == "on"
        secret = settings.auth_secret.get_secret_value() if settings.auth_secret else ""
        self._secret = secret.encode()
        self._store: ApiKeyStore | None = None
        self._cache: dict[str, _Cached] = {}
        # Bumped by every announcement: a record read before one is not cached.
        self._generation = 0
        self._touched: dict[str, float] = {}
        self._touching: set[asyncio.Task[None]] = set()

    def bind(self, client: aioredis.Redis) -> None:
        """Read keys with ``client`` (the API's lifespan calls this)."""
        self._store = ApiKeyStore(client, self._secret or None)

    @property
    def store(self) -> ApiKeyStore:
        if self._store is None:
            raise RuntimeError("the authenticator is not bound to Redis")
        return self._store

    def changed(self, data: bytes) -> None:
        """A key changed (the message is its id): drop it."""
        self._generation += 1
        self._cache.pop(data.decode(errors="replace"), None)

    def subscribed(self) -> None:
        """Announcements may have been missed: forget every key."""
        self._generation += 1
        self._cache.clear()

    async def principal(self, authorization: str | None) -> Principal:
        """The caller with this ``Authorization`` header; ``Unauthenticated`` if none."""
        if not self.enabled:
            return ANONYMOUS
        token = _bearer_token(authorization)
        if token is None:
            raise Unauthenticated("this request needs an API key: send it as "
                                  "'Authorization: Bearer <key>'")
        key_id = key_id_of(token)
        if key_id is None:
            raise InvalidApiKey("the API key is malformed or unknown")
        now = time.time()
        cached = self._cache.get(key_id)
        if cached is None or time.monotonic() - cached.read_at > CACHE_SECONDS:
            cached = await self._read(key_id)
        if cached is None or not matches(self._secret, token, cached.record.hash):
            raise InvalidApiKey("the API key is malformed or unknown")
        refusal = cached.record.refusal(now)
        if refusal is not None:
            raise InvalidApiKey(_REFUSALS[refusal], {"key_id": key_id})
        self._touch(key_id, now)
        return cached.principal

    async def _read(self, key_id: str) -> _Cached | None:
        generation = self._generation
        record = await self.store.get(key_id)
        if record is None:
            return None
        entry = _entry(record)
        if generation == self._generation:
            self._cache[key_id] = entry
        return entry

    def _touch(self, key_id: str, now: float) -> None:
        """Note the key's use in the background, at most once per ``TOUCH_SECONDS``."""
        last = self._touched.get(key_id)
        if last is not None and now - last < TOUCH_SECONDS:
            return
        self._touched[key_id] = now
        task = asyncio.get_running_loop().create_task(self._write_touch(key_id, now))
        self._touching.add(task)
        task.add_done_callback(self._touching.discard)

    async def _write_touch(self, key_id: str, now: float) -> None:
        try:
            await self.store.touch(key_id, now)
        except (RedisError, OSError) as exc:
            log.debug("last use of an API key not recorded",
                      extra={"key_id": key_id, "error": repr(exc)})


class KeySeeder(Background):
    """Stores the keys of the seed file (``settings.auth_seed_file``), trying again every
    ``RETRY_SECONDS`` while Redis is unreachable: a Redis that comes up after the API is
    the readiness check's matter, not the start's. The file is read and checked at once
    (``SeedFileError``: the API does not start)."""

    name = "inferq-key-seeder"
    RETRY_SECONDS = 1.0

    def __init__(self, store: ApiKeyStore, path: Path) -> None:
        self._store = store
        self._path = path
        self._entries = read_seed_file(path)
        self.done = asyncio.Event()

    async def seed_once(self) -> bool:
        """Store every seed; False, and a warning, when Redis is unreachable."""
        try:
            seeded = [await self._store.put(**entry) for entry in self._entries]
        except (RedisError, OSError) as exc:
            log.warning("api keys of the seed file not stored yet: redis unreachable; "
                        "trying again", extra={"file": str(self._path), "error": repr(exc)})
            return False
        log.info("api keys seeded", extra={"file": str(self._path),
                                           "key_ids": [k.key_id for k in seeded]})
        self.done.set()
        return True

    async def run(self) -> None:
        while not self.done.is_set():
            await asyncio.sleep(self.RETRY_SECONDS)
            await self.seed_once()


def _entry(record: ApiKey) -> _Cached:
    return _Cached(record, record.principal(), time.monotonic())


def _bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class AuthMiddleware:
    """Places the caller of each HTTP request under ``/v1`` in its scope
    (``principal.PRINCIPAL``), or answers 401 or 403 and counts the refusal in
    ``inferq_auth_refused_total``."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator | None = None) -> None:
        self.app = app
        self.authenticator = authenticator
        self.scopes = ScopeTable(ROUTE_SCOPES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not in_v1(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.authenticator is None or not self.authenticator.enabled:
            scope[PRINCIPAL] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        matched = self.scopes.match(scope["method"], scope["path"])
        try:
            principal = await self.authenticator.principal(_header(scope, b"authorization"))
            if matched is not None and not matched[1] & principal.scopes:
                required = sorted(matched[1])
                raise InsufficientScope(
                    f"this API key lacks the scope this request needs: {' or '.join(required)}",
                    {"required": required, "scopes": sorted(principal.scopes)})
        except (ApiError, RedisError, OSError) as exc:
            if matched is not None:
                scope["route"] = matched[0]
            if isinstance(exc, ApiError):
                series(AUTH_REFUSED, _reason(exc)).inc()
            await error_response(exc)(scope, receive, send)
            return
        scope[PRINCIPAL] = principal
        await self.app(scope, receive, send)


def _reason(error: ApiError) -> str:
    if isinstance(error, InsufficientScope):
        return "scope"
    if isinstance(error, InvalidApiKey):
        return "invalid"
    return "missing"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None
