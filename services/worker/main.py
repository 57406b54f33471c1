"""Starting one worker pool: the Celery worker consuming the pool's queue."""

from __future__ import annotations

import logging

from services.common.pools import get_pool
from services.common.settings import Settings
from services.worker.celery_app import create_celery_app
from services.worker.tasks import register_tasks

log = logging.getLogger(__name__)


def run_worker(settings: Settings, pool_name: str, concurrency: int, metrics_port: int) -> None:
    pool = get_pool(pool_name)
    app = create_celery_app(settings, pool)
    register_tasks(app, settings)
    log.info(
        "worker starting",
        extra={"pool": pool.name, "concurrency": concurrency, "redis": settings.redis_url_redacted},
    )
    app.worker_main(
        [
            "worker",
            "--queues",
            pool.queue,
            "--concurrency",
            str(concurrency),
            "--hostname",
            f"{pool.name}@%h",
            "--loglevel",
            settings.log_level,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )
