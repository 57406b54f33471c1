"""Training job records in Redis, the messages of their tasks, and the scripts that move them.

A training job is a hash like a batch job's (``keys.job_key``) with ``kind`` ``training``,
in the same jobs index and active set, so the job gauges and the sweep count it; its
tenant's index of training jobs (``keys.tenant_jobs_index``) lists it. Its work is a fan-out
on the training queue: one fold task per (candidate, fold) when the job cross-validates or
searches a grid, then one final task; a job with neither is its final task alone. A single
candidate cross-validated does not wait for its folds to fit the model it registers: its
refit task (on every row) is queued with the folds, keeps its fitted pipeline in storage
(``refit_key``; the record's ``refit`` says so) and is counted as one more of them. The
chord is done with Redis, as batch chunks are counted: a fold (or refit) task stores its
result and joins the job's done set in the script that acknowledges its message, and the
call that completes the set pushes the final task's message, in the same script; after a
refit the final task only registers. A fold run again after its worker died is counted once
and pushes nothing.

A forest's fit on every row after a cross-validation can be split by trees
(``ml.training.tree_parts``, up to ``INFERQ_TRAINING_FIT_PARTS``): the final task then picks
the best candidate, records it (``best``, ``parts``) and pushes one part task per range of
trees with ``SPLIT_SCRIPT``, in the round trip that acknowledges it. Each part keeps its
pipeline in storage (``part_key``) and is counted like a fold; the last pushes the join
task, which joins the parts into one forest (the one a single fit grows) and registers it.

States: queued -> running -> succeeded | failed, or queued | running -> cancelled. While
running, ``phase`` says what happens (loading, fitting ..., evaluating, registering) and
``progress`` how far (0 to 1). A job whose final task moved it to ``registering``
(``REGISTER_SCRIPT``) can no longer be cancelled; one cancelled before registers nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from services.common import keys
from services.common.jobs import FINISH_FUNCTION
from services.common.records import ALLOW_OOM, HSET_JSON, decoded, rfc3339

KIND = "training"

#: The share of ``progress`` the fold tasks fill; loading comes before, the final fit after.
FOLDS_SHARE = 0.8

# KEYS: record; ARGV: phase, progress, now, then field, value pairs. Moves a running job's
# phase (never back from registering) and its progress (never backwards: fold tasks running
# side by side report what they saw). Returns the job's status.
PROGRESS_SCRIPT = ALLOW_OOM + """
local found = redis.call('HMGET', KEYS[1], 'status', 'phase', 'progress')
if not found[1] then return 'missing' end
if found[1] ~= 'running' or found[2] == 'registering' then return found[1] end
local progress = math.max(tonumber(found[3] or '0'), tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'phase', ARGV[1], 'progress', tostring(progress),
           'progressed_at', ARGV[3])
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
return 'running'
"""

# KEYS: record, done set, fold results, queue; ARGV: fold ("<candidate>:<fold>"), its
# result (JSON), now, the next task's message. Counts a running job's fold (or part) once;
# the call that counts the last one pushes the next task: the final task after the folds,
# the join task after the parts. Progress never moves back (a split adds tasks). Returns
# {status, added, completed}.
FOLD_DONE_SCRIPT = ALLOW_OOM + """
local found = redis.call('HMGET', KEYS[1], 'status', 'tasks_total', 'progress')
local status = found[1]
if not status then return {'missing', 0, 0} end
if status ~= 'running' then return {status, 0, 0} end
local added = redis.call('SADD', KEYS[2], ARGV[1])
if added == 0 then return {status, 0, 0} end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
local done = redis.call('HINCRBY', KEYS[1], 'tasks_done', 1)
local total = tonumber(found[2])
local share = """ + repr(FOLDS_SHARE) + """
local progress = math.max(tonumber(found[3] or '0'), 0.05 + share * done / total)
redis.call('HSET', KEYS[1], 'progress', tostring(progress), 'progressed_at', ARGV[3])
local ttl = redis.call('TTL', KEYS[1])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
end
if done < total then return {status, 1, 0} end
redis.call('LPUSH', KEYS[4], ARGV[4])
return {status, 1, 1}
"""

# KEYS: record, queue; ARGV: now, parts, best candidate, phase, then the parts' messages.
# Splits a running job's fit on every row into its part tasks, once: a final task run again
# after its worker died finds the job split and pushes nothing. Returns the job's status.
SPLIT_SCRIPT = ALLOW_OOM + """
local found = redis.call('HMGET', KEYS[1], 'status', 'parts')
if not found[1] then return 'missing' end
if found[1] ~= 'running' or found[2] then return found[1] end
redis.call('HSET', KEYS[1], 'parts', ARGV[2], 'best', ARGV[3], 'parts_started_at', ARGV[1],
           'phase', ARGV[4], 'progressed_at', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'tasks_total', tonumber(ARGV[2]))
for i = 5, #ARGV do
  redis.call('LPUSH', KEYS[2], ARGV[i])
end
return 'running'
"""

# KEYS: record; ARGV: now. Moves a running job to its registering phase, after which it can
# no longer be cancelled. Returns the status it found: ``running`` when it moved.
REGISTER_SCRIPT = ALLOW_OOM + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status ~= 'running' then return status end
redis.call('HSET', KEYS[1], 'phase', 'registering', 'progress', '0.95', 'progressed_at', ARGV[1])
return 'running'
"""

# KEYS: record, done set, the latest metrics per model; ARGV: now, ttl, job id, the
# outcome's fields (a JSON object of strings), model, overall metrics (JSON). Ends a running
# job as succeeded. Returns {status, ended}.
SUCCEED_SCRIPT = ALLOW_OOM + HSET_JSON + FINISH_FUNCTION + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing', 0} end
if status ~= 'running' then return {status, 0} end
hset_json(ARGV[4])
redis.call('HSET', KEYS[3], ARGV[5], ARGV[6])
finish('succeeded', ARGV[1], ARGV[2], ARGV[3])
return {'succeeded', 1}
"""

# KEYS: record, done set; ARGV: now, ttl, job id. Returns {cancelled now?, status}; a job
# registering its version answers ``registering``. Tasks not yet started find the job
# cancelled and skip; a running fit is stopped by its task, which watches the status.
CANCEL_SCRIPT = ALLOW_OOM + FINISH_FUNCTION + """
local found = redis.call('HMGET', KEYS[1], 'status', 'phase', 'kind')
local status = found[1]
if not status or found[3] ~= '""" + KIND + """' then return {0, 'missing'} end
if status ~= 'queued' and status ~= 'running' then return {0, status} end
if found[2] == 'registering' then return {0, 'registering'} end
finish('cancelled', ARGV[1], ARGV[2], ARGV[3])
return {1, 'cancelled'}
"""


@dataclass(frozen=True)
class FitTask:
    """One message of the training queue: a fold task (``candidate`` and ``fold`` set), a
    refit task (``refit``: the single candidate on every row, beside its folds), a part
    task (``part`` and its ``trees``: some of the best candidate's trees, on every row), the
    join task (``join``: the parts joined and registered), or the job's final task (none of
    them)."""

    job_id: str
    model: str
    submitted_at: float
    candidate: int | None = None
    fold: int | None = None
    refit: bool = False
    part: int | None = None
    trees: tuple[int, int] | None = None
    join: bool = False

    @classmethod
    def from_message(cls, kwargs: Mapping[str, Any]) -> FitTask:
        candidate, fold = kwargs.get("candidate"), kwargs.get("fold")
        part, trees = kwargs.get("part"), kwargs.get("trees")
        return cls(job_id=kwargs["job_id"], model=kwargs["model"],
                   submitted_at=float(kwargs.get("submitted_at", 0.0)),
                   candidate=None if candidate is None else int(candidate),
                   fold=None if fold is None else int(fold),
                   refit=bool(kwargs.get("refit", False)),
                   part=None if part is None else int(part),
                   trees=None if trees is None else (int(trees[0]), int(trees[1])),
                   join=bool(kwargs.get("join", False)))

    def message_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"job_id": self.job_id, "model": self.model,
                                  "submitted_at": self.submitted_at}
        if self.candidate is not None:
            kwargs["candidate"], kwargs["fold"] = self.candidate, self.fold
        if self.refit:
            kwargs["refit"] = True
        if self.part is not None:
            kwargs["part"], kwargs["trees"] = self.part, list(self.trees or (0, 0))
        if self.join:
            kwargs["join"] = True
        return kwargs

    @property
    def final(self) -> bool:
        return (self.candidate is None and not self.refit and self.part is None
                and not self.join)

    @property
    def name(self) -> str:
        """The task's name in the job's done set and attempts: ``<candidate>:<fold>``,
        ``refit``, ``part:<part>``, ``join`` or ``final``."""
        if self.refit:
            return "refit"
        if self.part is not None:
            return f"part:{self.part}"
        if self.join:
            return "join"
        return "final" if self.final else f"{self.candidate}:{self.fold}"

    @property
    def task_id(self) -> str:
        if self.refit or self.join:
            return f"{self.job_id}-{self.name}"
        if self.part is not None:
            return f"{self.job_id}-part{self.part}"
        return f"{self.job_id}-final" if self.final else \
            f"{self.job_id}-c{self.candidate}-f{self.fold}"


def refits_early(candidates: int, folds: int) -> bool:
    """Whether the model registered is fitted beside the folds rather than after them: one
    candidate, cross-validated (its refit on every row needs nothing the folds find)."""
    return candidates == 1 and folds > 1


def refit_key(job_id: str) -> str:
    """Where a refit task keeps its fitted pipeline in storage until the job registers it."""
    return f"training-jobs/{job_id}/refit.joblib"


def part_key(job_id: str, part: int) -> str:
    """Where a part task keeps its fitted pipeline in storage until the join task joins it."""
    return f"training-jobs/{job_id}/part-{part}.joblib"


def fold_tasks(job_id: str, model: str, candidates: int, folds: int,
               submitted_at: float) -> list[FitTask]:
    """The tasks a job with ``candidates`` x ``folds`` fits starts with: one per fit (the
    refit first, the longest, when ``refits_early``), or the final task alone when there
    is a single candidate and a holdout split."""
    if candidates == 1 and folds == 1:
        return [FitTask(job_id, model, submitted_at)]
    refit = [FitTask(job_id, model, submitted_at, refit=True)] \
        if refits_early(candidates, folds) else []
    return refit + [FitTask(job_id, model, submitted_at, c, f)
                    for c in range(candidates) for f in range(folds)]


def job_keys(job_id: str) -> list[str]:
    """KEYS of the scripts that end a job: its record and its done set."""
    return [keys.job_key(job_id), keys.job_done_key(job_id)]


def new_record(
    *, model: str, dataset_id: str, dataset_sha256: str, queue: str, spec: Mapping[str, Any],
    candidates: int, folds: int, alias: str | None, promote_if: Mapping[str, Any] | None,
    trace_id: str | None, now: float,
) -> dict[str, str]:
    """A queued training job's record, as strings; ``spec`` is the checked training spec
    (``training_spec.TrainingSpec.to_json``)."""
    record = {
        "status": "queued",
        "kind": KIND,
        "model": model,
        "dataset_id": dataset_id,
        "dataset_sha256": dataset_sha256,
        "estimator": str(spec["estimator"]),
        "spec": orjson.dumps(spec).decode(),
        "queue": queue,
        "phase": "queued",
        "progress": "0",
        "candidates": str(candidates),
        "folds": str(folds),
        "tasks_total": str(candidates * folds + refits_early(candidates, folds)),
        "tasks_done": "0",
        "submitted_at": repr(now),
    }
    if refits_early(candidates, folds):
        record["refit"] = "1"
    if alias:
        record["alias"] = alias
    if promote_if:
        record["promote_if"] = orjson.dumps(promote_if).decode()
    if trace_id:
        record["trace_id"] = trace_id
    return record


def strings(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {decoded(k): decoded(v) for k, v in raw.items()}


def _json(record: Mapping[str, str], field: str, default: Any = None) -> Any:
    value = record.get(field)
    return orjson.loads(value) if value else default


def to_public(job_id: str, raw: Mapping[Any, Any]) -> dict[str, Any]:
    """The job as the REST API shows it, from the hash Redis returned."""
    record = strings(raw)
    spec = _json(record, "spec", {})
    return {
        "job_id": job_id,
        "kind": KIND,
        "model": record.get("model"),
        "status": record["status"],
        "phase": record.get("phase"),
        "progress": float(record.get("progress") or 0),
        "metrics": _json(record, "metrics"),
        "fold_metrics": _json(record, "fold_metrics"),
        "version": int(record["version"]) if record.get("version") else None,
        "submitted_at": rfc3339(record.get("submitted_at")),
        "started_at": rfc3339(record.get("started_at")),
        "finished_at": rfc3339(record.get("finished_at")),
        "error": _json(record, "error"),
        "estimator": record.get("estimator"),
        "dataset_id": record.get("dataset_id"),
        "target_column": spec.get("target"),
        "validation": spec.get("validation"),
        "hyperparameters": _json(record, "hyperparameters", spec.get("hyperparameters")),
        "search": {"grid": spec["grid"], "metric": spec.get("metric")}
        if spec.get("grid") else None,
        "seed": spec.get("seed"),
        "alias": record.get("alias"),
        "promote_if": _json(record, "promote_if"),
        "promoted": record["promoted"] == "1" if record.get("promoted") else None,
        "trials": _json(record, "trials"),
        "trace_id": record.get("trace_id"),
    }


def promotes(promote_if: Mapping[str, Any] | None, metrics: Mapping[str, float]) -> bool:
    """Whether ``metrics`` clear the bar of ``promote_if`` (``{"metric", "min"}``, or
    ``"max"`` for a metric where lower is better); True without a bar."""
    if not promote_if:
        return True
    value = metrics.get(str(promote_if["metric"]))
    if value is None:
        return False
    low, high = promote_if.get("min"), promote_if.get("max")
    return (low is None or value >= float(low)) and (high is None or value <= float(high))
