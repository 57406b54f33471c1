"""Batch scoring: a million rows as an inferq job, next to the plain script that is its limit.

``inferq bench --batch``. The benchmark's two models (``models.py``: a random forest and a
logistic regression on 20 features) score ``--rows`` rows written as Parquet and as CSV:

- the limit: one script reads the file with pyarrow, predicts in two processes over its
  halves, and writes the output (``row``, ``prediction``) in the same format with pyarrow;
- inferq: the file is uploaded (timed apart, next to a plain copy of the same file), then a
  batch job runs on ``--workers`` batch workers and is timed from submit to succeeded. The
  resident memory of every worker process is sampled throughout; the output is downloaded
  afterwards and compared with the limit's predictions row by row.

Writes results.json and results.md to ``--out``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import psutil
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))

import models
from common import machine, write_results

from ml.importer import import_model
from services.cli.processes import ServiceProcess, start_api, start_worker
from services.cli.redis_server import free_port, start_redis

CONTENT_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
FEATURES = [f"x{i}" for i in range(models.FEATURES)]


def write_dataset(directory: Path, rows: int) -> dict[str, Path]:
    """``rows`` rows of the models' distribution, as Parquet and CSV files."""
    x, _ = models.dataset()
    rng = np.random.default_rng(3)
    picked = x[rng.integers(0, len(x), rows)] + rng.normal(0, 0.01, (rows, x.shape[1]))
    table = pa.table({name: picked[:, i] for i, name in enumerate(FEATURES)})
    paths = {"parquet": directory / "rows.parquet", "csv": directory / "rows.csv"}
    pq.write_table(table, paths["parquet"], row_group_size=100_000)
    pa_csv.write_csv(table, paths["csv"])
    return paths


def read_table(path: Path, fmt: str) -> pa.Table:
    return pq.read_table(path) if fmt == "parquet" else pa_csv.read_csv(path)


def write_table(table: pa.Table, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        pq.write_table(table, path)
    else:
        pa_csv.write_csv(table, path)


_SHARED: dict[str, Any] = {}


def _predict_part(bounds: tuple[int, int]) -> np.ndarray:
    start, stop = bounds
    return np.asarray(_SHARED["model"].predict(_SHARED["x"][start:stop]))


def limit(path: Path, fmt: str, model_path: Path, out: Path) -> tuple[float, np.ndarray]:
    """The plain script: read, predict in two forked processes over halves, write. Its
    seconds, and its predictions."""
    started = time.perf_counter()
    table = read_table(path, fmt)
    _SHARED["x"] = np.column_stack([table[name].to_numpy() for name in FEATURES])
    _SHARED["model"] = joblib.load(model_path)
    half = len(_SHARED["x"]) // 2
    with multiprocessing.get_context("fork").Pool(2) as pool:
        parts = pool.map(_predict_part, [(0, half), (half, len(_SHARED["x"]))])
    predictions = np.concatenate(parts)
    write_table(pa.table({"row": np.arange(len(predictions)), "prediction": predictions}),
                out, fmt)
    seconds = time.perf_counter() - started
    _SHARED.clear()
    return seconds, predictions


class PeakMemory:
    """The largest resident set of each worker process (main and children), sampled."""

    def __init__(self, pids: list[int], every: float = 0.2) -> None:
        self._pids = pids
        self._every = every
        self.peak_mib: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for i, pid in enumerate(self._pids):
                try:
                    root = psutil.Process(pid)
                    processes = [("main", root)] + [
                        (f"child{j}", c) for j, c in enumerate(root.children())]
                    for role, process in processes:
                        key = f"worker{i}.{role}"
                        mib = process.memory_info().rss / 2**20
                        self.peak_mib[key] = round(max(self.peak_mib.get(key, 0.0), mib), 1)
                except psutil.Error:
                    continue
            self._stop.wait(self._every)


@contextmanager
def stack(root: Path, store: Path, workers: int) -> Iterator[tuple[str, list[ServiceProcess]]]:
    """Redis, one API and ``workers`` batch workers (one child each), on this machine."""
    redis_port = free_port()
    redis = start_redis(redis_port, root / "redis", appendonly=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERQ_")}
    env.update(INFERQ_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
               INFERQ_MODEL_STORE=str(store), INFERQ_STORAGE_URL=str(root / "storage"),
               INFERQ_AUTH="off")
    port = free_port()
    (root / "api").mkdir()
    api = start_api(env, port, root / "api")
    started = [start_worker(env, root, pool="batch", concurrency=1) for _ in range(workers)]
    try:
        yield f"http://127.0.0.1:{port}", started
    finally:
        for worker in started:
            worker.stop()
        api.stop()
        redis.terminate()
        redis.wait()


def upload(client: httpx.Client, path: Path, fmt: str) -> tuple[str, float]:
    """Upload ``path`` as a dataset; its id and the seconds it took."""

    def chunks() -> Iterator[bytes]:
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                yield block

    started = time.perf_counter()
    response = client.post("/v1/datasets", params={"name": path.name}, content=chunks(),
                           headers={"Content-Type": CONTENT_TYPES[fmt]})
    response.raise_for_status()
    return response.json()["dataset_id"], time.perf_counter() - started


def copy_seconds(path: Path, directory: Path) -> float:
    started = time.perf_counter()
    shutil.copyfile(path, directory / f"copy-{path.name}")
    seconds = time.perf_counter() - started
    (directory / f"copy-{path.name}").unlink()
    return seconds


def run_job(client: httpx.Client, model: str, dataset_id: str, fmt: str) -> dict[str, Any]:
    """Submit a job and wait for its end; the job and the seconds from submit to end."""
    started = time.perf_counter()
    response = client.post(f"/v1/models/{model}/batch-jobs",
                           json={"dataset_id": dataset_id, "output_format": fmt})
    response.raise_for_status()
    job = response.json()
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        job = client.get(f"/v1/batch-jobs/{job['job_id']}", params={"wait": 30}).json()
    return {"job": job, "seconds": time.perf_counter() - started}


def job_predictions(client: httpx.Client, job_id: str, fmt: str, directory: Path) -> np.ndarray:
    path = directory / f"results-{job_id}.{fmt}"
    with client.stream("GET", f"/v1/batch-jobs/{job_id}/results") as response:
        response.raise_for_status()
        with path.open("wb") as f:
            for block in response.iter_bytes():
                f.write(block)
    table = read_table(path, fmt)
    path.unlink()
    order = np.argsort(table["row"].to_numpy())
    return np.asarray(table["prediction"].to_numpy())[order]


def measure(client: httpx.Client, workers: list[ServiceProcess], name: str, fmt: str,
            path: Path, model_path: Path, root: Path, args: argparse.Namespace,
            dataset_id: str | None = None) -> dict[str, Any]:
    """The limit and the job, alternated ``--repeat`` times (a second-long run is at the mercy
    of the machine's drift); medians, every value, and the workers' peak memory."""
    dataset_id = dataset_id or args.datasets[fmt]
    limits, jobs, same = [], [], None
    with PeakMemory([w.pid for w in workers]) as memory:
        for _ in range(args.repeat):
            limit_s, expected = limit(path, fmt, model_path, root / f"limit.{fmt}")
            limits.append(limit_s)
            done = run_job(client, name, dataset_id, fmt)
            job = done["job"]
            if job["status"] != "succeeded":
                return {"model": name, "format": fmt, "status": job["status"], "job": job}
            jobs.append(done["seconds"])
            if same is None:
                got = job_predictions(client, job["job_id"], fmt, root)
                same = bool(len(got) == len(expected)
                            and np.array_equal(got.astype(str), expected.astype(str)))
    job_s, limit_s = statistics.median(jobs), statistics.median(limits)
    return {
        "model": name, "format": fmt, "status": "succeeded",
        "job_seconds": round(job_s, 2), "job_seconds_each": [round(x, 2) for x in jobs],
        "job_rows_per_s": round(args.rows / job_s),
        "limit_seconds": round(limit_s, 2), "limit_seconds_each": [round(x, 2) for x in limits],
        "limit_rows_per_s": round(args.rows / limit_s),
        "fraction_of_limit": round(limit_s / job_s, 3),
        "peak_worker_rss_mib": memory.peak_mib,
        "max_worker_rss_mib": max(memory.peak_mib.values(), default=0.0),
        "predictions_equal_limit": same,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"benchmark": "batch scoring jobs", "machine": machine(),
                              "settings": {"rows": args.rows, "workers": args.workers,
                                           "repeat": args.repeat,
                                           "models": args.models, "formats": args.formats},
                              "runs": [], "uploads": []}
    with tempfile.TemporaryDirectory(prefix="inferq-batch-bench-") as tmp:
        root = Path(tmp)
        paths = models.train(args.out / "models")
        files = write_dataset(root, args.rows)
        store = root / "models"
        for name in args.models:
            import_model(store, paths[name], name)
        with stack(root, store, args.workers) as (url, workers), \
                httpx.Client(base_url=url, timeout=600) as client:
            datasets = args.datasets = {}
            for fmt in args.formats:
                dataset_id, seconds = upload(client, files[fmt], fmt)
                size = files[fmt].stat().st_size / 2**20
                datasets[fmt] = dataset_id
                report["uploads"].append({
                    "format": fmt, "mib": round(size, 1),
                    "upload_mib_per_s": round(size / seconds, 1),
                    "copy_mib_per_s": round(size / copy_seconds(files[fmt], root), 1)})
            for name in args.models:
                for fmt in args.formats:
                    report["runs"].append(
                        measure(client, workers, name, fmt, files[fmt], paths[name], root, args))
    return report


def write_markdown(report: dict[str, Any], path: Path) -> None:
    lines = ["| model | format | job s | job rows/s | limit s | limit rows/s | of limit | "
             "max worker RSS MiB | equal to limit |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["runs"]:
        if r["status"] != "succeeded":
            lines.append(f"| {r['model']} | {r['format']} | job {r['status']} | | | | | | |")
            continue
        each = ", ".join(str(x) for x in r["job_seconds_each"])
        limits = ", ".join(str(x) for x in r["limit_seconds_each"])
        lines.append(f"| {r['model']} | {r['format']} | {r['job_seconds']} ({each}) | "
                     f"{r['job_rows_per_s']:,} | {r['limit_seconds']} ({limits}) | "
                     f"{r['limit_rows_per_s']:,} | {r['fraction_of_limit']:.0%} | "
                     f"{r['max_worker_rss_mib']} | {r['predictions_equal_limit']} |")
    lines += ["", "| format | MiB | upload MiB/s | plain copy MiB/s |", "|---|---|---|---|"]
    for u in report["uploads"]:
        lines.append(f"| {u['format']} | {u['mib']} | {u['upload_mib_per_s']} | "
                     f"{u['copy_mib_per_s']} |")
    path.write_text("\n".join(lines) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2, help="batch workers")
    parser.add_argument("--models", type=lambda s: s.split(","), default=["forest", "logistic"])
    parser.add_argument("--formats", type=lambda s: s.split(","), default=["parquet", "csv"])
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of the limit and the job, alternated; medians reported")
    parser.add_argument("--out", type=Path, default=Path("benchmark-results/batch"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    write_results(args.out, run(args), write_markdown)


if __name__ == "__main__":
    main()
