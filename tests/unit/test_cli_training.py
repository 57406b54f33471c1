"""``inferq train``: the request its arguments make, and how a followed job reads."""

from __future__ import annotations

import io

import pytest

from services.cli.errors import CliError
from services.cli.main import _parser as build_parser
from services.cli.training import PhaseProgress, training_body


def body(*argv: str) -> dict[str, object]:
    return training_body(build_parser().parse_args(["train", "churn", *argv]))


def test_params_and_grid_values_are_json_when_they_parse_else_text() -> None:
    assert body("--dataset", "d1", "--target", "y", "--estimator", "RandomForestClassifier",
                "--param", "n_estimators=50", "--param", "max_features=sqrt",
                "--param", "max_depth=null", "--grid", "min_samples_leaf=1,5",
                "--grid", "criterion=gini,entropy", "--metric", "f1", "--cv", "5",
                "--seed", "7", "--features", "a,b", "--alias", "production",
                "--promote-if", "f1>=0.8") == {
        "dataset_id": "d1", "target_column": "y", "estimator": "RandomForestClassifier",
        "hyperparameters": {"n_estimators": 50, "max_features": "sqrt", "max_depth": None},
        "search": {"grid": {"min_samples_leaf": [1, 5], "criterion": ["gini", "entropy"]},
                   "metric": "f1"},
        "validation": {"cv": 5}, "seed": 7, "feature_columns": ["a", "b"],
        "alias": "production", "promote_if": {"metric": "f1", "min": 0.8},
    }


def test_a_lower_is_better_bar_is_a_max_and_a_holdout_a_share() -> None:
    made = body("--dataset", "d1", "--target", "y", "--estimator", "Ridge",
                "--holdout", "0.3", "--promote-if", "rmse <= 2.5")
    assert made["validation"] == {"holdout": 0.3}
    assert made["promote_if"] == {"metric": "rmse", "max": 2.5}
    assert "search" not in made and "seed" not in made


@pytest.mark.parametrize("argv", [["--promote-if", "f1>high"], ["--promote-if", "f1>=x"],
                                  ["--param", "n_estimators"], ["--grid", "=1,2"]])
def test_a_malformed_argument_says_how_to_write_it(argv: list[str]) -> None:
    with pytest.raises(CliError, match="write"):
        body("--dataset", "d1", "--target", "y", "--estimator", "Ridge", *argv)


def test_cv_and_holdout_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "m", "--dataset", "d", "--target", "y",
                                   "--estimator", "Ridge", "--cv", "3", "--holdout", "0.2"])


def test_the_phase_and_progress_show_as_a_bar_or_as_lines() -> None:
    jobs = [{"job_id": "j1", "status": "queued", "phase": "queued", "progress": 0.0},
            {"job_id": "j1", "status": "running", "phase": "fitting fold 2 of 3",
             "progress": 0.5},
            {"job_id": "j1", "status": "succeeded", "phase": "done", "progress": 1.0}]
    tty = io.StringIO()
    bar = PhaseProgress(tty, tty=True)
    for job in jobs:
        bar.show(job)
    bar.close()
    frames = tty.getvalue().split("\r")[1:]
    assert frames[1].startswith("[" + "#" * 15 + "." * 15 + "]  50%  fitting fold 2 of 3")
    assert tty.getvalue().endswith("\n")
    log = io.StringIO()
    lines = PhaseProgress(log, tty=False)
    for job in [jobs[0], jobs[0], *jobs[1:]]:
        lines.show(job)
    assert log.getvalue().splitlines() == [
        "job j1: queued, queued, 0%", "job j1: running, fitting fold 2 of 3, 50%",
        "job j1: succeeded, done, 100%"]
