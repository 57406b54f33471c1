"""Watching where the API processes' task and job events go, as integration tests do."""

from __future__ import annotations

import re
import time

import redis
from processes import ServiceProcess

from services.common import keys
from services.common.records import parse_event, split_events


def channel_of(api: ServiceProcess) -> str:
    """The events channel the API process announced when it started."""
    found = re.search(r"events_channel=(inferq:events:batched:[0-9a-f]{32})\b", api.log())
    assert found, "the API did not log its events channel"
    return found.group(1)


class Events:
    """Every task event published on any API process's channel, as a raw subscriber sees it."""

    def __init__(self, client: redis.Redis, pattern: str) -> None:
        self._pubsub = client.pubsub()
        self._pubsub.psubscribe(pattern)
        confirmed = self._pubsub.get_message(timeout=5)
        assert confirmed is not None and confirmed["type"] == "psubscribe"

    def messages(self, settle: float = 0.5) -> list[tuple[str, bytes]]:
        """(channel, event) of each event, read until ``settle`` s pass without one."""
        found = []
        while (message := self._pubsub.get_message(timeout=settle)) is not None:
            if message["type"] == "pmessage":
                found.append((message["channel"].decode(), message["data"]))
        return found

    def seen(self, settle: float = 0.5) -> dict[str, list[str]]:
        """Task id to the channels its event came on."""
        told: dict[str, list[str]] = {}
        for channel, data in self.messages(settle):
            for event in split_events(data):
                told.setdefault(parse_event(event)[0], []).append(channel)
        return {task_id: sorted(channels) for task_id, channels in told.items()}

    def close(self) -> None:
        self._pubsub.close()


def notify_of(store: redis.Redis, task_id: str, key: str | None = None) -> str | None:
    """The channels the record of ``task_id`` names (``key``: a job's record instead)."""
    value = store.hget(key or keys.task_key(task_id), "notify")
    return value.decode() if value is not None else None


def until_registered(store: redis.Redis, task_id: str, key: str | None = None) -> None:
    """Wait until a waiting GET has named its process's channel in the task's record
    (``key``: a job's record instead)."""
    deadline = time.monotonic() + 5
    while notify_of(store, task_id, key) is None:
        assert time.monotonic() < deadline, "the waiting GET did not register"
        time.sleep(0.02)
