"""The model store: versions, metadata, integrity, import."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from ml.errors import ImportModelError, IntegrityError
from ml.importer import import_model
from ml.store import ModelCache, load_estimator, save_model
from services.common.catalog import Catalog


def fitted(n_features: int = 3) -> LinearRegression:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, n_features))
    return LinearRegression().fit(x, x.sum(axis=1))


def test_versions_increase_and_catalog_sees_them(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    assert catalog.get("lin") is None
    first = save_model(tmp_path, "lin", fitted(), features=["a", "b", "c"])
    second = save_model(tmp_path, "lin", fitted(), features=["a", "b", "c"])
    assert (first.version, second.version) == (1, 2)
    # A miss re-reads the store, so a new model is served at once.
    assert catalog.get("lin") == second and catalog.get("lin", 1) == first
    assert catalog.get("lin", 3) is None
    assert first.task == "regression" and first.classes is None


def test_the_catalog_rereads_a_known_model_only_when_told(tmp_path: Path) -> None:
    save_model(tmp_path, "lin", fitted(), features=["a", "b", "c"])
    catalog = Catalog(tmp_path)
    assert catalog.models() == {"lin": [1]}
    save_model(tmp_path, "lin", fitted(), features=["a", "b", "c"])
    other = save_model(tmp_path, "other", fitted(), features=["a", "b", "c"])
    # No periodic re-listing: the new version waits for its announcement.
    assert catalog.models() == {"lin": [1]} and catalog.get("lin").version == 1
    # A name not known yet is looked up at once.
    assert catalog.get("other") == other
    catalog.refresh("lin")
    assert catalog.versions("lin") == [1, 2] and catalog.get("lin").version == 2
    save_model(tmp_path, "lin", fitted(), features=["a", "b", "c"])
    catalog.reload()
    assert catalog.models() == {"lin": [1, 2, 3], "other": [1]}


def test_a_taken_version_number_moves_the_writer_on(tmp_path: Path) -> None:
    # Another writer has claimed version 1 (its artifact is there, its metadata not yet).
    (tmp_path / "lin" / "1").mkdir(parents=True)
    (tmp_path / "lin" / "1" / "model.joblib").write_bytes(b"theirs")
    assert save_model(tmp_path, "lin", fitted(), features=["a", "b", "c"]).version == 2
    assert (tmp_path / "lin" / "1" / "model.joblib").read_bytes() == b"theirs"
    assert load_estimator(tmp_path, "lin", 2)[0].version == 2


def test_tampered_artifact_is_refused(tmp_path: Path) -> None:
    meta = save_model(tmp_path, "lin", fitted(), features=["a", "b", "c"])
    artifact = tmp_path / "lin" / "1" / "model.joblib"
    artifact.write_bytes(artifact.read_bytes()[:-1] + b"X")
    with pytest.raises(IntegrityError, match="sha256"):
        load_estimator(tmp_path, "lin", meta.version)


def test_cache_loads_once(tmp_path: Path) -> None:
    save_model(tmp_path, "lin", fitted(), features=["a", "b", "c"])
    cache = ModelCache(tmp_path)
    assert cache.get("lin", 1)[1] is cache.get("lin", 1)[1]


def test_import_feature_names(tmp_path: Path) -> None:
    path = tmp_path / "m.joblib"
    joblib.dump(fitted(2), path)
    store = tmp_path / "store"
    assert import_model(store, path, "plain").feature_names == ["x0", "x1"]
    assert import_model(store, path, "named", ["u", "v"]).feature_names == ["u", "v"]
    with pytest.raises(ImportModelError, match="expects 2"):
        import_model(store, path, "wrong", ["u"])
    joblib.dump({"not": "a model"}, path)
    with pytest.raises(ImportModelError, match="no predict"):
        import_model(store, path, "bad")
    with pytest.raises(ValueError, match="invalid model name"):
        save_model(store, "Bad Name", fitted(), features=["a", "b", "c"])
