"""Batch job records in Redis, and the scripts that move them.

A job is one hash (``keys.job_key``), listed in ``keys.JOBS_INDEX`` and in its tenant's own
index (``keys.tenant_jobs_index``). Its progress and its end are counters in that hash,
moved by the scripts below in the same round trip that acknowledges a chunk's message:
nothing counts on a worker staying alive, and no chord or result backend is involved. A
chunk is counted once: the script adds it to the job's done set (``keys.job_done_key``) and
only a newly added chunk moves the counters, so a chunk run again after its worker died
changes nothing but its (identical) output files.

States: queued -> running -> succeeded | failed, or queued | running -> cancelled. The
scripts that end a job publish its end on the channels its ``notify`` names, as task
records do (``services.common.records``): ``GET ?wait=`` uses the same waiter. Where a
job's outputs live: ``services.common.job_outputs``.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from services.common import keys
from services.common.job_outputs import csv_header
from services.common.records import ALLOW_OOM, HSET_JSON, decoded, rfc3339
from services.common.tenants import DEFAULT_TENANT

KIND = "batch"

# The end of a job, shared by the scripts that end one: KEYS[1] record, KEYS[2] done set;
# ``ttl``, ``job_id`` and ``status`` are set by the caller. Refreshes the record's time to
# live from its end, takes the job out of the active set and tells the waiting API
# processes. Training jobs (``services.common.training_jobs``) end the same way.
FINISH_FUNCTION = """
local function finish(status, now, ttl, job_id)
  redis.call('HSET', KEYS[1], 'status', status, 'finished_at', now)
  redis.call('SREM', '""" + keys.JOBS_ACTIVE + """', job_id)
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
  local notify = redis.call('HGET', KEYS[1], 'notify')
  if notify then
    redis.call('HDEL', KEYS[1], 'notify')
    local event = job_id .. '\\n' .. cjson.encode(redis.call('HGETALL', KEYS[1]))
    for channel in string.gmatch(notify, '%S+') do
      redis.call('PUBLISH', channel, event)
    end
  end
end
"""

# KEYS: record, index, queue, and the tenant's index of the job's kind
# (``keys.tenant_jobs_index``; a caller may leave it out); ARGV: ttl, the record as a JSON
# object of strings, the submit time (the indexes' score), job id, then one message per
# chunk, in chunk order. Writes the record, indexes it and enqueues every chunk atomically:
# a job is never half submitted. The job joins ``keys.JOBS_ACTIVE`` until it ends.
SUBMIT_SCRIPT = "#!lua\n" + HSET_JSON + """
hset_json(ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
if KEYS[4] then
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[4])
  redis.call('SADD', '""" + keys.TENANT_JOBS_INDEXES + """', KEYS[4])
end
redis.call('SADD', '""" + keys.JOBS_ACTIVE + """', ARGV[4])
for i = 5, #ARGV do
  redis.call('LPUSH', KEYS[3], ARGV[i])
end
return #ARGV - 4
"""

# KEYS: record, done set, attempts; ARGV: now, chunk. Returns {status, attempts, done}:
# ``running`` when the chunk should run (the job is marked running on its first chunk),
# how often the chunk was started, and 1 when its outputs are already written and
# counted (it was run before its worker died).
START_SCRIPT = ALLOW_OOM + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing', 0, 0} end
if status ~= 'queued' and status ~= 'running' then return {status, 0, 0} end
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1])
end
local attempts = redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
local ttl = redis.call('TTL', KEYS[1])
if ttl > 0 then redis.call('EXPIRE', KEYS[3], ttl) end
return {'running', attempts, redis.call('SISMEMBER', KEYS[2], ARGV[2])}
"""

# KEYS: record, done set; ARGV: chunk, rows done, rows rejected, output bytes, now, ttl,
# job id. Counts the chunk once; after the last one ends the job: failed when more rows
# were rejected than the job allows, else succeeded, or ``assemble`` for a parquet output,
# which the caller assembles and then ends with FINISH_SCRIPT. Returns {outcome, added,
# ended}: the job's status (or ``assemble``, or ``missing``), 1 when this call counted the
# chunk, 1 when it ended the job. A chunk counted stamps the record's ``progressed_at``
# (the API's exporter tells stalled jobs by it).
CHUNK_DONE_SCRIPT = ALLOW_OOM + FINISH_FUNCTION + """
local found = redis.call('HMGET', KEYS[1], 'status', 'chunks_total', 'max_failed_rows',
                         'format')
local status = found[1]
if not status then return {'missing', 0, 0} end
if status ~= 'queued' and status ~= 'running' then return {status, 0, 0} end
local added = redis.call('SADD', KEYS[2], ARGV[1])
if added == 1 then
  redis.call('HINCRBY', KEYS[1], 'rows_done', ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'rows_failed', ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'output_bytes', ARGV[4])
  redis.call('HINCRBY', KEYS[1], 'chunks_done', 1)
  redis.call('HSET', KEYS[1], 'progressed_at', ARGV[5])
  local ttl = redis.call('TTL', KEYS[1])
  if ttl > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
end
local counts = redis.call('HMGET', KEYS[1], 'chunks_done', 'rows_failed', 'rows_total')
if tonumber(counts[1]) < tonumber(found[2]) then return {status, added, 0} end
local failed, allowed = tonumber(counts[2]), tonumber(found[3])
if failed > allowed then
  redis.call('HSET', KEYS[1], 'error', cjson.encode({
    type = 'TooManyRejectedRows', code = 'too_many_rejected_rows',
    message = string.format('%d of %d rows were rejected, more than max_failed_rows (%d); '
      .. 'GET /v1/batch-jobs/%s/errors lists them', failed, tonumber(counts[3]), allowed,
      ARGV[7])}))
  finish('failed', ARGV[5], ARGV[6], ARGV[7])
  return {'failed', added, 1}
end
if found[4] == 'parquet' then return {'assemble', added, 0} end
finish('succeeded', ARGV[5], ARGV[6], ARGV[7])
return {'succeeded', added, 1}
"""

# KEYS: record, done set; ARGV: status, now, ttl, job id, error (JSON, or empty), output
# bytes (or empty). Ends a job not yet ended: after a parquet output is assembled, or
# when a chunk fails it. Returns {status, ended}: the status it ended with (ended 1), else
# the one it found.
FINISH_SCRIPT = ALLOW_OOM + FINISH_FUNCTION + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing', 0} end
if status ~= 'queued' and status ~= 'running' then return {status, 0} end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'output_bytes', ARGV[6]) end
finish(ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return {ARGV[1], 1}
"""

# KEYS: record, done set; ARGV: now, ttl, job id. Returns {cancelled now?, status}. Chunks
# not yet started find the job cancelled and skip; those running finish uncounted.
CANCEL_SCRIPT = ALLOW_OOM + FINISH_FUNCTION + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {0, 'missing'} end
if status ~= 'queued' and status ~= 'running' then return {0, status} end
finish('cancelled', ARGV[1], ARGV[2], ARGV[3])
return {1, 'cancelled'}
"""


@dataclass(frozen=True)
class Chunk:
    """One message of the batch queue: which rows of which job, and what the job asks
    (the API builds it, a batch worker runs it)."""

    job_id: str
    chunk: int
    start: int
    stop: int
    model: str
    version: int
    dataset_id: str
    input_format: str
    output_format: str
    id_column: str | None
    passthrough: tuple[str, ...]
    return_probabilities: bool
    submitted_at: float
    #: The tenant whose part of the model store holds the model (``tenants``).
    tenant: str = DEFAULT_TENANT

    @classmethod
    def from_message(cls, kwargs: dict[str, Any]) -> Chunk:
        return cls(
            job_id=kwargs["job_id"],
            chunk=int(kwargs["chunk"]),
            start=int(kwargs["start"]),
            stop=int(kwargs["stop"]),
            model=kwargs["model"],
            version=int(kwargs["version"]),
            dataset_id=kwargs["dataset_id"],
            input_format=kwargs["input_format"],
            output_format=kwargs["output_format"],
            id_column=kwargs.get("id_column"),
            passthrough=tuple(kwargs.get("passthrough") or ()),
            return_probabilities=bool(kwargs.get("return_probabilities")),
            submitted_at=float(kwargs.get("submitted_at", 0.0)),
            tenant=kwargs.get("tenant") or DEFAULT_TENANT,
        )

    def message_kwargs(self) -> dict[str, Any]:
        kwargs = {
            "job_id": self.job_id, "chunk": self.chunk, "start": self.start, "stop": self.stop,
            "model": self.model, "version": self.version, "dataset_id": self.dataset_id,
            "input_format": self.input_format, "output_format": self.output_format,
            "id_column": self.id_column, "passthrough": list(self.passthrough),
            "return_probabilities": self.return_probabilities,
            "submitted_at": self.submitted_at,
        }
        if self.tenant != DEFAULT_TENANT:
            kwargs["tenant"] = self.tenant
        return kwargs

    @property
    def rows(self) -> int:
        return self.stop - self.start

    def columns(self, features: list[str]) -> list[str]:
        """The dataset columns the chunk reads: features, id and passthrough columns."""
        wanted = [*features, *(c for c in (self.id_column, *self.passthrough) if c)]
        return list(dict.fromkeys(wanted))


def job_keys(job_id: str) -> list[str]:
    """KEYS of the scripts that end a job: its record and its done set."""
    return [keys.job_key(job_id), keys.job_done_key(job_id)]




def chunk_bounds(rows: int, chunk_rows: int, starts: Sequence[int] = ()) -> list[tuple[int, int]]:
    """Rows [start, stop) of each chunk, about ``chunk_rows`` rows each.

    ``starts`` are the rows where a reader can begin without reading what precedes them (the
    dataset's index entries; a Parquet file's row groups). A chunk ends on the last of them
    within ``chunk_rows``, else (when it starts on one) on the next within twice that, so no
    block is read by two chunks; with none near, it ends at ``chunk_rows`` (a block larger
    than that is then read by each of its chunks: the job still spreads over the workers)."""
    blocks = set(starts)
    cuts = sorted({s for s in blocks if 0 < s < rows} | {rows})
    bounds: list[tuple[int, int]] = []
    start = 0
    while start < rows:
        ideal = start + chunk_rows
        if ideal >= rows:
            bounds.append((start, rows))
            break
        below = bisect.bisect_right(cuts, ideal)
        if below and cuts[below - 1] > start:
            cut = cuts[below - 1]
        elif start in blocks and below < len(cuts) and cuts[below] <= ideal + chunk_rows:
            cut = cuts[below]
        else:
            cut = ideal
        bounds.append((start, cut))
        start = cut
    return bounds














def new_job_record(
    *, model: str, version: int, alias: str | None = None, dataset_id: str, queue: str,
    input_format: str,
    output_format: str, id_column: str | None, passthrough: Sequence[str],
    columns: Sequence[str], return_probabilities: bool, max_failed_rows: int, rows: int,
    chunks: int, chunk_rows: int, trace_id: str | None, now: float, notify: str | None,
) -> dict[str, str]:
    """A queued job's record, as strings."""
    record = {
        "status": "queued",
        "kind": KIND,
        "model": model,
        "version": str(version),
        "dataset_id": dataset_id,
        "queue": queue,
        "input_format": input_format,
        "format": output_format,
        "passthrough": orjson.dumps(list(passthrough)).decode(),
        "columns": orjson.dumps(list(columns)).decode(),
        "return_probabilities": "1" if return_probabilities else "0",
        "max_failed_rows": str(max_failed_rows),
        "rows_total": str(rows),
        "rows_done": "0",
        "rows_failed": "0",
        "chunks_total": str(chunks),
        "chunks_done": "0",
        "chunk_rows": str(chunk_rows),
        # A csv output's header is counted from the start.
        "output_bytes": str(len(csv_header(columns)) if output_format == "csv" else 0),
        "submitted_at": repr(now),
    }
    if alias:
        record["alias"] = alias
    if id_column:
        record["id_column"] = id_column
    if trace_id:
        record["trace_id"] = trace_id
    if notify:
        record["notify"] = notify
    return record


def strings(raw: Mapping[Any, Any]) -> dict[str, str]:
    """A record as Redis returned it (bytes or text), as text."""
    return {decoded(k): decoded(v) for k, v in raw.items()}


def to_public(job_id: str, raw: Mapping[Any, Any]) -> dict[str, Any]:
    """The job as the REST API shows it, from the hash Redis returned."""
    record = strings(raw)
    done, failed = int(record.get("rows_done", 0)), int(record.get("rows_failed", 0))
    succeeded = record["status"] == "succeeded"
    return {
        "job_id": job_id,
        "kind": record.get("kind", KIND),
        "model": record.get("model"),
        "version": int(record["version"]) if record.get("version") else None,
        # The alias the version was found through; None for a version named or the latest.
        "alias": record.get("alias"),
        "dataset_id": record.get("dataset_id"),
        "status": record["status"],
        "progress": {
            "rows_total": int(record.get("rows_total", 0)),
            "rows_done": done,
            "rows_failed": failed,
            "chunks_total": int(record.get("chunks_total", 0)),
            "chunks_done": int(record.get("chunks_done", 0)),
        },
        "submitted_at": rfc3339(record.get("submitted_at")),
        "started_at": rfc3339(record.get("started_at")),
        "finished_at": rfc3339(record.get("finished_at")),
        "error": orjson.loads(record["error"]) if record.get("error") else None,
        "output": {
            "format": record.get("format"),
            "rows": done - failed if succeeded else None,
            "bytes": int(record.get("output_bytes", 0)) if succeeded else None,
        },
        "id_column": record.get("id_column"),
        "passthrough_columns": orjson.loads(record.get("passthrough", "[]")),
        "return_probabilities": record.get("return_probabilities") == "1",
        "max_failed_rows": int(record.get("max_failed_rows", 0)),
        "trace_id": record.get("trace_id"),
    }
