"""Environments for the real inferq processes that integration tests start."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from services.cli.processes import INFERQ, ServiceProcess, start_api, start_worker

SUPPORT = str(Path(__file__).parent / "support")

__all__ = ["INFERQ", "ServiceProcess", "metrics_worker", "service_env", "start_api",
           "start_worker"]


def service_env(redis_url: str, model_store: Path | str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFERQ_", "OTEL_"))}
    env.update(
        INFERQ_REDIS_URL=redis_url,
        INFERQ_MODEL_STORE=str(model_store),
        # Tests never write to the home directory's storage: beside a model store directory.
        INFERQ_STORAGE_URL=str(model_store.parent / "storage") if isinstance(model_store, Path)
        else str(Path(tempfile.gettempdir()) / "inferq-test-storage"),
        INFERQ_LOG_FORMAT="text",
        # Tests of authentication turn it on; the others act as the default tenant.
        INFERQ_AUTH="off",
        PYTHONPATH=SUPPORT,
    )
    env.update(extra)
    return env


def metrics_worker(env: dict[str, str], logs: Path, pool: str, concurrency: int
                   ) -> Iterator[str]:
    """A fixture's body: a worker of ``pool`` serving its metrics; their address."""
    from services.cli.redis_server import free_port

    port = free_port()
    worker = start_worker(env, logs, pool=pool, concurrency=concurrency, metrics_port=port)
    yield f"http://127.0.0.1:{port}/metrics"
    worker.stop()
