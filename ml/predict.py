"""Vectorised prediction: one call of the model for many rows."""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np

from services.common.catalog import ModelMetadata
from services.common.values import STRING_DTYPE

from .errors import NonFiniteValues

#: scikit-learn's refusal of an infinite or NaN input, met when a step's output overflowed.
_NON_FINITE_INPUT = re.compile(r"contains (?:infinity|NaN)")


def row_dtype(metadata: ModelMetadata) -> type:
    """The array type a model takes its rows in: float64, or object (numbers and strings
    side by side) when a feature is a string."""
    return object if any(f.dtype == STRING_DTYPE for f in metadata.features) else np.float64


def predict(
    metadata: ModelMetadata, estimator: Any, rows: np.ndarray, return_probabilities: bool
) -> dict[str, list[Any]]:
    """Predictions (and class probabilities when asked and available) for ``rows``.

    Raises ``NonFiniteValues`` when the model's arithmetic overflows on ``rows``: a step
    refuses what an earlier one turned into infinity, or the predictions are not finite.
    """
    try:
        return _predict(metadata, estimator, rows, return_probabilities)
    except ValueError as exc:
        if _NON_FINITE_INPUT.search(str(exc)):
            raise NonFiniteValues(
                f"{metadata.name} v{metadata.version} overflowed to infinity or NaN on these "
                f"rows ({exc}); send values of smaller magnitude"
            ) from exc
        raise


def _predict(
    metadata: ModelMetadata, estimator: Any, rows: np.ndarray, return_probabilities: bool
) -> dict[str, list[Any]]:
    with warnings.catch_warnings():
        # One filter that ignores everything, in place of the process's list: scikit-learn
        # re-applies every active filter around each tree of an ensemble (its joblib
        # wrapper), so a 100-tree forest on one row cost 10 ms with the worker's 14 filters
        # and costs 5 ms with one. What a model warns about at predict time (arrays for a
        # model fitted on a DataFrame, say: rows arrive in feature order) is not news.
        warnings.resetwarnings()
        warnings.simplefilter("ignore")
        predictions = np.asarray(estimator.predict(rows))
        if predictions.dtype.kind in "fc" and not np.isfinite(predictions).all():
            raise NonFiniteValues(
                f"{metadata.name} v{metadata.version} predicted infinity or NaN for these "
                "rows: its arithmetic overflowed; send values of smaller magnitude"
            )
        result: dict[str, list[Any]] = {"predictions": predictions.tolist()}
        if return_probabilities and metadata.task == "classification":
            if not hasattr(estimator, "predict_proba"):
                raise TypeError(f"{metadata.estimator} gives no probabilities")
            result["probabilities"] = np.round(estimator.predict_proba(rows), 6).tolist()
    return result
