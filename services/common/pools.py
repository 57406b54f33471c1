"""Worker pools, their kinds and their queues: the one place that names them."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

#: A pool's or a queue's name: it becomes part of Kubernetes object names and Redis keys.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,39}$")

#: Seconds by which a pool's visibility timeout outlasts its hard time limit by default.
VISIBILITY_MARGIN = 60.0


def visibility_timeout(hard_time_limit: float, configured: float | None = None) -> float:
    """Seconds after which a message held by a worker goes back to its queue: ``configured``
    (INFERQ_VISIBILITY_TIMEOUT) when set, else the hard time limit plus the margin, so a
    live task is never handed to a second worker."""
    return configured or hard_time_limit + VISIBILITY_MARGIN


@dataclass(frozen=True)
class PoolSpec:
    """One worker pool: its name, the queue it consumes, and its kind's defaults.

    The kind (``inference``, ``batch`` or ``training``) fixes the defaults below. By default
    a pool is named after its kind and consumes the queue of its own name; a deployment may
    run more pools of a kind, each on a queue of its own (see ``pool``).
    """

    name: str
    kind: str
    queue: str
    soft_time_limit: float
    hard_time_limit: float
    #: Micro-batching: rows one model call may take, and how long a lone task waits for
    #: company while a child is idle (see services.worker.batching).
    batch_max_rows: int = 1
    batch_max_wait_ms: float = 0.0
    #: A lone task whose model call is estimated under this runs in the worker's main
    #: process when no child is busy: handing it to a child costs more than the call.
    inline_max_ms: float = 0.0
    #: Messages one worker process may hold (reserved or running) per child. Held messages
    #: count as in flight for KEDA but never move to a pod it adds, so this stays small:
    #: for micro-batching, one batch running plus one gathering.
    prefetch_per_child: int = 1
    #: A child whose resident memory is above this many MiB after a task is replaced by a
    #: fresh one (0: never). Batch chunks handle tens of megabytes at a time, and the heap
    #: they leave behind is fragmented: without a bound a child keeps every peak.
    max_memory_per_child_mib: int = 0


INFERENCE = PoolSpec("inference", "inference", "inference", soft_time_limit=50,
                     hard_time_limit=60, batch_max_rows=256, batch_max_wait_ms=0.0,
                     inline_max_ms=2.0, prefetch_per_child=128)
BATCH = PoolSpec("batch", "batch", "batch", soft_time_limit=1740, hard_time_limit=1800,
                 max_memory_per_child_mib=480)
TRAINING = PoolSpec("training", "training", "training", soft_time_limit=10740,
                    hard_time_limit=10800)

#: The kinds, which are also the default pools.
POOLS: dict[str, PoolSpec] = {p.name: p for p in (INFERENCE, BATCH, TRAINING)}


def get_pool(name: str) -> PoolSpec:
    try:
        return POOLS[name]
    except KeyError:
        raise ValueError(f"unknown pool kind {name!r}; known kinds: {', '.join(POOLS)}") from None


def pool(name: str, kind: str | None = None, queue: str | None = None) -> PoolSpec:
    """The pool ``name``: of ``kind`` (default: the kind named ``name``), consuming
    ``queue`` (default: the queue named after the pool)."""
    for label, value in (("pool", name), ("queue", queue)):
        if value is not None and not NAME_PATTERN.match(value):
            raise ValueError(f"{label} name {value!r} must be lowercase letters, digits and "
                             "dashes, starting with a letter, at most 40 characters")
    if kind is None and name not in POOLS:
        raise ValueError(f"pool {name!r} is not a kind ({', '.join(POOLS)}): give its kind")
    return replace(get_pool(kind or name), name=name, queue=queue or name)
