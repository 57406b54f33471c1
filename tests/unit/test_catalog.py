"""Version metadata with lineage, aliases in the store, and how the catalog resolves a
request's version."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier

from ml.store import save_model
from services.common.catalog import (
    AliasNotFound,
    Catalog,
    Feature,
    Lineage,
    aliases_of,
    delete_alias,
    list_models,
    list_versions,
    read_metadata,
    set_alias,
)

LINEAGE = Lineage(
    dataset_id="d1", dataset_sha256="ab" * 32, estimator="DummyClassifier",
    hyperparameters={"strategy": "prior"}, validation={"holdout": 0.2}, seed=7,
    fold_metrics=[{"accuracy": 0.5}], job_id="j1", training_seconds=1.5,
    library_versions={"sklearn": "1.9.1", "python": "3.11.7"})


def dummy() -> DummyClassifier:
    return DummyClassifier().fit(np.zeros((2, 2)), ["a", "b"])


def test_lineage_and_typed_features_are_stored(tmp_path: Path) -> None:
    saved = save_model(tmp_path, "m", dummy(),
                       features=[Feature(name="color", dtype="string"), Feature(name="size")],
                       metrics={"accuracy": 0.5}, lineage=LINEAGE)
    read = read_metadata(tmp_path, "m", 1)
    assert read == saved and read is not None
    assert [(f.name, f.dtype) for f in read.features] == [("color", "string"),
                                                         ("size", "float64")]
    assert read.lineage == LINEAGE and read.lineage.fold_metrics == [{"accuracy": 0.5}]
    assert save_model(tmp_path, "m", dummy(), features=["p", "q"]).lineage is None


def test_metadata_written_before_lineage_still_loads(tmp_path: Path) -> None:
    save_model(tmp_path, "m", dummy(), features=["p", "q"])
    path = tmp_path / "m" / "1" / "metadata.json"
    old = json.loads(path.read_text())
    del old["lineage"]
    path.write_text(json.dumps(old))
    loaded = read_metadata(tmp_path, "m", 1)
    assert loaded is not None and loaded.lineage is None and loaded.feature_names == ["p", "q"]


def test_aliases_are_durable_and_checked(tmp_path: Path) -> None:
    for _ in range(2):
        save_model(tmp_path, "m", dummy(), features=["p", "q"])
    set_alias(tmp_path, "m", "production", 1)
    record = json.loads((tmp_path / "m" / "aliases" / "production.json").read_text())
    assert record["version"] == 1 and record["updated_at"].endswith("+00:00")
    set_alias(tmp_path, "m", "staging", 2)
    set_alias(tmp_path, "m", "production", 2)  # Moved.
    assert aliases_of(tmp_path, "m") == {"production": 2, "staging": 2}
    # Aliases are no versions, and make no model.
    assert list_versions(tmp_path, "m") == [1, 2] and list_models(tmp_path) == ["m"]
    with pytest.raises(ValueError, match="has no version 3; it has 1, 2"):
        set_alias(tmp_path, "m", "production", 3)
    with pytest.raises(ValueError, match="no model named 'nope'"):
        set_alias(tmp_path, "nope", "production", 1)
    for bad in ("Prod", "", "a/b", "-x", "x" * 64):
        with pytest.raises(ValueError, match="invalid alias name"):
            set_alias(tmp_path, "m", bad, 1)
    assert aliases_of(tmp_path, "m") == {"production": 2, "staging": 2}
    assert delete_alias(tmp_path, "m", "staging") is True
    assert delete_alias(tmp_path, "m", "staging") is False
    assert delete_alias(tmp_path, "m", "Bad") is False
    assert aliases_of(tmp_path, "m") == {"production": 2}
    assert aliases_of(tmp_path, "nope") == {}


def served(catalog: Catalog, version: int | None = None, alias: str | None = None) -> int:
    found = catalog.resolve("m", version, alias)
    assert found is not None
    return found.version


def test_resolution_order(tmp_path: Path) -> None:
    for _ in range(3):
        save_model(tmp_path, "m", dummy(), features=["p", "q"])
    catalog = Catalog(tmp_path)
    assert served(catalog) == 3
    set_alias(tmp_path, "m", "staging", 2)
    set_alias(tmp_path, "m", "production", 1)
    catalog.refresh("m")
    assert served(catalog) == 1
    assert served(catalog, alias="staging") == 2
    assert served(catalog, version=3, alias="staging") == 3
    assert catalog.default_version("m") == 1
    assert catalog.aliases("m") == {"production": 1, "staging": 2}
    with pytest.raises(AliasNotFound) as missing:
        catalog.resolve("m", alias="canary")
    assert (missing.value.alias, missing.value.aliases) == ("canary",
                                                            {"production": 1, "staging": 2})
    assert catalog.resolve("m", version=9) is None
    assert catalog.resolve("nope") is None and catalog.resolve("Not A Name") is None
    delete_alias(tmp_path, "m", "production")
    catalog.reload()
    assert served(catalog) == 3
    assert catalog.default_version("nope") is None
