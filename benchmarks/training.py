"""Training jobs: a cross-validation and a grid search through inferq, next to scikit-learn.

``inferq bench --training``. A synthetic dataset of ``--rows`` rows (``--features`` numeric
features, a binary target, seed 0) is uploaded as Parquet to an inferq stack on this
machine (Redis, a storage directory, the API, and training workers as real processes).
Then, for each number of training workers in ``--workers`` (1, then 2):

- (a) a ``RandomForestClassifier`` of ``--trees`` trees with ``--cv``-fold cross-validation;
- (b) a grid of ``--candidates`` candidates of it (max_depth x min_samples_leaf) with
  ``--grid-cv`` folds;

each timed from submit to succeeded (the final fit on every row and the registration
included). The workers of each count are started afresh with ``INFERQ_TRAINING_FIT_PARTS``
set as the chart sets it, to the number of training worker processes (``--fit-parts``
fixes it instead). In the same run, the direct baseline in one process: scikit-learn's
``cross_validate`` with ``n_jobs=--baseline-jobs`` plus the final fit, and
``GridSearchCV(n_jobs=--baseline-jobs)`` (its refit included), scoring the same three
metrics. Writes results.json and results.md to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))

from common import machine, write_results

from services.cli.processes import ServiceProcess, start_api, start_worker
from services.cli.redis_server import free_port, start_redis

ESTIMATOR = "RandomForestClassifier"
TARGET = "y"
#: What inferq scores on every fold of a classifier; the baseline scores the same.
SCORING = ("accuracy", "f1", "roc_auc")
#: The grid's axes; its first ``--candidates`` combinations are searched.
GRID_AXES: dict[str, list[Any]] = {
    "max_depth": [None, 24, 16, 12, 8, 6, 4, 2],
    "min_samples_leaf": [1, 4, 16],
}


def grid(candidates: int) -> dict[str, list[Any]]:
    """A grid of exactly ``candidates`` combinations: max_depth values times 2 (else 1, else
    3) min_samples_leaf values; 8 is 4 depths x 2 leaf sizes."""
    depths = GRID_AXES["max_depth"]
    for leaves in (2, 1, 3):
        if candidates % leaves == 0 and candidates // leaves <= len(depths):
            return {"max_depth": depths[:candidates // leaves],
                    "min_samples_leaf": GRID_AXES["min_samples_leaf"][:leaves]}
    raise ValueError(f"no grid of {candidates} candidates from {GRID_AXES}")


def dataset(rows: int, features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``features`` numeric features, half of them informative, and a 0/1 target."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=rows, n_features=features,
                               n_informative=max(2, features // 2), random_state=seed)
    return x, y


def write_parquet(x: np.ndarray, y: np.ndarray, path: Path) -> list[str]:
    names = [f"x{i}" for i in range(x.shape[1])]
    table = pa.table({**{name: x[:, i] for i, name in enumerate(names)}, TARGET: y})
    pq.write_table(table, path, row_group_size=50_000)
    return names


@contextmanager
def stack(root: Path) -> Iterator[tuple[str, dict[str, str], list[ServiceProcess]]]:
    """Redis, a storage directory, an empty model store and the API; the caller adds
    training workers to the list, all stopped on the way out."""
    redis_port = free_port()
    redis = start_redis(redis_port, root / "redis", appendonly=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERQ_")}
    env.update(INFERQ_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
               INFERQ_MODEL_STORE=str(root / "models"), INFERQ_STORAGE_URL=str(root / "storage"),
               INFERQ_AUTH="off")
    (root / "models").mkdir()
    (root / "api").mkdir()
    port = free_port()
    api = start_api(env, port, root / "api")
    workers: list[ServiceProcess] = []
    try:
        yield f"http://127.0.0.1:{port}", env, workers
    finally:
        for worker in workers:
            worker.stop()
        api.stop()
        redis.terminate()
        redis.wait()


def upload(client: httpx.Client, path: Path) -> tuple[str, float]:
    started = time.perf_counter()
    with path.open("rb") as f:
        response = client.post("/v1/datasets", params={"name": path.name}, content=f.read(),
                               headers={"Content-Type": "application/vnd.apache.parquet"})
    response.raise_for_status()
    return response.json()["dataset_id"], time.perf_counter() - started


def run_job(client: httpx.Client, model: str, body: dict[str, Any],
            timeout: float) -> dict[str, Any]:
    """Submit a training job and wait for its end: the job, and its seconds from submit to
    end as the client saw them."""
    started = time.perf_counter()
    response = client.post(f"/v1/models/{model}/training-jobs", json=body)
    if response.status_code != 202:
        return {"status": "refused", "http_status": response.status_code,
                "error": response.json().get("error")}
    job = response.json()
    while job["status"] in ("queued", "running"):
        if time.perf_counter() - started > timeout:
            client.delete(f"/v1/training-jobs/{job['job_id']}")
            return {"status": "timed_out", "job": job}
        job = client.get(f"/v1/training-jobs/{job['job_id']}", params={"wait": 30}).json()
    seconds = time.perf_counter() - started
    return {"status": job["status"], "seconds": round(seconds, 2), "version": job["version"],
            "metrics": job["metrics"], "hyperparameters": job.get("hyperparameters"),
            "error": job.get("error")}


def job_bodies(args: argparse.Namespace, dataset_id: str) -> dict[str, dict[str, Any]]:
    base = {"dataset_id": dataset_id, "target_column": TARGET, "estimator": ESTIMATOR,
            "hyperparameters": {"n_estimators": args.trees}, "seed": 0}
    return {
        "cv": {**base, "validation": {"cv": args.cv}},
        "grid": {**base, "validation": {"cv": args.grid_cv},
                 "search": {"grid": grid(args.candidates), "metric": "accuracy"}},
    }


def baseline(x: np.ndarray, y: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """The same two workloads in this process with scikit-learn alone."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate

    def forest() -> RandomForestClassifier:
        return RandomForestClassifier(n_estimators=args.trees, n_jobs=1, random_state=0)

    results: dict[str, Any] = {}
    started = time.perf_counter()
    scores = cross_validate(forest(), x, y, scoring=SCORING, n_jobs=args.baseline_jobs,
                            cv=StratifiedKFold(args.cv, shuffle=True, random_state=0))
    folds_done = time.perf_counter()
    forest().fit(x, y)
    ended = time.perf_counter()
    results["cv"] = {
        "call": f"cross_validate(n_jobs={args.baseline_jobs}) + fit on every row",
        "seconds": round(ended - started, 2), "folds_seconds": round(folds_done - started, 2),
        "final_fit_seconds": round(ended - folds_done, 2),
        "metrics": {m: round(float(np.mean(scores[f"test_{m}"])), 4) for m in SCORING}}
    started = time.perf_counter()
    search = GridSearchCV(forest(), grid(args.candidates), scoring=list(SCORING),
                          refit="accuracy", n_jobs=args.baseline_jobs,
                          cv=StratifiedKFold(args.grid_cv, shuffle=True, random_state=0))
    search.fit(x, y)
    results["grid"] = {
        "call": f"GridSearchCV(n_jobs={args.baseline_jobs}), refit included",
        "seconds": round(time.perf_counter() - started, 2),
        "refit_seconds": round(float(search.refit_time_), 2),
        "best_params": search.best_params_,
        "metrics": {m: round(float(search.cv_results_[f"mean_test_{m}"][search.best_index_]),
                             4) for m in SCORING}}
    return results


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "benchmark": "training jobs", "machine": machine(),
        "load_average_at_start": _load(),
        "settings": {"rows": args.rows, "features": args.features, "trees": args.trees,
                     "cv": args.cv, "candidates": args.candidates, "grid_cv": args.grid_cv,
                     "grid": grid(args.candidates), "workers": args.workers,
                     "baseline_jobs": args.baseline_jobs,
                     "fit_parts": args.fit_parts or "the number of training workers"},
        "inferq": [], "baseline": {}}
    x, y = dataset(args.rows, args.features)
    with tempfile.TemporaryDirectory(prefix="inferq-training-bench-") as tmp:
        root = Path(tmp)
        path = root / "training.parquet"
        write_parquet(x, y, path)
        if not args.skip_baseline:
            report["baseline"] = baseline(x, y, args)
            _save_partial(args.out, report)
        with stack(root) as (url, env, workers), \
                httpx.Client(base_url=url, timeout=120) as client:
            dataset_id, seconds = upload(client, path)
            report["upload"] = {"mib": round(path.stat().st_size / 2**20, 1),
                                "seconds": round(seconds, 2)}
            for count in args.workers:
                while workers:
                    workers.pop().stop()
                parts = str(args.fit_parts or count)
                workers.extend(start_worker({**env, "INFERQ_TRAINING_FIT_PARTS": parts}, root,
                                            pool="training", concurrency=1)
                               for _ in range(count))
                for name, body in job_bodies(args, dataset_id).items():
                    if name not in args.jobs:
                        continue
                    outcome = run_job(client, f"bench-{name}", body, args.timeout)
                    report["inferq"].append({"job": name, "workers": count, **outcome,
                                             "load_average": _load()})
                    # A run takes long: what is measured so far survives an interruption.
                    _save_partial(args.out, report)
    report["load_average_at_end"] = _load()
    return report


def _load() -> list[float]:
    """The machine's load averages (1, 5, 15 min): other work on it slows every run."""
    return [round(v, 2) for v in os.getloadavg()]


def _save_partial(out: Path, report: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "partial.json").write_text(json.dumps(report, indent=2) + "\n")


def write_markdown(report: dict[str, Any], path: Path) -> None:
    s = report["settings"]
    what = {"cv": f"{s['trees']} trees, cv {s['cv']}",
            "grid": f"grid of {s['candidates']}, cv {s['grid_cv']}"}
    lines = ["| job | runs on | seconds | accuracy | roc_auc |", "|---|---|---|---|---|"]
    for name in ("cv", "grid"):
        for r in report["inferq"]:
            if r["job"] != name:
                continue
            metrics = {k: round(v, 4) for k, v in (r.get("metrics") or {}).items()}
            lines.append(f"| {what[name]} | inferq, {r['workers']} training worker"
                         f"{'s' if r['workers'] > 1 else ''} | "
                         f"{r.get('seconds', r['status'])} | {metrics.get('accuracy', '')} | "
                         f"{metrics.get('roc_auc', '')} |")
        if name in report["baseline"]:
            b = report["baseline"][name]
            lines.append(f"| {what[name]} | scikit-learn, {b['call']} | {b['seconds']} | "
                         f"{b['metrics']['accuracy']} | {b['metrics']['roc_auc']} |")
    path.write_text("\n".join(lines) + "\n")


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of "
                                         "numbers") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every count must be 1 or more")
    return counts


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be 1 or more")
    return value


def _folds(text: str) -> int:
    value = int(text)
    if not 2 <= value <= 20:
        raise argparse.ArgumentTypeError(f"{text} folds: inferq takes 2 to 20")
    return value


def _jobs(text: str) -> list[str]:
    names = text.split(",")
    unknown = sorted(set(names) - {"cv", "grid"})
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown jobs {unknown}: use cv, grid or both")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=_positive, default=100_000)
    parser.add_argument("--features", type=_positive, default=20)
    parser.add_argument("--trees", type=_positive, default=100,
                        help="n_estimators of the random forest")
    parser.add_argument("--cv", type=_folds, default=5, help="folds of the cross-validation job")
    parser.add_argument("--candidates", type=_positive, default=8,
                        help="candidates of the grid search")
    parser.add_argument("--grid-cv", type=_folds, default=5, help="folds of the grid search")
    parser.add_argument("--workers", type=_counts, default=[1, 2],
                        help="comma-separated numbers of training workers, run in turn")
    parser.add_argument("--jobs", type=_jobs, default=["cv", "grid"],
                        help="which jobs: cv, grid or both (comma-separated)")
    parser.add_argument("--baseline-jobs", type=_positive, default=2,
                        help="n_jobs of cross_validate and GridSearchCV")
    parser.add_argument("--fit-parts", type=_positive, default=None,
                        help="INFERQ_TRAINING_FIT_PARTS of every worker (default: as many as "
                             "training workers, as the chart sets it)")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--timeout", type=float, default=7200.0,
                        help="seconds one job may take before it is cancelled")
    parser.add_argument("--out", type=Path, default=Path("benchmark-results/training"))
    args = parser.parse_args(argv)
    try:
        grid(args.candidates)
    except ValueError:
        parser.error(f"--candidates {args.candidates}: a grid of that many cannot be built "
                     f"from {GRID_AXES}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    write_results(args.out, run(args), write_markdown)


if __name__ == "__main__":
    main()
