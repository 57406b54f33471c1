"""Training jobs end to end: a real API, Redis, local storage and training workers."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from job_client import upload
from processes import INFERQ, ServiceProcess, module_env, start_worker
from training_client import alive, cancel_during_fit, churn_csv, prices_csv, submit, wait_training

from services.common import keys
from services.common import training_jobs as tj
from services.common.storage import Storage

#: A fit that takes a few seconds on the datasets below: long enough to cancel or stop.
SLOW_FIT = {"estimator": "RandomForestClassifier",
            "hyperparameters": {"n_estimators": 4000, "max_features": None}}


@pytest.fixture(scope="module")
def stack_env(redis_server, model_store, storage: Storage,  # type: ignore[no-untyped-def]
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return module_env(redis_server, model_store, storage.url,
                      tmp_path_factory.mktemp("training-models"), INFERQ_SOFT_TIME_LIMIT="60",
                      INFERQ_HARD_TIME_LIMIT="70", INFERQ_VISIBILITY_TIMEOUT="80")


@pytest.fixture(scope="module")
def trainer(stack_env: dict[str, str], logs: Path) -> Iterator[ServiceProcess]:
    process = start_worker(stack_env, logs, pool="training", concurrency=1)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def rdb(redis_server) -> redis.Redis:  # type: ignore[no-untyped-def]
    return redis_server.client()


@pytest.fixture(scope="module")
def churn(client_module: httpx.Client) -> str:
    return upload(client_module, churn_csv(), "csv", name="churn")


@pytest.fixture(scope="module")
def prices(client_module: httpx.Client) -> str:
    return upload(client_module, prices_csv(), "csv", name="prices")


@pytest.fixture(scope="module")
def client_module(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=40) as http:
        yield http


def wait_phase(client: httpx.Client, job_id: str, prefix: str, timeout: float = 60
               ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/training-jobs/{job_id}").json()
        if (job["phase"] or "").startswith(prefix):
            return job
        assert job["status"] in ("queued", "running"), job
        assert time.monotonic() < deadline, f"job {job_id} never reached {prefix}: {job}"
        time.sleep(0.05)


def versions(client: httpx.Client, model: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/models/{model}/versions")
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["versions"]
    return found


def predict(client: httpx.Client, model: str, rows: list[Any], **query: Any) -> dict[str, Any]:
    response = client.post(f"/v1/models/{model}/predict", params={"wait": 20, **query},
                           json={"instances": rows})
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    assert task["status"] == "succeeded", task.get("error")
    return task


def test_a_classifier_with_string_features_trains_registers_and_predicts(
    client_module: httpx.Client, trainer: ServiceProcess, worker: ServiceProcess, churn: str,
) -> None:
    client = client_module
    job = submit(client, "churn", dataset_id=churn, target_column="churned",
                 feature_columns=["age", "plan", "usage"], estimator="RandomForestClassifier",
                 hyperparameters={"n_estimators": 50, "max_depth": 6},
                 validation={"holdout": 0.25}, seed=3)
    done = wait_training(client, job["job_id"])
    assert done["status"] == "succeeded", done
    assert done["phase"] == "done" and done["progress"] == 1.0
    assert set(done["metrics"]) == {"accuracy", "f1", "roc_auc"}
    assert done["metrics"]["accuracy"] > 0.8
    assert done["fold_metrics"] == [done["metrics"]]
    assert done["version"] == 1 and done["started_at"] and done["finished_at"]

    [version] = versions(client, "churn")
    assert version["version"] == 1
    lineage = version["lineage"]
    assert lineage["dataset_id"] == churn and lineage["job_id"] == job["job_id"]
    assert lineage["estimator"] == "RandomForestClassifier"
    assert lineage["hyperparameters"] == {"n_estimators": 50, "max_depth": 6}
    assert lineage["validation"] == {"holdout": 0.25} and lineage["seed"] == 3
    assert {"sklearn", "numpy", "python"} <= set(lineage["library_versions"])
    assert [f["name"] for f in version["features"]] == ["age", "plan", "usage"]

    task = predict(client, "churn", [[30, "max", 10.0], [30, "basic", 10.0]])
    assert task["version"] == 1
    assert task["result"]["predictions"] == ["no", "yes"]


def test_a_regressor_cross_validates_and_registers_the_refit(
    client_module: httpx.Client, rdb: redis.Redis, storage: Storage, trainer: ServiceProcess,
    worker: ServiceProcess, prices: str,
) -> None:
    client = client_module
    job = submit(client, "prices", dataset_id=prices, target_column="price",
                 estimator="Ridge", hyperparameters={"alpha": 0.1}, validation={"cv": 3})
    done = wait_training(client, job["job_id"])
    assert done["status"] == "succeeded", done
    # The refit ran beside the folds, counted as one of them, and its kept pipeline is gone.
    record = rdb.hgetall(keys.job_key(job["job_id"]))
    assert (record[b"refit"], record[b"tasks_total"], record[b"tasks_done"]) == \
        (b"1", b"4", b"4")
    refit = orjson.loads(rdb.hget(keys.training_folds_key(job["job_id"]), "refit") or b"{}")
    assert refit["refit"] is True and refit["seconds"] > 0
    assert not storage.exists(tj.refit_key(job["job_id"]))
    assert len(done["fold_metrics"]) == 3
    for metric in ("r2", "mae", "rmse"):
        mean = sum(f[metric] for f in done["fold_metrics"]) / 3
        assert done["metrics"][metric] == pytest.approx(mean)
    assert done["metrics"]["r2"] > 0.9
    assert [(t["candidate"], t["fold"]) for t in done["trials"]] == [(0, 0), (0, 1), (0, 2)]
    [version] = versions(client, "prices")
    assert version["lineage"]["fold_metrics"] == done["fold_metrics"]
    assert version["lineage"]["training_seconds"] >= refit["seconds"]
    assert version["metrics"] == done["metrics"]
    task = predict(client, "prices", [{"x1": 5.0, "x2": 1.0, "x3": 10.0}])
    assert task["result"]["predictions"][0] == pytest.approx(23.0, abs=2.0)


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"estimator": "SVC"}, "estimator", "SVC"),
    ({"hyperparameters": {"n_estimatorz": 5}}, "hyperparameters.n_estimatorz", "n_estimatorz"),
    ({"hyperparameters": {"n_estimators": "many"}}, "hyperparameters.n_estimators", "many"),
    ({"target_column": "nope"}, "target_column", "nope"),
    ({"target_column": "spend"}, "target_column", "spend"),
    ({"validation": {"cv": 1}}, "validation", "cv"),
    ({"search": {"grid": {"max_depth": [2, "deep"]}}}, "search.grid.max_depth", "deep"),
    ({"promote_if": {"metric": "r2", "min": 0.5}}, "promote_if.metric", "r2"),
    ({"alias": "Not An Alias"}, "alias", "Not An Alias"),
])
def test_every_refused_spec_is_a_422_naming_its_field_and_queues_nothing(
    client_module: httpx.Client, rdb: redis.Redis, churn: str, change: dict[str, Any],
    field: str, words: str,
) -> None:
    jobs_before = rdb.zcard(keys.JOBS_INDEX)
    body = {"dataset_id": churn, "target_column": "churned",
            "feature_columns": ["age", "plan", "usage"],
            "estimator": "RandomForestClassifier", **change}
    response = client_module.post("/v1/models/churn/training-jobs", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_training_spec"
    assert error["details"]["field"] == field
    assert words in error["message"]
    assert rdb.llen("training") == 0
    assert rdb.zcard(keys.JOBS_INDEX) == jobs_before


def test_an_unknown_dataset_is_a_404_and_a_bad_model_name_a_422(
    client_module: httpx.Client, rdb: redis.Redis, churn: str,
) -> None:
    body = {"dataset_id": "f00d", "target_column": "churned",
            "estimator": "RandomForestClassifier"}
    response = client_module.post("/v1/models/churn/training-jobs", json=body)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "dataset_not_found"
    response = client_module.post("/v1/models/Bad%20Name/training-jobs",
                                  json={**body, "dataset_id": churn})
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "model"
    assert rdb.llen("training") == 0
    assert client_module.get("/v1/training-jobs/f00d").status_code == 404
    assert client_module.delete("/v1/training-jobs/f00d").status_code == 404


def test_a_fit_that_fails_fails_the_job_with_its_message(
    client_module: httpx.Client, trainer: ServiceProcess, churn: str,
) -> None:
    # Accepted by the parameter's constraints; refused by the data: 240 rows to fit.
    job = submit(client_module, "churn-failing", dataset_id=churn, target_column="churned",
                 estimator="KNeighborsClassifier", hyperparameters={"n_neighbors": 1000})
    done = wait_training(client_module, job["job_id"])
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "training_failed"
    assert "n_neighbors" in done["error"]["message"]
    assert done["version"] is None and versions(client_module, "churn-failing") == []


def test_a_cancel_stops_the_fit_and_registers_nothing(
    client_module: httpx.Client, rdb: redis.Redis, storage: Storage, trainer: ServiceProcess,
    churn: str,
) -> None:
    client = client_module
    job = submit(client, "churn-cancel", dataset_id=churn, target_column="churned",
                 validation={"cv": 2}, **SLOW_FIT)
    # The refit on every row ran first and is kept; the first fold fits.
    wait_phase(client, job["job_id"], "fitting fold 1")
    assert storage.exists(tj.refit_key(job["job_id"]))
    pid = int(rdb.hget(keys.job_key(job["job_id"]), "fit_pid") or 0)
    os.kill(pid, 0)  # The fit runs.
    # The second fold's task skips: the queue drains and nothing is registered.
    cancel_during_fit(client, rdb, job["job_id"], pid)
    time.sleep(0.5)
    ended = client.get(f"/v1/training-jobs/{job['job_id']}").json()
    assert ended["status"] == "cancelled" and ended["version"] is None
    assert versions(client, "churn-cancel") == []
    assert not storage.exists(tj.refit_key(job["job_id"]))
    assert client.delete(f"/v1/training-jobs/{job['job_id']}").status_code == 409
    assert trainer.process.poll() is None
    assert f"training task skipped job_id={job['job_id']}" in trainer.log()


def test_a_grid_search_spreads_over_two_workers_and_registers_the_best(
    client_module: httpx.Client, trainer: ServiceProcess, stack_env: dict[str, str],
    logs: Path, churn: str,
) -> None:
    second = start_worker(stack_env, logs, pool="training", concurrency=1)
    try:
        job = submit(client_module, "churn-grid", dataset_id=churn, target_column="churned",
                     feature_columns=["age", "plan", "usage"],
                     estimator="DecisionTreeClassifier", validation={"cv": 2},
                     search={"grid": {"max_depth": [1, 6]}, "metric": "accuracy"})
        done = wait_training(client_module, job["job_id"])
    finally:
        second.stop()
    assert done["status"] == "succeeded", done
    trials = done["trials"]
    assert len(trials) == 4
    assert len({t["worker"] for t in trials}) == 2, trials
    means: dict[int, float] = {}
    for candidate in range(2):
        folds = [t["metrics"]["accuracy"] for t in trials if t["candidate"] == candidate]
        means[candidate] = sum(folds) / len(folds)
    best = max(means, key=lambda c: means[c])
    assert best == 1 and means[1] > means[0]  # The deeper tree sees plan and usage together.
    assert done["hyperparameters"] == {"max_depth": 6}
    assert done["metrics"]["accuracy"] == pytest.approx(means[best])


def test_the_alias_moves_only_when_the_bar_is_cleared(
    client_module: httpx.Client, trainer: ServiceProcess, worker: ServiceProcess, prices: str,
) -> None:
    client = client_module
    base = {"dataset_id": prices, "target_column": "price", "estimator": "Ridge",
            "validation": {"holdout": 0.3}}
    first = wait_training(client, submit(client, "prices-alias", **base,
                                         alias="production")["job_id"])
    assert first["status"] == "succeeded" and first["promoted"] is True
    cleared = wait_training(client, submit(
        client, "prices-alias", **base, alias="production",
        promote_if={"metric": "r2", "min": 0.5})["job_id"])
    assert cleared["promoted"] is True and cleared["version"] == 2
    missed = wait_training(client, submit(
        client, "prices-alias", **base, alias="production",
        promote_if={"metric": "rmse", "max": 0.01})["job_id"])
    assert missed["status"] == "succeeded" and missed["promoted"] is False
    assert missed["version"] == 3
    listed = {v["version"]: v["aliases"] for v in versions(client, "prices-alias")}
    assert listed == {1: [], 2: ["production"], 3: []}
    task = predict(client, "prices-alias", [[5.0, 1.0, 2.0]])
    assert task["version"] == 2


def test_listing_filters_by_model_and_status(
    client_module: httpx.Client, trainer: ServiceProcess,
) -> None:
    jobs = client_module.get("/v1/training-jobs", params={"model": "prices-alias"}).json()["jobs"]
    assert len(jobs) == 3 and {j["model"] for j in jobs} == {"prices-alias"}
    assert all(j["kind"] == "training" for j in jobs)
    cancelled = client_module.get("/v1/training-jobs",
                                  params={"status": "cancelled"}).json()["jobs"]
    assert [j["model"] for j in cancelled] == ["churn-cancel"]
    assert all(j["kind"] == "batch"
               for j in client_module.get("/v1/batch-jobs").json()["jobs"])
    # A training job is no batch job, even by its id.
    job_id = jobs[0]["job_id"]
    assert client_module.get(f"/v1/batch-jobs/{job_id}").status_code == 404
    assert client_module.get(f"/v1/batch-jobs/{job_id}", params={"wait": 1}).status_code == 404
    assert client_module.delete(f"/v1/batch-jobs/{job_id}").status_code == 404


def test_the_cli_trains_follows_lists_and_cancels(
    api_url: str, stack_env: dict[str, str], trainer: ServiceProcess, prices: str,
) -> None:
    def inferq(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([INFERQ, *args, "--url", api_url], env=stack_env,
                              capture_output=True, text=True, timeout=120, check=False)

    trained = inferq("train", "prices-cli", "--dataset", prices, "--target", "price",
                     "--estimator", "Ridge", "--param", "alpha=0.5", "--grid",
                     "fit_intercept=true,false", "--metric", "rmse", "--cv", "2", "--seed",
                     "4", "--alias", "production", "--promote-if", "rmse<=5", "--wait")
    assert trained.returncode == 0, trained.stderr
    job = orjson.loads(trained.stdout)
    assert job["status"] == "succeeded" and job["version"] == 1 and job["promoted"] is True
    rmse = {c: sum(t["metrics"]["rmse"] for t in job["trials"] if t["candidate"] == c)
            for c in (0, 1)}
    best = min(rmse, key=lambda c: rmse[c])  # Lower is better.
    assert rmse[0] != rmse[1]
    assert job["hyperparameters"] == {"alpha": 0.5, "fit_intercept": [True, False][best]}
    assert "done, 100%" in trained.stderr.splitlines()[-1]
    listed = orjson.loads(inferq("training-jobs", "list", "--model", "prices-cli").stdout)
    assert [j["job_id"] for j in listed["jobs"]] == [job["job_id"]]
    got = orjson.loads(inferq("training-jobs", "get", job["job_id"]).stdout)
    assert got["metrics"] == job["metrics"]
    refused = inferq("training-jobs", "cancel", job["job_id"])
    assert refused.returncode == 1
    assert orjson.loads(refused.stderr)["error"]["code"] == "job_not_cancellable"
    bad = inferq("train", "prices-cli", "--dataset", prices, "--target", "price",
                 "--estimator", "Ridge", "--param", "alpha=-1")
    assert bad.returncode == 1
    assert orjson.loads(bad.stderr)["error"]["details"]["field"] == "hyperparameters.alpha"


def test_sigterm_lets_the_fit_finish_and_hands_back_what_is_held(
    client_module: httpx.Client, rdb: redis.Redis, trainer: ServiceProcess,
    stack_env: dict[str, str], logs: Path, churn: str,
) -> None:
    trainer.stop()  # This test runs a worker of its own.
    env = {**stack_env, "INFERQ_WORKER_PREFETCH": "2"}
    stopping = start_worker(env, logs, pool="training", concurrency=1)
    client = client_module
    running = submit(client, "churn-term", dataset_id=churn, target_column="churned",
                     **SLOW_FIT)
    held = submit(client, "churn-term", dataset_id=churn, target_column="churned",
                  estimator="DecisionTreeClassifier")
    wait_phase(client, running["job_id"], "fitting")
    deadline = time.monotonic() + 10
    while rdb.hlen(keys.unacked_key("training")) < 2:
        assert time.monotonic() < deadline, "the worker does not hold the second job"
        time.sleep(0.05)
    stopping.process.send_signal(signal.SIGTERM)
    assert stopping.process.wait(timeout=60) == 0
    done = client.get(f"/v1/training-jobs/{running['job_id']}").json()
    assert done["status"] == "succeeded" and done["version"] == 1, done
    waiting = client.get(f"/v1/training-jobs/{held['job_id']}").json()
    assert waiting["status"] == "queued"
    assert rdb.llen("training") == 1 and rdb.hlen(keys.unacked_key("training")) == 0
    # A worker that comes later runs it.
    later = start_worker(stack_env, logs, pool="training", concurrency=1)
    try:
        assert wait_training(client, held["job_id"])["status"] == "succeeded"
    finally:
        later.stop()


def test_a_fit_past_the_soft_time_limit_is_killed_and_fails_the_job(
    client_module: httpx.Client, rdb: redis.Redis, trainer: ServiceProcess,
    stack_env: dict[str, str], logs: Path, churn: str,
) -> None:
    trainer.stop()  # This test runs a worker of its own, with a short limit.
    env = {**stack_env, "INFERQ_SOFT_TIME_LIMIT": "4", "INFERQ_HARD_TIME_LIMIT": "20"}
    limited = start_worker(env, logs, pool="training", concurrency=1)
    try:
        job = submit(client_module, "churn-slow", dataset_id=churn, target_column="churned",
                     estimator="RandomForestClassifier",
                     hyperparameters={"n_estimators": 50000, "max_features": None})
        deadline = time.monotonic() + 10
        while not rdb.hget(keys.job_key(job["job_id"]), "fit_pid"):
            assert time.monotonic() < deadline, "the fit never started"
            time.sleep(0.02)
        pid = int(rdb.hget(keys.job_key(job["job_id"]), "fit_pid") or 0)
        done = wait_training(client_module, job["job_id"], timeout=30)
        assert done["status"] == "failed"
        assert done["error"]["code"] == "soft_time_limit_exceeded"
        assert not alive(pid)
        assert done["version"] is None and versions(client_module, "churn-slow") == []
        assert limited.process.poll() is None
    finally:
        limited.stop()
