"""Tenants in the model store: each tenant's own models, the shared ones, and names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from ml.errors import ModelNotFoundError
from ml.store import ModelCache, save_model
from services.common.catalog import Catalog, TenantCatalogs
from services.common.storage import Storage
from services.common.tenants import (
    DEFAULT_TENANT,
    model_event,
    owned_by,
    parse_model_event,
    tenant_of,
    tenant_store,
)


def fitted(n_features: int) -> LinearRegression:
    x = np.random.default_rng(0).normal(size=(30, n_features))
    return LinearRegression().fit(x, x.sum(axis=1))


@pytest.fixture
def store(tmp_path: Path) -> Storage:
    root = Storage.from_url(str(tmp_path))
    save_model(root, "shared", fitted(2), features=["a", "b"])
    save_model(root, "churn", fitted(2), features=["a", "b"])
    # acme's own churn hides the shared one, for acme alone; globex has none.
    save_model(tenant_store(root, "acme"), "churn", fitted(3), features=["x", "y", "z"])
    save_model(tenant_store(root, "acme"), "mine", fitted(1), features=["m"])
    return root


def test_records_without_a_tenant_are_the_default_tenants() -> None:
    assert tenant_of({}) == DEFAULT_TENANT and tenant_of({b"tenant": b"acme"}) == "acme"
    assert owned_by({"tenant": "acme"}, "acme") and not owned_by({"tenant": "acme"}, "globex")
    assert model_event(DEFAULT_TENANT, "iris") == "iris"
    for tenant, name in ((DEFAULT_TENANT, "iris"), ("acme", "churn")):
        assert parse_model_event(model_event(tenant, name)) == (tenant, name)


def test_a_tenant_sees_the_shared_models_and_its_own(store: Storage) -> None:
    catalogs = TenantCatalogs(Catalog(store))
    # The shared catalog never reads a tenant's files as a model.
    assert catalogs.shared.models() == {"churn": [1], "shared": [1]}
    assert {n: v for n, (_, v) in catalogs.models("acme").items()} == {
        "churn": [1], "mine": [1], "shared": [1]}
    assert {n: v for n, (_, v) in catalogs.models("globex").items()} == {
        "churn": [1], "shared": [1]}

    acme, owner = catalogs.serving("acme", "churn")
    assert owner == "acme" and acme.get("churn").feature_names == ["x", "y", "z"]
    shared, owner = catalogs.serving("globex", "churn")
    assert owner == DEFAULT_TENANT and shared.get("churn").feature_names == ["a", "b"]
    assert catalogs.serving("globex", "mine")[0].get("mine") is None
    assert catalogs.serving("acme", "shared") == (catalogs.shared, DEFAULT_TENANT)


def test_a_tenants_missing_name_is_read_again_only_when_announced(store: Storage) -> None:
    catalogs = TenantCatalogs(Catalog(store))
    assert catalogs.serving("globex", "shared")[1] == DEFAULT_TENANT
    save_model(tenant_store(store, "globex"), "shared", fitted(1), features=["g"])
    # Remembered missing: predicting with the shared model reads no store.
    assert catalogs.serving("globex", "shared")[1] == DEFAULT_TENANT
    catalogs.own("globex").refresh("shared")  # Its announcement.
    catalog, owner = catalogs.serving("globex", "shared")
    assert owner == "globex" and catalog.get("shared").feature_names == ["g"]


def test_workers_load_a_tenants_model_from_its_part_of_the_store(store: Storage) -> None:
    cache = ModelCache(store)
    assert cache.get("churn", 1)[0].feature_names == ["a", "b"]
    assert cache.get("churn", 1, "acme")[0].feature_names == ["x", "y", "z"]
    with pytest.raises(ModelNotFoundError):
        cache.get("mine", 1)
    with pytest.raises(ModelNotFoundError):
        cache.get("mine", 1, "globex")
