"""The private names of Celery, kombu, billiard (and redis-py) the boundary relies on.

Each entry names where upstream defines it, its parameters when it is a method (an
override must keep them, and a call must pass them), and why the boundary uses it.
``missing`` lists the entries the installed versions no longer match: the test suite fails
on any, so an upgrade that changes one breaks a test, not delivery in production.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any, NamedTuple


class Use(NamedTuple):
    #: ``module:Class`` (or ``module`` alone) where upstream defines the name.
    owner: str
    name: str
    #: A method's parameter names; None for an attribute (a class attribute, or one
    #: upstream's module assigns to its instances).
    parameters: tuple[str, ...] | None
    why: str


_REDIS = "kombu.transport.redis:Channel"
_QOS = "kombu.transport.redis:QoS"
_ASYNPOOL = "celery.concurrency.asynpool:AsynPool"

SURFACE: tuple[Use, ...] = (
    # The transport (services.worker.broker.transport).
    Use(_REDIS, "_brpop_start", ("self", "timeout"),
        "overridden: a BLMOVE into the consumer's pulling list instead of BRPOP"),
    Use(_REDIS, "_brpop_read", ("self", "options"),
        "overridden: reads the BLMOVE's reply and delivers the burst the take script took"),
    Use(_REDIS, "_in_poll", None, "marks the connection a pull is waiting on"),
    Use(_REDIS, "_flush_brpop_reauth", ("self",), "called after a pull's reply, as kombu does"),
    Use(_REDIS, "_create_client", ("self", "asynchronous"),
        "the client the scripts and acknowledgements use"),
    Use(_REDIS, "_q_for_pri", ("self", "queue", "pri"), "the list a restored message goes to"),
    Use(_REDIS, "_get_message_priority", ("self", "message", "reverse"),
        "the priority a restored message goes back with"),
    Use(_REDIS, "_lookup", ("self", "exchange", "routing_key", "default"),
        "the queues a restored message goes back to"),
    Use(_REDIS, "_size", ("self", "queue"),
        "overridden: queue length by a pipeline without MULTI (a full Redis runs it)"),
    Use(_REDIS, "_queue_bind", ("self", "exchange", "routing_key", "pattern", "queue"),
        "overridden: the binding by an allow-oom script instead of MULTI"),
    Use(_REDIS, "_restore", ("self", "message", "leftmost"),
        "overridden: a restore by one atomic script, at most once"),
    Use(_REDIS, "conn_or_acquire", ("self", "client"),
        "overridden: one client over the channel's pool, not a new client per call"),
    Use(_REDIS, "_expires", None, "queues with an expiry keep kombu's own binding"),
    Use(_QOS, "append", ("self", "message", "delivery_tag"),
        "overridden: a message the take script recorded is not written again"),
    Use(_QOS, "pipe_or_acquire", ("self", "pipe", "client"),
        "overridden: acknowledging without MULTI"),
    Use(_QOS, "restore_by_tag", ("self", "tag", "client", "leftmost"),
        "overridden: a restore by one atomic script"),
    Use(_QOS, "restore_visible", ("self", "start", "num", "interval"),
        "overridden: restores without kombu's mutex, and sweeps dead consumers' pulls"),
    Use(_QOS, "_remove_from_indices", ("self", "delivery_tag", "pipe"),
        "drops a tag no longer held"),
    Use(_QOS, "_vrestore_count", None, "counts calls, to restore every interval-th one"),
    Use(_QOS, "can_consume_max_estimate", ("self",), "the prefetch room a burst may fill"),
    Use("kombu.transport.virtual.base:QoS", "ack", ("self", "delivery_tag"),
        "forgets a message acknowledged in Redis already, without a round trip"),
    Use("kombu.transport.virtual.base:Transport", "_deliver", ("self", "message", "queue"),
        "delivers each message of a burst to the consumer"),
    Use("kombu.transport.virtual.base:Message", "_raw", None,
        "the message's own bytes, written to the unacked hash as taken"),
    Use("kombu.message:Message", "_state", None,
        "marks a message acknowledged in Redis by a child as acknowledged"),
    # The pool (services.worker.broker.pool and consumer).
    Use(_ASYNPOOL, "flush", ("self",), "overridden: keeps the jobs a child will still run"),
    Use(_ASYNPOOL, "_all_inqueues", None, "the children's pipes, to write a job at once"),
    Use(_ASYNPOOL, "_active_writes", None, "the pipes being written to"),
    Use(_ASYNPOOL, "outbound_buffer", None, "the jobs not yet written"),
    Use("celery.concurrency.asynpool", "consolidate_callback", None,
        "the event loop's write handler the pool installs"),
    Use("billiard.pool:Pool", "_cache", None, "the jobs the pool will still run"),
    Use("billiard.pool:ApplyResult", "_job", None, "a job's id in the pool's cache"),
    Use("billiard.pool:ApplyResult", "_accepted", None, "whether a child took the job"),
    Use("celery.concurrency.asynpool", "_write_to", None, "the child a job is written to"),
    Use("billiard.process:BaseProcess", "_is_alive", ("self",),
        "whether that child still runs"),
    # The consumer (services.worker.broker.consumer).
    Use("celery.worker.consumer.consumer:Consumer", "timer", None,
        "schedules a buffer's wait for company"),
    Use("celery.worker.consumer.consumer:Consumer", "hub", None,
        "the event loop, to flush after a burst"),
    Use("celery.worker.consumer.tasks", "task_consumer", None,
        "its channel, to end the pull waiting when the worker stops"),
    Use("celery.concurrency.base:BasePool", "apply_async",
        ("self", "target", "args", "kwargs", "options"), "dispatches a batch to a child"),
    Use("celery.concurrency.base:BasePool", "num_processes", None, "how many children"),
    # redis-py (services.worker.broker.transport and deferred).
    Use("redis.connection:AbstractConnection", "_sock", None,
        "a pull's socket address, to unblock it when the worker stops"),
)


def _resolve(owner: str) -> tuple[Any, Any]:
    module_name, _, attribute = owner.partition(":")
    module = importlib.import_module(module_name)
    return module, getattr(module, attribute) if attribute else module


def _assigned_in(source: str, name: str) -> bool:
    return re.search(rf"\.{re.escape(name)}\s*=[^=]", source) is not None


def problem(use: Use) -> str | None:
    """What no longer matches ``use`` in the installed versions, or None."""
    try:
        module, owner = _resolve(use.owner)
    except (ImportError, AttributeError) as exc:
        return f"{use.owner} is gone ({exc})"
    found = getattr(owner, use.name, None)
    if use.parameters is not None:
        if not callable(found):
            return f"{use.owner}.{use.name} is no longer a method"
        parameters = tuple(inspect.signature(found).parameters)
        if parameters != use.parameters:
            return (f"{use.owner}.{use.name} now takes {parameters}, "
                    f"not {use.parameters}")
        return None
    if found is not None or hasattr(owner, use.name):
        return None
    classes = owner.__mro__ if inspect.isclass(owner) else ()
    for where in (module, *classes):
        try:
            source = inspect.getsource(where)
        except (OSError, TypeError):  # Built in: no source to read.
            continue
        if _assigned_in(source, use.name):
            return None
    return f"{use.owner} no longer has {use.name}"


def missing() -> list[str]:
    """Every entry of ``SURFACE`` the installed versions no longer match, with its why."""
    return [f"{found} (used because: {use.why})"
            for use in SURFACE if (found := problem(use)) is not None]
