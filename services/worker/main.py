"""Starting one worker pool: the Celery worker consuming the pool's queue."""

from __future__ import annotations

import logging
import os
from typing import Any

import redis
from celery import signals
from redis.exceptions import RedisError

from services.common.heap import settle_heap
from services.common.metrics import WORKER_PROCESSES
from services.common.pools import PoolSpec
from services.common.records import unreachable_redis, unsupported_redis
from services.common.settings import Settings
from services.common.telemetry import init_tracing, shutdown_tracing
from services.worker.celery_app import create_celery_app
from services.worker.metrics_server import require_multiprocess_values, serve_metrics
from services.worker.tasks import register_tasks

log = logging.getLogger(__name__)


def refuse_unsupported_redis(settings: Settings) -> None:
    """Stop the start of a worker whose Redis cannot run its scripts; an unreachable Redis
    is Celery's to wait for."""
    client = redis.Redis.from_url(settings.broker_url,
                                  socket_timeout=settings.redis_socket_timeout,
                                  socket_connect_timeout=settings.redis_socket_timeout,
                                  **settings.redis_tls)
    try:
        info = client.info("server")
    except (RedisError, OSError) as exc:
        level, line = unreachable_redis(exc)
        log.log(level, "redis unreachable at start", extra={"problem": line})
        return
    finally:
        client.close()
    problem = unsupported_redis(info)
    if problem:
        log.error(problem)
        raise SystemExit(problem)


def run_worker(settings: Settings, pool: PoolSpec, concurrency: int, metrics_port: int) -> None:
    if metrics_port:
        require_multiprocess_values()  # Before anything starts: see metrics_server.
    app = create_celery_app(settings, pool)
    register_tasks(app, settings, pool)

    # Tracing starts in the main process (it runs lone cheap tasks itself) and again in
    # each child after the fork (an exporter thread does not survive fork); each flushes
    # when it exits.
    @signals.worker_process_init.connect(weak=False)
    def _child_started(**_: Any) -> None:
        init_tracing("inferq-worker")
        WORKER_PROCESSES.labels(pool.name).set(1)
        settle_heap(collect=False)

    @signals.worker_init.connect(weak=False)
    def _main_started(**_: Any) -> None:
        settle_heap()  # Before the pool's children are forked.

    @signals.worker_process_shutdown.connect(weak=False)
    def _child_stopping(**_: Any) -> None:
        shutdown_tracing()
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())

    refuse_unsupported_redis(settings)
    if metrics_port:
        serve_metrics(metrics_port)
    init_tracing("inferq-worker", global_provider=False)
    log.info(
        "worker starting",
        extra={"pool": pool.name, "kind": pool.kind, "queue": pool.queue,
               "concurrency": concurrency, "redis": settings.redis_url_redacted},
    )
    try:
        app.worker_main([
            "worker",
            "--queues", pool.queue,
            "--concurrency", str(concurrency),
            "--hostname", f"{pool.name}@%h",
            "--loglevel", settings.log_level,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ])
    finally:
        shutdown_tracing()
