"""The API's own metrics: whether Redis answers, and the backlog of every queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis
from prometheus_client import Gauge
from redis.exceptions import RedisError

from services.common import keys
from services.common.metrics import QUEUE_INFLIGHT, QUEUE_WAITING
from services.common.pools import POOLS

log = logging.getLogger(__name__)

# Only the API checks Redis; a worker exporting it would report a permanent 0.
REDIS_UP = Gauge("inferq_redis_up", "1 when the API's last Redis check succeeded.")


async def read_backlog(client: aioredis.Redis) -> dict[str, tuple[int, int]]:
    """(waiting, in flight) of every pool's queue, in one round trip."""
    async with client.pipeline(transaction=False) as pipe:
        for pool in POOLS.values():
            pipe.llen(keys.queue_key(pool.queue))
            pipe.hlen(keys.unacked_key(pool.queue))
        counts = await pipe.execute()
    return {pool.queue: (counts[2 * i], counts[2 * i + 1]) for i, pool in enumerate(POOLS.values())}


class BacklogExporter:
    """Refreshes the queue gauges every ``interval`` s, workers or not."""

    def __init__(self, client: aioredis.Redis, interval: float = 5.0) -> None:
        self._client = client
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="inferq-backlog-exporter")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def refresh(self) -> None:
        try:
            backlog = await read_backlog(self._client)
        except (RedisError, OSError):
            REDIS_UP.set(0)
            return
        REDIS_UP.set(1)
        for queue, (waiting, inflight) in backlog.items():
            QUEUE_WAITING.labels(queue).set(waiting)
            QUEUE_INFLIGHT.labels(queue).set(inflight)

    async def _run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self._interval)
