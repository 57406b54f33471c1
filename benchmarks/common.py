"""What every benchmark shares: a throwaway stack, the machine's description, percentiles."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import platform
import secrets
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.cli.processes import ServiceProcess, start_api, start_worker
from services.cli.redis_server import free_port, start_redis


def machine() -> dict[str, object]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(memory, 1),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def write_results(out: Path, report: dict[str, Any],
                  write_markdown: Callable[[dict[str, Any], Path], None]) -> None:
    """``report`` as results.json and, by ``write_markdown``, results.md in ``out``; the
    table goes to the terminal too."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, out / "results.md")
    print((out / "results.md").read_text())


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "n": len(ms),
    }


def new_key() -> str:
    """A key in the API's format: ``inferq_<16 hex id>_<32 random bytes, base64url>``."""
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return f"inferq_{secrets.token_hex(8)}_{secret}"


def auth_env(setting: str, root: Path, key: str) -> dict[str, str]:
    """The API's environment for ``setting``: off, or on with ``key`` (tenant ``bench``,
    scope ``predict``) seeded at start and rate limits every request takes from, set high
    enough that none is refused."""
    if setting == "off":
        return {"INFERQ_AUTH": "off"}
    seed = root / "keys.json"
    seed.write_text(json.dumps([{"key": key, "tenant": "bench", "scopes": ["predict"],
                                 "name": "bench"}]))
    return {"INFERQ_AUTH": "on", "INFERQ_AUTH_SECRET": secrets.token_hex(32),
            "INFERQ_AUTH_SEED_FILE": str(seed),
            "INFERQ_RATE_LIMIT_REQUESTS_PER_SECOND": "1000000",
            "INFERQ_RATE_LIMIT_ROWS_PER_MINUTE": "1000000000"}


def bearer(key: str | None) -> str:
    """The header line a client sends ``key`` with (none without a key)."""
    return f"Authorization: Bearer {key}\r\n" if key else ""


@dataclass
class Stack:
    url: str
    redis_url: str
    store: Path
    env: dict[str, str]
    api: ServiceProcess
    workers: list[ServiceProcess]
    redis_pid: int = 0
    #: Every API process (replicas, as the chart runs two), ``api`` first.
    apis: list[ServiceProcess] = field(default_factory=list)
    #: The port of each API process, in the order of ``apis``.
    ports: list[int] = field(default_factory=list)
    #: The header lines every request carries: the API key, when authentication is on.
    headers: str = ""


@contextlib.contextmanager
def local_stack(store: Path | None = None,
                worker_args: tuple[str, ...] | list[tuple[str, ...]] = (),
                concurrency: int = 1, extra_env: dict[str, str] | None = None,
                api_replicas: int = 1, auth: bool = False) -> Iterator[Stack]:
    """Redis, the API (``api_replicas`` processes) and inference workers, all on this
    machine, torn down after: one worker with ``worker_args``, or one per entry when it is a
    list. ``auth``: authentication and rate limits on, as the chart runs the API, with a
    key in ``Stack.headers``."""
    with tempfile.TemporaryDirectory(prefix="inferq-bench-") as tmp:
        root = Path(tmp)
        if store is None:
            from ml.demo import train_demo

            store = root / "models"
            train_demo(store)
        redis_port = free_port()
        redis = start_redis(redis_port, root / "redis", appendonly=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFERQ_")}
        env.update(INFERQ_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
                   INFERQ_MODEL_STORE=str(store))
        key = new_key() if auth else None
        env.update({**auth_env("on" if auth else "off", root, key or ""), **(extra_env or {})})
        ports = [free_port() for _ in range(max(1, api_replicas))]
        apis = []
        for i, port in enumerate(ports):
            replica_dir = root / f"api-{i}"
            replica_dir.mkdir()
            apis.append(start_api(env, port, replica_dir))
        each = worker_args if isinstance(worker_args, list) else [worker_args]
        workers = [start_worker(env, root, concurrency=concurrency, extra=extra)
                   for extra in each]
        try:
            yield Stack(f"http://127.0.0.1:{ports[0]}", env["INFERQ_REDIS_URL"], store, env,
                        apis[0], workers, redis.pid, apis, ports, bearer(key))
        finally:
            for worker in workers:
                worker.stop()
            for api in apis:
                api.stop()
            redis.terminate()
            redis.wait()
