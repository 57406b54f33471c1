"""The API's own metrics: whether Redis answers, how full it is, the backlog of every
queue, and the batch jobs queued or running."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from prometheus_client import REGISTRY, Gauge, start_http_server
from redis.exceptions import RedisError

from services.api.periodic import Periodic
from services.common import jobs, keys, training_jobs
from services.common.metrics import QUEUE_INFLIGHT, QUEUE_WAITING
from services.common.pullers import sweep_queues
from services.common.records import ALLOW_OOM

log = logging.getLogger(__name__)


def serve_metrics(host: str, port: int) -> None:
    """Serve the API's metrics (the process's registry, every one of them) on ``port`` from
    a thread of their own, beside the API's port: whatever can reach the API cannot reach
    them. Raises OSError when the port cannot be bound."""
    start_http_server(port, addr=host, registry=REGISTRY)
    log.info("metrics served", extra={"host": host, "port": port})


# Only the API checks Redis; a worker exporting it would report a permanent 0.
REDIS_UP = Gauge("inferq_redis_up", "1 when the API's last Redis check succeeded.")
# Redis refuses new tasks once its data reaches maxmemory (noeviction): these say how near.
REDIS_MEMORY_USED = Gauge("inferq_redis_memory_used_bytes",
                          "Memory Redis uses for data (INFO memory's used_memory).")
REDIS_MEMORY_MAX = Gauge("inferq_redis_memory_max_bytes",
                         "Redis's maxmemory: new tasks are refused above it; 0 is no limit.")
# Read from the jobs' records like the queue gauges: every API replica exports the same
# values, so dashboards and alerts take the largest, never the sum. No job id is a label.
JOBS = Gauge("inferq_jobs", "Jobs queued or running.", ["kind", "status"])
JOB_STALLED = Gauge(
    "inferq_job_stalled_seconds",
    "The longest a running job has gone without a chunk counted, since it started or since "
    "its last chunk; 0 when none runs.",
    ["kind"],
)
TRAINING_METRIC = Gauge(
    "inferq_training_metric",
    "The overall metrics of the latest training job that succeeded, per model.",
    ["model", "metric"],
)
#: The states of the jobs ``inferq_jobs`` counts: those not ended.
ACTIVE_STATES = ("queued", "running")

# KEYS: the active set; ARGV: the records' key prefix. Returns kind, status, started_at and
# progressed_at of each job in the set, four strings a job ('' when unset). An id whose
# record expired or whose job ended leaves the set here. Runs when Redis is full too: the
# gauges say most then.
ACTIVE_JOBS_SCRIPT = ALLOW_OOM + """
local found = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local f = redis.call('HMGET', ARGV[1] .. id, 'kind', 'status', 'started_at', 'progressed_at')
  if f[2] == 'queued' or f[2] == 'running' then
    table.insert(found, f[1] or '')
    table.insert(found, f[2])
    table.insert(found, f[3] or '')
    table.insert(found, f[4] or '')
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return found
"""


async def read_backlog(
    client: aioredis.Redis, queues: Iterable[str]
) -> dict[str, tuple[int, int]]:
    """(waiting, in flight) of each of ``queues``, in one round trip."""
    backlog, _, _ = await read_redis(client, queues)
    return backlog


async def read_redis(
    client: aioredis.Redis, queues: Iterable[str], memory: bool = False,
    active_jobs: bool = False,
) -> tuple[dict[str, tuple[int, int]], dict[str, Any], list[Any]]:
    """The backlog of each of ``queues`` and, with ``memory``, ``INFO memory`` and, with
    ``active_jobs``, ``ACTIVE_JOBS_SCRIPT``'s reply, in one round trip."""
    ordered = list(dict.fromkeys(queues))
    async with client.pipeline(transaction=False) as pipe:
        for queue in ordered:
            pipe.llen(keys.queue_key(queue))
            pipe.hlen(keys.unacked_key(queue))
        if memory:
            pipe.info("memory")
        if active_jobs:
            # EVAL, not EVALSHA: a script Redis lost on a restart costs no second trip.
            pipe.eval(ACTIVE_JOBS_SCRIPT, 1, keys.JOBS_ACTIVE, keys.job_key(""))
        replies = await pipe.execute()
    backlog = {queue: (replies[2 * i], replies[2 * i + 1]) for i, queue in enumerate(ordered)}
    extra = replies[2 * len(ordered):]
    return (backlog, extra.pop(0) if memory else {}, extra.pop(0) if active_jobs else [])


def job_gauges(
    reply: Sequence[Any], now: float, kinds: Iterable[str] = (jobs.KIND,)
) -> dict[str, tuple[dict[str, int], float]]:
    """Per kind of job (each of ``kinds`` at least), how many jobs are in each active state
    and how long the running job that made progress longest ago has gone without (0 with
    none running), from ``ACTIVE_JOBS_SCRIPT``'s reply.

    A job makes progress when it starts and each time one of its chunks is counted; the
    stamps are the workers' clocks, ``now`` the caller's.
    """
    found: dict[str, tuple[dict[str, int], float]] = {
        kind: (dict.fromkeys(ACTIVE_STATES, 0), 0.0) for kind in kinds}
    for i in range(0, len(reply) - 3, 4):
        kind, status, started, progressed = (
            v.decode() if isinstance(v, bytes) else str(v) for v in reply[i:i + 4])
        counts, stalled = found.setdefault(kind or jobs.KIND,
                                           (dict.fromkeys(ACTIVE_STATES, 0), 0.0))
        counts[status] = counts.get(status, 0) + 1
        stamps = [float(s) for s in (started, progressed) if s]
        if status == "running" and stamps:
            stalled = max(stalled, now - max(stamps))
        found[kind or jobs.KIND] = (counts, stalled)
    return found


class BacklogExporter(Periodic):
    """Refreshes the gauges of the pools' queues and of the active jobs every ``interval``
    s, workers or not, and puts back what dead workers were pulling from the queues
    (``services.common.pullers``).

    ``queue_kinds``: each queue, to the kind of the pool consuming it (a label of the gauges).
    """

    name = "inferq-backlog-exporter"

    def __init__(
        self, client: aioredis.Redis, queue_kinds: Mapping[str, str], interval: float = 5.0
    ) -> None:
        super().__init__(interval)
        self._client = client
        self._kinds = dict(queue_kinds)
        # Kinds of jobs seen: their gauges fall back to 0 when their last job ends.
        self._job_kinds: set[str] = {jobs.KIND, training_jobs.KIND}

    async def tick(self) -> None:
        await self.refresh()

    async def refresh(self) -> None:
        try:
            backlog, memory, active = await read_redis(
                self._client, self._kinds, memory=True, active_jobs=True)
            # A pool scaled to zero has no worker to put back what a dead one was pulling,
            # and KEDA does not count pulling lists: the API does it.
            await sweep_queues(self._client, self._kinds)
            trained: dict[Any, Any] = await self._client.hgetall(keys.TRAINING_METRICS)
        except (RedisError, OSError):
            REDIS_UP.set(0)
            return
        REDIS_UP.set(1)
        REDIS_MEMORY_USED.set(memory.get("used_memory", 0))
        REDIS_MEMORY_MAX.set(memory.get("maxmemory", 0))
        for queue, (waiting, inflight) in backlog.items():
            QUEUE_WAITING.labels(queue, self._kinds[queue]).set(waiting)
            QUEUE_INFLIGHT.labels(queue, self._kinds[queue]).set(inflight)
        found = job_gauges(active, time.time(), self._job_kinds)
        self._job_kinds |= set(found)
        for kind, (counts, stalled) in found.items():
            for status, count in counts.items():
                JOBS.labels(kind, status).set(count)
            JOB_STALLED.labels(kind).set(max(0.0, stalled))
        for model, metrics in trained.items():
            for metric, value in orjson.loads(metrics).items():
                TRAINING_METRIC.labels(model.decode() if isinstance(model, bytes) else model,
                                       metric).set(value)
