"""Celery tasks: thin wrappers that hand a message to the executor."""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from opentelemetry.trace import SpanKind

from ml.store import ModelCache
from services.common.messages import PREDICT_TASK
from services.common.records import Status
from services.common.settings import Settings
from services.common.telemetry import extract, tracer
from services.worker.execution import Executor, PredictRequest

log = logging.getLogger(__name__)


class ExecutorTask(Task):
    """A task class holding one executor per process, built on first use (after fork)."""

    settings: Settings
    queue: str

    @cached_property
    def executor(self) -> Executor:
        client = redis.Redis.from_url(
            self.settings.broker_url,
            socket_timeout=self.settings.redis_socket_timeout,
            health_check_interval=10,
        )
        return Executor(
            client, ModelCache(self.settings.model_store), self.settings.task_ttl_seconds,
            self.queue,
        )

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        # Reached for a hard time limit (the child was killed): fail the record too.
        if isinstance(exc, TimeLimitExceeded):
            request = PredictRequest.from_kwargs(kwargs)
            self.executor.finish_one(
                request,
                Status.FAILED,
                {
                    "type": "TimeLimitExceeded",
                    "message": f"the task ran past its hard time limit of {exc.args[0]} s",
                },
            )


def register_tasks(app: Celery, settings: Settings, queue: str) -> None:
    """Register inferq's tasks on ``app``; they read ``settings`` when they first run."""

    @app.task(name=PREDICT_TASK, bind=True, base=ExecutorTask, settings=settings, queue=queue)
    def predict_task(self: ExecutorTask, **kwargs: Any) -> None:
        request = PredictRequest.from_kwargs(kwargs)
        parent = extract(self.request.headers or {})
        try:
            with tracer().start_as_current_span(
                "inferq.execute", context=parent, kind=SpanKind.CONSUMER,
                attributes={"inferq.task_id": request.task_id, "inferq.model": request.model,
                            "messaging.destination.name": queue},
            ):
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
