"""Batch jobs for integration tests: datasets made in the test, submitting, waiting."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from processes import start_worker

from ml.predict import predict
from ml.store import load_estimator
from services.common.media import DATASET_MEDIA_TYPES

IRIS_FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
CLASSES = ["setosa", "versicolor", "virginica"]


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


def submit_job(client: httpx.Client, dataset_id: str, model: str = "iris",
               **body: Any) -> dict[str, Any]:
    response = client.post(f"/v1/models/{model}/batch-jobs",
                           json={"dataset_id": dataset_id, **body})
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


def run_job(client: httpx.Client, job_id: str, env: dict[str, str],
            logs: Path) -> dict[str, Any]:
    """The job, ended, run by a batch worker started for it and stopped after."""
    scorer = start_worker(env, logs, pool="batch", concurrency=1)
    try:
        return wait_job(client, job_id)
    finally:
        scorer.stop()


def wait_drained(redis: Any, timeout: float = 20) -> None:
    """Until no batch message waits, is pulled or is held: each was taken and acknowledged."""
    deadline = time.monotonic() + timeout
    while (redis.llen("batch") or redis.hlen("inferq:unacked:batch")
           or any(redis.llen(key) for key in redis.keys("inferq:pulling:batch:*"))):
        assert time.monotonic() < deadline, "batch messages still queued or held"
        time.sleep(0.05)


def sleepy_csv(rows: int, seconds_per_row: float) -> bytes:
    return ("x0,x1\n" + "".join(f"{seconds_per_row},{i}\n" for i in range(rows))).encode()


def upload(client: httpx.Client, data: bytes, fmt: str, name: str = "test") -> str:
    """Upload ``data`` as a dataset of ``fmt``; its id."""
    response = client.post("/v1/datasets", params={"name": name}, content=data,
                           headers={"Content-Type": DATASET_MEDIA_TYPES[fmt]})
    assert response.status_code == 201, response.text
    return str(response.json()["dataset_id"])
