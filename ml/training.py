"""Training a model from a dataset: the spec checked up front, splits, fits and scores.

Plain functions of arrays and a spec; no Redis. ``check_spec`` turns a training request
into a ``TrainingSpec`` or raises ``SpecError`` naming the field, using scikit-learn's own
parameter constraints, so a bad request is refused before anything is queued. The model
is a pipeline that takes rows in feature order as the API serves them: numeric columns
imputed with their median, string columns with their most frequent value and one-hot
encoded, then the estimator, seeded and held to one core.
"""

from __future__ import annotations

import itertools
import math
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata as package_metadata
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
import orjson
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

# Private to scikit-learn, and the only way to check a value against an estimator's own
# constraints without fitting; tests/unit/test_training.py fails plainly if an upgrade moves
# them, and pyproject.toml pins scikit-learn to the minor version tested.
from sklearn.utils._param_validation import InvalidParameterError, validate_parameter_constraints
from threadpoolctl import threadpool_limits

from services.common.catalog import Feature
from services.common.datasets import Column, Dataset, read_rows
from services.common.values import STRING_DTYPE

if TYPE_CHECKING:
    from services.common.storage import Storage

CLASSIFICATION = "classification"
REGRESSION = "regression"

ESTIMATORS: dict[str, tuple[type, str]] = {
    cls.__name__: (cls, task)
    for task, classes in (
        (CLASSIFICATION, (
            LogisticRegression, RidgeClassifier, RandomForestClassifier,
            ExtraTreesClassifier, GradientBoostingClassifier, HistGradientBoostingClassifier,
            KNeighborsClassifier, DecisionTreeClassifier,
        )),
        (REGRESSION, (
            LinearRegression, Ridge, Lasso, ElasticNet, RandomForestRegressor,
            ExtraTreesRegressor, GradientBoostingRegressor, HistGradientBoostingRegressor,
            KNeighborsRegressor, DecisionTreeRegressor,
        )),
    )
    for cls in classes
}

METRICS: dict[str, tuple[str, ...]] = {
    CLASSIFICATION: ("accuracy", "f1", "roc_auc"),
    REGRESSION: ("r2", "mae", "rmse"),
}

#: What the platform sets on every estimator that takes it: one core (a job is one
#: process on the training pool), the job's seed, no console output, fresh fits.
PLATFORM_PARAMETERS = ("n_jobs", "random_state", "verbose", "warm_start")

DEFAULT_HOLDOUT = 0.2
MAX_FOLDS = 20
MAX_CANDIDATES = 100
#: Categories of a string feature beyond this many, the rarest, share one column.
MAX_CATEGORIES = 100
#: Estimators that take no sparse input: the one-hot columns reach them dense.
_DENSE_ONLY = frozenset({"HistGradientBoostingClassifier", "HistGradientBoostingRegressor"})

#: Estimators whose n_jobs does nothing and warns when set (LogisticRegression since
#: scikit-learn 1.8); they run on one core under the fit's thread limit all the same.
_IGNORES_N_JOBS = frozenset({"LogisticRegression"})

#: Dataset dtypes read as numbers: every integer and float type, and decimals. Booleans are
#: no feature: predictions and batch jobs take no booleans for a model's features.
_NUMERIC_PREFIXES = ("int", "uint", "float", "double", "halffloat", "decimal")

#: Matches no constraint but "no_validation": what a parameter accepts, in sklearn's words.
_NOT_A_VALUE = object()


class SpecError(ValueError):
    """A training request that cannot run; ``field`` names what is wrong and ``str(exc)``
    says why, starting with the field."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.message = f"{field}: {problem}"
        super().__init__(self.message)


@dataclass(frozen=True)
class TrainingSpec:
    estimator: str
    task: str
    hyperparameters: dict[str, Any]
    features: list[Feature]
    target: str
    validation: dict[str, Any]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    metric: str = ""
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["features"] = [f.model_dump() for f in self.features]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainingSpec:
        fields = dict(data)
        fields["features"] = [Feature(**f) for f in fields["features"]]
        return cls(**fields)

    @property
    def estimator_class(self) -> type:
        return ESTIMATORS[self.estimator][0]


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is a better model."""
    if metric not in METRICS[CLASSIFICATION] + METRICS[REGRESSION]:
        raise ValueError(f"unknown metric {metric!r}")
    return metric not in ("mae", "rmse")


# --- Checking a request --------------------------------------------------------------------


def check_spec(body: Mapping[str, Any], columns: Sequence[Column]) -> TrainingSpec:
    """The training request ``body`` as a spec for a dataset of ``columns``; raises
    ``SpecError`` naming the first field that is wrong. Fields other than the training
    fields (``dataset_id``, ``alias``, ...) are left to the caller."""
    name = body.get("estimator")
    if not isinstance(name, str) or name not in ESTIMATORS:
        raise SpecError("estimator", f"{_shown(name)} is not an estimator inferq trains; "
                        f"use one of {', '.join(sorted(ESTIMATORS))}")
    cls, task = ESTIMATORS[name]
    target, features = _check_columns(body, columns)
    _check_target_dtype(task, target, next(c.dtype for c in columns if c.name == target))
    hyperparameters = _object(body, "hyperparameters")
    for param, value in hyperparameters.items():
        _check_parameter(cls, f"hyperparameters.{param}", param, value)
    search = _object(body, "search")
    unknown = sorted(set(search) - {"grid", "metric"})
    if unknown:
        raise SpecError(f"search.{unknown[0]}", "unknown field; search takes grid and metric")
    grid = _check_grid(cls, search, hyperparameters)
    metric = search.get("metric", METRICS[task][0])
    _check_metric("search.metric", metric, cls, task)
    _check_promotion(body, cls, task)
    return TrainingSpec(
        estimator=name, task=task, hyperparameters=hyperparameters, features=features,
        target=target, validation=_check_validation(body.get("validation")), grid=grid,
        metric=metric, seed=_check_seed(body.get("seed", 0)),
    )


def _shown(value: Any) -> str:
    """A request's value as its JSON text, cut short."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= 40 else f"{text[:36]}..."


def _listed(names: Iterable[str], most: int = 20) -> str:
    """Names for a message, the first ``most`` of them."""
    names = list(names)
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds."""
    return value.item() if isinstance(value, np.generic) else value


def _object(body: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(key, f"must be a JSON object; got {_shown(value)}")
    return dict(value)


def _is_numeric(dtype: str) -> bool:
    return dtype.startswith(_NUMERIC_PREFIXES)


def _check_columns(body: Mapping[str, Any],
                   columns: Sequence[Column]) -> tuple[str, list[Feature]]:
    dtypes = {c.name: c.dtype for c in columns}
    target = body.get("target_column")
    if not isinstance(target, str) or not target:
        raise SpecError("target_column", "required: the name of the column to predict")
    if target not in dtypes:
        raise SpecError("target_column", f"the dataset has no column {target!r}; its columns "
                        f"are {_listed(dtypes)}")
    chosen = body.get("feature_columns")
    if chosen is None:
        names = [c.name for c in columns if c.name != target]
    elif not isinstance(chosen, list) or not chosen or not all(
            isinstance(n, str) for n in chosen):
        raise SpecError("feature_columns", "must be a non-empty list of column names")
    else:
        names = chosen
    seen: set[str] = set()
    for name in names:
        if name not in dtypes:
            raise SpecError("feature_columns", f"the dataset has no column {name!r}; its "
                            f"columns are {_listed(dtypes)}")
        if name == target:
            raise SpecError("feature_columns", f"{name!r} is the target column")
        if name in seen:
            raise SpecError("feature_columns", f"{name!r} is listed twice")
        seen.add(name)
        dtype = dtypes[name]
        if dtype != STRING_DTYPE and not _is_numeric(dtype):
            raise SpecError("feature_columns", f"column {name!r} is {dtype}; a feature is a "
                            "number or a string"
                            + ("" if chosen else "; list the feature_columns to use"))
    if not names:
        raise SpecError("feature_columns", "the dataset has no column besides the target")
    return target, [Feature(name=n, dtype=STRING_DTYPE if dtypes[n] == STRING_DTYPE else "float64")
                    for n in names]


def _check_target_dtype(task: str, target: str, dtype: str) -> None:
    """What the column's dtype alone rules out; ``check_target`` reads the values."""
    if task == REGRESSION and not _is_numeric(dtype):
        raise SpecError("target_column", f"column {target!r} is {dtype}, not a number; use a "
                        "classifier such as RandomForestClassifier")
    if dtype not in (STRING_DTYPE, "bool") and not _is_numeric(dtype):
        raise SpecError("target_column", f"column {target!r} is {dtype}; a classifier's "
                        "target is a number, a boolean or a string")


def _check_parameter(cls: type, where: str, param: str, value: Any) -> None:
    """Refuse a parameter the estimator lacks or the platform sets, or a value outside the
    estimator's own constraints."""
    known = cls().get_params()
    if param in PLATFORM_PARAMETERS and param in known:
        raise SpecError(where, f"set by inferq, not by a request: inferq sets "
                        f"{', '.join(p for p in PLATFORM_PARAMETERS if p in known)} itself")
    if param not in known:
        allowed = [p for p in sorted(known) if p not in PLATFORM_PARAMETERS]
        raise SpecError(where, f"{cls.__name__} has no parameter {param!r}; its parameters "
                        f"are {', '.join(allowed)}")
    constraints = getattr(cls, "_parameter_constraints", {}).get(param)
    if constraints is None:
        return
    try:
        validate_parameter_constraints({param: constraints}, {param: value},
                                       caller_name=cls.__name__)
        if isinstance(value, bool) and not any(c == "boolean" or c is bool
                                               for c in constraints):
            # bool is an int to Python: true would pass as 1 where a number is meant.
            validate_parameter_constraints({param: constraints}, {param: _NOT_A_VALUE},
                                           caller_name=cls.__name__)
    except InvalidParameterError as exc:
        raise SpecError(where, _constraint_message(exc, value)) from None


def _constraint_message(exc: InvalidParameterError, value: Any) -> str:
    """scikit-learn's "The 'p' parameter of E must be X. Got v instead." as "must be X;
    got v"."""
    text = str(exc)
    start = text.find(" must be ")
    end = text.rfind(". Got ")
    if start < 0 or end < start:
        return text
    return f"{text[start + 1:end]}; got {_shown(value)}"


def _check_grid(cls: type, search: Mapping[str, Any],
                hyperparameters: Mapping[str, Any]) -> dict[str, list[Any]]:
    grid = search.get("grid")
    if grid is None:
        return {}
    if not isinstance(grid, dict) or not grid:
        raise SpecError("search.grid", 'must be an object of lists, like {"max_depth": [4, 8]}')
    count = 1
    for param, values in grid.items():
        where = f"search.grid.{param}"
        if not isinstance(values, list) or not values:
            raise SpecError(where, f"must be a non-empty list of values; got {_shown(values)}")
        if param in hyperparameters:
            raise SpecError(where, "also set in hyperparameters; set it in one place")
        for value in values:
            _check_parameter(cls, where, param, value)
        count *= len(values)
    if count > MAX_CANDIDATES:
        raise SpecError("search.grid", f"{count} candidates exceed the limit of "
                        f"{MAX_CANDIDATES}; search fewer values")
    return dict(grid)


def _check_metric(where: str, metric: Any, cls: type, task: str) -> None:
    if metric not in METRICS[task]:
        raise SpecError(where, f"{_shown(metric)} is not a {task} metric; use one of "
                        f"{', '.join(METRICS[task])}")
    if metric == "roc_auc" and not hasattr(cls(), "predict_proba"):
        raise SpecError(where, f"{cls.__name__} gives no probabilities, so no roc_auc; use "
                        "accuracy or f1")


def _check_promotion(body: Mapping[str, Any], cls: type, task: str) -> None:
    rule = _object(body, "promote_if")
    if not rule:
        return
    unknown = sorted(set(rule) - {"metric", "min", "max"})
    if unknown:
        raise SpecError(f"promote_if.{unknown[0]}", "unknown field; promote_if takes metric "
                        "and min or max")
    _check_metric("promote_if.metric", rule.get("metric"), cls, task)
    if "min" not in rule and "max" not in rule:
        raise SpecError("promote_if", "needs min (or max) for the metric")
    for bound in ("min", "max"):
        value = rule.get(bound, 0.0)
        if not (isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(value)):
            raise SpecError(f"promote_if.{bound}", f"must be a number; got {_shown(value)}")


def _check_validation(validation: Any) -> dict[str, Any]:
    if validation is None:
        return {"holdout": DEFAULT_HOLDOUT}
    if isinstance(validation, dict) and len(validation) == 1:
        (kind, value), = validation.items()
        if kind == "holdout" and type(value) in (int, float) and 0 < value < 1:
            return {"holdout": float(value)}
        if kind == "cv" and type(value) is int and 2 <= value <= MAX_FOLDS:
            return {"cv": value}
    raise SpecError("validation", f'must be {{"holdout": f}} with 0 < f < 1 or {{"cv": k}} '
                    f"with 2 <= k <= {MAX_FOLDS}; got {_shown(validation)}")


def _check_seed(seed: Any) -> int:
    if type(seed) is not int or not 0 <= seed < 2**32:
        raise SpecError("seed", f"must be an integer from 0 to {2**32 - 1}; got {_shown(seed)}")
    return seed


# --- Reading the data ----------------------------------------------------------------------


def read_target(storage: Storage, dataset: Dataset, column: str) -> np.ndarray:
    """The values of ``column``: float64 (NaN where missing) for numbers, bool for
    booleans without gaps, object (None where missing) otherwise."""
    return _as_array(read_rows(storage, dataset, 0, dataset.rows, [column])[column])


def _as_array(column: pa.ChunkedArray) -> np.ndarray:
    kind = column.type
    if pa.types.is_boolean(kind) and column.null_count == 0:
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return np.array(pc.cast(column, pa.float64(), safe=False)
                        .to_numpy(zero_copy_only=False), dtype=np.float64)
    return np.array(column.to_pylist(), dtype=object)


def _missing(y: np.ndarray) -> np.ndarray:
    if y.dtype.kind == "f":
        return np.isnan(y)
    if y.dtype.kind == "O":
        return np.array([v is None or (isinstance(v, float) and math.isnan(v)) for v in y],
                        dtype=bool)
    return np.zeros(len(y), dtype=bool)


def check_target(spec: TrainingSpec, y: np.ndarray) -> None:
    """Refuse a target the estimator cannot learn: missing values, a continuous or
    single-class target for a classifier, text for a regressor, too few rows or too few
    of a class for the validation asked."""
    where = f"column {spec.target!r}"
    missing = int(_missing(y).sum())
    if missing:
        raise SpecError("target_column", f"{where} has {missing} missing values; drop those "
                        "rows or pick another target")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise SpecError("target_column", f"{where} holds infinite values; every target "
                        "must be a finite number")
    if spec.task == REGRESSION:
        if y.dtype.kind != "f":
            kind = "boolean" if y.dtype.kind == "b" else "text"
            raise SpecError("target_column", f"{where} is {kind}, not a number; use a "
                            "classifier such as RandomForestClassifier")
    elif y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
        raise SpecError("target_column", f"{where} is continuous ({len(np.unique(y))} "
                        "distinct values); use a regressor such as RandomForestRegressor")
    if spec.task == CLASSIFICATION and len(np.unique(y)) < 2:
        raise SpecError("target_column", f"{where} holds one class ({_shown(_plain(y[0]))} "
                        "in every row); a classifier needs at least two")
    _check_rows(spec, y)


def _check_rows(spec: TrainingSpec, y: np.ndarray) -> None:
    """Enough rows for every split to train and test on; for a classifier, enough of
    each class to stratify."""
    rows = len(y)
    if "cv" in spec.validation:
        folds = spec.validation["cv"]
        smallest_test, smallest_train, needed = rows // folds, rows - -(-rows // folds), folds
    else:
        smallest_test = math.ceil(rows * spec.validation["holdout"])
        smallest_train, needed = rows - smallest_test, 2
    if min(smallest_test, smallest_train) < 2:
        raise SpecError("validation", f"the dataset has {rows} rows, too few to train and "
                        f"test with {_shown(spec.validation)}")
    if spec.task != CLASSIFICATION:
        return
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < needed:
        raise SpecError("target_column", f"class {_shown(_plain(classes[counts.argmin()]))} "
                        f"has {counts.min()} rows; stratified validation with "
                        f"{_shown(spec.validation)} needs at least {needed} of each class")
    if min(smallest_test, smallest_train) < len(classes):
        raise SpecError("validation", f"{_shown(spec.validation)} of {rows} rows leaves a "
                        f"split smaller than the {len(classes)} classes")


def load_data(storage: Storage, dataset: Dataset,
              spec: TrainingSpec) -> tuple[np.ndarray, np.ndarray]:
    """The features in spec order and the target. X is float64 (NaN where missing) when
    every feature is numeric, else object with None for missing strings. Raises
    ``SpecError`` as ``check_target`` does, or for a feature without a single value."""
    names = [f.name for f in spec.features]
    table = read_rows(storage, dataset, 0, dataset.rows, [*names, spec.target])
    y = _as_array(table[spec.target])
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


def candidates(spec: TrainingSpec) -> list[dict[str, Any]]:
    """The hyperparameters of each candidate of the grid, in grid order; the request's own
    hyperparameters alone when there is no grid."""
    if not spec.grid:
        return [dict(spec.hyperparameters)]
    keys = list(spec.grid)
    return [{**spec.hyperparameters, **dict(zip(keys, values, strict=True))}
            for values in itertools.product(*(spec.grid[k] for k in keys))]


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
    estimator = spec.estimator_class(**params)
    known = estimator.get_params()
    ours = {"n_jobs": 1, "random_state": spec.seed}
    if spec.estimator in _IGNORES_N_JOBS:
        del ours["n_jobs"]
    estimator.set_params(**{k: v for k, v in ours.items() if k in known})
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
