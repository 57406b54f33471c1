"""What every error becomes on the wire: one mapping from exception to response.

FastAPI's exception handlers and the hot routes (``services.api.hot_routes``) answer
through ``error_response``, so a request gets the same error body whichever path served it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import OutOfMemoryError, RedisError
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from services.api.errors import (
    ApiError,
    InputError,
    InvalidParameter,
    MethodNotAllowed,
    NotFound,
    RedisFull,
    RedisUnavailable,
    StorageUnavailable,
    error_body,
)
from services.common.metrics import INPUT_REJECTED
from services.common.storage import StorageError

log = logging.getLogger(__name__)


def error_response(exc: Exception) -> JSONResponse:
    """The response for ``exc``: its own status for an ``ApiError``, 503 for Redis or the
    object store, else 500."""
    if isinstance(exc, ApiError):
        return _api_error(exc)
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
        if where == "body" and isinstance(exc.body, bytes | str):
            # FastAPI parses a body as JSON only when it is declared so: `curl -d` says
            # it sends a form, and the body reaches validation unparsed.
            return _api_error(InvalidParameter(
                "the request body must be a JSON object sent with "
                "Content-Type: application/json", {"parameter": "body"}))
        return _api_error(InvalidParameter(
            f"{where or 'request'}: {first.get('msg', 'invalid value')}", {"parameter": where}
        ))
    if isinstance(exc, HTTPException):
        if exc.status_code == 405:
            allowed = sorted((exc.headers or {}).get("Allow", "").replace(",", " ").split())
            return _api_error(MethodNotAllowed(
                f"this method is not allowed on this path, which takes {', '.join(allowed)}",
                {"allowed": allowed}))
        return _api_error(NotFound("no such endpoint; the API lives under /v1"))
    if isinstance(exc, OutOfMemoryError):
        log.warning("redis is full: task refused", extra={"error": str(exc)})
        return _api_error(RedisFull(
            "Redis is full (its maxmemory is reached): new tasks are refused until workers "
            "drain the queues or finished records expire; retry later"))
    if isinstance(exc, RedisError | ConnectionError):
        log.warning("redis unavailable", extra={"error": repr(exc)})
        return _api_error(RedisUnavailable("Redis is unreachable; retry in a moment"))
    if isinstance(exc, StorageError):
        log.warning("storage unavailable", extra={"error": str(exc)})
        return _api_error(StorageUnavailable(
            "the object store (models, datasets) is unreachable or refused access; retry "
            "in a moment", {"reason": str(exc)}))
    log.exception("unexpected error", exc_info=exc)
    return _api_error(ApiError("an unexpected error occurred; it has been logged"))


def _api_error(error: ApiError) -> JSONResponse:
    if isinstance(error, InputError):
        INPUT_REJECTED.labels(error.code).inc()
    return JSONResponse(error_body(error), status_code=error.status, headers=error.headers())


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The methods of every route in ``routes`` whose path is the request's.

    Starlette's 405 names those of the first such route only, and a path can have several
    (GET and DELETE of ``/v1/tasks/{task_id}`` are two routes).
    """
    methods: set[str] = set()
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.PARTIAL:
            methods.update(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI, routes: Sequence[BaseRoute]) -> None:
    """Answer every exception a route raises through ``error_response``; a 405's ``Allow``
    names the methods of ``routes`` (the routers' own, as declared) on its path."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, HTTPException) and exc.status_code == 405:
            exc = HTTPException(405, headers={"Allow": allowed_methods(routes, request.scope)})
        return error_response(exc)

    for kind in (ApiError, RequestValidationError, HTTPException, RedisError, ConnectionError,
                 StorageError, Exception):
        app.add_exception_handler(kind, handle)
