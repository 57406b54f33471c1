"""A training job's metrics and its one trace, from the submit to each of its tasks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from job_client import upload
from metrics_text import sample
from otlp_receiver import OtlpReceiver
from processes import metrics_worker, service_env
from training_client import prices_csv, wait_training

from services.common.storage import Storage

TRACE_ID = "6df92f3577b34da6a3ce929d0e0e4738"
CLIENT_SPAN = "20f067aa0ba902b8"


@pytest.fixture(scope="module")
def stack_env(redis_server, model_store, storage: Storage,  # type: ignore[no-untyped-def]
              receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory,
              ) -> dict[str, str]:
    redis_server.client().flushdb()
    return service_env(redis_server.url, tmp_path_factory.mktemp("models"),
                       INFERQ_STORAGE_URL=storage.url,
                       OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.port}",
                       OTEL_BSP_SCHEDULE_DELAY="100")


@pytest.fixture(scope="module")
def metrics_url(stack_env: dict[str, str], logs: Path) -> Iterator[str]:
    yield from metrics_worker(stack_env, logs, "training", 1)


def test_a_training_job_is_one_trace_and_is_counted(
    client: httpx.Client, metrics_url: str, receiver: OtlpReceiver,
) -> None:
    dataset = upload(client, prices_csv(), "csv")
    before = httpx.get(metrics_url).text
    response = client.post(
        "/v1/models/prices-observed/training-jobs",
        json={"dataset_id": dataset, "target_column": "price", "estimator": "Ridge",
              "validation": {"cv": 2}},
        headers={"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["trace_id"] == TRACE_ID
    done = wait_training(client, job["job_id"])
    assert done["status"] == "succeeded" and done["trace_id"] == TRACE_ID

    deadline = time.monotonic() + 15
    # Server, enqueue, the refit beside two folds, and the final task.
    while len(receiver.trace(TRACE_ID)) < 6:
        assert time.monotonic() < deadline, receiver.trace(TRACE_ID)
        time.sleep(0.1)
    spans = receiver.trace(TRACE_ID)
    (server,) = [s for s in spans if s["name"] == "POST /v1/models/{model}/training-jobs"]
    (enqueue,) = [s for s in spans if s["name"] == "inferq.enqueue"]
    tasks = [s for s in spans if s["name"] == "inferq.training"]
    assert server["parent"] == CLIENT_SPAN
    assert enqueue["parent"] == server["span_id"] and enqueue["kind"] == 4  # Producer.
    assert len(tasks) == 4 and all(
        t["parent"] == enqueue["span_id"] and t["kind"] == 5 and t["service"] == "inferq-worker"
        for t in tasks)

    after = httpx.get(metrics_url).text
    labels = {"kind": "training", "model": "prices-observed"}
    assert sample(after, "inferq_jobs_finished_total", status="succeeded", **labels) - sample(
        before, "inferq_jobs_finished_total", status="succeeded", **labels) == 1
    assert sample(after, "inferq_job_seconds_count", **labels) - sample(
        before, "inferq_job_seconds_count", **labels) == 1
    # The API's exporter reads the latest metrics of each model every few seconds.
    deadline = time.monotonic() + 10
    while True:
        exported = client.get("/metrics").text
        r2 = sample(exported, "inferq_training_metric", model="prices-observed", metric="r2")
        if r2:
            break
        assert time.monotonic() < deadline, "inferq_training_metric never exported"
        time.sleep(0.2)
    assert r2 == pytest.approx(done["metrics"]["r2"])
    assert sample(exported, "inferq_training_metric", model="prices-observed",
                  metric="rmse") == pytest.approx(done["metrics"]["rmse"])
