"""Batch job records: the scripts that count chunks once and end a job, on a real Redis."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import redis

from services.common import job_outputs, jobs, keys
from services.common.records import ALLOW_OOM

JOB = "job-1"


@pytest.fixture
def client(clean_redis: redis.Redis) -> redis.Redis:
    return clean_redis


def submit(client: redis.Redis, chunks: int = 3, max_failed_rows: int = 0,
           output_format: str = "csv") -> None:
    record = jobs.new_job_record(
        model="iris", version=1, dataset_id="d1", queue="batch", input_format="csv",
        output_format=output_format, id_column=None, passthrough=(), columns=["row"],
        return_probabilities=False, max_failed_rows=max_failed_rows, rows=chunks * 10,
        chunks=chunks, chunk_rows=10, trace_id=None, now=1000.0, notify=None)
    messages = [f"m{i}" for i in range(chunks)]
    client.eval(jobs.SUBMIT_SCRIPT, 3, keys.job_key(JOB), keys.JOBS_INDEX, "batch", 60,
                orjson.dumps(record), "1000.0", JOB, *messages)


def start(client: redis.Redis, chunk: int) -> list[Any]:
    return list(client.eval(jobs.START_SCRIPT, 3, keys.job_key(JOB), keys.job_done_key(JOB),
                            keys.job_attempts_key(JOB), "1001.0", chunk))


def done(client: redis.Redis, chunk: int, rows: int = 10, rejected: int = 0) -> list[Any]:
    return list(client.eval(jobs.CHUNK_DONE_SCRIPT, 2, *jobs.job_keys(JOB), chunk, rows,
                            rejected, 100, "1002.0", 60, JOB))


def record(client: redis.Redis) -> dict[str, Any]:
    return jobs.to_public(JOB, client.hgetall(keys.job_key(JOB)))


def test_submit_writes_the_record_and_queues_every_chunk_in_order(client: redis.Redis) -> None:
    submit(client, chunks=3)
    # Workers pop from the right: chunk 0 first.
    assert [client.rpop("batch") for _ in range(3)] == [b"m0", b"m1", b"m2"]
    assert client.zscore(keys.JOBS_INDEX, JOB) == 1000.0
    assert 0 < client.ttl(keys.job_key(JOB)) <= 60
    job = record(client)
    assert job["status"] == "queued" and job["progress"]["chunks_total"] == 3


def test_a_chunk_is_counted_once_and_the_last_one_ends_the_job(client: redis.Redis) -> None:
    submit(client, chunks=2)
    assert start(client, 0) == [b"running", 1, 0]
    assert done(client, 0, rejected=0) == [b"running", 1, 0]
    # Run again after its worker died: started twice, already counted, counted no more.
    assert start(client, 0) == [b"running", 2, 1]
    assert done(client, 0) == [b"running", 0, 0]
    assert record(client)["progress"] == {"rows_total": 20, "rows_done": 10, "rows_failed": 0,
                                          "chunks_total": 2, "chunks_done": 1}
    start(client, 1)
    assert done(client, 1) == [b"succeeded", 1, 1]
    job = record(client)
    assert job["status"] == "succeeded" and job["output"] == {
        "format": "csv", "rows": 20, "bytes": len(job_outputs.csv_header(["row"])) + 200}
    # Ended: a late rerun changes nothing and is told so.
    assert start(client, 1) == [b"succeeded", 0, 0]
    assert done(client, 1) == [b"succeeded", 0, 0]


def test_more_rejected_rows_than_allowed_fail_the_job(client: redis.Redis) -> None:
    submit(client, chunks=2, max_failed_rows=2)
    done(client, 0, rejected=2)
    assert done(client, 1, rejected=1) == [b"failed", 1, 1]
    job = record(client)
    assert job["status"] == "failed" and job["output"]["rows"] is None
    assert job["error"] == {
        "type": "TooManyRejectedRows", "code": "too_many_rejected_rows",
        "message": "3 of 20 rows were rejected, more than max_failed_rows (2); "
                   f"GET /v1/batch-jobs/{JOB}/errors lists them"}


def test_a_parquet_job_is_left_to_assemble_then_finished(client: redis.Redis) -> None:
    submit(client, chunks=1, output_format="parquet")
    assert done(client, 0) == [b"assemble", 1, 0]
    assert record(client)["status"] == "queued"  # Never started in this test.
    assert done(client, 0) == [b"assemble", 0, 0]  # The last chunk rerun: assemble again.
    finish = [jobs.FINISH_SCRIPT, 2, *jobs.job_keys(JOB), "succeeded", "1003.0", 60, JOB, "",
              4096]
    assert list(client.eval(*finish)) == [b"succeeded", 1]
    assert list(client.eval(*finish)) == [b"succeeded", 0]
    assert record(client)["output"]["bytes"] == 4096


def test_a_cancelled_job_counts_nothing_more(client: redis.Redis) -> None:
    submit(client, chunks=3)
    start(client, 0)
    cancel = [jobs.CANCEL_SCRIPT, 2, *jobs.job_keys(JOB), "1003.0", 60, JOB]
    assert list(client.eval(*cancel)) == [1, b"cancelled"]
    assert list(client.eval(*cancel)) == [0, b"cancelled"]
    assert done(client, 0) == [b"cancelled", 0, 0]
    assert start(client, 1) == [b"cancelled", 0, 0]
    assert record(client)["progress"]["chunks_done"] == 0


def test_chunks_end_where_a_reader_can_begin() -> None:
    assert jobs.chunk_bounds(25, 10) == [(0, 10), (10, 20), (20, 25)]
    # A text dataset's index every 10,000 rows: the last entry within the chunk's length.
    text = range(0, 60_000, 10_000)
    assert jobs.chunk_bounds(60_000, 15_000, text) == [
        (0, 10_000), (10_000, 20_000), (20_000, 30_000), (30_000, 40_000), (40_000, 50_000),
        (50_000, 60_000)]
    assert jobs.chunk_bounds(60_000, 25_000, text) == [(0, 20_000), (20_000, 40_000),
                                                       (40_000, 60_000)]
    # Row groups of 100,000 rows and chunks of 50,000: whole groups, never one read twice.
    groups = range(0, 1_000_000, 100_000)
    assert jobs.chunk_bounds(1_000_000, 50_000, groups) == [
        (i, i + 100_000) for i in range(0, 1_000_000, 100_000)]
    # Chunks smaller than the index's step, or one huge group: cut at the chunk's length.
    assert jobs.chunk_bounds(25, 3, range(0, 25, 10_000)) == [
        (i, min(i + 3, 25)) for i in range(0, 25, 3)]
    assert jobs.chunk_bounds(1_000, 100, [0]) == [(i, i + 100) for i in range(0, 1_000, 100)]


def test_only_the_submit_is_refused_by_a_full_redis() -> None:
    assert not jobs.SUBMIT_SCRIPT.startswith(ALLOW_OOM)
    for script in (jobs.START_SCRIPT, jobs.CHUNK_DONE_SCRIPT, jobs.FINISH_SCRIPT,
                   jobs.CANCEL_SCRIPT):
        assert script.startswith(ALLOW_OOM + "\n")
