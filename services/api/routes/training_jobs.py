"""Training jobs: fitting a scikit-learn estimator on a dataset on the training pool, and
registering the result as a new version of a model."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response

from services.api.deps import ApiState, StateDep, wait_seconds
from services.api.errors import JobNotCancellable, JobNotFound, SharedModel
from services.api.job_service import observe_cancelled
from services.api.openapi import (
    TRAINING_CANCEL_RESPONSES,
    TRAINING_LIST_RESPONSES,
    TRAINING_RESPONSES,
    TRAINING_SUBMIT_RESPONSES,
    WAIT_PARAMETER,
)
from services.api.principal import principal_of
from services.api.responses import json_response
from services.api.schemas import TrainingJobRequest
from services.api.tracing import request_trace
from services.common import training_jobs
from services.common.catalog import valid_model_name

router = APIRouter(tags=["training jobs"])

#: The most jobs one listing answers.
MAX_LISTED = 1000


def _not_found(job_id: str) -> JobNotFound:
    return JobNotFound(f"no training job {job_id!r}: it was never submitted or its record "
                       "expired", {"job_id": job_id})


@router.post("/v1/models/{model}/training-jobs", summary="Train a model version",
             status_code=202, response_class=Response, responses=TRAINING_SUBMIT_RESPONSES)
async def submit_training_job(request: Request, state: StateDep, model: str,
                              body: TrainingJobRequest) -> Response:
    """Fit an estimator of the allow-list on a dataset, on the training pool, and register
    the result as the next version of `model` (created when it does not exist yet). The
    spec is checked before anything is queued: the estimator, its hyperparameters (by
    scikit-learn's own constraints), the columns, and the target's values. With `search`,
    each candidate of the grid is fitted on each fold, and the best by `search.metric` is
    registered. With `alias`, the alias moves to the new version (with `promote_if`, only
    when its metric clears the bar)."""
    tenant = principal_of(request).tenant
    await _check_trainable(state, tenant, model)
    dataset = await state.training.dataset(body.dataset_id, tenant)
    spec = await state.training.check(model, dataset, body)
    job = await state.training.submit_training(model, dataset, body, spec,
                                               request_trace(request.scope))
    return json_response(job, 202, {"Location": f"/v1/training-jobs/{job['job_id']}"})


@router.get("/v1/training-jobs", summary="List training jobs",
            responses=TRAINING_LIST_RESPONSES)
async def list_training_jobs(
    request: Request, state: StateDep,
    status: Annotated[Literal["queued", "running", "succeeded", "failed", "cancelled"] | None,
                      Query(description="only jobs in this state")] = None,
    model: Annotated[str | None, Query(description="only jobs of this model")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LISTED,
                                description=f"at most this many (up to {MAX_LISTED})")] = 100,
) -> dict[str, Any]:
    """The caller's training jobs, newest first."""
    return {"jobs": await state.training.list(principal_of(request).tenant, status, model,
                                              limit)}


@router.get("/v1/training-jobs/{job_id}", summary="Read a training job, waiting for its end",
            response_class=Response, responses=TRAINING_RESPONSES,
            openapi_extra={"parameters": [WAIT_PARAMETER]})
async def get_training_job(request: Request, state: StateDep, job_id: str) -> Response:
    """The job, its phase and progress, and once it succeeded its metrics and version. With
    `wait`, the answer comes when the job ends or when `wait` seconds have passed,
    whichever is first."""
    job = await state.training.get(job_id, principal_of(request).tenant,
                                   wait_seconds(request, state.settings))
    if job is None:
        raise _not_found(job_id)
    return json_response(job)


@router.delete("/v1/training-jobs/{job_id}", summary="Cancel a training job",
               responses=TRAINING_CANCEL_RESPONSES)
async def cancel_training_job(request: Request, state: StateDep,
                              job_id: str) -> dict[str, Any]:
    """Cancel a job that has not ended: a running fit is stopped, no task starts after
    this, and nothing is registered. A job that ended, or is registering its version, is a
    409."""
    tenant = principal_of(request).tenant
    # Unknown, of another kind, or another tenant's (a job's tenant never changes, so this
    # check cannot go stale before the cancel).
    if await state.training.record(job_id, tenant) is None:
        raise _not_found(job_id)
    cancelled, status = await state.training.cancel(job_id)
    if status == "missing":
        raise _not_found(job_id)
    if not cancelled:
        raise JobNotCancellable(
            f"training job {job_id} is {status}; only a queued or running job can be "
            "cancelled, before it registers its version", {"job_id": job_id, "status": status})
    record = await state.training.record(job_id, tenant)
    if record is None:
        raise _not_found(job_id)
    job = training_jobs.to_public(job_id, record)
    observe_cancelled(training_jobs.KIND, job["model"], record)
    return job


async def _check_trainable(state: ApiState, tenant: str, model: str) -> None:
    """A 403 when ``tenant`` names a shared model it has no own model of: its versions are
    the operator's to add (``docs/security.md``, Tenants). Any other name becomes, or
    already is, the tenant's own model."""
    if not valid_model_name(model):
        return  # The spec's check names the problem.
    await asyncio.to_thread(state.catalogs.refresh, tenant, model)
    catalog, owner = state.catalogs.serving(tenant, model)
    if owner != tenant and catalog.versions(model):
        raise SharedModel(
            f"model {model!r} is shared by every tenant; only the operator adds versions to "
            "it. Train under another name", {"model": model})
