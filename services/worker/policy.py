"""The batching policy: what to take, when to flush, when to run inline, what a batch costs.

Plain functions of their inputs, applied by ``services.worker.batching``. Costs are in
seconds and unknown costs are infinite: a model not yet timed runs alone, and never inline.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from services.common.pools import PoolSpec
from services.common.settings import Settings

#: A batch whose rows are estimated to take longer is not grown further.
MAX_BATCH_SECONDS = 0.25


@dataclass(frozen=True)
class BatchLimits:
    """How large a batch may grow and how long its first message may wait for others."""

    max_rows: int
    max_wait: float
    #: A lone task estimated to run under this many seconds runs in the main process.
    inline_max: float = 0.0

    @classmethod
    def for_pool(cls, settings: Settings, pool: PoolSpec) -> BatchLimits:
        rows = settings.batch_max_rows or pool.batch_max_rows
        wait_ms = _configured(settings.batch_max_wait_ms, pool.batch_max_wait_ms)
        inline_ms = _configured(settings.inline_max_ms, pool.inline_max_ms)
        return cls(max_rows=max(1, rows), max_wait=max(0.0, wait_ms) / 1000,
                   inline_max=max(0.0, inline_ms) / 1000)


def _configured(setting: float | None, default: float) -> float:
    return default if setting is None else setting


class Waiting(NamedTuple):
    """What the policy knows of a buffered task."""

    rows: int
    #: What its cost per row depends on (the model version it calls).
    cost_key: str
    redelivered: bool = False


@dataclass(frozen=True)
class Costs:
    """What the worker learned of each cost key's calls, in seconds."""

    per_row: Mapping[str, float]
    #: A call for one task alone: one row of a random forest costs far more than a
    #: forty-row batch's share, so a lone call is timed apart.
    lone_call: Mapping[str, float]

    @classmethod
    def unknown(cls) -> Costs:
        return cls({}, {})


class Arrival(Enum):
    """What to do when a message joins the buffer."""

    FLUSH = "flush"
    #: Flush once the burst it came in is buffered: it may run inline if still alone.
    FLUSH_AFTER_DELIVERY = "flush after delivery"
    WAIT_FOR_COMPANY = "wait for company"
    #: Every child is busy: the buffer grows until one is free.
    HOLD = "hold"


def on_arrival(buffered_rows: int, limits: BatchLimits, idle_child: bool,
               inline: bool) -> Arrival:
    """The action when a message arrives; ``inline``: the buffer may run inline."""
    if buffered_rows >= limits.max_rows:
        return Arrival.FLUSH
    if not idle_child:
        return Arrival.HOLD
    if inline:
        return Arrival.FLUSH_AFTER_DELIVERY
    if limits.max_wait <= 0:
        return Arrival.FLUSH
    return Arrival.WAIT_FOR_COMPANY


def may_send(buffered_rows: int, limits: BatchLimits, idle_child: bool) -> bool:
    """Whether a flush sends another batch from a non-empty buffer: a full one always,
    a partial one only to an idle child."""
    return buffered_rows >= limits.max_rows or idle_child


def estimated_seconds(task: Waiting, costs: Costs) -> float:
    return task.rows * costs.per_row.get(task.cost_key, math.inf)


def batch_size(buffer: Sequence[Waiting], limits: BatchLimits, costs: Costs) -> int:
    """How many tasks from the head of ``buffer`` make the next batch: at least one, and
    more while the batch stays within ``max_rows`` and ``MAX_BATCH_SECONDS``."""
    taken, rows, seconds = 0, 0, 0.0
    for task in buffer:
        cost = estimated_seconds(task, costs)
        if taken and (rows + task.rows > limits.max_rows or seconds + cost > MAX_BATCH_SECONDS):
            break
        taken, rows, seconds = taken + 1, rows + task.rows, seconds + cost
    return taken


def runs_inline(buffer: Sequence[Waiting], running: int, limits: BatchLimits,
                costs: Costs) -> bool:
    """Whether the buffer is one task to run in the main process: nothing else running,
    a first delivery, and its call (alone and by rows) estimated under ``inline_max``."""
    if len(buffer) != 1 or running or not limits.inline_max:
        return False
    (task,) = buffer
    cost = max(costs.lone_call.get(task.cost_key, math.inf), estimated_seconds(task, costs))
    return cost <= limits.inline_max and not task.redelivered


def folded(known: float | None, measured: float) -> float:
    """An estimate updated with a new measurement: their mean, or the measurement alone
    when nothing (or only an unbounded call past its time limit) was known."""
    if known is None or math.isinf(known):
        return measured
    return (known + measured) / 2


def learned(costs: Costs, measured: Mapping[str, float], lone: Waiting | None) -> Costs:
    """``costs`` with a batch's seconds per row folded in; ``lone``: the batch's only task."""
    per_row, lone_call = dict(costs.per_row), dict(costs.lone_call)
    for key, seconds in measured.items():
        per_row[key] = folded(per_row.get(key), seconds)
        if lone is not None and lone.cost_key == key:
            lone_call[key] = folded(lone_call.get(key), seconds * lone.rows)
    return Costs(per_row, lone_call)


class Call(NamedTuple):
    """One task's share of a model call: its cost key, when it ran, how many rows."""

    cost_key: str
    started: float
    finished: float
    rows: int


def seconds_per_row(calls: Iterable[Call]) -> dict[str, float]:
    """A batch's cost: per cost key, the wall time from its first call's start to its last
    one's end, over the rows they served."""
    spans: dict[str, tuple[float, float, int]] = {}
    for call in calls:
        start, end, rows = spans.get(call.cost_key, (call.started, call.finished, 0))
        spans[call.cost_key] = (min(start, call.started), max(end, call.finished),
                                rows + call.rows)
    return {key: (end - start) / max(1, rows) for key, (start, end, rows) in spans.items()}
