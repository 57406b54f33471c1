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

from services.common import keys
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

#: Lua: ``hset_json_at(key, json)`` writes the hash ``key`` from ``json``, a JSON object of
#: strings; ``hset_json(json)`` writes KEYS[1].
HSET_JSON = """
local function hset_json_at(key, json)
  local fields = {}
  for name, value in pairs(cjson.decode(json)) do
    fields[#fields + 1] = name
    fields[#fields + 1] = value
  end
  redis.call('HSET', key, unpack(fields))
end
local function hset_json(json) hset_json_at(KEYS[1], json) end
"""

# KEYS[1] record, KEYS[2] queue; ARGV: ttl, message, the record as a JSON object of strings.
# Writes the record and enqueues its message atomically, in one command and one reply. The
# record travels as one argument: redis-py packs each argument in Python (about 90 bytecodes
# apiece), which cost the API more than the rest of the submit's bookkeeping. The functions
# alone serve scripts that do more in the same call (the API's rate limits, or several
# submits at once): ``submit_task`` takes a task's keys and arguments, ``submit`` the
# script's own.
SUBMIT_FUNCTION = HSET_JSON + """
local function submit_task(record_key, queue_key, ttl, message, record)
  hset_json_at(record_key, record)
  redis.call('EXPIRE', record_key, ttl)
  return redis.call('LPUSH', queue_key, message)
end
local function submit()
  return submit_task(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
end
"""
SUBMIT_SCRIPT = "#!lua\n" + SUBMIT_FUNCTION + "return submit()\n"

# KEYS: the tasks' records; ARGV[1] now. Returns {status, attempts} for each task: a queued
# or running one is marked running (redelivery after a worker died finds "running": run
# again) and its attempts counted; any other is left as it is, with 0.
START_SCRIPT = ALLOW_OOM + """
local replies = {}
for i, key in ipairs(KEYS) do
  local status = redis.call('HGET', key, 'status')
  if not status then
    replies[i] = {'missing', 0}
  elseif status == 'queued' or status == 'running' then
    redis.call('HSET', key, 'status', 'running', 'started_at', ARGV[1])
    replies[i] = {'running', redis.call('HINCRBY', key, 'attempts', 1)}
  else
    replies[i] = {status, 0}
  end
end
return replies
"""

#: A finished task's notification carries its whole record when its result or error is no
#: larger than this, so a waiting request answers without reading the record again.
EVENT_RECORD_MAX_BYTES = 64 * 1024

#: What separates the events of a message that tells an API process of several tasks' ends
#: at once (a record separator, which the JSON of a record escapes wherever it occurs).
EVENT_SEPARATOR = b"\x1e"

# KEYS: the tasks' records. ARGV: now, ttl, max event bytes, then for each task its status,
# field, value, task id, and the time it started when it was run straight from the queue,
# never marked running (a lone cheap task run in the worker's main process: then a queued
# record finishes too), or '' when it was marked running. Returns each task's status after
# the call: the one given when this call ended it, else the one it had (or 'missing').
# A task's event is its id, then (small results) a newline and the record as a JSON array of
# alternating field names and values, as HGETALL returns it (see parse_event). It goes to
# every channel in the record's ``notify``; to none (and is not built) without one. The
# events for one channel that takes several at once (``keys.BATCHED_EVENTS``, every API
# process's own) go in ONE message, separated by EVENT_SEPARATOR: one PUBLISH, and one
# message for the API process to read, per batch.
FINISH_SCRIPT = ALLOW_OOM + """
local now, ttl, max_bytes = ARGV[1], ARGV[2], tonumber(ARGV[3])
local replies, batched, order = {}, {}, {}
for i, key in ipairs(KEYS) do
  local a = 4 + (i - 1) * 5
  local ending, field, value, task_id, start = ARGV[a], ARGV[a + 1], ARGV[a + 2],
    ARGV[a + 3], ARGV[a + 4]
  local found = redis.call('HMGET', key, 'status', 'notify')
  local status, notify = found[1], found[2]
  if status == 'queued' and start ~= '' then
    redis.call('HSET', key, 'started_at', start)
    status = 'running'
  end
  if status ~= 'running' then
    replies[i] = status or 'missing'
  else
    redis.call('HSET', key, 'status', ending, 'finished_at', now, field, value)
    redis.call('EXPIRE', key, ttl)
    if notify then redis.call('HDEL', key, 'notify') end
    if notify and notify ~= '' then
      local event = task_id
      if #value <= max_bytes then
        event = event .. '\\n' .. cjson.encode(redis.call('HGETALL', key))
      end
      for channel in string.gmatch(notify, '%S+') do
        if string.find(channel, '""" + keys.BATCHED_EVENTS + """', 1, true) then
          if not batched[channel] then
            batched[channel] = {}
            order[#order + 1] = channel
          end
          table.insert(batched[channel], event)
        else
          redis.call('PUBLISH', channel, event)
        end
      end
    end
    replies[i] = ending
  end
end
for _, channel in ipairs(order) do
  redis.call('PUBLISH', channel, table.concat(batched[channel], '\\30'))
end
return replies
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


def task_end(task_id: str, status: Status, payload: Mapping[str, Any],
             unannounced_start: float | None = None) -> list[str | bytes]:
    """One task's part of FINISH_SCRIPT's arguments: ``payload`` is the result or the error
    object; ``unannounced_start``, when the task ran without being marked running, its
    start."""
    return [status.value, "result" if status is Status.SUCCEEDED else "error",
            orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), task_id,
            "" if unannounced_start is None else repr(unannounced_start)]


def finish_args(ttl: int, ends: Sequence[Sequence[str | bytes]]) -> list[str | bytes]:
    """ARGV for FINISH_SCRIPT: the tasks' ``task_end``s, in the order of its KEYS."""
    args: list[str | bytes] = [repr(time.time()), str(ttl), str(EVENT_RECORD_MAX_BYTES)]
    for end in ends:
        args += end
    return args


def parse_event(data: bytes | str) -> tuple[str, bytes]:
    """A task event's task id and its record (JSON, empty when the event has none)."""
    raw = data if isinstance(data, bytes) else data.encode()
    task_id, _, record = raw.partition(b"\n")
    return task_id.decode(), record


def split_events(data: bytes | str) -> list[bytes]:
    """The events a message on an events channel carries: one, or (on a channel that takes
    several at once) several."""
    raw = data if isinstance(data, bytes) else data.encode()
    return raw.split(EVENT_SEPARATOR)


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
