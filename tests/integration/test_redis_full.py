"""A full Redis (``maxmemory`` reached, ``noeviction``): new tasks are refused with a clear
503, and everything already accepted still runs, is read, cancelled, handed back and
restored. Nothing is lost and no process dies of it.

Redis is made full by setting its ``maxmemory`` to one byte: every command that may add
data is then refused, as when the data set has grown to the limit.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from processes import start_worker
from task_client import IRIS_ROW, submit, wait_all, wait_status

QUEUE = "inference"
UNACKED = "inferq:unacked:inference"


@pytest.fixture
def store(redis_server) -> Iterator[redis.Redis]:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    client.config_set("maxmemory", 0)
    client.flushdb()
    yield client
    client.config_set("maxmemory", 0)


def fill(store: redis.Redis) -> None:
    store.config_set("maxmemory", 1)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        store.set("inferq:test:probe", "x")


def test_a_full_redis_refuses_new_tasks_and_serves_the_accepted_ones(
    client: httpx.Client, stack_env: dict[str, str], logs: Path, store: redis.Redis
) -> None:
    accepted = [submit(client, "iris", [IRIS_ROW]) for _ in range(6)]
    doomed = accepted.pop()
    fill(store)
    keys = store.dbsize()

    refused = client.post("/v1/models/iris/predict?wait=5", json={"instances": [IRIS_ROW]})
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert error["code"] == "redis_full"
    assert "maxmemory" in error["message"]
    assert refused.headers["retry-after"] == "5"
    assert store.dbsize() == keys and store.llen(QUEUE) == 6  # Nothing of it was written.

    # The API reports how full Redis is (the alerts InferqRedisMemoryHigh and
    # InferqRedisFull read these).
    deadline = time.monotonic() + 12
    while "inferq_redis_memory_max_bytes 1.0" not in client.get("/metrics").text:
        assert time.monotonic() < deadline, "the API never reported Redis's maxmemory"
        time.sleep(0.2)
    used = re.search(r"^inferq_redis_memory_used_bytes (\S+)$", client.get("/metrics").text, re.M)
    assert used and float(used[1]) > 1

    cancelled = client.delete(f"/v1/tasks/{doomed}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"

    # A worker starting now (KEDA adding one) binds its queue, takes, runs, finishes and
    # acknowledges every accepted task; clients wait for them (GET ?wait registers).
    worker = start_worker(stack_env, logs)
    try:
        tasks = wait_all(client, accepted, timeout=30)
        assert [t["status"] for t in tasks] == ["succeeded"] * 5
        assert [t["result"]["predictions"] for t in tasks] == [["setosa"]] * 5
        assert store.llen(QUEUE) == 0 and store.hlen(UNACKED) == 0
        assert worker.process.poll() is None, worker.log()[-3000:]
        assert "Traceback" not in worker.log()
        # Still full, still refusing; accepted again once there is room.
        assert client.post("/v1/models/iris/predict", json={"instances": [IRIS_ROW]}) \
            .status_code == 503
        store.config_set("maxmemory", 0)
        again = submit(client, "iris", [IRIS_ROW])
        assert wait_all(client, [again])[0]["status"] == "succeeded"
    finally:
        worker.stop()


def test_a_full_redis_loses_nothing_when_workers_stop_or_die(
    client: httpx.Client, stack_env: dict[str, str], logs: Path, store: redis.Redis
) -> None:
    task_ids = [submit(client, "sleepy", [[1.0, i]]) for i in range(5)]

    # A scale-in while full: the running task finishes, the held ones go back at once.
    patient = dict(stack_env, INFERQ_VISIBILITY_TIMEOUT="600")
    worker = start_worker(patient, logs)
    wait_status(client, task_ids[0], "running")
    deadline = time.monotonic() + 10
    while store.hlen(UNACKED) < 5:
        assert time.monotonic() < deadline, "the worker never held every task"
        time.sleep(0.05)
    fill(store)
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(timeout=30) == 0, worker.log()[-3000:]
    assert client.get(f"/v1/tasks/{task_ids[0]}").json()["status"] == "succeeded"
    assert store.hlen(UNACKED) == 0 and store.llen(QUEUE) == 4

    # A worker killed while full: what it held comes back after the visibility timeout.
    worker = start_worker(stack_env, logs)
    wait_status(client, task_ids[1], "running")
    assert store.hlen(UNACKED) >= 1
    worker.kill()
    replacement = start_worker(stack_env, logs)
    try:
        tasks = wait_all(client, task_ids, timeout=90)
        assert [t["status"] for t in tasks] == ["succeeded"] * 5
        assert [t["result"]["predictions"] for t in tasks] == [[1.0 + i] for i in range(5)]
        assert store.hlen(UNACKED) == 0 and store.llen(QUEUE) == 0
        assert replacement.process.poll() is None, replacement.log()[-3000:]
    finally:
        replacement.stop()
