"""The worker's broker layer: everything that touches Celery's, kombu's or billiard's
private surface, behind a narrow interface.

The rest of the worker (and every task kind) uses only what this package exports:

- ``strategy`` / ``Holder`` / ``Delivery``: a task whose ``Strategy`` is ``strategy`` gets
  each of its messages as a plain ``Delivery`` (kwargs, headers, tag), handed to the
  ``Holder`` its ``holder(broker)`` builds, in the worker's main process;
- ``Broker``: what a holder may do with the consumer: ``dispatch`` a batch to a pool
  child, ``call_after`` / ``call_soon`` on the event loop, ``acknowledge`` deliveries (in
  one round trip), forget those ``acknowledged`` already, ``hand_back`` the rest;
- ``acknowledge_in``: adds the acknowledgement of deliveries to a Redis pipeline, so a
  child stores results and acknowledges in one round trip;
- ``ScriptPipeline`` / ``Sent``: Redis commands sent now and read later;
- ``TRANSPORT``, ``POOL``, ``HandBackAtStop``: what the Celery app is configured with.

What each piece replaces upstream (every private name it relies on, with its reason, is
in ``surface.SURFACE``; a test fails when an installed version no longer matches one):

- ``transport``: kombu's Redis transport pays two round trips per message (BRPOP, then a
  MULTI/EXEC writing it to the ``unacked`` hash), and loses a message popped by a worker
  that dies between them. ``_brpop_start``/``_brpop_read`` pull with BLMOVE into a
  per-consumer list and take a burst, recorded as held, in one Lua script sent before the
  popped message goes on and read after. ``QoS.append`` skips what the script recorded.
  ``restore_by_tag``/``_restore``/``restore_visible`` restore by one atomic script, at most
  once, without kombu's mutex; ``pipe_or_acquire``, ``_size`` and ``_queue_bind`` avoid
  MULTI, which a full Redis refuses.
- ``pool``: ``AsynPool.flush`` forgets jobs already written to a child, which then runs
  them and waits 30 s for its result to be read; the override keeps them.
- ``consumer``: Celery's default strategy sends each message to a child alone; the
  strategy hook hands them to a holder that batches them. ``dispatch`` writes a job to an
  idle child at once (the pool would wait for the loop's next turn: ``_all_inqueues``,
  ``_active_writes``, the hub's ``consolidate_callback``). ``HandBackAtStop`` puts what a
  stopping worker holds but will not run back on the queue at once.
- ``acks``: acknowledging a message a child already acknowledged in Redis, without
  ``Message.ack``'s round trip (kombu's ``QoS.ack`` and the message's ``_state``).
"""

from __future__ import annotations

from services.worker.broker.acks import acknowledge_in
from services.worker.broker.consumer import (
    Broker,
    ChildLost,
    Delivery,
    HandBackAtStop,
    Holder,
    strategy,
)
from services.worker.broker.deferred import ScriptPipeline, Sent, SentPipeline

#: The Celery app's ``broker_transport`` and ``worker_pool``.
TRANSPORT = "services.worker.broker.transport:Transport"
POOL = "services.worker.broker.pool:TaskPool"

__all__ = [
    "POOL",
    "TRANSPORT",
    "Broker",
    "ChildLost",
    "Delivery",
    "HandBackAtStop",
    "Holder",
    "ScriptPipeline",
    "Sent",
    "SentPipeline",
    "acknowledge_in",
    "strategy",
]
