"""What the peers' apps share: the models, prediction over a batch, and its counts.

The counts (model calls and rows per model) live in shared memory: each serving process
maps a file of its own, ``<directory>/<pid>.counts``, and adds to it after every model call,
a store to memory and no system call, so counting costs the peer nothing measurable. The
benchmark sums every process's file. Imported in the peers' virtualenvs as well as in the
benchmark's: numpy and joblib besides the standard library, nothing else.
"""

from __future__ import annotations

import mmap
import os
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np

MODELS = ("forest", "logistic")
#: Per model, in MODELS order: model calls, then rows (unsigned 64-bit, native order).
SLOT = struct.Struct("=QQ")
SUFFIX = ".counts"
#: The environment that tells a peer's app where the models are and where to count.
MODEL_DIR_ENV, COUNTS_DIR_ENV = "PEER_MODEL_DIR", "PEER_COUNTS_DIR"

Rows = list[list[float]]


class BatchCounter:
    """This process's counts of model calls and rows, one slot per model."""

    def __init__(self, directory: Path, models: Sequence[str] = MODELS) -> None:
        self._slots = {model: i * SLOT.size for i, model in enumerate(models)}
        size = SLOT.size * len(self._slots)
        with (Path(directory) / f"{os.getpid()}{SUFFIX}").open("w+b") as file:
            file.truncate(size)
            self._memory = mmap.mmap(file.fileno(), size)
        self._totals = {model: [0, 0] for model in self._slots}

    def add(self, model: str, rows: int) -> None:
        """One model call of ``model`` over ``rows`` rows."""
        total = self._totals[model]
        total[0] += 1
        total[1] += rows
        SLOT.pack_into(self._memory, self._slots[model], *total)


def read_counts(directory: Path, model: str, models: Sequence[str] = MODELS) -> tuple[int, int]:
    """(model calls, rows) of ``model`` so far, summed over every process's file."""
    offset = list(models).index(model) * SLOT.size
    calls = rows = 0
    for path in Path(directory).glob(f"*{SUFFIX}"):
        data = path.read_bytes()
        if len(data) >= offset + SLOT.size:
            more_calls, more_rows = SLOT.unpack_from(data, offset)
            calls, rows = calls + more_calls, rows + more_rows
    return calls, rows


def load_models(directory: Path) -> dict[str, Any]:
    return {name: joblib.load(Path(directory) / f"{name}.joblib") for name in MODELS}


def predict(model: Any, rows: np.ndarray) -> np.ndarray:
    """``model.predict(rows)`` under one warnings filter, as inferq's worker calls it
    (ml/predict.py): scikit-learn re-applies the process's filters around each tree of a
    forest, and a serving process may have many."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.simplefilter("ignore")
        return np.asarray(model.predict(rows))


def rows_problem(model: Any, rows: Any) -> str | None:
    """Why ``rows`` cannot go to ``model`` (one bad request would fail its whole batch),
    or None."""
    features = model.n_features_in_
    if not isinstance(rows, list) or not rows:
        return "instances is a non-empty list of rows"
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != features:
            return f"instances[{i}] is not a row of {features} numbers"
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in row):
            return f"instances[{i}] holds something other than numbers"
    return None


def predict_grouped(models: dict[str, Any], counter: BatchCounter | None,
                    requests: Sequence[tuple[str, Rows]]) -> list[list[Any]]:
    """Each request's predictions, in order, with one model call per model in the batch."""
    by_model: dict[str, list[int]] = {}
    for i, (model, _) in enumerate(requests):
        by_model.setdefault(model, []).append(i)
    answers: list[list[Any]] = [[] for _ in requests]
    for model, indices in by_model.items():
        rows = [row for i in indices for row in requests[i][1]]
        predicted = predict(models[model], np.asarray(rows, dtype=np.float64)).tolist()
        if counter is not None:
            counter.add(model, len(rows))
        start = 0
        for i in indices:
            end = start + len(requests[i][1])
            answers[i] = predicted[start:end]
            start = end
    return answers
