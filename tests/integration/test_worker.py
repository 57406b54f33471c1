"""Workers against real Redis: cancellation, integrity, failures, and nothing lost."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from processes import ServiceProcess, start_worker
from task_client import IRIS_ROW, submit, wait_all, wait_status

from ml.importer import import_model


@pytest.fixture(autouse=True)
def empty_redis(redis_server) -> Iterator[None]:  # type: ignore[no-untyped-def]
    redis_server.client().flushdb()
    yield


def test_cancelled_task_never_runs(
    client: httpx.Client, stack_env: dict[str, str], logs: Path
) -> None:
    first, doomed, last = (submit(client, "iris", [IRIS_ROW]) for _ in range(3))
    cancelled = client.delete(f"/v1/tasks/{doomed}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    worker = start_worker(stack_env, logs)
    try:
        a, b = wait_all(client, [first, last])
        assert a["status"] == b["status"] == "succeeded"
        task = client.get(f"/v1/tasks/{doomed}").json()
        assert task["status"] == "cancelled" and task["started_at"] is None
        assert task.get("result") is None
        assert client.delete(f"/v1/tasks/{doomed}").status_code == 409
    finally:
        worker.stop()


def test_a_delete_racing_the_worker_cancels_or_answers_409_never_both(
    client: httpx.Client, stack_env: dict[str, str], logs: Path
) -> None:
    """Each task is cancelled before it starts, never to get a result, or its DELETE
    answers 409 and it runs to its result."""
    worker = start_worker(stack_env, logs)
    try:
        raced = []
        for _ in range(40):
            task_id = submit(client, "iris", [IRIS_ROW])
            raced.append((task_id, client.delete(f"/v1/tasks/{task_id}").status_code))
        tasks = wait_all(client, [task_id for task_id, _ in raced])
        for (_, code), task in zip(raced, tasks, strict=True):
            if code == 200:
                assert task["status"] == "cancelled" and task["started_at"] is None
                assert task.get("result") is None
            else:
                assert code == 409
                assert task["status"] == "succeeded" and task["result"]["predictions"] == ["setosa"]
    finally:
        worker.stop()


def test_tampered_artifact_is_refused(
    client: httpx.Client, model_store: Path, stack_env: dict[str, str], logs: Path
) -> None:
    import_model(model_store, model_store / "iris" / "1" / "model.joblib", "iris-tampered")
    artifact = model_store / "iris-tampered" / "1" / "model.joblib"
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    worker = start_worker(stack_env, logs)
    try:
        (task,) = wait_all(client, [submit(client, "iris-tampered", [IRIS_ROW])])
        assert task["status"] == "failed"
        assert task["error"]["type"] == "IntegrityError"
        assert "sha256" in task["error"]["message"]
        (ok,) = wait_all(client, [submit(client, "iris", [IRIS_ROW])])
        assert ok["status"] == "succeeded"
    finally:
        worker.stop()


def test_model_exception_fails_the_task_with_a_readable_error(
    client: httpx.Client, stack_env: dict[str, str], logs: Path
) -> None:
    worker = start_worker(stack_env, logs)
    try:
        (task,) = wait_all(client, [submit(client, "sleepy", [[0, -1]])])
        assert task["status"] == "failed"
        assert task["error"] == {"type": "ValueError", "message": "x1 must not be negative"}
        assert "Traceback" not in str(task)
    finally:
        worker.stop()


def test_soft_time_limit_fails_the_task(
    client: httpx.Client, stack_env: dict[str, str], logs: Path
) -> None:
    worker = start_worker(stack_env, logs)
    try:
        (task,) = wait_all(client, [submit(client, "sleepy", [[4.5, 0]])])
        assert task["status"] == "failed"
        assert task["error"]["type"] == "SoftTimeLimitExceeded"
    finally:
        worker.stop()


def test_sigkilled_worker_loses_nothing(
    client: httpx.Client, stack_env: dict[str, str], logs: Path, redis_server
) -> None:  # type: ignore[no-untyped-def]
    task_ids = [submit(client, "sleepy", [[1.0, i]]) for i in range(6)]
    worker = start_worker(stack_env, logs, concurrency=2)
    wait_status(client, task_ids[0], "running")
    held = redis_server.client().hlen("inferq:unacked:inference")
    assert held >= 1
    worker.kill()
    with answered_by_a_new_worker(client, stack_env, logs, task_ids, timeout=90,
                                  concurrency=2) as tasks:
        assert [t["status"] for t in tasks] == ["succeeded"] * 6
        assert [t["result"]["predictions"] for t in tasks] == [[1.0 + i] for i in range(6)]
        assert redis_server.client().hlen("inferq:unacked:inference") == 0


def test_redis_restart_loses_nothing(
    client: httpx.Client, stack_env: dict[str, str], logs: Path, redis_server
) -> None:  # type: ignore[no-untyped-def]
    waiting = [submit(client, "iris", [IRIS_ROW]) for _ in range(5)]
    redis_server.restart()
    deadline = time.monotonic() + 15
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    worker = start_worker(stack_env, logs)
    try:
        after = [submit(client, "iris", [IRIS_ROW]) for _ in range(3)]
        tasks = wait_all(client, waiting + after)
        assert [t["status"] for t in tasks] == ["succeeded"] * 8
    finally:
        worker.stop()


def test_worker_survives_redis_restart(
    client: httpx.Client, stack_env: dict[str, str], logs: Path, redis_server
) -> None:  # type: ignore[no-untyped-def]
    worker: ServiceProcess = start_worker(stack_env, logs)
    try:
        wait_all(client, [submit(client, "iris", [IRIS_ROW])])
        redis_server.restart()
        deadline = time.monotonic() + 15
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        tasks = wait_all(client, [submit(client, "iris", [IRIS_ROW]) for _ in range(3)])
        assert [t["status"] for t in tasks] == ["succeeded"] * 3
    finally:
        worker.stop()


def test_sigterm_hands_back_held_tasks_at_once(
    client: httpx.Client, stack_env: dict[str, str], logs: Path, redis_server
) -> None:  # type: ignore[no-untyped-def]
    """A scale-in: Kubernetes sends SIGTERM to the worker's main process only.

    The running task finishes; the tasks the worker holds but has not started go back to
    the queue at once, not when it exits nor after the visibility timeout (set long here
    to tell them apart), so the pods that remain take them while it finishes.
    """
    env = dict(stack_env, INFERQ_VISIBILITY_TIMEOUT="600")
    task_ids = [submit(client, "sleepy", [[2.0, i]]) for i in range(5)]
    worker = start_worker(env, logs)
    wait_status(client, task_ids[0], "running")
    store = redis_server.client()
    deadline = time.monotonic() + 10
    while store.hlen("inferq:unacked:inference") < 5:
        assert time.monotonic() < deadline, "the worker never held every task"
        time.sleep(0.05)
    worker.process.send_signal(signal.SIGTERM)
    wait_until(lambda: store.llen("inference") == 4, 2, "held tasks handed back")
    assert worker.process.poll() is None  # Still finishing the running task.
    assert worker.process.wait(timeout=10) == 0
    assert store.hlen("inferq:unacked:inference") == 0
    assert client.get(f"/v1/tasks/{task_ids[0]}").json()["status"] == "succeeded"
    with answered_by_a_new_worker(client, env, logs, task_ids) as tasks:
        assert [t["status"] for t in tasks] == ["succeeded"] * 5
        assert [t["result"]["predictions"] for t in tasks] == [[2.0 + i] for i in range(5)]


def test_sigterm_while_a_child_has_not_taken_its_job_exits_at_once(
    client: httpx.Client, stack_env: dict[str, str], logs: Path, redis_server
) -> None:  # type: ignore[no-untyped-def]
    """A job written to a child that has not taken it yet when SIGTERM comes still runs
    there: the worker reads its result and exits once it is done, not 30 s later (the
    child waited for the main process to read its result, which it no longer did)."""
    env = dict(stack_env, INFERQ_VISIBILITY_TIMEOUT="600")
    store = redis_server.client()
    worker = start_worker(env, logs)
    (child,) = pool_children(worker)
    os.kill(child, signal.SIGSTOP)
    try:
        task_ids = [submit(client, "sleepy", [[0.1, i]]) for i in range(3)]
        wait_until(lambda: store.hlen("inferq:unacked:inference") == 3, 10, "tasks held")
        time.sleep(0.3)  # The first one's job written into the stopped child's pipe.
        worker.process.send_signal(signal.SIGTERM)
        wait_until(lambda: store.llen("inference") == 2, 2, "unstarted tasks handed back")
    finally:
        os.kill(child, signal.SIGCONT)
    resumed = time.monotonic()
    assert worker.process.wait(timeout=30) == 0
    assert time.monotonic() - resumed < 6
    assert client.get(f"/v1/tasks/{task_ids[0]}").json()["status"] == "succeeded"
    assert store.hlen("inferq:unacked:inference") == 0
    with answered_by_a_new_worker(client, env, logs, task_ids) as tasks:
        assert [t["result"]["predictions"] for t in tasks] == [[0.1 + i] for i in range(3)]


def test_a_message_caught_between_pop_and_hold_comes_back(
    client: httpx.Client, stack_env: dict[str, str], logs: Path, redis_server
) -> None:  # type: ignore[no-untyped-def]
    """A worker takes a message off its queue into its own pulling list (BLMOVE), then records
    it as held. One killed between the two leaves the message in that list: the live
    consumers, which say every few seconds that they are alive, put back the message of
    one that has stopped saying so."""
    store = redis_server.client()
    task_id = submit(client, "iris", [IRIS_ROW])
    store.lmove("inference", "inferq:pulling:inference:dead", "RIGHT", "LEFT")
    store.zadd("inferq:pullers:inference", {"dead": 0})
    assert store.llen("inference") == 0

    worker = start_worker(stack_env, logs)
    try:
        (task,) = wait_all(client, [task_id], timeout=30)
        assert task["status"] == "succeeded"
        assert not store.exists("inferq:pulling:inference:dead")
        pullers = store.zrange("inferq:pullers:inference", 0, -1)
        assert b"dead" not in pullers and len(pullers) == 1  # The live worker's consumer.
        # What the live worker pulls passes through its own list and leaves it.
        (again,) = wait_all(client, [submit(client, "iris", [IRIS_ROW])])
        assert again["status"] == "succeeded"
        assert store.keys("inferq:pulling:*") == []
    finally:
        worker.stop()


def test_a_worker_killed_in_its_first_second_of_pulling_loses_nothing(
    client: httpx.Client, stack_env: dict[str, str], logs: Path, redis_server
) -> None:  # type: ignore[no-untyped-def]
    """A consumer is known to the sweepers before its first pull: a worker killed with a
    message in its pulling list the moment it started consuming leaves it to the others."""
    worker = start_worker(stack_env, logs)
    task_id = strand_a_message(client, worker, redis_server.client())
    with answered_by_a_new_worker(client, stack_env, logs, [task_id]) as (task,):
        assert task["status"] == "succeeded" and task["result"]["predictions"] == [0.0]
        assert redis_server.client().keys("inferq:pulling:*") == []


def test_a_worker_killed_right_after_a_redis_restart_loses_nothing(
    client: httpx.Client, stack_env: dict[str, str], logs: Path, redis_server
) -> None:  # type: ignore[no-untyped-def]
    """After a Redis restart a worker consumes on a new connection, as a new consumer: one
    killed the moment it pulls again leaves its message to the others too."""
    worker = start_worker(stack_env, logs)
    store = redis_server.client()
    wait_until(lambda: pulls(store), 10, "a pull")
    redis_server.restart()
    store = redis_server.client()
    wait_until(lambda: client.get("/readyz").status_code == 200, 15, "the API ready")
    task_id = strand_a_message(client, worker, store)
    with answered_by_a_new_worker(client, stack_env, logs, [task_id]) as (task,):
        assert task["status"] == "succeeded" and task["result"]["predictions"] == [0.0]


def test_what_a_dead_worker_was_pulling_comes_back_with_no_worker_left(
    client: httpx.Client, stack_env: dict[str, str], logs: Path, redis_server
) -> None:  # type: ignore[no-untyped-def]
    """A pool at zero has no worker to sweep, and KEDA counts only the queue and the held
    hash: the API puts the message back in the queue, where KEDA sees it."""
    store = redis_server.client()
    task_id = strand_a_message(client, start_worker(stack_env, logs), store)
    wait_until(lambda: store.llen("inference") == 1, 20, "the message back in its queue")
    assert store.keys("inferq:pulling:*") == []
    worker = start_worker(stack_env, logs)
    try:
        (task,) = wait_all(client, [task_id], timeout=30)
        assert task["status"] == "succeeded"
    finally:
        worker.stop()


def strand_a_message(client: httpx.Client, worker: ServiceProcess, store: redis.Redis) -> str:
    """Stop ``worker`` while its BLMOVE waits, submit a task (BLMOVE takes it into the
    worker's pulling list, the worker never reads the reply), then SIGKILL it; the task."""
    wait_until(lambda: pulls(store), 10, "the worker's first pull")
    os.killpg(worker.pid, signal.SIGSTOP)
    try:
        task_id = submit(client, "sleepy", [[0.0, 0.0]])
        wait_until(lambda: store.keys("inferq:pulling:inference:*"), 5, "a pulled message")
        assert store.llen("inference") == 0
        (pulling,) = store.keys("inferq:pulling:inference:*")
        consumer = pulling.decode().rsplit(":", 1)[1]
        # Known to the sweepers from its first pull, not from its first restore interval.
        assert store.zscore("inferq:pullers:inference", consumer) is not None
    finally:
        worker.kill()
    return task_id


def pulls(store: redis.Redis) -> bool:
    return any(c.get("cmd") == "blmove" for c in store.client_list())


@contextmanager
def answered_by_a_new_worker(
    client: httpx.Client, env: dict[str, str], logs: Path, task_ids: list[str],
    timeout: float = 30, **worker: Any,
) -> Iterator[list[dict[str, Any]]]:
    """The tasks, terminal, as a worker started now answers them; it runs until the
    ``with`` block ends."""
    replacement = start_worker(env, logs, **worker)
    try:
        yield wait_all(client, task_ids, timeout=timeout)
    finally:
        replacement.stop()


def pool_children(worker: ServiceProcess) -> list[int]:
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
    return [int(pid) for pid in children]


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)
