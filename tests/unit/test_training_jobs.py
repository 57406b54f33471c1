"""Training job records: the scripts that count fold fits once, push the final task once,
and keep a registering job from being cancelled, on a real Redis; choosing the best
candidate; the promotion bar."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import orjson
import pytest
import redis

from services.common import jobs, keys
from services.common import training_jobs as tj
from services.common.catalog import Feature
from services.common.training_spec import TrainingSpec
from services.worker.training import pick_best

JOB = "job-1"


@pytest.fixture
def client(clean_redis: redis.Redis) -> redis.Redis:
    return clean_redis


def submit(client: redis.Redis, candidates: int, folds: int) -> list[tj.FitTask]:
    record = tj.new_record(
        model="churn", dataset_id="d1", dataset_sha256="0" * 64, queue="training",
        spec={"estimator": "Ridge"}, candidates=candidates, folds=folds, alias=None,
        promote_if=None, trace_id=None, now=1000.0)
    tasks = tj.fold_tasks(JOB, "churn", candidates, folds, 1000.0)
    client.eval(jobs.SUBMIT_SCRIPT, 3, keys.job_key(JOB), keys.JOBS_INDEX, "training", 60,
                orjson.dumps(record), "1000.0", JOB, *(t.task_id for t in tasks))
    return tasks


def start(client: redis.Redis, task: tj.FitTask) -> list[Any]:
    return list(client.eval(jobs.START_SCRIPT, 3, keys.job_key(JOB), keys.job_done_key(JOB),
                            keys.job_attempts_key(JOB), "1001.0", task.name))


def fold_done(client: redis.Redis, task: tj.FitTask, then: str = "final") -> list[int]:
    status, added, completed = client.eval(
        tj.FOLD_DONE_SCRIPT, 4, keys.job_key(JOB), keys.job_done_key(JOB),
        keys.training_folds_key(JOB), "training", task.name,
        orjson.dumps({"candidate": task.candidate, "fold": task.fold}), "1002.0", then)
    assert status == b"running"
    return [int(added), int(completed)]


def test_a_single_holdout_fit_is_the_final_task_alone(client: redis.Redis) -> None:
    [task] = submit(client, 1, 1)
    assert task.final and task.task_id == f"{JOB}-final"
    assert client.lrange("training", 0, -1) == [task.task_id.encode()]
    assert client.sismember(keys.JOBS_ACTIVE, JOB)


def test_folds_count_once_and_the_last_pushes_the_final_task_once(client: redis.Redis) -> None:
    tasks = submit(client, 2, 2)
    assert [t.name for t in tasks] == ["0:0", "0:1", "1:0", "1:1"]
    client.delete("training")
    assert start(client, tasks[0])[:2] == [b"running", 1]
    assert client.hget(keys.job_key(JOB), "status") == b"running"
    assert fold_done(client, tasks[0]) == [1, 0]
    assert fold_done(client, tasks[0]) == [0, 0]  # Redelivered after its worker died.
    assert fold_done(client, tasks[1]) == [1, 0]
    assert fold_done(client, tasks[2]) == [1, 0]
    assert client.llen("training") == 0
    assert fold_done(client, tasks[3]) == [1, 1]
    assert fold_done(client, tasks[3]) == [0, 0]
    assert client.lrange("training", 0, -1) == [b"final"]
    record = tj.strings(client.hgetall(keys.job_key(JOB)))
    assert record["tasks_done"] == "4" and float(record["progress"]) == pytest.approx(0.85)
    assert client.hlen(keys.training_folds_key(JOB)) == 4


def test_one_candidate_cross_validated_refits_beside_its_folds(client: redis.Redis) -> None:
    tasks = submit(client, 1, 3)
    assert [t.name for t in tasks] == ["refit", "0:0", "0:1", "0:2"]
    refit = tasks[0]
    assert refit.refit and not refit.final and refit.task_id == f"{JOB}-refit"
    assert tj.FitTask.from_message(refit.message_kwargs()) == refit
    # The refit is taken first (consumers pop the other end of the list): the longest fit.
    assert client.rpop("training") == refit.task_id.encode()
    client.delete("training")
    record = tj.strings(client.hgetall(keys.job_key(JOB)))
    assert (record["tasks_total"], record["refit"]) == ("4", "1")
    start(client, tasks[1])
    for task in tasks[1:]:
        assert fold_done(client, task) == [1, 0]  # The refit is not done: no final task.
    assert client.llen("training") == 0
    assert fold_done(client, refit) == [1, 1]
    assert client.lrange("training", 0, -1) == [b"final"]
    # A grid keeps its final fit after the folds; a holdout fit has no refit.
    assert "refit" not in tj.new_record(
        model="m", dataset_id="d", dataset_sha256="", queue="training", spec={"estimator": "R"},
        candidates=2, folds=3, alias=None, promote_if=None, trace_id=None, now=1.0)
    assert not any(t.refit for t in tj.fold_tasks(JOB, "m", 2, 3, 1.0))
    assert not any(t.refit for t in tj.fold_tasks(JOB, "m", 1, 1, 1.0))


def test_progress_never_goes_back(client: redis.Redis) -> None:
    [task] = submit(client, 1, 1)
    start(client, task)
    for phase, progress in (("loading", "0.3"), ("fitting", "0.1")):
        assert client.eval(tj.PROGRESS_SCRIPT, 1, keys.job_key(JOB), phase, progress,
                           "1002.0", "fit_pid", "42") == b"running"
    job = tj.to_public(JOB, client.hgetall(keys.job_key(JOB)))
    assert (job["phase"], job["progress"]) == ("fitting", 0.3)
    assert client.hget(keys.job_key(JOB), "fit_pid") == b"42"


def test_a_cancelled_job_counts_no_fold_and_registers_nothing(client: redis.Redis) -> None:
    tasks = submit(client, 1, 2)
    start(client, tasks[0])
    cancelled = client.eval(tj.CANCEL_SCRIPT, 2, *tj.job_keys(JOB), "1003.0", 60, JOB)
    assert cancelled == [1, b"cancelled"]
    assert not client.sismember(keys.JOBS_ACTIVE, JOB)
    assert start(client, tasks[1])[0] == b"cancelled"  # A later task skips.
    status, added, _ = client.eval(
        tj.FOLD_DONE_SCRIPT, 4, keys.job_key(JOB), keys.job_done_key(JOB),
        keys.training_folds_key(JOB), "training", "0:0", "{}", "1004.0", "final")
    assert (status, added) == (b"cancelled", 0)
    assert client.eval(tj.REGISTER_SCRIPT, 1, keys.job_key(JOB), "1005.0") == b"cancelled"


def test_a_registering_job_cannot_be_cancelled_and_succeeds(client: redis.Redis) -> None:
    [task] = submit(client, 1, 1)
    start(client, task)
    assert client.eval(tj.REGISTER_SCRIPT, 1, keys.job_key(JOB), "1002.0") == b"running"
    assert client.eval(tj.CANCEL_SCRIPT, 2, *tj.job_keys(JOB), "1003.0", 60, JOB) == \
        [0, b"registering"]
    # The phase no longer moves back.
    assert client.eval(tj.PROGRESS_SCRIPT, 1, keys.job_key(JOB), "fitting", "0.5",
                       "1003.0") == b"running"
    assert client.hget(keys.job_key(JOB), "phase") == b"registering"
    assert client.hget(keys.job_key(JOB), "progress") == b"0.95"
    fields = {"version": "3", "metrics": '{"r2": 0.9}', "phase": "done", "progress": "1"}
    assert client.eval(tj.SUCCEED_SCRIPT, 3, *tj.job_keys(JOB), keys.TRAINING_METRICS,
                       "1004.0", 60, JOB, orjson.dumps(fields), "churn",
                       fields["metrics"]) == [b"succeeded", 1]
    job = tj.to_public(JOB, client.hgetall(keys.job_key(JOB)))
    assert (job["status"], job["version"], job["metrics"]) == ("succeeded", 3, {"r2": 0.9})
    assert client.hget(keys.TRAINING_METRICS, "churn") == b'{"r2": 0.9}'


def spec(metric: str) -> TrainingSpec:
    return TrainingSpec(estimator="Ridge", task="regression", hyperparameters={},
                        features=[Feature(name="x")], target="y", validation={"cv": 2},
                        grid={"alpha": [1, 2]}, metric=metric, seed=0)


@pytest.mark.parametrize(("metric", "best"), [("r2", 1), ("rmse", 0)])
def test_the_best_candidate_is_the_best_mean_by_the_metrics_direction(
    metric: str, best: int,
) -> None:
    results = [{"candidate": c, "fold": f, "metrics": {"r2": r2, "rmse": rmse}}
               for c, f, r2, rmse in ((0, 1, 0.5, 1.0), (0, 0, 0.7, 2.0),
                                      (1, 0, 0.9, 3.0), (1, 1, 0.8, 2.0))]
    chosen, folds = pick_best(spec(metric), [{"alpha": 1}, {"alpha": 2}], results)
    assert chosen == best
    assert [f[metric] for f in folds] == [r["metrics"][metric] for r in sorted(
        (r for r in results if r["candidate"] == best), key=lambda r: r["fold"])]
    assert pick_best(spec(metric), [{}], []) == (0, [])


def test_the_promotion_bar() -> None:
    assert tj.promotes(None, {"r2": 0.1})
    assert tj.promotes({"metric": "r2", "min": 0.5}, {"r2": 0.5})
    assert not tj.promotes({"metric": "r2", "min": 0.5}, {"r2": 0.49})
    assert tj.promotes({"metric": "rmse", "max": 2}, {"rmse": 1.5})
    assert not tj.promotes({"metric": "rmse", "max": 2}, {"rmse": 2.5})
    assert not tj.promotes({"metric": "f1", "min": 0}, {"r2": 1.0})


def test_the_api_checks_a_spec_without_ml_or_scikit_learn() -> None:
    """The API's training service imports nothing of ml/ nor scikit-learn, and its checks
    run where neither can be imported."""
    script = """
import sys
sys.modules["sklearn"] = None
sys.modules["ml"] = None
from services.api.errors import InvalidTrainingSpec
from services.api.training_service import _check_spec
from services.common.datasets import Column
columns = [Column("a", "float64"), Column("y", "int64")]
spec = _check_spec({"estimator": "RandomForestClassifier", "target_column": "y",
                    "hyperparameters": {"max_depth": 4}}, columns)
assert spec.hyperparameters == {"max_depth": 4}, spec
try:
    _check_spec({"estimator": "RandomForestClassifier", "target_column": "y",
                 "hyperparameters": {"max_depth": 0}}, columns)
except InvalidTrainingSpec as exc:
    print(exc.details["field"], str(exc))
loaded = sorted(m for m, module in sys.modules.items()
                if module is not None and m.split(".")[0] in ("ml", "sklearn", "scipy"))
print(loaded)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "hyperparameters.max_depth hyperparameters.max_depth: must be an int in the range "
        "[1, inf) or None; got 0", "[]"]


def split(client: redis.Redis, parts: list[tuple[int, int]]) -> str:
    messages = [tj.FitTask(JOB, "churn", 1000.0, part=k, trees=t).task_id
                for k, t in enumerate(parts)]
    return str(client.eval(tj.SPLIT_SCRIPT, 2, keys.job_key(JOB), "training", "1003.0",
                           len(parts), 1, "fitting on every row in 2 parts", *messages),
               "ascii")


def test_a_split_pushes_its_parts_once_and_the_last_part_pushes_the_join(
    client: redis.Redis,
) -> None:
    tasks = submit(client, 2, 2)
    client.delete("training")
    start(client, tasks[0])
    for task in tasks:
        fold_done(client, task)
    assert client.lrange("training", 0, -1) == [b"final"]
    client.delete("training")
    assert split(client, [(0, 50), (50, 100)]) == "running"
    assert split(client, [(0, 50), (50, 100)]) == "running"  # The final task ran again.
    assert client.lrange("training", 0, -1) == [f"{JOB}-part1".encode(), f"{JOB}-part0".encode()]
    record = tj.strings(client.hgetall(keys.job_key(JOB)))
    assert (record["parts"], record["best"], record["tasks_total"]) == ("2", "1", "6")
    assert record["phase"] == "fitting on every row in 2 parts"
    client.delete("training")
    parts = [tj.FitTask(JOB, "churn", 1000.0, part=k, trees=t)
             for k, t in enumerate([(0, 50), (50, 100)])]
    join = tj.FitTask(JOB, "churn", 1000.0, join=True)

    def part_done(task: tj.FitTask) -> list[int]:
        return fold_done(client, task, join.task_id)

    assert part_done(parts[0]) == [1, 0]
    # Two more tasks than the folds: progress stays where the folds left it.
    assert float(client.hget(keys.job_key(JOB), "progress") or 0) == pytest.approx(0.85)
    assert part_done(parts[0]) == [0, 0]
    assert part_done(parts[1]) == [1, 1]
    assert client.lrange("training", 0, -1) == [f"{JOB}-join".encode()]
    # The job's final task found a cancelled job: a split then pushes nothing.
    client.hset(keys.job_key(JOB), "status", "cancelled")
    client.hdel(keys.job_key(JOB), "parts")
    assert split(client, [(0, 50), (50, 100)]) == "cancelled"
    assert client.llen("training") == 1


def test_part_and_join_tasks_round_trip_through_their_messages() -> None:
    part = tj.FitTask(JOB, "churn", 1000.0, part=1, trees=(50, 100))
    join = tj.FitTask(JOB, "churn", 1000.0, join=True)
    assert (part.name, part.task_id, part.final) == ("part:1", f"{JOB}-part1", False)
    assert (join.name, join.task_id, join.final) == ("join", f"{JOB}-join", False)
    for task in (part, join):
        assert tj.FitTask.from_message(orjson.loads(orjson.dumps(task.message_kwargs()))) \
            == task
