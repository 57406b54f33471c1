"""The classic Celery app: one task per request, results in Celery's Redis result backend.

Workers take one message at a time (prefetch 1), acknowledge after the task (acks_late),
and each call of the task runs the model on the request's rows.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from celery import Celery

BROKER = os.environ.get("CLASSIC_REDIS_URL", "redis://localhost:6379/1")
MODEL_DIR = Path(os.environ.get("CLASSIC_MODEL_DIR", "."))

app = Celery("classic", broker=BROKER, backend=BROKER)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    result_expires=3600,
    task_default_queue="classic",
    worker_hijack_root_logger=False,
)


@cache
def model(name: str) -> Any:
    return joblib.load(MODEL_DIR / f"{name}.joblib")


@app.task(name="classic.predict")
def predict(name: str, rows: list[list[float]]) -> list[Any]:
    return list(model(name).predict(np.asarray(rows, dtype=np.float64)).tolist())
