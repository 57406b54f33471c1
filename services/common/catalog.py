"""The model store's layout and metadata schema, read without loading any model.

``<store>/<name>/<version>/metadata.json`` describes the artifact ``model.joblib`` beside
it; ``<store>/<name>/aliases/<alias>.json`` names the version an alias points at. The store
is a directory or an ``s3://`` URL, read through ``services.common.storage``. The API
validates requests against this metadata only; workers (through ``ml.store``) also load the
artifact. Versions are immutable once written; aliases move.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import threading
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.common.redaction import redact_url
from services.common.storage import NotFound, Storage
from services.common.tenants import DEFAULT_TENANT, tenant_store

log = logging.getLogger(__name__)

METADATA_FILE = "metadata.json"
ARTIFACT_FILE = "model.joblib"
ALIASES_DIR = "aliases"
#: The alias a prediction without a version or an alias uses, when the model has it.
DEFAULT_ALIAS = "production"
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_NAME_RE = re.compile(MODEL_NAME_PATTERN)

NUMERIC_DTYPES = frozenset({"float64", "float32", "int64", "int32"})


class Feature(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    dtype: str = "float64"


class Lineage(BaseModel):
    """How a trained version came to be: its data, estimator, validation and software."""

    model_config = ConfigDict(frozen=True)

    dataset_id: str
    dataset_sha256: str
    estimator: str
    hyperparameters: dict[str, Any]
    #: ``{"holdout": 0.2}`` or ``{"cv": 5}``.
    validation: dict[str, Any]
    seed: int
    #: The metrics of each fold; the version's ``metrics`` are their overall values.
    fold_metrics: list[dict[str, float]] = []
    job_id: str
    training_seconds: float
    #: sklearn, numpy, scipy, joblib, python, inferq.
    library_versions: dict[str, str]


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
    #: None for a version imported rather than trained by a training job.
    lineage: Lineage | None = None

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


def alias_key(name: str, alias: str) -> str:
    """The storage key of an alias: ``<name>/aliases/<alias>.json``."""
    return f"{name}/{ALIASES_DIR}/{alias}.json"


def _version_of_key(parts: list[str]) -> int | None:
    if (len(parts) == 3 and parts[2] == METADATA_FILE and valid_model_name(parts[0])
            and parts[1].isdigit()):
        return int(parts[1])
    return None


def _alias_of_key(parts: list[str]) -> str | None:
    if (len(parts) == 3 and parts[1] == ALIASES_DIR and parts[2].endswith(".json")
            and valid_model_name(parts[0]) and valid_model_name(parts[2][:-5])):
        return parts[2][:-5]
    return None


def _all_versions(storage: Storage, prefix: str = "") -> dict[str, list[int]]:
    """Every version that has its metadata (written last, so its artifact is there too)."""
    return _scan(storage, prefix)[0]


def _scan(storage: Storage, prefix: str = "") -> tuple[dict[str, list[int]], list[str]]:
    """One listing: every version under ``prefix`` by model, and the keys of its aliases."""
    found: dict[str, list[int]] = {}
    aliases = []
    for key in storage.list(prefix):
        parts = key.split("/")
        version = _version_of_key(parts)
        if version is not None:
            found.setdefault(parts[0], []).append(version)
        elif _alias_of_key(parts) is not None:
            aliases.append(key)
    return {name: sorted(versions) for name, versions in sorted(found.items())}, aliases


def _read_aliases(storage: Storage, keys: list[str]) -> dict[str, dict[str, int]]:
    """The version each alias key names, by model; an alias removed meanwhile is skipped."""
    found: dict[str, dict[str, int]] = {}
    for key in keys:
        parts = key.split("/")
        try:
            version = json.loads(storage.get(key))["version"]
        except NotFound:
            continue
        except (ValueError, KeyError, TypeError):
            log.warning("alias file unreadable; ignoring it",
                        extra={"store": redact_url(storage.url), "key": key})
            continue
        if type(version) is int and version >= 1:
            found.setdefault(parts[0], {})[parts[2][:-5]] = version
    return {name: dict(sorted(aliases.items())) for name, aliases in found.items()}


def aliases_of(store: ModelStore, name: str) -> dict[str, int]:
    """The aliases of ``name`` and the version each points at, as the store holds them."""
    if not valid_model_name(name):
        return {}
    storage = model_storage(store)
    keys = [k for k in storage.list(f"{name}/{ALIASES_DIR}") if _alias_of_key(k.split("/"))]
    return _read_aliases(storage, keys).get(name, {})


def list_versions(store: ModelStore, name: str) -> list[int]:
    if not valid_model_name(name):
        return []
    return _all_versions(model_storage(store), name).get(name, [])


def list_models(store: ModelStore) -> list[str]:
    return list(_all_versions(model_storage(store)))


def served_by_default(versions: list[int], aliases: dict[str, int]) -> int:
    """The version a request without a version or an alias uses: the alias
    ``production``'s when the model has it, else the latest."""
    return aliases.get(DEFAULT_ALIAS, versions[-1])


def invalid_name(kind: str, name: str) -> str:
    """Why ``name`` cannot name a model or an alias."""
    return (f"invalid {kind} name {name!r}: use lowercase letters, digits, '.', '_', '-', "
            "starting with a letter or digit, at most 63 characters")


def set_alias(store: ModelStore, name: str, alias: str, version: int) -> None:
    """Point ``alias`` of ``name`` at ``version``, which must exist (ValueError otherwise),
    moving the alias when it exists. Announce the change (``model_events``) afterwards, for
    running APIs to serve it."""
    for kind, value in (("model", name), ("alias", alias)):
        if not valid_model_name(value):
            raise ValueError(invalid_name(kind, value))
    storage = model_storage(store)
    if type(version) is not int or read_metadata(storage, name, version) is None:
        versions = list_versions(storage, name)
        if not versions:
            raise ValueError(f"no model named {name!r} in the store")
        raise ValueError(f"model {name!r} has no version {version}; it has "
                         f"{', '.join(map(str, versions))}")
    record = {"version": version, "updated_at": datetime.now(UTC).isoformat()}
    storage.put(alias_key(name, alias), json.dumps(record).encode())


def delete_alias(store: ModelStore, name: str, alias: str) -> bool:
    """Remove ``alias`` of ``name``; whether it was there. Announce it as ``set_alias``."""
    if not (valid_model_name(name) and valid_model_name(alias)):
        return False
    storage = model_storage(store)
    key = alias_key(name, alias)
    if not storage.exists(key):
        return False
    storage.delete(key)
    return True


def copy_aliases(source: ModelStore, target: ModelStore) -> list[tuple[str, str, int]]:
    """Copy each alias of ``source`` that ``target`` lacks and whose version ``target``
    has (copy the versions first); an alias ``target`` has is left where it points.
    Each copied alias as (model, alias, version)."""
    source_storage, target_storage = model_storage(source), model_storage(target)
    _, alias_keys = _scan(source_storage)
    copied = []
    for name, aliases in sorted(_read_aliases(source_storage, alias_keys).items()):
        present = aliases_of(target_storage, name)
        versions = set(list_versions(target_storage, name))
        for alias, version in sorted(aliases.items()):
            if alias in present or version not in versions:
                continue
            target_storage.put(alias_key(name, alias), source_storage.get(alias_key(name, alias)))
            copied.append((name, alias, version))
    return copied


class AliasNotFound(LookupError):
    """A model asked for by an alias it does not have."""

    def __init__(self, name: str, alias: str, aliases: dict[str, int]) -> None:
        super().__init__(f"model {name!r} has no alias {alias!r}")
        self.name = name
        self.alias = alias
        self.aliases = aliases


class Catalog:
    """Metadata of every model in a store, with its aliases, held in memory.

    Versions never change once written, so a version's metadata is cached for good. The
    versions and aliases of each model are read once, then again only when told: ``refresh``
    re-reads one model (its change was announced, see ``model_events``), ``reload`` all of
    them (after subscribing, when announcements may have been missed). A name the catalog
    does not know is looked up in the store at once, so a model imported by hand is served
    on its first request. Resolving a known model's version takes dict lookups only.

    With ``remember_absent`` (a tenant's own models, which only announced writes create), a
    name found missing stays missing until its change is announced or everything is read
    again: a tenant predicting with a shared model does not read its own part of the store
    on every request.
    """

    #: The most names a catalog remembers as missing; past it, it forgets them all.
    MAX_ABSENT = 10_000

    def __init__(self, store: ModelStore, *, remember_absent: bool = False) -> None:
        self.store = model_storage(store)
        self._remember_absent = remember_absent
        self._absent: set[str] = set()
        # Replaced whole, never changed in place: readers on other threads see one or the
        # other, without a lock.
        self._versions: dict[str, list[int]] = {}
        self._aliases: dict[str, dict[str, int]] = {}
        self._metadata: dict[tuple[str, int], ModelMetadata] = {}
        self._loaded = False
        # Reads of the store may overlap (a request's lookup, an announced change): each
        # takes a ticket before it reads, and a model's entry is only replaced by the read
        # of a later ticket, so an older read never undoes a newer one.
        self._tickets = itertools.count(1)
        self._installed: dict[str, int] = {}
        self._lock = threading.Lock()

    def reload(self) -> None:
        """Re-read every model's versions and aliases."""
        ticket = next(self._tickets)
        versions, alias_keys = _scan(self.store)
        aliases = _read_aliases(self.store, alias_keys)
        with self._lock:
            names = set(self._versions) | set(versions)
            self._install({name: (versions.get(name, []), aliases.get(name, {}))
                           for name in names}, ticket)
            self._loaded = True
            self._absent = set()
        for name in versions:
            self._prefetch(name)

    def refresh(self, name: str) -> None:
        """Re-read the versions and aliases of ``name``."""
        if not valid_model_name(name):
            return
        ticket = next(self._tickets)
        versions, alias_keys = _scan(self.store, name)
        aliases = _read_aliases(self.store, alias_keys).get(name, {})
        with self._lock:
            self._install({name: (versions.get(name, []), aliases)}, ticket)
            if name in self._versions:
                self._absent.discard(name)
            elif self._remember_absent:
                if len(self._absent) >= self.MAX_ABSENT:
                    self._absent = set()
                self._absent.add(name)
        self._prefetch(name)

    def _install(self, found: dict[str, tuple[list[int], dict[str, int]]], ticket: int) -> None:
        versions, aliases = dict(self._versions), dict(self._aliases)
        for name, (listed, pointed) in found.items():
            if self._installed.get(name, 0) > ticket:
                continue  # A later read got there first.
            self._installed[name] = ticket
            if listed:
                versions[name], aliases[name] = listed, pointed
            else:
                versions.pop(name, None)
                aliases.pop(name, None)
        self._versions = dict(sorted(versions.items()))
        self._aliases = aliases

    def _prefetch(self, name: str) -> None:
        """Read the metadata of the version served by default, so no request has to."""
        versions = self._versions.get(name)
        if versions:
            self._metadata_of(name, served_by_default(versions, self._aliases.get(name, {})))

    def models(self) -> dict[str, list[int]]:
        if not self._loaded:
            self.reload()
        return {name: list(versions) for name, versions in self._versions.items()}

    def versions(self, name: str) -> list[int]:
        return list(self._known(name))

    def aliases(self, name: str) -> dict[str, int]:
        """The aliases of ``name`` and the version each points at."""
        self._known(name)
        return dict(self._aliases.get(name, {}))

    def default_version(self, name: str) -> int | None:
        """``served_by_default``; None when there is no such model."""
        versions = self._known(name)
        if not versions:
            return None
        return served_by_default(versions, self._aliases.get(name, {}))

    def _known(self, name: str) -> list[int]:
        found = self._versions.get(name)
        if found is None:
            if name in self._absent or not valid_model_name(name):
                return []
            self.refresh(name)
            found = self._versions.get(name)
        return found or []

    def resolve(self, name: str, version: int | None = None,
                alias: str | None = None) -> ModelMetadata | None:
        """The version a request names: ``version`` when given; else ``alias``'s
        (AliasNotFound when the model has no such alias); else ``production``'s when the
        model has it; else the latest. None when there is no such model or version."""
        versions = self._known(name)
        if not versions:
            return None
        if version is None:
            aliases = self._aliases.get(name, {})
            if alias is not None:
                found = aliases.get(alias)
                if found is None:
                    raise AliasNotFound(name, alias, dict(aliases))
                version = found
            else:
                version = served_by_default(versions, aliases)
        return self._metadata_of(name, version)

    def get(self, name: str, version: int | None = None) -> ModelMetadata | None:
        """``resolve`` without an alias."""
        return self.resolve(name, version)

    def _metadata_of(self, name: str, version: int) -> ModelMetadata | None:
        cached = self._metadata.get((name, version))
        if cached is None:
            cached = read_metadata(self.store, name, version)
            if cached is None:
                return None
            self._metadata[(name, version)] = cached
        return cached


class TenantCatalogs:
    """The shared models' catalog and each tenant's own (``tenants``), made on first use.

    A name a tenant uses is its own model of that name when it has one, else the shared
    model: a tenant's own model hides a shared one of the same name, for that tenant only.
    The default tenant's own models are the shared ones.
    """

    def __init__(self, shared: Catalog) -> None:
        self.shared = shared
        self._own: dict[str, Catalog] = {}

    @property
    def store(self) -> Storage:
        return self.shared.store

    def own(self, tenant: str) -> Catalog:
        """``tenant``'s own models."""
        if tenant == DEFAULT_TENANT:
            return self.shared
        found = self._own.get(tenant)
        if found is None:
            found = self._own.setdefault(
                tenant, Catalog(tenant_store(self.shared.store, tenant), remember_absent=True))
        return found

    def known(self) -> dict[str, Catalog]:
        """The tenants' own catalogs made so far, by tenant (the shared one not included)."""
        return dict(self._own)

    def serving(self, tenant: str, name: str) -> tuple[Catalog, str]:
        """The catalog that answers for ``name`` to ``tenant``, and the tenant whose part of
        the store holds the model (``tenant``, or the default tenant for a shared model)."""
        own = self.own(tenant)
        if own is self.shared or own.versions(name):
            return own, tenant
        return self.shared, DEFAULT_TENANT

    def refresh(self, tenant: str, name: str) -> None:
        """Re-read ``name`` where ``tenant`` may find it: its own models, and the shared."""
        own = self.own(tenant)
        own.refresh(name)
        if own is not self.shared and not own.versions(name):
            self.shared.refresh(name)

    def models(self, tenant: str) -> dict[str, tuple[Catalog, list[int]]]:
        """Every model ``tenant`` sees, by name, sorted: the shared ones and its own (which
        hide shared ones of the same names), each with its catalog and versions."""
        found = {name: (self.shared, versions)
                 for name, versions in self.shared.models().items()}
        own = self.own(tenant)
        if own is not self.shared:
            found.update((name, (own, versions)) for name, versions in own.models().items())
        return dict(sorted(found.items()))
