"""Writing model versions into the store and loading them back, checked by sha256."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import sklearn

from ml.errors import IntegrityError, ModelNotFoundError
from services.common.catalog import (
    ARTIFACT_FILE,
    METADATA_FILE,
    Feature,
    ModelMetadata,
    list_versions,
    read_metadata,
    valid_model_name,
    version_dir,
)


def save_model(
    store: Path,
    name: str,
    estimator: Any,
    *,
    features: list[str],
    metrics: dict[str, float] | None = None,
    description: str = "",
) -> ModelMetadata:
    """Write ``estimator`` as the next version of ``name`` and return its metadata."""
    if not valid_model_name(name):
        raise ValueError(
            f"invalid model name {name!r}: use lowercase letters, digits, '.', '_', '-'"
        )
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer, compress=3)
    artifact = buffer.getvalue()
    classes = getattr(estimator, "classes_", None)
    metadata = ModelMetadata(
        name=name,
        version=(list_versions(store, name) or [0])[-1] + 1,
        task="classification" if classes is not None else "regression",
        estimator=type(estimator).__name__,
        features=[Feature(name=f) for f in features],
        classes=[c.item() if hasattr(c, "item") else c for c in classes]
        if classes is not None
        else None,
        metrics=metrics or {},
        sha256=hashlib.sha256(artifact).hexdigest(),
        created_at=datetime.now(UTC),
        sklearn_version=sklearn.__version__,
        description=description,
    )
    target = version_dir(store, name, metadata.version)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed, so readers never see a version without its artifact.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    (staging / ARTIFACT_FILE).write_bytes(artifact)
    (staging / METADATA_FILE).write_text(json.dumps(metadata.model_dump(mode="json"), indent=2))
    os.chmod(staging, 0o755)
    staging.rename(target)
    return metadata


def load_estimator(store: Path, name: str, version: int) -> tuple[ModelMetadata, Any]:
    """Load one version; refuse an artifact whose bytes differ from its recorded sha256."""
    metadata = read_metadata(store, name, version)
    if metadata is None:
        raise ModelNotFoundError(f"model {name!r} has no version {version} in the store")
    artifact = (version_dir(store, name, version) / ARTIFACT_FILE).read_bytes()
    digest = hashlib.sha256(artifact).hexdigest()
    if digest != metadata.sha256:
        raise IntegrityError(
            f"artifact of {name} v{version} has sha256 {digest[:12]}…, metadata says "
            f"{metadata.sha256[:12]}…; refusing to load it"
        )
    return metadata, joblib.load(io.BytesIO(artifact))


class ModelCache:
    """Estimators loaded lazily, once per process, keyed by name and version."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self._loaded: dict[tuple[str, int], tuple[ModelMetadata, Any]] = {}
        self._lock = threading.Lock()

    def get(self, name: str, version: int) -> tuple[ModelMetadata, Any]:
        key = (name, version)
        found = self._loaded.get(key)
        if found is None:
            with self._lock:
                found = self._loaded.get(key)
                if found is None:
                    found = self._loaded[key] = load_estimator(self.store, name, version)
        return found
