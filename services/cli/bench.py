"""``inferq bench``: the throughput benchmark suite of a source checkout's ``benchmarks/``."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def add_bench_parser(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser(
        "bench", help="run inferq, the classic Celery design and a sync endpoint side by side "
                      "(and on request Ray Serve and BentoML)"
    )
    bench.add_argument("--systems", default="inferq,classic,sync",
                       help="comma-separated: inferq, classic, sync, ray (Ray Serve), bentoml; "
                            "the last two are installed into virtualenvs of their own the "
                            "first time (--peers-venvs)")
    bench.add_argument("--peers-venvs", type=Path, default=None,
                       help="where the Ray Serve and BentoML virtualenvs are installed and "
                            "reused (default ~/.cache/inferq-bench/venvs)")
    bench.add_argument("--workloads", default="forest,logistic",
                       help="comma-separated models: forest, logistic")
    bench.add_argument("--concurrency", default="1,8,32,128",
                       help="comma-separated closed-loop concurrencies")
    bench.add_argument("--duration", type=float, default=10.0, help="seconds measured per run")
    bench.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    bench.add_argument("--api-replicas", type=int, default=2,
                       help="inferq API processes (the chart runs two)")
    bench.add_argument("--workers", type=int, default=1,
                       help="inferq inference workers, one pool child each")
    bench.add_argument("--auth", choices=("on", "off"), default="on",
                       help="inferq's API keys and rate limits (on: every request carries a "
                            "key, as behind the chart)")
    bench.add_argument("--slices", type=int, default=6,
                       help="at concurrency 1 all systems run at once and take this many "
                            "turns each (0: one after the other)")
    bench.add_argument("--soak", type=float, default=0.0,
                       help="also load inferq this many seconds and record its memory")
    bench.add_argument("--observability", action="store_true",
                       help="instead: inferq's throughput and p50 with metrics and tracing "
                            "on vs off (benchmarks/observability.py)")
    bench.add_argument("--batch", action="store_true",
                       help="instead: batch scoring jobs of --rows rows (Parquet and CSV) on "
                            "two batch workers next to a plain two-process script "
                            "(benchmarks/batch.py)")
    bench.add_argument("--training", action="store_true",
                       help="instead: training jobs (a random forest's cross-validation and "
                            "a grid search) on 1, then 2 training workers next to "
                            "scikit-learn's cross_validate and GridSearchCV "
                            "(benchmarks/training.py)")
    bench.add_argument("--auth-cost", action="store_true",
                       help="instead: the API's CPU seconds per prediction with "
                            "authentication and rate limits on vs off "
                            "(benchmarks/auth_cost.py)")
    bench.add_argument("--pairs", type=int, default=6,
                       help="slices of each setting of --auth-cost, alternating")
    bench.add_argument("--training-workers", default="1,2",
                       help="comma-separated numbers of training workers, run in turn")
    bench.add_argument("--cv", type=int, default=5,
                       help="folds of the training benchmark's cross-validation job")
    bench.add_argument("--grid-cv", type=int, default=5,
                       help="folds of the training benchmark's grid search")
    bench.add_argument("--rows", type=int, default=None,
                       help="rows of the batch (default 1,000,000) or training (default "
                            "100,000) benchmark's dataset")
    bench.add_argument("--out", type=Path, default=Path("benchmark-results"),
                       help="directory for results.json, results.md and chart.png")


def run_bench(args: argparse.Namespace) -> int:
    script = BENCHMARKS / ("observability.py" if args.observability else "throughput.py")
    if not script.exists():
        sys.stderr.write("inferq bench runs from a source checkout: no benchmarks/ folder "
                         f"at {BENCHMARKS}\n")
        return 2
    if args.observability:
        return subprocess.call([sys.executable, str(script), "--out", str(args.out)])
    if args.training:
        return subprocess.call(training_command(args))
    if args.auth_cost:
        return subprocess.call(auth_cost_command(args))
    if args.batch:
        return subprocess.call([sys.executable, str(BENCHMARKS / "batch.py"),
                                "--rows", str(args.rows or 1_000_000), "--models",
                                args.workloads, "--out", str(args.out / "batch")])
    return subprocess.call(throughput_command(args))


def throughput_command(args: argparse.Namespace) -> list[str]:
    """The command line of ``benchmarks/throughput.py``, the default of ``inferq bench``."""
    command = [
        sys.executable, str(BENCHMARKS / "throughput.py"),
        "--systems", args.systems, "--models", args.workloads,
        "--concurrency", args.concurrency, "--duration", str(args.duration),
        "--warmup", str(args.warmup), "--slices", str(args.slices), "--soak", str(args.soak),
        "--inferq-api-replicas", str(args.api_replicas), "--inferq-workers", str(args.workers),
        "--inferq-auth", args.auth, "--out", str(args.out),
    ]
    if args.peers_venvs is not None:
        command += ["--peers-venvs", str(args.peers_venvs)]
    return command


def training_command(args: argparse.Namespace) -> list[str]:
    """The command line of ``benchmarks/training.py`` for ``inferq bench --training``."""
    command = [sys.executable, str(BENCHMARKS / "training.py"),
               "--workers", args.training_workers, "--cv", str(args.cv),
               "--grid-cv", str(args.grid_cv), "--out", str(args.out / "training")]
    if args.rows is not None:
        command += ["--rows", str(args.rows)]
    return command


def auth_cost_command(args: argparse.Namespace) -> list[str]:
    """The command line of ``benchmarks/auth_cost.py`` for ``inferq bench --auth-cost``: the
    first of ``--concurrency``'s values, ``--duration`` and ``--warmup`` a slice."""
    return [sys.executable, str(BENCHMARKS / "auth_cost.py"),
            "--concurrency", args.concurrency.split(",")[0], "--duration", str(args.duration),
            "--warmup", str(args.warmup), "--pairs", str(args.pairs),
            "--out", str(args.out / "auth-cost")]
