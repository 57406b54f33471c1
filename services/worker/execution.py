"""Running prediction tasks: plain functions the Celery task calls and tests call directly.

Work comes as a list of requests, so one model call can serve many tasks: rows of the
tasks for one model version are stacked, predicted at once and split back. A task whose
rows break the model call is retried alone, so it fails without failing its neighbours.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis
from opentelemetry import trace
from opentelemetry.trace import Span
from redis.client import Pipeline

from ml.store import ModelCache
from services.common import keys
from services.common.metrics import (
    INFERENCE_BATCH_ROWS,
    TASK_E2E,
    TASK_QUEUE_WAIT,
    TASK_RUN,
    TASKS_FINISHED,
    series,
)
from services.common.records import (
    FINISH_SCRIPT,
    START_SCRIPT,
    Status,
    decoded,
    finish_args,
    task_end,
)
from services.common.telemetry import tracer
from services.common.tenants import DEFAULT_TENANT
from services.worker import task_errors
from services.worker.broker import ScriptPipeline, acknowledge_in

log = logging.getLogger(__name__)


@dataclass
class PredictRequest:
    task_id: str
    model: str
    version: int
    rows: list[list[Any]]
    return_probabilities: bool = False
    submitted_at: float = 0.0
    #: The tenant whose part of the model store holds the model (``tenants``).
    tenant: str = DEFAULT_TENANT
    #: The task's consumer span: its model call is traced under it.
    span: Span | None = None
    #: Whether its message came back to the queue (its worker died, say) since first sent.
    redelivered: bool = False

    @classmethod
    def from_message(cls, kwargs: dict[str, Any], headers: dict[str, Any]) -> PredictRequest:
        return cls(
            task_id=kwargs["task_id"],
            model=kwargs["model"],
            version=int(kwargs["version"]),
            rows=kwargs["rows"],
            return_probabilities=bool(kwargs.get("return_probabilities", False)),
            submitted_at=float(kwargs.get("submitted_at", 0.0)),
            tenant=kwargs.get("tenant") or DEFAULT_TENANT,
            redelivered=bool(headers.get("redelivered")),
        )


@dataclass
class Outcome:
    request: PredictRequest
    status: Status
    payload: dict[str, Any]
    started_at: float
    finished_at: float


class Executor:
    """Moves task records through their states and calls the models."""

    def __init__(self, client: redis.Redis, cache: ModelCache, ttl: int, queue: str,
                 kind: str) -> None:
        self._cache = cache
        self._ttl = ttl
        self._queue = queue
        self._kind = kind
        self._scripts = ScriptPipeline(client, START_SCRIPT, FINISH_SCRIPT)

    def start(
        self, requests: Sequence[PredictRequest]
    ) -> tuple[list[PredictRequest], list[Outcome]]:
        """Mark the tasks running: those that should run, and the failures of those tried
        too often (their workers died running them)."""
        return self._runnable(requests, self._scripts.execute(self._start_commands(requests))[0])

    def _start_commands(self, requests: Sequence[PredictRequest]) -> Callable[[Pipeline], None]:
        """One call of ``START_SCRIPT`` for every task of the batch."""
        now = repr(time.time())
        task_keys = [keys.task_key(request.task_id) for request in requests]

        def build(pipe: Pipeline) -> None:
            self._scripts.call(pipe, START_SCRIPT, task_keys, [now])

        return build

    def _runnable(self, requests: Sequence[PredictRequest],
                  replies: Sequence[Any]) -> tuple[list[PredictRequest], list[Outcome]]:
        runnable, refused = [], []
        for request, (status, attempts) in zip(requests, replies, strict=True):
            status = decoded(status)
            if status != Status.RUNNING:
                log.info("task skipped", extra={"task_id": request.task_id, "status": status})
            elif int(attempts) > task_errors.MAX_ATTEMPTS:
                now = time.time()
                refused.append(Outcome(request, Status.FAILED, task_errors.worker_lost(),
                                       now, now))
            else:
                runnable.append(request)
        return runnable, refused

    def finish(self, outcomes: Sequence[Outcome], delivery_tags: Sequence[str] = (),
               announced: bool = True) -> None:
        """Store the outcomes, then acknowledge ``delivery_tags`` in the same round trip.

        Acknowledging is removing a message from the pool's unacked hash, once its task's
        record is final: a worker that dies before that leaves the message to be restored.
        ``announced=False``: the tasks ran straight from the queue, never marked running.
        """
        task_keys = [keys.task_key(o.request.task_id) for o in outcomes]
        args = finish_args(self._ttl, [
            task_end(o.request.task_id, o.status, o.payload, None if announced else o.started_at)
            for o in outcomes])

        def build(pipe: Pipeline) -> None:
            # Every outcome in one call, which tells each waiting API process of them all
            # in one message.
            if outcomes:
                self._scripts.call(pipe, FINISH_SCRIPT, task_keys, args)
            if delivery_tags:
                acknowledge_in(pipe, self._queue, delivery_tags)

        replies = self._scripts.execute(build)
        stored = time.time()
        for outcome, reply in zip(outcomes, replies[0] if outcomes else [], strict=True):
            status = decoded(reply)
            if status != outcome.status:
                continue  # Not running any more (cancelled or finished elsewhere).
            model, request = outcome.request.model, outcome.request
            series(TASKS_FINISHED, model, self._queue, status).inc()
            labels = (model, self._queue, self._kind)
            series(TASK_RUN, *labels).observe(outcome.finished_at - outcome.started_at)
            if request.submitted_at:
                series(TASK_E2E, *labels).observe(stored - request.submitted_at)
                series(TASK_QUEUE_WAIT, *labels).observe(
                    max(0.0, outcome.started_at - request.submitted_at)
                )

    def run(self, requests: Sequence[PredictRequest], delivery_tags: Sequence[str] = (),
            announce: bool = True) -> list[Outcome]:
        """Start, predict and finish ``requests``; return what happened to each.

        A first delivery's start is sent before the model call and its reply read after,
        so the round trip overlaps the call; a task whose start was refused (cancelled,
        say) has its prediction dropped, never stored. A redelivered task may be what
        killed its last worker, so a batch holding one calls the model only once the
        records say how often each task was tried.

        ``announce=False`` skips the start, for first deliveries whose call is shorter
        than its round trip: the task goes from queued to finished, and a task cancelled
        meanwhile still has its prediction dropped (the finish finds it cancelled).
        """
        redelivered = any(r.redelivered for r in requests)
        if not announce and not redelivered:
            outcomes = predict_all(self._cache, requests)
            self.finish(outcomes, delivery_tags, announced=False)
            return outcomes
        if redelivered:
            runnable, refused = self.start(requests)
            outcomes = predict_all(self._cache, runnable)
        else:
            sent = self._scripts.send(self._start_commands(requests))
            try:
                outcomes = predict_all(self._cache, requests)
            finally:
                runnable, refused = self._runnable(requests, sent.read()[0])
            started = {id(r) for r in runnable}
            outcomes = [o for o in outcomes if id(o.request) in started]
        outcomes += refused
        self.finish(outcomes, delivery_tags)
        return outcomes


def predict_all(cache: ModelCache, requests: Sequence[PredictRequest]) -> list[Outcome]:
    """One model call per model version for all ``requests``; a bad request fails alone."""
    from ml.predict import predict, row_dtype

    groups: dict[tuple[str, str, int, bool], list[PredictRequest]] = defaultdict(list)
    for request in requests:
        groups[(request.tenant, request.model, request.version,
                request.return_probabilities)].append(request)
    outcomes: list[Outcome] = []
    for (tenant, model, version, probabilities), group in groups.items():
        started = time.time()
        try:
            metadata, estimator = cache.get(model, version, tenant)
            # Timed from here: loading a model on its first call is no part of its cost per
            # row, which the batcher learns from these times to size the next batches.
            started = time.time()
            dtype = row_dtype(metadata)
            rows = np.concatenate([np.asarray(r.rows, dtype=dtype) for r in group])
            # One model call serves the group; each task's trace gets a span for it.
            spans = [
                tracer().start_span(
                    "inferq.model.predict",
                    context=trace.set_span_in_context(r.span),
                    attributes={"inferq.model": model, "inferq.version": version,
                                "inferq.rows": len(rows), "inferq.batch_tasks": len(group)},
                )
                for r in group
                if r.span is not None and r.span.is_recording()
            ]
            try:
                result = predict(metadata, estimator, rows, probabilities)
            finally:
                for span in spans:
                    span.end()
            series(INFERENCE_BATCH_ROWS, model).observe(len(rows))
        except Exception as exc:
            if len(group) > 1:
                half = len(group) // 2
                outcomes.extend(predict_all(cache, group[:half]))
                outcomes.extend(predict_all(cache, group[half:]))
                continue
            log.warning(
                "prediction failed", extra={"task_id": group[0].task_id, "error": repr(exc)}
            )
            outcomes.append(
                Outcome(group[0], Status.FAILED, task_errors.from_exception(exc), started,
                        time.time())
            )
            continue
        finished = time.time()
        offset = 0
        for request in group:
            n = len(request.rows)
            part = {k: v[offset : offset + n] for k, v in result.items()}
            outcomes.append(Outcome(request, Status.SUCCEEDED, part, started, finished))
            offset += n
    return outcomes
