"""Submits of predictions that arrive together, sent to Redis in one script call.

Under load an API process accepts many predictions in one turn of its event loop. Sent
alone, each submit is a command of its own: redis-py packs it, takes a connection from the
pool, writes it and wakes the loop for its reply, and Redis runs one script call for it;
that bookkeeping costs the API and Redis more than the submit's own work. So a request
hands its submit to a ``SubmitBatcher``: the first of a turn schedules a flush for the next
turn, which sends every submit gathered by then in ONE call of ``SUBMIT_MANY_SCRIPT`` and
gives each request its own reply. A submit with no company by then goes alone, a call of
one task, so an idle API waits for nothing.

Each task in a call is written exactly as it would be alone: its rate limits taken first
(``take_limits``), then its record and its message, or nothing when a limit refuses it. A
call that fails (Redis unreachable, or full) fails every request in it, as each would
have failed alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from services.api.rate_limit import TAKE_LIMITS
from services.common.records import SUBMIT_FUNCTION

#: Submits sent in one call at most; more gathered in one turn go in several calls.
MAX_BATCH = 128

# KEYS: each task's record and queue, then its buckets (none without rate limits). ARGV[1]:
# how many tasks; then for each: its buckets' count, ttl, message, record, and with buckets
# their spec and the rows. Returns each task's reply, as a call for it alone would: the
# queue's length, or (with limits) take_limits' reply. Refused under maxmemory before it
# writes anything, as ``records.SUBMIT_SCRIPT`` is.
SUBMIT_MANY_SCRIPT = "#!lua\n" + SUBMIT_FUNCTION + TAKE_LIMITS + """
local replies, k, a = {}, 1, 2
for i = 1, tonumber(ARGV[1]) do
  local buckets, record_key, queue_key = {}, KEYS[k], KEYS[k + 1]
  local count, ttl, message, record = tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  if count == 0 then
    replies[i] = submit_task(record_key, queue_key, ttl, message, record)
    a = a + 4
  else
    for j = 1, count do buckets[j] = KEYS[k + 1 + j] end
    local reply = take_limits(buckets, ARGV[a + 4], ARGV[a + 5])
    if reply[1] == 1 then submit_task(record_key, queue_key, ttl, message, record) end
    replies[i] = reply
    a = a + 6
  end
  k = k + 2 + count
end
return replies
"""


@dataclass(slots=True)
class _Submit:
    keys: Sequence[str]
    args: Sequence[Any]
    buckets: Sequence[str]
    limits: Sequence[Any]
    reply: asyncio.Future[Any]


class SubmitBatcher:
    """Gathers the submits of one turn of the event loop into one script call."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._many = client.register_script(SUBMIT_MANY_SCRIPT)
        self._pending: list[_Submit] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def submit(self, task_keys: Sequence[str], args: Sequence[Any],
                     buckets: Sequence[str] = (), limits: Sequence[Any] = ()) -> Any:
        """Store and queue one task (``records.SUBMIT_SCRIPT``'s keys and arguments), taking
        ``limits`` (spec and rows) from ``buckets`` first when given; its script's reply."""
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._flush)
        submit = _Submit(task_keys, args, buckets, limits, loop.create_future())
        self._pending.append(submit)
        return await submit.reply

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), MAX_BATCH):
            task = asyncio.ensure_future(self._send(pending[start:start + MAX_BATCH]))
            self._sending.add(task)  # Held until done: the loop keeps only weak references.
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Submit]) -> None:
        try:
            replies = await self._send_many(batch)
        except Exception as exc:
            for submit in batch:
                if not submit.reply.done():
                    submit.reply.set_exception(exc)
            return
        for submit, reply in zip(batch, replies, strict=True):
            if not submit.reply.done():  # Its request may be gone (the client left).
                submit.reply.set_result(reply)

    async def _send_many(self, batch: list[_Submit]) -> list[Any]:
        keys: list[str] = []
        args: list[Any] = [len(batch)]
        for submit in batch:
            keys += submit.keys
            keys += submit.buckets
            args.append(len(submit.buckets))
            args += submit.args
            args += submit.limits
        return list(await self._many(keys=keys, args=args))
