"""Micro-batching: the consumer buffers task messages and hands the pool one job per batch.

A Celery strategy runs in the worker's main process for every message of a batched task.
Instead of sending each message to a prefork child on its own, it buffers them and
flushes the buffer as ONE pool job (``BatchedTask.run_batch``) when a child is free, when
the buffer holds ``max_rows`` rows, or ``max_wait`` after its first message, whichever
comes first. While every child is busy the buffer keeps filling, so batches grow with the
load and a lone request waits at most ``max_wait``. Batching pays only where a call's fixed
cost dominates, so the batcher learns each model's cost per row from the batches it ran
and keeps a batch's estimated run time under ``MAX_BATCH_SECONDS``: a slow model's tasks
run alone, within their own time limits, as do the tasks of a model not yet timed.

A task that arrives alone at an idle worker, for a model whose lone calls were timed under
``inline_max``, runs in the main process itself: the hand-over to a child and back (a
pickled job down a pipe, the child waking on a cold cache, two messages back) costs more
than such a call, and so would marking it running first: it goes from queued straight to
finished. "Alone" is judged once the whole burst its message came in is delivered, so
under load tasks come in company and their batches go to children. A lone call is timed
apart from the cost per row: one row of a random forest costs far more than a forty-row
batch's share. A redelivered task always runs in a child, where its attempts are counted.

Messages stay unacknowledged, in the pool's ``unacked`` hash, from delivery until their
results are stored: a worker that dies mid-batch loses nothing (its messages are restored
to the queue), and the hash keeps counting everything the worker holds.
"""

from __future__ import annotations

import logging
import math
import signal
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

from billiard.exceptions import WorkerLostError
from celery import Celery, Task, bootsteps
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from kombu.message import Message
from kombu.transport import virtual

from services.common.pools import PoolSpec
from services.common.settings import Settings
from services.worker.execution import forget_held
from services.worker.pool import will_run

log = logging.getLogger(__name__)

class BatchItem(NamedTuple):
    """One buffered message as a child receives it."""

    kwargs: dict[str, Any]
    headers: dict[str, Any]
    #: What acknowledges the message: its field in the pool's unacked hash.
    delivery_tag: str

#: A batch whose rows are estimated to take longer is not grown further.
MAX_BATCH_SECONDS = 0.25


@dataclass(frozen=True)
class BatchLimits:
    """How large a batch may grow and how long its first message may wait for others."""

    max_rows: int
    max_wait: float
    #: A lone task estimated to run under this many seconds runs in the main process.
    inline_max: float = 0.0

    @classmethod
    def for_pool(cls, settings: Settings, pool: PoolSpec) -> BatchLimits:
        rows = settings.batch_max_rows or pool.batch_max_rows
        wait_ms = _configured(settings.batch_max_wait_ms, pool.batch_max_wait_ms)
        inline_ms = _configured(settings.inline_max_ms, pool.inline_max_ms)
        return cls(max_rows=max(1, rows), max_wait=max(0.0, wait_ms) / 1000,
                   inline_max=max(0.0, inline_ms) / 1000)


def _configured(setting: float | None, default: float) -> float:
    return default if setting is None else setting


class BatchedTask(Task):
    """A task whose messages the worker runs in batches through ``run_batch``."""

    Strategy = "services.worker.batching:batch_strategy"
    batch_limits: BatchLimits = BatchLimits(max_rows=1, max_wait=0.0)

    def cost_key(self, kwargs: dict[str, Any]) -> str:
        """What a message's cost per row depends on (the model it calls, say)."""
        return str(self.name)

    def run_batch(self, items: list[BatchItem], announce: bool = True) -> dict[str, float]:
        """Run one batch, storing each result; runs in a pool child, or in the main process
        (``announce=False``: first deliveries, not marked running before their call).

        On return every item's message is acknowledged in Redis (after its result is
        stored, in the same round trip): the worker's main process only forgets them.
        Returns the seconds per row each ``cost_key`` took, to size the next batches.
        """
        raise NotImplementedError

    def fail_batch(self, items: list[BatchItem], exc: BaseException) -> None:
        """Record the failure of a batch whose child was killed; runs in the main process."""
        raise NotImplementedError


def _run_batch_in_child(task: BatchedTask, items: list[BatchItem]) -> dict[str, float]:
    return task.run_batch(items)


@dataclass
class _Buffered:
    message: Message
    item: BatchItem
    rows: int
    cost_key: str


def batch_strategy(task: BatchedTask, app: Celery, consumer: Any, **_: Any) -> Callable[..., None]:
    """The Celery strategy of a ``BatchedTask``: buffer each message in a ``Batcher``."""
    return Batcher(task, consumer).on_message


#: The batchers of this process, for ``HandBackAtStop``.
_BATCHERS: weakref.WeakSet[Batcher] = weakref.WeakSet()


class Batcher:
    """The buffer of one batched task in the worker's main process (one event loop)."""

    def __init__(self, task: BatchedTask, consumer: Any) -> None:
        self._task = task
        self._pool = consumer.pool
        self._write_now = _immediate_writer(consumer)
        self._timer = consumer.timer
        self._limits = task.batch_limits
        self._soft_timeout = task.soft_time_limit or task.app.conf.task_soft_time_limit
        self._hard_timeout = task.time_limit or task.app.conf.task_time_limit
        self._buffer: list[_Buffered] = []
        self._rows = 0
        self._running = 0
        self._timer_ref: Any = None
        self._errors = consumer.connection_errors
        self._seconds_per_row: dict[str, float] = {}
        #: Seconds a call for one task alone took, per cost key (what running inline costs).
        self._lone_call_seconds: dict[str, float] = {}
        self._hub: Any = getattr(consumer, "hub", None)
        self._flush_pending = False
        #: The batches sent to the pool and not yet finished, by id, with their jobs.
        self._in_pool: dict[int, tuple[Any, list[_Buffered]]] = {}
        #: Set when the consumer stops: messages are only buffered, to be handed back.
        self.stopping = False
        _BATCHERS.add(self)

    def on_message(self, message: Message, body: Any, ack: Any, reject: Any,
                   callbacks: Any, **_: Any) -> None:
        _args, kwargs, _embed = message.decode() if body is None else body
        rows = kwargs.get("rows")
        self._buffer.append(_Buffered(message, BatchItem(kwargs, dict(message.headers or {}),
                                                         message.delivery_tag),
                                      len(rows) if isinstance(rows, list) else 1,
                                      self._task.cost_key(kwargs)))
        self._rows += self._buffer[-1].rows
        if self.stopping:
            return
        if self._rows >= self._limits.max_rows:
            self._flush()
        elif self._idle_child():
            if self._inline_candidate():
                self._flush_after_delivery()
            elif self._limits.max_wait <= 0:
                self._flush()
            elif self._timer_ref is None:
                self._timer_ref = self._timer.call_after(self._limits.max_wait, self._on_timer)

    def _idle_child(self) -> bool:
        return self._running < self._pool.num_processes

    def _on_timer(self) -> None:
        self._timer_ref = None
        if self._idle_child():
            self._flush()

    def _flush(self, inline: bool = False) -> None:
        """Send full batches to the pool, and a partial one if a child is idle; with
        ``inline``, a lone cheap task runs in this process instead."""
        if self._timer_ref is not None:
            self._timer_ref.cancel()
            self._timer_ref = None
        if self.stopping:
            return
        while self._buffer and (self._rows >= self._limits.max_rows or self._idle_child()):
            if inline and self._inline_candidate():
                self._send(self._take_batch(), inline=True)
            else:
                self._send(self._take_batch())

    def _inline_candidate(self) -> bool:
        """Whether the buffer is one task that may run inline (see the module)."""
        if (len(self._buffer) != 1 or self._running or self._hub is None
                or not self._limits.inline_max):
            return False
        (entry,) = self._buffer
        cost = max(self._lone_call_seconds.get(entry.cost_key, math.inf),
                   entry.rows * self._seconds_per_row.get(entry.cost_key, math.inf))
        return cost <= self._limits.inline_max and not entry.item.headers.get("redelivered")

    def _flush_after_delivery(self) -> None:
        """Flush once the message being delivered and the burst it came in are buffered:
        the event loop runs what is scheduled before it reads or sends anything else."""
        if not self._flush_pending:
            self._flush_pending = True
            self._hub.call_soon(self._flush_delivered)

    def _flush_delivered(self) -> None:
        self._flush_pending = False
        self._flush(inline=True)

    def _take_batch(self) -> list[_Buffered]:
        taken, rows, seconds = 0, 0, 0.0
        for entry in self._buffer:
            # Unknown cost is infinite: a model not yet timed runs alone.
            cost = entry.rows * self._seconds_per_row.get(entry.cost_key, math.inf)
            if taken and (rows + entry.rows > self._limits.max_rows
                          or seconds + cost > MAX_BATCH_SECONDS):
                break
            taken, rows, seconds = taken + 1, rows + entry.rows, seconds + cost
        batch, self._buffer = self._buffer[:taken], self._buffer[taken:]
        self._rows -= rows
        return batch

    def _send(self, batch: list[_Buffered], inline: bool = False) -> None:
        self._running += 1
        done = False
        lone = batch[0] if len(batch) == 1 else None

        def finished(costs: Any) -> None:
            nonlocal done
            if not done:
                done = True
                self._running -= 1
                self._in_pool.pop(id(batch), None)
                self._learn(costs, lone)
                forget_acked([entry.message for entry in batch])
                self._flush()

        def failed(error: Any) -> None:
            nonlocal done
            if done:
                return
            done = True
            self._running -= 1
            self._in_pool.pop(id(batch), None)
            self._on_failed(batch, getattr(error, "exception", error))
            self._flush()

        if inline:
            try:
                with soft_time_limit(self._soft_timeout):
                    costs = self._task.run_batch([entry.item for entry in batch],
                                                 announce=False)
            except Exception as exc:
                failed(exc)
            else:
                finished(costs)
            return
        job = self._pool.apply_async(
            _run_batch_in_child,
            (self._task, [entry.item for entry in batch]),
            callback=finished,
            error_callback=failed,
            soft_timeout=self._soft_timeout,
            timeout=self._hard_timeout,
        )
        if not done:
            self._in_pool[id(batch)] = (job, batch)
        self._write_now()

    def hand_back(self) -> int:
        """Put back at the head of the queue every message held here that no child will
        run: those buffered, and those of batches the pool dropped unstarted (see
        ``services.worker.pool``). Returns how many."""
        if self._timer_ref is not None:
            self._timer_ref.cancel()
            self._timer_ref = None
        unsent, self._buffer, self._rows = self._buffer, [], 0
        for key, (job, batch) in list(self._in_pool.items()):
            if not will_run(self._pool, job):
                del self._in_pool[key]
                self._running -= 1
                unsent.extend(batch)
        for handed, entry in enumerate(unsent):
            try:
                entry.message.reject(requeue=True)
            except Exception:
                # Redis gone: the rest would wait as long. They return after the
                # visibility timeout, or as the channel closes.
                log.warning("could not hand back held tasks", exc_info=True,
                            extra={"tasks": len(unsent) - handed})
                return handed
        return len(unsent)

    def _learn(self, costs: Any, lone: _Buffered | None) -> None:
        """Fold a batch's seconds per row into the estimates; ``lone``: its one task."""
        for key, seconds in (costs or {}).items():
            _fold(self._seconds_per_row, key, seconds)
            if lone is not None and lone.cost_key == key:
                _fold(self._lone_call_seconds, key, seconds * lone.rows)

    def _on_failed(self, batch: list[_Buffered], exc: BaseException) -> None:
        messages = [entry.message for entry in batch]
        if isinstance(exc, TimeLimitExceeded):
            # The child was killed past the hard limit: the batch's tasks fail, once.
            try:
                self._task.fail_batch([entry.item for entry in batch], exc)
            except Exception:
                log.exception("could not record a killed batch; its tasks will run again")
                reject_all(messages, self._errors)
                return
            ack_all(messages, self._errors)
            return
        if not isinstance(exc, WorkerLostError):
            log.error("batch failed; its tasks go back to the queue",
                      extra={"tasks": len(batch), "error": repr(exc)})
        # A lost child or an unexpected error: the tasks run again elsewhere. Their
        # records count attempts, so a task that keeps killing workers fails in the end.
        reject_all(messages, self._errors)


class HandBackAtStop(bootsteps.StartStopStep):
    """When the worker stops (a warm shutdown, before the pool is joined), the messages
    it holds but does not run go back to the queue at once, for the workers that remain,
    not when the running tasks are done (a scale-in's SIGTERM). When the consumer stops
    for a lost connection, the batchers only stop sending: kombu restores their messages
    as the connection's channel closes, and new batchers serve the next one."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def stop(self, parent: Any) -> None:
        batchers = list(_BATCHERS)
        for batcher in batchers:
            batcher.stopping = True
        if parent.blueprint.state != bootsteps.CLOSE:
            return  # A lost connection: what they hold is restored as its channel closes.
        # The pull waiting now could take a message handed back below: end it first.
        channel = getattr(getattr(parent, "task_consumer", None), "channel", None)
        stop_pulling = getattr(channel, "stop_pulling", None)
        if stop_pulling is not None:
            stop_pulling()
        handed = sum(batcher.hand_back() for batcher in batchers)
        if handed:
            log.info("handed back held tasks", extra={"tasks": handed})

    shutdown = stop


@contextmanager
def soft_time_limit(seconds: float | None) -> Iterator[None]:
    """Raise ``SoftTimeLimitExceeded`` in this (main) thread after ``seconds``, as a pool
    child's soft limit does; the previous SIGALRM handler is restored after."""
    if not seconds:
        yield
        return

    def expired(_signum: int, _frame: Any) -> None:
        raise SoftTimeLimitExceeded(seconds)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _fold(estimates: dict[str, float], key: str, measured: float) -> None:
    """Average ``measured`` into ``estimates[key]``; a call past its time limit counts as
    unbounded until the next one is timed."""
    known = estimates.get(key, math.inf)
    estimates[key] = measured if math.isinf(known) else (known + measured) / 2


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
    tags = [m.delivery_tag for m in pending]
    try:
        with channel.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)  # A full Redis runs these.
            forget_held(pipe, qos.unacked_key, qos.unacked_index_key, tags)
            pipe.execute()
    except Exception:
        # Left in the unacked hash: restored after the visibility timeout, and their
        # records (already finished) make the second delivery a no-op.
        log.exception("could not acknowledge a batch", extra={"tasks": len(pending)})
        return
    forget_acked(pending)


def forget_acked(messages: Sequence[Message]) -> None:
    """Drop ``messages``, acknowledged in Redis already, from the consumer's bookkeeping."""
    for message in messages:
        if not message.acknowledged:
            virtual.QoS.ack(message.channel.qos, message.delivery_tag)
            message._state = "ACK"


def reject_all(messages: Sequence[Message], errors: tuple[type[BaseException], ...]) -> None:
    """Put ``messages`` back at the head of their queue.

    One that cannot be put back stays held in Redis: the visibility timeout restores it.
    The worker goes on either way; it never dies of a message it could not hand back.
    """
    for message in messages:
        if not message.acknowledged:
            try:
                message.reject_log_error(log, errors, requeue=True)
            except Exception:
                log.exception("could not put a task back on its queue; it returns after "
                              "the visibility timeout", extra={"tag": message.delivery_tag})
