"""Registering a user's joblib-saved scikit-learn estimator or pipeline as a new version."""

from __future__ import annotations

from pathlib import Path

import joblib

from services.common.catalog import ModelMetadata, ModelStore

from .errors import ImportModelError
from .store import save_model


def import_model(
    store: ModelStore, path: Path, name: str, features: list[str] | None = None
) -> ModelMetadata:
    """Feature names come from ``features``, else ``feature_names_in_``, else ``x0..xN``."""
    try:
        estimator = joblib.load(path)
    except FileNotFoundError:
        raise ImportModelError(f"no file at {path}") from None
    except Exception as exc:
        raise ImportModelError(f"{path} is not a joblib file: {exc}") from exc
    if not hasattr(estimator, "predict"):
        raise ImportModelError(f"{path} holds a {type(estimator).__name__}, which has no predict()")
    n_features = getattr(estimator, "n_features_in_", None)
    if features is None:
        known = getattr(estimator, "feature_names_in_", None)
        if known is not None:
            features = [str(f) for f in known]
        elif n_features is not None:
            features = [f"x{i}" for i in range(n_features)]
        else:
            raise ImportModelError(f"{path}: the estimator is not fitted; pass --features")
    if n_features is not None and len(features) != n_features:
        raise ImportModelError(
            f"{len(features)} feature names given but the estimator expects {n_features}"
        )
    return save_model(
        store, name, estimator, features=features, description=f"imported from {path.name}"
    )
