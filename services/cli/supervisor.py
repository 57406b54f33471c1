"""The processes of ``inferq up``: each in a session of its own, all stopped together.

The terminal's Ctrl-C reaches only ``inferq up``, which then stops its children in order
(the services, then the Redis they use), so that no worker hears SIGINT and none of them
loses its Redis while it shuts down. SIGINT, SIGTERM and SIGHUP all stop the stack, even
when the shell started it with SIGINT ignored (``cmd &`` in a script).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from types import FrameType
from typing import IO

from services.cli.processes import die_with_parent

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: Seconds a child has to stop after SIGTERM before it and its group are killed.
STOP_GRACE = 15.0


class StopRequested(BaseException):
    """A signal asked the stack to stop (a BaseException, so no ``except Exception`` in
    library code swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    #: Stopped after every other child: what the others depend on.
    last: bool = False

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal_group(self, signum: int) -> None:
        """``signum`` to the child's process group: the child and whatever it forked."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)


class Supervisor:
    def __init__(self, pass_fds: tuple[int, ...] = ()) -> None:
        self.children: list[Child] = []
        self.pass_fds = pass_fds
        self._hurry = False

    def start(self, name: str, args: list[str], env: dict[str, str],
              stdout: int | IO[bytes] | None = None) -> Child:
        process = subprocess.Popen(
            args, env=env, stdout=stdout, start_new_session=True,
            preexec_fn=die_with_parent(), pass_fds=self.pass_fds,
        )
        return self.adopt(name, process)

    def adopt(self, name: str, process: subprocess.Popen[bytes], last: bool = False) -> Child:
        child = Child(name, process, last)
        self.children.append(child)
        return child

    def exited(self) -> Child | None:
        return next((child for child in self.children if not child.alive()), None)

    def watch_signals(self) -> None:
        for signum in STOP_SIGNALS:
            # nohup's ignored SIGHUP stays ignored: that is what its user asked for.
            if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
                continue
            signal.signal(signum, _raise_stop)

    def stop(self) -> None:
        """Stop every child: SIGTERM, then SIGKILL to its group after STOP_GRACE seconds
        or at a second stop signal. Nothing it started is left running."""
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) == _raise_stop:
                signal.signal(signum, self._hurry_up)
        for group in ([c for c in self.children if not c.last],
                      [c for c in self.children if c.last]):
            for child in group:
                if child.alive():
                    child.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE
            while any(c.alive() for c in group) and time.monotonic() < deadline \
                    and not self._hurry:
                time.sleep(0.05)
            for child in group:
                # The group too: a worker's pool processes outlive a killed main process.
                child.signal_group(signal.SIGKILL)
                child.process.wait()

    def _hurry_up(self, signum: int, frame: FrameType | None) -> None:
        log.warning("stopping now", extra={"signal": signal.Signals(signum).name})
        self._hurry = True


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise StopRequested(signum)
