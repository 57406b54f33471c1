"""The gauges of the jobs queued or running, as the API's exporter reads them from a real
Redis moved by the jobs' own scripts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import orjson
import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from services.api.metrics import BacklogExporter
from services.common import jobs, keys

#: Where the chunks' messages go: no queue a worker of another test would take them from.
QUEUE = "unconsumed"


@pytest.fixture
def client(redis_server) -> Iterator[redis.Redis]:  # type: ignore[no-untyped-def]
    """The session's Redis, emptied before (the gauges count every job in it) and after
    (nothing is left for the tests that follow)."""
    session: redis.Redis = redis_server.client()
    session.flushdb()
    try:
        yield session
    finally:
        session.flushdb()


def submit(client: redis.Redis, job_id: str, chunks: int) -> None:
    record = jobs.new_job_record(
        model="iris", version=1, dataset_id="d1", queue=QUEUE, input_format="csv",
        output_format="csv", id_column=None, passthrough=(), columns=["row"],
        return_probabilities=False, max_failed_rows=0, rows=chunks * 10, chunks=chunks,
        chunk_rows=10, trace_id=None, now=time.time(), notify=None)
    client.eval(jobs.SUBMIT_SCRIPT, 3, keys.job_key(job_id), keys.JOBS_INDEX, QUEUE, 60,
                orjson.dumps(record), repr(time.time()), job_id,
                *(f"m{i}" for i in range(chunks)))


def start(client: redis.Redis, job_id: str, chunk: int, at: float) -> None:
    client.eval(jobs.START_SCRIPT, 3, keys.job_key(job_id), keys.job_done_key(job_id),
                keys.job_attempts_key(job_id), repr(at), chunk)


def chunk_done(client: redis.Redis, job_id: str, chunk: int, at: float) -> None:
    client.eval(jobs.CHUNK_DONE_SCRIPT, 2, *jobs.job_keys(job_id), chunk, 10, 0, 100,
                repr(at), 60, job_id)


def exported(url: str) -> dict[str, float]:
    """The exporter's job gauges after one refresh."""

    async def refresh() -> None:
        async_client = aioredis.Redis.from_url(url)
        try:
            await BacklogExporter(async_client, {"batch": "batch"}).refresh()
        finally:
            await async_client.aclose()

    asyncio.run(refresh())
    value = REGISTRY.get_sample_value
    return {
        "queued": value("inferq_jobs", {"kind": "batch", "status": "queued"}) or 0.0,
        "running": value("inferq_jobs", {"kind": "batch", "status": "running"}) or 0.0,
        "stalled": value("inferq_job_stalled_seconds", {"kind": "batch"}) or 0.0,
        "redis_up": value("inferq_redis_up") or 0.0,
    }


def test_jobs_by_state_and_the_longest_stall(client: redis.Redis, redis_server) -> None:  # type: ignore[no-untyped-def]
    url = redis_server.url
    submit(client, "a", chunks=2)
    submit(client, "b", chunks=1)
    gauges = exported(url)
    assert gauges["redis_up"] == 1
    assert (gauges["queued"], gauges["running"], gauges["stalled"]) == (2, 0, 0)

    # Started 100 s ago, no chunk counted since: stalled as long.
    now = time.time()
    start(client, "a", 0, now - 100)
    gauges = exported(url)
    assert (gauges["queued"], gauges["running"]) == (1, 1)
    assert 99 <= gauges["stalled"] < 110

    # A chunk counted 10 s ago is the job's last progress.
    chunk_done(client, "a", 0, now - 10)
    assert 9 <= exported(url)["stalled"] < 20

    # The slowest of two running jobs sets the gauge.
    start(client, "b", 0, now - 50)
    gauges = exported(url)
    assert (gauges["queued"], gauges["running"]) == (0, 2)
    assert 49 <= gauges["stalled"] < 60

    # Ended jobs (one cancelled, one succeeded) leave the active set: nothing runs.
    client.eval(jobs.CANCEL_SCRIPT, 2, *jobs.job_keys("b"), repr(now), 60, "b")
    chunk_done(client, "a", 1, now)
    gauges = exported(url)
    assert (gauges["queued"], gauges["running"], gauges["stalled"]) == (0, 0, 0)
    assert client.scard(keys.JOBS_ACTIVE) == 0


def test_a_job_whose_record_expired_leaves_the_active_set(
    client: redis.Redis, redis_server  # type: ignore[no-untyped-def]
) -> None:
    submit(client, "gone", chunks=1)
    submit(client, "kept", chunks=1)
    client.delete(keys.job_key("gone"))
    assert exported(redis_server.url)["queued"] == 1
    assert client.smembers(keys.JOBS_ACTIVE) == {b"kept"}


def test_the_gauges_are_read_when_redis_is_full(
    client: redis.Redis, redis_server  # type: ignore[no-untyped-def]
) -> None:
    submit(client, "a", chunks=1)
    before = client.config_get("maxmemory")["maxmemory"]
    client.config_set("maxmemory", 1)
    try:
        with pytest.raises(redis.exceptions.ResponseError, match="maxmemory"):
            client.set("more", "data")
        gauges = exported(redis_server.url)
    finally:
        client.config_set("maxmemory", before)
    assert (gauges["redis_up"], gauges["queued"]) == (1, 1)
