"""Every Prometheus metric inferq exports, defined once; names are part of the contract.

prometheus-client chooses at its first import whether values stay in the process's memory
or go to files in ``PROMETHEUS_MULTIPROC_DIR`` (its multiprocess mode). A worker serving
metrics needs the files, for its prefork children:
``services.worker.metrics_server.prepare_multiprocess_dir`` sets the directory and raises
when prometheus-client is already imported, and the worker refuses to start without them.
"""

from __future__ import annotations

from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

Metric = TypeVar("Metric", bound=MetricWrapperBase)

# API requests: from a millisecond to past the longest wait a request may ask for by
# default (Settings.max_wait_seconds, one of the bounds).
HTTP_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)
# Tasks: from a small model call to past the longest hard time limit a pool may have
# (the chart refuses one above half the last bucket, so twice it, a training pool's
# latency threshold, is still measured). No step above 10 s more than triples, so a
# threshold on a bucket's bound is measured exactly and one between two is not far off.
# Each bucket is one series per model, queue and histogram.
TASK_LATENCY_BUCKETS = (
    *HTTP_BUCKETS, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0,
    14400.0, 21600.0, 43200.0, 86400.0,
)
#: Labels of the queue gauges and the task histograms. ``kind`` is the kind of the pool
#: consuming the queue (services.common.pools): alerts key their thresholds on it, never
#: on a queue's name.
QUEUE_LABELS = ("queue", "kind")
TASK_LABELS = ("model", "queue", "kind")
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
    QUEUE_LABELS,
    multiprocess_mode="max",
)
QUEUE_INFLIGHT = Gauge(
    "inferq_queue_inflight",
    "Tasks reserved or running on workers.",
    QUEUE_LABELS,
    multiprocess_mode="max",
)
TASK_QUEUE_WAIT = Histogram(
    "inferq_task_queue_wait_seconds",
    "Time from submitted to started.",
    TASK_LABELS,
    buckets=TASK_LATENCY_BUCKETS,
)
TASK_RUN = Histogram(
    "inferq_task_run_seconds",
    "Time from started to finished.",
    TASK_LABELS,
    buckets=TASK_LATENCY_BUCKETS,
)
TASK_E2E = Histogram(
    "inferq_task_e2e_seconds",
    "Time from submitted to result stored.",
    TASK_LABELS,
    buckets=TASK_LATENCY_BUCKETS,
)
INFERENCE_BATCH_ROWS = Histogram(
    "inferq_inference_batch_rows", "Rows per call of the model.", ["model"], buckets=ROW_BUCKETS
)
HTTP_REQUESTS = Counter("inferq_http_requests", "API requests.", ["method", "route", "status"])
HTTP_REQUEST_SECONDS = Histogram(
    "inferq_http_request_seconds", "API latency.", ["method", "route"], buckets=HTTP_BUCKETS
)
INPUT_REJECTED = Counter("inferq_input_rejected", "Requests refused for bad input.", ["reason"])
#: Reasons: ``missing`` (no key), ``invalid`` (malformed, unknown, revoked or expired key),
#: ``scope`` (the key lacks the route's scope), ``rate_limited``.
AUTH_REFUSED = Counter("inferq_auth_refused", "Requests refused by authentication or limits.",
                       ["reason"])
JOBS_FINISHED = Counter(
    "inferq_jobs_finished",
    "Jobs that reached a terminal state.",
    ["kind", "model", "status"],
)
JOB_SECONDS = Histogram(
    "inferq_job_seconds",
    "Time from a job's submit to its end.",
    ["kind", "model"],
    buckets=TASK_LATENCY_BUCKETS,
)
BATCH_ROWS = Counter(
    "inferq_batch_rows",
    "Rows of batch jobs, scored or rejected.",
    ["model", "outcome"],
)
BATCH_CHUNK_SECONDS = Histogram(
    "inferq_batch_chunk_seconds",
    "Time a batch job's chunk took, from its start to it counted (a chunk counted once).",
    ["model", "queue"],
    buckets=TASK_LATENCY_BUCKETS,
)
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
