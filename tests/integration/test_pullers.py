"""The pullers' scripts on real Redis: who counts as alive, and what goes back where."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as aioredis

from services.common import keys, pullers
from services.worker.broker.transport import TAKE_SCRIPT

QUEUE = "pullers-test"


@pytest.fixture
def store(clean_redis: redis.Redis) -> redis.Redis:
    return clean_redis


def say_alive(store: redis.Redis, consumer: str, seconds: int) -> None:
    store.register_script(pullers.ALIVE_SCRIPT)(keys=[keys.pullers_key(QUEUE)],
                                                args=[consumer, seconds])


def sweep(store: redis.Redis) -> dict[str, int]:
    script = store.register_script(pullers.SWEEP_SCRIPT)
    return pullers.left_behind(script(keys=pullers.sweep_keys(QUEUE),
                                      args=pullers.sweep_args(QUEUE)))


def test_a_dead_consumers_messages_go_back_to_the_head_in_their_order(
    store: redis.Redis,
) -> None:
    store.rpush(QUEUE, "later")
    # BLMOVE pushes at the left: "first" was pulled before "second".
    store.lpush(keys.pulling_key(QUEUE, "dead"), "first", "second")
    store.lpush(keys.pulling_key(QUEUE, "alive"), "busy")
    say_alive(store, "dead", -1)
    say_alive(store, "alive", 30)

    assert sweep(store) == {"dead": 2}
    # Consumers pop at the right: "first" is taken next, then "second".
    assert store.lrange(QUEUE, 0, -1) == [b"later", b"second", b"first"]
    assert not store.exists(keys.pulling_key(QUEUE, "dead"))
    assert store.lrange(keys.pulling_key(QUEUE, "alive"), 0, -1) == [b"busy"]
    assert store.zrange(keys.pullers_key(QUEUE), 0, -1) == [b"alive"]
    assert sweep(store) == {}


def test_a_consumer_counts_alive_for_the_seconds_it_said_by_redis_clock(
    store: redis.Redis,
) -> None:
    say_alive(store, "c", 9)
    (now, _micro) = store.time()
    assert store.zscore(keys.pullers_key(QUEUE), "c") in (now + 9, now + 8)
    assert pullers.alive_for(2) == 6 and pullers.alive_for(0.2) == 3


def test_the_api_sweeps_every_queue_it_is_given(store: redis.Redis, redis_server) -> None:  # type: ignore[no-untyped-def]
    store.lpush(keys.pulling_key(QUEUE, "dead"), "m")
    say_alive(store, "dead", -1)

    async def api_sweep() -> dict[str, int]:
        client = aioredis.Redis(port=redis_server.port)
        try:
            return await pullers.sweep_queues(client, [QUEUE, "other"])
        finally:
            await client.aclose()

    assert asyncio.run(api_sweep()) == {QUEUE: 1, "other": 0}
    assert store.lrange(QUEUE, 0, -1) == [b"m"]


def test_taking_a_pulled_message_sends_back_what_an_earlier_lost_pull_left(
    store: redis.Redis,
) -> None:
    """A BLMOVE whose reply was lost (a dropped socket) left a message in the consumer's
    list; the next take records the message just pulled and puts that one back."""
    pulling = keys.pulling_key(QUEUE, "c")
    store.lpush(pulling, "lost", "pulled")
    take = store.register_script(TAKE_SCRIPT)
    taken = take(keys=[QUEUE, "held", "held-index", pulling],
                 args=[0, 1.0, "tag-1", "value"])
    assert taken == []
    assert store.hgetall("held") == {b"tag-1": b"value"}
    assert not store.exists(pulling)
    assert store.lrange(QUEUE, 0, -1) == [b"lost"]
