"""The benchmark's models: a random forest and a logistic regression on one synthetic set."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

MODELS = ("forest", "logistic")
FEATURES = 20


def dataset() -> tuple[np.ndarray, np.ndarray]:
    return make_classification(20_000, FEATURES, random_state=0)


def train(directory: Path) -> dict[str, Path]:
    """Fit both models once and save them with joblib; returns each model's file."""
    directory.mkdir(parents=True, exist_ok=True)
    x, y = dataset()
    estimators = {
        "forest": RandomForestClassifier(n_estimators=100, random_state=0),
        "logistic": LogisticRegression(max_iter=1000),
    }
    paths = {}
    for name, estimator in estimators.items():
        path = directory / f"{name}.joblib"
        if not path.exists():
            joblib.dump(estimator.fit(x, y), path)
        paths[name] = path
    return paths


def request_rows(n: int, seed: int = 1) -> list[list[float]]:
    """Single rows the clients send, drawn from the training distribution."""
    x, _ = dataset()
    rng = np.random.default_rng(seed)
    return [[round(float(v), 6) for v in x[i]] for i in rng.choice(len(x), n)]
