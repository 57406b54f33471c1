"""Submitting, reading, waiting for, listing, cancelling and sweeping batch jobs in Redis.

A submit checks the job against its model's metadata and its dataset's columns, then writes
the job's record and one message per chunk on the batch queue in one Lua script. Waiting
uses the tasks' waiter: the scripts that end a job publish its end like a task's.

A job is its tenant's (the record's ``tenant``): every read, wait and listing names the
caller's tenant, and another tenant's job reads as one that does not exist. A job uses only
its tenant's datasets.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from opentelemetry.trace import SpanKind
from redis.exceptions import RedisError

from services.api.errors import DatasetNotFound, StorageUnavailable, UnfitColumns
from services.api.periodic import Periodic
from services.api.schemas import BatchJobRequest
from services.api.tracing import RequestTrace
from services.api.waiter import TaskWaiter, woken
from services.common import job_outputs, jobs, keys
from services.common.catalog import ModelMetadata
from services.common.datasets import Dataset, get_dataset
from services.common.messages import BATCH_CHUNK_TASK, build_message
from services.common.metrics import JOB_SECONDS, JOBS_FINISHED, series
from services.common.records import TERMINAL, WATCH_SCRIPT, decoded, pairs
from services.common.settings import Settings
from services.common.storage import Storage, StorageError
from services.common.telemetry import inject, tracer
from services.common.tenants import DEFAULT_TENANT, owned_by, tenant_of

log = logging.getLogger(__name__)

#: Jobs one listing reads at a time from its tenant's index, newest first, before filtering:
#: it reads on until it has its ``limit`` or the index ends.
LIST_SCAN = 1000

#: How far back in submit time, in seconds, each pass of ``JobService.index_older`` looks
#: again past the previous one: a job another API process submitted without indexing it
#: for its tenant, as the processes' clocks differ.
INDEX_OVERLAP = 300.0


class JobService:
    """Batch jobs; the base of the other kinds' services (``TrainingService``), which share
    the jobs' index, reads and waits."""

    #: The jobs this service answers for: the ``kind`` of their records.
    kind = jobs.KIND

    def __init__(self, client: aioredis.Redis, settings: Settings, waiter: TaskWaiter,
                 storage: Callable[[], Storage]) -> None:
        """``storage`` gives the API's store, or raises while it cannot be used."""
        self._client = client
        self._settings = settings
        self._ttl = settings.job_retention_seconds
        self._waiter = waiter
        self._storage = storage
        self._submit = client.register_script(jobs.SUBMIT_SCRIPT)
        self._cancel = client.register_script(jobs.CANCEL_SCRIPT)
        self._watch = client.register_script(WATCH_SCRIPT)
        #: Submit times up to which ``index_older`` indexed every job for its tenant.
        self._indexed_until = float("-inf")

    async def dataset(self, dataset_id: str, tenant: str) -> Dataset:
        """``tenant``'s dataset; a 404 when it has none of that id."""
        dataset = await get_dataset(self._client, dataset_id, tenant)
        if dataset is None:
            raise DatasetNotFound(
                f"no dataset {dataset_id!r}; GET /v1/datasets lists the datasets",
                {"dataset_id": dataset_id})
        return dataset

    async def submit(self, metadata: ModelMetadata, dataset: Dataset, body: BatchJobRequest,
                     trace: RequestTrace | None = None, owner: str = DEFAULT_TENANT,
                     alias: str | None = None) -> dict[str, Any]:
        """Record the dataset's tenant's job and queue its chunks in one round trip; the
        queued job. ``owner`` is the tenant whose part of the store holds the model;
        ``alias`` the alias the version was found through (None: pinned, or the latest)."""
        columns = check_columns(metadata, dataset, body)
        job_id = str(uuid.uuid4())
        now = time.time()
        queue = self._settings.batch_queue
        output_format = body.output_format or dataset.format
        bounds = jobs.chunk_bounds(dataset.rows, self._settings.batch_chunk_rows,
                                   [row for row, _ in dataset.index])
        record = jobs.new_job_record(
            model=metadata.name, version=metadata.version, alias=alias,
            dataset_id=dataset.dataset_id,
            queue=queue, input_format=dataset.format, output_format=output_format,
            id_column=body.id_column, passthrough=body.passthrough_columns, columns=columns,
            return_probabilities=body.return_probabilities,
            max_failed_rows=body.max_failed_rows, rows=dataset.rows, chunks=len(bounds),
            chunk_rows=bounds[0][1] - bounds[0][0], now=now, notify=None,
            trace_id=trace.trace_id if trace else None,
        )
        record["tenant"] = dataset.tenant
        chunks = [
            jobs.Chunk(job_id, i, start, stop, metadata.name, metadata.version,
                       dataset.dataset_id, dataset.format, output_format, body.id_column,
                       tuple(body.passthrough_columns), body.return_probabilities, now, owner)
            for i, (start, stop) in enumerate(bounds)
        ]
        if trace is not None and trace.sampled:
            # One trace a job: every chunk's consumer span is a child of this one.
            with tracer().start_as_current_span("inferq.enqueue", kind=SpanKind.PRODUCER,
                                                attributes={
                    "inferq.job_id": job_id, "inferq.model": metadata.name,
                    "messaging.destination.name": queue, "inferq.rows": dataset.rows,
                    "inferq.chunks": len(chunks)}):
                await self._enqueue(job_id, queue, record, chunks, inject())
        else:
            await self._enqueue(job_id, queue, record, chunks, trace.headers if trace else {})
        return jobs.to_public(job_id, record)

    async def _enqueue(self, job_id: str, queue: str, record: dict[str, str],
                       chunks: list[jobs.Chunk], headers: dict[str, str]) -> None:
        messages = [
            build_message(BATCH_CHUNK_TASK, f"{job_id}-{c.chunk:06d}", queue,
                          c.message_kwargs(), headers)
            for c in chunks
        ]
        await self._submit(
            keys=self.submit_keys(job_id, queue, record),
            args=[self._ttl, orjson.dumps(record), repr(float(record["submitted_at"])),
                  job_id, *messages])

    def submit_keys(self, job_id: str, queue: str, record: dict[str, str]) -> list[str]:
        """KEYS of ``jobs.SUBMIT_SCRIPT`` for a job of this kind: its record, the jobs'
        index, its queue and its tenant's index."""
        return [keys.job_key(job_id), keys.JOBS_INDEX, keys.queue_key(queue),
                keys.tenant_jobs_index(tenant_of(record), self.kind)]

    def public(self, job_id: str, record: dict[str, str]) -> dict[str, Any]:
        """The job as the REST API shows it."""
        return jobs.to_public(job_id, record)

    def _own(self, record: dict[str, str]) -> bool:
        return record.get("kind", jobs.KIND) == self.kind

    async def record(self, job_id: str, tenant: str) -> dict[str, str] | None:
        """``tenant``'s job's record; None when unknown, expired, of another kind or
        another tenant's."""
        raw = await self._client.hgetall(keys.job_key(job_id))
        record = jobs.strings(raw) if raw else None
        return record if record and self._own(record) and owned_by(record, tenant) else None

    async def get(self, job_id: str, tenant: str, wait: float = 0) -> dict[str, Any] | None:
        """``tenant``'s job, waiting up to ``wait`` s for its end; None when unknown."""
        if wait <= 0:
            record = await self.record(job_id, tenant)
            return self.public(job_id, record) if record else None
        deadline = time.monotonic() + wait
        with self._waiter.watch(job_id) as ended:
            # Read the record and, unless it ended (or is another tenant's), have its end
            # told to this process.
            raw = jobs.strings(pairs(await self._watch(keys=[keys.job_key(job_id)],
                                                       args=[self._waiter.channel, tenant])))
            if not raw or not self._own(raw):
                return None
            if raw["status"] in TERMINAL:
                return self.public(job_id, raw)
            done = await woken(ended, wait)
            carried = ended.result() if done else None
        if carried is not None:
            return self.public(job_id, jobs.strings(carried))
        # As a task's wait (``TaskService.get``): woken without the record, wait out the rest.
        return await self.get(job_id, tenant, deadline - time.monotonic() if done else 0)

    async def list(self, tenant: str, status: str | None, model: str | None,
                   limit: int) -> list[dict[str, Any]]:
        """``tenant``'s jobs newest first, of ``status`` and ``model`` when given: read
        from the tenant's own index of this kind, ``LIST_SCAN`` at a time, so that only
        the tenant's own jobs are read however many others there are."""
        index = keys.tenant_jobs_index(tenant, self.kind)
        listed: list[dict[str, Any]] = []
        seen: set[str] = set()
        start = 0
        while len(listed) < limit:
            page: Any = await self._client.zrevrange(index, start, start + LIST_SCAN - 1)
            if not page:
                break
            start += len(page)
            # A job submitted meanwhile shifts the page down: one already listed comes again.
            ids = [i for i in map(decoded, page) if i not in seen]
            seen.update(ids)
            async with self._client.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hgetall(keys.job_key(job_id))
                found = await pipe.execute()
            for job_id, raw in zip(ids, found, strict=True):
                if not raw:
                    continue  # Expired: the sweep drops it from the index.
                record = jobs.strings(raw)
                if not self._own(record) or not owned_by(record, tenant) \
                        or (status and record["status"] != status) \
                        or (model and record["model"] != model):
                    continue
                listed.append(self.public(job_id, record))
                if len(listed) >= limit:
                    break
        return listed

    async def index_older(self) -> int:
        """Add to its tenant's index each job of ``keys.JOBS_INDEX`` submitted since the
        previous call (every job, the first time) that is in none: those an API of a
        release without the tenants' indexes submitted. How many it added."""
        low: float = self._indexed_until - INDEX_OVERLAP
        now = time.time()
        added = 0
        # ``LIST_SCAN`` at a time by submit time from ``low``; those at ``low`` itself that
        # were read already are skipped.
        at_low: set[str] = set()
        while True:
            found: Any = await self._client.zrangebyscore(
                keys.JOBS_INDEX, low, "+inf", start=0, num=LIST_SCAN + len(at_low),
                withscores=True)
            page = [(decoded(i), score) for i, score in found if decoded(i) not in at_low]
            if not page:
                break
            added += await self._index(page)
            top = page[-1][1]
            at_low = {i for i, score in page if score == top} | (at_low if top == low else set())
            low = top
        self._indexed_until = now
        return added

    async def _index(self, page: Sequence[tuple[str, float]]) -> int:
        """Add each job of ``page`` (id, submit time) that still has a record to its
        tenant's index of its kind; how many were not there."""
        async with self._client.pipeline(transaction=False) as pipe:
            for job_id, _ in page:
                pipe.hmget(keys.job_key(job_id), "status", "kind", "tenant")
            found = await pipe.execute()
        async with self._client.pipeline(transaction=False) as pipe:
            for (job_id, score), (status, kind, tenant) in zip(page, found, strict=True):
                if status is None:
                    continue  # Expired.
                index = keys.tenant_jobs_index(decoded(tenant) if tenant else DEFAULT_TENANT,
                                               decoded(kind) if kind else jobs.KIND)
                pipe.zadd(index, {job_id: score}, nx=True)
                pipe.sadd(keys.TENANT_JOBS_INDEXES, index)
            results = await pipe.execute()
        return sum(results[::2])

    async def cancel(self, job_id: str) -> tuple[bool, str]:
        """Whether this call cancelled the job, and its status (``missing`` when unknown)."""
        cancelled, status = await self._cancel(
            keys=jobs.job_keys(job_id), args=[repr(time.time()), self._ttl, job_id])
        return bool(cancelled), decoded(status)

    def results(self, job_id: str, record: dict[str, str]) -> AsyncIterator[bytes]:
        """The job's output file: the parquet file, or the parts in chunk order. The store
        is opened first, so that one that cannot be used is a 503 before any byte goes."""
        return _results(self._storage(), job_id, record)

    async def errors(self, job_id: str) -> AsyncIterator[bytes]:
        """The rejected rows so far, in row order (chunk by chunk)."""
        storage = self._storage()
        parts = await asyncio.to_thread(storage.list, job_outputs.errors_prefix(job_id))
        return _objects(storage, parts)

    async def sweep(self, now: float | None = None) -> int:
        """Delete the outputs of jobs whose records expired; how many jobs were swept.

        Only jobs submitted a retention period ago can have expired (a record's time to
        live runs from its submit, and again from its end), so the index says which to
        look at.
        """
        cutoff = (now or time.time()) - self._ttl
        tenants: Any = await self._client.smembers(keys.TENANT_JOBS_INDEXES)
        for index in sorted(map(decoded, tenants)):
            gone = await _expired(self._client, index, cutoff)
            if gone:
                await self._client.zrem(index, *gone)
        expired = await _expired(self._client, keys.JOBS_INDEX, cutoff)
        for job_id in expired:
            await asyncio.to_thread(self._storage().delete_prefix, job_outputs.job_prefix(job_id))
            await self._client.zrem(keys.JOBS_INDEX, job_id)
        return len(expired)


async def _expired(client: aioredis.Redis, index: str, cutoff: float) -> list[str]:
    """The jobs of ``index`` submitted by ``cutoff`` whose records expired."""
    old: Any = await client.zrangebyscore(index, "-inf", cutoff)
    candidates = [decoded(i) for i in old]
    if not candidates:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for job_id in candidates:
            pipe.exists(keys.job_key(job_id))
        alive = await pipe.execute()
    return [j for j, live in zip(candidates, alive, strict=True) if not live]


async def _results(storage: Storage, job_id: str,
                   record: dict[str, str]) -> AsyncIterator[bytes]:
    fmt = record["format"]
    if fmt == "parquet":
        keys_ = [job_outputs.result_key(job_id)]
    else:
        if fmt == "csv":
            yield job_outputs.csv_header(orjson.loads(record["columns"]))
        keys_ = [job_outputs.part_key(job_id, chunk, fmt)
                 for chunk in range(int(record["chunks_total"]))]
    async for data in _objects(storage, keys_):
        yield data


async def _objects(storage: Storage, keys_: list[str]) -> AsyncIterator[bytes]:
    """The objects at ``keys_``, one after the other, streamed."""
    for key in keys_:
        async for data in storage.astream(key):
            yield data


def check_columns(metadata: ModelMetadata, dataset: Dataset,
                  body: BatchJobRequest) -> list[str]:
    """The output's columns, once the dataset has every column the job needs; a 422 that
    names the columns otherwise."""
    have = {c.name for c in dataset.columns}
    where = {"model": metadata.name, "version": metadata.version,
             "dataset_id": dataset.dataset_id}
    missing = [f for f in metadata.feature_names if f not in have]
    if missing:
        raise UnfitColumns(
            f"dataset {dataset.dataset_id} lacks the column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(repr, missing))} that {metadata.name} v{metadata.version} takes "
            f"as features; its features are {', '.join(metadata.feature_names)}",
            {**where, "missing_columns": missing})
    named = [c for c in (body.id_column, *body.passthrough_columns) if c]
    unknown = [c for c in named if c not in have]
    if unknown:
        raise UnfitColumns(
            f"dataset {dataset.dataset_id} has no column "
            f"{', '.join(map(repr, unknown))}; its columns are "
            f"{', '.join(c.name for c in dataset.columns)}",
            {**where, "unknown_columns": unknown})
    if dataset.rows == 0:
        raise UnfitColumns(f"dataset {dataset.dataset_id} has no rows to score", where)
    probabilities = body.return_probabilities and metadata.task == "classification"
    own = job_outputs.output_columns(None, (), metadata.classes, probabilities)
    clashing = [c for c in named if c in own]
    if clashing:
        raise UnfitColumns(
            f"column {clashing[0]!r} would appear twice in the output, whose own columns "
            f"are {', '.join(own)}; rename it in the dataset",
            {**where, "clashing_columns": clashing})
    repeated = [c for i, c in enumerate(body.passthrough_columns)
                if c in body.passthrough_columns[:i]]
    if repeated:
        raise UnfitColumns(f"passthrough_columns names {repeated[0]!r} twice; name it once",
                           {**where, "repeated_columns": repeated})
    return job_outputs.output_columns(body.id_column, body.passthrough_columns, metadata.classes,
                               probabilities)


class JobSweeper(Periodic):
    """Deletes the outputs of expired jobs every ``interval`` s (``JobService.sweep``), after
    indexing for their tenants the jobs submitted without (``JobService.index_older``):
    at the API's start, every job kept."""

    name = "inferq-job-sweeper"

    def __init__(self, jobs_: JobService, interval: float) -> None:
        super().__init__(interval)
        self._jobs = jobs_

    async def tick(self) -> None:
        try:
            indexed = await self._jobs.index_older()
        except (RedisError, OSError) as exc:
            log.warning("indexing jobs for their tenants failed; retrying at the next sweep",
                        extra={"error": repr(exc)})
        else:
            if indexed:
                log.info("older jobs indexed for their tenants", extra={"jobs": indexed})
        try:
            swept = await self._jobs.sweep()
        except (RedisError, OSError, StorageError, StorageUnavailable) as exc:
            log.warning("job sweep failed; retrying at the next", extra={"error": repr(exc)})
            return
        if swept:
            log.info("expired jobs' outputs deleted", extra={"jobs": swept})


def observe_cancelled(kind: str, model: str, record: dict[str, str]) -> None:
    """Count a job the API just cancelled (its workers count the jobs that end otherwise)."""
    series(JOBS_FINISHED, kind, model, "cancelled").inc()
    series(JOB_SECONDS, kind, model).observe(
        max(0.0, float(record["finished_at"]) - float(record["submitted_at"])))
