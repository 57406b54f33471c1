"""The model call: what it returns, and what it runs under."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from ml.predict import predict
from services.common.catalog import Feature, ModelMetadata


def _metadata(features: int) -> ModelMetadata:
    return ModelMetadata(
        name="m", version=1, task="classification", estimator="RandomForestClassifier",
        features=[Feature(name=f"f{i}", dtype="float64") for i in range(features)],
        classes=[0, 1], sha256="0" * 64, created_at=datetime.now(UTC), sklearn_version="1",
    )


class _Recorder:
    """An estimator that records the warning filters active while it predicts."""

    seen: list[Any] = []

    def predict(self, rows: np.ndarray) -> np.ndarray:
        self.seen = list(warnings.filters)
        warnings.warn("noise at predict time", UserWarning, stacklevel=1)
        return np.zeros(len(rows), dtype=int)


def test_the_model_runs_under_one_filter_and_the_process_keeps_its_own() -> None:
    """scikit-learn re-applies every active filter around each tree of a forest: a long
    filter list multiplies the cost of a call, so predict runs under one."""
    estimator = _Recorder()
    with warnings.catch_warnings():
        for i in range(30):
            warnings.filterwarnings("ignore", message=f"unrelated {i}")
        before = list(warnings.filters)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = predict(_metadata(2), estimator, np.zeros((3, 2)), False)
        assert result == {"predictions": [0, 0, 0]}
        assert [f[0] for f in estimator.seen] == ["ignore"]
        assert not caught  # the estimator's warning was ignored
        # The caller's filters are back once the call returns.
        assert warnings.filters == before


@pytest.mark.parametrize("probabilities", [False, True])
def test_a_forest_answers_as_when_called_directly(probabilities: bool) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 4)), rng.integers(0, 2, 200)
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y)
    result = predict(_metadata(4), forest, x[:5], probabilities)
    assert result["predictions"] == forest.predict(x[:5]).tolist()
    if probabilities:
        expected = np.round(forest.predict_proba(x[:5]), 6).tolist()
        assert result["probabilities"] == expected


def test_rows_of_a_model_with_a_string_feature_are_stacked_as_objects(tmp_path: Any) -> None:
    from ml.predict import row_dtype
    from ml.store import ModelCache, save_model
    from ml.training import check_spec, fit_all
    from services.common.dataset_formats import Column
    from services.common.records import Status
    from services.worker.execution import PredictRequest, predict_all

    spec = check_spec({"estimator": "LogisticRegression", "target_column": "y"},
                      [Column("x", "float64"), Column("city", "string"), Column("y", "string")])
    X = np.array([[float(i % 5), ["oslo", "lima"][i % 2]] for i in range(40)], dtype=object)
    y = np.array(["north" if i % 2 == 0 else "south" for i in range(40)], dtype=object)
    save_model(tmp_path, "cities", fit_all(spec, {}, X, y), features=spec.features)
    cache = ModelCache(tmp_path)
    assert row_dtype(cache.get("cities", 1)[0]) is object
    assert row_dtype(_metadata(3)) is np.float64
    requests = [PredictRequest(task_id="a", model="cities", version=1,
                               rows=[[1.0, "oslo"], [2, "lima"]]),
                PredictRequest(task_id="b", model="cities", version=1, rows=[[0.0, None]],
                               return_probabilities=False)]
    outcomes = {o.request.task_id: o for o in predict_all(cache, requests)}
    assert outcomes["a"].status == Status.SUCCEEDED
    assert outcomes["a"].payload["predictions"] == ["north", "south"]
    assert outcomes["b"].status == Status.SUCCEEDED
    assert outcomes["b"].payload["predictions"][0] in ("north", "south")
