"""Running one chunk of a batch job: read its rows, score them, write its parts, count it.

A chunk's outputs are written to storage under keys fixed by the job and the chunk, each
object whole (``Storage.put``), so a chunk run again after its worker died writes the same
objects again. It is then counted by ``CHUNK_DONE_SCRIPT`` in the round trip that
acknowledges its message: a worker that dies before that round trip leaves the message to
be restored and the chunk to be run again; one that dies after has nothing left to do. The
chunk that completes a parquet job assembles the single output file before the job is
marked succeeded, acknowledging its message only then.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import redis
from redis.client import Pipeline

from ml.errors import ModelError
from ml.store import ModelCache
from services.common import job_outputs, jobs, keys
from services.common.datasets import load_dataset, read_rows
from services.common.heap import give_back_free_memory
from services.common.jobs import Chunk
from services.common.metrics import (
    BATCH_CHUNK_SECONDS,
    BATCH_ROWS,
    JOB_SECONDS,
    JOBS_FINISHED,
    series,
)
from services.common.records import decoded
from services.common.storage import NotFound, Storage, Writer
from services.common.telemetry import tracer
from services.worker import task_errors
from services.worker.broker import ScriptPipeline, acknowledge_in
from services.worker.scoring import Options, encode, encode_rejections, score

log = logging.getLogger(__name__)


class ChunkRunner:
    """Runs chunks in one worker process: its Redis client, storage and model cache."""

    def __init__(self, client: redis.Redis, storage: Storage, cache: ModelCache, ttl: int,
                 queue: str) -> None:
        self._client = client
        self._storage = storage
        self._cache = cache
        self._ttl = ttl
        self._queue = queue
        self._scripts = ScriptPipeline(client, jobs.START_SCRIPT, jobs.CHUNK_DONE_SCRIPT,
                                       jobs.FINISH_SCRIPT)

    def run(self, chunk: Chunk, tag: str) -> None:
        """Run ``chunk`` unless its job ended; acknowledge its message once it is counted.

        An error raised here leaves the message unacknowledged (the worker hands it back);
        a chunk started ``task_errors.MAX_ATTEMPTS`` times fails its job instead.
        """
        started = time.time()
        status, attempts, done = self._start(chunk)
        if status != "running":
            log.info("chunk skipped", extra={"job_id": chunk.job_id, "chunk": chunk.chunk,
                                              "status": status})
            self._ack(tag)
            return
        if attempts > task_errors.MAX_ATTEMPTS:
            self.fail(chunk, task_errors.worker_lost(), tag)
            return
        try:
            counts = (0, 0, 0) if done else self._score(chunk, rerun=attempts > 1)
        except Exception as exc:
            if attempts < task_errors.MAX_ATTEMPTS and not _permanent(exc):
                raise
            log.exception("chunk failed; its job fails",
                          extra={"job_id": chunk.job_id, "chunk": chunk.chunk})
            self.fail(chunk, _chunk_error(chunk, exc), tag)
            return
        finally:
            # pyarrow's allocator and glibc's heap keep freed buffers for reuse: without
            # this, a child grows by a chunk's worth of rows with each new peak.
            pa.default_memory_pool().release_unused()
            give_back_free_memory()
        self._count(chunk, counts, tag, started)

    def _start(self, chunk: Chunk) -> tuple[str, int, bool]:
        replies = self._scripts.execute(lambda pipe: self._scripts.call(
            pipe, jobs.START_SCRIPT,
            [keys.job_key(chunk.job_id), keys.job_done_key(chunk.job_id),
             keys.job_attempts_key(chunk.job_id)],
            [repr(time.time()), chunk.chunk]))
        status, attempts, done = replies[0]
        return decoded(status), int(attempts), bool(int(done))

    def _score(self, chunk: Chunk, rerun: bool) -> tuple[int, int, int]:
        """Score the chunk and write its parts; (rows, rows rejected, output bytes)."""
        metadata, estimator = self._cache.get(chunk.model, chunk.version, chunk.tenant)
        dataset = load_dataset(self._client, chunk.dataset_id)
        if dataset is None:
            raise DatasetGone(f"dataset {chunk.dataset_id} was deleted while the job ran")
        table = read_rows(self._storage, dataset, chunk.start, chunk.stop,
                          chunk.columns(metadata.feature_names))
        options = Options(chunk.id_column, chunk.passthrough, chunk.return_probabilities)
        with tracer().start_as_current_span("inferq.model.predict", attributes={
                "inferq.model": chunk.model, "inferq.version": chunk.version,
                "inferq.rows": table.num_rows}):
            scored = score(table, metadata, estimator, options)
        part = encode(scored.output, chunk.output_format)
        self._storage.put(
            job_outputs.part_key(chunk.job_id, chunk.chunk, chunk.output_format), part)
        errors_key = job_outputs.errors_key(chunk.job_id, chunk.chunk)
        if scored.rejected:
            self._storage.put(errors_key,
                              encode_rejections(scored.rejected, bool(chunk.id_column)))
        elif rerun:
            self._storage.delete(errors_key)  # None now, whatever an earlier run wrote.
        return table.num_rows, len(scored.rejected), len(part)

    def _count(self, chunk: Chunk, counts: tuple[int, int, int], tag: str,
               started: float) -> None:
        rows, rejected, size = counts
        record = jobs.job_keys(chunk.job_id)
        args = [chunk.chunk, rows, rejected, size, repr(time.time()), self._ttl, chunk.job_id]
        # A parquet job's last chunk is acknowledged only once the output is assembled.
        ack_now = chunk.output_format != "parquet"

        def build(pipe: Pipeline) -> None:
            self._scripts.call(pipe, jobs.CHUNK_DONE_SCRIPT, record, args)
            if ack_now:
                acknowledge_in(pipe, self._queue, [tag])

        outcome, added, ended = self._scripts.execute(build)[0]
        outcome = decoded(outcome)
        if int(added):
            series(BATCH_ROWS, chunk.model, "scored").inc(rows - rejected)
            series(BATCH_ROWS, chunk.model, "rejected").inc(rejected)
            series(BATCH_CHUNK_SECONDS, chunk.model, self._queue).observe(
                time.time() - started)
        if int(ended):
            self._observe_end(chunk, outcome)
        if outcome == "assemble":
            self._assemble(chunk, tag)
        elif not ack_now:
            self._ack(tag)

    def _assemble(self, chunk: Chunk, tag: str) -> None:
        """Write a parquet job's parts as one file, then mark the job succeeded."""
        size = assemble_parquet(self._storage, chunk.job_id,
                                int(self._client.hget(keys.job_key(chunk.job_id),
                                                      "chunks_total") or 0))
        self._finish(chunk, "succeeded", None, size, tag)

    def fail(self, chunk: Chunk, error: dict[str, Any], tag: str | None) -> None:
        """End the chunk's job as failed with ``error`` (unless it ended), acknowledging
        the message ``tag`` in the same round trip."""
        self._finish(chunk, "failed", error, None, tag)

    def _finish(self, chunk: Chunk, status: str, error: dict[str, Any] | None,
                size: int | None, tag: str | None) -> None:
        args = [status, repr(time.time()), self._ttl, chunk.job_id,
                orjson.dumps(error) if error else "", "" if size is None else size]

        def build(pipe: Pipeline) -> None:
            self._scripts.call(pipe, jobs.FINISH_SCRIPT, jobs.job_keys(chunk.job_id), args)
            if tag is not None:
                acknowledge_in(pipe, self._queue, [tag])

        outcome, ended = self._scripts.execute(build)[0]
        if int(ended):
            self._observe_end(chunk, decoded(outcome))

    def _ack(self, tag: str) -> None:
        pipe = self._client.pipeline(transaction=False)
        acknowledge_in(pipe, self._queue, [tag])
        pipe.execute()

    def _observe_end(self, chunk: Chunk, status: str) -> None:
        log.info("batch job ended", extra={"job_id": chunk.job_id, "status": status})
        series(JOBS_FINISHED, jobs.KIND, chunk.model, status).inc()
        if chunk.submitted_at:
            series(JOB_SECONDS, jobs.KIND, chunk.model).observe(
                max(0.0, time.time() - chunk.submitted_at))


class DatasetGone(Exception):
    """The job's dataset was deleted while the job ran."""


def _permanent(exc: BaseException) -> bool:
    """Errors no second run mends: a dataset or its file gone, a model missing or refused."""
    return isinstance(exc, DatasetGone | NotFound | ModelError | FileNotFoundError)


def _chunk_error(chunk: Chunk, exc: BaseException) -> dict[str, str]:
    error = task_errors.from_exception(exc)
    error["message"] = f"chunk {chunk.chunk} (rows {chunk.start} to {chunk.stop - 1}): " \
                       f"{error['message']}"
    return error


def assemble_parquet(storage: Storage, job_id: str, chunks: int) -> int:
    """Write the parts of ``job_id`` as one parquet file, part by part; its size."""
    parts = [job_outputs.part_key(job_id, i, "parquet") for i in range(chunks)]
    schemas = [pq.read_schema(storage.open(key)) for key in parts]
    schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas \
        else pa.schema([])
    key = job_outputs.result_key(job_id)
    with storage.writer(key) as writer, \
            pq.ParquetWriter(_WriteOnly(writer), schema) as parquet:
        for part in parts:
            parquet.write_table(pq.read_table(storage.open(part)).cast(schema))
    return writer.bytes_written


class _WriteOnly:
    """A file-like sink over a storage writer, as pyarrow takes one."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self.closed = False

    def write(self, data: bytes) -> int:
        self._writer.write(bytes(data))
        return len(data)

    def tell(self) -> int:
        return self._writer.bytes_written

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True
