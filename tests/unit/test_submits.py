"""Submits gathered into one script call, on a real Redis: each task written and queued as
alone, each request its own reply, one command for a burst, limits per task."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from services.api.submits import MAX_BATCH, SubmitBatcher
from services.common import keys
from services.common.records import submit_args

QUEUE = "inference-test"


def task(n: int) -> tuple[list[str], list[Any]]:
    record = {"status": "queued", "model": "m", "n": str(n)}
    return ([keys.task_key(f"t{n}"), keys.queue_key(QUEUE)],
            submit_args(60, f"message-{n}".encode(), record))


def evalsha_calls(client: redis.Redis) -> int:
    """EVALSHA calls that ran (a first one refused with NOSCRIPT, then loaded, is not)."""
    stats: Any = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)) - int(stats.get("failed_calls", 0)) - int(
        stats.get("rejected_calls", 0))


def run(redis_server: Any, body: Any) -> Any:
    async def main() -> Any:
        client = aioredis.Redis(port=redis_server.port)
        try:
            return await body(SubmitBatcher(client))
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_a_burst_is_one_call_and_every_task_is_stored_and_queued_in_order(
        redis_server: Any, clean_redis: redis.Redis) -> None:
    count = 50
    clean_redis.config_resetstat()

    async def body(batcher: SubmitBatcher) -> list[Any]:
        return list(await asyncio.gather(*(batcher.submit(*task(n)) for n in range(count))))

    replies = run(redis_server, body)
    assert evalsha_calls(clean_redis) == 1
    # Each request has the queue's length after its own push, as alone.
    assert replies == list(range(1, count + 1))
    queued = clean_redis.lrange(keys.queue_key(QUEUE), 0, -1)
    assert queued[::-1] == [f"message-{n}".encode() for n in range(count)]
    for n in range(count):
        assert clean_redis.hgetall(keys.task_key(f"t{n}"))[b"n"] == str(n).encode()
        assert 0 < clean_redis.ttl(keys.task_key(f"t{n}")) <= 60


def test_more_than_a_call_holds_go_in_several_calls(redis_server: Any,
                                                    clean_redis: redis.Redis) -> None:
    count = MAX_BATCH + 3
    clean_redis.config_resetstat()

    async def body(batcher: SubmitBatcher) -> list[Any]:
        return list(await asyncio.gather(*(batcher.submit(*task(n)) for n in range(count))))

    run(redis_server, body)
    assert evalsha_calls(clean_redis) == 2
    assert clean_redis.llen(keys.queue_key(QUEUE)) == count


def test_submits_of_different_turns_go_alone(redis_server: Any,
                                             clean_redis: redis.Redis) -> None:
    async def body(batcher: SubmitBatcher) -> list[Any]:
        return [await batcher.submit(*task(n)) for n in range(3)]

    assert run(redis_server, body) == [1, 2, 3]


def test_each_task_takes_its_own_limits_and_a_refused_one_is_not_queued(
        redis_server: Any, clean_redis: redis.Redis) -> None:
    """One bucket lets 2 requests through in its window: of four submits in one call,
    charged to it in turn, the first two pass and are queued; the untaxed one passes."""
    bucket = [keys.PREFIX + "ratelimit:test:requests"]
    spec = b"2.0 60 1"

    async def body(batcher: SubmitBatcher) -> list[Any]:
        return list(await asyncio.gather(
            batcher.submit(*task(0), bucket, [spec, 1]),
            batcher.submit(*task(1), bucket, [spec, 1]),
            batcher.submit(*task(2)),
            batcher.submit(*task(3), bucket, [spec, 1]),
        ))

    replies = run(redis_server, body)
    assert [r[0] for r in (replies[0], replies[1], replies[3])] == [1, 1, 0]
    assert replies[3][1] > 0  # Microseconds until it would pass.
    assert replies[2] == 3  # Queued third, after the two allowed.
    queued = set(clean_redis.lrange(keys.queue_key(QUEUE), 0, -1))
    assert queued == {b"message-0", b"message-1", b"message-2"}
    assert not clean_redis.exists(keys.task_key("t3"))


def test_a_full_redis_refuses_every_submit_of_the_call(redis_server: Any,
                                                       clean_redis: redis.Redis) -> None:
    clean_redis.set(keys.PREFIX + "ballast", b"x" * 2_000_000)
    clean_redis.config_set("maxmemory", clean_redis.info("memory")["used_memory"] - 1)

    async def body(batcher: SubmitBatcher) -> list[Any]:
        return list(await asyncio.gather(*(batcher.submit(*task(n)) for n in range(5)),
                                         return_exceptions=True))

    try:
        replies = run(redis_server, body)
    finally:
        clean_redis.config_set("maxmemory", 0)
    assert all(isinstance(r, redis.exceptions.OutOfMemoryError) for r in replies), replies
    assert clean_redis.llen(keys.queue_key(QUEUE)) == 0


def test_an_unreachable_redis_fails_each_request(redis_server: Any) -> None:
    async def main() -> list[Any]:
        client = aioredis.Redis(port=1, socket_connect_timeout=1)
        try:
            batcher = SubmitBatcher(client)
            return list(await asyncio.gather(*(batcher.submit(*task(n)) for n in range(4)),
                                             return_exceptions=True))
        finally:
            await client.aclose()

    replies = asyncio.run(main())
    assert all(isinstance(r, redis.exceptions.ConnectionError) for r in replies), replies


def test_a_request_that_left_does_not_break_the_others(redis_server: Any,
                                                       clean_redis: redis.Redis) -> None:
    """Its submit was already gathered: it is still sent (as a request that left after its
    command went out), and the others get their replies."""
    async def body(batcher: SubmitBatcher) -> list[Any]:
        leaving = asyncio.ensure_future(batcher.submit(*task(0)))
        staying = [asyncio.ensure_future(batcher.submit(*task(n))) for n in (1, 2)]
        await asyncio.sleep(0)
        leaving.cancel()
        return list(await asyncio.gather(*staying))

    assert run(redis_server, body) == [2, 3]
    assert clean_redis.llen(keys.queue_key(QUEUE)) == 3


@pytest.mark.parametrize("count", [1, 2])
def test_the_record_is_the_one_given(redis_server: Any, clean_redis: redis.Redis,
                                     count: int) -> None:
    async def body(batcher: SubmitBatcher) -> list[Any]:
        return list(await asyncio.gather(*(batcher.submit(*task(n)) for n in range(count))))

    run(redis_server, body)
    assert clean_redis.hgetall(keys.task_key("t0")) == {
        b"status": b"queued", b"model": b"m", b"n": b"0"}
