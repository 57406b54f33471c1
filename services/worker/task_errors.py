"""The errors a failed task's record carries, named once for every path that fails a task.

An error is ``{"type", "message"}``, plus a snake_case ``code`` where a client can act on it:
the platform's own failures (below) and the model errors that name one
(``ml.errors.ModelError.code``). Its ``type`` is the class of what failed, never a traceback.
"""

from __future__ import annotations

from enum import StrEnum

from ml.errors import ModelError

#: A task redelivered this many times (its worker died each time) fails instead of running.
MAX_ATTEMPTS = 3


class Code(StrEnum):
    WORKER_LOST = "worker_lost"
    SOFT_TIME_LIMIT = "soft_time_limit_exceeded"
    TIME_LIMIT = "time_limit_exceeded"


def _error(type_: str, code: Code, message: str) -> dict[str, str]:
    return {"type": type_, "code": code.value, "message": message}


def worker_lost() -> dict[str, str]:
    """The error of a task whose workers died running it ``MAX_ATTEMPTS`` times."""
    return _error("WorkerLost", Code.WORKER_LOST,
                  f"the task's worker died {MAX_ATTEMPTS} times while running it")


def soft_time_limit() -> dict[str, str]:
    return _error("SoftTimeLimitExceeded", Code.SOFT_TIME_LIMIT,
                  "the task ran past its soft time limit")


def hard_time_limit(limit: object) -> dict[str, str]:
    """The error of a task whose process was killed past its hard limit (``limit`` s)."""
    return _error("TimeLimitExceeded", Code.TIME_LIMIT,
                  f"the task ran past its hard time limit of {limit} s")


def from_exception(exc: BaseException) -> dict[str, str]:
    """A task failed by ``exc`` (a model error, or bad rows the model refused)."""
    payload = {"type": type(exc).__name__, "message": str(exc) or type(exc).__name__}
    if isinstance(exc, ModelError) and exc.code:
        payload["code"] = exc.code
    return payload
