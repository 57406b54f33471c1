"""The number KEDA scales on, computed from the rendered triggers against a live Redis.

KEDA's redis scaler reads each trigger's ``listName`` by the key's type (LLEN for a list,
HLEN for a hash, SCARD, ZCARD; 0 when the key is absent) and the ScaledObject's formula
adds them up. With workers holding tasks, that must equal the tasks waiting plus the tasks
the workers hold, where Celery's list alone reads low.
"""

from __future__ import annotations

import ast
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis
from chart.manifests import (
    argv,
    backlog_terms,
    scaled_objects,
    scenario_objects,
    worker_deployments,
)
from processes import service_env, start_api, start_worker

from services.cli.redis_server import free_port
from services.common import keys
from services.common.messages import PREDICT_TASK, build_message
from services.common.records import SUBMIT_SCRIPT, new_record, submit_args

_LENGTH_BY_TYPE = {"list": "LLEN", "hash": "HLEN", "set": "SCARD", "zset": "ZCARD"}


def keda_length(client: redis.Redis, key: str) -> int:
    kind = client.type(key).decode()
    command = _LENGTH_BY_TYPE.get(kind)
    return int(client.execute_command(command, key)) if command else 0


def evaluate(formula: str, values: dict[str, int]) -> int:
    """A sum of trigger names, the only shape of formula the chart writes."""

    def walk(node: ast.expr) -> int:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return walk(node.left) + walk(node.right)
        if isinstance(node, ast.Name):
            return values[node.id]
        raise ValueError(f"unexpected formula {formula!r}")

    return walk(ast.parse(formula, mode="eval").body)


def keda_backlog(client: redis.Redis, scaled_object: dict) -> tuple[int, dict[str, int]]:
    terms, formula = backlog_terms(scaled_object)
    values = {name: keda_length(client, key) for name, key in terms}
    return evaluate(formula, values), values


@pytest.mark.parametrize("pool", ["inference", "batch", "training"])
def test_empty_pool_scales_on_zero(redis_server, pool: str) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    client.delete(pool, f"inferq:unacked:{pool}")
    backlog, _ = keda_backlog(client, scaled_objects(scenario_objects("default"))[pool])
    assert backlog == 0


def test_backlog_counts_waiting_and_held_tasks(
    redis_server, model_store: Path, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    client = redis_server.client()
    client.flushdb()
    env = service_env(redis_server.url, model_store)
    port = free_port()
    api = start_api(env, port, tmp_path)
    worker = start_worker(env, tmp_path, concurrency=2)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            ids = [http.post("/v1/models/sleepy/predict", json={"instances": [[1.5, i]]}).json()
                   ["task_id"] for i in range(6)]
            # Sampled once the consumer has stopped pulling: between its BLMOVE and the
            # write to the unacked hash, a message being delivered sits in its pulling list,
            # which the backlog does not count.
            deadline = time.monotonic() + 15
            previous = -1
            while (held := client.hlen("inferq:unacked:inference")) < 2 or held != previous:
                assert time.monotonic() < deadline, "the worker never settled"
                previous = held
                time.sleep(0.2)
            backlog, values = keda_backlog(client, scaled_objects(scenario_objects("default"))
                                           ["inference"])
            statuses = [http.get(f"/v1/tasks/{i}").json()["status"] for i in ids]
            for task_id in ids:
                http.get(f"/v1/tasks/{task_id}", params={"wait": 30})
    finally:
        worker.stop()
        api.stop()
    unfinished = sum(s in ("queued", "running") for s in statuses)
    assert unfinished == 6
    assert values["inflight"] >= 2 and backlog == unfinished
    # What Celery's list alone shows: too low while workers are busy.
    assert values["waiting"] < unfinished


def enqueue(client: redis.Redis, queue: str, model: str, row: list[float]) -> str:
    """A task written straight to ``queue`` the way the API writes one: record, message."""
    task_id = str(uuid.uuid4())
    now = time.time()
    record = new_record(model=model, version=1, queue=queue, rows=1, trace_id=None, now=now)
    message = build_message(PREDICT_TASK, task_id, queue, {
        "task_id": task_id, "model": model, "version": 1, "rows": [row],
        "return_probabilities": False, "submitted_at": now,
    })
    client.register_script(SUBMIT_SCRIPT)(keys=[keys.task_key(task_id), keys.queue_key(queue)],
                                          args=submit_args(3600, message, record))
    return task_id


def _worker_options(scenario: str, pool: str) -> tuple[str, tuple[str, ...]]:
    """The queue a pool's rendered worker consumes, and its --kind and --queue options."""
    (container,) = worker_deployments(scenario_objects(scenario))[pool]["spec"]["template"][
        "spec"]["containers"]
    args = argv(container)
    queue = args[args.index("--queue") + 1]
    return queue, ("--kind", args[args.index("--kind") + 1], "--queue", queue)


@pytest.mark.parametrize(("scenario", "pool"), [
    ("default", "batch"),
    ("default", "training"),
    # A queue named apart from its pool, and an added pool.
    ("production", "training"),
    ("production", "inference-large"),
])
def test_backlog_of_the_other_pools_counts_held_tasks(
    redis_server, model_store: Path, tmp_path: Path, scenario: str, pool: str  # type: ignore[no-untyped-def]
) -> None:
    client = redis_server.client()
    client.flushdb()
    env = service_env(redis_server.url, model_store)
    queue, options = _worker_options(scenario, pool)
    worker = start_worker(env, tmp_path, pool=pool, concurrency=2, extra=options)
    try:
        ids = [enqueue(client, queue, "sleepy", [1.5, i]) for i in range(5)]
        deadline = time.monotonic() + 15
        previous = -1
        while (held := client.hlen(keys.unacked_key(queue))) < 2 or held != previous:
            assert time.monotonic() < deadline, "the worker never settled"
            previous = held
            time.sleep(0.2)
        backlog, values = keda_backlog(client, scaled_objects(scenario_objects(scenario))[pool])
        statuses = [client.hget(keys.task_key(i), "status") for i in ids]
        deadline = time.monotonic() + 30
        while any(client.hget(keys.task_key(i), "status") != b"succeeded" for i in ids):
            assert time.monotonic() < deadline, "the pool never finished its tasks"
            time.sleep(0.2)
    finally:
        worker.stop()
    unfinished = sum(s in (b"queued", b"running") for s in statuses)
    assert unfinished == 5
    assert values["inflight"] >= 2 and backlog == unfinished
    assert values["waiting"] < unfinished
