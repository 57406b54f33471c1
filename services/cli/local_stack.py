"""``inferq up``: Redis, the demo models, the API and one worker per pool, on this machine."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.cli.redis_server import free_port, port_open, start_redis
from services.common.pools import POOLS
from services.common.settings import Settings

log = logging.getLogger(__name__)

TRY_THIS = """
inferq is up: API on http://{host}:{port}  (Ctrl-C stops everything)

  curl -s http://{host}:{port}/v1/models
  curl -s -X POST 'http://{host}:{port}/v1/models/iris/predict?wait=5' \\
       -H 'content-type: application/json' -d '{{"instances": [[5.1, 3.5, 1.4, 0.2]]}}'
  inferq predict iris --json '[[6.7, 3.0, 5.2, 2.3]]' --url http://{host}:{port}
  open http://{host}:{port}/docs for the API reference
"""


def _inferq(*args: str) -> list[str]:
    return [sys.executable, "-m", "services.cli.main", *args]


def run_local_stack(
    settings: Settings, host: str, port: int, concurrency: int, state_dir: Path
) -> int:
    children: list[subprocess.Popen[bytes]] = []
    redis: subprocess.Popen[bytes] | None = None
    env = dict(os.environ)
    if "INFERQ_REDIS_URL" not in os.environ:
        redis_port = 6379 if not port_open(6379) else free_port()
        log.info("starting redis", extra={"port": redis_port, "dir": str(state_dir / "redis")})
        redis = start_redis(redis_port, state_dir / "redis")
        children.append(redis)
        env["INFERQ_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    env["INFERQ_MODEL_STORE"] = str(settings.model_store)
    env.setdefault("INFERQ_LOG_FORMAT", "text")

    from ml.demo import ensure_demo

    for metadata in ensure_demo(settings.model_store):
        log.info("demo model trained", extra={"model": metadata.name, "version": metadata.version})
    try:
        children.append(
            subprocess.Popen(_inferq("api", "--host", host, "--port", str(port)), env=env)
        )
        for pool in POOLS:
            children.append(
                subprocess.Popen(
                    _inferq(
                        "worker",
                        "--pool",
                        pool,
                        "--concurrency",
                        str(concurrency),
                        "--metrics-port",
                        "0",
                    ),
                    env=env,
                )
            )
        _wait_ready(f"http://{host}:{port}/readyz", children)
        sys.stdout.write(TRY_THIS.format(host=host, port=port))
        sys.stdout.flush()
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        log.error("a process of the local stack exited; stopping the rest")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        _stop([child for child in children if child is not redis], redis)


def _wait_ready(url: str, children: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            raise RuntimeError("a process of the local stack exited during start-up")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the API did not become ready at {url} within {timeout:g} s")


def _stop(services: list[subprocess.Popen[bytes]], redis: subprocess.Popen[bytes] | None) -> None:
    """The workers and the API first, and once they are gone the Redis this stack started,
    so that none of them loses its connection while shutting down."""
    for group in (services, [redis] if redis is not None else []):
        for child in group:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in group:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
