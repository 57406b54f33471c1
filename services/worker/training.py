"""Running training jobs' tasks on the training pool: fold fits, then the final fit.

A fold task fits one grid candidate on one cross-validation fold (or the holdout split) and
stores its metrics with ``FOLD_DONE_SCRIPT`` in the round trip that acknowledges its
message; the call that counts a job's last fold pushes the job's final task. The final
task picks the best candidate by the job's selection metric, fits it (on the holdout
split's train rows, whose evaluation is then the one reported, or on every row after a
cross-validation, whose fold metrics are then the estimate), registers the version, moves
the alias, announces the change and ends the job (see ``services.common.training_jobs``).
A single candidate cross-validated is fitted on every row by a refit task beside its folds,
counted as one of them, which keeps the pipeline in storage: the final task then only
registers it, and a task that finds the job ended deletes it. After a search, a forest's
fit on every row is split by trees into part tasks (``fit_parts`` at most), so that every
training worker takes some of it: each keeps its part in storage, and the join task joins
them into the forest one fit would grow and registers it.

Each fit runs in a process of its own (``services.worker.training_fit``), which dies with
the task's process. While it runs, the task reads the job's status a few times a second
and kills it when the job is cancelled. A time limit kills it too, failing the job: the
pool's soft limit (``soft_time_limit_exceeded``) when it has one, else the runner ends the
fit ``hard_limit_margin`` before the pool's hard limit (``time_limit_exceeded``), so that
the task fails the job itself rather than its process being killed with it.
"""

from __future__ import annotations

import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

import joblib
import orjson
import redis
from redis.client import Pipeline

from ml import training
from ml.store import save_model, set_alias
from services.cli.processes import die_with_parent
from services.common import keys, model_events
from services.common import training_jobs as tj
from services.common.catalog import Lineage, ModelStore, model_storage
from services.common.jobs import FINISH_SCRIPT, START_SCRIPT
from services.common.messages import TRAINING_FINAL_TASK, TRAINING_FOLD_TASK, build_message
from services.common.metrics import JOB_SECONDS, JOBS_FINISHED, series
from services.common.records import decoded
from services.common.storage import Storage, StorageError
from services.common.tenants import model_event, tenant_of, tenant_store
from services.common.training_jobs import FitTask
from services.worker import task_errors
from services.worker.broker import ScriptPipeline, acknowledge_in

log = logging.getLogger(__name__)

#: Seconds between two reads of a job's status while its fit runs: a cancel stops the fit
#: within about this.
WATCH_INTERVAL = 0.2
#: The trace context a task's message carries, handed on to the final task's message.
TRACE_HEADERS = ("traceparent", "tracestate")


class Cancelled(Exception):
    """The job ended (cancelled, or failed by another of its tasks) while a fit ran."""


class FitTimedOut(Exception):
    """The fit ran to the task's hard time limit (``limit`` s) and was killed."""

    def __init__(self, limit: float) -> None:
        super().__init__(f"the fit ran to the hard time limit of {limit:g} s")
        self.limit = limit


class FitFailed(Exception):
    """The fit's process answered an error, or ended without an answer."""

    def __init__(self, error: dict[str, str]) -> None:
        super().__init__(error["message"])
        self.error = error


class TrainingRunner:
    """Runs training tasks in one worker process: its Redis client and model store."""

    def __init__(self, client: redis.Redis, store: ModelStore, storage: Storage, ttl: int,
                 queue: str, hard_time_limit: float | None = None, fit_parts: int = 1) -> None:
        """``hard_time_limit``: the pool's hard limit when it has no soft limit before it,
        which the runner then keeps itself (``hard_limit_margin``). ``fit_parts``: how many
        part tasks a forest's fit on every row is split into at most (1: not split)."""
        self._client = client
        self._fit_parts = fit_parts
        self._hard_limit = hard_time_limit
        #: When the running task's fit is killed (``time.monotonic``); None: never.
        self._deadline: float | None = None
        self._store = model_storage(store)
        self._storage = storage
        self._ttl = ttl
        self._queue = queue
        self._scripts = ScriptPipeline(client, START_SCRIPT, FINISH_SCRIPT,
                                       tj.PROGRESS_SCRIPT, tj.FOLD_DONE_SCRIPT,
                                       tj.REGISTER_SCRIPT, tj.SUCCEED_SCRIPT,
                                       tj.SPLIT_SCRIPT)

    def run(self, task: FitTask, tag: str, headers: Mapping[str, Any]) -> None:
        """Run ``task`` unless its job ended; acknowledge its message once its outcome is
        stored. An unexpected error leaves the message unacknowledged (the worker hands it
        back); a task started ``task_errors.MAX_ATTEMPTS`` times fails its job instead."""
        self._deadline = (time.monotonic() + self._hard_limit
                          - hard_limit_margin(self._hard_limit) if self._hard_limit else None)
        status, attempts = self._start(task)
        if status != "running":
            log.info("training task skipped", extra={"job_id": task.job_id, "task": task.name,
                                                      "status": status})
            self._discard_kept(task.job_id)
            self._ack(tag)
            return
        if attempts > task_errors.MAX_ATTEMPTS:
            self.fail(task, task_errors.worker_lost(), tag)
            return
        record = tj.strings(self._client.hgetall(keys.job_key(task.job_id)))
        spec = training.TrainingSpec.from_json(orjson.loads(record["spec"]))
        try:
            if task.final:
                self._final(task, record, spec, tag, headers)
            elif task.join:
                self._join(task, record, spec, tag)
            elif task.refit:
                self._refit(task, record, spec, tag, headers)
            elif task.part is not None:
                self._part(task, record, spec, tag, headers)
            else:
                self._fold(task, record, spec, tag, headers)
        except Cancelled:
            log.info("training task stopped: its job ended",
                     extra={"job_id": task.job_id, "task": task.name})
            self._discard_kept(task.job_id)
            self._ack(tag)
        except FitFailed as exc:
            log.warning("training fit failed; its job fails",
                        extra={"job_id": task.job_id, "task": task.name, "error": str(exc)})
            self.fail(task, exc.error, tag)
        except FitTimedOut as exc:
            log.warning("training fit killed at the hard time limit; its job fails",
                        extra={"job_id": task.job_id, "task": task.name, "limit": exc.limit})
            self.fail(task, task_errors.hard_time_limit(f"{exc.limit:g}"), tag)

    def _start(self, task: FitTask) -> tuple[str, int]:
        replies = self._scripts.execute(lambda pipe: self._scripts.call(
            pipe, START_SCRIPT,
            [keys.job_key(task.job_id), keys.job_done_key(task.job_id),
             keys.job_attempts_key(task.job_id)],
            [repr(time.time()), task.name]))
        status, attempts, _ = replies[0]
        return decoded(status), int(attempts)

    # -- Fold tasks.

    def _fold(self, task: FitTask, record: dict[str, str], spec: training.TrainingSpec,
              tag: str, headers: Mapping[str, Any]) -> None:
        candidates, folds = int(record["candidates"]), int(record["folds"])
        assert task.candidate is not None and task.fold is not None
        params = training.candidates(spec)[task.candidate]
        fitting = (f"candidate {task.candidate + 1} of {candidates}, " if candidates > 1
                   else "") + f"fold {task.fold + 1} of {folds}"
        if candidates == 1:
            fitting = "fitting " + fitting
        started = time.time()
        answer = self._run_fit(task, record, {
            "spec": spec.to_json(), "dataset_id": record["dataset_id"], "params": params,
            "mode": "fold", "fold": task.fold}, fitting)
        result = {"candidate": task.candidate, "fold": task.fold, "metrics": answer["metrics"],
                  "hostname": socket.gethostname(), "worker": _worker_name(),
                  "seconds": round(time.time() - started, 3)}
        self._count(task, result, tag, headers)

    def _refit(self, task: FitTask, record: dict[str, str], spec: training.TrainingSpec,
               tag: str, headers: Mapping[str, Any]) -> None:
        """Fit the single candidate on every row beside its folds, keep the pipeline in
        storage for the final task, and count the fit as one of the folds."""
        seconds = self._fit_kept(task, record, {
            "spec": spec.to_json(), "dataset_id": record["dataset_id"],
            "params": training.candidates(spec)[0], "mode": "all", "fold": 0},
            "fitting", tj.refit_key(task.job_id))
        result = {"refit": True, "hostname": socket.gethostname(), "worker": _worker_name(),
                  "seconds": round(seconds, 3)}
        if self._count(task, result, tag, headers) != "running":
            self._discard_kept(task.job_id)

    def _part(self, task: FitTask, record: dict[str, str], spec: training.TrainingSpec,
              tag: str, headers: Mapping[str, Any]) -> None:
        """Fit some of the best candidate's trees on every row, keep the pipeline in
        storage for the join task, and count the part; the last part pushes the join."""
        assert task.part is not None and task.trees is not None
        start, stop = task.trees
        seconds = self._fit_kept(task, record, {
            "spec": spec.to_json(), "dataset_id": record["dataset_id"],
            "params": training.candidates(spec)[int(record["best"])], "mode": "trees",
            "trees": [start, stop]},
            f"fitting on every row, part {task.part + 1} of {record['parts']}",
            tj.part_key(task.job_id, task.part))
        result = {"part": task.part, "trees": [start, stop], "hostname": socket.gethostname(),
                  "worker": _worker_name(), "seconds": round(seconds, 3)}
        join = FitTask(task.job_id, task.model, task.submitted_at, join=True)
        if self._count(task, result, tag, headers, join) != "running":
            self._discard_kept(task.job_id)

    def _fit_kept(self, task: FitTask, record: dict[str, str], request: dict[str, Any],
                  fitting: str, key: str) -> float:
        """Run a fit that keeps its pipeline, and keep it in storage under ``key``; the
        fit's seconds."""
        handle, path = tempfile.mkstemp(prefix="inferq-fit-", suffix=".joblib")
        os.close(handle)
        try:
            started = time.time()
            self._run_fit(task, record, {**request, "artifact": path}, fitting)
            seconds = time.time() - started
            with open(path, "rb") as fitted, self._storage.writer(key) as kept:
                shutil.copyfileobj(fitted, kept, 1 << 20)
        finally:
            os.unlink(path)
        return seconds

    def _load_kept(self, key: str) -> Any:
        """The pipeline a refit or part task kept in storage under ``key``."""
        handle, path = tempfile.mkstemp(prefix="inferq-fit-", suffix=".joblib")
        os.close(handle)
        try:
            with self._storage.open(key) as kept, open(path, "wb") as copy:
                shutil.copyfileobj(kept, copy, 1 << 20)
            return joblib.load(path)
        finally:
            os.unlink(path)

    def _count(self, task: FitTask, result: dict[str, Any], tag: str,
               headers: Mapping[str, Any], then: FitTask | None = None) -> str:
        """Store and count a fold's (or the refit's, or a part's) result and acknowledge its
        message in one round trip; the call that counts the last pushes ``then`` (the final
        task by default). The job's status."""
        then = then or FitTask(task.job_id, task.model, task.submitted_at)
        message = build_message(TRAINING_FINAL_TASK, then.task_id, self._queue,
                                then.message_kwargs(), _trace_headers(headers))

        def build(pipe: Pipeline) -> None:
            self._scripts.call(
                pipe, tj.FOLD_DONE_SCRIPT,
                [keys.job_key(task.job_id), keys.job_done_key(task.job_id),
                 keys.training_folds_key(task.job_id), keys.queue_key(self._queue)],
                [task.name, orjson.dumps(result), repr(time.time()), message])
            acknowledge_in(pipe, self._queue, [tag])

        status, added, completed = self._scripts.execute(build)[0]
        log.info("training fold done", extra={
            "job_id": task.job_id, "task": task.name, "status": decoded(status),
            "counted": bool(int(added)), "last": bool(int(completed))})
        return decoded(status)

    # -- The final task.

    def _results(self, job_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The job's refit result (None without one) and its folds' results, in order."""
        results = [orjson.loads(v) for v in
                   self._client.hvals(keys.training_folds_key(job_id))]
        refit = next((r for r in results if r.get("refit")), None)
        trials = sorted((r for r in results if "candidate" in r),
                        key=lambda r: (r["candidate"], r["fold"]))
        return refit, trials

    def _final(self, task: FitTask, record: dict[str, str], spec: training.TrainingSpec,
               tag: str, headers: Mapping[str, Any]) -> None:
        candidates = training.candidates(spec)
        refit, trials = self._results(task.job_id)
        best, fold_metrics = pick_best(spec, candidates, trials)
        params = candidates[best]
        holdout = "holdout" in spec.validation
        if refit is None and not holdout:
            parts = training.tree_parts(spec, params, self._fit_parts)
            if parts:
                self._split(task, best, parts, tag, headers)
                return
        handle, path = tempfile.mkstemp(prefix="inferq-fit-", suffix=".joblib")
        os.close(handle)
        try:
            started = time.time()
            if refit is None:
                answer = self._run_fit(task, record, {
                    "spec": spec.to_json(), "dataset_id": record["dataset_id"],
                    "params": params, "mode": "holdout" if holdout else "all", "fold": 0,
                    "artifact": path}, "fitting")
                if holdout:
                    fold_metrics = [answer["metrics"]]
            else:
                # Fitted on every row beside the folds: its time is the refit task's.
                started -= float(refit["seconds"])
            metrics = fold_metrics[0] if holdout else training.summarize(fold_metrics)
            self._progress(task, "evaluating", 0.9)
            if decoded(self._scripts.execute(lambda pipe: self._scripts.call(
                    pipe, tj.REGISTER_SCRIPT, [keys.job_key(task.job_id)],
                    [repr(time.time())]))[0]) != "running":
                raise Cancelled()
            estimator = joblib.load(path) if refit is None else \
                self._load_kept(tj.refit_key(task.job_id))
        finally:
            os.unlink(path)
        self._register(task, record, spec, estimator, params, metrics, fold_metrics, trials,
                       time.time() - started, tag)
        if refit is not None:
            self._discard_kept(task.job_id)

    def _split(self, task: FitTask, best: int, parts: list[tuple[int, int]], tag: str,
               headers: Mapping[str, Any]) -> None:
        """Push one part task for each range of the best candidate's trees and acknowledge
        the final task, in one round trip."""
        messages = []
        for index, trees in enumerate(parts):
            part = FitTask(task.job_id, task.model, task.submitted_at, part=index, trees=trees)
            messages.append(build_message(TRAINING_FOLD_TASK, part.task_id, self._queue,
                                          part.message_kwargs(), _trace_headers(headers)))

        def build(pipe: Pipeline) -> None:
            self._scripts.call(
                pipe, tj.SPLIT_SCRIPT, [keys.job_key(task.job_id), keys.queue_key(self._queue)],
                [repr(time.time()), len(parts), best,
                 f"fitting on every row in {len(parts)} parts", *messages])
            acknowledge_in(pipe, self._queue, [tag])

        status = decoded(self._scripts.execute(build)[0])
        log.info("training job's fit on every row split into parts", extra={
            "job_id": task.job_id, "parts": len(parts), "candidate": best, "status": status})

    def _join(self, task: FitTask, record: dict[str, str], spec: training.TrainingSpec,
              tag: str) -> None:
        """Join the parts' pipelines into one forest and register it."""
        candidates = training.candidates(spec)
        _, trials = self._results(task.job_id)
        best, fold_metrics = pick_best(spec, candidates, trials)
        self._progress(task, "evaluating", 0.9)
        if decoded(self._scripts.execute(lambda pipe: self._scripts.call(
                pipe, tj.REGISTER_SCRIPT, [keys.job_key(task.job_id)],
                [repr(time.time())]))[0]) != "running":
            raise Cancelled()
        estimator = training.join_trees(spec, [
            self._load_kept(tj.part_key(task.job_id, part))
            for part in range(int(record["parts"]))])
        self._register(task, record, spec, estimator, candidates[best],
                       training.summarize(fold_metrics), fold_metrics, trials,
                       time.time() - float(record["parts_started_at"]), tag)
        self._discard_kept(task.job_id)

    def _register(self, task: FitTask, record: dict[str, str], spec: training.TrainingSpec,
                  estimator: Any, params: dict[str, Any], metrics: dict[str, float],
                  fold_metrics: list[dict[str, float]], trials: list[dict[str, Any]],
                  seconds: float, tag: str) -> None:
        lineage = Lineage(
            dataset_id=record["dataset_id"], dataset_sha256=record.get("dataset_sha256", ""),
            estimator=spec.estimator, hyperparameters=params, validation=spec.validation,
            seed=spec.seed, fold_metrics=fold_metrics, job_id=task.job_id,
            training_seconds=round(seconds, 3), library_versions=training.library_versions())
        # A tenant's model goes to its part of the store; the default tenant's is shared.
        tenant = tenant_of(record)
        store = tenant_store(self._store, tenant)
        metadata = save_model(store, task.model, estimator, features=spec.features,
                              metrics=metrics, lineage=lineage,
                              description=f"{spec.estimator} trained by job {task.job_id}")
        promote_if = orjson.loads(record["promote_if"]) if record.get("promote_if") else None
        promoted = tj.promotes(promote_if, metrics)
        alias = record.get("alias")
        if alias and promoted:
            set_alias(store, task.model, alias, metadata.version)
        model_events.announce(self._client, model_event(tenant, task.model))
        fields = {"version": str(metadata.version), "metrics": orjson.dumps(metrics).decode(),
                  "fold_metrics": orjson.dumps(fold_metrics).decode(),
                  "hyperparameters": orjson.dumps(params).decode(),
                  "trials": orjson.dumps(trials).decode(),
                  "phase": "done", "progress": "1", "progressed_at": repr(time.time())}
        if alias:
            fields["promoted"] = "1" if promoted else "0"

        def build(pipe: Pipeline) -> None:
            self._scripts.call(
                pipe, tj.SUCCEED_SCRIPT,
                [*tj.job_keys(task.job_id), keys.TRAINING_METRICS],
                [repr(time.time()), self._ttl, task.job_id, orjson.dumps(fields),
                 model_event(tenant, task.model),
                 fields["metrics"]])
            acknowledge_in(pipe, self._queue, [tag])

        status, ended = self._scripts.execute(build)[0]
        log.info("training job registered its version", extra={
            "job_id": task.job_id, "model": task.model, "version": metadata.version,
            "alias": alias if promoted else None, "status": decoded(status)})
        if int(ended):
            self._observe_end(task, "succeeded")

    # -- The fit's process.

    def _run_fit(self, task: FitTask, record: dict[str, str], request: dict[str, Any],
                 fitting: str) -> dict[str, Any]:
        """Run one fit in a process of its own and return its answer; the job's phase
        follows it. Raises ``Cancelled`` (the process killed) when the job ends meanwhile,
        ``FitFailed`` when the fit fails, ``FitTimedOut`` (the process killed) at the task's
        deadline."""
        fold_task = not task.final
        self._progress(task, "loading", 0.02)
        process = subprocess.Popen(
            [sys.executable, "-m", "services.worker.training_fit"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=die_with_parent(),
        )
        try:
            self._progress(task, "loading", 0.0, fit_pid=str(process.pid),
                           fit_host=socket.gethostname())
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(orjson.dumps(request))
            process.stdin.close()

            def on_line(line: dict[str, Any]) -> None:
                if line.get("event") == "loaded":
                    self._progress(task, fitting, 0.0 if fold_task else
                                   (0.1 if record["tasks_total"] == "1" else 0.85))

            answer = _read_answer(process, on_line, lambda: self._ended(task))
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
        if answer is None or "error" in answer:
            error = answer["error"] if answer else {
                "type": "FitProcessEnded",
                "message": f"the fit's process ended with code {process.returncode} "
                           "without an answer"}
            raise FitFailed({"type": error["type"], "code": "training_failed",
                             "message": error["message"]})
        return answer

    def _ended(self, task: FitTask) -> bool:
        """Whether the task's job ended; raises ``FitTimedOut`` past the task's deadline."""
        if self._deadline is not None and time.monotonic() >= self._deadline:
            assert self._hard_limit is not None
            raise FitTimedOut(self._hard_limit)
        status = self._client.hget(keys.job_key(task.job_id), "status")
        return status is None or decoded(status) != "running"

    def _progress(self, task: FitTask, phase: str, progress: float, **fields: str) -> None:
        """Move a running job's phase, and its progress up to ``progress``."""
        key = keys.job_key(task.job_id)
        args: list[Any] = [phase, repr(progress), repr(time.time())]
        for name, value in fields.items():
            args += [name, value]
        self._scripts.execute(lambda pipe: self._scripts.call(
            pipe, tj.PROGRESS_SCRIPT, [key], args))

    # -- Ends.

    def fail(self, task: FitTask, error: dict[str, Any], tag: str | None) -> None:
        """End the task's job as failed with ``error`` (unless it ended), acknowledging
        the message ``tag`` in the same round trip."""
        args = ["failed", repr(time.time()), self._ttl, task.job_id, orjson.dumps(error), ""]

        def build(pipe: Pipeline) -> None:
            self._scripts.call(pipe, FINISH_SCRIPT, tj.job_keys(task.job_id), args)
            if tag is not None:
                acknowledge_in(pipe, self._queue, [tag])

        outcome, ended = self._scripts.execute(build)[0]
        if int(ended):
            self._observe_end(task, decoded(outcome))
        self._discard_kept(task.job_id)

    def _discard_kept(self, job_id: str) -> None:
        """Delete the pipelines a refit task or part tasks kept for the job, if it has any:
        the job succeeded or ended without them. A storage error leaves them, logged."""
        refit, parts = self._client.hmget(keys.job_key(job_id), "refit", "parts")
        kept = ([tj.refit_key(job_id)] if refit else []) + \
            [tj.part_key(job_id, part) for part in range(int(parts or 0))]
        for key in kept:
            try:
                self._storage.delete(key)
            except StorageError as exc:
                log.warning("a kept pipeline could not be deleted",
                            extra={"job_id": job_id, "key": key, "error": str(exc)})

    def _ack(self, tag: str) -> None:
        pipe = self._client.pipeline(transaction=False)
        acknowledge_in(pipe, self._queue, [tag])
        pipe.execute()

    def _observe_end(self, task: FitTask, status: str) -> None:
        log.info("training job ended", extra={"job_id": task.job_id, "status": status})
        series(JOBS_FINISHED, tj.KIND, task.model, status).inc()
        if task.submitted_at:
            series(JOB_SECONDS, tj.KIND, task.model).observe(
                max(0.0, time.time() - task.submitted_at))


def hard_limit_margin(hard_time_limit: float) -> float:
    """How long before the pool's hard limit the runner ends a fit: time to kill it and
    fail the job before the pool kills the task's process (a quarter of the limit, at
    most 5 s)."""
    return min(5.0, hard_time_limit / 4)


def pick_best(spec: training.TrainingSpec, candidates: list[dict[str, Any]],
              results: list[dict[str, Any]]) -> tuple[int, list[dict[str, float]]]:
    """The index of the best candidate by ``spec.metric`` (its fold metrics averaged) and
    its fold metrics in fold order; candidate 0 and none without fold results."""
    by_candidate: dict[int, list[dict[str, Any]]] = {}
    for result in results:
        by_candidate.setdefault(int(result["candidate"]), []).append(result)
    if not by_candidate:
        return 0, []
    sign = 1.0 if training.higher_is_better(spec.metric) else -1.0

    def score(index: int) -> float:
        folds = [r["metrics"] for r in by_candidate[index]]
        return sign * training.summarize(folds).get(spec.metric, float("-inf") * sign)

    best = max(sorted(by_candidate), key=score)
    ordered = sorted(by_candidate[best], key=lambda r: int(r["fold"]))
    return best, [r["metrics"] for r in ordered]


def _read_answer(process: subprocess.Popen[bytes], on_line: Callable[[dict[str, Any]], None],
                 ended: Callable[[], bool]) -> dict[str, Any] | None:
    """The last line ``process`` writes (its answer), handing each earlier one to
    ``on_line``; raises ``Cancelled`` as soon as ``ended()`` says the job ended."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    buffered = b""
    answer: dict[str, Any] | None = None
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            if selector.select(timeout=WATCH_INTERVAL):
                data = os.read(fd, 1 << 16)
                if not data:
                    return answer
                buffered += data
                *lines, buffered = buffered.split(b"\n")
                for raw in lines:
                    try:
                        line = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        log.warning("the fit wrote a line that is not its answer",
                                    extra={"line": raw[:200].decode(errors="replace")})
                        continue
                    if "event" in line:
                        on_line(line)
                    else:
                        answer = line
            if ended():
                process.send_signal(signal.SIGKILL)
                raise Cancelled()


def _trace_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The trace context of a task's message, for the messages it pushes."""
    return {k: headers[k] for k in TRACE_HEADERS if k in headers}


def _worker_name() -> str:
    """The worker this pool child belongs to: its host and main process."""
    return f"{socket.gethostname()}:{os.getppid()}"
