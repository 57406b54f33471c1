"""Batch jobs on an S3-compatible store (SeaweedFS): datasets read and outputs written there."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from job_client import in_process, iris_csv, iris_rows, submit_job, upload, wait_job
from processes import ServiceProcess, service_env, start_worker

from services.common.job_outputs import job_prefix
from services.common.storage import Storage


@pytest.fixture(scope="module")
def stack_env(redis_server, model_store, s3_server) -> dict[str, str]:  # type: ignore[no-untyped-def]
    redis_server.client().flushdb()
    return service_env(redis_server.url, model_store, INFERQ_STORAGE_URL=s3_server.url("jobs"),
                       INFERQ_BATCH_CHUNK_ROWS="200", **s3_server.env)


@pytest.fixture(scope="module")
def bucket(s3_server) -> Iterator[Storage]:  # type: ignore[no-untyped-def]
    with pytest.MonkeyPatch.context() as env:
        for name, value in s3_server.env.items():
            env.setenv(name, value)
        yield Storage.from_url(s3_server.url("jobs"))


@pytest.fixture(scope="module")
def batch_worker(stack_env: dict[str, str], logs: Path) -> Iterator[ServiceProcess]:
    process = start_worker(stack_env, logs, pool="batch", concurrency=2)
    yield process
    process.stop()


@pytest.mark.parametrize("output_format", ["csv", "parquet"])
def test_a_job_reads_and_writes_the_bucket(
    client: httpx.Client, batch_worker: ServiceProcess, bucket: Storage, model_store: Path,
    output_format: str,
) -> None:
    values = iris_rows(530, seed=5)
    lines = iris_csv(values).decode().splitlines()
    lines[101] = lines[101].replace(lines[101].split(",")[1], "?", 1)  # Row 100 rejected.
    dataset = upload(client, ("\n".join(lines) + "\n").encode(), "csv")
    job = submit_job(client, dataset, id_column="customer", output_format=output_format,
                     max_failed_rows=1)
    done = wait_job(client, job["job_id"])
    assert done["status"] == "succeeded", done
    stored = bucket.list(job_prefix(job["job_id"]))
    parts = [k for k in stored if "/parts/" in k]
    assert len(parts) == 3 and [k for k in stored if "/errors/" in k] == [
        f"{job_prefix(job['job_id'])}errors/000000.jsonl"]

    response = client.get(f"/v1/batch-jobs/{job['job_id']}/results")
    assert response.status_code == 200 and len(response.content) == done["output"]["bytes"]
    if output_format == "parquet":
        table = pq.read_table(io.BytesIO(response.content))
        rows, predictions = table["row"].to_pylist(), table["prediction"].to_pylist()
    else:
        read = list(csv.DictReader(io.StringIO(response.text)))
        rows = [int(r["row"]) for r in read]
        predictions = [r["prediction"] for r in read]
    kept = [i for i in range(530) if i != 100]
    assert rows == kept
    assert predictions == in_process(model_store, values[kept])["predictions"]
    errors = client.get(f"/v1/batch-jobs/{job['job_id']}/errors").json()
    assert errors["row"] == 100 and errors["id"] == "c-00100" and errors["code"] == "not_a_number"
