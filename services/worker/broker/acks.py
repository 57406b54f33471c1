"""Acknowledging and handing back messages: the one place that does either.

A message is acknowledged when its field leaves the pool's ``unacked`` hash (and its
index), after its task's record is final; until then a worker that dies leaves it to be
restored to the queue. Acknowledging happens in three ways, all here: in the same round
trip that stores a batch's results (``acknowledge_in``, from a pool child), in one round
trip for messages the main process finishes (``ack_all``), and, for messages already
acknowledged in Redis, in the consumer's memory alone (``forget_acked``). Handing back puts
messages at the head of their queue (``reject_all``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from kombu.message import Message
from kombu.transport import virtual
from redis.client import Pipeline

from services.common import keys

log = logging.getLogger(__name__)


def acknowledge_in(pipe: Pipeline, queue: str, tags: Sequence[str]) -> None:
    """Add to ``pipe`` the acknowledgement of ``queue``'s messages ``tags``: take them out
    of the pool's unacked hash and its index, as kombu's Redis QoS does, so they are never
    restored. No transaction: a full Redis runs these (they free memory)."""
    _forget_held(pipe, keys.unacked_key(queue), keys.unacked_index_key(queue), tags)


def _forget_held(pipe: Any, unacked_key: str, index_key: str, tags: Sequence[str]) -> None:
    pipe.zrem(index_key, *tags)
    pipe.hdel(unacked_key, *tags)


def ack_all(messages: Sequence[Message], errors: tuple[type[BaseException], ...]) -> None:
    """Acknowledge ``messages`` in one Redis round trip where the transport allows it."""
    pending = [m for m in messages if not m.acknowledged]
    if not pending:
        return
    channel = pending[0].channel
    qos: Any = getattr(channel, "qos", None)
    if len(pending) == 1 or not hasattr(qos, "unacked_index_key"):
        for message in pending:
            message.ack_log_error(log, errors)
        return
    try:
        with channel.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)  # A full Redis runs these.
            _forget_held(pipe, qos.unacked_key, qos.unacked_index_key,
                         [m.delivery_tag for m in pending])
            pipe.execute()
    except Exception:
        # Left in the unacked hash: restored after the visibility timeout, and their
        # records (already finished) make the second delivery a no-op.
        log.exception("could not acknowledge a batch", extra={"tasks": len(pending)})
        return
    forget_acked(pending)


def forget_acked(messages: Sequence[Message]) -> None:
    """Drop ``messages``, acknowledged in Redis already, from the consumer's bookkeeping
    (kombu's in-memory ``QoS._delivered``, and the message's state), without the round
    trip ``Message.ack`` would make."""
    for message in messages:
        if not message.acknowledged:
            virtual.QoS.ack(message.channel.qos, message.delivery_tag)
            message._state = "ACK"


def reject_all(messages: Sequence[Message], errors: tuple[type[BaseException], ...]) -> int:
    """Put ``messages`` back at the head of their queue; how many went back.

    One that cannot be put back stays held in Redis: the visibility timeout restores it.
    The worker goes on either way; it never dies of a message it could not hand back.
    """
    handed = 0
    for message in messages:
        if message.acknowledged:
            continue
        try:
            message.reject(requeue=True)
        except errors:
            # Redis gone: the rest would wait as long. They return after the visibility
            # timeout, or as the channel closes.
            log.warning("could not hand back held tasks; they return after the visibility "
                        "timeout", exc_info=True, extra={"tasks": len(messages) - handed})
            return handed
        except Exception:
            log.exception("could not put a task back on its queue; it returns after the "
                          "visibility timeout", extra={"tag": message.delivery_tag})
            continue
        handed += 1
    return handed
