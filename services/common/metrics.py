"""Every Prometheus metric inferq exports, defined once; names are part of the contract.

Worker processes write through prometheus-client's multiprocess mode when
``PROMETHEUS_MULTIPROC_DIR`` is set before this module is imported.
"""

from __future__ import annotations

from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

Metric = TypeVar("Metric", bound=MetricWrapperBase)

# From a millisecond (a small model call) to an hour (a training job).
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)

TASKS_SUBMITTED = Counter(
    "inferq_tasks_submitted", "Tasks accepted by the API.", ["model", "queue"]
)
TASKS_FINISHED = Counter(
    "inferq_tasks_finished",
    "Tasks that reached succeeded, failed or cancelled.",
    ["model", "queue", "status"],
)
QUEUE_WAITING = Gauge(
    "inferq_queue_waiting",
    "Messages waiting in the queue's list.",
    ["queue"],
    multiprocess_mode="max",
)
QUEUE_INFLIGHT = Gauge(
    "inferq_queue_inflight",
    "Tasks reserved or running on workers.",
    ["queue"],
    multiprocess_mode="max",
)
TASK_QUEUE_WAIT = Histogram(
    "inferq_task_queue_wait_seconds",
    "Time from submitted to started.",
    ["model", "queue"],
    buckets=LATENCY_BUCKETS,
)
TASK_RUN = Histogram(
    "inferq_task_run_seconds",
    "Time from started to finished.",
    ["model", "queue"],
    buckets=LATENCY_BUCKETS,
)
TASK_E2E = Histogram(
    "inferq_task_e2e_seconds",
    "Time from submitted to result stored.",
    ["model", "queue"],
    buckets=LATENCY_BUCKETS,
)
INFERENCE_BATCH_ROWS = Histogram(
    "inferq_inference_batch_rows", "Rows per call of the model.", ["model"], buckets=ROW_BUCKETS
)
HTTP_REQUESTS = Counter("inferq_http_requests", "API requests.", ["method", "route", "status"])
HTTP_REQUEST_SECONDS = Histogram(
    "inferq_http_request_seconds", "API latency.", ["method", "route"], buckets=LATENCY_BUCKETS
)
INPUT_REJECTED = Counter("inferq_input_rejected", "Requests refused for bad input.", ["reason"])
WORKER_PROCESSES = Gauge(
    "inferq_worker_processes",
    "Worker processes alive in a pool.",
    ["pool"],
    multiprocess_mode="livesum",
)

_series: dict[tuple[MetricWrapperBase, tuple[str, ...]], Any] = {}


def series(metric: Metric, *labels: str) -> Metric:
    """``metric.labels(*labels)``, looked up in a dict after the first call.

    ``labels()`` checks and converts its arguments and takes a lock on every call, which
    costs more than counting or observing itself. It returns the same child every time
    (inferq never removes one), so keeping it changes nothing else.
    """
    key = (metric, labels)
    found: Metric | None = _series.get(key)
    if found is None:
        found = _series[key] = metric.labels(*labels)
    return found
