"""A trained model with a string feature, served by the real API and workers: predictions
take text and null for it, and batch jobs score a dataset's text column."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from job_client import submit_job, upload, wait_job
from processes import ServiceProcess, service_env, start_worker
from task_client import submit, wait_all

from ml.store import load_estimator, save_model
from ml.training import check_spec, fit_all
from services.common.dataset_formats import Column
from services.common.storage import Storage

MODEL = "delivery"
CITIES = ["oslo", "lima", "pune"]


def training_rows(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Distance and city; late when far, or always in lima."""
    rng = np.random.default_rng(0)
    distance = rng.uniform(0, 10, size=count)
    city = rng.choice(CITIES, size=count)
    X = np.array(list(zip(distance, city, strict=True)), dtype=object)
    y = np.where((city == "lima") | (distance > 7), "late", "on_time").astype(object)
    return X, y


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("trained-models")
    spec = check_spec({"estimator": "RandomForestClassifier", "target_column": "status",
                       "hyperparameters": {"n_estimators": 20}},
                      [Column("distance_km", "float64"), Column("city", "string"),
                       Column("status", "string")])
    X, y = training_rows(600)
    save_model(store, MODEL, fit_all(spec, {"n_estimators": 20}, X, y),
               features=spec.features, metrics={"accuracy": 1.0})
    return store


@pytest.fixture(scope="module")
def stack_env(redis_server, trained_store: Path, storage: Storage) -> dict[str, str]:  # type: ignore[no-untyped-def]
    redis_server.client().flushdb()
    return service_env(redis_server.url, trained_store, INFERQ_STORAGE_URL=storage.url,
                       INFERQ_BATCH_CHUNK_ROWS="50")


@pytest.fixture(scope="module")
def batch_worker(stack_env: dict[str, str], logs: Path) -> Iterator[ServiceProcess]:
    process = start_worker(stack_env, logs, pool="batch", concurrency=1)
    yield process
    process.stop()


def in_process(store: Path, rows: list[list[Any]]) -> list[str]:
    _, estimator = load_estimator(store, MODEL, 1)
    return list(estimator.predict(np.array(rows, dtype=object)))


def test_the_model_lists_its_string_feature(client: httpx.Client) -> None:
    response = client.get(f"/v1/models/{MODEL}")
    assert response.status_code == 200, response.text
    assert response.json()["features"] == [{"name": "distance_km", "dtype": "float64"},
                                           {"name": "city", "dtype": "string"}]


def test_predictions_take_text_and_null_for_a_string_feature(
        client: httpx.Client, worker: ServiceProcess, trained_store: Path) -> None:
    rows: list[Any] = [[1.0, "lima"], [1.0, "oslo"], {"city": "pune", "distance_km": 9.5},
                       [2, None], [2.0, "tokyo"]]
    task_ids = [submit(client, MODEL, rows[:3]), submit(client, MODEL, rows[3:])]
    first, second = wait_all(client, task_ids)
    assert first["status"] == "succeeded", first
    assert second["status"] == "succeeded", second
    predictions = first["result"]["predictions"] + second["result"]["predictions"]
    assert predictions[:3] == ["late", "on_time", "late"]
    as_lists = [r if isinstance(r, list) else [r["distance_km"], r["city"]] for r in rows]
    assert predictions == in_process(trained_store, as_lists)


def test_a_number_for_a_string_feature_is_a_422_naming_it(client: httpx.Client) -> None:
    response = client.post(f"/v1/models/{MODEL}/predict",
                           json={"instances": [[1.0, "oslo"], [1.0, 3]]})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert "row 1, column 1 ('city') is the number 3; expected a string or null" in \
        error["message"]
    assert error["details"]["row"] == 1 and error["details"]["column"] == "city"


def test_a_batch_job_scores_a_text_column(
        client: httpx.Client, batch_worker: ServiceProcess, trained_store: Path) -> None:
    X, _ = training_rows(120)
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["order", "distance_km", "city"])
    for i, (distance, city) in enumerate(X):
        writer.writerow([f"o-{i}", "" if i == 7 else distance, city])
    dataset = upload(client, out.getvalue().encode(), "csv")
    job = submit_job(client, dataset, model=MODEL, id_column="order", max_failed_rows=1)
    done = wait_job(client, job["job_id"])
    assert done["status"] == "succeeded", done
    assert done["progress"]["rows_failed"] == 1
    results = list(csv.DictReader(io.StringIO(
        client.get(f"/v1/batch-jobs/{job['job_id']}/results").text)))
    scored = [i for i in range(120) if i != 7]
    assert [int(r["row"]) for r in results] == scored
    expected = in_process(trained_store, [[float(X[i, 0]), X[i, 1]] for i in scored])
    assert [r["prediction"] for r in results] == expected
    errors = client.get(f"/v1/batch-jobs/{job['job_id']}/errors").text
    assert '"row":7' in errors and '"code":"missing_value"' in errors
