"""Tenants end to end: two tenants' API keys on a real API, Redis and workers.

Another tenant's task, batch job, training job, dataset or model answers exactly as one that
does not exist: same status, body and headers (those that differ per request aside). Lists
show the caller's own; the shared demo models serve every tenant.
"""

from __future__ import annotations

import json
import random
import string
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from job_client import iris_csv, iris_rows, submit_job, upload, wait_job
from processes import ServiceProcess, auth_on, create_key, own_store, pool_worker, service_env
from training_client import churn_csv, submit, wait_training

from services.common.storage import Storage

#: Headers that differ from one request to the next whatever it asks.
PER_REQUEST = {"date", "traceparent", "tracestate", "ratelimit", "ratelimit-policy"}

TENANTS = ("acme", "globex")

CHURN_FIT = {"target_column": "churned", "feature_columns": ["age", "plan", "usage"],
             "estimator": "RandomForestClassifier",
             "hyperparameters": {"n_estimators": 10, "max_depth": 4},
             "validation": {"holdout": 0.25}, "seed": 1}


@pytest.fixture(scope="module")
def stack_env(redis_server, model_store, storage: Storage,  # type: ignore[no-untyped-def]
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    redis_server.client().flushdb()
    store = own_store(model_store, tmp_path_factory.mktemp("tenant-models"))
    return auth_on(service_env(redis_server.url, store, INFERQ_STORAGE_URL=storage.url,
                               # No worker takes this queue: its tasks stay queued.
                               INFERQ_MODEL_QUEUES=json.dumps({"diabetes": "parked"})))


@pytest.fixture(scope="module")
def api_keys(stack_env: dict[str, str]) -> dict[str, str]:
    """Each tenant's key, made by ``inferq keys create``."""
    return {tenant: create_key(stack_env, tenant, "predict,jobs,train")["key"]
            for tenant in TENANTS}


@pytest.fixture(scope="module")
def trainer(stack_env: dict[str, str], logs: Path) -> Iterator[ServiceProcess]:
    yield from pool_worker(stack_env, logs, "training")


def tenant_client(api_url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=api_url, timeout=40, headers={"Authorization": f"Bearer {key}"})


@pytest.fixture(scope="module")
def acme(api_url: str, api_keys: dict[str, str]) -> Iterator[httpx.Client]:
    with tenant_client(api_url, api_keys["acme"]) as http:
        yield http


@pytest.fixture(scope="module")
def globex(api_url: str, api_keys: dict[str, str]) -> Iterator[httpx.Client]:
    with tenant_client(api_url, api_keys["globex"]) as http:
        yield http


@pytest.fixture(scope="module")
def acme_things(acme: httpx.Client, worker: ServiceProcess,
                trainer: ServiceProcess) -> dict[str, str]:
    """One of each thing tenant acme owns: ids and its trained model's name."""
    dataset = upload(acme, iris_csv(iris_rows(40)), "csv", name="acme-iris")
    churn = upload(acme, churn_csv(), "csv", name="acme-churn")
    done = acme.post("/v1/models/iris/predict", params={"wait": 20},
                     json={"instances": [[5.1, 3.5, 1.4, 0.2]]}).json()
    assert done["status"] == "succeeded", done
    queued = acme.post("/v1/models/diabetes/predict",
                       json={"instances": [[0.0] * 10]}).json()
    assert queued["status"] == "queued", queued
    batch = submit_job(acme, dataset)  # No batch worker: it stays queued.
    training = submit(acme, "churn", dataset_id=churn, **CHURN_FIT)
    trained = wait_training(acme, training["job_id"])
    assert trained["status"] == "succeeded", trained
    return {"dataset": dataset, "churn_dataset": churn, "task": done["task_id"],
            "queued_task": queued["task_id"],
            "batch_job": batch["job_id"], "training_job": training["job_id"],
            "model": "churn"}


def answer(client: httpx.Client, method: str, path: str,
           **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    response = client.request(method, path, **kwargs)
    headers = {k: v for k, v in response.headers.items() if k.lower() not in PER_REQUEST}
    return response.status_code, headers, response.content


def assert_hidden(client: httpx.Client, method: str, template: str, theirs: str, fresh: str,
                  json_of: Callable[[str], Any] | None = None, **kwargs: Any) -> None:
    """``method template`` (and the body ``json_of`` makes) with another tenant's id
    answers a 404 that is, byte for byte, the answer for ``fresh``, an id that does not
    exist (of the same length)."""
    assert len(theirs) == len(fresh)

    def ask(found: str) -> tuple[int, dict[str, str], bytes]:
        body = {"json": json_of(found)} if json_of else {}
        return answer(client, method, template.format(found), **body, **kwargs)

    status, headers, body = ask(theirs)
    assert status == 404, body
    assert theirs.encode() in body  # The answer names the id asked for, as for any id.
    assert (status, headers, body.replace(theirs.encode(), fresh.encode())) == ask(fresh)


def unused_name(like: str) -> str:
    return "".join(random.choices(string.ascii_lowercase, k=len(like)))


def test_another_tenants_task_is_a_missing_task_on_every_route(
    acme: httpx.Client, globex: httpx.Client, acme_things: dict[str, str],
) -> None:
    for task_id in (acme_things["task"], acme_things["queued_task"]):
        fresh = str(uuid.uuid4())
        assert_hidden(globex, "GET", "/v1/tasks/{}", task_id, fresh)
        started = time.monotonic()
        assert_hidden(globex, "GET", "/v1/tasks/{}", task_id, fresh, params={"wait": 3})
        # Neither waited: an unknown task answers at once, and so does another tenant's.
        assert time.monotonic() - started < 2.5
        assert_hidden(globex, "DELETE", "/v1/tasks/{}", task_id, fresh)
    # The queued task is still queued, and still acme's to read and to cancel.
    queued = acme.get(f"/v1/tasks/{acme_things['queued_task']}").json()
    assert queued["status"] == "queued"
    cancelled = acme.delete(f"/v1/tasks/{acme_things['queued_task']}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def test_another_tenants_jobs_and_datasets_are_missing_on_every_route(
    acme: httpx.Client, globex: httpx.Client, acme_things: dict[str, str],
) -> None:
    batch, training = acme_things["batch_job"], acme_things["training_job"]
    for template in ("/v1/batch-jobs/{}", "/v1/batch-jobs/{}/results",
                     "/v1/batch-jobs/{}/errors"):
        assert_hidden(globex, "GET", template, batch, str(uuid.uuid4()))
    for job_id, base in ((batch, "/v1/batch-jobs/{}"), (training, "/v1/training-jobs/{}")):
        fresh = str(uuid.uuid4())
        assert_hidden(globex, "GET", base, job_id, fresh)
        started = time.monotonic()
        assert_hidden(globex, "GET", base, job_id, fresh, params={"wait": 3})
        assert time.monotonic() - started < 2.5
        assert_hidden(globex, "DELETE", base, job_id, fresh)
    # Still acme's, and not cancelled.
    assert acme.get(f"/v1/batch-jobs/{batch}").json()["status"] == "queued"
    assert acme.get(f"/v1/training-jobs/{training}").json()["status"] == "succeeded"

    dataset = acme_things["dataset"]
    fresh = uuid.uuid4().hex
    assert_hidden(globex, "GET", "/v1/datasets/{}", dataset, fresh)
    assert_hidden(globex, "DELETE", "/v1/datasets/{}", dataset, fresh)
    assert acme.get(f"/v1/datasets/{dataset}").status_code == 200
    # Nor can a job of globex's read acme's dataset.
    assert_hidden(globex, "POST", "/v1/models/iris/batch-jobs", dataset, fresh,
                  json_of=lambda found: {"dataset_id": found})
    assert_hidden(globex, "POST", "/v1/models/mine/training-jobs", dataset, fresh,
                  json_of=lambda found: {**CHURN_FIT, "dataset_id": found})


def test_lists_show_only_the_callers_own(
    acme: httpx.Client, globex: httpx.Client, acme_things: dict[str, str],
) -> None:
    mine = upload(globex, iris_csv(iris_rows(5)), "csv", name="globex-iris")
    datasets = [d["dataset_id"] for d in globex.get("/v1/datasets").json()["datasets"]]
    assert datasets == [mine]
    assert acme_things["dataset"] in {
        d["dataset_id"] for d in acme.get("/v1/datasets").json()["datasets"]}
    assert globex.get("/v1/batch-jobs").json() == {"jobs": []}
    assert globex.get("/v1/training-jobs").json() == {"jobs": []}
    assert [j["job_id"] for j in acme.get("/v1/batch-jobs").json()["jobs"]] == [
        acme_things["batch_job"]]
    assert [j["job_id"] for j in acme.get("/v1/training-jobs").json()["jobs"]] == [
        acme_things["training_job"]]


def test_a_trained_model_is_its_tenants_alone_and_the_shared_models_everyones(
    acme: httpx.Client, globex: httpx.Client, acme_things: dict[str, str],
) -> None:
    model = acme_things["model"]
    acme_models = {m["name"] for m in acme.get("/v1/models").json()["models"]}
    globex_models = {m["name"] for m in globex.get("/v1/models").json()["models"]}
    assert {"iris", "diabetes"} <= acme_models and {"iris", "diabetes"} <= globex_models
    assert model in acme_models and model not in globex_models

    # acme predicts with its model, loaded by the worker from acme's part of the store.
    row = [40, "pro", 12.5]
    task = acme.post(f"/v1/models/{model}/predict", params={"wait": 20},
                     json={"instances": [row]}).json()
    assert task["status"] == "succeeded" and task["model"] == model, task
    assert task["result"]["predictions"][0] in ("yes", "no")

    # To globex it does not exist, on every route that names a model.
    fresh = unused_name(model)
    body = {"instances": [row]}
    assert_hidden(globex, "GET", "/v1/models/{}", model, fresh)
    assert_hidden(globex, "GET", "/v1/models/{}/versions", model, fresh)
    assert_hidden(globex, "POST", "/v1/models/{}/predict", model, fresh, json=body)
    assert_hidden(globex, "PUT", "/v1/models/{}/aliases/production", model, fresh,
                  json={"version": 1})
    assert_hidden(globex, "DELETE", "/v1/models/{}/aliases/production", model, fresh)
    mine = upload(globex, iris_csv(iris_rows(5)), "csv", name="globex-batch")
    assert_hidden(globex, "POST", "/v1/models/{}/batch-jobs", model, fresh,
                  json={"dataset_id": mine})

    # Both predict with the shared demo models; only the operator's tenant changes them.
    for client in (acme, globex):
        shared = client.post("/v1/models/iris/predict", params={"wait": 20},
                             json={"instances": [[5.1, 3.5, 1.4, 0.2]]}).json()
        assert shared["status"] == "succeeded" and shared["model"] == "iris"
    refused = globex.put("/v1/models/iris/aliases/production", json={"version": 1})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "shared_model"
    refused = globex.post("/v1/models/iris/training-jobs", json={**CHURN_FIT,
                                                                 "dataset_id": mine})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "shared_model"


def test_two_tenants_models_of_one_name_are_two_models(
    acme: httpx.Client, globex: httpx.Client, acme_things: dict[str, str],
) -> None:
    model = acme_things["model"]
    churn = upload(globex, churn_csv(seed=5), "csv", name="globex-churn")
    job = submit(globex, model, dataset_id=churn,
                 **{**CHURN_FIT, "feature_columns": ["age", "usage"]})
    assert wait_training(globex, job["job_id"])["status"] == "succeeded"

    theirs = globex.get(f"/v1/models/{model}").json()
    ours = acme.get(f"/v1/models/{model}").json()
    assert theirs["version"] == 1 and ours["version"] == 1
    assert [f["name"] for f in theirs["features"]] == ["age", "usage"]
    assert [f["name"] for f in ours["features"]] == ["age", "plan", "usage"]
    task = globex.post(f"/v1/models/{model}/predict", params={"wait": 20},
                       json={"instances": [[40, 12.5]]}).json()
    assert task["status"] == "succeeded", task
    # An alias globex sets moves its model alone.
    assert globex.put(f"/v1/models/{model}/aliases/stable",
                      json={"version": 1}).status_code == 200
    assert "stable" in globex.get(f"/v1/models/{model}/versions").json()["aliases"]
    assert "stable" not in acme.get(f"/v1/models/{model}/versions").json()["aliases"]


@pytest.fixture(scope="module")
def batch_worker(stack_env: dict[str, str], logs: Path) -> Iterator[ServiceProcess]:
    """Started by the last test alone: until then, batch jobs stay queued."""
    yield from pool_worker(stack_env, logs, "batch")


def test_batch_workers_score_with_each_tenants_own_model(
    acme: httpx.Client, globex: httpx.Client, acme_things: dict[str, str],
    batch_worker: ServiceProcess,
) -> None:
    """acme's churn takes age, plan and usage; globex's (trained above) age and usage: each
    job is scored by its tenant's artifact, read from its tenant's part of the store."""
    model = acme_things["model"]
    churn = acme_things["churn_dataset"]
    theirs = upload(globex, churn_csv(seed=6), "csv", name="globex-churn-2")
    for client, dataset in ((acme, churn), (globex, theirs)):
        job = wait_job(client, submit_job(client, dataset, model)["job_id"])
        assert job["status"] == "succeeded", job
        assert job["model"] == model and job["version"] == 1
        assert job["progress"]["rows_done"] == 300 and job["progress"]["rows_failed"] == 0
        lines = client.get(f"/v1/batch-jobs/{job['job_id']}/results").text.splitlines()
        assert len(lines) == 301 and {line.rsplit(",", 1)[-1] for line in lines[1:]} <= {
            '"yes"', '"no"'}
