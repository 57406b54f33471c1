"""Submitting and cancelling training jobs; reading, waiting for and listing them as batch
jobs are (``JobService``).

A submit checks everything a worker would trip over before anything is queued: the dataset,
the spec against the estimator's own parameter constraints and the dataset's columns, the
target column's values, the model and alias names and the promotion bar. Then it writes the
job's record and its first tasks' messages on the training queue in one Lua script.

The checks are ``services.common.training_spec``'s: plain Python against a snapshot of
scikit-learn's parameter constraints, so the API runs them without scikit-learn (the API
image has none) and imports nothing of ``ml``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from opentelemetry.trace import SpanKind

from services.api.errors import InvalidTrainingSpec
from services.api.job_service import JobService
from services.api.schemas import TrainingJobRequest
from services.api.tracing import RequestTrace
from services.common import jobs
from services.common import training_jobs as tj
from services.common import training_spec as ts
from services.common.catalog import invalid_name, valid_model_name
from services.common.datasets import Dataset
from services.common.messages import TRAINING_FINAL_TASK, TRAINING_FOLD_TASK, build_message
from services.common.telemetry import inject, tracer
from services.common.training_spec import SpecError, TrainingSpec


def invalid(field: str, message: str, **details: Any) -> InvalidTrainingSpec:
    return InvalidTrainingSpec(message, {"field": field, **details})


class TrainingService(JobService):
    kind = tj.KIND

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cancel_training = self._client.register_script(tj.CANCEL_SCRIPT)

    def public(self, job_id: str, record: dict[str, str]) -> dict[str, Any]:
        return tj.to_public(job_id, record)

    async def check(self, model: str, dataset: Dataset,
                    body: TrainingJobRequest) -> TrainingSpec:
        """The job's spec, once every check passed; a 422 naming the field otherwise."""
        if not valid_model_name(model):
            raise invalid("model", invalid_name("model", model), model=model)
        if body.alias is not None and not valid_model_name(body.alias):
            raise invalid("alias", invalid_name("alias", body.alias), alias=body.alias)
        if dataset.rows == 0:
            raise invalid("dataset_id", f"dataset {dataset.dataset_id} has no rows to train on",
                          dataset_id=dataset.dataset_id)
        fields = body.model_dump(exclude_none=True, exclude={"dataset_id", "alias"})
        spec = await asyncio.to_thread(_check_spec, fields, dataset.columns)
        if body.promote_if is not None:
            _check_promote_if(spec, body.promote_if.metric, body.promote_if.max)
        storage = self._storage()
        await asyncio.to_thread(_check_target, storage, dataset, spec)
        return spec

    async def submit_training(self, model: str, dataset: Dataset, body: TrainingJobRequest,
                              spec: TrainingSpec,
                              trace: RequestTrace | None = None) -> dict[str, Any]:
        """Record the dataset's tenant's job and queue its first tasks in one round trip;
        the queued job. The version it registers is that tenant's (``tenants``)."""
        job_id = str(uuid.uuid4())
        now = time.time()
        queue = self._settings.training_queue
        candidates = len(ts.candidates(spec))
        folds = int(spec.validation.get("cv", 1))
        record = tj.new_record(
            model=model, dataset_id=dataset.dataset_id, dataset_sha256=dataset.sha256,
            queue=queue, spec=spec.to_json(), candidates=candidates, folds=folds,
            alias=body.alias,
            promote_if=body.promote_if.model_dump(exclude_none=True) if body.promote_if
            else None,
            trace_id=trace.trace_id if trace else None, now=now)
        record["tenant"] = dataset.tenant
        tasks = tj.fold_tasks(job_id, model, candidates, folds, now)
        if trace is not None and trace.sampled:
            # One trace a job: every task's consumer span is a child of this one.
            with tracer().start_as_current_span("inferq.enqueue", kind=SpanKind.PRODUCER,
                                                attributes={
                    "inferq.job_id": job_id, "inferq.model": model,
                    "messaging.destination.name": queue, "inferq.tasks": len(tasks)}):
                await self._enqueue_fits(job_id, queue, record, tasks, inject())
        else:
            await self._enqueue_fits(job_id, queue, record, tasks,
                                     trace.headers if trace else {})
        return tj.to_public(job_id, record)

    async def _enqueue_fits(self, job_id: str, queue: str, record: dict[str, str],
                            tasks: list[tj.FitTask], headers: dict[str, str]) -> None:
        messages = [
            build_message(TRAINING_FINAL_TASK if t.final else TRAINING_FOLD_TASK, t.task_id,
                          queue, t.message_kwargs(), headers)
            for t in tasks
        ]
        await self._submit(
            keys=self.submit_keys(job_id, queue, record),
            args=[self._ttl, orjson.dumps(record), repr(float(record["submitted_at"])),
                  job_id, *messages])

    async def cancel(self, job_id: str) -> tuple[bool, str]:
        """Whether this call cancelled the job, and its status (``missing`` when unknown,
        ``registering`` when it is registering its version)."""
        cancelled, status = await self._cancel_training(
            keys=jobs.job_keys(job_id), args=[repr(time.time()), self._ttl, job_id])
        return bool(cancelled), status.decode() if isinstance(status, bytes) else str(status)


def _check_spec(fields: dict[str, Any], columns: Sequence[Any]) -> TrainingSpec:
    try:
        return ts.check_spec(fields, columns)
    except SpecError as exc:
        raise invalid(exc.field, str(exc)) from None


def _check_target(storage: Any, dataset: Dataset, spec: TrainingSpec) -> None:
    y = ts.read_target(storage, dataset, spec.target)
    try:
        ts.check_target(spec, y)
    except SpecError as exc:
        raise invalid(exc.field, str(exc), target_column=spec.target) from None


def _check_promote_if(spec: TrainingSpec, metric: str, high: float | None) -> None:
    """A ``max`` bar is for the metrics where lower is better (the engine checked the rest)."""
    if high is not None and ts.higher_is_better(metric):
        raise invalid("promote_if.max", f"promote_if.max: {metric} is better higher; give "
                      "promote_if.min instead", metric=metric)
