"""Celery tasks: thin wrappers that hand a message to the executor."""

from __future__ import annotations

import logging
import math
import time
from functools import cached_property
from typing import Any

import redis
from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from opentelemetry import trace

from ml.store import ModelCache
from services.common.messages import PREDICT_TASK
from services.common.pools import PoolSpec
from services.common.records import Status
from services.common.settings import Settings
from services.common.telemetry import consumer_span
from services.worker.batching import BatchedTask, BatchItem, BatchLimits
from services.worker.execution import Executor, Outcome, PredictRequest

log = logging.getLogger(__name__)


class ExecutorTask(BatchedTask):
    """A task class holding one executor per process, built on first use (after fork).

    The worker runs its messages in batches (``run_batch``): one model call per model
    version for all the batch's tasks.
    """

    settings: Settings
    queue: str
    kind: str

    @cached_property
    def executor(self) -> Executor:
        client = redis.Redis.from_url(
            self.settings.broker_url,
            socket_timeout=self.settings.redis_socket_timeout,
            health_check_interval=10,
        )
        return Executor(
            client, ModelCache(self.settings.model_store), self.settings.task_ttl_seconds,
            self.queue, self.kind,
        )

    def cost_key(self, kwargs: dict[str, Any]) -> str:
        return _cost_key(kwargs.get("model"), kwargs.get("version"))

    def run_batch(self, items: list[BatchItem], announce: bool = True) -> dict[str, float]:
        requests = [PredictRequest.from_message(item.kwargs, item.headers) for item in items]
        tags = [item.delivery_tag for item in items]
        # One consumer span per task, each in its own trace; the executor traces the
        # shared model call under each of them.
        spans = [
            consumer_span(
                "inferq.execute",
                item.headers,
                {
                    "inferq.task_id": request.task_id,
                    "inferq.model": request.model,
                    "messaging.destination.name": self.queue,
                    "inferq.batch_tasks": len(requests),
                    # Run by the worker's main process, never marked running.
                    "inferq.inline": not announce,
                },
            )
            for item, request in zip(items, requests, strict=True)
        ]
        for request, span in zip(requests, spans, strict=True):
            request.span = span
        try:
            with trace.use_span(spans[0], end_on_exit=False):
                return _seconds_per_row(self.executor.run(requests, tags, announce))
        except SoftTimeLimitExceeded:
            self._fail_all(requests, {"type": "SoftTimeLimitExceeded",
                                      "message": "the task ran past its soft time limit"},
                           tags, announce)
            return {_cost_key(r.model, r.version): math.inf for r in requests}
        finally:
            for span in spans:
                span.end()

    def fail_batch(self, items: list[BatchItem], exc: BaseException) -> None:
        limit = exc.args[0] if exc.args else "?"
        self._fail_all(
            [PredictRequest.from_message(item.kwargs, item.headers) for item in items],
            {"type": type(exc).__name__,
             "message": f"the task ran past its hard time limit of {limit} s"},
        )

    def _fail_all(self, requests: list[PredictRequest], error: dict[str, Any],
                  delivery_tags: list[str] | None = None, announced: bool = True) -> None:
        # Only records still running (or, unannounced, queued) change: tasks already
        # finished keep their result.
        now = time.time()
        self.executor.finish([Outcome(r, Status.FAILED, error, now, now) for r in requests],
                             delivery_tags or (), announced)

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        # Reached for a hard time limit (the child was killed): fail the record too.
        if isinstance(exc, TimeLimitExceeded):
            request = PredictRequest.from_message(kwargs, {})
            self.executor.finish_one(
                request,
                Status.FAILED,
                {
                    "type": "TimeLimitExceeded",
                    "message": f"the task ran past its hard time limit of {exc.args[0]} s",
                },
            )


def _cost_key(model: Any, version: Any) -> str:
    return f"{model}:{version}"


def _seconds_per_row(outcomes: list[Outcome]) -> dict[str, float]:
    """Wall time per row of each model version's calls, from the outcomes of one batch."""
    spans: dict[str, tuple[float, float, int]] = {}
    for o in outcomes:
        key = _cost_key(o.request.model, o.request.version)
        start, end, rows = spans.get(key, (o.started_at, o.finished_at, 0))
        spans[key] = (min(start, o.started_at), max(end, o.finished_at),
                      rows + len(o.request.rows))
    return {key: (end - start) / max(1, rows) for key, (start, end, rows) in spans.items()}


def register_tasks(app: Celery, settings: Settings, pool: PoolSpec) -> None:
    """Register inferq's tasks on ``app``; they read ``settings`` when they first run."""
    limits = BatchLimits.for_pool(settings, pool)

    @app.task(name=PREDICT_TASK, bind=True, base=ExecutorTask, settings=settings, queue=pool.queue,
              kind=pool.kind, batch_limits=limits)
    def predict_task(self: ExecutorTask, **kwargs: Any) -> None:
        request = PredictRequest.from_message(kwargs, self.request.headers or {})
        span = consumer_span(
            "inferq.execute",
            self.request.headers or {},
            {
                "inferq.task_id": request.task_id,
                "inferq.model": request.model,
                "messaging.destination.name": pool.queue,
            },
        )
        try:
            with trace.use_span(span, end_on_exit=True):
                request.span = span
                self.executor.run([request])
        except SoftTimeLimitExceeded:
            self.executor.finish_one(
                request,
                Status.FAILED,
                {
                    "type": "SoftTimeLimitExceeded",
                    "message": "the task ran past its soft time limit",
                },
            )
