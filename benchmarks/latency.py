"""Submit-to-result latency of single-row predictions, next to calling the model in-process.

Closed loop at concurrency 1: each request is ``POST /v1/models/iris/predict?wait=5`` and
returns with the finished task. Prints one JSON document, with where the time goes: the
medians of the stretches between the client's clock and the task record's raw timestamps.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).parent))

from common import local_stack, machine, percentiles

from ml.predict import predict
from ml.store import ModelCache
from services.common import keys

ROW = [5.1, 3.5, 1.4, 0.2]


def in_process(store: Path, n: int) -> list[float]:
    metadata, estimator = ModelCache(store).get("iris", 1)
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        predict(metadata, estimator, np.asarray([ROW], dtype=np.float64), False)
        samples.append(time.perf_counter() - started)
    return samples


#: A task's stretches, between the client's clock and its record's raw timestamps.
STRETCHES = ("client sends -> submitted_at", "submitted_at -> started_at",
             "started_at -> finished_at", "finished_at -> client has the answer")


def through_inferq(url: str, n: int, warmup: int = 50) -> tuple[list[float], list[tuple]]:
    """Each request's latency, and its (task id, sent, answered) on the wall clock."""
    samples, tasks = [], []
    with httpx.Client(base_url=url, timeout=10) as client:
        for i in range(n + warmup):
            sent = time.time()
            started = time.perf_counter()
            response = client.post("/v1/models/iris/predict?wait=5", json={"instances": [ROW]})
            elapsed = time.perf_counter() - started
            answered = time.time()
            if response.status_code != 200:
                raise RuntimeError(f"request {i}: {response.status_code} {response.text}")
            if i >= warmup:
                samples.append(elapsed)
                tasks.append((response.json()["task_id"], sent, answered))
    return samples, tasks


def stretches(redis_url: str, tasks: list[tuple]) -> dict[str, float]:
    """Median milliseconds of each of ``STRETCHES`` over ``tasks``."""
    client = redis.Redis.from_url(redis_url)
    rows = []
    for task_id, sent, answered in tasks:
        record = client.hmget(keys.task_key(task_id), "submitted_at", "started_at",
                              "finished_at")
        submitted, started, finished = (float(value) for value in record)
        rows.append((submitted - sent, started - submitted, finished - started,
                     answered - finished))
    medians = np.median(np.asarray(rows) * 1000, axis=0)
    return {name: round(float(ms), 3) for name, ms in zip(STRETCHES, medians, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    with local_stack() as stack:
        model = percentiles(in_process(stack.store, args.requests))
        samples, tasks = through_inferq(stack.url, args.requests)
        served = percentiles(samples)
        where = stretches(stack.redis_url, tasks)
    report = {
        "benchmark": "single-row iris predictions, wait=5, concurrency 1",
        "machine": machine(),
        "in_process": model,
        "inferq": served,
        "overhead_p50_ms": round(served["p50_ms"] - model["p50_ms"], 3),
        "stretches_p50_ms": where,
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
