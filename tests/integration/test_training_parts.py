"""A search's forest fitted on every row in parts, by two training workers, and joined into
the forest one fit grows; a cancel while the parts fit. Real API, Redis, storage, workers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import redis
from job_client import upload
from processes import ServiceProcess, module_env, start_worker
from training_client import alive, cancel_during_fit, churn_csv, submit, wait_training

from ml.store import load_estimator
from ml.training import TrainingSpec, fit_all, load_data
from services.common import keys
from services.common import training_jobs as tj
from services.common.datasets import load_dataset
from services.common.storage import Storage

CHURN = {"target_column": "churned", "feature_columns": ["age", "plan", "usage"],
         "estimator": "RandomForestClassifier", "validation": {"cv": 2}}


@pytest.fixture(scope="module")
def stack_env(redis_server, model_store, storage: Storage,  # type: ignore[no-untyped-def]
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return module_env(redis_server, model_store, storage.url,
                      tmp_path_factory.mktemp("parts-models"), INFERQ_TRAINING_FIT_PARTS="2",
                      INFERQ_SOFT_TIME_LIMIT="60", INFERQ_HARD_TIME_LIMIT="70",
                      INFERQ_VISIBILITY_TIMEOUT="80")


@pytest.fixture(scope="module")
def trainers(stack_env: dict[str, str], logs: Path) -> Iterator[list[ServiceProcess]]:
    processes = [start_worker(stack_env, logs, pool="training", concurrency=1)
                 for _ in range(2)]
    yield processes
    for process in processes:
        process.stop()


@pytest.fixture(scope="module")
def rdb(redis_server) -> redis.Redis:  # type: ignore[no-untyped-def]
    return redis_server.client()


@pytest.fixture(scope="module")
def client_module(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=40) as http:
        yield http


@pytest.fixture(scope="module")
def churn(client_module: httpx.Client) -> str:
    return upload(client_module, churn_csv(), "csv", name="churn")


def results(rdb: redis.Redis, job_id: str) -> list[dict[str, Any]]:
    return [orjson.loads(v) for v in rdb.hvals(keys.training_folds_key(job_id))]


def test_the_best_forest_is_fitted_in_parts_by_both_workers_and_joined(
    client_module: httpx.Client, trainers: list[ServiceProcess], rdb: redis.Redis,
    storage: Storage, stack_env: dict[str, str], churn: str,
) -> None:
    job = submit(client_module, "churn-parts", dataset_id=churn, **CHURN,
                 hyperparameters={"n_estimators": 40},
                 search={"grid": {"max_depth": [1, 8]}, "metric": "accuracy"})
    done = wait_training(client_module, job["job_id"])
    assert done["status"] == "succeeded", done
    assert done["hyperparameters"] == {"n_estimators": 40, "max_depth": 8}
    assert len(done["trials"]) == 4 and all("part" not in t for t in done["trials"])
    parts = sorted((r for r in results(rdb, job["job_id"]) if "part" in r),
                   key=lambda r: int(r["part"]))
    assert [p["trees"] for p in parts] == [[0, 20], [20, 40]]
    assert len({p["worker"] for p in parts}) == 2, parts
    # The registered forest is the one a single fit on every row grows, tree for tree.
    _, model = load_estimator(stack_env["INFERQ_MODEL_STORE"], "churn-parts", done["version"])
    spec = TrainingSpec.from_json(orjson.loads(rdb.hget(keys.job_key(job["job_id"]), "spec")
                                               or b"{}"))
    dataset = load_dataset(rdb, churn)
    assert dataset is not None
    X, y = load_data(storage, dataset, spec)
    whole = fit_all(spec, done["hyperparameters"], X, y)
    assert model.named_steps["estimator"].n_estimators == 40
    np.testing.assert_array_equal(model.predict_proba(X), whole.predict_proba(X))
    # The parts kept in storage are gone once the version is registered.
    assert not any(storage.exists(tj.part_key(job["job_id"], k)) for k in range(2))
    logs = "".join(t.log() for t in trainers)
    assert f"split into parts job_id={job['job_id']} parts=2" in logs


def test_a_cancel_while_the_parts_fit_ends_them_and_keeps_nothing(
    client_module: httpx.Client, trainers: list[ServiceProcess], rdb: redis.Redis,
    storage: Storage, churn: str,
) -> None:
    client = client_module
    job = submit(client, "churn-parts-cancel", dataset_id=churn, **CHURN,
                 hyperparameters={"n_estimators": 3000, "max_features": None},
                 search={"grid": {"min_samples_leaf": [1, 2]}, "metric": "accuracy"})
    deadline = time.monotonic() + 60
    while True:
        seen = client.get(f"/v1/training-jobs/{job['job_id']}").json()
        if (seen["phase"] or "").startswith("fitting on every row, part"):
            break
        assert seen["status"] == "running" or seen["status"] == "queued", seen
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)
    pid = int(rdb.hget(keys.job_key(job["job_id"]), "fit_pid") or 0)
    assert alive(pid)
    cancel_during_fit(client, rdb, job["job_id"], pid)
    ended = client.get(f"/v1/training-jobs/{job['job_id']}").json()
    assert ended["status"] == "cancelled" and ended["version"] is None
    assert client.get("/v1/models/churn-parts-cancel/versions").status_code == 404
    assert not any(storage.exists(tj.part_key(job["job_id"], k)) for k in range(2))
    assert all(t.process.poll() is None for t in trainers)
