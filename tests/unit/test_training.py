"""The training engine: requests checked field by field, splits, metrics and pipelines."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from sklearn.datasets import load_diabetes, load_iris

from ml.training import (
    ESTIMATORS,
    METRICS,
    SpecError,
    TrainingSpec,
    candidates,
    check_spec,
    check_target,
    fit_all,
    fit_and_score,
    fit_trees,
    higher_is_better,
    join_trees,
    library_versions,
    load_data,
    read_target,
    score,
    splits,
    summarize,
    tree_parts,
)
from services.common.catalog import Feature
from services.common.dataset_formats import CsvValidator
from services.common.datasets import Column, Dataset, dataset_key, new_dataset_id
from services.common.storage import Storage

COLUMNS = [Column("a", "float64"), Column("b", "int64"), Column("color", "string"),
           Column("flag", "bool"), Column("when", "timestamp[us]"), Column("y", "int64")]


def spec_for(**body: Any) -> TrainingSpec:
    body = {"estimator": "RandomForestClassifier", "target_column": "y",
            "feature_columns": ["a", "b", "color"], **body}
    return check_spec(body, COLUMNS)


def refused(**body: Any) -> SpecError:
    with pytest.raises(SpecError) as caught:
        spec_for(**body)
    return caught.value


def test_scikit_learns_private_validation_is_where_it_was() -> None:
    """ml/training_constraints.py snapshots the constraints with these, and the snapshot
    test compares with them; an upgrade that moves them fails here."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.utils import _param_validation

    assert callable(_param_validation.validate_parameter_constraints)
    assert issubclass(_param_validation.InvalidParameterError, ValueError)
    assert "max_depth" in RandomForestClassifier._parameter_constraints
    with pytest.raises(_param_validation.InvalidParameterError, match=r"must be .* Got -1"):
        _param_validation.validate_parameter_constraints(
            {"max_depth": RandomForestClassifier._parameter_constraints["max_depth"]},
            {"max_depth": -1}, caller_name="RandomForestClassifier")
    for name, (cls, _) in ESTIMATORS.items():
        assert set(cls._parameter_constraints) <= set(cls().get_params()), name


def test_a_good_request_becomes_a_spec_that_round_trips() -> None:
    spec = spec_for(hyperparameters={"max_depth": 4}, validation={"cv": 3}, seed=7,
                    search={"grid": {"n_estimators": [10, 20], "criterion": ["gini",
                                                                             "entropy"]},
                            "metric": "f1"},
                    promote_if={"metric": "accuracy", "min": 0.9}, dataset_id="ignored")
    assert spec.task == "classification" and spec.metric == "f1" and spec.seed == 7
    assert [(f.name, f.dtype) for f in spec.features] == [
        ("a", "float64"), ("b", "float64"), ("color", "string")]
    assert TrainingSpec.from_json(orjson.loads(orjson.dumps(spec.to_json()))) == spec
    assert candidates(spec) == [
        {"max_depth": 4, "n_estimators": n, "criterion": c}
        for n in (10, 20) for c in ("gini", "entropy")]
    defaults = check_spec({"estimator": "Ridge", "target_column": "a",
                           "feature_columns": ["b"]}, COLUMNS)
    assert defaults.validation == {"holdout": 0.2} and defaults.metric == "r2"
    assert defaults.seed == 0 and candidates(defaults) == [{}]


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"estimator": "SVC"}, "estimator", '"SVC" is not an estimator inferq trains; use one of'),
    ({"estimator": None}, "estimator", "use one of DecisionTreeClassifier"),
    ({"hyperparameters": [1]}, "hyperparameters", "must be a JSON object"),
    ({"hyperparameters": {"depth": 3}}, "hyperparameters.depth",
     "RandomForestClassifier has no parameter 'depth'; its parameters are bootstrap"),
    ({"hyperparameters": {"n_jobs": 4}}, "hyperparameters.n_jobs", "set by inferq"),
    ({"hyperparameters": {"random_state": 1}}, "hyperparameters.random_state",
     "set by inferq"),
    ({"hyperparameters": {"verbose": 1}}, "hyperparameters.verbose", "set by inferq"),
    ({"hyperparameters": {"warm_start": True}}, "hyperparameters.warm_start", "set by inferq"),
    ({"hyperparameters": {"max_depth": -1}}, "hyperparameters.max_depth",
     "hyperparameters.max_depth: must be an int in the range [1, inf) or None; got -1"),
    ({"hyperparameters": {"max_depth": True}}, "hyperparameters.max_depth",
     "must be an int in the range [1, inf) or None; got true"),
    ({"hyperparameters": {"max_depth": "deep"}}, "hyperparameters.max_depth",
     'got "deep"'),
    ({"hyperparameters": {"criterion": "best"}}, "hyperparameters.criterion",
     "must be a str among {"),
    ({"search": {"grid": {"max_depth": [3, 0]}}}, "search.grid.max_depth",
     "search.grid.max_depth: must be an int in the range [1, inf) or None; got 0"),
    ({"search": {"grid": {"max_depth": 3}}}, "search.grid.max_depth",
     "must be a non-empty list of values"),
    ({"search": {"grid": {"max_depth": []}}}, "search.grid.max_depth", "non-empty list"),
    ({"search": {"grid": []}}, "search.grid", "must be an object of lists"),
    ({"search": {"grid": {"n_jobs": [1, 2]}}}, "search.grid.n_jobs", "set by inferq"),
    ({"search": {"grid": {"max_depth": [2]}}, "hyperparameters": {"max_depth": 3}},
     "search.grid.max_depth", "also set in hyperparameters"),
    ({"search": {"grid": {"max_depth": list(range(1, 12)), "n_estimators": list(
        range(1, 11))}}}, "search.grid", "110 candidates exceed the limit of 100"),
    ({"search": {"folds": 3}}, "search.folds", "unknown field"),
    ({"search": {"metric": "r2"}}, "search.metric",
     '"r2" is not a classification metric; use one of accuracy, f1, roc_auc'),
    ({"estimator": "RidgeClassifier", "search": {"metric": "roc_auc"}}, "search.metric",
     "RidgeClassifier gives no probabilities"),
    ({"promote_if": {"metric": "mae", "min": 1}}, "promote_if.metric",
     "not a classification metric"),
    ({"promote_if": {"metric": "f1"}}, "promote_if", "needs min"),
    ({"promote_if": {"metric": "f1", "min": "high"}}, "promote_if.min", "must be a number"),
    ({"promote_if": {"metric": "f1", "above": 1}}, "promote_if.above", "unknown field"),
    ({"validation": {"holdout": 1}}, "validation", "0 < f < 1"),
    ({"validation": {"holdout": 0}}, "validation", "0 < f < 1"),
    ({"validation": {"cv": 1}}, "validation", '{"cv": k} with 2 <= k <= 20; got {"cv":1}'),
    ({"validation": {"cv": 21}}, "validation", "2 <= k <= 20"),
    ({"validation": {"cv": 5.0}}, "validation", "2 <= k <= 20"),
    ({"validation": {"cv": 5, "holdout": 0.2}}, "validation", "got"),
    ({"validation": "cv"}, "validation", "got"),
    ({"seed": -1}, "seed", "must be an integer from 0 to 4294967295; got -1"),
    ({"seed": 2**32}, "seed", "must be an integer"),
    ({"seed": True}, "seed", "must be an integer"),
    ({"seed": 1.5}, "seed", "must be an integer"),
    ({"target_column": None}, "target_column", "required"),
    ({"target_column": "price"}, "target_column", "the dataset has no column 'price'"),
    ({"estimator": "Ridge", "target_column": "color", "feature_columns": ["a"]},
     "target_column", "column 'color' is string, not a number; use a classifier such as"),
    ({"target_column": "when", "feature_columns": ["a"]}, "target_column",
     "column 'when' is timestamp[us]; a classifier's target is a number, a boolean or a"),
    ({"target_column": "zz"}, "target_column", "its columns are a, b, color, flag, when, y"),
    ({"feature_columns": "a"}, "feature_columns", "non-empty list of column names"),
    ({"feature_columns": []}, "feature_columns", "non-empty list"),
    ({"feature_columns": ["a", "z"]}, "feature_columns", "the dataset has no column 'z'"),
    ({"feature_columns": ["a", "y"]}, "feature_columns", "'y' is the target column"),
    ({"feature_columns": ["a", "a"]}, "feature_columns", "'a' is listed twice"),
    ({"feature_columns": ["when"]}, "feature_columns",
     "column 'when' is timestamp[us]; a feature is a number, a boolean or a string"),
    ({"feature_columns": None}, "feature_columns",
     "column 'when' is timestamp[us]; a feature is a number, a boolean or a string; list the "
     "feature_columns"),
])
def test_each_bad_field_is_named(body: dict[str, Any], field: str, message: str) -> None:
    error = refused(**body)
    assert error.field == field
    assert str(error).startswith(f"{field}: ")
    assert message in str(error)


def test_only_the_dataset_column_as_a_feature_is_refused() -> None:
    columns = [Column("when", "timestamp[us]"), Column("y", "int64")]
    with pytest.raises(SpecError, match=r"column 'when' is timestamp\[us\]"):
        check_spec({"estimator": "Ridge", "target_column": "y"}, columns)
    with pytest.raises(SpecError, match="no column besides the target"):
        check_spec({"estimator": "Ridge", "target_column": "y", "feature_columns": None},
                   [Column("y", "int64")])


def test_every_estimator_takes_a_default_request_and_its_metrics_have_a_direction() -> None:
    for name, (_, task) in ESTIMATORS.items():
        spec = check_spec({"estimator": name, "target_column": "y",
                           "feature_columns": ["a"]}, COLUMNS)
        assert spec.task == task and spec.metric == METRICS[task][0]
    assert [higher_is_better(m) for m in ("accuracy", "f1", "roc_auc", "r2", "mae", "rmse")] \
        == [True, True, True, True, False, False]
    with pytest.raises(ValueError, match="unknown metric"):
        higher_is_better("loss")


@pytest.mark.parametrize(("estimator", "y", "validation", "field", "message"), [
    ("RandomForestClassifier", np.linspace(0, 1, 50), None, "target_column",
     "column 'y' is continuous (50 distinct values); use a regressor such as "
     "RandomForestRegressor"),
    ("RandomForestClassifier", np.ones(50), None, "target_column",
     "holds one class (1.0 in every row); a classifier needs at least two"),
    ("RandomForestClassifier", np.array([0.0, 1.0, np.nan] * 10), None, "target_column",
     "has 10 missing values"),
    ("RandomForestClassifier", np.array(["a", None, "b"] * 10, dtype=object), None,
     "target_column", "has 10 missing values"),
    ("RandomForestRegressor", np.array(["a", "b"] * 10, dtype=object), None, "target_column",
     "is text, not a number; use a classifier such as RandomForestClassifier"),
    ("RandomForestRegressor", np.array([True, False] * 10), None, "target_column",
     "is boolean, not a number"),
    ("RandomForestRegressor", np.array([1.0, np.inf] * 10), None, "target_column",
     "holds infinite values"),
    ("RandomForestRegressor", np.arange(5.0), {"cv": 5}, "validation",
     'the dataset has 5 rows, too few to train and test with {"cv":5}'),
    ("RandomForestClassifier", np.array([0] * 20 + [1] * 3), {"cv": 5}, "target_column",
     'class 1 has 3 rows; stratified validation with {"cv":5} needs at least 5 of each class'),
    ("RandomForestClassifier", np.array([0] * 20 + [1]), None, "target_column",
     "class 1 has 1 rows"),
    ("RandomForestClassifier", np.repeat(np.arange(10), 2), {"holdout": 0.3}, "validation",
     "leaves a split smaller than the 10 classes"),
])
def test_targets_that_cannot_be_learned_are_refused(
        estimator: str, y: np.ndarray, validation: dict[str, Any] | None, field: str,
        message: str) -> None:
    spec = spec_for(estimator=estimator, validation=validation)
    with pytest.raises(SpecError) as caught:
        check_target(spec, y)
    assert caught.value.field == field
    assert message in str(caught.value)


def test_integral_float_and_string_targets_are_classes() -> None:
    check_target(spec_for(), np.array([0.0, 1.0, 2.0] * 10))
    check_target(spec_for(), np.array(["cat", "dog"] * 10, dtype=object))


class Fixed:
    """A fitted model whose answers are given."""

    def __init__(self, classes: list[Any], predictions: list[Any],
                 probabilities: list[list[float]] | None = None) -> None:
        self.classes_ = np.array(classes)
        self._predictions = np.array(predictions)
        if probabilities is not None:
            self.predict_proba = lambda X: np.array(probabilities)

    def predict(self, X: Any) -> np.ndarray:
        return self._predictions


def test_metrics_of_a_known_small_case() -> None:
    binary = spec_for()
    model = Fixed([0, 1], [0, 1, 1, 1], [[0.9, 0.1], [0.15, 0.85], [0.2, 0.8], [0.1, 0.9]])
    metrics = score(binary, model, np.zeros((4, 1)), np.array([0, 0, 1, 1]))
    # Precision 2/3, recall 1; of the positive-negative pairs 3 of 4 are ordered right.
    assert metrics == pytest.approx({"accuracy": 0.75, "f1": 0.8, "roc_auc": 0.75})
    labels = Fixed(["no", "yes"], ["no", "yes", "yes", "yes"])
    metrics = score(binary, labels, np.zeros((4, 1)), np.array(["no", "no", "yes", "yes"]))
    assert metrics == pytest.approx({"accuracy": 0.75, "f1": 0.8})  # No probabilities.
    three = Fixed([0, 1, 2], [0, 1, 1, 2], np.eye(3)[[0, 1, 1, 2]].tolist())
    metrics = score(binary, three, np.zeros((4, 1)), np.array([0, 1, 2, 2]))
    # Per class f1: 1, 2/3, 2/3; macro 7/9.
    assert metrics["accuracy"] == 0.75 and metrics["f1"] == pytest.approx(7 / 9)
    assert 0 < metrics["roc_auc"] <= 1
    regression = spec_for(estimator="RandomForestRegressor")
    metrics = score(regression, Fixed([], [1, 2, 3, 6]), np.zeros((4, 1)),
                    np.array([1.0, 2, 3, 4]))
    assert metrics == pytest.approx({"r2": 0.2, "mae": 0.5, "rmse": 1.0})
    assert summarize([{"r2": 0.5, "mae": 1.0}, {"r2": 0.7, "mae": 3.0}]) == pytest.approx(
        {"r2": 0.6, "mae": 2.0})


def test_splits_are_seeded_and_stratified() -> None:
    y = np.array([0] * 80 + [1] * 20)
    spec = spec_for(validation={"cv": 5}, seed=3)
    folds = splits(spec, y)
    assert len(folds) == 5
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, splits(spec, y), strict=True))
    other = splits(spec_for(validation={"cv": 5}, seed=4), y)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other, strict=True))
    assert sorted(np.concatenate([test for _, test in folds]).tolist()) == list(range(100))
    assert all(np.bincount(y[test]).tolist() == [16, 4] for _, test in folds)
    (train, test), = splits(spec_for(), y)
    assert len(test) == 20 and np.bincount(y[test]).tolist() == [16, 4]
    assert sorted([*train, *test]) == list(range(100))
    assert splits(spec_for(), y)[0][1].tolist() == test.tolist()
    regression = splits(spec_for(estimator="Ridge", validation={"cv": 4}), y.astype(float))
    assert sorted(np.concatenate([t for _, t in regression]).tolist()) == list(range(100))


def mixed_rows(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a number, an integer and a string (some missing), as ``spec_for``'s features
    are; the class follows the string and the number."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=count)
    color = rng.choice(np.array(["red", "green", "blue", None], dtype=object), size=count)
    X = np.empty((count, 3), dtype=object)
    X[:, 0], X[:, 1], X[:, 2] = a, rng.integers(0, 5, size=count).astype(float), color
    X[3, 0] = np.nan
    y = np.where((color == "red") | (a > 1.0), "yes", "no").astype(object)
    return X, y


@pytest.mark.parametrize("estimator", ["RandomForestClassifier", "LogisticRegression",
                                       "HistGradientBoostingClassifier", "RidgeClassifier"])
def test_a_pipeline_with_string_columns_predicts_on_raw_rows(estimator: str) -> None:
    spec = spec_for(estimator=estimator)
    X, y = mixed_rows(400)
    (train, test), = splits(spec, y)
    _, metrics = fit_and_score(spec, {}, X, y, train, test)
    assert metrics["accuracy"] > 0.8
    assert ("roc_auc" in metrics) == (estimator != "RidgeClassifier")
    model = fit_all(spec, {}, X, y)
    rows = np.array([[0.0, 1.0, "red"], [0.0, 2.0, "green"], [0.0, 0.0, None],
                     [3.0, np.nan, "purple"]], dtype=object)
    assert model.predict(rows)[[0, 1, 3]].tolist() == ["yes", "no", "yes"]
    step = model.named_steps["estimator"]
    assert getattr(step, "random_state", spec.seed) == spec.seed
    assert getattr(step, "n_jobs", 1) in (1, None)


def test_fit_and_score_on_iris_and_on_a_regression_set() -> None:
    X, y = load_iris(return_X_y=True)
    columns = [Column(f"x{j}", "float64") for j in range(4)] + [Column("y", "int64")]
    spec = check_spec({"estimator": "RandomForestClassifier", "target_column": "y",
                       "validation": {"cv": 3}}, columns)
    folds = [fit_and_score(spec, {"n_estimators": 20}, X, y, tr, te)[1]
             for tr, te in splits(spec, y)]
    assert summarize(folds)["accuracy"] > 0.9 and summarize(folds)["roc_auc"] > 0.95
    X, y = load_diabetes(return_X_y=True)
    columns = [Column(f"x{j}", "float64") for j in range(10)] + [Column("y", "float64")]
    regression = check_spec({"estimator": "Ridge", "target_column": "y"}, columns)
    (train, test), = splits(regression, y)
    _, metrics = fit_and_score(regression, {"alpha": 0.1}, X, y, train, test)
    assert metrics["r2"] > 0.3 and 30 < metrics["mae"] < metrics["rmse"] < 70
    again = fit_and_score(regression, {"alpha": 0.1}, X, y, train, test)[1]
    assert again == metrics  # Seeded: the same request scores the same.


@pytest.mark.parametrize("estimator", ["RandomForestClassifier", "ExtraTreesClassifier"])
def test_a_forest_fitted_in_parts_is_the_forest_one_fit_grows(estimator: str) -> None:
    spec = spec_for(estimator=estimator, seed=7)
    X, y = mixed_rows(300)
    params = {"n_estimators": 32, "max_features": 0.5}
    parts = tree_parts(spec, params, 3)
    assert parts == [(0, 10), (10, 21), (21, 32)]
    joined = join_trees(spec, [fit_trees(spec, params, X, y, a, b) for a, b in parts])
    whole = fit_all(spec, params, X, y)
    forest = joined.named_steps["estimator"]
    assert forest.n_estimators == 32 and forest.random_state == 7
    assert [t.random_state for t in forest.estimators_] == \
        [t.random_state for t in whole.named_steps["estimator"].estimators_]
    np.testing.assert_array_equal(joined.predict_proba(X), whole.predict_proba(X))


def test_a_regression_forest_joins_too() -> None:
    X, y = load_diabetes(return_X_y=True)
    columns = [Column(f"x{j}", "float64") for j in range(10)] + [Column("y", "float64")]
    spec = check_spec({"estimator": "RandomForestRegressor", "target_column": "y"}, columns)
    params = {"n_estimators": 20}
    joined = join_trees(spec, [fit_trees(spec, params, X, y, a, b)
                               for a, b in tree_parts(spec, params, 2)])
    np.testing.assert_array_equal(joined.predict(X), fit_all(spec, params, X, y).predict(X))


@pytest.mark.parametrize(("estimator", "params", "parts", "expected"), [
    ("RandomForestClassifier", {}, 4, [(0, 25), (25, 50), (50, 75), (75, 100)]),
    ("RandomForestClassifier", {"n_estimators": 30}, 8, [(0, 10), (10, 20), (20, 30)]),
    ("RandomForestClassifier", {"n_estimators": 19}, 4, []),
    ("RandomForestClassifier", {}, 1, []),
    ("RandomForestClassifier", {"oob_score": True}, 4, []),
    ("RandomForestClassifier", {"warm_start": True}, 4, []),
    ("GradientBoostingClassifier", {}, 4, []),
    ("LogisticRegression", {}, 4, []),
])
def test_which_fits_are_split_into_parts(estimator: str, params: dict[str, Any], parts: int,
                                         expected: list[tuple[int, int]]) -> None:
    assert tree_parts(spec_for(estimator=estimator), params, parts) == expected


def csv_dataset(storage: Storage, text: str) -> Dataset:
    data = text.encode()
    dataset_id = new_dataset_id()
    storage.put(dataset_key(dataset_id, "csv"), data)
    validator = CsvValidator()
    validator.feed(data)
    return Dataset.create(dataset_id, "t", "csv", validator.finish(), len(data),
                          hashlib.sha256(data).hexdigest(), 0.0)


def test_load_data_reads_features_in_order_and_the_target(tmp_path: Path) -> None:
    storage = Storage.from_url(str(tmp_path))
    lines = ["size,color,label,price,flag"] + [
        f"{i if i % 7 else ''},{['red', 'blue', ''][i % 3]},{i % 2},{i * 1.5},{i % 2 == 1}"
        for i in range(40)]
    dataset = csv_dataset(storage, "\n".join(lines) + "\n")
    spec = check_spec({"estimator": "RandomForestClassifier", "target_column": "label",
                       "feature_columns": ["color", "size"]}, dataset.columns)
    X, y = load_data(storage, dataset, spec)
    assert X.dtype == object and X.shape == (40, 2)
    assert X[1].tolist() == ["blue", 1.0] and np.isnan(X[0, 1])
    assert y.dtype == np.int64 and y[:3].tolist() == [0, 1, 0]
    assert read_target(storage, dataset, "price")[2] == 3.0
    numeric = check_spec({"estimator": "Ridge", "target_column": "price",
                          "feature_columns": ["size"]}, dataset.columns)
    X, y = load_data(storage, dataset, numeric)
    assert X.dtype == np.float64 and y.dtype == np.float64 and X[1, 0] == 1.0
    flags = check_spec({"estimator": "RandomForestClassifier", "target_column": "flag",
                        "feature_columns": ["size"]}, dataset.columns)
    assert load_data(storage, dataset, flags)[1][:3].tolist() == [0, 1, 0]
    # A boolean feature stays one in the spec and is read as 0 and 1.
    booleans = check_spec({"estimator": "Ridge", "target_column": "price",
                           "feature_columns": ["flag", "color"]}, dataset.columns)
    assert [f.dtype for f in booleans.features] == ["bool", "string"]
    X, _ = load_data(storage, dataset, booleans)
    assert X[:3, 0].tolist() == [0.0, 1.0, 0.0]
    continuous = check_spec({"estimator": "RandomForestClassifier", "target_column": "price",
                             "feature_columns": ["size"]}, dataset.columns)
    with pytest.raises(SpecError, match="is continuous"):
        load_data(storage, dataset, continuous)


def test_a_feature_without_values_is_refused(tmp_path: Path) -> None:
    storage = Storage.from_url(str(tmp_path))
    dataset = csv_dataset(storage, "x,y\n" + "".join(f",{i % 2}\n" for i in range(20)))
    assert dataset.columns[0].dtype == "null"
    with pytest.raises(SpecError, match="column 'x' is null"):
        check_spec({"estimator": "Ridge", "target_column": "y"}, dataset.columns)
    spec = TrainingSpec(estimator="Ridge", task="regression", hyperparameters={},
                        features=[Feature(name="x")], target="y",
                        validation={"holdout": 0.2})
    with pytest.raises(SpecError, match="column 'x' has no values"):
        load_data(storage, dataset, spec)


def test_library_versions_name_what_loads_a_model() -> None:
    assert set(library_versions()) == {"sklearn", "numpy", "scipy", "joblib", "python",
                                       "inferq"}


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_every_estimator_fits_rows_with_a_string_feature(estimator: str) -> None:
    X, labels = mixed_rows(120)
    y = (labels == "yes").astype(float) if ESTIMATORS[estimator][1] == "regression" else labels
    spec = spec_for(estimator=estimator, validation={"cv": 2})
    params = {"n_estimators": 5} if "n_estimators" in ESTIMATORS[estimator][0]().get_params() \
        else {}
    folds = [fit_and_score(spec, params, X, y, train, test)[1] for train, test in splits(spec, y)]
    assert set(summarize(folds)) <= set(METRICS[spec.task])
    assert METRICS[spec.task][0] in summarize(folds)
