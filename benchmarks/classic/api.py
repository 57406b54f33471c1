"""The classic API: submit returns a task id; clients poll the status endpoint."""

from __future__ import annotations

from typing import Any

from celery.result import AsyncResult
from fastapi import FastAPI
from pydantic import BaseModel
from tasks import app as celery_app
from tasks import predict

app = FastAPI()


class Rows(BaseModel):
    instances: list[list[float]]


@app.post("/predict/{model}")
def submit(model: str, body: Rows) -> dict[str, str]:
    return {"task_id": predict.delay(model, body.instances).id}


@app.get("/tasks/{task_id}")
def status(task_id: str) -> dict[str, Any]:
    result = AsyncResult(task_id, app=celery_app)
    state = result.state
    return {"status": state, "result": result.result if state == "SUCCESS" else None}
