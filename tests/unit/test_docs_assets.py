"""The Swagger UI files that /docs serves: present, the release their README names, and
inside the wheel that Dockerfile.api installs."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from services.api.routes.docs import ASSETS, ASSETS_DIR

ROOT = Path(__file__).resolve().parents[2]


def _listed_sums() -> dict[str, str]:
    readme = (ASSETS_DIR / "README.md").read_text()
    return dict(re.findall(r"^\| (\S+) \| ([0-9a-f]{64}) \|$", readme, re.MULTILINE))


def test_the_assets_are_the_release_their_readme_names() -> None:
    sums = _listed_sums()
    assert set(sums) == set(ASSETS)
    for name, expected in sums.items():
        assert hashlib.sha256((ASSETS_DIR / name).read_bytes()).hexdigest() == expected, name
    for notice in ("LICENSE", "NOTICE", "swagger-ui-bundle.js.LICENSE.txt"):
        assert (ASSETS_DIR / notice).is_file()


@pytest.mark.timeout(180)
def test_the_wheel_carries_the_assets(tmp_path: Path) -> None:
    """Dockerfile.api installs the project with ``pip install --no-deps /src``, which
    builds this wheel: without the files in it, /docs in the image would be blank."""
    # What Dockerfile.api copies, built apart so that no build/ is left in the work tree.
    source = tmp_path / "src"
    for folder in ("services", "ml"):
        shutil.copytree(ROOT / folder, source / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(source)],
        check=True, capture_output=True, timeout=170,
    )
    (wheel,) = tmp_path.glob("inferq-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (*_listed_sums(), "LICENSE", "NOTICE"):
        assert f"services/api/static/swagger-ui/{name}" in names
