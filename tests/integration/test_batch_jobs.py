"""Batch jobs end to end: a real API, Redis, local storage and a batch worker."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from dataset_client import put_dataset
from processes import ServiceProcess, service_env, start_worker

from ml.predict import predict
from ml.store import load_estimator
from services.common.datasets import Dataset
from services.common.storage import Storage

CHUNK_ROWS = 200
IRIS_FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
CLASSES = ["setosa", "versicolor", "virginica"]


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Storage:
    return Storage.from_url(str(tmp_path_factory.mktemp("storage")))


@pytest.fixture(scope="module")
def stack_env(redis_server, model_store, storage: Storage) -> dict[str, str]:  # type: ignore[no-untyped-def]
    redis_server.client().flushdb()
    return service_env(
        redis_server.url, model_store,
        INFERQ_STORAGE_URL=storage.url,
        INFERQ_BATCH_CHUNK_ROWS=str(CHUNK_ROWS),
        INFERQ_SOFT_TIME_LIMIT="20", INFERQ_HARD_TIME_LIMIT="25",
        INFERQ_VISIBILITY_TIMEOUT="4",
    )


@pytest.fixture(scope="module")
def batch_worker(stack_env: dict[str, str], logs: Path) -> Iterator[ServiceProcess]:
    process = start_worker(stack_env, logs, pool="batch", concurrency=2)
    yield process
    process.stop()


def iris_rows(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    low, high = np.array([4.3, 2.0, 1.0, 0.1]), np.array([7.9, 4.4, 6.9, 2.5])
    return np.round(rng.uniform(low, high, size=(count, 4)), 2)


def iris_csv(values: np.ndarray) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["customer", *IRIS_FEATURES, "region"])
    for i, row in enumerate(values):
        writer.writerow([f"c-{i:05d}", *row.tolist(), "north" if i % 2 else "south"])
    return buffer.getvalue().encode()


def iris_jsonl(values: np.ndarray) -> bytes:
    return b"".join(
        orjson.dumps({"customer": f"c-{i:05d}", **dict(zip(IRIS_FEATURES, row.tolist(),
                                                            strict=True))}) + b"\n"
        for i, row in enumerate(values))


def in_process(model_store: Path, values: np.ndarray) -> dict[str, list[Any]]:
    metadata, estimator = load_estimator(model_store, "iris", 1)
    return predict(metadata, estimator, values, True)


def submit_job(client: httpx.Client, dataset: Dataset, model: str = "iris",
               **body: Any) -> dict[str, Any]:
    response = client.post(f"/v1/models/{model}/batch-jobs",
                           json={"dataset_id": dataset.dataset_id, **body})
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    assert response.headers["location"] == f"/v1/batch-jobs/{job['job_id']}"
    return job


def wait_job(client: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/batch-jobs/{job_id}", params={"wait": 10}).json()
        if job["status"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}: {job}"


def test_csv_job_scores_every_row_as_the_model_does_in_process(
    client: httpx.Client, batch_worker: ServiceProcess, redis_server, storage: Storage,  # type: ignore[no-untyped-def]
    model_store: Path,
) -> None:
    values = iris_rows(1050)
    dataset = put_dataset(redis_server.url, storage, iris_csv(values), "csv")
    job = submit_job(client, dataset, id_column="customer", passthrough_columns=["region"],
                     return_probabilities=True)
    assert job["status"] == "queued" and job["version"] == 1
    assert job["progress"] == {"rows_total": 1050, "rows_done": 0, "rows_failed": 0,
                               "chunks_total": 6, "chunks_done": 0}
    done = wait_job(client, job["job_id"])
    assert done["status"] == "succeeded", done
    assert done["progress"] == {"rows_total": 1050, "rows_done": 1050, "rows_failed": 0,
                                "chunks_total": 6, "chunks_done": 6}
    assert done["started_at"] and done["finished_at"]

    response = client.get(f"/v1/batch-jobs/{job['job_id']}/results")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert done["output"] == {"format": "csv", "rows": 1050, "bytes": len(response.content)}
    rows = list(csv.DictReader(io.StringIO(response.text)))
    header = ["row", "customer", "region", "prediction",
              *(f"probability_{c}" for c in CLASSES)]
    assert list(rows[0]) == header
    expected = in_process(model_store, values)
    assert [int(r["row"]) for r in rows] == list(range(1050))
    for i, row in enumerate(rows):
        assert row["customer"] == f"c-{i:05d}"
        assert row["region"] == ("north" if i % 2 else "south")
        assert row["prediction"] == expected["predictions"][i]
        assert [float(row[f"probability_{c}"]) for c in CLASSES] == \
            expected["probabilities"][i]
    assert client.get(f"/v1/batch-jobs/{job['job_id']}/errors").content == b""


def test_jsonl_job_writes_json_lines_in_input_order(
    client: httpx.Client, batch_worker: ServiceProcess, redis_server, storage: Storage,  # type: ignore[no-untyped-def]
    model_store: Path,
) -> None:
    values = iris_rows(450, seed=1)
    dataset = put_dataset(redis_server.url, storage, iris_jsonl(values), "jsonl")
    job = submit_job(client, dataset, id_column="customer")
    done = wait_job(client, job["job_id"])
    assert done["status"] == "succeeded", done
    response = client.get(f"/v1/batch-jobs/{job['job_id']}/results")
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in response.content.splitlines()]
    expected = in_process(model_store, values)["predictions"]
    assert lines == [{"row": i, "customer": f"c-{i:05d}", "prediction": p}
                     for i, p in enumerate(expected)]
