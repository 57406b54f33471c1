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

TRAINED_VERSION: dict[str, Any] = {
    **MODEL_METADATA, "version": 2, "estimator": "Pipeline",
    "metrics": {"accuracy": 0.96, "f1": 0.9599, "roc_auc": 0.9973},
    "sha256": "0f3a8c41d2b95e7a6c1f4d8e2b7a9c3e5f1d0b8a6c4e2f9d7b5a3c1e8f6d4b2a",
    "created_at": "2026-01-16T14:12:03.881204Z", "description": "trained by job "
    "7c1e9a52-6f0b-4d3e-8a2c-5b9d1f4e7a60",
    "lineage": {
        "dataset_id": "5d0c8f6e2b7a4c1f9e3d6a8b0c2e4f61",
        "dataset_sha256": "b9c1a6f4c7e0b8f6d5c2e1a0f3b7d9c8e6a4f2b0d8c6e4a2f0b8d6c4e2a0f8b6",
        "estimator": "LogisticRegression", "hyperparameters": {"C": 1.0, "max_iter": 1000},
        "validation": {"cv": 5}, "seed": 0,
        "fold_metrics": [{"accuracy": 0.9667, "f1": 0.9666, "roc_auc": 1.0},
                         {"accuracy": 0.9533, "f1": 0.9532, "roc_auc": 0.9946}],
        "job_id": "7c1e9a52-6f0b-4d3e-8a2c-5b9d1f4e7a60", "training_seconds": 1.84,
        "library_versions": {"sklearn": "1.9.1", "numpy": "2.3.4", "scipy": "1.16.2",
                             "joblib": "1.5.2", "python": "3.11.7", "inferq": "0.1.0"},
    },
}

MODEL_DESCRIPTION: dict[str, Any] = {**MODEL_METADATA, "lineage": None,
                                     "aliases": ["production"], "default_version": 1}

MODEL_VERSIONS: dict[str, Any] = {
    "model": "iris", "default_version": 1, "aliases": {"production": 1, "staging": 2},
    "versions": [{**MODEL_METADATA, "lineage": None, "aliases": ["production"]},
                 {**TRAINED_VERSION, "aliases": ["staging"]}],
}

MODEL_LIST: dict[str, Any] = {"models": [
    {"name": "breast-cancer", "versions": [1], "latest": 1, "default_version": 1,
     "aliases": {}, "task": "classification"},
    {"name": "diabetes", "versions": [1], "latest": 1, "default_version": 1, "aliases": {},
     "task": "regression"},
    {"name": "iris", "versions": [1, 2], "latest": 2, "default_version": 1,
     "aliases": {"production": 1, "staging": 2}, "task": "classification"},
]}

POOL_LIST: dict[str, Any] = {"pools": [
    {"name": "inference", "queue": "inference", "waiting": 12, "inflight": 64, "backlog": 76,
     "ready_replicas": 2, "desired_replicas": 3},
    {"name": "batch", "queue": "batch", "waiting": 0, "inflight": 0, "backlog": 0,
     "ready_replicas": 1, "desired_replicas": 1},
]}

DATASET_ID = "5d0c8f6e2b7a4c1f9e3d6a8b0c2e4f61"
DATASET: dict[str, Any] = {
    "dataset_id": DATASET_ID, "name": "iris-2026-01", "format": "csv", "rows": 150,
    "columns": [{"name": n, "dtype": "float64"} for n in (
        "sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm")]
    + [{"name": "species", "dtype": "string"}],
    "bytes": 4551, "sha256": "b9c1a6f4c7e0b8f6d5c2e1a0f3b7d9c8e6a4f2b0d8c6e4a2f0b8d6c4e2a0f8b6",
    "created_at": "2026-01-15T09:30:00.120Z",
}
DATASET_LIST: dict[str, Any] = {"datasets": [DATASET]}
CSV_UPLOAD = ("sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm,species\n"
              "5.1,3.5,1.4,0.2,setosa\n6.7,3.0,5.2,2.3,virginica\n")
JSONL_UPLOAD = ('{"sepal_length_cm": 5.1, "sepal_width_cm": 3.5, "petal_length_cm": 1.4, '
                '"petal_width_cm": 0.2, "species": "setosa"}\n')

JOB_ID = "5d0f8e1c-3b7a-4c2e-9f61-8a4d2b7c9e03"
JOB_QUEUED: dict[str, Any] = {
    "job_id": JOB_ID, "kind": "batch", "model": "iris", "version": 1, "alias": "production",
    "dataset_id": "3f2c9a7e5b1d4e8f9a0b1c2d3e4f5a6b", "status": "queued",
    "progress": {"rows_total": 120000, "rows_done": 0, "rows_failed": 0, "chunks_total": 3,
                 "chunks_done": 0},
    "submitted_at": "2026-01-15T09:30:00.120Z", "started_at": None, "finished_at": None,
    "error": None, "output": {"format": "csv", "rows": None, "bytes": None},
    "id_column": "customer_id", "passthrough_columns": [], "return_probabilities": True,
    "max_failed_rows": 10, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
}
JOB_RUNNING: dict[str, Any] = {
    **JOB_QUEUED, "status": "running", "started_at": "2026-01-15T09:30:00.300Z",
    "progress": {**JOB_QUEUED["progress"], "rows_done": 50000, "rows_failed": 2,
                 "chunks_done": 1},
}
JOB_SUCCEEDED: dict[str, Any] = {
    **JOB_RUNNING, "status": "succeeded", "finished_at": "2026-01-15T09:30:41.950Z",
    "progress": {**JOB_QUEUED["progress"], "rows_done": 120000, "rows_failed": 3,
                 "chunks_done": 3},
    "output": {"format": "csv", "rows": 119997, "bytes": 7318845},
}
JOB_FAILED: dict[str, Any] = {
    **JOB_SUCCEEDED, "status": "failed", "output": {"format": "csv", "rows": None,
                                                    "bytes": None},
    "progress": {**JOB_SUCCEEDED["progress"], "rows_failed": 14},
    "error": {"type": "TooManyRejectedRows", "code": "too_many_rejected_rows",
              "message": f"14 of 120000 rows were rejected, more than max_failed_rows (10); "
                         f"GET /v1/batch-jobs/{JOB_ID}/errors lists them"},
}
JOB_CANCELLED: dict[str, Any] = {
    **JOB_RUNNING, "status": "cancelled", "finished_at": "2026-01-15T09:30:05.000Z",
}

TRAINING_JOB_ID = "9a3e61c4-7f20-4b8d-a5e2-0c4f8b1d6e37"
TRAINING_QUEUED: dict[str, Any] = {
    "job_id": TRAINING_JOB_ID, "kind": "training", "model": "churn", "status": "queued",
    "phase": "queued", "progress": 0.0, "metrics": None, "fold_metrics": None,
    "version": None, "submitted_at": "2026-01-15T09:30:00.120Z", "started_at": None,
    "finished_at": None, "error": None, "estimator": "RandomForestClassifier",
    "dataset_id": "3f2c9a7e5b1d4e8f9a0b1c2d3e4f5a6b", "target_column": "churned",
    "validation": {"cv": 3}, "hyperparameters": {"n_estimators": 200},
    "search": {"grid": {"max_depth": [4, 8]}, "metric": "roc_auc"}, "seed": 0,
    "alias": "production", "promote_if": {"metric": "roc_auc", "min": 0.8},
    "promoted": None, "trials": None, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
}
TRAINING_RUNNING: dict[str, Any] = {
    **TRAINING_QUEUED, "status": "running", "phase": "candidate 2 of 2, fold 1 of 3",
    "progress": 0.45, "started_at": "2026-01-15T09:30:00.300Z",
}
_FOLDS = [{"accuracy": 0.86, "f1": 0.71, "roc_auc": 0.90},
          {"accuracy": 0.84, "f1": 0.69, "roc_auc": 0.88},
          {"accuracy": 0.85, "f1": 0.70, "roc_auc": 0.89}]
TRAINING_SUCCEEDED: dict[str, Any] = {
    **TRAINING_RUNNING, "status": "succeeded", "phase": "done", "progress": 1.0,
    "finished_at": "2026-01-15T09:31:12.400Z", "version": 4,
    "metrics": {"accuracy": 0.85, "f1": 0.70, "roc_auc": 0.89}, "fold_metrics": _FOLDS,
    "hyperparameters": {"n_estimators": 200, "max_depth": 8}, "promoted": True,
    "trials": [{"candidate": c, "fold": f, "metrics": _FOLDS[f], "hostname": "training-0",
                "worker": "training-0:1", "seconds": 4.2}
               for c in range(2) for f in range(3)],
}
TRAINING_FAILED: dict[str, Any] = {
    **TRAINING_RUNNING, "status": "failed", "finished_at": "2026-01-15T09:30:09.000Z",
    "error": {"type": "SoftTimeLimitExceeded", "code": "soft_time_limit_exceeded",
              "message": "the task ran past its soft time limit"},
}
TRAINING_CANCELLED: dict[str, Any] = {
    **TRAINING_RUNNING, "status": "cancelled", "finished_at": "2026-01-15T09:30:05.000Z",
}

API_KEY: dict[str, Any] = {
    "id": "3f9a1c0e5b7d2468", "tenant": "acme", "scopes": ["predict"],
    "name": "acme's scoring service", "created_at": "2026-01-15T09:30:00.120Z",
    "expires_at": "2027-01-15T00:00:00.000Z", "revoked_at": None,
    "last_used_at": "2026-01-16T11:02:41.503Z", "requests_per_second": None,
    "rows_per_minute": None,
}
API_KEY_CREATED: dict[str, Any] = {
    **API_KEY, "last_used_at": None,
    "key": "inferq_3f9a1c0e5b7d2468_q1Xw3d9V0eQm5yZ8bN2cH7kL4tR6uJ1pA0sD3fG5hKx"}
API_KEY_REVOKED: dict[str, Any] = {**API_KEY, "revoked_at": "2026-02-01T08:00:00.000Z"}
API_KEY_LIST: dict[str, Any] = {"api_keys": [API_KEY, API_KEY_REVOKED]}
