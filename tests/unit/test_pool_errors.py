"""What a batch's error callback gets from billiard: the exception itself, unwrapped."""

from __future__ import annotations

from billiard.einfo import ExceptionInfo
from billiard.exceptions import TimeLimitExceeded, WorkerLostError

from services.worker.broker.consumer import ChildLost, unwrapped


def reported(exc: BaseException) -> ExceptionInfo:
    """``exc`` as billiard's pool reports it (its hard timeout handler builds the same)."""
    try:
        raise exc
    except BaseException:
        return ExceptionInfo()


def test_a_hard_time_limit_reaches_the_batcher_as_time_limit_exceeded() -> None:
    got = unwrapped(reported(TimeLimitExceeded(4.0)))
    assert isinstance(got, TimeLimitExceeded) and got.args == (4.0,)


def test_a_lost_child_reaches_it_as_child_lost() -> None:
    assert isinstance(unwrapped(reported(WorkerLostError("gone"))), ChildLost)


def test_an_exception_given_bare_is_left_as_it_is() -> None:
    error = ValueError("bare")
    assert unwrapped(error) is error
