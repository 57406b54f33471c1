"""The executor against real Redis: starts overlapping the model call, cancels, retries."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis

from ml.store import ModelCache
from services.common import keys
from services.common.pools import INFERENCE
from services.common.records import CANCEL_SCRIPT, Status, new_record
from services.worker.execution import Executor, PredictRequest
from services.worker.task_errors import MAX_ATTEMPTS

QUEUE = INFERENCE.queue


@pytest.fixture
def store(clean_redis: redis.Redis) -> redis.Redis:
    return clean_redis


@pytest.fixture
def executor(store: redis.Redis, model_store: Path) -> Executor:
    return Executor(store, ModelCache(model_store), 3600, QUEUE, INFERENCE.kind)


def held(store: redis.Redis, x0: float, x1: float, **fields: str) -> tuple[PredictRequest, str]:
    """A queued ``sleepy`` task as a worker holds it: its record, and its message in the
    unacked hash under the returned delivery tag."""
    request = PredictRequest(task_id=f"task-{x1}", model="sleepy", version=1, rows=[[x0, x1]])
    record = new_record(model="sleepy", version=1, queue=QUEUE, rows=1, trace_id=None,
                        now=time.time())
    store.hset(keys.task_key(request.task_id), mapping={**record, **fields})
    tag = f"tag-{x1}"
    store.hset(keys.unacked_key(QUEUE), tag, "[]")
    store.zadd(keys.unacked_index_key(QUEUE), {tag: time.time()})
    return request, tag


def cancel(store: redis.Redis, task_id: str) -> list:
    """The cancel script's (cancelled now?, status), its queue left out."""
    script = store.register_script(CANCEL_SCRIPT)
    return [v.decode() if isinstance(v, bytes) else v for v in script(
        keys=[keys.task_key(task_id)],
        args=[repr(time.time()), 3600, task_id, "default"])][:2]


def record(store: redis.Redis, task_id: str) -> dict[str, str]:
    raw = store.hgetall(keys.task_key(task_id))
    return {k.decode(): v.decode() for k, v in raw.items()}


def test_a_task_cancelled_before_its_batch_starts_gets_no_result(
    store: redis.Redis, executor: Executor
) -> None:
    """Its start is refused while the batch's model call runs: the call's answer for its
    rows is dropped, its neighbours get theirs, and every message is acknowledged."""
    (first, a), (doomed, b), (last, c) = (held(store, 0.0, x1) for x1 in (1.0, 2.0, 3.0))
    assert cancel(store, doomed.task_id) == [1, "cancelled"]

    outcomes = executor.run([first, doomed, last], [a, b, c])

    assert [o.request.task_id for o in outcomes] == [first.task_id, last.task_id]
    assert record(store, first.task_id)["result"] == '{"predictions":[1.0]}'
    assert record(store, last.task_id)["result"] == '{"predictions":[3.0]}'
    gone = record(store, doomed.task_id)
    assert gone["status"] == "cancelled"
    assert "result" not in gone and "started_at" not in gone
    assert store.hlen(keys.unacked_key(QUEUE)) == 0
    assert store.zcard(keys.unacked_index_key(QUEUE)) == 0


def test_a_task_is_running_before_its_model_call_so_it_cannot_be_cancelled_then(
    store: redis.Redis, executor: Executor
) -> None:
    request, tag = held(store, 0.5, 1.0)
    worker = threading.Thread(target=executor.run, args=([request], [tag]))
    worker.start()
    time.sleep(0.25)  # Inside the half-second model call.
    try:
        assert cancel(store, request.task_id) == [0, "running"]
    finally:
        worker.join()
    done = record(store, request.task_id)
    assert done["status"] == "succeeded" and done["result"] == '{"predictions":[1.5]}'


def test_a_redelivered_task_tried_too_often_fails_without_calling_its_model(
    store: redis.Redis, executor: Executor
) -> None:
    """Its workers died running it: calling its model again could kill this one too."""
    request, tag = held(store, 5.0, 1.0, status="running", attempts=str(MAX_ATTEMPTS))
    request.redelivered = True

    started = time.monotonic()
    (outcome,) = executor.run([request], [tag])

    assert time.monotonic() - started < 2, "the model was called"
    assert outcome.status is Status.FAILED
    done = record(store, request.task_id)
    assert done["status"] == "failed" and "WorkerLost" in done["error"]
    assert store.hlen(keys.unacked_key(QUEUE)) == 0
