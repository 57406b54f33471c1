"""Running inferq's own processes as children: for ``inferq up``, benchmarks and tests."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

INFERQ = str(Path(sys.prefix) / "bin" / "inferq")

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has Linux send the child SIGTERM when this process dies, even
    by SIGKILL: a child in a session of its own is otherwise adopted by init and lives on.
    Linux sends it when the *thread* that forked the child ends, so only a process's main
    thread may start such children. None where there is no such thing."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def preexec() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # The parent died before prctl took effect.
            os._exit(1)

    return preexec


class ServiceProcess:
    """One ``inferq`` process in its own process group, its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path,
                 inferq: str = INFERQ) -> None:
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [inferq, *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _check(self, deadline: float, waiting_for: str) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.args} exited early:\n{self.log()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{self.args}: no {waiting_for}:\n{self.log()[-3000:]}")

    def wait_for_log(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            self._check(deadline, repr(text))
            time.sleep(0.1)

    def wait_http(self, url: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            self._check(deadline, f"answer from {url}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the whole group: a worker's main process and its children."""
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
    extra: tuple[str, ...] = (),
) -> ServiceProcess:
    worker = ServiceProcess(
        ["worker", "--pool", pool, "--concurrency", str(concurrency),
         "--metrics-port", str(metrics_port), *extra],
        env,
        log_dir / f"worker-{pool}-{time.monotonic_ns()}.log",
    )
    worker.wait_for_log(" ready.")
    return worker
