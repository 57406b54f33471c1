"""The synchronous design: the endpoint calls the model inside the request."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

MODEL_DIR = Path(os.environ.get("SYNC_MODEL_DIR", "."))

app = FastAPI()


class Rows(BaseModel):
    instances: list[list[float]]


@cache
def model(name: str) -> Any:
    return joblib.load(MODEL_DIR / f"{name}.joblib")


@app.post("/predict/{model_name}")
def predict(model_name: str, body: Rows) -> dict[str, Any]:
    rows = np.asarray(body.instances, dtype=np.float64)
    return {"predictions": model(model_name).predict(rows).tolist()}
