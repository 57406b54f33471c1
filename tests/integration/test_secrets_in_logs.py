"""The Redis password never shows: not in the API's or a worker's log, not in an error the
API answers, not in ``/metrics`` or ``/readyz``, whether Redis answers, stops, or refuses
the password.

A real Redis with an ACL user and a password holding the characters a URL treats apart
(``/``, ``#``, ``@``); the API takes it in its URL (``redis://user:password@...``,
percent-encoded), the worker from ``INFERQ_REDIS_PASSWORD`` (as it is).
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from conftest import require_tool
from processes import ServiceProcess, service_env

from services.cli.redis_server import free_port, port_open

USER = "inferq"


def password() -> tuple[str, list[str]]:
    """A password whose parts are long and random (found in a log only if they leaked),
    joined by characters a URL gives a meaning: it and its parts."""
    parts = [secrets.token_hex(8) for _ in range(4)]
    return f"{parts[0]}/{parts[1]}#{parts[2]}@{parts[3]}", parts


PASSWORD, PASSWORD_PARTS = password()
WRONG, WRONG_PARTS = password()

IRIS = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


class AclRedis:
    """redis-server whose only user is ``USER`` with ``password``; ``restart`` starts it
    again on the same port, possibly with another password."""

    def __init__(self, data_dir: Path) -> None:
        self.binary = require_tool("redis-server")
        self.data_dir = data_dir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, password: str) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.data_dir), "--save", "", "--appendonly", "no",
             "--user", "default", "off",
             "--user", USER, "on", f">{password}", "~*", "&*", "+@all"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 10
        while not port_open(self.port):
            assert self.process.poll() is None and time.monotonic() < deadline, \
                "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclRedis]:
    server = AclRedis(tmp_path_factory.mktemp("acl-redis"))
    server.start(PASSWORD)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def envs(acl_redis: AclRedis, model_store: Path) -> dict[str, dict[str, str]]:
    """The API's environment (the password in the URL) and the worker's (in
    ``INFERQ_REDIS_PASSWORD``)."""
    host = f"127.0.0.1:{acl_redis.port}"
    return {
        "api": service_env(f"redis://{USER}:{quote(PASSWORD, safe='')}@{host}/0", model_store,
                           INFERQ_LOG_FORMAT="json"),
        "worker": service_env(f"redis://{USER}@{host}/0", model_store,
                              INFERQ_REDIS_PASSWORD=PASSWORD, INFERQ_SOFT_TIME_LIMIT="4",
                              INFERQ_HARD_TIME_LIMIT="5"),
    }


def assert_secret_free(text: str, where: str) -> None:
    for part in [*PASSWORD_PARTS, *WRONG_PARTS]:
        assert part not in text, f"{where} holds a Redis password:\n{text[-3000:]}"


def answers(http: httpx.Client) -> list[httpx.Response]:
    """What the API answers to a probe, the metrics, and requests that need Redis."""
    return [http.get("/readyz"), http.get("/metrics"),
            http.post("/v1/models/iris/predict", json=IRIS),
            http.get(f"/v1/tasks/{'0' * 32}"), http.get("/v1/batch-jobs"),
            http.get("/v1/datasets")]


@pytest.fixture
def started() -> Iterator[list[ServiceProcess]]:
    """The processes a test starts: every one stopped at its end, passed or failed."""
    processes: list[ServiceProcess] = []
    yield processes
    for process in processes:
        process.stop()


def start(started: list[ServiceProcess], args: list[str], env: dict[str, str],
          log: Path) -> ServiceProcess:
    started.append(ServiceProcess(args, env, log))
    return started[-1]


def test_no_redis_password_in_logs_answers_or_metrics(
        acl_redis: AclRedis, envs: dict[str, dict[str, str]], tmp_path: Path,
        started: list[ServiceProcess]) -> None:
    port = free_port()
    api = start(started, ["api", "--port", str(port)], envs["api"], tmp_path / "api.log")
    worker = start(started, ["worker", "--pool", "inference", "--concurrency", "1"],
                   envs["worker"], tmp_path / "worker.log")
    api.wait_http(f"http://127.0.0.1:{port}/readyz")
    worker.wait_for_log(" ready.")
    seen: list[httpx.Response] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            done = http.post("/v1/models/iris/predict", params={"wait": 30}, json=IRIS)
            assert done.json()["status"] == "succeeded", done.text  # The password works.
            seen += answers(http)

            # Redis stops: the API answers 503s, both processes log the lost connection.
            acl_redis.stop()
            down = answers(http)
            assert down[0].status_code == 503 and down[2].status_code == 503, down[2].text
            seen += down
            worker.wait_for_log("redis://", timeout=30)  # Its broker's lost connection.

            # Redis is back with another password: what the processes hold is refused.
            acl_redis.start(WRONG)
            time.sleep(1)
            refused = answers(http)
            assert refused[0].status_code == 503, refused[0].text
            seen += refused
            time.sleep(2)
        api.wait_for_log("redis unavailable")
    finally:
        api.stop()
        worker.stop()

    # Processes that start with a password Redis refuses (it now takes WRONG).
    port = free_port()
    late_api = start(started, ["api", "--port", str(port)], envs["api"],
                     tmp_path / "api-refused.log")
    late_worker = start(started, ["worker", "--pool", "inference", "--concurrency", "1"],
                        envs["worker"], tmp_path / "worker-refused.log")
    try:
        late_api.wait_for_log("Application startup complete")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            refused = answers(http)
        assert refused[0].status_code == 503, refused[0].text
        seen += refused
        late_worker.wait_for_log("Cannot connect", timeout=30)
    finally:
        late_api.stop()
        late_worker.stop()
    assert "redis unreachable at start" in late_api.log(), late_api.log()[-2000:]

    for process in (api, worker, late_api, late_worker):
        log = process.log()
        assert log, process.args
        assert_secret_free(log, f"the log of {process.args[0]}")
    for response in seen:
        assert_secret_free(response.text, f"{response.request.url} ({response.status_code})")
        assert_secret_free(str(response.headers), f"{response.request.url}'s headers")
