"""Coroutines the API runs in the background, from its start to its stop."""

from __future__ import annotations

import asyncio
import contextlib


class Background:
    """Runs ``run`` as a task from ``start`` until ``stop``."""

    name = "inferq-background"

    _task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class Periodic(Background):
    """Runs ``tick`` at once, then every ``interval`` s, until ``stop``."""

    name = "inferq-periodic"

    def __init__(self, interval: float) -> None:
        self._interval = interval

    async def tick(self) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self._interval)
