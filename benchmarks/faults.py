"""A fault run: tasks submitted while workers are SIGKILLed and SIGTERMed and Redis restarts.

Starts Redis (AOF, ``appendfsync everysec``), the API and ``--workers`` inference workers
on this machine, submits ``--tasks`` predictions of the demo ``diabetes`` model at
``--rate`` a second, and meanwhile SIGKILLs a worker every ``--kill-every`` seconds
(restarting it at once, and every other time killing the new one again the moment it is
ready, when its consumer has just started pulling), restarts Redis once (a clean
shutdown, which writes the AOF out; a crash could lose the last second of writes under
``everysec``) and killing a worker right after, and SIGTERMs a worker once, as a scale-in
does. Then it waits for every accepted task to end and checks each result against the
model called here. A task run more than once (its record counts its starts; lone tasks
are not run in the worker's main process here, so every run is counted) is a duplicate:
allowed after a kill, and counted.

    python benchmarks/faults.py --tasks 10000 --out fault-run.json

Exits non-zero when an accepted task is lost, failed or wrong. See docs/faults.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).parent))

from common import machine

from ml.demo import train_demo
from ml.predict import predict
from ml.store import ModelCache
from services.cli.processes import ServiceProcess, start_api, start_worker
from services.cli.redis_server import free_port, start_redis
from services.common import keys

MODEL = "diabetes"
TERMINAL = {"succeeded", "failed", "cancelled"}
#: Short limits, so a killed worker's tasks come back within seconds.
RECOVERY_ENV = {"INFERQ_SOFT_TIME_LIMIT": "4", "INFERQ_HARD_TIME_LIMIT": "5",
                "INFERQ_VISIBILITY_TIMEOUT": "8", "INFERQ_INLINE_MAX_MS": "0",
                "INFERQ_LOG_FORMAT": "text"}


@dataclass
class Stack:
    """Redis, one API and the workers, each of which can be killed and started again."""

    root: Path
    redis_port: int
    env: dict[str, str]
    concurrency: int
    redis_process: Any = None
    api: ServiceProcess | None = None
    workers: list[ServiceProcess] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def start(self, workers: int) -> None:
        self.redis_process = start_redis(self.redis_port, self.root / "redis")
        self.api = start_api(self.env, free_port(), self.root)
        self.workers = [self.start_worker() for _ in range(workers)]

    def start_worker(self) -> ServiceProcess:
        return start_worker(self.env, self.root, concurrency=self.concurrency)

    def note(self, fault: str, **facts: Any) -> None:
        self.events.append({"at_s": round(time.monotonic() - self.started, 1), "fault": fault,
                            **facts})

    def kill(self, index: int, fresh: bool = False) -> None:
        """SIGKILL worker ``index`` and start another in its place."""
        self.workers[index].kill()
        self.note("sigkill", worker=index, fresh=fresh)
        self.workers[index] = self.start_worker()

    def terminate(self, index: int) -> None:
        """SIGTERM worker ``index``'s main process, as a scale-in does; time its exit."""
        worker = self.workers[index]
        sent = time.monotonic()
        os.kill(worker.pid, signal.SIGTERM)
        code = worker.process.wait(timeout=120)
        self.note("sigterm", worker=index, exit_code=code,
                  exit_s=round(time.monotonic() - sent, 1))
        worker.stop()
        self.workers[index] = self.start_worker()

    def restart_redis(self) -> None:
        self.redis_process.terminate()
        self.redis_process.wait(timeout=30)
        self.redis_process = start_redis(self.redis_port, self.root / "redis")
        self.note("redis restart")

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.api is not None:
            self.api.stop()
        if self.redis_process is not None:
            self.redis_process.terminate()
            self.redis_process.wait(timeout=30)


@dataclass
class Submitted:
    """The tasks the API accepted, with the predictions each must end with."""

    expected: dict[str, list[float]] = field(default_factory=dict)
    refused: int = 0


async def submit_all(url: str, rows: list[np.ndarray], rate: float,
                     submitted: Submitted) -> None:
    """Submit every batch of ``rows`` at ``rate`` a second; retry a refused submit (503,
    Redis restarting) until it is accepted."""
    cache = ModelCache(Path(os.environ["INFERQ_MODEL_STORE"]))
    metadata, estimator = cache.get(MODEL, 1)
    gate = asyncio.Semaphore(32)

    async def one(client: httpx.AsyncClient, batch: np.ndarray) -> None:
        expected = predict(metadata, estimator, batch, False)["predictions"]
        async with gate:
            while True:
                try:
                    response = await client.post(f"/v1/models/{MODEL}/predict",
                                                 json={"instances": batch.tolist()})
                except httpx.HTTPError:
                    response = None
                if response is not None and response.status_code == 202:
                    submitted.expected[response.json()["task_id"]] = expected
                    return
                submitted.refused += 1
                await asyncio.sleep(0.2)

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        started, pending = time.monotonic(), []
        for i, batch in enumerate(rows):
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            pending.append(asyncio.create_task(one(client, batch)))
        await asyncio.gather(*pending)


async def inflict(stack: Stack, duration: float, kill_every: float) -> None:
    """The faults, spread over the ``duration`` of the submissions."""
    plan: list[tuple[float, str]] = [(duration * 0.45, "redis"), (duration * 0.7, "sigterm")]
    plan += [(at, "kill") for at in np.arange(kill_every, duration, kill_every)]
    started = time.monotonic()
    for step, (at, fault) in enumerate(sorted(plan)):
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))
        index = step % len(stack.workers)
        if fault == "redis":
            await asyncio.to_thread(stack.restart_redis)
            await asyncio.to_thread(stack.kill, index)  # Its consumer new since the restart.
        elif fault == "sigterm":
            await asyncio.to_thread(stack.terminate, index)
        else:
            await asyncio.to_thread(stack.kill, index)
            if step % 2:
                await asyncio.to_thread(stack.kill, index, True)


def outcomes(store: redis.Redis, task_ids: list[str]) -> list[tuple[str | None, int]]:
    """Each task's status and how many times it was started, by its record."""
    pipe = store.pipeline(transaction=False)
    for task_id in task_ids:
        pipe.hmget(keys.task_key(task_id), "status", "attempts")
    return [(status.decode() if status else None, int(attempts or 0))
            for status, attempts in pipe.execute()]


async def wait_terminal(store: redis.Redis, task_ids: list[str], timeout: float) -> float:
    """Seconds until every task's record is terminal, or until ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if all(status in TERMINAL for status, _ in outcomes(store, task_ids)):
                break
        except redis.RedisError:
            pass
        await asyncio.sleep(0.5)
    return time.monotonic() - started


async def read_tasks(url: str, task_ids: list[str]) -> tuple[dict[str, dict[str, Any]], int]:
    """Every task as the API answers it, and how many reads it answered 503 (retried)."""
    gate = asyncio.Semaphore(16)
    unavailable = 0
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        async def one(task_id: str) -> dict[str, Any]:
            nonlocal unavailable
            async with gate:
                for _ in range(20):
                    response = await client.get(f"/v1/tasks/{task_id}")
                    if response.status_code != 503:
                        break
                    unavailable += 1
                    await asyncio.sleep(0.2)
                return dict(response.json())
        answers = await asyncio.gather(*(one(task_id) for task_id in task_ids))
    return dict(zip(task_ids, answers, strict=True)), unavailable


def verdict(submitted: Submitted, tasks: dict[str, dict[str, Any]],
            attempts: dict[str, int]) -> dict[str, Any]:
    counts = {"accepted": len(submitted.expected), "succeeded": 0, "wrong": 0, "failed": 0,
              "lost": 0}
    unfinished: list[dict[str, Any]] = []
    for task_id, expected in submitted.expected.items():
        task = tasks[task_id]
        status = task.get("status")
        if status == "succeeded":
            got = task["result"]["predictions"]
            right = np.allclose(got, expected, rtol=1e-9, atol=1e-9)
            counts["succeeded" if right else "wrong"] += 1
        elif status in TERMINAL:
            counts["failed"] += 1
        else:
            counts["lost"] += 1
            unfinished.append({"task_id": task_id, "answer": task})
    counts["duplicates"] = sum(1 for n in attempts.values() if n > 1)
    counts["most_starts"] = max(attempts.values(), default=0)
    counts["unfinished"] = unfinished[:20]
    return counts


def run(tasks: int, rate: float, workers: int, concurrency: int, kill_every: float,
        seed: int, drain_timeout: float) -> dict[str, Any]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="inferq-faults-") as tmp:
        root = Path(tmp)
        store = root / "models"
        train_demo(store)
        os.environ["INFERQ_MODEL_STORE"] = str(store)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INFERQ_", "OTEL_"))}
        env.update(RECOVERY_ENV, INFERQ_REDIS_URL=f"redis://127.0.0.1:{port}/0",
                   INFERQ_MODEL_STORE=str(store), INFERQ_AUTH="off")
        stack = Stack(root, port, env, concurrency)
        generator = np.random.default_rng(seed)
        rows = [generator.normal(0, 0.05, size=(rng.randint(1, 4), 10)) for _ in range(tasks)]
        submitted = Submitted()
        try:
            stack.start(workers)
            assert stack.api is not None
            url = f"http://127.0.0.1:{stack.api.args[stack.api.args.index('--port') + 1]}"
            started = stack.started = time.monotonic()

            async def load() -> None:
                await asyncio.gather(submit_all(url, rows, rate, submitted),
                                     inflict(stack, tasks / rate, kill_every))

            asyncio.run(load())
            submitted_s = time.monotonic() - started
            client = redis.Redis(port=port)
            task_ids = list(submitted.expected)
            drain_s = asyncio.run(wait_terminal(client, task_ids, drain_timeout))
            attempts = {t: n for t, (_, n) in zip(task_ids, outcomes(client, task_ids),
                                                  strict=True)}
            answers, unavailable = asyncio.run(read_tasks(url, task_ids))
        finally:
            stack.stop()
        faults = stack.events
        return {
            "tasks": tasks, "rate_per_s": rate, "workers": workers, "concurrency": concurrency,
            **verdict(submitted, answers, attempts),
            "refused_submits": submitted.refused, "reads_answered_503": unavailable,
            "sigkills": sum(1 for e in faults if e["fault"] == "sigkill"),
            "sigterms": [e for e in faults if e["fault"] == "sigterm"],
            "redis_restarts": sum(1 for e in faults if e["fault"] == "redis restart"),
            "submitting_s": round(submitted_s, 1), "drain_s": round(drain_s, 1),
            "total_s": round(time.monotonic() - started, 1),
            "faults": faults, "redis": "AOF, appendfsync everysec, restarted by SHUTDOWN",
            "machine": machine(),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=50.0, help="tasks submitted a second")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="children per worker")
    parser.add_argument("--kill-every", type=float, default=4.0, help="seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="seconds")
    parser.add_argument("--out", type=Path, help="write the report here as JSON")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.rate <= 0 or args.workers < 1 or args.kill_every <= 0:
        parser.error("--tasks, --rate, --workers and --kill-every must be positive")
    report = run(args.tasks, args.rate, args.workers, args.concurrency, args.kill_every,
                 args.seed, args.drain_timeout)
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    bad = report["lost"] + report["failed"] + report["wrong"]
    return 1 if bad or report["succeeded"] != report["accepted"] else 0


if __name__ == "__main__":
    sys.exit(main())
