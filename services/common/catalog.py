"""The model store's layout and metadata schema, read without loading any model.

``<store>/<name>/<version>/metadata.json`` describes the artifact ``model.joblib`` beside
it. The API validates requests against this metadata only; workers (through ``ml.store``)
also load the artifact. Versions are immutable once written.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

METADATA_FILE = "metadata.json"
ARTIFACT_FILE = "model.joblib"
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_NAME_RE = re.compile(MODEL_NAME_PATTERN)

NUMERIC_DTYPES = frozenset({"float64", "float32", "int64", "int32"})


class Feature(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    dtype: str = "float64"


class ModelMetadata(BaseModel):
    """Everything a client or the API needs to know about one model version."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    name: str
    version: int = Field(ge=1)
    task: Literal["classification", "regression"]
    estimator: str
    features: list[Feature]
    classes: list[str | int | float] | None = None
    metrics: dict[str, float] = {}
    sha256: str
    created_at: datetime
    sklearn_version: str
    description: str = ""

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]


def valid_model_name(name: str) -> bool:
    return bool(_NAME_RE.match(name))


def version_dir(store: Path, name: str, version: int) -> Path:
    return store / name / str(version)


def read_metadata(store: Path, name: str, version: int) -> ModelMetadata | None:
    """The metadata of one version; None when absent or when it describes another model."""
    path = version_dir(store, name, version) / METADATA_FILE
    try:
        metadata = ModelMetadata.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    return metadata if (metadata.name, metadata.version) == (name, version) else None


def list_versions(store: Path, name: str) -> list[int]:
    try:
        entries = list((store / name).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(
        int(e.name) for e in entries if e.name.isdigit() and (e / METADATA_FILE).is_file()
    )


def list_models(store: Path) -> list[str]:
    try:
        entries = list(store.iterdir())
    except FileNotFoundError:
        return []
    return sorted(
        e.name for e in entries if valid_model_name(e.name) and list_versions(store, e.name)
    )


class Catalog:
    """Metadata of every model in a store, cached in memory.

    Versions never change once written, so a version's metadata is cached for good; the
    list of versions is re-read at most every ``refresh_seconds``, and at once on a miss,
    so a newly imported model is served on its first request.
    """

    def __init__(self, store: Path, refresh_seconds: float = 5.0) -> None:
        self.store = store
        self._refresh_seconds = refresh_seconds
        self._versions: dict[str, list[int]] = {}
        self._metadata: dict[tuple[str, int], ModelMetadata] = {}
        self._scanned_at = -float("inf")
        self._lock = threading.Lock()

    def _scan(self) -> None:
        versions = {name: list_versions(self.store, name) for name in list_models(self.store)}
        with self._lock:
            self._versions = versions
            self._scanned_at = time.monotonic()

    def _fresh(self) -> None:
        if time.monotonic() - self._scanned_at > self._refresh_seconds:
            self._scan()

    def models(self) -> dict[str, list[int]]:
        self._fresh()
        return dict(self._versions)

    def versions(self, name: str) -> list[int]:
        self._fresh()
        found = self._versions.get(name)
        if not found:
            self._scan()
            found = self._versions.get(name)
        return list(found or [])

    def get(self, name: str, version: int | None = None) -> ModelMetadata | None:
        """The metadata of ``version`` (the latest when None), or None when there is none."""
        if not valid_model_name(name):
            return None
        versions = self.versions(name)
        if not versions:
            return None
        if version is None:
            version = versions[-1]
        cached = self._metadata.get((name, version))
        if cached is None:
            cached = read_metadata(self.store, name, version)
            if cached is None:
                return None
            self._metadata[(name, version)] = cached
        return cached
