"""Micro-batching against real Redis and a real worker: batches form, answers stay exact."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from processes import ServiceProcess, start_worker
from sklearn.datasets import load_breast_cancer
from task_client import submit, wait_all

from ml.importer import import_model
from ml.predict import predict
from ml.store import ModelCache
from services.cli.redis_server import free_port

#: Keeps the worker's only child busy while the tasks after it pile up in its buffer. It
#: calls its own model: the worker learns how slow it is and runs it alone. 1.5 s outlasts
#: the 40 submits below on a loaded machine.
BLOCKER = [[1.5, 0.0]]


@pytest.fixture(autouse=True)
def empty_redis(redis_server) -> Iterator[None]:  # type: ignore[no-untyped-def]
    redis_server.client().flushdb()
    yield


@pytest.fixture(scope="module", autouse=True)
def slow_model(model_store: Path) -> None:
    import_model(model_store, model_store.parent / "sleepy.joblib", "slow", ["x0", "x1"])


@pytest.fixture(scope="module")
def metrics_url() -> str:
    return f"http://127.0.0.1:{free_port()}/metrics"


@pytest.fixture(scope="module")
def batching_worker(
    stack_env: dict[str, str], logs: Path, metrics_url: str
) -> Iterator[ServiceProcess]:
    port = int(metrics_url.rsplit(":", 1)[1].split("/")[0])
    process = start_worker(stack_env, logs, concurrency=1, metrics_port=port)
    yield process
    process.stop()


def submit_all(client: httpx.Client, model: str, batches: list[list], **body: object) -> list[str]:
    """Submit from several threads at once, like many clients; ids in ``batches`` order."""
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda rows: submit(client, model, rows, **body), batches))


def rows_per_call(metrics_url: str, model: str) -> tuple[float, float]:
    """(model calls, rows) of ``inferq_inference_batch_rows`` for ``model``."""
    text = httpx.get(metrics_url, timeout=5).text

    def sample(suffix: str) -> float:
        pattern = rf'^inferq_inference_batch_rows_{suffix}\{{model="{re.escape(model)}"\}} (\S+)$'
        found = re.search(pattern, text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    return sample("count"), sample("sum")


def test_concurrent_tasks_share_model_calls_and_get_their_own_answers(
    client: httpx.Client, api: ServiceProcess, batching_worker: ServiceProcess,
    model_store: Path, metrics_url: str,
) -> None:
    data = load_breast_cancer().data
    rng = np.random.default_rng(0)
    batches = [data[rng.choice(len(data), size=int(rng.integers(1, 4)))].tolist()
               for _ in range(40)]
    calls_before, rows_before = rows_per_call(metrics_url, "breast-cancer")

    blocker = submit(client, "slow", BLOCKER)
    task_ids = submit_all(client, "breast-cancer", batches, return_probabilities=True)
    tasks = wait_all(client, [blocker, *task_ids])

    assert [t["status"] for t in tasks] == ["succeeded"] * len(tasks)
    metadata, estimator = ModelCache(model_store).get("breast-cancer", 1)
    for rows, task in zip(batches, tasks[1:], strict=True):
        expected = predict(metadata, estimator, np.asarray(rows, dtype=np.float64), True)
        assert task["result"] == expected
    calls, rows = rows_per_call(metrics_url, "breast-cancer")
    assert rows - rows_before == sum(len(b) for b in batches)
    assert calls - calls_before < len(batches) / 4, "tasks were not batched"
    assert (rows - rows_before) / (calls - calls_before) > 4


def test_a_poisoned_task_fails_alone_in_its_batch(
    client: httpx.Client, api: ServiceProcess, batching_worker: ServiceProcess,
    metrics_url: str,
) -> None:
    calls_before, _ = rows_per_call(metrics_url, "sleepy")
    blocker = submit(client, "slow", BLOCKER)
    rows = [[[0.0, float(i)]] for i in range(12)]
    rows[5] = [[0.0, -1.0]]
    task_ids = submit_all(client, "sleepy", rows)
    tasks = wait_all(client, [blocker, *task_ids])

    statuses = [t["status"] for t in tasks[1:]]
    assert statuses == ["succeeded"] * 5 + ["failed"] + ["succeeded"] * 6
    assert tasks[6]["error"] == {"type": "ValueError", "message": "x1 must not be negative"}
    for i, task in enumerate(tasks[1:]):
        if i != 5:
            assert task["result"]["predictions"] == [float(i)]
    calls, _ = rows_per_call(metrics_url, "sleepy")
    # The blocker, then the batch split in halves down to the poisoned task: the good
    # halves succeed in 4 calls where unbatched tasks would take 11.
    assert calls - calls_before <= 1 + len(rows) // 2
