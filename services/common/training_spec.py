"""A training request checked up front, with no scikit-learn: the allow-list, the columns,
each hyperparameter against the estimator's own constraints, the grid, the validation, the
metrics, the seed and the target column's values.

The API checks a request with this module before anything is queued, and the worker reads
the spec it produced (``TrainingSpec``); ``ml.training`` fits it. The hyperparameter checks
read ``training_constraints.json``, a snapshot of scikit-learn's ``_parameter_constraints``
for the allow-listed estimators written by ``python -m ml.training_constraints`` (with
scikit-learn installed; tests/unit/test_training_constraints.py regenerates it and
compares). Each constraint there is evaluated here as scikit-learn evaluates it, for the
values a JSON body can hold.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from services.common.catalog import Feature
from services.common.datasets import Column, Dataset, read_rows
from services.common.values import BOOL_DTYPE, STRING_DTYPE

if TYPE_CHECKING:
    from services.common.storage import Storage

CLASSIFICATION = "classification"
REGRESSION = "regression"

#: The estimators inferq trains, by scikit-learn class name, and their task.
ESTIMATOR_TASKS: dict[str, str] = {
    **dict.fromkeys((
        "LogisticRegression", "RidgeClassifier", "RandomForestClassifier",
        "ExtraTreesClassifier", "GradientBoostingClassifier", "HistGradientBoostingClassifier",
        "KNeighborsClassifier", "DecisionTreeClassifier"), CLASSIFICATION),
    **dict.fromkeys((
        "LinearRegression", "Ridge", "Lasso", "ElasticNet", "RandomForestRegressor",
        "ExtraTreesRegressor", "GradientBoostingRegressor", "HistGradientBoostingRegressor",
        "KNeighborsRegressor", "DecisionTreeRegressor"), REGRESSION),
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

#: The snapshot of scikit-learn's parameter constraints, next to this module.
CONSTRAINTS_FILE = "training_constraints.json"

#: Dataset dtypes read as numbers: every integer and float type, and decimals.
_NUMERIC_PREFIXES = ("int", "uint", "float", "double", "halffloat", "decimal")

#: The name of each type a JSON value has in Python, as the snapshot lists them.
JSON_TYPES: dict[type, str] = {type(None): "null", bool: "bool", int: "int", float: "float",
                               str: "str", list: "list", dict: "dict"}


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


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is a better model."""
    if metric not in METRICS[CLASSIFICATION] + METRICS[REGRESSION]:
        raise ValueError(f"unknown metric {metric!r}")
    return metric not in ("mae", "rmse")


def candidates(spec: TrainingSpec) -> list[dict[str, Any]]:
    """The hyperparameters of each candidate of the grid, in grid order; the request's own
    hyperparameters alone when there is no grid."""
    if not spec.grid:
        return [dict(spec.hyperparameters)]
    keys = list(spec.grid)
    return [{**spec.hyperparameters, **dict(zip(keys, values, strict=True))}
            for values in itertools.product(*(spec.grid[k] for k in keys))]


@functools.cache
def constraints() -> dict[str, Any]:
    """The snapshot: ``{"scikit-learn": "<minor version>", "estimators": {name: {
    "predict_proba", "parameters": {param: {"must_be", "booleans", "constraints"}}}}}``;
    ``constraints`` is null for a parameter scikit-learn does not validate."""
    data: dict[str, Any] = orjson.loads(
        resources.files(__package__).joinpath(CONSTRAINTS_FILE).read_bytes())
    return data


# --- Checking a request --------------------------------------------------------------------


def check_spec(body: Mapping[str, Any], columns: Sequence[Column]) -> TrainingSpec:
    """The training request ``body`` as a spec for a dataset of ``columns``; raises
    ``SpecError`` naming the first field that is wrong. Fields other than the training
    fields (``dataset_id``, ``alias``, ...) are left to the caller."""
    name = body.get("estimator")
    if not isinstance(name, str) or name not in ESTIMATOR_TASKS:
        raise SpecError("estimator", f"{_shown(name)} is not an estimator inferq trains; "
                        f"use one of {', '.join(sorted(ESTIMATOR_TASKS))}")
    task = ESTIMATOR_TASKS[name]
    target, features = _check_columns(body, columns)
    _check_target_dtype(task, target, next(c.dtype for c in columns if c.name == target))
    hyperparameters = _object(body, "hyperparameters")
    for param, value in hyperparameters.items():
        check_parameter(name, f"hyperparameters.{param}", param, value)
    search = _object(body, "search")
    unknown = sorted(set(search) - {"grid", "metric"})
    if unknown:
        raise SpecError(f"search.{unknown[0]}", "unknown field; search takes grid and metric")
    grid = _check_grid(name, search, hyperparameters)
    metric = search.get("metric", METRICS[task][0])
    _check_metric("search.metric", metric, name, task)
    _check_promotion(body, name, task)
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
        if dtype not in (STRING_DTYPE, BOOL_DTYPE) and not _is_numeric(dtype):
            raise SpecError("feature_columns", f"column {name!r} is {dtype}; a feature is a "
                            "number, a boolean or a string"
                            + ("" if chosen else "; list the feature_columns to use"))
    if not names:
        raise SpecError("feature_columns", "the dataset has no column besides the target")
    return target, [Feature(name=n, dtype=feature_dtype(dtypes[n])) for n in names]


def feature_dtype(column_dtype: str) -> str:
    """The dtype of a feature learnt from a column of ``column_dtype``: a string or a
    boolean feature stays one (a model takes text, and true or false, for it); any number
    is a float64 one."""
    return column_dtype if column_dtype in (STRING_DTYPE, BOOL_DTYPE) else "float64"


def _check_target_dtype(task: str, target: str, dtype: str) -> None:
    """What the column's dtype alone rules out; ``check_target`` reads the values."""
    if task == REGRESSION and not _is_numeric(dtype):
        raise SpecError("target_column", f"column {target!r} is {dtype}, not a number; use a "
                        "classifier such as RandomForestClassifier")
    if dtype not in (STRING_DTYPE, BOOL_DTYPE) and not _is_numeric(dtype):
        raise SpecError("target_column", f"column {target!r} is {dtype}; a classifier's "
                        "target is a number, a boolean or a string")


def check_parameter(estimator: str, where: str, param: str, value: Any) -> None:
    """Refuse a parameter the estimator lacks or the platform sets, or a value outside the
    estimator's own constraints (``where`` names the field)."""
    snapshot = constraints()["estimators"][estimator]
    known = snapshot["parameters"]
    platform = [p for p in PLATFORM_PARAMETERS if p in snapshot["platform_parameters"]]
    if param in platform:
        raise SpecError(where, f"set by inferq, not by a request: inferq sets "
                        f"{', '.join(platform)} itself")
    if param not in known:
        raise SpecError(where, f"{estimator} has no parameter {param!r}; its parameters "
                        f"are {', '.join(sorted(known))}")
    rule = known[param]
    if rule["constraints"] is None:
        return
    # bool is an int to Python: true would pass as 1 where a number is meant, so a boolean
    # is a value only of the parameters that take booleans.
    if (isinstance(value, bool) and not rule["booleans"]) or not any(
            satisfies(value, c) for c in rule["constraints"]):
        raise SpecError(where, f"must be {rule['must_be']}; got {_shown(value)}")


def satisfies(value: Any, constraint: Mapping[str, Any]) -> bool:
    """Whether ``value`` (a JSON value) meets one constraint of the snapshot, as
    scikit-learn's ``validate_parameter_constraints`` decides it."""
    kind = constraint["kind"]
    json_type = JSON_TYPES.get(type(value))
    if kind == "none":
        return value is None
    if kind == "nan":
        return isinstance(value, float) and math.isnan(value)
    if kind == "instance_of":
        return json_type in constraint["json_types"]
    if kind == "options":
        return json_type in constraint["json_types"] and value in constraint["options"]
    if kind == "interval":
        return json_type in constraint["json_types"] and _within(value, constraint)
    if kind == "array_like":
        return (hasattr(value, "__len__") or hasattr(value, "shape")
                or hasattr(value, "__array__")) and not np.isscalar(value)
    if kind == "iterable_not_string":
        return isinstance(value, Iterable) and not isinstance(value, str)
    if kind == "callable":
        return callable(value)
    if kind == "has_methods":
        return all(callable(getattr(value, m, None)) for m in constraint["methods"])
    # "sparse_matrix", "pandas_na": nothing a JSON body holds.
    return False


def _within(value: float, interval: Mapping[str, Any]) -> bool:
    """scikit-learn's ``Interval.__contains__``: a missing bound is infinite, and an open
    end refuses infinity itself."""
    if isinstance(value, float) and math.isnan(value):
        return False
    closed = interval["closed"]
    left = -math.inf if interval["left"] is None else interval["left"]
    right = math.inf if interval["right"] is None else interval["right"]
    above = value >= left if closed in ("left", "both") else value > left
    return above and (value <= right if closed in ("right", "both") else value < right)


def _check_grid(estimator: str, search: Mapping[str, Any],
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
            check_parameter(estimator, where, param, value)
        count *= len(values)
    if count > MAX_CANDIDATES:
        raise SpecError("search.grid", f"{count} candidates exceed the limit of "
                        f"{MAX_CANDIDATES}; search fewer values")
    return dict(grid)


def _check_metric(where: str, metric: Any, estimator: str, task: str) -> None:
    if metric not in METRICS[task]:
        raise SpecError(where, f"{_shown(metric)} is not a {task} metric; use one of "
                        f"{', '.join(METRICS[task])}")
    if metric == "roc_auc" and not constraints()["estimators"][estimator]["predict_proba"]:
        raise SpecError(where, f"{estimator} gives no probabilities, so no roc_auc; use "
                        "accuracy or f1")


def _check_promotion(body: Mapping[str, Any], estimator: str, task: str) -> None:
    rule = _object(body, "promote_if")
    if not rule:
        return
    unknown = sorted(set(rule) - {"metric", "min", "max"})
    if unknown:
        raise SpecError(f"promote_if.{unknown[0]}", "unknown field; promote_if takes metric "
                        "and min or max")
    _check_metric("promote_if.metric", rule.get("metric"), estimator, task)
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
    return as_array(read_rows(storage, dataset, 0, dataset.rows, [column])[column])


def as_array(column: pa.ChunkedArray) -> np.ndarray:
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


