"""The systems under test, each started on this machine: inferq, classic Celery, sync."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from common import local_stack

from services.cli.redis_server import free_port, start_redis

HERE = Path(__file__).parent


@dataclass
class System:
    name: str
    port: int
    #: Role -> pid; a role's CPU and memory include its children (prefork pools).
    pids: dict[str, int] = field(default_factory=dict)
    metrics_url: str | None = None
    #: Every port serving the system's API; clients spread their connections over them.
    ports: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ports = self.ports or [self.port]


@contextlib.contextmanager
def inferq(store: Path, concurrency: int, api_replicas: int = 1) -> Iterator[System]:
    metrics_port = free_port()
    # Batching settings given to the benchmark reach the worker (the stack drops INFERQ_*).
    batching = {k: v for k, v in os.environ.items()
                if k.startswith(("INFERQ_BATCH_", "INFERQ_INLINE_", "INFERQ_WORKER_PREFETCH"))}
    with local_stack(store=store, concurrency=concurrency, extra_env=batching,
                     worker_args=("--metrics-port", str(metrics_port)),
                     api_replicas=api_replicas) as stack:
        apis = {("api" if i == 0 else f"api-{i + 1}"): api.pid
                for i, api in enumerate(stack.apis)}
        yield System("inferq", stack.ports[0], {**apis, "worker": stack.workers[0].pid,
                                                "redis": stack.redis_pid},
                     f"http://127.0.0.1:{metrics_port}/metrics", stack.ports)


def _spawn(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _uvicorn(app: str, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", "--log-level", "warning",
            "--no-access-log"]


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited early")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1)
            return
        time.sleep(0.1)
    raise TimeoutError(f"no answer from {url}")


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, 15)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


@contextlib.contextmanager
def classic(model_dir: Path, concurrency: int) -> Iterator[System]:
    """One Celery task per request, prefetch 1, Redis broker and result backend."""
    with tempfile.TemporaryDirectory(prefix="classic-") as tmp:
        root = Path(tmp)
        redis_port, api_port = free_port(), free_port()
        redis = start_redis(redis_port, root / "redis", appendonly=False)
        env = dict(os.environ, CLASSIC_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
                   CLASSIC_MODEL_DIR=str(model_dir), PYTHONPATH=str(HERE / "classic"))
        worker = _spawn([sys.executable, "-m", "celery", "--app", "tasks", "worker",
                         "--pool", "prefork", "--concurrency", str(concurrency),
                         "--queues", "classic", "--loglevel", "WARNING", "--without-gossip",
                         "--without-mingle", "--without-heartbeat"],
                        HERE / "classic", env, root / "worker.log")
        api = _spawn(_uvicorn("api:app", api_port), HERE / "classic", env, root / "api.log")
        try:
            _wait_http(f"http://127.0.0.1:{api_port}/docs", api)
            yield System("classic", api_port,
                         {"api": api.pid, "worker": worker.pid, "redis": redis.pid})
        finally:
            _stop([api, worker])
            redis.terminate()
            redis.wait()


@contextlib.contextmanager
def sync(model_dir: Path) -> Iterator[System]:
    """A FastAPI endpoint that calls the model inside the request."""
    with tempfile.TemporaryDirectory(prefix="sync-") as tmp:
        port = free_port()
        env = dict(os.environ, SYNC_MODEL_DIR=str(model_dir), PYTHONPATH=str(HERE))
        api = _spawn(_uvicorn("sync_api:app", port), HERE, env, Path(tmp) / "api.log")
        try:
            _wait_http(f"http://127.0.0.1:{port}/docs", api)
            yield System("sync", port, {"api": api.pid})
        finally:
            _stop([api])
