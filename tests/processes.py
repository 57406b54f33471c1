"""Environments for the real inferq processes that integration tests start."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services.cli.processes import INFERQ, ServiceProcess, start_api, start_worker

SUPPORT = str(Path(__file__).parent / "support")

__all__ = ["INFERQ", "ServiceProcess", "auth_on", "create_key", "metrics_worker",
           "pool_worker", "service_env", "start_api", "start_worker"]


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


def auth_on(env: dict[str, str], **extra: str) -> dict[str, str]:
    """``env`` with authentication on, under a secret of its own (``INFERQ_AUTH_SECRET``)."""
    return {**env, "INFERQ_AUTH": "on", "INFERQ_AUTH_SECRET": secrets.token_hex(32), **extra}


def create_key(env: dict[str, str], tenant: str, scopes: str, *args: str) -> dict[str, str]:
    """A new API key made by ``inferq keys create`` in ``env`` (``auth_on``): its record,
    with ``key`` the key itself."""
    result = subprocess.run([INFERQ, "keys", "create", "--tenant", tenant, "--scopes", scopes,
                             *args], capture_output=True, text=True, env=env, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"inferq keys create failed: {result.stderr}")
    created: dict[str, str] = json.loads(result.stdout)
    return created


def metrics_worker(env: dict[str, str], logs: Path, pool: str, concurrency: int
                   ) -> Iterator[str]:
    """A fixture's body: a worker of ``pool`` serving its metrics; their address."""
    from services.cli.redis_server import free_port

    port = free_port()
    worker = start_worker(env, logs, pool=pool, concurrency=concurrency, metrics_port=port)
    yield f"http://127.0.0.1:{port}/metrics"
    worker.stop()


def pool_worker(env: dict[str, str], logs: Path, pool: str,
                concurrency: int = 1) -> Iterator[ServiceProcess]:
    """A fixture's body: a worker of ``pool``, stopped at the fixture's end."""
    process = start_worker(env, logs, pool=pool, concurrency=concurrency)
    yield process
    process.stop()


def own_store(model_store: Path, directory: Path) -> Path:
    """``directory`` made a model store of a module's own: the session's models linked in,
    so that what the module registers stays out of the session's store (a tenant's part,
    ``_tenants``, is not linked: each module's tenants start with nothing)."""
    for name in os.listdir(model_store):
        if not name.startswith("_"):
            os.symlink(Path(model_store) / name, directory / name)
    return directory


def module_env(redis_server: Any, model_store: Path, storage_url: str, directory: Path,
               **extra: str) -> dict[str, str]:
    """A module's services' environment: Redis emptied, a model store of its own
    (``own_store`` in ``directory``) and the storage at ``storage_url``."""
    redis_server.client().flushdb()
    return service_env(redis_server.url, own_store(model_store, directory),
                       INFERQ_STORAGE_URL=storage_url, **extra)
