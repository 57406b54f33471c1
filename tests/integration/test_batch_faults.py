"""A batch worker killed mid-job: a replacement finishes the job, every row exactly once."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import httpx
import orjson
import pyarrow.parquet as pq
import pytest
from job_client import sleepy_csv, submit_job, upload, wait_drained, wait_job
from processes import service_env, start_worker

from services.cli.processes import ServiceProcess
from services.common import keys
from services.common.storage import Storage

ROWS, CHUNK_ROWS, SECONDS_PER_ROW = 1200, 100, 0.005  # 12 chunks of half a second.


def midway_through_chunk(client: httpx.Client, job_id: str, done: int,
                         worker: ServiceProcess) -> None:
    """Return a quarter second after ``done`` chunks of the job are counted."""
    deadline = time.monotonic() + 30
    while client.get(f"/v1/batch-jobs/{job_id}").json()["progress"]["chunks_done"] < done:
        assert time.monotonic() < deadline, worker.log()[-2000:]
        time.sleep(0.02)
    time.sleep(0.25)


@pytest.fixture(scope="module")
def stack_env(redis_server, model_store, storage: Storage) -> dict[str, str]:  # type: ignore[no-untyped-def]
    redis_server.client().flushdb()
    # A held message comes back 3 s after its worker stopped acknowledging anything.
    return service_env(redis_server.url, model_store, INFERQ_STORAGE_URL=storage.url,
                       INFERQ_BATCH_CHUNK_ROWS=str(CHUNK_ROWS), INFERQ_VISIBILITY_TIMEOUT="3")


@pytest.mark.parametrize("output_format", ["jsonl", "parquet"])
def test_a_worker_killed_mid_job_leaves_a_replacement_to_score_every_row_once(
    client: httpx.Client, redis_server, stack_env: dict[str, str],  # type: ignore[no-untyped-def]
    logs: Path, output_format: str,
) -> None:
    redis_server.client().flushdb()
    dataset = upload(client, sleepy_csv(ROWS, SECONDS_PER_ROW), "csv")
    job_id = submit_job(client, dataset, model="sleepy", output_format=output_format)["job_id"]
    doomed = start_worker(stack_env, logs, pool="batch")
    try:
        midway_through_chunk(client, job_id, 3, doomed)  # Halfway through the next chunk.
    finally:
        doomed.kill()
    at_kill = client.get(f"/v1/batch-jobs/{job_id}").json()
    assert at_kill["status"] == "running" and at_kill["progress"]["chunks_done"] < 12

    replacement = start_worker(stack_env, logs, pool="batch")
    try:
        done = wait_job(client, job_id)
        wait_drained(redis_server.client())
    finally:
        replacement.stop()
    assert done["status"] == "succeeded", done
    assert done["progress"] == {"rows_total": ROWS, "rows_done": ROWS, "rows_failed": 0,
                                "chunks_total": 12, "chunks_done": 12}
    # The chunk the kill interrupted was started twice, and counted once.
    attempts = {int(k): int(v) for k, v in
                redis_server.client().hgetall(keys.job_attempts_key(job_id)).items()}
    assert max(attempts.values()) == 2 and sorted(attempts) == list(range(12))

    response = client.get(f"/v1/batch-jobs/{job_id}/results")
    assert response.status_code == 200
    if output_format == "parquet":
        table = pq.read_table(io.BytesIO(response.content))
        assert done["output"]["bytes"] == len(response.content)
        rows, predictions = table["row"].to_pylist(), table["prediction"].to_pylist()
    else:
        lines = [orjson.loads(line) for line in response.content.splitlines()]
        rows, predictions = [r["row"] for r in lines], [r["prediction"] for r in lines]
    assert rows == list(range(ROWS))
    assert predictions == [SECONDS_PER_ROW + i for i in range(ROWS)]


def test_a_worker_scaled_in_mid_job_finishes_its_chunk_and_hands_back_the_rest(
    client: httpx.Client, redis_server, stack_env: dict[str, str],  # type: ignore[no-untyped-def]
    logs: Path,
) -> None:
    # KEDA scaling in sends SIGTERM: the chunk running finishes, what the worker holds
    # but has not started goes back at once, and no chunk runs twice.
    redis_server.client().flushdb()
    dataset = upload(client, sleepy_csv(ROWS, SECONDS_PER_ROW), "csv")
    job_id = submit_job(client, dataset, model="sleepy", output_format="jsonl")["job_id"]
    stays = start_worker(stack_env, logs, pool="batch")
    leaves = start_worker(stack_env, logs, pool="batch")
    try:
        midway_through_chunk(client, job_id, 3, leaves)  # Both workers halfway through a chunk.
        # As Kubernetes does: SIGTERM to the container's first process, the worker's main.
        asked = time.monotonic()
        os.kill(leaves.pid, signal.SIGTERM)
        assert leaves.process.wait(timeout=15) == 0, leaves.log()[-2000:]
        stopped_after = time.monotonic() - asked
        done = wait_job(client, job_id)
        wait_drained(redis_server.client())
    finally:
        leaves.stop()
        stays.stop()
    # Its running chunk (half a second) finished; it did not wait for more.
    assert stopped_after < 5, stopped_after
    assert done["status"] == "succeeded", done
    assert done["progress"]["chunks_done"] == 12 and done["progress"]["rows_done"] == ROWS
    attempts = {int(k): int(v) for k, v in
                redis_server.client().hgetall(keys.job_attempts_key(job_id)).items()}
    assert sorted(attempts) == list(range(12)) and set(attempts.values()) == {1}
    lines = [orjson.loads(line) for line in client.get(
        f"/v1/batch-jobs/{job_id}/results").content.splitlines()]
    assert [r["row"] for r in lines] == list(range(ROWS))
    assert [r["prediction"] for r in lines] == [SECONDS_PER_ROW + i for i in range(ROWS)]
