"""kombu's Redis transport, taking a burst of messages in one round trip.

kombu's consumer pays two Redis round trips per message: a BRPOP for one message, then a
pipeline writing it into the ``unacked`` hash, on a Redis client built anew for each call.
Here, after each BRPOP, one Lua script moves up to the prefetch room's worth of further
messages from the queue into the ``unacked`` hash and index at once (atomically, so a
message is never out of both), and kombu's bookkeeping for them stays in memory. The hash
holds exactly what kombu writes there, so restoring, acknowledging and the backlog that
KEDA counts work unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import loads

#: At most this many messages are taken per round trip, whatever the prefetch room.
MAX_BURST = 64

# KEYS: queue, unacked hash, unacked index; ARGV: count, now. Returns the messages, oldest
# first. The hash's value is kombu's ``[message, exchange, routing key]`` built around the
# message's own bytes, so no field is re-encoded.
TAKE_SCRIPT = """
local items = redis.call('RPOP', KEYS[1], tonumber(ARGV[1]))
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


class QoS(kombu_redis.QoS):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Delivery tags already written to the unacked hash by ``TAKE_SCRIPT``.
        self.recorded: set[str] = set()

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag in self.recorded:
            self.recorded.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)
            return
        super().append(message, delivery_tag)


class Channel(kombu_redis.Channel):
    QoS = QoS

    @cached_property
    def _sync_client(self) -> Any:
        return self._create_client()

    @cached_property
    def _take(self) -> Any:
        return self._sync_client.register_script(TAKE_SCRIPT)

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        # One client over the channel's pool, instead of a new client object per call.
        yield client or self._sync_client

    def _brpop_read(self, **options: Any) -> bool:
        delivered = bool(super()._brpop_read(**options))
        if delivered and self.qos.prefetch_count:
            self._take_burst()
        return delivered

    def _take_burst(self) -> None:
        room = min(MAX_BURST, self.qos.can_consume_max_estimate() or 0)
        queues = [q for q in self.active_queues if not self.global_keyprefix]
        if room <= 0 or len(queues) != 1 or self.priority_steps != [0]:
            return  # Several queues, priorities or key prefixes: kombu's own path only.
        queue = queues[0]
        items = self._take(keys=[queue, self.unacked_key, self.unacked_index_key],
                           args=[room, time.time()])
        qos: QoS = self.qos
        for item in items or ():
            message = loads(item)
            qos.recorded.add(message["properties"]["delivery_tag"])
            self.connection._deliver(message, queue)


class Transport(kombu_redis.Transport):
    Channel = Channel
