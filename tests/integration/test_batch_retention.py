"""Batch jobs are kept for INFERQ_JOB_RETENTION_SECONDS: records expire, outputs are swept."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from job_client import iris_csv, iris_rows, submit_job, upload, wait_job
from processes import ServiceProcess, service_env, start_worker

from services.common import keys
from services.common.job_outputs import job_prefix
from services.common.storage import Storage

RETENTION = 3


@pytest.fixture(scope="module")
def stack_env(redis_server, model_store, storage: Storage) -> dict[str, str]:  # type: ignore[no-untyped-def]
    redis_server.client().flushdb()
    return service_env(redis_server.url, model_store, INFERQ_STORAGE_URL=storage.url,
                       INFERQ_BATCH_CHUNK_ROWS="100",
                       INFERQ_JOB_RETENTION_SECONDS=str(RETENTION),
                       INFERQ_JOB_SWEEP_SECONDS="0.5")


@pytest.fixture(scope="module")
def batch_worker(stack_env: dict[str, str], logs: Path) -> Iterator[ServiceProcess]:
    process = start_worker(stack_env, logs, pool="batch")
    yield process
    process.stop()


def test_an_expired_job_is_gone_with_its_outputs(
    client: httpx.Client, batch_worker: ServiceProcess, redis_server, storage: Storage,  # type: ignore[no-untyped-def]
) -> None:
    redis = redis_server.client()
    dataset = upload(client, iris_csv(iris_rows(250)), "csv")
    job_id = submit_job(client, dataset)["job_id"]
    done = wait_job(client, job_id)
    assert done["status"] == "succeeded"
    ended = time.monotonic()
    assert len(storage.list(job_prefix(job_id))) == 3  # One part a chunk.
    assert 0 < redis.ttl(keys.job_key(job_id)) <= RETENTION
    assert 0 < redis.ttl(keys.job_done_key(job_id)) <= RETENTION
    assert client.get(f"/v1/batch-jobs/{job_id}/results").status_code == 200

    deadline = ended + RETENTION + 5
    while storage.list(job_prefix(job_id)) or redis.zscore(keys.JOBS_INDEX, job_id):
        assert time.monotonic() < deadline, "the expired job's outputs were not swept"
        time.sleep(0.1)
    assert time.monotonic() - ended >= RETENTION - 1
    assert client.get(f"/v1/batch-jobs/{job_id}").status_code == 404
    assert client.get(f"/v1/batch-jobs/{job_id}/results").status_code == 404
    assert not redis.keys(f"{keys.job_key(job_id)}*")
    # The dataset is no job output: it stays.
    assert client.get(f"/v1/datasets/{dataset}").status_code == 200
