"""Waking requests that wait for a task, from one Redis subscription per API process.

Each API process subscribes to a channel of its own, ``keys.events_channel`` of an id made
when its waiter is built. A request that waits for a task registers a future here, then
names this process's channel in the task's record (the submit, or ``WATCH_SCRIPT`` for a
``GET ?wait=``); the script that ends the task publishes its id on the channels the record
names, with its record when the result is small, the ends of a worker's whole batch in one
message per channel. So a process hears only of the tasks its
own requests wait for. Hundreds of waiters cost one connection and no thread, and nobody
polls Redis in a loop. The future's value is the record the event carried (None without
one), so a woken request usually answers without reading Redis again.

The same subscription carries other channels whose messages the API follows (``follow``):
the announcements of changed models.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.common import keys
from services.common.records import event_record, parse_event, split_events

log = logging.getLogger(__name__)

#: Resolved with the finished task's record, or None when the event did not carry it or
#: the subscription was (re)made and the end may have been missed: then read it again.
Waiter = asyncio.Future[dict[str, str] | None]


async def woken(future: Waiter, timeout: float) -> bool:
    """Sleep until ``future`` resolves or ``timeout`` passes; True when it resolved."""
    done, _ = await asyncio.wait({future}, timeout=timeout)
    return bool(done)


class TaskWaiter:
    def __init__(self, client: aioredis.Redis, process_id: str | None = None) -> None:
        self._client = client
        #: This process's channel: the one a task's record names to have its end told here.
        self.channel = keys.events_channel(process_id or uuid.uuid4().hex)
        self._channel_bytes = self.channel.encode()
        self._waiting: defaultdict[str, set[Waiter]] = defaultdict(set)
        self._listener: asyncio.Task[None] | None = None
        self._followed: dict[bytes, tuple[Callable[[bytes], None], Callable[[], None]]] = {}

    def follow(self, channel: str, on_message: Callable[[bytes], None],
               on_subscribed: Callable[[], None]) -> None:
        """Hand each message of ``channel`` to ``on_message``, and call ``on_subscribed``
        each time the subscription to it is (re)made: messages sent before may be lost.
        Both run on the listener's loop and must not block. Call before ``start``."""
        self._followed[channel.encode()] = (on_message, on_subscribed)

    def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="inferq-task-waiter")

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    @contextlib.contextmanager
    def watch(self, task_id: str) -> Iterator[Waiter]:
        """A future resolved when ``task_id`` is announced finished; register before checking."""
        future: Waiter = asyncio.get_running_loop().create_future()
        self._waiting[task_id].add(future)
        try:
            yield future
        finally:
            waiters = self._waiting.get(task_id)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    del self._waiting[task_id]

    def _wake(self, data: bytes | str) -> None:
        task_id, raw = parse_event(data)
        waiters = self._waiting.pop(task_id, None)
        if not waiters:
            return  # Its request gave up (its wait ran out) before the task ended.
        record = event_record(raw)
        for future in waiters:
            if not future.done():
                future.set_result(record)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind, channel, data = message.get("type"), message.get("channel"), message.get("data")
        followed = self._followed.get(channel) if isinstance(channel, bytes) else None
        if kind == "message" and data:
            if followed is not None:
                followed[0](data)
            else:
                for event in split_events(data):
                    self._wake(event)
        elif kind == "subscribe":
            if followed is not None:
                followed[1]()
            elif channel == self._channel_bytes:
                self._wake_everyone()

    def _wake_everyone(self) -> None:
        """After a (re)subscription: an end announced while it was down was missed, so every
        waiter reads its record again."""
        waiting, self._waiting = self._waiting, defaultdict(set)
        for futures in waiting.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)

    async def _listen(self) -> None:
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self.channel, *self._followed)
                async for message in pubsub.listen():
                    self._dispatch(message)
            except (RedisError, OSError) as exc:
                # Waiters still re-read their task when their timeout ends.
                log.warning("task event subscription lost; retrying",
                            extra={"channel": self.channel, "error": repr(exc)})
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
