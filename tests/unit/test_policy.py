"""The batching policy's decisions at their edges (services.worker.policy)."""

from __future__ import annotations

import math

import pytest

from services.common.pools import INFERENCE
from services.common.settings import Settings
from services.worker.policy import (
    MAX_BATCH_SECONDS,
    Arrival,
    BatchLimits,
    Call,
    Costs,
    Waiting,
    batch_size,
    folded,
    learned,
    may_send,
    on_arrival,
    runs_inline,
    seconds_per_row,
)

LIMITS = BatchLimits(max_rows=8, max_wait=0.002, inline_max=0.002)
CHEAP = Costs({"m": 0.0001}, {"m": 0.001})


def tasks(*rows: int, key: str = "m") -> list[Waiting]:
    return [Waiting(n, key) for n in rows]


@pytest.mark.parametrize(("rows", "idle", "inline", "expected"), [
    (8, False, False, Arrival.FLUSH),  # A full buffer goes, busy children or not.
    (9, True, True, Arrival.FLUSH),
    (7, False, True, Arrival.HOLD),
    (1, True, True, Arrival.FLUSH_AFTER_DELIVERY),
    (1, True, False, Arrival.WAIT_FOR_COMPANY),
])
def test_what_an_arrival_does(rows: int, idle: bool, inline: bool, expected: Arrival) -> None:
    assert on_arrival(rows, LIMITS, idle, inline) is expected


def test_without_a_wait_an_arrival_at_an_idle_child_flushes() -> None:
    limits = BatchLimits(max_rows=8, max_wait=0.0)
    assert on_arrival(1, limits, True, False) is Arrival.FLUSH


@pytest.mark.parametrize(("rows", "idle", "expected"), [
    (8, False, True), (7, False, False), (1, True, True),
])
def test_a_flush_sends_full_batches_and_partial_ones_to_idle_children(
        rows: int, idle: bool, expected: bool) -> None:
    assert may_send(rows, LIMITS, idle) is expected


def test_an_empty_buffer_makes_no_batch() -> None:
    assert batch_size([], LIMITS, CHEAP) == 0


def test_tasks_of_a_model_not_yet_timed_run_alone() -> None:
    assert batch_size(tasks(1, 1, 1), LIMITS, Costs.unknown()) == 1


def test_a_batch_fills_up_to_max_rows_exactly() -> None:
    assert batch_size(tasks(4, 4, 1), LIMITS, CHEAP) == 2
    assert batch_size(tasks(4, 3, 2), LIMITS, CHEAP) == 2
    assert batch_size(tasks(1, 1, 1), LIMITS, CHEAP) == 3


def test_a_task_over_every_limit_still_runs_alone() -> None:
    assert batch_size(tasks(20, 1), LIMITS, CHEAP) == 1


def test_a_batch_stops_growing_at_its_estimated_time() -> None:
    half = MAX_BATCH_SECONDS / 2
    costs = Costs({"slow": half}, {})
    assert batch_size(tasks(1, 1, 1, key="slow"), LIMITS, costs) == 2
    costs = Costs({"slow": half + 1e-6}, {})
    assert batch_size(tasks(1, 1, key="slow"), LIMITS, costs) == 1


def test_a_batch_mixes_models_by_their_own_costs() -> None:
    costs = Costs({"cheap": 0.0001, "slow": MAX_BATCH_SECONDS}, {})
    buffer = [Waiting(1, "cheap"), Waiting(1, "slow"), Waiting(1, "cheap")]
    assert batch_size(buffer, LIMITS, costs) == 1


@pytest.mark.parametrize(("buffer", "running", "limits", "costs", "expected"), [
    (tasks(1), 0, LIMITS, CHEAP, True),
    (tasks(1, 1), 0, LIMITS, CHEAP, False),  # Company: a batch for a child.
    (tasks(1), 1, LIMITS, CHEAP, False),  # A child busy: it would wait behind nothing.
    (tasks(1), 0, BatchLimits(8, 0.002, inline_max=0.0), CHEAP, False),
    (tasks(1), 0, LIMITS, Costs.unknown(), False),
    (tasks(1), 0, LIMITS, Costs({"m": 0.0001}, {}), False),  # Lone call not timed.
    (tasks(1), 0, LIMITS, Costs({"m": 0.0001}, {"m": 0.0021}), False),
    (tasks(1), 0, LIMITS, Costs({"m": 0.0001}, {"m": 0.002}), True),  # At the limit.
    (tasks(30), 0, LIMITS, CHEAP, False),  # Its rows add up past the limit.
    ([Waiting(1, "m", redelivered=True)], 0, LIMITS, CHEAP, False),
])
def test_when_a_task_runs_inline(buffer: list[Waiting], running: int, limits: BatchLimits,
                                 costs: Costs, expected: bool) -> None:
    assert runs_inline(buffer, running, limits, costs) is expected


def test_an_estimate_is_the_mean_of_the_known_and_the_measured() -> None:
    assert folded(None, 2.0) == 2.0
    assert folded(math.inf, 2.0) == 2.0  # A call past its time limit is forgotten.
    assert folded(1.0, 2.0) == 1.5
    assert math.isinf(folded(1.0, math.inf))


def test_learning_returns_new_costs_and_times_a_lone_call_by_its_rows() -> None:
    before = Costs({"a": 0.5}, {})
    after = learned(before, {"a": 1.5, "b": 0.2}, Waiting(3, "b"))
    assert before == Costs({"a": 0.5}, {})
    assert after.per_row == {"a": 1.0, "b": 0.2}
    assert after.lone_call == pytest.approx({"b": 0.6})
    assert learned(after, {"a": 1.0}, None).lone_call == after.lone_call


def test_a_batchs_cost_per_row_spans_its_calls() -> None:
    calls = [Call("a", 10.0, 10.5, 2), Call("a", 10.2, 11.0, 2), Call("b", 5.0, 5.0, 0)]
    assert seconds_per_row(calls) == {"a": 0.25, "b": 0.0}


def test_a_setting_of_zero_overrides_the_pools_default() -> None:
    default = BatchLimits.for_pool(Settings(), INFERENCE)
    assert default == BatchLimits(INFERENCE.batch_max_rows, 0.0,
                                  INFERENCE.inline_max_ms / 1000)
    off = BatchLimits.for_pool(Settings(inline_max_ms=0, batch_max_wait_ms=3), INFERENCE)
    assert (off.inline_max, off.max_wait) == (0.0, 0.003)
