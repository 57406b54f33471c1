"""Celery tasks: thin wrappers that hand a batch of messages to the executor, or a batch
job's chunk to the chunk runner."""

from __future__ import annotations

import logging
import math
import time
from functools import cached_property
from typing import Any

import redis
from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded
from opentelemetry import trace

from ml.store import ModelCache
from services.common.messages import (
    BATCH_CHUNK_TASK,
    PREDICT_TASK,
    TRAINING_FINAL_TASK,
    TRAINING_FOLD_TASK,
)
from services.common.pools import PoolSpec
from services.common.records import Status
from services.common.settings import Settings
from services.common.storage import storage_from_settings
from services.common.telemetry import consumer_span
from services.common.training_jobs import FitTask
from services.worker import task_errors
from services.worker.batch_chunks import Chunk, ChunkRunner
from services.worker.batching import BatchedTask
from services.worker.broker import Delivery
from services.worker.execution import Executor, Outcome, PredictRequest
from services.worker.policy import BatchLimits, Call, seconds_per_row
from services.worker.training import TrainingRunner

log = logging.getLogger(__name__)


class PredictTask(BatchedTask):
    """The predict task: one model call per model version for all of a batch's tasks, and
    one executor per process, built on first use (after fork)."""

    name = PREDICT_TASK
    settings: Settings
    queue: str
    kind: str

    @cached_property
    def executor(self) -> Executor:
        return Executor(_redis(self.settings), ModelCache(self.settings.model_store),
                        self.settings.task_ttl_seconds, self.queue, self.kind)

    def cost_key(self, kwargs: dict[str, Any]) -> str:
        return _cost_key(kwargs.get("model"), kwargs.get("version"))

    def run_batch(self, items: list[Delivery], announce: bool = True) -> dict[str, float]:
        requests = [PredictRequest.from_message(item.kwargs, item.headers) for item in items]
        tags = [item.tag for item in items]
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
                outcomes = self.executor.run(requests, tags, announce)
            return seconds_per_row(
                Call(_cost_key(o.request.model, o.request.version), o.started_at,
                     o.finished_at, len(o.request.rows)) for o in outcomes)
        except SoftTimeLimitExceeded:
            self._fail_all(requests, task_errors.soft_time_limit(), tags, announce)
            return {_cost_key(r.model, r.version): math.inf for r in requests}
        finally:
            for span in spans:
                span.end()

    def fail_batch(self, items: list[Delivery], exc: BaseException) -> None:
        self._fail_all(
            [PredictRequest.from_message(item.kwargs, item.headers) for item in items],
            task_errors.hard_time_limit(exc.args[0] if exc.args else "?"),
        )

    def _fail_all(self, requests: list[PredictRequest], error: dict[str, Any],
                  delivery_tags: list[str] | None = None, announced: bool = True) -> None:
        # Only records still running (or, unannounced, queued) change: tasks already
        # finished keep their result.
        now = time.time()
        self.executor.finish([Outcome(r, Status.FAILED, error, now, now) for r in requests],
                             delivery_tags or (), announced)


def _redis(settings: Settings) -> redis.Redis:
    """A task's own client of the broker's Redis, made in the process that runs it."""
    return redis.Redis.from_url(settings.broker_url, socket_timeout=settings.redis_socket_timeout,
                                health_check_interval=10, **settings.redis_tls)


def _cost_key(model: Any, version: Any) -> str:
    return f"{model}:{version}"


class BatchChunkTask(BatchedTask):
    """One chunk of a batch job a message, run alone; one runner per process, built on
    first use (after fork)."""

    name = BATCH_CHUNK_TASK
    batch_limits = BatchLimits(max_rows=1, max_wait=0.0)
    settings: Settings
    queue: str

    @cached_property
    def runner(self) -> ChunkRunner:
        return ChunkRunner(_redis(self.settings), storage_from_settings(self.settings),
                           ModelCache(self.settings.model_store),
                           self.settings.job_retention_seconds, self.queue)

    def cost_key(self, kwargs: dict[str, Any]) -> str:
        return f"batch:{_cost_key(kwargs.get('model'), kwargs.get('version'))}"

    def run_batch(self, items: list[Delivery], announce: bool = True) -> dict[str, float]:
        costs: dict[str, float] = {}
        for item in items:
            chunk = Chunk.from_message(item.kwargs)
            # A consumer span in the job's trace, under the submit's producer span.
            span = consumer_span("inferq.batch_chunk", item.headers, {
                "inferq.job_id": chunk.job_id,
                "inferq.chunk": chunk.chunk,
                "inferq.model": chunk.model,
                "inferq.rows": chunk.rows,
                "messaging.destination.name": self.queue,
            })
            started = time.time()
            try:
                with trace.use_span(span, end_on_exit=False):
                    self.runner.run(chunk, item.tag)
            except SoftTimeLimitExceeded:
                self.runner.fail(chunk, task_errors.soft_time_limit(), item.tag)
            finally:
                span.end()
            costs[self.cost_key(item.kwargs)] = (time.time() - started) / max(1, chunk.rows)
        return costs

    def fail_batch(self, items: list[Delivery], exc: BaseException) -> None:
        error = task_errors.hard_time_limit(exc.args[0] if exc.args else "?")
        for item in items:
            self.runner.fail(Chunk.from_message(item.kwargs), error, None)


class TrainingFoldTask(BatchedTask):
    """One fit of a training job's search or cross-validation a message, run alone; the
    runner (one per process) is built on first use (after fork)."""

    name = TRAINING_FOLD_TASK
    batch_limits = BatchLimits(max_rows=1, max_wait=0.0)
    settings: Settings
    queue: str

    @cached_property
    def runner(self) -> TrainingRunner:
        # With a soft limit the pool raises SoftTimeLimitExceeded in the task; without one
        # the runner keeps the hard limit itself (see services.worker.training).
        conf = self.app.conf
        return TrainingRunner(_redis(self.settings), self.settings.model_store,
                              storage_from_settings(self.settings),
                              self.settings.job_retention_seconds, self.queue,
                              None if conf.task_soft_time_limit else conf.task_time_limit,
                              self.settings.training_fit_parts)

    def cost_key(self, kwargs: dict[str, Any]) -> str:
        return f"training:{kwargs.get('model')}"

    def run_batch(self, items: list[Delivery], announce: bool = True) -> dict[str, float]:
        costs: dict[str, float] = {}
        for item in items:
            task = FitTask.from_message(item.kwargs)
            # A consumer span in the job's trace, under the submit's producer span.
            span = consumer_span("inferq.training", item.headers, {
                "inferq.job_id": task.job_id,
                "inferq.model": task.model,
                "inferq.training_task": task.name,
                "messaging.destination.name": self.queue,
            })
            started = time.time()
            try:
                with trace.use_span(span, end_on_exit=False):
                    self.runner.run(task, item.tag, item.headers)
            except SoftTimeLimitExceeded:
                self.runner.fail(task, task_errors.soft_time_limit(), item.tag)
            finally:
                span.end()
            costs[self.cost_key(item.kwargs)] = time.time() - started
        return costs

    def fail_batch(self, items: list[Delivery], exc: BaseException) -> None:
        error = task_errors.hard_time_limit(exc.args[0] if exc.args else "?")
        for item in items:
            self.runner.fail(FitTask.from_message(item.kwargs), error, None)


class TrainingFinalTask(TrainingFoldTask):
    """The end of a training job: the final fit, its registration (same runner)."""

    name = TRAINING_FINAL_TASK


def register_tasks(app: Celery, settings: Settings, pool: PoolSpec) -> None:
    """Register inferq's tasks on ``app``; they read ``settings`` when they first run.

    Every pool runs predictions (a model may be routed to any queue); pools of the batch
    kind also run batch jobs' chunks, and pools of the training kind training jobs' fits.
    """
    task = PredictTask()
    task.settings = settings
    task.queue = pool.queue
    task.kind = pool.kind
    task.batch_limits = BatchLimits.for_pool(settings, pool)
    app.register_task(task)
    if pool.kind == "batch":
        chunks = BatchChunkTask()
        chunks.settings = settings
        chunks.queue = pool.queue
        app.register_task(chunks)
    if pool.kind == "training":
        for kind in (TrainingFoldTask, TrainingFinalTask):
            fits = kind()
            fits.settings = settings
            fits.queue = pool.queue
            app.register_task(fits)
