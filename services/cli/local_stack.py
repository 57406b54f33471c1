"""``inferq up``: Redis, the demo models, the API and one worker per pool, on this machine."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.cli.errors import CliError
from services.cli.ports import describe_taken, port_taken
from services.cli.processes import INFERQ
from services.cli.redis_server import find_server_binary, free_port, start_redis
from services.cli.supervisor import StopRequested, Supervisor
from services.common.pools import POOLS
from services.common.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_REDIS_PORT = 6379
#: Seconds the API and every worker have to say they are ready.
START_TIMEOUT = 60.0

TRY_THIS = """
inferq is up: API on http://{host}:{port}  (Ctrl-C stops everything)
{auth}

  curl -s{header} http://{host}:{port}/v1/models
  curl -s{header} -X POST 'http://{host}:{port}/v1/models/iris/predict?wait=5' \\
       -H 'content-type: application/json' -d '{{"instances": [[5.1, 3.5, 1.4, 0.2]]}}'
  {inferq} predict iris --json '[[6.7, 3.0, 5.2, 2.3]]' --url http://{host}:{port}
  open http://{host}:{port}/docs for the API reference
"""

AUTH_OFF = ("Authentication is off: no API key needed, every request is the default tenant "
            "(INFERQ_AUTH=on and INFERQ_AUTH_SECRET turn it on; see docs/security.md)")
AUTH_ON = ("Authentication is on: `inferq keys create --tenant default --scopes "
           "predict,jobs,train`, with the same INFERQ_AUTH_SECRET, makes a key; export it as "
           "INFERQ_API_KEY, which inferq's commands send, and curl as below")
#: What the banner's curl commands add with authentication on.
KEY_HEADER = ' -H "Authorization: Bearer $INFERQ_API_KEY"'



@dataclass(frozen=True)
class StackOptions:
    host: str
    port: int
    #: None: 6379 when it is free, else any free port.
    redis_port: int | None
    concurrency: int
    state_dir: Path


def run_local_stack(settings: Settings, options: StackOptions) -> int:
    """Run the stack until a signal (exit 0) or until one of its processes exits (exit 1)."""
    from services.api.auth import auth_problem

    problem = auth_problem(settings)
    if problem:
        raise CliError(problem)
    state_dir = options.state_dir.resolve()
    lock = _lock(state_dir)
    if port_taken(options.port, options.host):
        raise CliError(f"{describe_taken(options.port, options.host)}; stop it, or run the "
                       "API on another port with --port (make up ARGS='--port 8001')")
    env = dict(os.environ)
    redis_port = None if "INFERQ_REDIS_URL" in os.environ else _redis_port(options.redis_port)
    env["INFERQ_MODEL_STORE"] = str(settings.model_store)
    # The lock goes to every child: the state directory counts as in use while any lives.
    supervisor = Supervisor(pass_fds=(lock,))
    supervisor.watch_signals()
    try:
        if redis_port is not None:
            server = find_server_binary()
            log.info("starting redis", extra={"server": server, "port": redis_port,
                                              "dir": str(state_dir / "redis")})
            redis = start_redis(redis_port, state_dir / "redis", server, pass_fds=(lock,),
                                dies_with_caller=True)
            supervisor.adopt("redis", redis, last=True)
            env["INFERQ_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        from ml.demo import ensure_demo

        for metadata in ensure_demo(settings.model_store):
            log.info("demo model trained",
                     extra={"model": metadata.name, "version": metadata.version})
        _start_services(supervisor, env, options, state_dir / "ready")
        _wait_ready(supervisor, f"http://{options.host}:{options.port}/readyz",
                    state_dir / "ready")
        sys.stdout.write(TRY_THIS.format(
            host=options.host, port=options.port, inferq=_inferq_command(),
            auth=AUTH_OFF if settings.auth == "off" else AUTH_ON,
            header="" if settings.auth == "off" else KEY_HEADER))
        sys.stdout.flush()
        while (exited := supervisor.exited()) is None:
            time.sleep(0.2)
        log.error("a process of the local stack exited; stopping the rest",
                  extra={"child": exited.name, "exit_code": exited.process.returncode})
        return 1
    except StopRequested as stop:
        log.info("stopping the local stack", extra={"signal": str(stop)})
        return 0
    finally:
        supervisor.stop()


def _lock(state_dir: Path) -> int:
    """Hold ``state_dir`` for this stack: two Redis servers on one data directory would
    corrupt it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / "up.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CliError(f"another inferq up is running with the state directory {state_dir}; "
                       "stop it first, or give this one its own --state-dir") from None
    return fd


def _redis_port(asked: int | None) -> int:
    if asked is not None:
        if port_taken(asked):
            raise CliError(f"{describe_taken(asked)}; choose another --redis-port, or use "
                           "that server with --redis-url")
        return asked
    if not port_taken(DEFAULT_REDIS_PORT):
        return DEFAULT_REDIS_PORT
    port = free_port()
    log.info("the default Redis port is taken; this stack's Redis uses another",
             extra={"taken": describe_taken(DEFAULT_REDIS_PORT), "port": port})
    return port


def _start_services(supervisor: Supervisor, env: dict[str, str], options: StackOptions,
                    ready_dir: Path) -> None:
    shutil.rmtree(ready_dir, ignore_errors=True)
    ready_dir.mkdir(parents=True)
    supervisor.start(
        "api", _inferq("api", "--host", options.host, "--port", str(options.port)), env)
    for pool in POOLS:
        supervisor.start(
            f"{pool} worker",
            _inferq("worker", "--pool", pool, "--concurrency", str(options.concurrency),
                    "--metrics-port", "0", "--ready-file", str(ready_dir / pool)),
            env,
            # Celery prints its banner and its shutdown notices on stdout, once per worker;
            # everything worth reading is logged on stderr.
            stdout=subprocess.DEVNULL,
        )


def _wait_ready(supervisor: Supervisor, url: str, ready_dir: Path) -> None:
    """Until the API answers and every pool's worker consumes its queue: a prediction sent
    after the banner is answered."""
    deadline = time.monotonic() + START_TIMEOUT
    waiting = {"api", *POOLS}
    with httpx.Client(timeout=1) as client:
        while waiting:
            if (exited := supervisor.exited()) is not None:
                raise CliError(f"the {exited.name} exited during start-up (exit code "
                               f"{exited.process.returncode}); its log is above")
            if time.monotonic() > deadline:
                late = ", ".join(sorted(waiting))
                raise CliError(f"not ready within {START_TIMEOUT:g} s: {late}")
            waiting -= {pool for pool in POOLS if (ready_dir / pool).exists()}
            if "api" in waiting:
                try:
                    if client.get(url).status_code == 200:
                        waiting.discard("api")
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)


def _inferq(*args: str) -> list[str]:
    return [sys.executable, "-m", "services.cli.main", *args]


def _inferq_command() -> str:
    """How the person who ran ``inferq up`` runs ``inferq`` from where they are."""
    if shutil.which("inferq") == INFERQ:
        return "inferq"
    relative = os.path.relpath(INFERQ)
    return relative if not relative.startswith("..") else INFERQ
