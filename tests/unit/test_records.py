"""Task records: which Redis servers can run inferq's scripts, and what a Redis that does
not answer at start is said to lack."""

from __future__ import annotations

import logging

import pytest

from services.common.records import (
    ALLOW_OOM,
    CANCEL_SCRIPT,
    FINISH_SCRIPT,
    START_SCRIPT,
    SUBMIT_SCRIPT,
    WATCH_SCRIPT,
    unreachable_redis,
    unsupported_redis,
)


@pytest.mark.parametrize("version", ["5.0.7", "6.2.14", "6.0.0"])
def test_redis_before_7_is_refused_by_name(version: str) -> None:
    problem = unsupported_redis({"redis_version": version})
    assert problem is not None
    assert version in problem and "7.0 or later" in problem


@pytest.mark.parametrize("info", [
    {"redis_version": "7.0.15"},
    {"redis_version": "7.4.2"},
    {"redis_version": "7.2.4", "valkey_version": "9.1.2"},  # Valkey reports 7.2.4.
    {"redis_version": "8.0.0"},
    {},  # A server that does not say: let it try.
    {"redis_version": "unknown"},
])
def test_redis_7_and_later_are_accepted(info: dict[str, str]) -> None:
    assert unsupported_redis(info) is None


def test_only_the_submit_is_refused_by_a_full_redis() -> None:
    """Redis runs a script flagged allow-oom when full and refuses one without, before it
    starts: the submit adds work, the others finish, cancel or read accepted work."""
    assert SUBMIT_SCRIPT.startswith("#!lua\n")
    for script in (START_SCRIPT, FINISH_SCRIPT, CANCEL_SCRIPT, WATCH_SCRIPT):
        assert script.startswith(ALLOW_OOM + "\n")


@pytest.mark.parametrize(("error", "level", "says"), [
    (ConnectionError("Error 1 connecting to r:6380. [SSL: CERTIFICATE_VERIFY_FAILED] "
                     "certificate verify failed: unable to get local issuer certificate"),
     logging.ERROR, "set INFERQ_REDIS_CA_FILE"),
    (ConnectionError("WRONGPASS invalid username-password pair or user is disabled."),
     logging.ERROR, "refused the user or password"),
    (ConnectionError("Error 111 connecting to r:6379. Connection refused."),
     logging.WARNING, "does not answer yet"),
])
def test_a_redis_that_does_not_answer_at_start_is_named_for_what_to_check(
    error: Exception, level: int, says: str
) -> None:
    found, problem = unreachable_redis(error)
    assert found == level
    assert says in problem and str(error) in problem
