"""One fit of a training job, in a process of its own (``python -m services.worker.training_fit``).

The training task (``services.worker.training``) starts it so that a cancel or a time limit
can end the fit at once: scikit-learn does not stop inside a fit for anything else. It reads
one JSON object on stdin:

    {"spec": TrainingSpec.to_json(), "dataset_id", "params": {...}, "mode", "fold", "artifact"}

``mode`` is ``fold`` (fit on fold ``fold``'s train rows, score on its test rows), ``holdout``
(the same on the single split, keeping the fitted pipeline), ``all`` (fit on every row,
keeping it) or ``trees`` (the same with only the forest's trees ``trees``, [start, stop]).
A kept pipeline is written with joblib to ``artifact``. It writes one JSON
object a line on stdout: ``{"event": "loaded"}`` once the data is read, then
``{"metrics": {...}}`` (and ``"artifact"``) or ``{"error": {"type", "message"}}`` (and exits 1).
"""

from __future__ import annotations

import os
import sys
from typing import Any, BinaryIO

import joblib
import orjson
import redis

from ml import training
from services.common.datasets import load_dataset
from services.common.settings import get_settings
from services.common.storage import storage_from_settings


class _Answers:
    #: Where the answers go: the stdout the process started with (see ``main``).
    out: BinaryIO = sys.stdout.buffer


def _say(line: dict[str, Any]) -> None:
    _Answers.out.write(orjson.dumps(line) + b"\n")
    _Answers.out.flush()


def fit(request: dict[str, Any]) -> dict[str, Any]:
    """Run the fit ``request`` asks for; what to answer."""
    settings = get_settings()
    spec = training.TrainingSpec.from_json(request["spec"])
    client = redis.Redis.from_url(settings.broker_url, socket_timeout=settings.redis_socket_timeout,
                                  **settings.redis_tls)
    dataset = load_dataset(client, request["dataset_id"])
    client.close()
    if dataset is None:
        raise LookupError(f"dataset {request['dataset_id']} was deleted before the job ran")
    X, y = training.load_data(storage_from_settings(settings), dataset, spec)
    _say({"event": "loaded", "rows": len(y)})
    params = request["params"]
    mode = request["mode"]
    if mode in ("all", "trees"):
        pipeline = training.fit_all(spec, params, X, y) if mode == "all" else \
            training.fit_trees(spec, params, X, y, *request["trees"])
        joblib.dump(pipeline, request["artifact"])
        return {"metrics": {}, "artifact": request["artifact"]}
    train, test = training.splits(spec, y)[int(request.get("fold") or 0)]
    pipeline, metrics = training.fit_and_score(spec, params, X, y, train, test)
    answer: dict[str, Any] = {"metrics": metrics}
    if mode == "holdout":
        joblib.dump(pipeline, request["artifact"])
        answer["artifact"] = request["artifact"]
    return answer


def main() -> int:
    # Anything else written to stdout (a library's print) goes to stderr, so it never
    # garbles the answers.
    _Answers.out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    try:
        _say(fit(orjson.loads(sys.stdin.buffer.read())))
    except Exception as exc:
        _say({"error": {"type": type(exc).__name__, "message": str(exc) or type(exc).__name__}})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
