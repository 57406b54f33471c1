"""The consumers pulling from a queue, and the messages dead ones left in their pulling lists.

A worker's consumer moves each message it takes off a queue into its own pulling list
(``keys.pulling_key``) until the message is recorded as held. A consumer says it is alive
(``ALIVE_SCRIPT``) before its first pull and again every restore interval; what a consumer
that stopped saying so left in its list goes back to the head of the queue
(``SWEEP_SCRIPT``). Its score in ``keys.pullers_key`` is the time until which it counts as
alive, by Redis's clock, so whoever sweeps (a worker, or the API while a pool has no
worker at all) needs neither the consumer's settings nor a clock of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis

from services.common import keys
from services.common.records import ALLOW_OOM

#: A consumer that has not said it is alive for this many restore intervals is dead.
DEAD_AFTER_INTERVALS = 3

# KEYS: the queue's pullers; ARGV: the consumer, the seconds it counts as alive from now.
ALIVE_SCRIPT = ALLOW_OOM + """
local now = redis.call('TIME')
return redis.call('ZADD', KEYS[1], now[1] + tonumber(ARGV[2]), ARGV[1])
"""

# KEYS: the queue's pullers, the queue; ARGV: the queue's pulling lists' name up to the
# consumer. Puts what each consumer no longer alive was pulling back at the head of the
# queue and forgets it; returns the consumers and how many messages each left, flat.
SWEEP_SCRIPT = ALLOW_OOM + """
local now = redis.call('TIME')
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now[1])
local swept = {}
for _, consumer in ipairs(dead) do
  local moved = 0
  while redis.call('LMOVE', ARGV[1] .. consumer, KEYS[2], 'LEFT', 'RIGHT') do
    moved = moved + 1
  end
  redis.call('ZREM', KEYS[1], consumer)
  swept[#swept + 1] = consumer
  swept[#swept + 1] = moved
end
return swept
"""


def alive_for(restore_interval: float) -> int:
    """Seconds a consumer that says it is alive every ``restore_interval`` counts as alive."""
    return int(DEAD_AFTER_INTERVALS * max(1.0, restore_interval))


def sweep_keys(queue: str) -> list[str]:
    return [keys.pullers_key(queue), keys.queue_key(queue)]


def sweep_args(queue: str) -> list[str]:
    return [keys.pulling_key(queue, "")]


def left_behind(reply: Iterable[Any]) -> dict[str, int]:
    """The consumers a sweep found dead, with the messages each had left."""
    flat = list(reply or ())
    return {(c.decode() if isinstance(c, bytes) else str(c)): int(n)
            for c, n in zip(flat[::2], flat[1::2], strict=True)}


async def sweep_queues(client: aioredis.Redis, queues: Iterable[str]) -> dict[str, int]:
    """Put back, for each of ``queues``, what its dead consumers were pulling; the messages
    put back by queue. One round trip for all of them."""
    ordered = list(dict.fromkeys(queues))
    script = client.register_script(SWEEP_SCRIPT)
    async with client.pipeline(transaction=False) as pipe:
        for queue in ordered:
            await script(keys=sweep_keys(queue), args=sweep_args(queue), client=pipe)
        replies = await pipe.execute()
    return {queue: sum(left_behind(reply).values())
            for queue, reply in zip(ordered, replies, strict=True)}
