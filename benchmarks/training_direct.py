"""Training without the platform: scikit-learn's own cross-validation and grid search next
to the same work done serially through ml/training.py, as one training job runs it.

On synthetic rows (20 numeric features, a binary target, seed 0), times:

- ``cross_validate``: RandomForestClassifier(n_estimators=100, n_jobs=1) over a shuffled
  StratifiedKFold of ``--cv`` folds, folds run by ``--jobs`` processes;
- ``grid_search``: GridSearchCV of 8 candidates of it over ``--grid-cv`` folds, ``--jobs``
  processes, the best refitted on every row;
- ``engine_cv`` and ``engine_grid``: the same folds and candidates through ``fit_and_score``
  (and ``fit_all`` for the best) one after another in this process.

The baseline a training pool is measured against: the engine's serial time over
scikit-learn's parallel time is what a job costs on one worker process. The default grid
uses 3 folds, so that the whole run (five 100-tree forests on 80,000 rows per fold set)
stays within half an hour on two cores. Prints one JSON object.

Run: ``python benchmarks/training_direct.py [--rows 100000] [--cv 5] [--grid-cv 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate

from ml.training import (
    candidates,
    check_spec,
    fit_all,
    fit_and_score,
    higher_is_better,
    splits,
    summarize,
)
from services.common.dataset_formats import Column

sys.path.insert(0, str(Path(__file__).parent))

from common import machine

FEATURES = 20
SEED = 0
TREES = 100
#: 8 candidates, the depth-limited ones cheaper than the full trees.
GRID: dict[str, list[Any]] = {"max_depth": [8, None], "min_samples_leaf": [1, 10],
                              "criterion": ["gini", "entropy"]}


def data(rows: int) -> tuple[np.ndarray, np.ndarray]:
    return make_classification(n_samples=rows, n_features=FEATURES, n_informative=10,
                               random_state=SEED)


def forest() -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=TREES, n_jobs=1, random_state=SEED)


def folds(k: int) -> StratifiedKFold:
    return StratifiedKFold(n_splits=k, shuffle=True, random_state=SEED)


def timed(name: str, work: Any) -> tuple[float, Any]:
    """Seconds ``work`` took, said on stderr as soon as known (a long run shows its
    progress), and its result."""
    started = time.perf_counter()
    result = work()
    seconds = round(time.perf_counter() - started, 2)
    print(json.dumps({name: seconds}), file=sys.stderr, flush=True)
    return seconds, result


def engine(X: np.ndarray, y: np.ndarray, k: int, grid: dict[str, list[Any]]) -> dict[str, Any]:
    """Every candidate on every fold through fit_and_score, then the best refitted when
    there is a grid: what one training job does, in one process."""
    columns = [Column(f"x{j}", "float64") for j in range(FEATURES)] + [Column("y", "int64")]
    body: dict[str, Any] = {"estimator": "RandomForestClassifier", "target_column": "y",
                            "hyperparameters": {"n_estimators": TREES},
                            "validation": {"cv": k}, "seed": SEED}
    if grid:
        body["search"] = {"grid": grid, "metric": "accuracy"}
    spec = check_spec(body, columns)
    scores = []
    for params in candidates(spec):
        scores.append((summarize([fit_and_score(spec, params, X, y, train, test)[1]
                                  for train, test in splits(spec, y)]), params))
    sign = 1 if higher_is_better(spec.metric) else -1
    best, params = max(scores, key=lambda s: sign * s[0][spec.metric])
    if grid:
        fit_all(spec, params, X, y)
    return {"best": params, "metrics": {k: round(v, 4) for k, v in best.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--grid-cv", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    X, y = data(args.rows)
    load = os.getloadavg()[0]

    cv_s, cv = timed("sklearn_cross_validate", lambda: cross_validate(
        forest(), X, y, cv=folds(args.cv), n_jobs=args.jobs, scoring="accuracy"))
    grid_s, search = timed("sklearn_grid_search", lambda: GridSearchCV(
        forest(), GRID, cv=folds(args.grid_cv), n_jobs=args.jobs, scoring="accuracy").fit(X, y))
    engine_cv_s, engine_cv = timed("engine_cv_serial", lambda: engine(X, y, args.cv, {}))
    engine_grid_s, engine_grid = timed("engine_grid_serial",
                                       lambda: engine(X, y, args.grid_cv, GRID))
    print(json.dumps({
        "benchmark": "training_direct",
        "rows": args.rows, "features": FEATURES, "trees": TREES, "seed": SEED,
        "cv": args.cv, "grid_cv": args.grid_cv, "grid_candidates": len(search.cv_results_[
            "params"]), "jobs": args.jobs,
        "seconds": {
            "sklearn_cross_validate": cv_s,
            "sklearn_grid_search": grid_s,
            "engine_cv_serial": engine_cv_s,
            "engine_grid_serial": engine_grid_s,
        },
        "accuracy": {
            "sklearn_cross_validate": round(float(np.mean(cv["test_score"])), 4),
            "sklearn_grid_search_best": round(float(search.best_score_), 4),
            "engine_cv": engine_cv["metrics"]["accuracy"],
            "engine_grid_best": engine_grid["metrics"]["accuracy"],
        },
        "best": {"sklearn": search.best_params_, "engine": engine_grid["best"]},
        "load_average_1m": {"start": round(load, 2), "end": round(os.getloadavg()[0], 2)},
        "machine": machine(),
    }, indent=2))


if __name__ == "__main__":
    main()
