"""Scoring a chunk: each row checked alone, the rest predicted at once, parts encoded."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sleepy import SleepyRegressor

from ml.store import load_estimator
from services.common.catalog import Feature, ModelMetadata
from services.worker.scoring import (
    Options,
    encode,
    encode_rejections,
    feature_matrix,
    predict_rows,
    score,
)


def test_every_kind_of_bad_value_is_named_with_its_column() -> None:
    table = pa.table({
        "a": pa.array([1, None, 3, 4, 5, 6], pa.int64()),
        "b": pa.array(["1.5", "2", "x", " ", "inf", "-1e39"]),
        "c": pa.array([True, True, True, True, True, True]),
    })
    values, problems = feature_matrix(table, [Feature(name="a"), Feature(name="b")])
    assert values[0].tolist() == [1.0, 1.5]
    assert {i: code for i, (code, _) in problems.items()} == {
        1: "missing_value", 2: "not_a_number", 3: "missing_value", 4: "non_finite_value",
        5: "out_of_range"}
    assert problems[2][1] == "column 'b' is the string 'x'; expected a number"
    assert "out of the allowed range" in problems[5][1] and "'b'" in problems[5][1]
    assert (values[1:] == 0).all()  # Rejected rows never reach the model.
    _, booleans = feature_matrix(table, [Feature(name="c")])
    assert booleans[0] == ("not_a_number", "column 'c' is a boolean; expected a number")
    _, empty = feature_matrix(pa.table({"n": pa.nulls(2)}), [Feature(name="n")])
    assert sorted(empty) == [0, 1]


def sleepy_metadata() -> ModelMetadata:
    return ModelMetadata.model_validate({
        "name": "sleepy", "version": 1, "task": "regression", "estimator": "SleepyRegressor",
        "features": [{"name": "x0"}, {"name": "x1"}], "sha256": "0" * 64,
        "created_at": "2026-01-01T00:00:00Z", "sklearn_version": "1"})


def test_rows_the_model_refuses_are_found_by_halving_and_fail_alone() -> None:
    values = np.array([[0.0, float(i)] for i in range(64)])
    values[[5, 40, 41], 1] = -1  # sleepy refuses the whole call for these.
    predictions, probabilities, failures = predict_rows(
        sleepy_metadata(), SleepyRegressor(), values, probabilities=True)
    assert sorted(failures) == [5, 40, 41]
    assert failures[5]["message"] == "x1 must not be negative"
    assert [p for i, p in enumerate(predictions) if i not in failures] == [
        float(i) for i in range(64) if i not in (5, 40, 41)]
    assert probabilities is None  # A regressor has none.


@pytest.fixture(scope="module")
def iris(model_store: Path) -> tuple[ModelMetadata, object]:
    return load_estimator(model_store, "iris", 1)


def test_a_chunk_keeps_input_order_and_writes_each_format(
    iris: tuple[ModelMetadata, object],
) -> None:
    metadata, estimator = iris
    features = {name: [5.1, 6.7, 5.0] for name in metadata.feature_names}
    features["petal_length_cm"] = [1.4, 5.2, None]
    table = pa.table({"row": pa.array([10, 11, 12], pa.int64()), **features,
                      "id": ["a", "b", "c"], "note": ["x, y", "z", "w"]})
    scored = score(table, metadata, estimator,
                   Options(id_column="id", passthrough=("note",), return_probabilities=True))
    assert scored.output.column_names == [
        "row", "id", "note", "prediction", "probability_setosa", "probability_versicolor",
        "probability_virginica"]
    assert scored.output["row"].to_pylist() == [10, 11]
    assert [(r.row, r.id, r.code) for r in scored.rejected] == [(12, "c", "missing_value")]
    assert orjson.loads(encode_rejections(scored.rejected, True)) == {
        "row": 12, "id": "c", "code": "missing_value",
        "message": "column 'petal_length_cm' has no value"}

    csv_part = encode(scored.output, "csv").decode().splitlines()
    assert len(csv_part) == 2 and csv_part[0].startswith('10,"a","x, y",')  # No header.
    lines = [orjson.loads(line) for line in encode(scored.output, "jsonl").splitlines()]
    assert [line["row"] for line in lines] == [10, 11] and lines[0]["note"] == "x, y"
    parquet = pq.read_table(io.BytesIO(encode(scored.output, "parquet")))
    assert parquet.equals(scored.output)


def test_a_string_feature_reads_text_and_refuses_other_columns() -> None:
    table = pa.table({
        "a": pa.array([1.0, 2.0, None, 4.0]),
        "color": pa.array(["red", None, "blue", "green"]),
        "code": pa.array([None, 7, None, 9], pa.int64()),
    })
    features = [Feature(name="a"), Feature(name="color", dtype="string")]
    values, problems = feature_matrix(table, features)
    assert values.dtype == object
    assert values.tolist() == [[1.0, "red"], [2.0, None], [0.0, None], [4.0, "green"]]
    assert problems == {2: ("missing_value", "column 'a' has no value")}
    _, refused = feature_matrix(table, [Feature(name="code", dtype="string")])
    assert refused == {1: ("not_a_string", "column 'code' is a number; expected a string"),
                       3: ("not_a_string", "column 'code' is a number; expected a string")}
    numbers, _ = feature_matrix(table, [Feature(name="a")])
    assert numbers.dtype == np.float64  # Numeric models keep the float path.


def test_a_trained_pipeline_with_a_string_feature_scores_a_chunk() -> None:
    from ml.training import check_spec, fit_all
    from services.common.dataset_formats import Column

    rng = np.random.default_rng(0)
    size = rng.normal(size=200)
    color = rng.choice(["red", "blue"], size=200)
    y = np.where(color == "red", size + 10, size)
    spec = check_spec({"estimator": "DecisionTreeRegressor", "target_column": "y"},
                      [Column("size", "float64"), Column("color", "string"),
                       Column("y", "float64")])
    X = np.array(list(zip(size, color, strict=True)), dtype=object)
    model = fit_all(spec, {"max_depth": 4}, X, y)
    metadata = sleepy_metadata().model_copy(update={"features": spec.features})
    table = pa.table({"row": pa.array([0, 1, 2, 3], pa.int64()),
                      "size": [0.0, 0.0, 0.0, None],
                      "color": ["red", "blue", None, "red"]})
    scored = score(table, metadata, model, Options())
    assert scored.output["row"].to_pylist() == [0, 1, 2]
    red, blue, missing = scored.output["prediction"].to_pylist()
    assert red > blue + 5 and missing in (red, blue)  # A missing string: the most frequent.
    assert [(r.row, r.code) for r in scored.rejected] == [(3, "missing_value")]
