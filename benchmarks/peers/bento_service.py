"""The BentoML peer: two workers, each batching requests adaptively into one model call.

Runs in the BentoML virtualenv only (benchmarks/peers/venvs.py), started by
``bentoml serve bento_service:Predictor``. ``POST /predict/{model}`` takes the body the sync
endpoint takes, ``{"instances": [[...], ...]}``, and answers the predictions (a JSON list).
BentoML's dispatcher gathers waiting requests into batches of up to 128 rows; every model
call is counted for the benchmark (benchmarks/peers/serving.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import bentoml
import numpy as np
from bentoml.exceptions import InvalidArgument
from serving import COUNTS_DIR_ENV, MODEL_DIR_ENV, BatchCounter, load_models, predict


# No access log: the other systems write none either.
@bentoml.service(workers=2, traffic={"timeout": 60}, logging={"access": {"enabled": False}})
class Predictor:
    def __init__(self) -> None:
        self._models = load_models(Path(os.environ[MODEL_DIR_ENV]))
        self._counter = BatchCounter(Path(os.environ[COUNTS_DIR_ENV]))

    def _predict(self, model: str, instances: np.ndarray) -> np.ndarray:
        if instances.ndim != 2 or instances.shape[1] != self._models[model].n_features_in_:
            raise InvalidArgument(f"instances are rows of {self._models[model].n_features_in_}"
                                  f" numbers, not of shape {instances.shape[1:]}")
        self._counter.add(model, len(instances))
        return predict(self._models[model], instances)

    @bentoml.api(route="/predict/forest", batchable=True, max_batch_size=128)
    def forest(self, instances: np.ndarray) -> np.ndarray:
        return self._predict("forest", instances)

    @bentoml.api(route="/predict/logistic", batchable=True, max_batch_size=128)
    def logistic(self, instances: np.ndarray) -> np.ndarray:
        return self._predict("logistic", instances)
