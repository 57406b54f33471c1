"""Models: listing, metadata, and submitting predictions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from services.api.body import read_body
from services.api.deps import StateDep, resolve_model, state_of, wait_seconds
from services.api.openapi import (
    MODEL_RESPONSES,
    PREDICT_BODY,
    PREDICT_RESPONSES,
    WAIT_PARAMETER,
)
from services.api.responses import json_response
from services.api.tracing import request_trace
from services.api.validation import check_rows, parse_predict_body
from services.common.metrics import TASKS_SUBMITTED, series
from services.common.records import TERMINAL

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("")
async def list_models(state: StateDep) -> dict[str, Any]:
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


@router.get("/{model}", responses=MODEL_RESPONSES)
async def get_model(
    state: StateDep, model: str, version: Annotated[int | None, Query(ge=1)] = None
) -> dict[str, Any]:
    return resolve_model(state, model, version).model_dump(mode="json")


@router.post(
    "/{model}/predict",
    status_code=202,
    response_class=Response,
    responses=PREDICT_RESPONSES,
    openapi_extra={"parameters": [WAIT_PARAMETER], "requestBody": PREDICT_BODY},
)
async def predict(request: Request, model: str) -> Response:
    state = state_of(request)
    wait = wait_seconds(request, state.settings)
    raw = await read_body(request, state.settings.max_body_bytes)
    body = parse_predict_body(raw, state.settings.max_rows)
    metadata = resolve_model(state, model, body.version)
    rows = check_rows(body.instances, metadata)
    queue = state.settings.queue_for(metadata.name)
    task = await state.tasks.submit_prediction(
        metadata, queue, rows, body.return_probabilities, wait, request_trace(request.scope)
    )
    series(TASKS_SUBMITTED, metadata.name, queue).inc()
    location = f"/v1/tasks/{task['task_id']}"
    status = 200 if task["status"] in TERMINAL else 202
    return json_response(task, status, {"Location": location})
