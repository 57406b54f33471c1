"""Worker pools and their queues: the one place that names them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PoolSpec:
    """Defaults of one worker pool; each pool consumes the Celery queue of its own name."""

    name: str
    soft_time_limit: float
    hard_time_limit: float
    #: Micro-batching: rows one model call may take, and how long a lone task waits for
    #: company while a child is idle (see services.worker.batching).
    batch_max_rows: int = 1
    batch_max_wait_ms: float = 0.0
    #: Messages one worker process may hold (reserved or running) per child. Held messages
    #: count as in flight for KEDA but never move to a pod it adds, so this stays small:
    #: for micro-batching, one batch running plus one gathering.
    prefetch_per_child: int = 1

    @property
    def queue(self) -> str:
        return self.name

    @property
    def default_visibility_timeout(self) -> float:
        # Above the hard limit, so a live task is never handed to a second worker.
        return self.hard_time_limit + 60


INFERENCE = PoolSpec("inference", soft_time_limit=50, hard_time_limit=60,
                     batch_max_rows=256, batch_max_wait_ms=0.0, prefetch_per_child=128)
BATCH = PoolSpec("batch", soft_time_limit=1740, hard_time_limit=1800)
TRAINING = PoolSpec("training", soft_time_limit=10740, hard_time_limit=10800)

POOLS: dict[str, PoolSpec] = {p.name: p for p in (INFERENCE, BATCH, TRAINING)}


def get_pool(name: str) -> PoolSpec:
    try:
        return POOLS[name]
    except KeyError:
        raise ValueError(f"unknown pool {name!r}; known pools: {', '.join(POOLS)}") from None
