"""The API's own metrics: whether Redis answers, how full it is, and the backlog of every
queue."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Gauge
from redis.exceptions import RedisError

from services.api.periodic import Periodic
from services.common import keys
from services.common.metrics import QUEUE_INFLIGHT, QUEUE_WAITING
from services.common.pullers import sweep_queues

log = logging.getLogger(__name__)

# Only the API checks Redis; a worker exporting it would report a permanent 0.
REDIS_UP = Gauge("inferq_redis_up", "1 when the API's last Redis check succeeded.")
# Redis refuses new tasks once its data reaches maxmemory (noeviction): these say how near.
REDIS_MEMORY_USED = Gauge("inferq_redis_memory_used_bytes",
                          "Memory Redis uses for data (INFO memory's used_memory).")
REDIS_MEMORY_MAX = Gauge("inferq_redis_memory_max_bytes",
                         "Redis's maxmemory: new tasks are refused above it; 0 is no limit.")


async def read_backlog(
    client: aioredis.Redis, queues: Iterable[str]
) -> dict[str, tuple[int, int]]:
    """(waiting, in flight) of each of ``queues``, in one round trip."""
    backlog, _ = await read_redis(client, queues)
    return backlog


async def read_redis(
    client: aioredis.Redis, queues: Iterable[str], memory: bool = False
) -> tuple[dict[str, tuple[int, int]], dict[str, Any]]:
    """The backlog of each of ``queues`` and, with ``memory``, ``INFO memory``, in one
    round trip."""
    ordered = list(dict.fromkeys(queues))
    async with client.pipeline(transaction=False) as pipe:
        for queue in ordered:
            pipe.llen(keys.queue_key(queue))
            pipe.hlen(keys.unacked_key(queue))
        if memory:
            pipe.info("memory")
        replies = await pipe.execute()
    backlog = {queue: (replies[2 * i], replies[2 * i + 1]) for i, queue in enumerate(ordered)}
    return backlog, replies[-1] if memory else {}


class BacklogExporter(Periodic):
    """Refreshes the gauges of the pools' queues every ``interval`` s, workers or not, and
    puts back what dead workers were pulling from them (``services.common.pullers``).

    ``queue_kinds``: each queue, to the kind of the pool consuming it (a label of the gauges).
    """

    name = "inferq-backlog-exporter"

    def __init__(
        self, client: aioredis.Redis, queue_kinds: Mapping[str, str], interval: float = 5.0
    ) -> None:
        super().__init__(interval)
        self._client = client
        self._kinds = dict(queue_kinds)

    async def tick(self) -> None:
        await self.refresh()

    async def refresh(self) -> None:
        try:
            backlog, memory = await read_redis(self._client, self._kinds, memory=True)
            # A pool scaled to zero has no worker to put back what a dead one was pulling,
            # and KEDA does not count pulling lists: the API does it.
            await sweep_queues(self._client, self._kinds)
        except (RedisError, OSError):
            REDIS_UP.set(0)
            return
        REDIS_UP.set(1)
        REDIS_MEMORY_USED.set(memory.get("used_memory", 0))
        REDIS_MEMORY_MAX.set(memory.get("maxmemory", 0))
        for queue, (waiting, inflight) in backlog.items():
            QUEUE_WAITING.labels(queue, self._kinds[queue]).set(waiting)
            QUEUE_INFLIGHT.labels(queue, self._kinds[queue]).set(inflight)
