"""The model store's layout and metadata schema, read without loading any model.

``<store>/<name>/<version>/metadata.json`` describes the artifact ``model.joblib`` beside
it; the store is a directory or an ``s3://`` URL, read through ``services.common.storage``.
The API validates requests against this metadata only; workers (through ``ml.store``) also
load the artifact. Versions are immutable once written.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.common.storage import NotFound, Storage, StorageError

log = logging.getLogger(__name__)

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


ModelStore = Storage | str | os.PathLike[str]


def model_storage(store: ModelStore) -> Storage:
    """The store as a ``Storage``: a directory or an ``s3://`` URL (``INFERQ_MODEL_STORE``)."""
    return store if isinstance(store, Storage) else Storage.from_url(os.fspath(store))


def version_key(name: str, version: int, file: str) -> str:
    """The storage key of one file of a version: ``<name>/<version>/<file>``."""
    return f"{name}/{version}/{file}"


def read_metadata(store: ModelStore, name: str, version: int) -> ModelMetadata | None:
    """The metadata of one version; None when absent or when it describes another model."""
    try:
        raw = model_storage(store).get(version_key(name, version, METADATA_FILE))
    except NotFound:
        return None
    metadata = ModelMetadata.model_validate_json(raw)
    return metadata if (metadata.name, metadata.version) == (name, version) else None


def _all_versions(storage: Storage, prefix: str = "") -> dict[str, list[int]]:
    """Every version that has its metadata (written last, so its artifact is there too)."""
    found: dict[str, list[int]] = {}
    for key in storage.list(prefix):
        parts = key.split("/")
        if (len(parts) == 3 and parts[2] == METADATA_FILE and valid_model_name(parts[0])
                and parts[1].isdigit()):
            found.setdefault(parts[0], []).append(int(parts[1]))
    return {name: sorted(versions) for name, versions in sorted(found.items())}


def list_versions(store: ModelStore, name: str) -> list[int]:
    if not valid_model_name(name):
        return []
    return _all_versions(model_storage(store), name).get(name, [])


def list_models(store: ModelStore) -> list[str]:
    return list(_all_versions(model_storage(store)))


class Catalog:
    """Metadata of every model in a store, cached in memory.

    Versions never change once written, so a version's metadata is cached for good; the
    list of versions is re-read at most every ``refresh_seconds``, and at once on a miss,
    so a newly imported model is served on its first request. Once the first read is done,
    a stale list is served while a thread re-reads it: a slow or unreachable bucket never
    holds up a request for a model already known.
    """

    def __init__(self, store: ModelStore, refresh_seconds: float = 5.0) -> None:
        self.store = model_storage(store)
        self._refresh_seconds = refresh_seconds
        self._versions: dict[str, list[int]] = {}
        self._metadata: dict[tuple[str, int], ModelMetadata] = {}
        self._scanned_at = -float("inf")
        self._refreshing = False
        self._lock = threading.Lock()

    def _scan(self) -> None:
        versions = _all_versions(self.store)
        with self._lock:
            self._versions = versions
            self._scanned_at = time.monotonic()

    def _fresh(self) -> None:
        if time.monotonic() - self._scanned_at <= self._refresh_seconds:
            return
        if self._scanned_at == -float("inf"):
            self._scan()
            return
        with self._lock:
            if self._refreshing:
                return
            self._refreshing = True
        threading.Thread(target=self._refresh, name="catalog-refresh", daemon=True).start()

    def _refresh(self) -> None:
        try:
            self._scan()
        except StorageError as exc:
            log.warning("model store unreadable; serving the models known",
                        extra={"store": self.store.url, "error": str(exc)})
        finally:
            self._refreshing = False

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
