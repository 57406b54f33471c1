"""What every benchmark shares: a throwaway stack, the machine's description, percentiles."""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "n": len(ms),
    }


@dataclass
class Stack:
    url: str
    redis_url: str
    store: Path
    env: dict[str, str]
    api: ServiceProcess
    workers: list[ServiceProcess]
    redis_pid: int = 0


@contextlib.contextmanager
def local_stack(store: Path | None = None, worker_args: tuple[str, ...] = (),
                concurrency: int = 1, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """Redis, the API and one inference worker, all on this machine, torn down after."""
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
                   INFERQ_MODEL_STORE=str(store),
                   **(extra_env or {}))
        api_port = free_port()
        api = start_api(env, api_port, root)
        workers = [start_worker(env, root, concurrency=concurrency, extra=worker_args)]
        try:
            yield Stack(f"http://127.0.0.1:{api_port}", env["INFERQ_REDIS_URL"], store, env,
                        api, workers, redis.pid)
        finally:
            for worker in workers:
                worker.stop()
            api.stop()
            redis.terminate()
            redis.wait()
