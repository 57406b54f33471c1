"""Redis key names, defined once for the API, the workers, the chart and the tests.

A queue is one Redis list named after the queue. What a pool's workers hold (reserved or
running) sits in that pool's own ``unacked`` hash, so the pool's backlog is
``LLEN <queue> + HLEN unacked_key(<queue>)``: exactly what KEDA's Redis scaler adds up.
"""

from __future__ import annotations

PREFIX = "inferq:"

#: Channel on which workers and the API announce that a task reached a terminal state.
TASK_EVENTS_CHANNEL = PREFIX + "events:task-finished"


def task_key(task_id: str) -> str:
    return f"{PREFIX}task:{task_id}"


def queue_key(queue: str) -> str:
    return queue


def unacked_key(queue: str) -> str:
    return f"{PREFIX}unacked:{queue}"


def unacked_index_key(queue: str) -> str:
    return f"{PREFIX}unacked_index:{queue}"


def unacked_mutex_key(queue: str) -> str:
    return f"{PREFIX}unacked_mutex:{queue}"
