"""Batch jobs: scoring a whole dataset on the batch pool, in chunks, into one output file."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from services.api.deps import StateDep, resolve_model, served_alias, wait_seconds
from services.api.errors import JobNotCancellable, JobNotFound, JobNotSucceeded
from services.api.job_service import observe_cancelled
from services.api.openapi import (
    JOB_CANCEL_RESPONSES,
    JOB_ERRORS_RESPONSES,
    JOB_LIST_RESPONSES,
    JOB_RESPONSES,
    JOB_RESULTS_RESPONSES,
    JOB_SUBMIT_RESPONSES,
    WAIT_PARAMETER,
)
from services.api.principal import principal_of
from services.api.responses import json_response
from services.api.schemas import BatchJobRequest
from services.api.tracing import request_trace
from services.common import job_outputs, jobs

router = APIRouter(tags=["batch jobs"])

#: The most jobs one listing answers.
MAX_LISTED = 1000


def _not_found(job_id: str) -> JobNotFound:
    return JobNotFound(f"no batch job {job_id!r}: it was never submitted or its record "
                       "expired", {"job_id": job_id})


@router.post("/v1/models/{model}/batch-jobs", summary="Score a dataset", status_code=202,
             response_class=Response, responses=JOB_SUBMIT_RESPONSES)
async def submit_batch_job(request: Request, state: StateDep, model: str,
                           body: BatchJobRequest) -> Response:
    """Score every row of a dataset with a model version (`version`, else the one `alias`
    points at, else the alias `production`'s, else the latest), on the batch pool, in
    chunks; the job names the version used, and the alias it came from (`alias`, or
    `production` when neither was given; null for a version given or the latest). The
    model's features must be columns of the dataset; a row whose values do not fit is
    rejected alone (`GET .../errors` lists it), and the job fails when more than
    `max_failed_rows` are."""
    tenant = principal_of(request).tenant
    catalog, owner = state.catalogs.serving(tenant, model)
    metadata = resolve_model(catalog, model, body.version, body.alias)
    alias = served_alias(catalog, model, body.version, body.alias, metadata.version)
    dataset = await state.jobs.dataset(body.dataset_id, tenant)
    job = await state.jobs.submit(metadata, dataset, body, request_trace(request.scope), owner,
                                  alias)
    return json_response(job, 202, {"Location": f"/v1/batch-jobs/{job['job_id']}"})


@router.get("/v1/batch-jobs", summary="List batch jobs", responses=JOB_LIST_RESPONSES)
async def list_batch_jobs(
    request: Request, state: StateDep,
    status: Annotated[Literal["queued", "running", "succeeded", "failed", "cancelled"] | None,
                      Query(description="only jobs in this state")] = None,
    model: Annotated[str | None, Query(description="only jobs of this model")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LISTED,
                                description=f"at most this many (up to {MAX_LISTED})")] = 100,
) -> dict[str, Any]:
    """The caller's batch jobs, newest first."""
    return {"jobs": await state.jobs.list(principal_of(request).tenant, status, model, limit)}


@router.get("/v1/batch-jobs/{job_id}", summary="Read a batch job, waiting for its end",
            response_class=Response, responses=JOB_RESPONSES,
            openapi_extra={"parameters": [WAIT_PARAMETER]})
async def get_batch_job(request: Request, state: StateDep, job_id: str) -> Response:
    """The job and its progress. With `wait`, the answer comes when the job ends or when
    `wait` seconds have passed, whichever is first."""
    job = await state.jobs.get(job_id, principal_of(request).tenant,
                               wait_seconds(request, state.settings))
    if job is None:
        raise _not_found(job_id)
    return json_response(job)


@router.delete("/v1/batch-jobs/{job_id}", summary="Cancel a batch job",
               responses=JOB_CANCEL_RESPONSES)
async def cancel_batch_job(request: Request, state: StateDep, job_id: str) -> dict[str, Any]:
    """Cancel a job that has not ended: no chunk starts after this, and the chunks running
    are not counted. A job already ended is a 409."""
    tenant = principal_of(request).tenant
    # Unknown, of another kind, or another tenant's (a job's tenant never changes, so this
    # check cannot go stale before the cancel).
    if await state.jobs.record(job_id, tenant) is None:
        raise _not_found(job_id)
    cancelled, status = await state.jobs.cancel(job_id)
    if status == "missing":
        raise _not_found(job_id)
    if not cancelled:
        raise JobNotCancellable(f"batch job {job_id} is {status}; only a queued or running "
                                "job can be cancelled", {"job_id": job_id, "status": status})
    record = await state.jobs.record(job_id, tenant)
    if record is None:
        raise _not_found(job_id)
    job = jobs.to_public(job_id, record)
    observe_cancelled(jobs.KIND, job["model"], record)
    return job


@router.get("/v1/batch-jobs/{job_id}/results", summary="Download a batch job's output",
            response_class=StreamingResponse, responses=JOB_RESULTS_RESPONSES)
async def batch_job_results(request: Request, state: StateDep,
                            job_id: str) -> StreamingResponse:
    """The whole output file, streamed, rows in input order: `row`, the id and passthrough
    columns, `prediction` and the `probability_<class>` columns."""
    record = await state.jobs.record(job_id, principal_of(request).tenant)
    if record is None:
        raise _not_found(job_id)
    if record["status"] != "succeeded":
        raise JobNotSucceeded(
            f"batch job {job_id} is {record['status']}; its results exist once it succeeded"
            + (" (GET it with ?wait= to wait for its end)"
               if record["status"] in ("queued", "running") else ""),
            {"job_id": job_id, "status": record["status"]})
    fmt = record["format"]
    return StreamingResponse(
        state.jobs.results(job_id, record), media_type=job_outputs.MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{job_id}.{fmt}"'})


@router.get("/v1/batch-jobs/{job_id}/errors", summary="List a batch job's rejected rows",
            response_class=StreamingResponse, responses=JOB_ERRORS_RESPONSES)
async def batch_job_errors(request: Request, state: StateDep,
                           job_id: str) -> StreamingResponse:
    """JSON Lines, one `{"row", "id"?, "code", "message"}` per rejected row, in row order;
    while the job runs, those of the chunks done so far."""
    if await state.jobs.record(job_id, principal_of(request).tenant) is None:
        raise _not_found(job_id)
    return StreamingResponse(await state.jobs.errors(job_id),
                             media_type=job_outputs.MEDIA_TYPES["jsonl"])
