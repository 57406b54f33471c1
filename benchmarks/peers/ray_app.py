"""The Ray Serve peer: one replica batching single-row requests into one model call.

Runs in the Ray virtualenv only (benchmarks/peers/venvs.py). ``POST /predict/{model}`` with
``{"instances": [[...], ...]}`` answers ``{"predictions": [...]}`` in the same request, as
the sync endpoint does; requests waiting together share one ``predict`` per model
(``@serve.batch``, up to 128, no extra wait), and every call is counted for the benchmark
(benchmarks/peers/serving.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ray import serve
from ray.serve import Application
from serving import (
    COUNTS_DIR_ENV,
    MODEL_DIR_ENV,
    BatchCounter,
    Rows,
    load_models,
    predict_grouped,
    rows_problem,
)
from starlette.requests import Request
from starlette.responses import JSONResponse

PREFIX = "/predict/"


@serve.deployment(num_replicas=1, max_ongoing_requests=256)
class Predictor:
    def __init__(self, model_dir: str, counts_dir: str) -> None:
        self._models = load_models(Path(model_dir))
        self._counter = BatchCounter(Path(counts_dir))

    @serve.batch(max_batch_size=128, batch_wait_timeout_s=0)
    async def predict(self, requests: list[tuple[str, Rows]]) -> list[list[Any]]:
        return predict_grouped(self._models, self._counter, requests)

    async def __call__(self, request: Request) -> JSONResponse:
        path = request.url.path
        model = path[len(PREFIX):] if path.startswith(PREFIX) else ""
        if model not in self._models:
            return error(404, "not_found", f"no model at {path}; try {PREFIX}forest")
        try:
            rows = (await request.json())["instances"]
        except (ValueError, KeyError, TypeError):
            return error(400, "invalid_body", 'the body is {"instances": [[...], ...]}')
        problem = rows_problem(self._models[model], rows)
        if problem:
            return error(400, "invalid_body", problem)
        # A Response, not a dict: Serve would send a dict chunked, with no Content-Length.
        return JSONResponse({"predictions": await self.predict((model, rows))})


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": {}}}, status)


def app() -> Application:
    return Predictor.bind(os.environ[MODEL_DIR_ENV], os.environ[COUNTS_DIR_ENV])
