"""Waking requests that wait for a task, from one Redis subscription per API process.

Workers publish a task's id on ``TASK_EVENTS_CHANNEL`` when it reaches a terminal state.
A waiting request registers a future here and sleeps on it: hundreds of waiters cost one
connection and no thread, and nobody polls Redis in a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.common import keys

log = logging.getLogger(__name__)


class TaskWaiter:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._waiting: defaultdict[str, set[asyncio.Future[None]]] = defaultdict(set)
        self._listener: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="inferq-task-waiter")

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    @contextlib.contextmanager
    def watch(self, task_id: str) -> Iterator[asyncio.Future[None]]:
        """A future resolved when ``task_id`` is announced finished; register before checking."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[task_id].add(future)
        try:
            yield future
        finally:
            waiters = self._waiting.get(task_id)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    del self._waiting[task_id]

    def _wake(self, task_id: str) -> None:
        for future in self._waiting.pop(task_id, ()):
            if not future.done():
                future.set_result(None)

    async def _listen(self) -> None:
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.TASK_EVENTS_CHANNEL)
                async for message in pubsub.listen():
                    data = message.get("data")
                    if message.get("type") == "message" and data:
                        self._wake(data.decode() if isinstance(data, bytes) else data)
            except (RedisError, OSError) as exc:
                # Waiters still re-read their task when their timeout ends.
                log.warning("task event subscription lost; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
