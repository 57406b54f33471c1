"""Example answers for the OpenAPI document, as the demo models and a running stack give
them."""

from __future__ import annotations

from typing import Any

TASK_ID = "0b6f3c5e-9a43-4d59-8e0c-2f3b8f1d7a21"
QUEUED: dict[str, Any] = {
    "task_id": TASK_ID, "status": "queued", "model": "iris", "version": 1,
    "submitted_at": "2026-01-15T09:30:00.120Z", "started_at": None, "finished_at": None,
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
}
SUCCEEDED: dict[str, Any] = {
    **QUEUED, "status": "succeeded", "started_at": "2026-01-15T09:30:00.123Z",
    "finished_at": "2026-01-15T09:30:00.125Z",
    "result": {"predictions": ["setosa"], "probabilities": [[0.979, 0.021, 0.0]]},
}
FAILED: dict[str, Any] = {
    **{k: v for k, v in SUCCEEDED.items() if k != "result"}, "status": "failed",
    "error": {"type": "NonFiniteValues", "code": "non_finite_values",
              "message": "iris v1 overflowed to infinity or NaN on these rows (Input X contains "
                         "infinity or a value too large for dtype('float64').); send values "
                         "of smaller magnitude"},
}
RUNNING: dict[str, Any] = {**QUEUED, "status": "running",
                           "started_at": "2026-01-15T09:30:00.123Z"}
CANCELLED: dict[str, Any] = {
    **QUEUED, "status": "cancelled", "finished_at": "2026-01-15T09:30:01.500Z",
}

MODEL_METADATA: dict[str, Any] = {
    "name": "iris", "version": 1, "task": "classification",
    "estimator": "Pipeline",
    "features": [{"name": n, "dtype": "float64"} for n in (
        "sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm")],
    "classes": ["setosa", "versicolor", "virginica"], "metrics": {"accuracy": 0.9737},
    "sha256": "439812e2a12eff25b27db99c58950f2152554362c7176dcff91a26650d9cd2cd",
    "created_at": "2026-01-15T09:00:00.509953Z", "sklearn_version": "1.9.1",
    "description": "demo: Pipeline on scikit-learn's iris dataset",
}

MODEL_LIST: dict[str, Any] = {"models": [
    {"name": "breast-cancer", "versions": [1], "latest": 1, "task": "classification"},
    {"name": "diabetes", "versions": [1], "latest": 1, "task": "regression"},
    {"name": "iris", "versions": [1, 2], "latest": 2, "task": "classification"},
]}

POOL_LIST: dict[str, Any] = {"pools": [
    {"name": "inference", "queue": "inference", "waiting": 12, "inflight": 64, "backlog": 76,
     "ready_replicas": 2, "desired_replicas": 3},
    {"name": "batch", "queue": "batch", "waiting": 0, "inflight": 0, "backlog": 0,
     "ready_replicas": 1, "desired_replicas": 1},
]}
