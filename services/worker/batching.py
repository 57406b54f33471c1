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

The decisions are plain functions (``services.worker.policy``); what reaches Celery's
consumer and pool goes through ``services.worker.broker``. This module applies the one
through the other.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from services.worker import policy
from services.worker.broker import Broker, ChildLost, Delivery
from services.worker.policy import Arrival, BatchLimits, Costs, Waiting

log = logging.getLogger(__name__)


class BatchedTask(Task):
    """A task whose messages the worker runs in batches through ``run_batch``.

    Its messages never reach the task's body: the strategy hands them to a ``Batcher``.
    """

    Strategy = "services.worker.broker:strategy"
    batch_limits: BatchLimits = BatchLimits(max_rows=1, max_wait=0.0)

    def run(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"{self.name} runs in batches: only a worker runs it, from its "
                           "queue")

    def holder(self, broker: Broker) -> Batcher:
        """The buffer of this task's messages on one consumer (the strategy hook's)."""
        return Batcher(self, broker)

    def cost_key(self, kwargs: dict[str, Any]) -> str:
        """What a message's cost per row depends on (the model it calls, say)."""
        return str(self.name)

    def run_batch(self, items: list[Delivery], announce: bool = True) -> dict[str, float]:
        """Run one batch, storing each result; runs in a pool child, or in the main process
        (``announce=False``: first deliveries, not marked running before their call).

        On return every item's message is acknowledged in Redis (after its result is
        stored, in the same round trip): the worker's main process only forgets them.
        Returns the seconds per row each ``cost_key`` took, to size the next batches.
        """
        raise NotImplementedError

    def fail_batch(self, items: list[Delivery], exc: BaseException) -> None:
        """Record the failure of a batch whose child was killed; runs in the main process."""
        raise NotImplementedError


def _run_batch_in_child(task: BatchedTask, items: list[Delivery]) -> dict[str, float]:
    return task.run_batch(items)


class Batcher:
    """The buffer of one batched task in the worker's main process (one event loop)."""

    def __init__(self, task: BatchedTask, broker: Broker) -> None:
        self._task = task
        self._broker = broker
        self._limits = task.batch_limits
        self._soft_timeout = task.soft_time_limit or task.app.conf.task_soft_time_limit
        self._hard_timeout = task.time_limit or task.app.conf.task_time_limit
        #: The deliveries buffered, and what the policy knows of each, in step.
        self._buffer: list[Delivery] = []
        self._waiting: list[Waiting] = []
        self._rows = 0
        self._running = 0
        self._timer_ref: Any = None
        self._costs = Costs.unknown()
        self._flush_pending = False
        #: The batches sent to the pool and not yet finished, by id, with their jobs.
        self._in_pool: dict[int, tuple[Any, list[Delivery]]] = {}
        #: Set when the consumer stops: messages are only buffered, to be handed back.
        self._stopping = False

    def receive(self, delivery: Delivery) -> None:
        rows = delivery.kwargs.get("rows")
        waiting = Waiting(len(rows) if isinstance(rows, list) else 1,
                          self._task.cost_key(delivery.kwargs), delivery.redelivered)
        self._buffer.append(delivery)
        self._waiting.append(waiting)
        self._rows += waiting.rows
        if self._stopping:
            return
        idle = self._idle_child()
        action = policy.on_arrival(self._rows, self._limits, idle,
                                   idle and self._inline_candidate())
        if action is Arrival.FLUSH:
            self._flush()
        elif action is Arrival.FLUSH_AFTER_DELIVERY:
            self._flush_after_delivery()
        elif action is Arrival.WAIT_FOR_COMPANY and self._timer_ref is None:
            self._timer_ref = self._broker.call_after(self._limits.max_wait, self._on_timer)

    def stop(self) -> None:
        self._stopping = True

    def release(self) -> list[str]:
        """Give up every message held here that no child will run: those buffered, and
        those of batches the pool dropped unstarted. Their tags, to hand back."""
        self._cancel_timer()
        unsent, self._buffer, self._waiting, self._rows = self._buffer, [], [], 0
        for key, (job, batch) in list(self._in_pool.items()):
            if not self._broker.will_run(job):
                del self._in_pool[key]
                self._running -= 1
                unsent.extend(batch)
        return [delivery.tag for delivery in unsent]

    def _idle_child(self) -> bool:
        return self._running < self._broker.children

    def _inline_candidate(self) -> bool:
        return self._broker.can_defer and policy.runs_inline(
            self._waiting, self._running, self._limits, self._costs)

    def _on_timer(self) -> None:
        self._timer_ref = None
        if self._idle_child():
            self._flush()

    def _cancel_timer(self) -> None:
        if self._timer_ref is not None:
            self._timer_ref.cancel()
            self._timer_ref = None

    def _flush(self, inline: bool = False) -> None:
        """Send full batches to the pool, and a partial one if a child is idle; with
        ``inline``, a lone cheap task runs in this process instead."""
        self._cancel_timer()
        if self._stopping:
            return
        while self._buffer and policy.may_send(self._rows, self._limits, self._idle_child()):
            alone = inline and self._inline_candidate()
            self._send(*self._take_batch(), inline=alone)

    def _flush_after_delivery(self) -> None:
        """Flush once the message being delivered and the burst it came in are buffered:
        the event loop runs what is scheduled before it reads or sends anything else."""
        if not self._flush_pending:
            self._flush_pending = True
            self._broker.call_soon(self._flush_delivered)

    def _flush_delivered(self) -> None:
        self._flush_pending = False
        self._flush(inline=True)

    def _take_batch(self) -> tuple[list[Delivery], list[Waiting]]:
        taken = policy.batch_size(self._waiting, self._limits, self._costs)
        items, self._buffer = self._buffer[:taken], self._buffer[taken:]
        waiting, self._waiting = self._waiting[:taken], self._waiting[taken:]
        self._rows -= sum(task.rows for task in waiting)
        return items, waiting

    def _send(self, items: list[Delivery], waiting: list[Waiting], inline: bool = False) -> None:
        self._running += 1
        done = False
        lone = waiting[0] if len(waiting) == 1 else None

        def finished(costs: Any) -> None:
            nonlocal done
            if not done:
                done = True
                self._running -= 1
                self._in_pool.pop(id(items), None)
                self._costs = policy.learned(self._costs, costs or {}, lone)
                self._broker.acknowledged([item.tag for item in items])
                self._flush()

        def failed(error: BaseException) -> None:
            nonlocal done
            if done:
                return
            done = True
            self._running -= 1
            self._in_pool.pop(id(items), None)
            self._on_failed(items, error)
            self._flush()

        if inline:
            try:
                with soft_time_limit(self._soft_timeout):
                    costs = self._task.run_batch(items, announce=False)
            except Exception as exc:
                failed(exc)
            else:
                finished(costs)
            return
        job = self._broker.dispatch(_run_batch_in_child, (self._task, items),
                                    on_done=finished, on_error=failed,
                                    soft_timeout=self._soft_timeout,
                                    hard_timeout=self._hard_timeout)
        if not done:
            self._in_pool[id(items)] = (job, items)

    def _on_failed(self, items: list[Delivery], exc: BaseException) -> None:
        tags = [item.tag for item in items]
        if isinstance(exc, TimeLimitExceeded):
            # The child was killed past the hard limit: the batch's tasks fail, once.
            try:
                self._task.fail_batch(items, exc)
            except Exception:
                log.exception("could not record a killed batch; its tasks will run again")
                self._broker.hand_back(tags)
                return
            self._broker.acknowledge(tags)
            return
        if not isinstance(exc, ChildLost):
            log.error("batch failed; its tasks go back to the queue",
                      extra={"tasks": len(items), "error": repr(exc)})
        # A lost child or an unexpected error: the tasks run again elsewhere. Their
        # records count attempts, so a task that keeps killing workers fails in the end.
        self._broker.hand_back(tags)


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
