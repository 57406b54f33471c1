"""Scoring one chunk of a batch job: rows checked one by one, predicted at once, encoded.

Plain functions of a table of rows and a model; no Redis, no storage. A row that cannot be
scored (a numeric feature missing, not a number, not finite, beyond float32's range, a
boolean feature missing or not true or false, a string feature that is not text, or one
the model refuses) is rejected with its row number and the reason, and never fails the
chunk.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from ml.predict import predict
from services.common.catalog import Feature, ModelMetadata
from services.common.dataset_formats import ROW_COLUMN
from services.common.job_outputs import PREDICTION_COLUMN, PROBABILITY_PREFIX
from services.common.values import BOOL_DTYPE, MAX_MAGNITUDE, STRING_DTYPE
from services.worker import task_errors


class RejectCode:
    MISSING = "missing_value"
    NOT_A_NUMBER = "not_a_number"
    NOT_A_STRING = "not_a_string"
    NOT_A_BOOLEAN = "not_a_boolean"
    NON_FINITE = "non_finite_value"
    OUT_OF_RANGE = "out_of_range"
    PREDICTION_FAILED = "prediction_failed"


@dataclass(frozen=True)
class Rejection:
    """A row not scored: its 0-based index in the dataset, its id, why."""

    row: int
    code: str
    message: str
    id: Any = None

    def as_json(self, with_id: bool) -> dict[str, Any]:
        record: dict[str, Any] = {"row": self.row}
        if with_id:
            record["id"] = self.id
        record["code"] = self.code
        record["message"] = self.message
        return record


@dataclass
class Scored:
    """A chunk's output rows (in input order) and its rejected rows."""

    output: pa.Table
    rejected: list[Rejection] = field(default_factory=list)


@dataclass(frozen=True)
class Options:
    """What a job asks of its output."""

    id_column: str | None = None
    passthrough: Sequence[str] = ()
    return_probabilities: bool = False


def score(table: pa.Table, metadata: ModelMetadata, estimator: Any,
          options: Options) -> Scored:
    """Check, predict and lay out ``table``'s rows (``read_rows``'s: a leading ``row``)."""
    values, problems = feature_matrix(table, metadata.features)
    rejected = dict(problems)
    valid = np.ones(table.num_rows, dtype=bool)
    valid[np.fromiter(rejected, dtype=np.intp, count=len(rejected))] = False
    indices = np.flatnonzero(valid)
    predictions, probabilities, failures = predict_rows(
        metadata, estimator, values[indices], options.return_probabilities)
    for position, error in failures.items():
        rejected[int(indices[position])] = (
            error.get("code", RejectCode.PREDICTION_FAILED), error["message"])
    scored_positions = [p for p in range(len(indices)) if p not in failures]
    keep = np.zeros(table.num_rows, dtype=bool)
    keep[indices[scored_positions]] = True
    output = _output_table(table, metadata, options, keep,
                           [predictions[p] for p in scored_positions],
                           [probabilities[p] for p in scored_positions] if probabilities
                           else None)
    # Only the rejected rows' numbers and ids are needed as Python values.
    rows = table[ROW_COLUMN]
    ids = table[options.id_column] if options.id_column else None
    rejections = [
        Rejection(rows[i].as_py(), code, message, ids[i].as_py() if ids is not None else None)
        for i, (code, message) in sorted(rejected.items())
    ]
    return Scored(output, rejections)


def feature_matrix(table: pa.Table,
                   features: Sequence[Feature]) -> tuple[np.ndarray, dict[int, tuple[str, str]]]:
    """The feature values, one row a row, and the first problem of each rejected row, by
    its index in ``table``: (code, message). Floats (booleans as 0 and 1), or objects when a
    feature is a string (its values str, or None where missing); rejected rows hold 0 (None
    for strings)."""
    text = [f.dtype == STRING_DTYPE for f in features]
    matrix = np.zeros((table.num_rows, len(features)),
                      dtype=object if any(text) else np.float64)
    problems: dict[int, tuple[str, str]] = {}
    for j, feature in enumerate(features):
        read = (_text_values if text[j] else _boolean_values if feature.dtype == BOOL_DTYPE
                else _column_values)
        values, column_problems = read(table[feature.name], feature.name)
        for i, problem in column_problems.items():
            problems.setdefault(i, problem)
        matrix[:, j] = values
    if problems:
        rejected = np.fromiter(problems, dtype=np.intp, count=len(problems))
        matrix[rejected] = [None if t else 0.0 for t in text] if any(text) else 0.0
    return matrix, problems


def _text_values(column: pa.ChunkedArray,
                 name: str) -> tuple[list[Any], dict[int, tuple[str, str]]]:
    """A string feature's values: text as it is, None where missing (the model fills it
    in); a column of another type is refused row by row."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column.to_pylist(), {}
    present = np.flatnonzero(~column.is_null().to_numpy(zero_copy_only=False))
    numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(
        kind)
    what = "a number" if numeric else "a boolean" if pa.types.is_boolean(kind) else (
        f"of type {kind}")
    problem = (RejectCode.NOT_A_STRING, f"column {name!r} is {what}; expected a string")
    return [None] * len(column), {int(i): problem for i in present}


#: The text a boolean feature's cell may hold, as it reads (any case).
_BOOLEAN_TEXT = {"true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0}


def _boolean_values(column: pa.ChunkedArray,
                    name: str) -> tuple[np.ndarray, dict[int, tuple[str, str]]]:
    """A boolean feature's values as 0 and 1: from booleans, the numbers 0 and 1, or the
    text true, false, 1 or 0; anything else is refused row by row, as is a missing value."""
    kind = column.type
    problems: dict[int, tuple[str, str]] = {}
    if pa.types.is_boolean(kind):  # The common case, read at once.
        values = np.array(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False))
        for row in np.flatnonzero(np.isnan(values)):
            problems[int(row)] = (RejectCode.MISSING, f"column {name!r} has no value")
        values[np.isnan(values)] = 0.0
        return values, problems
    values = np.zeros(len(column))
    for i, cell in enumerate(column.to_pylist()):
        if cell is None or (isinstance(cell, str) and not cell.strip()):
            problems[i] = (RejectCode.MISSING, f"column {name!r} has no value")
            continue
        if isinstance(cell, str):
            found = _BOOLEAN_TEXT.get(cell.strip().lower())
        elif isinstance(cell, bool) or (isinstance(cell, int | float) and cell in (0, 1)):
            found = float(cell)
        else:
            found = None
        if found is None:
            shown = repr(cell) if len(repr(cell)) <= 24 else f"{repr(cell)[:20]}..."
            problems[i] = (RejectCode.NOT_A_BOOLEAN,
                           f"column {name!r} is {shown} ({kind}); expected true or false")
            continue
        values[i] = found
    return values, problems


def _column_values(column: pa.ChunkedArray,
                   name: str) -> tuple[np.ndarray, dict[int, tuple[str, str]]]:
    kind = column.type
    problems: dict[int, tuple[str, str]] = {}
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        values = pc.cast(column, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
        missing = column.is_null().to_numpy(zero_copy_only=False)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        values, missing = _parsed(column.to_pylist(), name, problems)
    elif pa.types.is_null(kind):
        values = np.zeros(len(column))
        missing = np.ones(len(column), dtype=bool)
    else:
        what = "a boolean" if pa.types.is_boolean(kind) else f"of type {kind}"
        values = np.zeros(len(column))
        missing = column.is_null().to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(~missing):
            problems[int(i)] = (RejectCode.NOT_A_NUMBER,
                                f"column {name!r} is {what}; expected a number")
    values = np.array(values, dtype=np.float64)  # A copy: arrow's buffers are read-only.
    for i in np.flatnonzero(missing):
        problems.setdefault(int(i), (RejectCode.MISSING, f"column {name!r} has no value"))
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(values)
        too_large = finite & (np.abs(values) > MAX_MAGNITUDE)
    for i in np.flatnonzero(~finite & ~missing):
        problems.setdefault(int(i), (
            RejectCode.NON_FINITE,
            f"column {name!r} is {values[i]}; every value must be a finite number"))
    for i in np.flatnonzero(too_large):
        problems.setdefault(int(i), (
            RejectCode.OUT_OF_RANGE,
            f"column {name!r} is {values[i]:g}, out of the allowed range "
            f"{-MAX_MAGNITUDE:.7g} to {MAX_MAGNITUDE:.7g}"))
    values[~finite | too_large] = 0.0
    return values, problems


def _parsed(cells: list[Any], name: str,
            problems: dict[int, tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Text cells as numbers. A column holding any text is typed text as a whole (a csv
    column with one word in it, a JSON Lines key that is a string in one row), so a cell
    that reads as a number is one; an empty cell is missing; any other text is not."""
    values = np.zeros(len(cells))
    missing = np.zeros(len(cells), dtype=bool)
    for i, cell in enumerate(cells):
        if cell is None or cell.strip() == "":
            missing[i] = True
            continue
        try:
            values[i] = float(cell)
            continue
        except ValueError:
            pass
        shown = cell if len(cell) <= 24 else f"{cell[:20]}..."
        problems[i] = (RejectCode.NOT_A_NUMBER,
                       f"column {name!r} is the string {shown!r}; expected a number")
    return values, missing


def predict_rows(
    metadata: ModelMetadata, estimator: Any, values: np.ndarray, probabilities: bool,
) -> tuple[list[Any], list[list[float]] | None, dict[int, dict[str, str]]]:
    """Predictions for ``values`` in one call; when the call fails, the rows are split in
    halves until the rows the model refuses are found, each failing alone. Returns the
    predictions and probabilities (None where a row failed) and each failed row's error."""
    count = len(values)
    predictions: list[Any] = [None] * count
    probas: list[Any] | None = [None] * count if probabilities else None
    failures: dict[int, dict[str, str]] = {}

    def run(lo: int, hi: int) -> None:
        try:
            result = predict(metadata, estimator, values[lo:hi], probabilities)
        except Exception as exc:
            if hi - lo == 1:
                failures[lo] = task_errors.from_exception(exc)
                return
            middle = (lo + hi) // 2
            run(lo, middle)
            run(middle, hi)
            return
        predictions[lo:hi] = result["predictions"]
        if probas is not None:
            probas[lo:hi] = result.get("probabilities") or [None] * (hi - lo)

    if count:
        run(0, count)
    if probas is not None and metadata.task != "classification":
        probas = None
    return predictions, probas, failures


def prediction_type(metadata: ModelMetadata) -> pa.DataType:
    """The output's prediction column type, the same in every chunk of a job."""
    if metadata.task == "regression" or not metadata.classes:
        return pa.float64()
    if all(isinstance(c, str) for c in metadata.classes):
        return pa.string()
    if all(isinstance(c, int) and not isinstance(c, bool) for c in metadata.classes):
        return pa.int64()
    return pa.float64()


def _output_table(table: pa.Table, metadata: ModelMetadata, options: Options, keep: np.ndarray,
                  predictions: list[Any], probabilities: list[list[float]] | None) -> pa.Table:
    mask = pa.array(keep)
    columns: dict[str, pa.ChunkedArray | pa.Array] = {
        ROW_COLUMN: table[ROW_COLUMN].filter(mask)}
    for name in [options.id_column, *options.passthrough]:
        if name and name not in columns:
            columns[name] = table[name].filter(mask)
    columns[PREDICTION_COLUMN] = pa.array(predictions, type=prediction_type(metadata))
    if options.return_probabilities and metadata.task == "classification" and metadata.classes:
        for j, label in enumerate(metadata.classes):
            columns[f"{PROBABILITY_PREFIX}{label}"] = pa.array(
                [p[j] for p in probabilities or ()], type=pa.float64())
    return pa.table(columns)


def encode(output: pa.Table, fmt: str) -> bytes:
    """A part of a job's output: csv without its header, JSON Lines, or parquet."""
    if fmt == "csv":
        sink = io.BytesIO()
        pa_csv.write_csv(output, sink, pa_csv.WriteOptions(include_header=False,
                                                           quoting_style="needed"))
        return sink.getvalue()
    if fmt == "jsonl":
        return b"".join(orjson.dumps(_json_row(row)) + b"\n" for row in output.to_pylist())
    sink = io.BytesIO()
    pq.write_table(output, sink)
    return sink.getvalue()


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN: a passthrough float that is one is null.
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in row.items()}


def encode_rejections(rejected: Sequence[Rejection], with_id: bool) -> bytes:
    return b"".join(orjson.dumps(r.as_json(with_id), default=str) + b"\n" for r in rejected)
