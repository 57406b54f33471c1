"""A training fit past the pool's time limits: the fit's process is killed, the job fails
with the limit's code, nothing is registered, and the same worker runs the next job.

Without a soft limit before the hard one (``INFERQ_HARD_TIME_LIMIT`` set alone, under the
training pool's default soft limit of 10740 s) the task keeps the hard limit itself
(``time_limit_exceeded``); with one, the pool raises it in the task
(``soft_time_limit_exceeded``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from job_client import upload
from processes import module_env, start_worker
from training_client import alive, churn_csv, submit, wait_training

from services.common import keys
from services.common.storage import Storage

#: A fit of far more than any limit below.
ENDLESS_FIT = {"estimator": "RandomForestClassifier",
               "hyperparameters": {"n_estimators": 50000, "max_features": None}}


@pytest.fixture(scope="module")
def stack_env(redis_server, model_store, storage: Storage,  # type: ignore[no-untyped-def]
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return module_env(redis_server, model_store, storage.url,
                      tmp_path_factory.mktemp("limit-models"))


def _fit_pid(rdb: redis.Redis, job_id: str) -> int:
    deadline = time.monotonic() + 15
    while not (pid := rdb.hget(keys.job_key(job_id), "fit_pid")):
        assert time.monotonic() < deadline, "the fit never started"
        time.sleep(0.02)
    return int(pid)


@pytest.mark.parametrize(("limits", "code", "message", "seconds"), [
    ({"INFERQ_HARD_TIME_LIMIT": "4"}, "time_limit_exceeded",
     "the task ran past its hard time limit of 4 s", 4),
    ({"INFERQ_SOFT_TIME_LIMIT": "3", "INFERQ_HARD_TIME_LIMIT": "60"},
     "soft_time_limit_exceeded", "the task ran past its soft time limit", 3),
], ids=["hard", "soft"])
def test_a_fit_past_the_limit_is_killed_and_the_worker_runs_the_next_job(
    client: httpx.Client, redis_server, stack_env: dict[str, str],  # type: ignore[no-untyped-def]
    logs: Path, limits: dict[str, str], code: str, message: str, seconds: float,
) -> None:
    rdb: redis.Redis = redis_server.client()
    churn = upload(client, churn_csv(), "csv", name="churn")
    trainer = start_worker({**stack_env, **limits}, logs, pool="training", concurrency=1)
    model = f"churn-{code.replace('_', '-')}"
    try:
        endless = submit(client, model, dataset_id=churn, target_column="churned",
                         **ENDLESS_FIT)
        # Queued behind it on the same worker (one child): runs once the first ends.
        following = submit(client, f"{model}-after", dataset_id=churn,
                           target_column="churned", estimator="DecisionTreeClassifier")
        pid = _fit_pid(rdb, endless["job_id"])
        started = time.monotonic()
        done: dict[str, Any] = wait_training(client, endless["job_id"], timeout=30)
        assert done["status"] == "failed", done
        assert done["error"]["code"] == code, done["error"]
        assert done["error"]["message"] == message
        # Ended at the limit, not at the default soft limit hours later.
        assert time.monotonic() - started < seconds + 10
        deadline = time.monotonic() + 5
        while alive(pid):
            assert time.monotonic() < deadline, f"the fit {pid} outlived its job"
            time.sleep(0.05)
        assert done["version"] is None
        assert client.get(f"/v1/models/{model}/versions").status_code == 404
        # The worker lives on and runs the next job.
        after = wait_training(client, following["job_id"], timeout=60)
        assert after["status"] == "succeeded", after
        assert after["version"] == 1
        assert trainer.process.poll() is None
        # Nothing is held or waiting: the failed job's message was acknowledged once.
        assert rdb.llen("training") == 0 and rdb.hlen(keys.unacked_key("training")) == 0
        assert client.get(f"/v1/training-jobs/{endless['job_id']}").json()["status"] == "failed"
    finally:
        trainer.stop()
