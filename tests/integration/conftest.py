"""A running stack for integration tests: the API and an inference worker on real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from processes import ServiceProcess, service_env, start_api, start_worker

from services.cli.redis_server import free_port
from services.common.storage import Storage

# Short limits, so that a killed worker's tasks come back within seconds.
FAST_RECOVERY = {
    "INFERQ_SOFT_TIME_LIMIT": "4",
    "INFERQ_HARD_TIME_LIMIT": "5",
    "INFERQ_VISIBILITY_TIMEOUT": "6",
}


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Storage:
    """A module's own local storage, for stacks that read datasets and write job outputs."""
    return Storage.from_url(str(tmp_path_factory.mktemp("storage")))


@pytest.fixture(scope="module")
def stack_env(redis_server, model_store) -> dict[str, str]:  # type: ignore[no-untyped-def]
    redis_server.client().flushdb()
    return service_env(redis_server.url, model_store, **FAST_RECOVERY)


@pytest.fixture(scope="module")
def api(stack_env: dict[str, str], logs: Path) -> Iterator[ServiceProcess]:
    process = start_api(stack_env, free_port(), logs)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def api_url(api: ServiceProcess) -> str:
    return f"http://127.0.0.1:{api.args[api.args.index('--port') + 1]}"


@pytest.fixture(scope="module")
def worker(stack_env: dict[str, str], logs: Path) -> Iterator[ServiceProcess]:
    process = start_worker(stack_env, logs, concurrency=2)
    yield process
    process.stop()


@pytest.fixture
def client(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=40) as http:
        yield http
