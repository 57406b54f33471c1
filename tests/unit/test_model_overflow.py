"""Models whose arithmetic overflows on rows the API accepts: failed tasks with a code."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.compose import TransformedTargetRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from ml.importer import import_model
from ml.store import ModelCache
from services.common.records import Status
from services.worker.execution import PredictRequest, predict_all

X = np.array([[0.0], [1.0], [2.0], [3.0]])
Y = np.array([1.0, 2.0, 3.0, 4.0])


def _store(tmp_path: Path, name: str, estimator: object) -> ModelCache:
    store = tmp_path / "models"
    artifact = tmp_path / f"{name}.joblib"
    joblib.dump(estimator.fit(X, Y), artifact)  # type: ignore[attr-defined]
    import_model(store, artifact, name, ["x"])
    return ModelCache(store)


@pytest.mark.parametrize(
    ("name", "estimator", "fragment"),
    [
        # Squaring 1e200 overflows: Ridge refuses the infinity its first step made.
        ("squared", make_pipeline(FunctionTransformer(np.square), Ridge()),
         "Input X contains infinity"),
        # exp of a large prediction is infinity, which no check of scikit-learn's sees.
        ("exponential", TransformedTargetRegressor(Ridge(), func=np.log, inverse_func=np.exp),
         "predicted infinity or NaN"),
    ],
)
def test_an_overflowing_model_fails_its_task_with_a_code(
    tmp_path: Path, name: str, estimator: object, fragment: str
) -> None:
    cache = _store(tmp_path, name, estimator)
    good = PredictRequest(task_id="good", model=name, version=1, rows=[[1.0]])
    bad = PredictRequest(task_id="bad", model=name, version=1, rows=[[1e200]])
    outcomes = {o.request.task_id: o for o in predict_all(cache, [good, bad])}
    # The overflowing task fails alone; its batch neighbour still gets its prediction.
    assert outcomes["good"].status == Status.SUCCEEDED
    failed = outcomes["bad"]
    assert failed.status == Status.FAILED
    assert failed.payload["code"] == "non_finite_values"
    assert failed.payload["type"] == "NonFiniteValues"
    message = failed.payload["message"]
    assert fragment in message and "smaller magnitude" in message


def test_other_model_errors_carry_no_code(tmp_path: Path) -> None:
    cache = _store(tmp_path, "ridge", Ridge())
    outcome, = predict_all(cache, [PredictRequest(task_id="t", model="ridge", version=1,
                                                  rows=[[1.0, 2.0]])])
    assert outcome.status == Status.FAILED and "code" not in outcome.payload
