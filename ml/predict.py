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
        # Models fitted on a DataFrame warn about arrays; rows arrive in feature order.
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        result: dict[str, list[Any]] = {"predictions": estimator.predict(rows).tolist()}
        if return_probabilities and metadata.task == "classification":
            if not hasattr(estimator, "predict_proba"):
                raise TypeError(f"{metadata.estimator} gives no probabilities")
            result["probabilities"] = np.round(estimator.predict_proba(rows), 6).tolist()
    return result
