"""Where a task runs: a lone cheap task in the worker's main process, the rest in children.

The model ``where`` answers the id of the process that called it, so each test reads
where its tasks ran from their results.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import joblib
import pytest
from processes import ServiceProcess, start_worker
from where import WhereRegressor

from ml.importer import import_model

#: Cheap enough to run in the main process whatever else loads the machine meanwhile.
INLINE = {"INFERQ_INLINE_MAX_MS": "100"}
CHEAP = [[0.0, 0.0]]
#: Keeps the worker's only child busy: as ``where-slow``, a model the worker has not timed,
#: it runs in a child.
SLOW = [[1.5, 0.0]]


@pytest.fixture(scope="module", autouse=True)
def where_model(model_store: Path) -> None:
    artifact = model_store.parent / "where.joblib"
    joblib.dump(WhereRegressor(), artifact)
    import_model(model_store, artifact, "where", ["x0", "x1"])
    import_model(model_store, artifact, "where-slow", ["x0", "x1"])


StartWorker = Callable[..., ServiceProcess]


@pytest.fixture
def start(stack_env: dict[str, str], logs: Path) -> Iterator[StartWorker]:
    """Starts workers with ``INLINE`` and the given settings; stops them after the test."""
    started: list[ServiceProcess] = []

    def start_one(**settings: str) -> ServiceProcess:
        started.append(start_worker({**stack_env, **INLINE, **settings}, logs))
        return started[-1]

    yield start_one
    for worker in started:
        worker.stop()


@pytest.fixture(autouse=True)
def empty_redis(redis_server) -> Iterator[None]:  # type: ignore[no-untyped-def]
    redis_server.client().flushdb()
    yield


def run(client: httpx.Client, rows: list, model: str = "where") -> dict:
    """Submit ``rows`` to ``model`` and wait for the finished task."""
    response = client.post(f"/v1/models/{model}/predict", params={"wait": 30},
                           json={"instances": rows})
    assert response.status_code == 200, response.text
    return dict(response.json())


def ran_in(task: dict) -> int:
    assert task["status"] == "succeeded", task
    (pid,) = set(task["result"]["predictions"])
    return int(pid)


def until_inline(client: httpx.Client, worker: ServiceProcess, rows: list = CHEAP,
                 model: str = "where", attempts: int = 3) -> dict:
    """Run ``rows`` until a run is in the worker's main process; that task.

    The worker learns a child's timing of a call when the child's result reaches it, which
    can be just after the client has its answer: each next call waits a moment for that.
    """
    seen = []
    for _ in range(attempts):
        task = run(client, rows, model)
        if ran_in(task) == worker.pid:
            return task
        seen.append(ran_in(task))
        time.sleep(0.1)
    raise AssertionError(f"{model} never ran in the worker's main process ({worker.pid}): "
                         f"ran in {seen}\n{worker.log()[-3000:]}")


def submit(client: httpx.Client, rows: list, model: str = "where") -> str:
    response = client.post(f"/v1/models/{model}/predict", json={"instances": rows})
    assert response.status_code == 202, response.text
    return str(response.json()["task_id"])


def test_a_lone_cheap_task_runs_in_the_main_process(
    client: httpx.Client, api: ServiceProcess, start: StartWorker
) -> None:
    worker = start()
    # Not yet timed: the first call runs in a child, which measures it.
    first = ran_in(run(client, CHEAP))
    assert first != worker.pid
    until_inline(client, worker)
    later = [ran_in(run(client, CHEAP)) for _ in range(5)]
    assert later == [worker.pid] * 5


def test_tasks_in_company_run_in_children(
    client: httpx.Client, api: ServiceProcess, start: StartWorker
) -> None:
    worker = start()
    ran_in(run(client, CHEAP))  # timed: cheap from now on
    blocker = submit(client, SLOW, "where-slow")
    with ThreadPoolExecutor(8) as pool:
        task_ids = list(pool.map(lambda _: submit(client, CHEAP), range(16)))
    tasks = [client.get(f"/v1/tasks/{t}", params={"wait": 30}).json() for t in task_ids]
    where = {ran_in(task) for task in tasks}
    assert worker.pid not in where, "tasks that came together ran in the main process"
    done = client.get(f"/v1/tasks/{blocker}", params={"wait": 30}).json()
    assert ran_in(done) != worker.pid


def test_a_burst_that_reaches_an_idle_worker_at_once_runs_in_children(
    client: httpx.Client, api: ServiceProcess, start: StartWorker
) -> None:
    worker = start()
    ran_in(run(client, CHEAP))
    until_inline(client, worker, CHEAP, "where-slow")
    # Estimated cheap, it runs in the main process and holds its loop for a second:
    # the tasks submitted meanwhile wait in the queue, and reach the worker in one
    # burst when it reads again.
    blocker = submit(client, [[1.0, 0.0]], "where-slow")
    time.sleep(0.2)
    with ThreadPoolExecutor(8) as pool:
        task_ids = list(pool.map(lambda _: submit(client, CHEAP), range(16)))
    done = client.get(f"/v1/tasks/{blocker}", params={"wait": 30}).json()
    assert ran_in(done) == worker.pid
    tasks = [client.get(f"/v1/tasks/{t}", params={"wait": 30}).json() for t in task_ids]
    assert worker.pid not in {ran_in(task) for task in tasks}


def test_inline_off_runs_every_task_in_a_child(
    client: httpx.Client, api: ServiceProcess, start: StartWorker
) -> None:
    worker = start(INFERQ_INLINE_MAX_MS="0")
    where = {ran_in(run(client, CHEAP)) for _ in range(5)}
    assert worker.pid not in where


def test_an_inline_task_past_its_soft_limit_fails_and_the_worker_goes_on(
    client: httpx.Client, api: ServiceProcess, start: StartWorker
) -> None:
    worker = start(INFERQ_SOFT_TIME_LIMIT="1")
    until_inline(client, worker)
    # Estimated cheap, so it runs in the main process; it sleeps past the soft limit.
    started = time.monotonic()
    overrun = run(client, [[3.0, 0.0]])
    assert overrun["status"] == "failed"
    assert overrun["error"]["type"] == "SoftTimeLimitExceeded"
    assert time.monotonic() - started < 2.9
    assert worker.process.poll() is None
    # The overrun counts as the model's cost, so its next calls run in a child, until
    # their timings bring the estimate back under the limit.
    where = [ran_in(run(client, CHEAP)) for _ in range(8)]
    assert where[0] != worker.pid
    assert where[-1] == worker.pid


def test_a_redelivered_task_runs_in_a_child(
    client: httpx.Client, api: ServiceProcess, start: StartWorker,
    redis_server,  # type: ignore[no-untyped-def]
) -> None:
    worker = start()
    held = [submit(client, SLOW, "where-slow")] + [submit(client, CHEAP) for _ in range(3)]
    deadline = time.monotonic() + 15
    while redis_server.client().hlen("inferq:unacked:inference") < len(held):
        assert time.monotonic() < deadline, "the worker never held the tasks"
        time.sleep(0.05)
    worker.kill()
    replacement = start()
    # The killed worker's tasks come back after the visibility timeout, marked
    # redelivered: each runs in a child, where its attempts are counted.
    tasks = [client.get(f"/v1/tasks/{t}", params={"wait": 30}).json() for t in held]
    assert all(ran_in(task) != replacement.pid for task in tasks)
    # The same worker runs a lone cheap task that was never redelivered inline.
    until_inline(client, replacement)


def test_an_inline_task_goes_from_queued_to_its_end_and_a_cancel_meanwhile_wins(
    client: httpx.Client, api: ServiceProcess, start: StartWorker,
    redis_server,  # type: ignore[no-untyped-def]
) -> None:
    worker = start()
    task = until_inline(client, worker)
    assert task["started_at"] is not None and task["finished_at"] >= task["started_at"]
    record = redis_server.client().hgetall(f"inferq:task:{task['task_id']}")
    assert b"attempts" not in record, "an inline task was marked running"

    # Estimated cheap, so it runs in the main process, still queued in Redis: a DELETE
    # during its call cancels it, and its prediction is dropped.
    doomed = submit(client, [[1.0, 0.0]])
    time.sleep(0.3)
    cancelled = client.delete(f"/v1/tasks/{doomed}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    time.sleep(1.0)
    final = client.get(f"/v1/tasks/{doomed}").json()
    assert final["status"] == "cancelled" and "result" not in final
    assert redis_server.client().hlen("inferq:unacked:inference") == 0
