"""Vectorised prediction: one call of the model for many rows."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from services.common.catalog import ModelMetadata


def predict(
    metadata: ModelMetadata, estimator: Any, rows: np.ndarray, return_probabilities: bool
) -> dict[str, list[Any]]:
    """Predictions (and class probabilities when asked and available) for ``rows``."""
    with warnings.catch_warnings():
        # One filter that ignores everything, in place of the process's list: scikit-learn
        # re-applies every active filter around each tree of an ensemble (its joblib
        # wrapper), so a 100-tree forest on one row cost 10 ms with the worker's 14 filters
        # and costs 5 ms with one. What a model warns about at predict time (arrays for a
        # model fitted on a DataFrame, say: rows arrive in feature order) is not news.
        warnings.resetwarnings()
        warnings.simplefilter("ignore")
        result: dict[str, list[Any]] = {"predictions": estimator.predict(rows).tolist()}
        if return_probabilities and metadata.task == "classification":
            if not hasattr(estimator, "predict_proba"):
                raise TypeError(f"{metadata.estimator} gives no probabilities")
            result["probabilities"] = np.round(estimator.predict_proba(rows), 6).tolist()
    return result
