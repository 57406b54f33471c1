"""What every error becomes on the wire: one mapping from exception to response.

FastAPI's exception handlers and the hot routes (``services.api.hot_routes``) answer
through ``error_response``, so a request gets the same error body whichever path served it.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import OutOfMemoryError, RedisError
from starlette.exceptions import HTTPException

from services.api.errors import (
    ApiError,
    InputError,
    InvalidParameter,
    MethodNotAllowed,
    NotFound,
    RedisFull,
    RedisUnavailable,
    error_body,
)
from services.common.metrics import INPUT_REJECTED

log = logging.getLogger(__name__)


def error_response(exc: Exception) -> JSONResponse:
    """The response for ``exc``: its own status for an ``ApiError``, 503 for Redis, else 500."""
    if isinstance(exc, ApiError):
        return _api_error(exc)
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
        return _api_error(InvalidParameter(
            f"{where or 'request'}: {first.get('msg', 'invalid value')}", {"parameter": where}
        ))
    if isinstance(exc, HTTPException):
        if exc.status_code == 405:
            return _api_error(MethodNotAllowed("this method is not allowed on this path"))
        return _api_error(NotFound("no such endpoint; the API lives under /v1"))
    if isinstance(exc, OutOfMemoryError):
        log.warning("redis is full: task refused", extra={"error": str(exc)})
        return _api_error(RedisFull(
            "Redis is full (its maxmemory is reached): new tasks are refused until workers "
            "drain the queues or finished records expire; retry later"))
    if isinstance(exc, RedisError | ConnectionError):
        log.warning("redis unavailable", extra={"error": repr(exc)})
        return _api_error(RedisUnavailable("Redis is unreachable; retry in a moment"))
    log.exception("unexpected error", exc_info=exc)
    return _api_error(ApiError("an unexpected error occurred; it has been logged"))


def _api_error(error: ApiError) -> JSONResponse:
    if isinstance(error, InputError):
        INPUT_REJECTED.labels(error.code).inc()
    return JSONResponse(error_body(error), status_code=error.status, headers=error.headers())


async def _handle(_: Request, exc: Exception) -> JSONResponse:
    return error_response(exc)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every exception a route raises through ``error_response``."""
    for kind in (ApiError, RequestValidationError, HTTPException, RedisError, ConnectionError,
                 Exception):
        app.add_exception_handler(kind, _handle)
