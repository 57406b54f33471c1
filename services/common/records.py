"""Task records in Redis: one hash a task, moved between states by atomic Lua scripts.

A record is written when the API accepts a task, so an id the platform never issued (or
whose record expired) is unknown, never an eternal "queued". Its states run
queued -> running -> succeeded | failed, or queued -> cancelled; a lone cheap task run in a
worker's main process goes from queued straight to succeeded or failed.

A record's ``notify`` field lists, separated by spaces, the channels of the API processes
that have a request waiting for the task (``keys.events_channel``): the API that submits it
names its own when the request waits, and a ``GET ?wait=`` on any API process adds that
process's (``WATCH_SCRIPT``). The scripts that end a task publish its event on each of them,
and on none when nobody waits, so an API process hears only of the tasks it waits for; they
drop the field then (about an eighth of a finished record, kept for its whole TTL).

When Redis is full (``maxmemory`` reached; inferq runs it with ``noeviction``), the submit
is refused before it writes anything, and every other script still runs: they are flagged
``allow-oom`` (Redis 7+), so workers finish and acknowledge what was accepted (freeing its
message) and clients can still read and wait for their tasks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from services.common.tenants import DEFAULT_TENANT

#: The first line of a script Redis runs even when full: it finishes, cancels or reads work
#: already accepted, and adds little or frees more (a finish acknowledges the message).
#: Without it, a script is refused before it starts when Redis is at ``maxmemory``.
ALLOW_OOM = "#!lua flags=allow-oom"


#: The scripts' first lines (their flags) need Redis 7.0 or later.
MIN_REDIS_VERSION = (7, 0)


def unsupported_redis(server_info: Mapping[str, Any]) -> str | None:
    """Why the server whose ``INFO server`` is ``server_info`` cannot run inferq, or None."""
    version = str(server_info.get("redis_version", ""))
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return None  # No version to judge by: let it try.
    if (major, minor) < MIN_REDIS_VERSION:
        return (f"Redis {version} is too old: inferq needs Redis 7.0 or later "
                "(its Lua scripts declare flags)")
    return None


def unreachable_redis(error: BaseException) -> tuple[int, str]:
    """The log level and the line to log when Redis does not answer at start: a TLS
    certificate or a user's password refused is an error that says what to check (it will
    not pass by itself), anything else a warning with the error (Redis may be starting)."""
    text = str(error)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return logging.ERROR, ("Redis's TLS certificate is not signed by a trusted CA: set "
                               f"INFERQ_REDIS_CA_FILE to the CA bundle that signed it ({text})")
    if "WRONGPASS" in text or "invalid username-password" in text or "NOPERM" in text:
        return logging.ERROR, ("Redis refused the user or password of INFERQ_REDIS_URL and "
                               f"INFERQ_REDIS_PASSWORD ({text})")
    return logging.WARNING, f"Redis does not answer yet ({text})"


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL: frozenset[str] = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})

#: Lua: writes KEYS[1], a hash, from ``json``, a JSON object of strings.
HSET_JSON = """
local function hset_json(json)
  local fields = {}
  for name, value in pairs(cjson.decode(json)) do
    fields[#fields + 1] = name
    fields[#fields + 1] = value
  end
  redis.call('HSET', KEYS[1], unpack(fields))
end
"""

# KEYS[1] record, KEYS[2] queue; ARGV: ttl, message, the record as a JSON object of strings.
# Writes the record and enqueues its message atomically, in one command and one reply. The
# record travels as one argument: redis-py packs each argument in Python (about 90 bytecodes
# apiece), which cost the API more than the rest of the submit's bookkeeping. The function
# alone serves scripts that do more in the same call (the API's rate limits).
SUBMIT_FUNCTION = HSET_JSON + """
local function submit()
  hset_json(ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  return redis.call('LPUSH', KEYS[2], ARGV[2])
end
"""
SUBMIT_SCRIPT = "#!lua\n" + SUBMIT_FUNCTION + "return submit()\n"

# KEYS[1] record; ARGV[1] now. Returns {status, attempts}. Redelivery after a worker died
# finds "running": run again.
START_SCRIPT = ALLOW_OOM + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing', 0} end
if status == 'queued' or status == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1])
  return {'running', redis.call('HINCRBY', KEYS[1], 'attempts', 1)}
end
return {status, 0}
"""

#: A finished task's notification carries its whole record when its result or error is no
#: larger than this, so a waiting request answers without reading the record again.
EVENT_RECORD_MAX_BYTES = 64 * 1024

# KEYS[1] record; ARGV: status, now, field, value, ttl, task id, max event bytes, and the
# time the task started when it was run straight from the queue, never marked running (a
# lone cheap task run in the worker's main process): then a queued record finishes too.
# The event is the task id, then (small results) a newline and the record as a JSON array
# of alternating field names and values, as HGETALL returns it (see parse_event). It goes
# to every channel in the record's ``notify``; to none (and is not built) without one.
FINISH_SCRIPT = ALLOW_OOM + """
local found = redis.call('HMGET', KEYS[1], 'status', 'notify')
local status, notify = found[1], found[2]
if status == 'queued' and ARGV[8] then
  redis.call('HSET', KEYS[1], 'started_at', ARGV[8])
elseif status ~= 'running' then
  return status or 'missing'
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished_at', ARGV[2], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
if notify then redis.call('HDEL', KEYS[1], 'notify') end
if notify and notify ~= '' then
  local event = ARGV[6]
  if #ARGV[4] <= tonumber(ARGV[7]) then
    event = event .. '\\n' .. cjson.encode(redis.call('HGETALL', KEYS[1]))
  end
  for channel in string.gmatch(notify, '%S+') do
    redis.call('PUBLISH', channel, event)
  end
end
return ARGV[1]
"""

# KEYS[1] record; ARGV: now, ttl, task id, the caller's tenant. Returns {cancelled now?,
# status, queue}; another tenant's task is ``missing``, as one that does not exist. The
# event, the task id alone, goes to every channel in the record's ``notify``.
CANCEL_SCRIPT = ALLOW_OOM + """
local found = redis.call('HMGET', KEYS[1], 'status', 'queue', 'notify', 'tenant')
local status, queue, notify = found[1], found[2] or '', found[3]
if not status or (found[4] or '""" + DEFAULT_TENANT + """') ~= ARGV[4] then
  return {0, 'missing', ''}
end
if status ~= 'queued' then return {0, status, queue} end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if notify then
  redis.call('HDEL', KEYS[1], 'notify')
  for channel in string.gmatch(notify, '%S+') do
    redis.call('PUBLISH', channel, ARGV[3])
  end
end
return {1, 'cancelled', queue}
"""

# KEYS[1] record; ARGV[1] the waiting API process's channel, ARGV[2] the caller's tenant.
# Returns the record as HGETALL does (empty when there is none, or when it is another
# tenant's: then nothing is registered). A record not yet terminal gets the channel added to
# its ``notify`` first, once: in one script, so the task cannot end between the read and the
# registration unheard. Batch and training jobs are watched the same way.
WATCH_SCRIPT = ALLOW_OOM + """
local found = redis.call('HMGET', KEYS[1], 'status', 'notify', 'tenant')
local status, notify = found[1], found[2] or ''
if not status or (found[3] or '""" + DEFAULT_TENANT + """') ~= ARGV[2] then return {} end
if status ~= 'succeeded' and status ~= 'failed' and status ~= 'cancelled' then
  local listed = false
  for channel in string.gmatch(notify, '%S+') do
    if channel == ARGV[1] then listed = true break end
  end
  if not listed then
    if notify ~= '' then notify = notify .. ' ' end
    redis.call('HSET', KEYS[1], 'notify', notify .. ARGV[1])
  end
end
return redis.call('HGETALL', KEYS[1])
"""


def new_record(
    *, model: str, version: int, queue: str, rows: int, trace_id: str | None, now: float,
    notify: str | None = None, tenant: str = DEFAULT_TENANT,
) -> dict[Any, Any]:
    """A queued task's record, ``tenant``'s; ``notify`` is the channel to tell of its end,
    if any."""
    record: dict[Any, Any] = {
        "status": Status.QUEUED.value,
        "tenant": tenant,
        "model": model,
        "version": str(version),
        "queue": queue,
        "rows": str(rows),
        "submitted_at": repr(now),
    }
    if trace_id:
        record["trace_id"] = trace_id
    if notify:
        record["notify"] = notify
    return record


def submit_args(ttl: int, message: bytes, record: Mapping[str, str]) -> list[Any]:
    """``SUBMIT_SCRIPT``'s arguments: the record's time to live, the message, the record."""
    return [ttl, message, orjson.dumps(record)]


def finish_args(
    task_id: str, status: Status, payload: Mapping[str, Any], ttl: int,
    unannounced_start: float | None = None,
) -> list[str | bytes]:
    """ARGV for FINISH_SCRIPT: ``payload`` is the result or the error object;
    ``unannounced_start``, when the task ran without being marked running, its start."""
    field = "result" if status is Status.SUCCEEDED else "error"
    args: list[str | bytes] = [
        status.value,
        repr(time.time()),
        field,
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
        str(ttl),
        task_id,
        str(EVENT_RECORD_MAX_BYTES),
    ]
    if unannounced_start is not None:
        args.append(repr(unannounced_start))
    return args


def parse_event(data: bytes | str) -> tuple[str, bytes]:
    """A task event's task id and its record (JSON, empty when the event has none)."""
    raw = data if isinstance(data, bytes) else data.encode()
    task_id, _, record = raw.partition(b"\n")
    return task_id.decode(), record


def event_record(record: bytes) -> dict[str, str] | None:
    """The record an event carries, as ``to_public`` takes it; None when it has none."""
    if not record:
        return None
    return pairs(orjson.loads(record))


def pairs(flat: Sequence[Any]) -> dict[Any, Any]:
    """A hash from the flat list of alternating fields and values that HGETALL gives Lua."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def rfc3339(value: str | None) -> str | None:
    """A record's time (seconds since the epoch, as text) in RFC 3339 UTC; None when unset."""
    if not value:
        return None
    moment = datetime.fromtimestamp(float(value), UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decoded(value: str | bytes) -> str:
    """A Redis reply as text: the client returns bytes, tests and scripts may give str."""
    return value.decode() if isinstance(value, bytes) else value


def to_public(task_id: str, raw: Mapping[Any, Any]) -> dict[str, Any]:
    """The task as the REST API shows it, from the hash Redis returned."""
    record = {decoded(k): decoded(v) for k, v in raw.items()}
    task: dict[str, Any] = {
        "task_id": task_id,
        "status": record["status"],
        "model": record.get("model"),
        "version": int(record["version"]) if record.get("version") else None,
        "submitted_at": rfc3339(record.get("submitted_at")),
        "started_at": rfc3339(record.get("started_at")),
        "finished_at": rfc3339(record.get("finished_at")),
        "trace_id": record.get("trace_id"),
    }
    if "result" in record:
        task["result"] = orjson.loads(record["result"])
    if "error" in record:
        task["error"] = orjson.loads(record["error"])
    return task
