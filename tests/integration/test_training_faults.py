"""A training worker killed mid-fold: a replacement finishes the job, each fold counted once
and one version registered."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from job_client import upload, wait_drained
from processes import service_env, start_worker
from training_client import alive, churn_csv, submit, wait_training

from services.common import keys
from services.common.storage import Storage

#: Three folds of a few seconds each.
FOLDS = 3
SLOW_FOLD = {"estimator": "RandomForestClassifier",
             "hyperparameters": {"n_estimators": 800, "max_features": None},
             "validation": {"cv": FOLDS}}


@pytest.fixture(scope="module")
def stack_env(redis_server, model_store, storage: Storage,  # type: ignore[no-untyped-def]
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    redis_server.client().flushdb()
    # A held message comes back once its visibility timeout, which outlasts the hard time
    # limit, has passed since its worker stopped acknowledging anything.
    return service_env(redis_server.url, tmp_path_factory.mktemp("fault-models"),
                       INFERQ_STORAGE_URL=storage.url, INFERQ_SOFT_TIME_LIMIT="12",
                       INFERQ_HARD_TIME_LIMIT="13", INFERQ_VISIBILITY_TIMEOUT="14")


@pytest.fixture(scope="module")
def client_module(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=40) as http:
        yield http


def test_a_worker_killed_mid_fold_leaves_a_replacement_to_finish_the_job(
    client_module: httpx.Client, redis_server, stack_env: dict[str, str],  # type: ignore[no-untyped-def]
    logs: Path,
) -> None:
    client = client_module
    rdb: redis.Redis = redis_server.client()
    churn = upload(client, churn_csv(), "csv", name="churn")
    doomed = start_worker(stack_env, logs, pool="training", concurrency=1)
    try:
        job_id = submit(client, "churn-fault", dataset_id=churn, target_column="churned",
                        **SLOW_FOLD)["job_id"]
        # Killed as a pod dies: the whole group, while a fold after the first is fitting.
        deadline = time.monotonic() + 60
        while True:
            job = client.get(f"/v1/training-jobs/{job_id}").json()
            fit_pid = rdb.hget(keys.job_key(job_id), "fit_pid")
            if job["phase"] == f"fitting fold 2 of {FOLDS}" and fit_pid:
                break
            assert job["status"] in ("queued", "running"), (job.get("error"), job.get("phase"))
            assert time.monotonic() < deadline, doomed.log()[-2000:]
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        doomed.kill()
    at_kill = client.get(f"/v1/training-jobs/{job_id}").json()
    assert at_kill["status"] == "running", at_kill
    assert at_kill["phase"] == f"fitting fold 2 of {FOLDS}", at_kill
    assert not alive(int(fit_pid or 0))

    replacement = start_worker(stack_env, logs, pool="training", concurrency=1)
    try:
        done = wait_training(client, job_id, timeout=120)
        wait_drained(rdb)
    finally:
        replacement.stop()
    assert done["status"] == "succeeded", done
    # Every fold counted once, and one version registered from the job.
    assert sorted(t["fold"] for t in done["trials"]) == list(range(FOLDS))
    # The first fold's result, from the killed worker, was kept; the replacement did the rest.
    assert len({t["worker"] for t in done["trials"]}) == 2, done["trials"]
    assert len(done["fold_metrics"]) == FOLDS
    listed = client.get("/v1/models/churn-fault/versions").json()["versions"]
    assert [v["version"] for v in listed] == [1] and done["version"] == 1
    assert listed[0]["lineage"]["job_id"] == job_id
