"""The API's metrics: HTTP requests by route template, and the backlog of every queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

import redis.asyncio as aioredis
from prometheus_client import Gauge
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.tracing import request_trace
from services.common import keys
from services.common.metrics import (
    HTTP_REQUEST_SECONDS,
    HTTP_REQUESTS,
    QUEUE_INFLIGHT,
    QUEUE_WAITING,
)

log = logging.getLogger(__name__)

# Only the API checks Redis; a worker exporting it would report a permanent 0.
REDIS_UP = Gauge("inferq_redis_up", "1 when the API's last Redis check succeeded.")


class HttpMetricsMiddleware:
    """Counts and times every request under its route template, not its raw path.

    A sampled request's latency carries its trace id as an exemplar, which Grafana turns
    into a link from the latency panel to the trace.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            HTTP_REQUESTS.labels(method, template, str(status)).inc()
            traced = request_trace(scope)
            HTTP_REQUEST_SECONDS.labels(method, template).observe(
                time.perf_counter() - started,
                {"trace_id": traced.trace_id} if traced and traced.sampled else None,
            )


async def read_backlog(
    client: aioredis.Redis, queues: Iterable[str]
) -> dict[str, tuple[int, int]]:
    """(waiting, in flight) of each of ``queues``, in one round trip."""
    ordered = list(dict.fromkeys(queues))
    async with client.pipeline(transaction=False) as pipe:
        for queue in ordered:
            pipe.llen(keys.queue_key(queue))
            pipe.hlen(keys.unacked_key(queue))
        counts = await pipe.execute()
    return {queue: (counts[2 * i], counts[2 * i + 1]) for i, queue in enumerate(ordered)}


class BacklogExporter:
    """Refreshes the gauges of the pools' queues every ``interval`` s, workers or not."""

    def __init__(
        self, client: aioredis.Redis, queues: Iterable[str], interval: float = 5.0
    ) -> None:
        self._client = client
        self._queues = list(queues)
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
            backlog = await read_backlog(self._client, self._queues)
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
