"""Tasks: reading (and waiting for) one, and cancelling one that has not started."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from services.api.deps import StateDep, state_of, wait_seconds
from services.api.errors import TaskNotCancellable, TaskNotFound
from services.api.openapi import CANCEL_RESPONSES, TASK_RESPONSES, WAIT_PARAMETER
from services.api.principal import principal_of
from services.api.responses import json_response
from services.common.metrics import TASKS_FINISHED, series
from services.common.records import Status

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])


def _not_found(task_id: str) -> TaskNotFound:
    return TaskNotFound(
        f"no task {task_id!r}: it was never submitted or its record expired", {"task_id": task_id}
    )


@router.get(
    "/{task_id}",
    summary="Read a task, waiting for its end",
    response_class=Response,
    responses=TASK_RESPONSES,
    openapi_extra={"parameters": [WAIT_PARAMETER]},
)
async def get_task(request: Request, task_id: str) -> Response:
    """The task with its result or error once it has one. With `wait`, the answer comes when
    the task ends or when `wait` seconds have passed, whichever is first."""
    state = state_of(request)
    wait = wait_seconds(request, state.settings)
    task = await state.tasks.get(task_id, principal_of(request).tenant, wait)
    if task is None:
        raise _not_found(task_id)
    return json_response(task)


@router.delete("/{task_id}", summary="Cancel a queued task", responses=CANCEL_RESPONSES)
async def cancel_task(request: Request, state: StateDep, task_id: str) -> dict[str, Any]:
    """Cancel a task that no worker has started: it will never run. A task already running
    or finished is a 409."""
    tenant = principal_of(request).tenant
    cancelled, outcome, queue = await state.tasks.cancel(task_id, tenant)
    if outcome == "missing":
        raise _not_found(task_id)
    if not cancelled:
        raise TaskNotCancellable(
            f"task {task_id} is {outcome}; only a queued task can be cancelled",
            {"task_id": task_id, "status": outcome},
        )
    task = await state.tasks.get(task_id, tenant)
    if task is None:
        raise _not_found(task_id)
    series(TASKS_FINISHED, task["model"], queue or "unknown", Status.CANCELLED.value).inc()
    return task
