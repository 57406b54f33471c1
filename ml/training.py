"""Training a model from a dataset: splits, fits and scores.

Plain functions of arrays and a spec; no Redis. The spec is checked up front, without
scikit-learn, by ``services.common.training_spec`` (re-exported here: ``check_spec``,
``check_target``, ``TrainingSpec``, ``SpecError``...), against a snapshot of scikit-learn's
own parameter constraints that ``ml.training_constraints`` writes; no check of a request
is left to this module, and what neither checks (combinations of parameters, such as
LogisticRegression's penalty with its solver) scikit-learn refuses at fit time, failing
the job with its own message. The model
is a pipeline that takes rows in feature order as the API serves them: numeric columns, and
boolean ones as the numbers 0 and 1 (a row's true or false is one of them), imputed with
their median; string columns with their most frequent value and one-hot encoded; then the
estimator, seeded and held to one core.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from importlib import metadata as package_metadata
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Ridge,
    RidgeClassifier,
)
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)
from sklearn.model_selection import KFold, ShuffleSplit, StratifiedKFold, StratifiedShuffleSplit
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from threadpoolctl import threadpool_limits

from services.common.datasets import Dataset, read_rows
from services.common.training_spec import CLASSIFICATION as CLASSIFICATION
from services.common.training_spec import ESTIMATOR_TASKS, as_array
from services.common.training_spec import METRICS as METRICS
from services.common.training_spec import REGRESSION as REGRESSION
from services.common.training_spec import SpecError as SpecError
from services.common.training_spec import TrainingSpec as TrainingSpec
from services.common.training_spec import candidates as candidates
from services.common.training_spec import check_spec as check_spec
from services.common.training_spec import check_target as check_target
from services.common.training_spec import higher_is_better as higher_is_better
from services.common.training_spec import read_target as read_target
from services.common.values import STRING_DTYPE

if TYPE_CHECKING:
    from services.common.storage import Storage

#: The allow-listed estimators (``training_spec.ESTIMATOR_TASKS``): class and task.
ESTIMATORS: dict[str, tuple[type, str]] = {
    cls.__name__: (cls, ESTIMATOR_TASKS[cls.__name__])
    for cls in (
        LogisticRegression, RidgeClassifier, RandomForestClassifier, ExtraTreesClassifier,
        GradientBoostingClassifier, HistGradientBoostingClassifier, KNeighborsClassifier,
        DecisionTreeClassifier, LinearRegression, Ridge, Lasso, ElasticNet,
        RandomForestRegressor, ExtraTreesRegressor, GradientBoostingRegressor,
        HistGradientBoostingRegressor, KNeighborsRegressor, DecisionTreeRegressor,
    )
}

#: Categories of a string feature beyond this many, the rarest, share one column.
MAX_CATEGORIES = 100
#: Estimators that take no sparse input: the one-hot columns reach them dense.
_DENSE_ONLY = frozenset({"HistGradientBoostingClassifier", "HistGradientBoostingRegressor"})

#: Tree ensembles whose fit on every row can be split by trees into parts fitted apart
#: (``tree_parts``, ``fit_trees``) and joined (``join_trees``) into the forest one fit grows.
SPLITTABLE = frozenset({"RandomForestClassifier", "RandomForestRegressor",
                        "ExtraTreesClassifier", "ExtraTreesRegressor"})
#: The fewest trees a part of a split fit holds.
MIN_PART_TREES = 10
#: The bound of the tree seeds a forest draws (scikit-learn's ``MAX_INT``).
_TREE_SEED_BOUND = int(np.iinfo(np.int32).max)

#: Estimators whose n_jobs does nothing and warns when set (LogisticRegression since
#: scikit-learn 1.8); they run on one core under the fit's thread limit all the same.
_IGNORES_N_JOBS = frozenset({"LogisticRegression"})


def load_data(storage: Storage, dataset: Dataset,
              spec: TrainingSpec) -> tuple[np.ndarray, np.ndarray]:
    """The features in spec order and the target. X is float64 (NaN where missing;
    booleans as 0 and 1) when no feature is a string, else object with None for missing
    strings. Raises
    ``SpecError`` as ``check_target`` does, or for a feature without a single value."""
    names = [f.name for f in spec.features]
    table = read_rows(storage, dataset, 0, dataset.rows, [*names, spec.target])
    y = as_array(table[spec.target])
    check_target(spec, y)
    if spec.task == CLASSIFICATION and y.dtype.kind in "fb":
        # Integral (checked above) and booleans: classes are integers, 0 and 1 for
        # booleans, as a version's metadata and batch outputs hold them.
        y = y.astype(np.int64)
    numeric = all(f.dtype != STRING_DTYPE for f in spec.features)
    X = np.empty((table.num_rows, len(names)), dtype=np.float64 if numeric else object)
    for j, feature in enumerate(spec.features):
        column = table[feature.name]
        if column.null_count == len(column) and len(column):
            raise SpecError("feature_columns", f"column {feature.name!r} has no values")
        if feature.dtype == STRING_DTYPE:
            X[:, j] = column.to_pylist()
        else:
            X[:, j] = pc.cast(column, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    return X, y


# --- Fitting and scoring -------------------------------------------------------------------


def splits(spec: TrainingSpec, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) row indices: one pair for a holdout, one per fold for cv. Shuffled
    with the spec's seed, stratified by class for classifiers."""
    stratified = spec.task == CLASSIFICATION
    splitter: Any
    if "cv" in spec.validation:
        kind = StratifiedKFold if stratified else KFold
        splitter = kind(n_splits=spec.validation["cv"], shuffle=True, random_state=spec.seed)
    else:
        kind = StratifiedShuffleSplit if stratified else ShuffleSplit
        splitter = kind(n_splits=1, test_size=spec.validation["holdout"],
                        random_state=spec.seed)
    return list(splitter.split(np.zeros((len(y), 1)), y))


def build_pipeline(spec: TrainingSpec, params: Mapping[str, Any]) -> Pipeline:
    """The unfitted pipeline: column preparation by position, then the estimator."""
    estimator = ESTIMATORS[spec.estimator][0](**params)
    known = estimator.get_params()
    ours = {"n_jobs": 1, "random_state": spec.seed}
    if spec.estimator in _IGNORES_N_JOBS:
        del ours["n_jobs"]
    estimator.set_params(**{k: v for k, v in ours.items() if k in known})
    # Booleans among the numbers: 0 and 1, as rows of true and false arrive.
    numeric = [j for j, f in enumerate(spec.features) if f.dtype != STRING_DTYPE]
    strings = [j for j, f in enumerate(spec.features) if f.dtype == STRING_DTYPE]
    steps: list[tuple[str, Any, list[int]]] = []
    if numeric:
        steps.append(("numeric", SimpleImputer(strategy="median"), numeric))
    if strings:
        steps.append(("strings", make_pipeline(
            SimpleImputer(strategy="most_frequent", missing_values=None),
            OneHotEncoder(handle_unknown="ignore", max_categories=MAX_CATEGORIES),
        ), strings))
    columns = ColumnTransformer(
        steps, sparse_threshold=0.0 if spec.estimator in _DENSE_ONLY else 0.3)
    return Pipeline([("columns", columns), ("estimator", estimator)])


def fit_all(spec: TrainingSpec, params: Mapping[str, Any], X: np.ndarray,
            y: np.ndarray) -> Pipeline:
    """The pipeline fitted on every row: the model registered."""
    pipeline = build_pipeline(spec, params)
    with threadpool_limits(limits=1):
        pipeline.fit(X, y)
    return pipeline


def tree_parts(spec: TrainingSpec, params: Mapping[str, Any],
               parts: int) -> list[tuple[int, int]]:
    """The trees (``[start, stop)``) of each part when the fit of ``params`` on every row is
    split into at most ``parts`` parts of at least ``MIN_PART_TREES`` trees; none when it is
    not split: one part, not a forest, or a forest with out-of-bag scores or a warm start."""
    if spec.estimator not in SPLITTABLE or params.get("oob_score") or params.get("warm_start"):
        return []
    trees = int(params.get("n_estimators",
                           ESTIMATORS[spec.estimator][0]().get_params()["n_estimators"]))
    count = min(parts, trees // MIN_PART_TREES)
    if count < 2:
        return []
    bounds = [trees * i // count for i in range(count + 1)]
    return list(pairwise(bounds))


def fit_trees(spec: TrainingSpec, params: Mapping[str, Any], X: np.ndarray, y: np.ndarray,
              start: int, stop: int) -> Pipeline:
    """The pipeline fitted on every row with the forest's trees ``start`` to ``stop`` only:
    each grown from the seed a single fit of ``params`` gives it (the forest draws one seed
    a tree, in order, from ``spec.seed``)."""
    pipeline = build_pipeline(spec, params)
    seeds = np.random.RandomState(spec.seed)
    seeds.randint(_TREE_SEED_BOUND, size=start)
    pipeline.named_steps["estimator"].set_params(n_estimators=stop - start, random_state=seeds)
    with threadpool_limits(limits=1):
        pipeline.fit(X, y)
    return pipeline


def join_trees(spec: TrainingSpec, parts: Sequence[Pipeline]) -> Pipeline:
    """One pipeline from the parts ``fit_trees`` fitted, in tree order: the first part's
    column preparation (every part fits the same) and the forest of all their trees."""
    joined = parts[0]
    forest = joined.named_steps["estimator"]
    forest.estimators_ = [tree for part in parts
                          for tree in part.named_steps["estimator"].estimators_]
    forest.set_params(n_estimators=len(forest.estimators_), random_state=spec.seed)
    return joined


def fit_and_score(spec: TrainingSpec, params: Mapping[str, Any], X: np.ndarray, y: np.ndarray,
                  train: np.ndarray, test: np.ndarray) -> tuple[Pipeline, dict[str, float]]:
    """The pipeline fitted on the ``train`` rows and its metrics on the ``test`` rows."""
    pipeline = fit_all(spec, params, X[train], y[train])
    with threadpool_limits(limits=1):
        return pipeline, score(spec, pipeline, X[test], y[test])


def score(spec: TrainingSpec, model: Any, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The task's metrics of a fitted model on rows ``X`` with truth ``y``; for a
    classifier roc_auc only when it gives probabilities and ``y`` holds two classes."""
    predicted = model.predict(X)
    if spec.task == REGRESSION:
        return {"r2": float(r2_score(y, predicted)),
                "mae": float(mean_absolute_error(y, predicted)),
                "rmse": float(root_mean_squared_error(y, predicted))}
    classes = model.classes_
    binary = len(classes) == 2
    metrics = {
        "accuracy": float(accuracy_score(y, predicted)),
        "f1": float(f1_score(y, predicted, average="binary", pos_label=classes[1])
                    if binary else f1_score(y, predicted, average="macro")),
    }
    if hasattr(model, "predict_proba") and len(np.unique(y)) > 1:
        proba = model.predict_proba(X)
        if binary:
            metrics["roc_auc"] = float(roc_auc_score(y == classes[1], proba[:, 1]))
        elif len(np.unique(y)) == len(classes):
            metrics["roc_auc"] = float(roc_auc_score(y, proba, multi_class="ovr",
                                                     average="macro", labels=classes))
    return metrics


def summarize(fold_metrics: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The mean of each metric over the folds that have it."""
    names = dict.fromkeys(name for fold in fold_metrics for name in fold)
    return {name: float(np.mean([fold[name] for fold in fold_metrics if name in fold]))
            for name in names}


def library_versions() -> dict[str, str]:
    """What a model was trained with: a version loads safely only with the same ones."""
    return {
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "joblib": joblib.__version__,
        "python": platform.python_version(),
        "inferq": package_metadata.version("inferq"),
    }
