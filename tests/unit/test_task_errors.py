"""The errors failed tasks carry (services.worker.task_errors)."""

from __future__ import annotations

from ml.errors import NonFiniteValues
from services.worker import task_errors


def test_the_platforms_own_failures_carry_a_code() -> None:
    assert task_errors.worker_lost() == {
        "type": "WorkerLost", "code": "worker_lost",
        "message": f"the task's worker died {task_errors.MAX_ATTEMPTS} times while running it"}
    assert task_errors.soft_time_limit()["code"] == "soft_time_limit_exceeded"
    assert task_errors.hard_time_limit(60) == {
        "type": "TimeLimitExceeded", "code": "time_limit_exceeded",
        "message": "the task ran past its hard time limit of 60 s"}


def test_a_model_error_with_a_code_keeps_it_and_others_have_none() -> None:
    assert task_errors.from_exception(NonFiniteValues("overflow"))["code"] == "non_finite_values"
    assert task_errors.from_exception(ValueError("x1 must not be negative")) == {
        "type": "ValueError", "message": "x1 must not be negative"}
    assert task_errors.from_exception(KeyError())["message"] == "KeyError"
