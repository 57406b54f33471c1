"""``inferq up``: ready when it says so, one log format, and nothing left once it stops."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest
import redis
from local_stack import BANNER, LocalStack
from processes import INFERQ
from sklearn.tree import DecisionTreeClassifier
from task_client import IRIS_ROW

from services.cli.local_stack import TRY_THIS
from services.cli.redis_server import free_port, start_redis
from services.common.pools import POOLS

Stacks = Callable[[], LocalStack]


def up_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a person who set nothing: Redis from PATH, the default store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFERQ_", "OTEL_"))}
    return {**env, "HOME": str(home), **extra}


def start_up(stacks: Stacks, tmp_path: Path, env: dict[str, str],
             preexec_fn: Callable[[], None] | None = None) -> LocalStack:
    stack = stacks()
    return stack.start([INFERQ, "up", *stack.flags, "--state-dir", str(tmp_path / "state")],
                       env, preexec_fn=preexec_fn)


def predict(url: str, model: str, rows: list[list[float]]) -> httpx.Response:
    return httpx.post(f"{url}/v1/models/{model}/predict", params={"wait": 5},
                      json={"instances": rows}, timeout=20)


def assert_one_format(log: str) -> None:
    """Besides the banner, JSON lines only (stderr is no terminal): no Celery banner, no
    print of a worker, no httpx line per request."""
    banner = log[log.index("\ninferq is up"):]
    banner = banner[:banner.index("API reference\n") + len("API reference\n")]
    assert banner.count("\n") == TRY_THIS.count("\n"), banner
    lines = [line for line in log.replace(banner, "\n").splitlines() if line.strip()]
    for line in lines:
        assert line.startswith("{") and json.loads(line), line
    assert "HTTP Request" not in log


def test_up_answers_at_once_serves_imported_models_and_ctrl_c_stops_all(
        local_stacks: Stacks, tmp_path: Path) -> None:
    env = up_env(tmp_path / "home")
    stack = start_up(local_stacks, tmp_path, env)
    stack.wait_banner()
    # The README's first request, right after the banner: every pool's worker consumes.
    first = predict(stack.url, "iris", [IRIS_ROW])
    assert (first.status_code, first.json()["status"]) == (200, "succeeded"), first.text
    before_banner = stack.log().split(BANNER)[0]
    # A local stack needs no key, and says so and how to require one.
    assert "Authentication is off" in stack.log() and "INFERQ_AUTH=on" in stack.log()
    for pool in POOLS:
        assert re.search(rf"worker starting\W.*\bpool\W+{pool}\b", before_banner), before_banner
    # The CLI's model store is the one the stack serves, with nothing set by the user.
    joblib.dump(DecisionTreeClassifier().fit(np.eye(3), ["a", "b", "c"]), tmp_path / "t.joblib")
    imported = subprocess.run([INFERQ, "models", "import", str(tmp_path / "t.joblib"), "--name",
                               "tree", "--features", "p,q,r"], env=env, capture_output=True,
                              text=True, timeout=60)
    assert imported.returncode == 0, imported.stderr
    assert predict(stack.url, "tree", [[1, 0, 0]]).json()["result"]["predictions"] == ["a"]
    listed = subprocess.run([INFERQ, "models", "list"], env=env, capture_output=True,
                            text=True, timeout=60)
    served = httpx.get(f"{stack.url}/v1/models").json()["models"]
    assert json.loads(listed.stdout) == {m["name"]: m["versions"] for m in served}
    assert "tree" in json.loads(listed.stdout)

    assert stack.process is not None
    os.killpg(stack.process.pid, signal.SIGINT)  # Ctrl-C: the terminal's whole job.
    assert stack.wait_exit() == 0
    stack.assert_nothing_left()
    assert_one_format(stack.log())
    assert "Hitting Ctrl+C" not in stack.log() and "Warm shutdown" not in stack.log()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis of this test's own, as a user's INFERQ_REDIS_URL points at."""
    port = free_port()
    server = start_redis(port, tmp_path_factory.mktemp("own-redis"), shutil.which("redis-server"))
    yield f"redis://127.0.0.1:{port}/0"
    server.terminate()
    server.wait(timeout=10)


@pytest.mark.parametrize("how", ["sigterm", "sigint-while-ignored", "worker-crash"])
def test_up_stops_everything(how: str, local_stacks: Stacks, tmp_path: Path,
                             model_store: Path, own_redis: str) -> None:
    env = up_env(tmp_path / "home", INFERQ_MODEL_STORE=str(model_store))
    if how == "sigterm":  # Also the case of a Redis the stack did not start: it stays.
        env["INFERQ_REDIS_URL"] = own_redis
    # `cmd &` in a script starts cmd with SIGINT ignored.
    stack = start_up(local_stacks, tmp_path, env,
                     _ignore_sigint if how == "sigint-while-ignored" else None)
    stack.wait_banner()
    assert stack.process is not None
    if how == "sigterm":
        stack.process.send_signal(signal.SIGTERM)
    elif how == "sigint-while-ignored":
        stack.process.send_signal(signal.SIGINT)
    else:
        worker = next(p for p in stack.processes()
                      if "inference" in p.cmdline() and p.ppid() == stack.process.pid)
        worker.kill()
        deadline = time.monotonic() + 20
        while "stopping the rest" not in stack.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        # Ctrl-C while it stops: it hurries, and still stops all, Redis included.
        stack.process.send_signal(signal.SIGINT)
    assert stack.wait_exit() == (1 if how == "worker-crash" else 0), stack.log()[-3000:]
    stack.assert_nothing_left()
    if how == "sigterm":
        assert "starting redis" not in stack.log()
        assert redis.Redis.from_url(own_redis).ping()


def test_up_names_a_taken_port_and_starts_nothing(local_stacks: Stacks, tmp_path: Path,
                                                  model_store: Path) -> None:
    env = up_env(tmp_path / "home", INFERQ_MODEL_STORE=str(model_store))
    with socket.socket() as taken:
        stack = local_stacks()
        taken.bind(("127.0.0.1", stack.port))
        taken.listen()
        start_up(lambda: stack, tmp_path, env)
        assert stack.wait_exit(timeout=30) == 1
        log = stack.log()
        assert f"port {stack.port} on 127.0.0.1 is taken by pid {os.getpid()}" in log, log
        assert "Traceback" not in log and "inferq is up" not in log
    stack.assert_nothing_left()


def test_up_refuses_a_state_directory_in_use(local_stacks: Stacks, tmp_path: Path,
                                             model_store: Path) -> None:
    (tmp_path / "state").mkdir()
    with (tmp_path / "state" / "up.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stack = start_up(local_stacks, tmp_path,
                         up_env(tmp_path / "home", INFERQ_MODEL_STORE=str(model_store)))
        assert stack.wait_exit(timeout=30) == 1
    assert "another inferq up is running with the state directory" in stack.log()
    stack.assert_nothing_left()
