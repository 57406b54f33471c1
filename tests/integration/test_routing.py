"""Routing: a model served by a pool of its own reaches that pool's queue and its workers.

The API is told the deployment's pools and routes as the chart tells it; only the added
pool has a worker, so a prediction of any other model stays in the default queue.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from processes import ServiceProcess, service_env, start_api, start_worker

from services.cli.redis_server import free_port
from services.common import keys

ROUTES = {
    "INFERQ_MODEL_QUEUES": json.dumps({"breast-cancer": "inference-large"}),
    "INFERQ_POOL_QUEUES": json.dumps({"inference": "inference",
                                      "inference-large": "inference-large"}),
}


@pytest.fixture(scope="module")
def routed(redis_server, model_store: Path,  # type: ignore[no-untyped-def]
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    redis_server.client().flushdb()
    env = service_env(redis_server.url, model_store, **ROUTES)
    logs = tmp_path_factory.mktemp("routing")
    port = free_port()
    api: ServiceProcess = start_api(env, port, logs)
    worker = start_worker(env, logs, pool="inference-large",
                          extra=("--kind", "inference", "--queue", "inference-large"))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        worker.stop()
        api.stop()
        redis_server.client().flushdb()


def test_a_routed_model_runs_on_its_pool(routed: httpx.Client) -> None:
    features = routed.get("/v1/models/breast-cancer").json()["features"]
    response = routed.post("/v1/models/breast-cancer/predict?wait=10",
                           json={"instances": [[1.0] * len(features)]})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded"
    assert len(response.json()["result"]["predictions"]) == 1


def test_other_models_wait_in_the_default_queue(routed: httpx.Client, redis_server) -> None:  # type: ignore[no-untyped-def]
    response = routed.post("/v1/models/iris/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert response.status_code == 202
    task_id = response.json()["task_id"]
    assert redis_server.client().llen(keys.queue_key("inference")) == 1
    assert redis_server.client().llen(keys.queue_key("inference-large")) == 0
    cancelled = routed.delete(f"/v1/tasks/{task_id}")
    assert cancelled.json()["status"] == "cancelled"
    metrics = routed.get("/metrics").text
    assert ('inferq_tasks_finished_total{model="iris",queue="inference",status="cancelled"} 1.0'
            in metrics)
    assert 'inferq_tasks_submitted_total{model="iris",queue="inference"} 1.0' in metrics


def test_pools_are_the_deployments_own(routed: httpx.Client, redis_server) -> None:  # type: ignore[no-untyped-def]
    routed.post("/v1/models/iris/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
    pools = {p["name"]: p for p in routed.get("/v1/pools").json()["pools"]}
    assert set(pools) == {"inference", "inference-large"}
    assert pools["inference-large"]["queue"] == "inference-large"
    waiting = redis_server.client().llen(keys.queue_key("inference"))
    assert pools["inference"]["waiting"] == waiting >= 1
