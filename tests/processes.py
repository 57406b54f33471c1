"""Environments for the real inferq processes that integration tests start."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from services.cli.processes import INFERQ, ServiceProcess, start_api, start_worker

SUPPORT = str(Path(__file__).parent / "support")

__all__ = ["INFERQ", "ServiceProcess", "service_env", "start_api", "start_worker"]


def service_env(redis_url: str, model_store: Path | str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFERQ_", "OTEL_"))}
    env.update(
        INFERQ_REDIS_URL=redis_url,
        INFERQ_MODEL_STORE=str(model_store),
        # Tests never write to the home directory's storage: beside a model store directory.
        INFERQ_STORAGE_URL=str(model_store.parent / "storage") if isinstance(model_store, Path)
        else str(Path(tempfile.gettempdir()) / "inferq-test-storage"),
        INFERQ_LOG_FORMAT="text",
        PYTHONPATH=SUPPORT,
    )
    env.update(extra)
    return env
