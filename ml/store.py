"""Writing model versions and aliases into the store, and loading versions back, checked
by sha256."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from datetime import UTC, datetime
from typing import Any

import joblib
import sklearn

from ml.errors import IntegrityError, ModelNotFoundError
from services.common.catalog import (
    ARTIFACT_FILE,
    METADATA_FILE,
    Feature,
    Lineage,
    ModelMetadata,
    ModelStore,
    delete_alias,
    invalid_name,
    list_models,
    list_versions,
    model_storage,
    read_metadata,
    set_alias,
    valid_model_name,
    version_key,
)
from services.common.storage import AlreadyExists
from services.common.tenants import DEFAULT_TENANT, tenant_store

# Aliases are written by the API too, which has no scikit-learn: they live in the catalog.
__all__ = ["ModelCache", "copy_versions", "delete_alias", "load_estimator", "save_model",
           "set_alias"]


def save_model(
    store: ModelStore,
    name: str,
    estimator: Any,
    *,
    features: list[str] | list[Feature],
    metrics: dict[str, float] | None = None,
    description: str = "",
    lineage: Lineage | None = None,
) -> ModelMetadata:
    """Write ``estimator`` as the next version of ``name`` and return its metadata.

    ``features`` are names (numeric columns) or ``Feature``s, in the order the estimator
    takes its columns; ``lineage`` says how a trained version was made.
    """
    if not valid_model_name(name):
        raise ValueError(invalid_name("model", name))
    storage = model_storage(store)
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer, compress=3)
    artifact = buffer.getvalue()
    classes = getattr(estimator, "classes_", None)
    metadata = ModelMetadata(
        name=name,
        version=(list_versions(storage, name) or [0])[-1] + 1,
        task="classification" if classes is not None else "regression",
        estimator=type(estimator).__name__,
        features=[f if isinstance(f, Feature) else Feature(name=f) for f in features],
        classes=[c.item() if hasattr(c, "item") else c for c in classes]
        if classes is not None
        else None,
        metrics=metrics or {},
        sha256=hashlib.sha256(artifact).hexdigest(),
        created_at=datetime.now(UTC),
        sklearn_version=sklearn.__version__,
        description=description,
        lineage=lineage,
    )
    # The artifact first: readers know a version by its metadata, so they never see one
    # without its artifact. Each object is written whole or not at all. Writing the artifact
    # claims the number: a writer that finds it taken by another takes the next one.
    while True:
        try:
            storage.put(version_key(name, metadata.version, ARTIFACT_FILE), artifact,
                        create=True)
            break
        except AlreadyExists:
            metadata = metadata.model_copy(update={"version": metadata.version + 1})
    storage.put(
        version_key(name, metadata.version, METADATA_FILE),
        json.dumps(metadata.model_dump(mode="json"), indent=2).encode(),
    )
    return metadata


def copy_versions(source: ModelStore, target: ModelStore) -> list[ModelMetadata]:
    """Copy each version of ``source`` that ``target`` lacks, under the same number; the
    versions ``target`` has are left as they are. The copied versions' metadata."""
    source, target = model_storage(source), model_storage(target)
    copied = []
    for name in list_models(source):
        present = set(list_versions(target, name))
        for version in list_versions(source, name):
            metadata = read_metadata(source, name, version)
            if version in present or metadata is None:
                continue
            try:  # Artifact first and metadata last, as in save_model.
                artifact = version_key(name, version, ARTIFACT_FILE)
                target.put(artifact, source.get(artifact), create=True)
            except AlreadyExists:
                continue  # Another writer has this number.
            key = version_key(name, version, METADATA_FILE)
            target.put(key, source.get(key))
            copied.append(metadata)
    return copied


def load_estimator(store: ModelStore, name: str, version: int) -> tuple[ModelMetadata, Any]:
    """Load one version; refuse an artifact whose bytes differ from its recorded sha256."""
    storage = model_storage(store)
    metadata = read_metadata(storage, name, version)
    if metadata is None:
        raise ModelNotFoundError(f"model {name!r} has no version {version} in the store")
    artifact = storage.get(version_key(name, version, ARTIFACT_FILE))
    digest = hashlib.sha256(artifact).hexdigest()
    if digest != metadata.sha256:
        raise IntegrityError(
            f"artifact of {name} v{version} has sha256 {digest[:12]}…, metadata says "
            f"{metadata.sha256[:12]}…; refusing to load it"
        )
    return metadata, joblib.load(io.BytesIO(artifact))


class ModelCache:
    """Estimators loaded lazily, once per process, keyed by tenant, name and version: a
    tenant's own model is read from its part of the store (``tenants``)."""

    def __init__(self, store: ModelStore) -> None:
        self.store = model_storage(store)
        self._loaded: dict[tuple[str, str, int], tuple[ModelMetadata, Any]] = {}
        self._lock = threading.Lock()

    def get(self, name: str, version: int,
            tenant: str = DEFAULT_TENANT) -> tuple[ModelMetadata, Any]:
        key = (tenant, name, version)
        found = self._loaded.get(key)
        if found is None:
            with self._lock:
                found = self._loaded.get(key)
                if found is None:
                    found = self._loaded[key] = load_estimator(
                        tenant_store(self.store, tenant), name, version)
        return found
