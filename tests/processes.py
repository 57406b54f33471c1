"""Starting and stopping real inferq processes for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

INFERQ = str(Path(sys.prefix) / "bin" / "inferq")
SUPPORT = str(Path(__file__).parent / "support")


class ServiceProcess:
    """One ``inferq`` process in its own process group, its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [INFERQ, *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.args} exited early:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.args}: no {text!r} in {timeout} s:\n{self.log()[-3000:]}"
                )
            time.sleep(0.1)

    def wait_http(self, url: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.args} did not answer {url}:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the whole group: the worker's main process and its children."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log.close()

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def service_env(redis_url: str, model_store: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFERQ_", "OTEL_"))}
    env.update(
        INFERQ_REDIS_URL=redis_url,
        INFERQ_MODEL_STORE=str(model_store),
        INFERQ_LOG_FORMAT="text",
        PYTHONPATH=SUPPORT,
    )
    env.update(extra)
    return env


def start_api(env: dict[str, str], port: int, log_dir: Path) -> ServiceProcess:
    api = ServiceProcess(["api", "--port", str(port)], env, log_dir / f"api-{port}.log")
    api.wait_http(f"http://127.0.0.1:{port}/readyz")
    return api


def start_worker(
    env: dict[str, str],
    log_dir: Path,
    pool: str = "inference",
    concurrency: int = 1,
    metrics_port: int = 0,
) -> ServiceProcess:
    name = f"worker-{pool}-{time.monotonic_ns()}.log"
    worker = ServiceProcess(
        [
            "worker",
            "--pool",
            pool,
            "--concurrency",
            str(concurrency),
            "--metrics-port",
            str(metrics_port),
        ],
        env,
        log_dir / name,
    )
    worker.wait_for_log(" ready.")
    return worker
