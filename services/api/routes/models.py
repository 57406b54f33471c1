"""Models: listing, metadata, and submitting predictions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from services.api.body import read_body
from services.api.deps import StateDep, query_version, resolve_model, state_of, wait_seconds
from services.api.errors import InvalidParameter
from services.api.openapi import (
    LIST_RESPONSES,
    MODEL_RESPONSES,
    PREDICT_BODY,
    PREDICT_RESPONSES,
    PREDICT_VERSION_PARAMETER,
    WAIT_PARAMETER,
)
from services.api.responses import json_response
from services.api.schemas import ModelList
from services.api.tracing import request_trace
from services.api.validation import check_rows, parse_predict_body
from services.common.catalog import ModelMetadata
from services.common.metrics import TASKS_SUBMITTED, series
from services.common.records import TERMINAL

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", summary="List the models", response_model=ModelList, responses=LIST_RESPONSES)
async def list_models(state: StateDep) -> dict[str, Any]:
    """Every model in the store with its versions, its latest version and its task kind."""
    models = []
    for name, versions in state.catalog.models().items():
        latest = state.catalog.get(name)
        models.append(
            {
                "name": name,
                "versions": versions,
                "latest": versions[-1],
                "task": latest.task if latest else None,
            }
        )
    return {"models": models}


@router.get("/{model}", summary="Describe a model", response_model=ModelMetadata,
            responses=MODEL_RESPONSES)
async def get_model(
    state: StateDep, model: str,
    version: Annotated[int | None, Query(ge=1, description="a version; the latest by default")]
    = None,
) -> ModelMetadata:
    """The metadata of one version: task kind, feature names and dtypes in the order rows
    list them, classes, metrics, the artifact's sha256 and when it was created."""
    return resolve_model(state, model, version)


@router.post(
    "/{model}/predict",
    summary="Submit rows for prediction",
    status_code=202,
    response_class=Response,
    responses=PREDICT_RESPONSES,
    openapi_extra={"parameters": [WAIT_PARAMETER, PREDICT_VERSION_PARAMETER],
                   "requestBody": PREDICT_BODY},
)
async def predict(request: Request, model: str) -> Response:
    """Record a task for the rows and queue it for the model's worker pool.

    The answer is the task: 202 with `Location` while it is queued or running, or 200 when
    it finished within `wait` seconds. Rows are checked against the model's features first:
    a row that does not fit is a 422 naming its row and column. The version is the query's
    or the body's `version` (they must agree), else the latest.
    """
    state = state_of(request)
    wait = wait_seconds(request, state.settings)
    asked = query_version(request)
    raw = await read_body(request, state.settings.max_body_bytes)
    body = parse_predict_body(raw, state.settings.max_rows)
    if asked is not None and body.version is not None and asked != body.version:
        raise InvalidParameter(
            f"version={asked} in the query and \"version\": {body.version} in the body "
            "disagree; give one of them",
            {"parameter": "version", "query": asked, "body": body.version},
        )
    metadata = resolve_model(state, model, body.version if asked is None else asked)
    rows = check_rows(body.instances, metadata)
    queue = state.settings.queue_for(metadata.name)
    task = await state.tasks.submit_prediction(
        metadata, queue, rows, body.return_probabilities, wait, request_trace(request.scope)
    )
    series(TASKS_SUBMITTED, metadata.name, queue).inc()
    location = f"/v1/tasks/{task['task_id']}"
    status = 200 if task["status"] in TERMINAL else 202
    return json_response(task, status, {"Location": location})
