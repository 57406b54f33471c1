"""The strategy hook: Celery's consumer hands each message of a batched task to a holder.

Celery runs a task's *strategy* in the worker's main process for every message of that
task; its default sends each message to a pool child on its own. A task naming
``strategy`` below instead gets a ``Broker`` (this consumer, seen through a narrow
interface) and returns a ``Holder`` that receives each message as a plain ``Delivery``,
decides when to dispatch what, and tells the broker what to acknowledge or hand back.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from celery import Celery, bootsteps
from kombu.message import Message

from services.worker.broker import pool as prefork
from services.worker.broker.acks import ack_all, forget_acked, reject_all

log = logging.getLogger(__name__)

#: What a dispatched job fails with when the child running it died (killed, OOM).
ChildLost = WorkerLostError


class Delivery(NamedTuple):
    """One message as the worker sees it (and a pool child receives it)."""

    kwargs: dict[str, Any]
    headers: dict[str, Any]
    #: What acknowledges the message: its field in the pool's unacked hash.
    tag: str

    @property
    def redelivered(self) -> bool:
        """Whether it came back to the queue (its worker died, say) since first sent."""
        return bool(self.headers.get("redelivered"))


class Holder(Protocol):
    """What a batched task's strategy gives the broker: it holds the task's deliveries."""

    def receive(self, delivery: Delivery) -> None:
        """Take one delivery; runs in the main process's event loop."""

    def stop(self) -> None:
        """Stop dispatching: the consumer is stopping; deliveries only accumulate."""

    def release(self) -> list[str]:
        """Give up every delivery held that no child will run; their tags."""


class BatchingTask(Protocol):
    def holder(self, broker: Broker) -> Holder: ...


#: The brokers of this process, for ``HandBackAtStop``.
_BROKERS: weakref.WeakSet[Broker] = weakref.WeakSet()


class Broker:
    """What a holder may do with the consumer: dispatch, time, acknowledge, hand back."""

    def __init__(self, consumer: Any) -> None:
        self._pool = consumer.pool
        self._timer = consumer.timer
        self._hub: Any = getattr(consumer, "hub", None)
        self._errors: tuple[type[BaseException], ...] = consumer.connection_errors
        self._write_now = _immediate_writer(consumer)
        #: The messages of the deliveries held, by tag.
        self._held: dict[str, Message] = {}
        self._holder: Holder | None = None
        _BROKERS.add(self)

    @property
    def children(self) -> int:
        """How many pool children run dispatched jobs."""
        return int(self._pool.num_processes)

    @property
    def can_defer(self) -> bool:
        """Whether ``call_soon`` is available (an event loop runs the consumer)."""
        return self._hub is not None

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` in the event loop's next turn, before it reads anything else."""
        self._hub.call_soon(callback)

    def call_after(self, seconds: float, callback: Callable[[], None]) -> Any:
        """Run ``callback`` after ``seconds``; the result has ``cancel()``."""
        return self._timer.call_after(seconds, callback)

    def dispatch(self, function: Callable[..., Any], args: tuple[Any, ...], *,
                 on_done: Callable[[Any], None], on_error: Callable[[BaseException], None],
                 soft_timeout: float | None, hard_timeout: float | None) -> Any:
        """Run ``function(*args)`` in a pool child, now if one is idle; the job's handle.
        ``on_error`` gets the exception (``ChildLost`` when the child died)."""
        def failed(error: Any) -> None:
            on_error(unwrapped(error))

        job = self._pool.apply_async(function, args, callback=on_done, error_callback=failed,
                                     soft_timeout=soft_timeout, timeout=hard_timeout)
        self._write_now()
        return job

    def will_run(self, job: Any) -> bool:
        """Whether a dispatched job is still for a child to run (a stopping pool drops
        jobs no child took: see ``services.worker.broker.pool``)."""
        return prefork.will_run(self._pool, job)

    def acknowledged(self, tags: Sequence[str]) -> None:
        """Forget deliveries whose acknowledgement a child (or the main process) already
        wrote to Redis with their results (``acks.acknowledge_in``)."""
        forget_acked(self._take(tags))

    def acknowledge(self, tags: Sequence[str]) -> None:
        """Acknowledge deliveries in Redis, in one round trip, and forget them."""
        ack_all(self._take(tags), self._errors)

    def hand_back(self, tags: Sequence[str]) -> int:
        """Put deliveries back at the head of their queue; how many went back."""
        return reject_all(self._take(tags), self._errors)

    def _take(self, tags: Sequence[str]) -> list[Message]:
        return [message for tag in tags if (message := self._held.pop(tag, None)) is not None]

    def _on_message(self, message: Message, body: Any, ack: Any, reject: Any,
                    callbacks: Any, **_: Any) -> None:
        _args, kwargs, _embed = message.decode() if body is None else body
        delivery = Delivery(kwargs, dict(message.headers or {}), message.delivery_tag)
        self._held[delivery.tag] = message
        assert self._holder is not None
        self._holder.receive(delivery)

    def _stop(self) -> None:
        if self._holder is not None:
            self._holder.stop()

    def _hand_back_held(self) -> int:
        return self.hand_back(self._holder.release()) if self._holder is not None else 0


def unwrapped(error: Any) -> BaseException:
    """The exception a pool job failed with, as billiard reports it to an error callback:
    an ``ExceptionInfo`` whose ``exception`` wraps the exception again, with its traceback
    (``ExceptionWithTraceback``), a hard time limit's ``TimeLimitExceeded`` included."""
    exc = getattr(error, "exception", None) or error
    return exc.exc if isinstance(exc, ExceptionWithTraceback) else exc


def strategy(task: BatchingTask, app: Celery, consumer: Any, **_: Any) -> Callable[..., None]:
    """The Celery strategy of a batched task (its ``Strategy``): its messages go to the
    ``Holder`` that ``task.holder`` builds on this consumer's ``Broker``."""
    broker = Broker(consumer)
    broker._holder = task.holder(broker)
    return broker._on_message


class HandBackAtStop(bootsteps.StartStopStep):
    """When the worker stops (a warm shutdown, before the pool is joined), the messages
    it holds but does not run go back to the queue at once, for the workers that remain,
    not when the running tasks are done (a scale-in's SIGTERM). When the consumer stops
    for a lost connection, the holders only stop dispatching: kombu restores their
    messages as the connection's channel closes, and new holders serve the next one."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def stop(self, parent: Any) -> None:
        brokers = list(_BROKERS)
        for broker in brokers:
            broker._stop()
        if parent.blueprint.state != bootsteps.CLOSE:
            return  # A lost connection: what they hold is restored as its channel closes.
        # The pull waiting now could take a message handed back below: end it first.
        channel = getattr(getattr(parent, "task_consumer", None), "channel", None)
        stop_pulling = getattr(channel, "stop_pulling", None)
        if stop_pulling is not None:
            stop_pulling()
        handed = sum(broker._hand_back_held() for broker in brokers)
        if handed:
            log.info("handed back held tasks", extra={"tasks": handed})

    shutdown = stop


def _immediate_writer(consumer: Any) -> Callable[[], None]:
    """What writes the pool's queued jobs to its idle children at once.

    The prefork pool queues a job and writes it when the event loop next finds a child's
    pipe writable: after the rest of this turn (the broker's replies read, its next BRPOP
    sent) and one more poll. Calling the loop's own write handler with the idle children's
    pipes writes the job while the turn goes on, so the child starts meanwhile. A pipe
    that cannot take the job whole is finished by the loop as usual. Pools without that
    machinery keep their own pace.
    """
    pool: Any = getattr(consumer.pool, "_pool", None)
    hub = getattr(consumer, "hub", None)
    inqueues = getattr(pool, "_all_inqueues", None)
    busy = getattr(pool, "_active_writes", None)
    if hub is None or inqueues is None or busy is None:
        return lambda: None

    def write_now() -> None:
        # Looked up each time: the pool installs its handler when it joins the loop.
        write = getattr(hub, "consolidate_callback", None)
        idle = [fd for fd in inqueues if fd not in busy]
        if write is not None and idle and pool.outbound_buffer:
            write(idle)

    return write_now
