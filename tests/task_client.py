"""Submitting tasks to a running API and waiting for them, as integration tests do."""

from __future__ import annotations

import time

import httpx

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


def submit(client: httpx.Client, model: str, rows: list, **body: object) -> str:
    response = client.post(f"/v1/models/{model}/predict", json={"instances": rows, **body})
    assert response.status_code == 202, response.text
    return str(response.json()["task_id"])


def wait_all(client: httpx.Client, task_ids: list[str], timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    done = []
    for task_id in task_ids:
        while True:
            remaining = max(0.1, min(10.0, deadline - time.monotonic()))
            task = client.get(f"/v1/tasks/{task_id}", params={"wait": remaining}).json()
            if task["status"] not in ("queued", "running") or time.monotonic() > deadline:
                break
        done.append(task)
    return done


def wait_status(client: httpx.Client, task_id: str, status: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while client.get(f"/v1/tasks/{task_id}").json()["status"] != status:
        assert time.monotonic() < deadline, f"{task_id} never became {status}"
        time.sleep(0.05)
