"""The end of a tenant's task or job reaches that tenant's waiting requests only.

Two API processes with authentication on, one Redis, two tenants. Tenant acme's task (on
the queue ``parked``, which no worker takes) and batch job (no batch worker) stay queued
until the test ends them. While acme waits for them, globex waits for the same ids on both
processes, the one acme waits on among them: globex's waits answer at once the 404 of an
id that does not exist, name no channel in the record, and are woken by nothing; acme's
wait answers the end.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis
from job_client import iris_csv, iris_rows, submit_job, upload
from processes import ServiceProcess, auth_on, create_key, service_env, start_api
from task_events import Events, channel_of, notify_of, until_registered

from services.cli.redis_server import free_port
from services.common import keys
from services.common.records import FINISH_SCRIPT, Status, finish_args, task_end
from services.common.storage import Storage

PARKED_ROW = [0.0] * 10  # diabetes, on the queue nobody consumes


@pytest.fixture(scope="module")
def stack_env(redis_server, model_store, storage: Storage) -> dict[str, str]:  # type: ignore[no-untyped-def]
    redis_server.client().flushdb()
    return auth_on(service_env(redis_server.url, model_store, INFERQ_STORAGE_URL=storage.url,
                               INFERQ_MODEL_QUEUES=json.dumps({"diabetes": "parked"})))


@pytest.fixture(scope="module")
def api_b(stack_env: dict[str, str], logs: Path) -> Iterator[ServiceProcess]:
    process = start_api(stack_env, free_port(), logs)
    yield process
    process.stop()


def url_of(api: ServiceProcess) -> str:
    return f"http://127.0.0.1:{api.args[api.args.index('--port') + 1]}"


@pytest.fixture(scope="module")
def clients(stack_env: dict[str, str], api: ServiceProcess,
            api_b: ServiceProcess) -> Iterator[dict[str, httpx.Client]]:
    """``acme`` on the first API; ``globex`` on the first and ``globex_b`` on the second."""
    keys_ = {t: create_key(stack_env, t, "predict,jobs")["key"] for t in ("acme", "globex")}
    made = {name: httpx.Client(base_url=url_of(where), timeout=40,
                               headers={"Authorization": f"Bearer {keys_[tenant]}"})
            for name, tenant, where in (("acme", "acme", api), ("globex", "globex", api),
                                        ("globex_b", "globex", api_b))}
    yield made
    for client in made.values():
        client.close()


@pytest.fixture
def store(redis_server) -> redis.Redis:  # type: ignore[no-untyped-def]
    client: redis.Redis = redis_server.client()
    return client


def others_wait(clients: dict[str, httpx.Client], path: str, theirs: str) -> None:
    """globex waits 10 s for acme's ``theirs`` on both processes: each answers at once, as
    for an id that does not exist."""
    fresh = str(uuid.uuid4())
    for name in ("globex", "globex_b"):
        started = time.monotonic()
        answer = clients[name].get(f"{path}/{theirs}", params={"wait": 10})
        assert time.monotonic() - started < 3, "the other tenant's wait waited"
        unknown = clients[name].get(f"{path}/{fresh}", params={"wait": 10})
        assert answer.status_code == unknown.status_code == 404, answer.text
        assert answer.content.replace(theirs.encode(), fresh.encode()) == unknown.content


def test_a_tasks_end_reaches_its_tenants_wait_alone(
        clients: dict[str, httpx.Client], store: redis.Redis, api: ServiceProcess) -> None:
    task = clients["acme"].post("/v1/models/diabetes/predict",
                                json={"instances": [PARKED_ROW]}).json()
    assert task["status"] == "queued", task
    task_id = task["task_id"]
    events = Events(store, keys.events_channel("*"))
    with ThreadPoolExecutor(1) as pool:
        waiting: Future[httpx.Response] = pool.submit(
            clients["acme"].get, f"/v1/tasks/{task_id}", params={"wait": 20})
        until_registered(store, task_id)
        others_wait(clients, "/v1/tasks", task_id)
        assert notify_of(store, task_id) == channel_of(api)
        finish = store.register_script(FINISH_SCRIPT)
        # As a worker that ran it in its main process ends it: from queued.
        assert finish(keys=[keys.task_key(task_id)], args=finish_args(600, [task_end(
            task_id, Status.SUCCEEDED, {"predictions": [42.0]}, time.time())])) == [b"succeeded"]
        done = waiting.result(timeout=20)
    assert done.status_code == 200 and done.json()["status"] == "succeeded", done.text
    assert done.json()["result"] == {"predictions": [42.0]}
    assert events.seen() == {task_id: [channel_of(api)]}
    events.close()


def test_a_jobs_end_reaches_its_tenants_wait_alone(
        clients: dict[str, httpx.Client], store: redis.Redis, api: ServiceProcess) -> None:
    dataset = upload(clients["acme"], iris_csv(iris_rows(20)), "csv")
    job_id = submit_job(clients["acme"], dataset)["job_id"]  # No batch worker: it waits.
    with ThreadPoolExecutor(1) as pool:
        waiting: Future[httpx.Response] = pool.submit(
            clients["acme"].get, f"/v1/batch-jobs/{job_id}", params={"wait": 20})
        until_registered(store, job_id, keys.job_key(job_id))
        others_wait(clients, "/v1/batch-jobs", job_id)
        assert notify_of(store, job_id, keys.job_key(job_id)) == channel_of(api)
        # globex cannot end it either.
        assert clients["globex"].delete(f"/v1/batch-jobs/{job_id}").status_code == 404
        assert clients["acme"].delete(f"/v1/batch-jobs/{job_id}").status_code == 200
        ended = waiting.result(timeout=20)
    assert ended.status_code == 200 and ended.json()["status"] == "cancelled", ended.text
