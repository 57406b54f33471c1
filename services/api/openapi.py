"""What the OpenAPI document says of the routes that read their requests themselves.

``predict`` and ``get_task`` parse their body and query directly (they are the hot path),
so FastAPI cannot infer their request body or their answers; these are written here, once.
"""

from __future__ import annotations

from typing import Any

#: ``{"error": {...}}``, the body of every error.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "description": "snake_case error code"},
                "message": {"type": "string", "description": "what is wrong, for a person"},
                "details": {"type": "object"},
            },
        }
    },
}

TASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["task_id", "status", "model", "version", "submitted_at"],
    "properties": {
        "task_id": {"type": "string"},
        "status": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
        "model": {"type": "string"},
        "version": {"type": "integer"},
        "submitted_at": {"type": "string", "format": "date-time"},
        "started_at": {"type": ["string", "null"], "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
        "result": {
            "type": "object",
            "properties": {"predictions": {"type": "array"},
                           "probabilities": {"type": "array", "items": {"type": "array"}}},
        },
        "error": {"type": "object", "description": "why a failed task failed", "properties": {
            "type": {"type": "string", "description": "the error's class, e.g. WorkerLost"},
            "code": {"type": "string", "description": "for a known cause, a snake_case code: "
                     "non_finite_values when the model overflowed to infinity or NaN"},
            "message": {"type": "string"}}},
        "trace_id": {"type": ["string", "null"]},
    },
}

WAIT_PARAMETER: dict[str, Any] = {
    "name": "wait",
    "in": "query",
    "required": False,
    "description": "seconds to wait for the result (0 to INFERQ_MAX_WAIT_SECONDS, 30 by "
    "default); 0 answers at once",
    "schema": {"type": "number", "minimum": 0, "default": 0},
}

PREDICT_BODY: dict[str, Any] = {
    "required": True,
    "content": {"application/json": {"schema": {
        "type": "object",
        "required": ["instances"],
        "additionalProperties": False,
        "properties": {
            "instances": {
                "type": "array",
                "minItems": 1,
                "description": "rows in the model's feature order, or objects keyed by "
                "feature name (GET /v1/models/{model} lists them)",
                "items": {"oneOf": [{"type": "array", "items": {"type": "number"}},
                                    {"type": "object",
                                     "additionalProperties": {"type": "number"}}]},
            },
            "version": {"type": "integer", "minimum": 1,
                        "description": "a version of the model; the latest by default"},
            "return_probabilities": {"type": "boolean", "default": False},
        },
    }, "example": {"instances": [[5.1, 3.5, 1.4, 0.2]]}}},
}


def _task(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": TASK_SCHEMA}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": ERROR_SCHEMA}}}


PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _task("the task, finished within `wait`"),
    202: _task("the task, queued or running; `Location` is where to follow it"),
    400: _error("a malformed body or parameter"),
    404: _error("no such model or version"),
    413: _error("too many rows or bytes"),
    422: _error("rows that do not fit the model's features; the message names row and column"),
    503: _error("Redis is unreachable (`redis_unavailable`) or full (`redis_full`: its "
                "`maxmemory` is reached and new tasks are refused until workers drain it or "
                "finished records expire); retry after `Retry-After` seconds"),
}

TASK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _task("the task, in a terminal state or as it was when `wait` ran out"),
    400: _error("a malformed `wait`"),
    404: _error("no such task, or its record expired"),
    # Stands in for FastAPI's default 422: nothing in this request can fail its validation.
    "4XX": _error("another client error"),
    503: _error("Redis is unreachable; retry after `Retry-After` seconds"),
}

MODEL_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("a malformed `version`"),
    404: _error("no such model or version"),
    "4XX": _error("another client error"),
}

CANCEL_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _task("the task, cancelled"),
    404: _error("no such task, or its record expired"),
    409: _error("the task is already running or finished"),
    "4XX": _error("another client error"),
    503: _error("Redis is unreachable; retry after `Retry-After` seconds"),
}
