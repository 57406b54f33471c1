"""``inferq bench --training`` and ``benchmarks/training.py``: the arguments and the jobs
they make; the run itself is in docs/performance.md."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import ModuleType

import pytest
from bench_scripts import BENCHMARKS, load_script

from services.cli.bench import training_command
from services.cli.main import _parser

SCRIPT = BENCHMARKS / "training.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("training")


def test_defaults_are_the_documented_run(bench: ModuleType) -> None:
    args = bench.parse_args([])
    assert (args.rows, args.features, args.trees) == (100_000, 20, 100)
    assert (args.cv, args.candidates, args.grid_cv) == (5, 8, 5)
    assert args.workers == [1, 2]
    assert args.jobs == ["cv", "grid"]
    assert args.baseline_jobs == 2 and not args.skip_baseline
    assert args.fit_parts is None  # As many as training workers, as the chart sets it.


def test_options_are_read(bench: ModuleType) -> None:
    args = bench.parse_args(["--rows", "5000", "--workers", "2,1,3", "--grid-cv", "2",
                             "--candidates", "6", "--jobs", "grid", "--skip-baseline",
                             "--fit-parts", "3"])
    assert (args.rows, args.workers, args.grid_cv, args.candidates) == (5000, [2, 1, 3], 2, 6)
    assert args.jobs == ["grid"] and args.skip_baseline and args.fit_parts == 3


@pytest.mark.parametrize(("argv", "message"), [
    (["--workers", "0"], "every count must be 1 or more"),
    (["--workers", "1,two"], "not a comma-separated list of numbers"),
    (["--workers", ""], "not a comma-separated list of numbers"),
    (["--cv", "1"], "inferq takes 2 to 20"),
    (["--grid-cv", "21"], "inferq takes 2 to 20"),
    (["--rows", "0"], "must be 1 or more"),
    (["--jobs", "cv,refit"], "unknown jobs ['refit']"),
    (["--candidates", "11"], "a grid of that many cannot be built"),
    (["--candidates", "25"], "a grid of that many cannot be built"),
])
def test_bad_arguments_exit_with_the_reason(
    bench: ModuleType, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        bench.parse_args(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("candidates", [1, 2, 3, 4, 6, 7, 8, 9, 12, 16, 24])
def test_the_grid_has_exactly_the_candidates_asked(bench: ModuleType, candidates: int) -> None:
    grid = bench.grid(candidates)
    combinations = list(itertools.product(*grid.values()))
    assert len(combinations) == len(set(combinations)) == candidates


def test_the_default_grid_is_four_depths_by_two_leaf_sizes(bench: ModuleType) -> None:
    assert bench.grid(8) == {"max_depth": [None, 24, 16, 12], "min_samples_leaf": [1, 4]}


def test_the_jobs_are_the_contracts_request_bodies(bench: ModuleType) -> None:
    args = bench.parse_args(["--cv", "4", "--grid-cv", "3", "--trees", "50"])
    bodies = bench.job_bodies(args, "d-1")
    common = {"dataset_id": "d-1", "target_column": "y", "seed": 0,
              "estimator": "RandomForestClassifier", "hyperparameters": {"n_estimators": 50}}
    assert bodies["cv"] == {**common, "validation": {"cv": 4}}
    assert bodies["grid"] == {**common, "validation": {"cv": 3},
                              "search": {"grid": bench.grid(8), "metric": "accuracy"}}


def test_the_dataset_is_seeded_numeric_and_binary(bench: ModuleType, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    x, y = bench.dataset(500, 20)
    again, _ = bench.dataset(500, 20)
    assert x.shape == (500, 20) and (x == again).all()
    assert set(y.tolist()) == {0, 1}
    names = bench.write_parquet(x, y, tmp_path / "d.parquet")
    table = pq.read_table(tmp_path / "d.parquet")
    assert table.column_names == [*names, "y"] and table.num_rows == 500


def test_inferq_bench_training_runs_the_script_with_its_options() -> None:
    args = _parser().parse_args(["bench", "--training", "--training-workers", "1,2,4",
                                 "--grid-cv", "2", "--rows", "5000", "--out", "results"])
    command = training_command(args)
    assert command[1] == str(SCRIPT)
    assert command[2:] == ["--workers", "1,2,4", "--cv", "5", "--grid-cv", "2",
                           "--out", str(Path("results") / "training"), "--rows", "5000"]


def test_without_rows_each_benchmark_keeps_its_own_default(bench: ModuleType) -> None:
    args = _parser().parse_args(["bench", "--training"])
    command = training_command(args)
    assert "--rows" not in command
    assert bench.parse_args(command[2:]).rows == 100_000


def test_the_table_shows_each_run_and_a_job_that_did_not_finish(
    bench: ModuleType, tmp_path: Path
) -> None:
    args = bench.parse_args(["--grid-cv", "2"])
    report = {
        "settings": {"trees": 100, "cv": 5, "candidates": 8, "grid_cv": args.grid_cv},
        "inferq": [
            {"job": "cv", "workers": 1, "status": "succeeded", "seconds": 240.5,
             "metrics": {"accuracy": 0.912345, "roc_auc": 0.97}},
            {"job": "grid", "workers": 2, "status": "timed_out", "job_id": "j"},
        ],
        "baseline": {"cv": {"call": "cross_validate(n_jobs=2) + fit on every row",
                            "seconds": 200.0, "metrics": {"accuracy": 0.9123, "roc_auc": 0.97}}},
    }
    bench.write_markdown(report, tmp_path / "results.md")
    lines = (tmp_path / "results.md").read_text().splitlines()
    assert "| 100 trees, cv 5 | inferq, 1 training worker | 240.5 | 0.9123 | 0.97 |" in lines
    assert "| grid of 8, cv 2 | inferq, 2 training workers | timed_out |  |  |" in lines
    assert ("| 100 trees, cv 5 | scikit-learn, cross_validate(n_jobs=2) + fit on every row | "
            "200.0 | 0.9123 | 0.97 |") in lines
