"""Submit-to-result latency of single-row predictions, next to calling the model in-process.

Closed loop at concurrency 1: each request is ``POST /v1/models/iris/predict?wait=5`` and
returns with the finished task. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from common import local_stack, machine, percentiles

from ml.predict import predict
from ml.store import ModelCache

ROW = [5.1, 3.5, 1.4, 0.2]


def in_process(store: Path, n: int) -> list[float]:
    metadata, estimator = ModelCache(store).get("iris", 1)
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        predict(metadata, estimator, np.asarray([ROW], dtype=np.float64), False)
        samples.append(time.perf_counter() - started)
    return samples


def through_inferq(url: str, n: int, warmup: int = 50) -> list[float]:
    samples = []
    with httpx.Client(base_url=url, timeout=10) as client:
        for i in range(n + warmup):
            started = time.perf_counter()
            response = client.post("/v1/models/iris/predict?wait=5", json={"instances": [ROW]})
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"request {i}: {response.status_code} {response.text}")
            if i >= warmup:
                samples.append(elapsed)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    with local_stack() as stack:
        model = percentiles(in_process(stack.store, args.requests))
        served = percentiles(through_inferq(stack.url, args.requests))
    report = {
        "benchmark": "single-row iris predictions, wait=5, concurrency 1",
        "machine": machine(),
        "in_process": model,
        "inferq": served,
        "overhead_p50_ms": round(served["p50_ms"] - model["p50_ms"], 3),
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
