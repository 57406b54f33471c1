"""A batch job's metrics and its one trace, from the submit to every chunk's model call."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from job_client import iris_csv, iris_rows, submit_job, upload, wait_job
from metrics_text import sample
from otlp_receiver import OtlpReceiver
from processes import metrics_worker, service_env

from services.common.storage import Storage

TRACE_ID = "5cf92f3577b34da6a3ce929d0e0e4737"
CLIENT_SPAN = "10f067aa0ba902b8"


@pytest.fixture(scope="module")
def stack_env(redis_server, model_store, storage: Storage,  # type: ignore[no-untyped-def]
              receiver: OtlpReceiver) -> dict[str, str]:
    redis_server.client().flushdb()
    return service_env(redis_server.url, model_store, INFERQ_STORAGE_URL=storage.url,
                       INFERQ_BATCH_CHUNK_ROWS="100",
                       OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.port}",
                       OTEL_BSP_SCHEDULE_DELAY="100")


@pytest.fixture(scope="module")
def metrics_url(stack_env: dict[str, str], logs: Path) -> Iterator[str]:
    yield from metrics_worker(stack_env, logs, "batch", 2)


def test_a_job_is_one_trace_from_the_submit_to_each_chunk(
    client: httpx.Client, metrics_url: str, receiver: OtlpReceiver,
) -> None:
    dataset = upload(client, iris_csv(iris_rows(250)), "csv")
    response = client.post(
        "/v1/models/iris/batch-jobs", json={"dataset_id": dataset},
        headers={"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"})
    assert response.status_code == 202
    job = response.json()
    assert job["trace_id"] == TRACE_ID
    assert wait_job(client, job["job_id"])["status"] == "succeeded"
    deadline = time.monotonic() + 15
    while len(receiver.trace(TRACE_ID)) < 8:  # Server, enqueue, three chunks and their calls.
        assert time.monotonic() < deadline, receiver.trace(TRACE_ID)
        time.sleep(0.1)
    spans = receiver.trace(TRACE_ID)
    (server,) = [s for s in spans if s["name"] == "POST /v1/models/{model}/batch-jobs"]
    (enqueue,) = [s for s in spans if s["name"] == "inferq.enqueue"]
    chunks = [s for s in spans if s["name"] == "inferq.batch_chunk"]
    calls = [s for s in spans if s["name"] == "inferq.model.predict"]
    assert server["parent"] == CLIENT_SPAN
    assert enqueue["parent"] == server["span_id"] and enqueue["kind"] == 4  # Producer.
    assert len(chunks) == 3 and all(
        c["parent"] == enqueue["span_id"] and c["kind"] == 5 and c["service"] == "inferq-worker"
        for c in chunks)
    assert sorted(c["parent"] for c in calls) == sorted(c["span_id"] for c in chunks)
    assert len(spans) == 8


def test_jobs_and_their_rows_are_counted(client: httpx.Client, metrics_url: str) -> None:
    lines = iris_csv(iris_rows(150)).decode().splitlines()
    lines[5] = lines[5].replace(lines[5].split(",")[2], "x", 1)  # One row rejected.
    dataset = upload(client, ("\n".join(lines) + "\n").encode(), "csv")
    before = httpx.get(metrics_url).text
    succeeded = submit_job(client, dataset, max_failed_rows=1)
    failed = submit_job(client, dataset)
    for job, status in ((succeeded, "succeeded"), (failed, "failed")):
        assert wait_job(client, job["job_id"])["status"] == status
    after = httpx.get(metrics_url).text

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("inferq_jobs_finished_total", kind="batch", model="iris",
                status="succeeded") == 1
    assert grew("inferq_jobs_finished_total", kind="batch", model="iris", status="failed") == 1
    assert grew("inferq_job_seconds_count", kind="batch", model="iris") == 2
    assert grew("inferq_batch_rows_total", model="iris", outcome="scored") == 2 * 149
    assert grew("inferq_batch_rows_total", model="iris", outcome="rejected") == 2

    queued = submit_job(client, dataset)
    api_before = client.get("/metrics").text
    client.delete(f"/v1/batch-jobs/{queued['job_id']}")
    api_after = client.get("/metrics").text
    cancelled = {"kind": "batch", "model": "iris", "status": "cancelled"}
    # A cancel that lost the race with the job's end counts nothing.
    assert sample(api_after, "inferq_jobs_finished_total", **cancelled) - sample(
        api_before, "inferq_jobs_finished_total", **cancelled) == (
        client.get(f"/v1/batch-jobs/{queued['job_id']}").json()["status"] == "cancelled")
