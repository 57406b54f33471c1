"""Submitting, reading, waiting for and cancelling tasks in Redis, asynchronously.

A task is its tenant's: every read, wait and cancel names the caller's tenant, and another
tenant's task answers as one that does not exist, checked on the record the call reads
anyway (no extra round trip) or inside the script that acts on it.

A request that waits for a task names this process's channel in the task's record, so the
task's end is told to this process alone (see ``waiter``).
"""

from __future__ import annotations

import time
import uuid
from contextlib import AbstractContextManager
from typing import Any

import redis.asyncio as aioredis
from opentelemetry.trace import SpanKind

from services.api.rate_limit import Charge
from services.api.submits import SubmitBatcher
from services.api.tracing import RequestTrace
from services.api.waiter import TaskWaiter, woken
from services.common import keys
from services.common.catalog import ModelMetadata
from services.common.messages import PREDICT_TASK, build_message
from services.common.records import (
    CANCEL_SCRIPT,
    TERMINAL,
    WATCH_SCRIPT,
    decoded,
    new_record,
    pairs,
    submit_args,
    to_public,
)
from services.common.settings import Settings
from services.common.telemetry import inject, tracer
from services.common.tenants import DEFAULT_TENANT, owned_by


class TaskService:
    def __init__(self, client: aioredis.Redis, settings: Settings, waiter: TaskWaiter) -> None:
        self._client = client
        self._ttl = settings.task_ttl_seconds
        self._waiter = waiter
        self._cancel = client.register_script(CANCEL_SCRIPT)
        self._submits = SubmitBatcher(client)
        self._watch = client.register_script(WATCH_SCRIPT)

    async def submit_prediction(
        self,
        metadata: ModelMetadata,
        queue: str,
        rows: list[list[Any]],
        return_probabilities: bool,
        wait: float,
        trace: RequestTrace | None = None,
        tenant: str = DEFAULT_TENANT,
        owner: str = DEFAULT_TENANT,
        charge: Charge | None = None,
    ) -> dict[str, Any]:
        """Record ``tenant``'s task and enqueue it on ``queue`` in one round trip; wait up
        to ``wait`` s for the result. ``owner`` is the tenant whose part of the store holds
        the model (``tenant``'s own, or the shared models').

        ``trace`` is the request's: the record keeps its id, the message carries it on.
        ``charge``, what the request takes from its caller's rate limits, is taken in the
        same round trip: ``RateLimited`` when refused, and nothing is queued.
        """
        task_id = str(uuid.uuid4())
        now = time.time()
        with self._waiter.watch(task_id) as finished:
            record = new_record(model=metadata.name, version=metadata.version, queue=queue,
                                rows=len(rows), trace_id=trace.trace_id if trace else None,
                                now=now, notify=self._waiter.channel if wait > 0 else None,
                                tenant=tenant)
            kwargs = {
                "task_id": task_id,
                "model": metadata.name,
                "version": metadata.version,
                "rows": rows,
                "return_probabilities": return_probabilities,
                "submitted_at": now,
            }
            if owner != DEFAULT_TENANT:
                kwargs["tenant"] = owner
            if trace is not None and trace.sampled:
                with _producer_span(task_id, metadata.name, queue, len(rows)):
                    await self._enqueue(task_id, queue, record, kwargs, inject(), charge)
            else:
                # Unsampled: the message carries the request's own trace headers, and the
                # worker, reading their cleared sampled flag, makes no span.
                await self._enqueue(task_id, queue, record, kwargs,
                                    trace.headers if trace else {}, charge)
            if wait > 0 and await woken(finished, wait):
                done = finished.result()
                if done is not None:
                    return to_public(task_id, done)
                return await self.get(task_id, tenant) or to_public(task_id, record)
        return to_public(task_id, record)

    async def _enqueue(self, task_id: str, queue: str, record: dict[str, str],
                       kwargs: dict[str, Any], headers: dict[str, str],
                       charge: Charge | None) -> None:
        """Store the task's record and push its message, in one round trip (shared with the
        submits of other requests of the same moment), with what the request takes from its
        rate limits when it has some."""
        message = build_message(PREDICT_TASK, task_id, queue, kwargs, headers)
        task_keys = [keys.task_key(task_id), keys.queue_key(queue)]
        args = submit_args(self._ttl, message, record)
        if charge is None:
            await self._submits.submit(task_keys, args)
        else:
            charge.settle(await self._submits.submit(task_keys, args, charge.plan.buckets,
                                                     [charge.plan.spec, charge.rows]))

    async def get(self, task_id: str, tenant: str = DEFAULT_TENANT,
                  wait: float = 0) -> dict[str, Any] | None:
        """``tenant``'s task, waiting up to ``wait`` s for a terminal state; None when
        unknown or another tenant's."""
        key = keys.task_key(task_id)
        if wait <= 0:
            raw = await self._client.hgetall(key)
            return to_public(task_id, raw) if raw and owned_by(raw, tenant) else None
        deadline = time.monotonic() + wait
        with self._waiter.watch(task_id) as finished:
            # Read the record and, unless it is terminal (or another tenant's), have its end
            # told to this process.
            raw = pairs(await self._watch(keys=[key], args=[self._waiter.channel, tenant]))
            if not raw:
                return None
            if _status(raw) in TERMINAL:
                return to_public(task_id, raw)
            ended = await woken(finished, wait)
            done = finished.result() if ended else None
        if done is not None:
            return to_public(task_id, done)
        # Woken without the record (the subscription came back): look again, and wait out
        # the rest; or the wait ran out: the record as it is now.
        return await self.get(task_id, tenant, deadline - time.monotonic() if ended else 0)

    async def cancel(self, task_id: str,
                     tenant: str = DEFAULT_TENANT) -> tuple[bool, str, str | None]:
        """Whether this call cancelled ``tenant``'s task, its status (``missing`` when
        unknown or another tenant's) and the queue it was sent to."""
        cancelled, status, queue = await self._cancel(
            keys=[keys.task_key(task_id)],
            args=[repr(time.time()), self._ttl, task_id, tenant],
        )
        return bool(cancelled), decoded(status), decoded(queue) or None


def _producer_span(task_id: str, model: str, queue: str, rows: int) -> AbstractContextManager[Any]:
    """The enqueue's span of a sampled request, current while the message is built."""
    return tracer().start_as_current_span(
        "inferq.enqueue",
        kind=SpanKind.PRODUCER,
        attributes={
            "inferq.task_id": task_id,
            "inferq.model": model,
            "messaging.destination.name": queue,
            "inferq.rows": rows,
        },
    )


def _status(raw: dict[Any, Any]) -> str:
    return str(raw[b"status"].decode())
