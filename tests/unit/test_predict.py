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
