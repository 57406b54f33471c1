"""Builds the Celery app of one worker pool from settings."""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from services.common import keys
from services.common.pools import PoolSpec, visibility_timeout
from services.common.settings import Settings
from services.worker.broker import POOL, TRANSPORT, HandBackAtStop


def create_celery_app(settings: Settings, pool: PoolSpec) -> Celery:
    """A Celery app that consumes ``pool``'s queue and nothing else.

    Tasks are acknowledged after their results are stored (acks_late), so a task held by a
    worker that dies goes back to its queue. A worker holds at most ``prefetch_per_child``
    messages per child: enough for micro-batching (one batch running, one gathering), few
    enough that a backlog stays in the queue for the pods the autoscaler adds. Its consumer
    takes a burst of messages per round trip (``services.worker.broker``).
    What a pool holds sits in its own ``unacked`` hash: pools with different time limits
    restore their own messages by their own visibility timeout, and that hash is what the
    autoscaler counts as in flight. When the worker stops, what it holds but does not run
    goes back to the queue at once (``HandBackAtStop``). A soft time limit not below the
    hard one is dropped (``effective_soft_limit``).
    """
    hard = settings.hard_time_limit or pool.hard_time_limit
    soft = effective_soft_limit(settings.soft_time_limit or pool.soft_time_limit, hard)
    visibility = visibility_timeout(hard, settings.visibility_timeout)
    memory_mib = (pool.max_memory_per_child_mib if settings.worker_max_memory_mib is None
                  else settings.worker_max_memory_mib)
    app = Celery(f"inferq-{pool.name}", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        broker_transport=TRANSPORT,
        worker_pool=POOL,
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=settings.worker_prefetch or pool.prefetch_per_child,
        # In KiB; None: children are never replaced for their memory.
        worker_max_memory_per_child=1024 * memory_mib if memory_mib else None,
        task_soft_time_limit=soft,
        task_time_limit=hard,
        task_default_queue=pool.queue,
        task_queues=[Queue(pool.queue, routing_key=pool.queue)],
        task_create_missing_queues=False,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_enable_remote_control=False,
        # rediss://: the certificate checked against INFERQ_REDIS_CA_FILE.
        broker_use_ssl=settings.broker_tls,
        broker_transport_options={
            "visibility_timeout": visibility,
            # One list per queue: priority steps would split it into keys no one counts.
            "priority_steps": [0],
            "unacked_key": keys.unacked_key(pool.queue),
            "unacked_index_key": keys.unacked_index_key(pool.queue),
            "unacked_mutex_key": keys.unacked_mutex_key(pool.queue),
            # Sweep for messages of dead workers every few seconds, not kombu's ~100 s.
            "unacked_restore_interval": max(1, min(10, int(visibility // 3))),
            "unacked_restore_throttle": 1,
            "socket_timeout": settings.redis_socket_timeout,
            "socket_connect_timeout": settings.redis_socket_timeout,
            "health_check_interval": 10,
        },
    )
    app.steps["consumer"].add(HandBackAtStop)
    return app


def effective_soft_limit(soft: float, hard: float) -> float | None:
    """The soft time limit a pool runs with: ``soft`` when it comes before ``hard``, else
    none. The pool arms the hard limit only once the soft one has passed, so a soft limit
    at or past the hard one would push the hard kill back to it: a hard limit of 5 s set
    alone, under the training pool's default soft limit of 10740 s, would end a task only
    after 10740 s."""
    return soft if soft < hard else None
