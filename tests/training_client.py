"""Training jobs for integration tests: datasets made in the test, submitting, waiting."""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np


def churn_csv(rows: int = 300, seed: int = 0) -> bytes:
    """Customers: numeric and string features, a yes/no target that depends on both."""
    rng = np.random.default_rng(seed)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["customer", "age", "plan", "usage", "churned", "spend"])
    for i in range(rows):
        age = int(rng.integers(18, 80))
        plan = ["basic", "pro", "max"][int(rng.integers(0, 3))]
        usage = round(float(rng.uniform(0, 100)), 2)
        churned = "yes" if (usage < 40) != (plan == "max") else "no"
        if rng.uniform() < 0.05:
            churned = "no" if churned == "yes" else "yes"
        writer.writerow([f"c{i}", age, plan, usage, churned, round(usage * 1.7 + age, 3)])
    return buffer.getvalue().encode()


def prices_csv(rows: int = 240, seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["x1", "x2", "x3", "price"])
    for _ in range(rows):
        x1, x2, x3 = rng.uniform(0, 10, 3)
        price = 3 * x1 - 2 * x2 + x3 + rng.normal(0, 0.5)
        writer.writerow([round(x1, 3), round(x2, 3), round(x3, 3), round(price, 3)])
    return buffer.getvalue().encode()


def submit(client: httpx.Client, model: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"/v1/models/{model}/training-jobs", json=body)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    assert response.headers["location"] == f"/v1/training-jobs/{job['job_id']}"
    assert job["status"] == "queued" and job["phase"] == "queued"
    return job


def wait_training(client: httpx.Client, job_id: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/v1/training-jobs/{job_id}",
                                         params={"wait": 10}).json()
        if job["status"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}: {job}"


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not: only its parent has not reaped it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def cancel_during_fit(client: httpx.Client, redis: Any, job_id: str, pid: int) -> None:
    """Cancel the job while its fit ``pid`` runs: the fit ends within 2 s, and every
    training message left is taken and acknowledged within 10 s."""
    asked = time.monotonic()
    response = client.delete(f"/v1/training-jobs/{job_id}")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    while alive(pid):
        assert time.monotonic() - asked < 2, "the fit still runs 2 s after the cancel"
        time.sleep(0.05)
    deadline = time.monotonic() + 10
    while redis.llen("training") or redis.hlen("inferq:unacked:training"):
        assert time.monotonic() < deadline, "training messages still queued or held"
        time.sleep(0.05)
