"""A test estimator whose cost and failures the caller controls through its inputs.

``predict`` sleeps ``x0`` seconds summed over the rows and answers ``x0 + x1``; a row
with ``x1 < 0`` makes the whole call raise, like a model refusing poisoned input.
"""

from __future__ import annotations

import time

import numpy as np


class SleepyRegressor:
    n_features_in_ = 2

    def fit(self, x: np.ndarray, y: np.ndarray) -> SleepyRegressor:
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if (x[:, 1] < 0).any():
            raise ValueError("x1 must not be negative")
        time.sleep(float(x[:, 0].sum()))
        return x[:, 0] + x[:, 1]
