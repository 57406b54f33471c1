"""A whole ``inferq up`` (or ``make up``) run for tests: free ports, its log, and a cleanup
that kills every process it started, even when the test fails half-way.

Every process of the run carries ``STACK_MARK`` in its environment (children inherit it,
sessions of their own or not), which finds them all without trusting the code under test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil

from services.cli.ports import listener, port_taken
from services.cli.redis_server import free_port

STACK_MARK = "INFERQ_TEST_STACK_MARK"
BANNER = "inferq is up"


class LocalStack:
    def __init__(self, log_path: Path) -> None:
        self.mark = uuid.uuid4().hex
        self.port = free_port()
        self.redis_port = free_port()
        self.log_path = log_path
        #: The flags that put the run on this stack's ports.
        self.flags = ["--port", str(self.port), "--redis-port", str(self.redis_port)]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, command: list[str], env: dict[str, str], cwd: Path | None = None,
              preexec_fn: Callable[[], None] | None = None) -> LocalStack:
        """Start ``command`` in a session of its own, as a terminal starts a job."""
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, env={**env, STACK_MARK: self.mark}, cwd=cwd, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=preexec_fn,
            )
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_banner(self, timeout: float = 120) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while BANNER not in self.log():
            assert self.process.poll() is None, f"exited {self.process.returncode}:\n" \
                                                f"{self.log()[-4000:]}"
            assert time.monotonic() < deadline, f"no banner in {timeout:g} s:\n" \
                                                f"{self.log()[-4000:]}"
            time.sleep(0.2)

    def processes(self) -> list[psutil.Process]:
        """Every live process of this run, however far it moved from its parent: by the
        mark in its environment, or, for Redis, which writes its title over its environment,
        by a port of the run or a working directory in the test's."""
        listeners = {listener(port) for port in (self.port, self.redis_port)} - {os.getpid()}
        found = []
        for process in psutil.process_iter():
            try:
                if process.status() == psutil.STATUS_ZOMBIE or process.pid == os.getpid():
                    continue
                if process.pid in listeners or process.environ().get(STACK_MARK) == self.mark \
                        or Path(process.cwd()).is_relative_to(self.log_path.parent):
                    found.append(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found

    def wait_exit(self, timeout: float = 40) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout:g} s:\n"
                                 f"{self.log()[-4000:]}") from None

    def assert_nothing_left(self) -> None:
        """No process of the run lives and neither of its ports is bound."""
        deadline = time.monotonic() + 5  # Reaping by init is not instant.
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, [" ".join(p.cmdline()) for p in left]
        assert not port_taken(self.port), f"port {self.port} is still bound"
        assert not port_taken(self.redis_port), f"port {self.redis_port} is still bound"

    def kill(self) -> None:
        """SIGKILL whatever is left: the test's cleanup, whatever happened."""
        for process in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

