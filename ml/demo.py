"""The demo models, trained on datasets that ship inside scikit-learn."""

from __future__ import annotations

import re

from sklearn import datasets
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from services.common.catalog import ModelMetadata, ModelStore, list_models, model_storage

from .store import save_model

DEMO_MODELS = ("iris", "breast-cancer", "diabetes")


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def train_demo(store: ModelStore) -> list[ModelMetadata]:
    """Train iris, breast-cancer and diabetes and store each as a new version."""
    store = model_storage(store)
    written = []
    for name, loader, estimator, score in (
        (
            "iris",
            datasets.load_iris,
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
            "accuracy",
        ),
        (
            "breast-cancer",
            datasets.load_breast_cancer,
            RandomForestClassifier(n_estimators=100, random_state=0),
            "accuracy",
        ),
        ("diabetes", datasets.load_diabetes, Ridge(alpha=1.0), "r2"),
    ):
        bunch = loader()
        # Classifiers answer with class names ("setosa"), not codes.
        target = bunch.target_names[bunch.target] if score == "accuracy" else bunch.target
        x_train, x_test, y_train, y_test = train_test_split(
            bunch.data, target, test_size=0.25, random_state=0
        )
        estimator.fit(x_train, y_train)
        predicted = estimator.predict(x_test)
        value = (
            accuracy_score(y_test, predicted)
            if score == "accuracy"
            else r2_score(y_test, predicted)
        )
        written.append(
            save_model(
                store,
                name,
                estimator,
                features=[_snake(f) for f in bunch.feature_names],
                metrics={score: round(float(value), 4)},
                description=f"demo: {type(estimator).__name__} on scikit-learn's {name} dataset",
            )
        )
    return written


def ensure_demo(store: ModelStore) -> list[ModelMetadata]:
    """Train the demo models only when the store holds no model at all."""
    store = model_storage(store)
    return [] if list_models(store) else train_demo(store)
