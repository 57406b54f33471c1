"""kombu's Redis transport, recording each delivery and taking a burst in one round trip.

kombu's consumer pays two Redis round trips per message, both before the message reaches
the worker: a BRPOP for one message, then a MULTI/EXEC pipeline writing it into the
``unacked`` hash; a message is in neither key between the two, and a worker killed then
(or whose connection drops before the BRPOP's reply arrives) loses it. Here a BLMOVE moves
the message from the queue into this consumer's own pulling list, and one Lua script then
writes it into the ``unacked`` hash and index, empties the pulling list, and moves up to
the prefetch room's worth of further messages from the queue there too (atomically, so a
message is always in some key). A consumer says it is alive before its first pull and
then every restore interval; what one silent for three intervals left in its pulling list
goes back to the head of the queue, put there by any live consumer or by the API
(``services.common.pullers``). The script is sent before the popped message goes on to
the worker and its reply read after, so the round trip overlaps the hand-over to the pool
instead of preceding it. kombu's bookkeeping stays in memory. The hash holds exactly what
kombu writes there, so the backlog that KEDA counts works unchanged.

Holding, acknowledging and restoring must work when Redis is full (``maxmemory`` reached,
``noeviction``): a message BRPOP popped but could not record as held would live only in
this process, and one that could not go back to its queue would stay held. kombu does all
three in MULTI/EXEC transactions, and Redis refuses every command queued in a transaction
while it is full. Here they are scripts flagged ``allow-oom`` or plain pipelines of
commands that free memory (ZREM, HDEL), which Redis runs then: they move or drop messages
already accepted. Only the API's submit, which adds work, is refused. BLMOVE, which writes
the pulling list, is refused too: the consumer pops with BRPOP while Redis stays full.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cached_property
from queue import Empty
from typing import Any

import orjson
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads
from redis.exceptions import NoScriptError, OutOfMemoryError, ResponseError

from services.common import keys, pullers
from services.common.records import ALLOW_OOM
from services.worker.broker.deferred import Sent

#: At most this many messages are taken per round trip, whatever the prefetch room.
MAX_BURST = 64

#: Seconds a consumer pops with BRPOP after a full Redis refused its BLMOVE.
PULLS_REFUSED_PAUSE = 5.0

log = logging.getLogger(__name__)

# KEYS: queue, unacked hash, unacked index, and the consumer's pulling list when BLMOVE
# took the message; ARGV: count, now, then the popped message's delivery tag and its hash
# value, if any. Records that message (and takes it off the head of the pulling list),
# then takes up to count more and returns them, oldest first. Each taken message's hash
# value is kombu's ``[message, exchange, routing key]`` built around the message's own
# bytes, so no field is re-encoded.
TAKE_SCRIPT = ALLOW_OOM + """
if ARGV[3] then
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
  if KEYS[4] then
    redis.call('LPOP', KEYS[4])
    -- Older entries were pulled by a BLMOVE whose reply never came (a dropped socket).
    while redis.call('LMOVE', KEYS[4], KEYS[1], 'LEFT', 'RIGHT') do end
  end
end
local count = tonumber(ARGV[1])
if count <= 0 then return {} end
local items = redis.call('RPOP', KEYS[1], count)
if not items then return {} end
for _, raw in ipairs(items) do
  local message = cjson.decode(raw)
  local properties = message['properties']
  local tag = properties['delivery_tag']
  local info = properties['delivery_info'] or {}
  local exchange = info['exchange'] or ''
  local routing_key = info['routing_key'] or KEYS[1]
  redis.call('ZADD', KEYS[3], ARGV[2], tag)
  redis.call('HSET', KEYS[2], tag,
    '[' .. raw .. ',' .. cjson.encode(exchange) .. ',' .. cjson.encode(routing_key) .. ']')
end
return items
"""


# KEYS: the unacked hash, its index, then the queues the message goes back to; ARGV: the
# delivery tag, the message as restored, 1 to put it at the head of the queues. Moves the
# held message back only if it is still held, so two restorers never restore it twice.
RESTORE_SCRIPT = ALLOW_OOM + """
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
for i = 3, #KEYS do
  if ARGV[3] == '1' then
    redis.call('LPUSH', KEYS[i], ARGV[2])
  else
    redis.call('RPUSH', KEYS[i], ARGV[2])
  end
end
return 1
"""


# KEYS: the exchange's binding table and its permanent copy; ARGV: the binding.
BIND_SCRIPT = ALLOW_OOM + """
redis.call('SADD', KEYS[1], ARGV[1])
return redis.call('SADD', KEYS[2], ARGV[1])
"""


SCRIPTS = {"take": TAKE_SCRIPT, "restore": RESTORE_SCRIPT, "alive": pullers.ALIVE_SCRIPT,
           "sweep": pullers.SWEEP_SCRIPT, "bind": BIND_SCRIPT}


class _PendingTake:
    """A TAKE_SCRIPT call sent now, its reply (the messages taken) read later."""

    def __init__(self, channel: Channel, queue: str, args: list[Any]) -> None:
        self.queue = queue
        self._channel = channel
        self._keys = [queue, channel.unacked_key, channel.unacked_index_key]
        if channel._pulling_from == queue:
            self._keys.append(keys.pulling_key(queue, channel.consumer_id))
        self._args = args
        sha = channel._scripts["take"].sha
        self._sent = Sent(channel._sync_client,
                          [("EVALSHA", sha, len(self._keys), *self._keys, *args)])

    def read(self) -> list[bytes]:
        (items,) = self._sent.read()
        if isinstance(items, NoScriptError):
            # Not run (Redis restarted or flushed its scripts): load it and run it now.
            items = self._channel._scripts["take"](keys=self._keys, args=self._args)
        elif isinstance(items, ResponseError):
            raise items
        return list(items or ())


class QoS(kombu_redis.QoS):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Delivery tags already written to the unacked hash by ``TAKE_SCRIPT``.
        self.recorded: set[str] = set()

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag in self.recorded:
            self.recorded.discard(delivery_tag)
        elif not self.channel.record_popped(message, delivery_tag):
            super().append(message, delivery_tag)
            return
        virtual.QoS.append(self, message, delivery_tag)

    @contextmanager
    def pipe_or_acquire(self, pipe: Any = None, client: Any = None) -> Iterator[Any]:
        # Acknowledging is a ZREM and an HDEL: no transaction, so a full Redis runs them.
        if pipe:
            yield pipe
        else:
            with self.channel.conn_or_acquire(client) as client:
                yield client.pipeline(transaction=False)

    def restore_by_tag(self, tag: str, client: Any = None, leftmost: bool = False) -> None:
        """Put a held message back on its queue, as kombu does, in one script."""
        with self.channel.conn_or_acquire(client) as client:
            held = client.hget(self.unacked_key, tag)
            if held is None:
                self._remove_from_indices(tag).execute()
                return
            payload, exchange, routing_key = loads(bytes_to_str(held))
            with suppress(KeyError):
                payload["headers"]["redelivered"] = True
                payload["properties"]["delivery_info"]["redelivered"] = True
            priority = self.channel._get_message_priority(payload, reverse=False)
            queues = [self.channel._q_for_pri(queue, priority)
                      for queue in self.channel._lookup(exchange, routing_key)]
            self.channel._scripts["restore"](
                keys=[self.unacked_key, self.unacked_index_key, *queues],
                args=[tag, dumps(payload), 1 if leftmost else 0], client=client)

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        """Restore messages held past the visibility timeout, as kombu does, without its
        mutex (a key written under MULTI): each restore is atomic and happens once."""
        self._vrestore_count += 1
        if (self._vrestore_count - 1) % (interval or 1):
            return
        self.channel.sweep_pullers()
        with self.channel.conn_or_acquire() as client:
            ceil = time.time() - self.visibility_timeout
            visible = client.zrange(self.unacked_index_key, ceil, 0, desc=True, byscore=True,
                                    offset=num and start, num=num, withscores=True)
            for tag, _score in visible or []:
                self.restore_by_tag(bytes_to_str(tag), client)


class Channel(kombu_redis.Channel):
    QoS = QoS

    #: The queue a BRPOP being delivered came from, while its message is delivered.
    _popped_from: str | None = None
    #: The queue a BLMOVE was sent for, until its reply is read.
    _pulling_from: str | None = None
    #: Until when (monotonic) BRPOP stands in for BLMOVE, which a full Redis refused.
    _pulls_refused_until = 0.0
    _pending: _PendingTake | None = None
    #: When (monotonic) this consumer last said it is alive; never, before its first pull.
    _alive_said_at = -math.inf

    @cached_property
    def consumer_id(self) -> str:
        """This channel's name among the consumers of its queue (its pulling list's)."""
        return uuid.uuid4().hex

    def _brpop_start(self, timeout: float | None = None) -> None:
        # One queue: BLMOVE, not BRPOP, so a popped message waits in this consumer's pulling
        # list until the take script records it as held. A process that dies between the
        # two (or loses its connection to the reply) leaves it there, not nowhere: the
        # other consumers or the API put it back once it is found dead (sweep_pullers).
        queue = self._burst_queue()
        if queue is None or time.monotonic() < self._pulls_refused_until:
            super()._brpop_start(timeout)
            return
        if time.monotonic() - self._alive_said_at >= self.unacked_restore_interval:
            # Before the first pull of this consumer (a new one after each reconnect) and
            # then once an interval: whatever its list ever holds, it is known to sweepers.
            self._say_alive(queue)
        self._pulling_from = queue
        self._in_poll = self.client.connection
        self._brpop_sent_at = time.monotonic()  # type: ignore[assignment]
        self.client.connection.send_command(
            "BLMOVE", queue, keys.pulling_key(queue, self.consumer_id), "RIGHT", "LEFT",
            (self.brpop_timeout if timeout is None else timeout) or 0)

    def _pull_read(self, queue: str, **options: Any) -> bool:
        """Read a BLMOVE's reply and deliver its message, as kombu does a BRPOP's."""
        try:
            try:
                item = self.client.parse_response(self.client.connection, "BLMOVE", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            except OutOfMemoryError:
                # A full Redis refuses BLMOVE (it writes the pulling list), not BRPOP: pop
                # with BRPOP for a while, the pull's safety lost but the queue still served.
                if not self._pulls_refused_until:
                    log.warning("redis is full: popping without a pulling list for now",
                                extra={"queue": queue})
                self._pulls_refused_until = time.monotonic() + PULLS_REFUSED_PAUSE
                raise Empty() from None
            if item is None:
                raise Empty()
            self.connection._deliver(loads(bytes_to_str(item)), queue)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            flush = getattr(self, "_flush_brpop_reauth", None)
            if flush is not None:
                flush()

    def stop_pulling(self) -> None:
        """End the pull this consumer is waiting on now and deliver what it took, if
        anything: a stopping worker hands back what it holds, not to itself."""
        connection: Any = self._in_poll
        if not connection:
            return
        try:
            self._unblock(connection)
        except Exception:  # CLIENT refused (some managed Redis) or Redis gone.
            log.info("could not end a pull at once; it ends by its timeout", exc_info=True)
        try:
            self._brpop_read()
        except Empty:
            pass
        except self.connection_errors:
            log.warning("could not end a pull; what it took returns when this consumer "
                        "is found dead", exc_info=True)

    def _unblock(self, connection: Any) -> None:
        """Unblock the command waiting on ``connection``, found by its address (behind a
        proxy that changes it, nothing is found: the pull ends by its timeout)."""
        if connection._sock is None:
            return
        address = "{}:{}".format(*connection._sock.getsockname()[:2])
        for client in self._sync_client.client_list(_type="normal"):
            if client.get("addr") == address:
                self._sync_client.client_unblock(int(client["id"]))

    def sweep_pullers(self) -> None:
        """Say this consumer is alive; put back what dead consumers were pulling."""
        queue = self._burst_queue()
        if queue is None:
            return
        self._say_alive(queue)
        swept = self._scripts["sweep"](keys=pullers.sweep_keys(queue),
                                       args=pullers.sweep_args(queue))
        for consumer, moved in pullers.left_behind(swept).items():
            if moved:
                log.warning("put back messages a dead consumer was pulling",
                            extra={"queue": queue, "consumer": consumer, "messages": moved})

    def _say_alive(self, queue: str) -> None:
        """Count this consumer alive for the next few restore intervals."""
        self._scripts["alive"](keys=[keys.pullers_key(queue)],
                               args=[self.consumer_id,
                                     pullers.alive_for(self.unacked_restore_interval)])
        self._alive_said_at = time.monotonic()

    @cached_property
    def _sync_client(self) -> Any:
        return self._create_client()

    @cached_property
    def _scripts(self) -> dict[str, Any]:
        """The transport's scripts by name, registered on this channel's client."""
        return {name: self._sync_client.register_script(text) for name, text in SCRIPTS.items()}

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        # One client over the channel's pool, instead of a new client object per call.
        yield client or self._sync_client

    def _size(self, queue: str) -> int:
        # Reads, in a pipeline without MULTI: a full Redis refuses anything in MULTI.
        with self.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)
            for priority in self.priority_steps:
                pipe.llen(self._q_for_pri(queue, priority))
            return sum(size for size in pipe.execute() if isinstance(size, int))

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        # kombu's two SADDs go in MULTI, refused while Redis is full: a worker starting then
        # (KEDA adding one, a restart) would die of it. One small allow-oom script instead.
        if queue in self._expires or self.typeof(exchange).type == "fanout":
            super()._queue_bind(exchange, routing_key, pattern, queue)
            return
        member = self.sep.join([routing_key or "", pattern or "", queue or ""])
        self._scripts["bind"](keys=[self.keyprefix_queue % (exchange,),
                         self.keyprefix_binding_permanent % (exchange,)], args=[member])

    def _restore(self, message: Any, leftmost: bool = False) -> None:
        if not self.ack_emulation:
            super()._restore(message)
            return
        self.qos.restore_by_tag(message.delivery_tag, leftmost=leftmost)

    def _brpop_read(self, **options: Any) -> bool:
        pulling = self._pulling_from  # Set by _brpop_start when it sent a BLMOVE.
        self._popped_from = pulling or self._burst_queue()
        try:
            if pulling is not None:
                delivered = self._pull_read(pulling, **options)
            else:
                delivered = bool(super()._brpop_read(**options))
        except BaseException:
            self._give_back(self._read_pending())
            raise
        finally:
            self._popped_from = None
            self._pulling_from = None
        pending = self._pending
        for item in self._read_pending():
            message = loads(item)
            self.qos.recorded.add(message["properties"]["delivery_tag"])
            self.connection._deliver(message, pending.queue if pending else "")
        return delivered

    def _read_pending(self) -> list[bytes]:
        pending, self._pending = self._pending, None
        return pending.read() if pending is not None else []

    def _give_back(self, items: list[bytes]) -> None:
        """Put taken messages back at the head of their queue, at once."""
        for item in items:
            self.qos.restore_by_tag(loads(item)["properties"]["delivery_tag"], leftmost=True)

    def record_popped(self, message: Any, delivery_tag: str) -> bool:
        """Send the script recording a message BRPOP popped; False outside a BRPOP."""
        if self._popped_from is None or self._pending is not None:
            return False
        delivery = message.delivery_info
        value = _held_value(message._raw, delivery["exchange"], delivery["routing_key"])
        # The prefetch room left once this message is held.
        room = min(MAX_BURST, max(0, (self.qos.can_consume_max_estimate() or 0) - 1))
        self._pending = _PendingTake(self, self._popped_from,
                                     [room, time.time(), delivery_tag, value])
        return True

    def _burst_queue(self) -> str | None:
        """The one queue this channel consumes, when its messages can be taken by script."""
        queues = self.active_queues
        if (not self.qos.prefetch_count or len(queues) != 1 or self.global_keyprefix
                or self.priority_steps != [0]):
            return None  # Several queues, priorities or key prefixes: kombu's own path.
        return str(queues[0])


def _held_value(raw: dict[str, Any], exchange: str, routing_key: str) -> bytes | str:
    """A held message's value in the unacked hash, as kombu writes and restores it; by
    orjson, a tenth of the cost of kombu's encoder on the path to the model."""
    try:
        return orjson.dumps([raw, exchange, routing_key])
    except TypeError:  # A message orjson cannot encode: kombu's encoder can.
        return dumps([raw, exchange, routing_key])


class Transport(kombu_redis.Transport):
    Channel = Channel
