"""The API's shared state and the dependencies that hand it to routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Request

from services.api.cluster import ClusterView
from services.api.errors import (
    AliasNotFound,
    InvalidParameter,
    ModelNotFound,
    VersionNotFound,
    wait_out_of_range,
)
from services.api.job_service import JobService
from services.api.metrics import BacklogExporter
from services.api.rate_limit import RateLimiter
from services.api.task_service import TaskService
from services.api.training_service import TrainingService
from services.api.waiter import TaskWaiter
from services.common import catalog
from services.common.catalog import DEFAULT_ALIAS, Catalog, ModelMetadata, TenantCatalogs
from services.common.settings import Settings
from services.common.storage import Storage


@dataclass
class ApiState:
    settings: Settings
    redis: aioredis.Redis
    #: The shared models and each tenant's own.
    catalogs: TenantCatalogs
    waiter: TaskWaiter
    tasks: TaskService
    jobs: JobService
    training: TrainingService
    backlog: BacklogExporter
    cluster: ClusterView | None
    #: None until the store can be used (``services.api.dataset_upload.dataset_store``).
    storage: Storage | None
    limiter: RateLimiter


# Dependencies are coroutines: FastAPI runs a plain ``def`` dependency in a thread pool,
# two thread hops per request for nothing.
async def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.inferq
    return state


StateDep = Annotated[ApiState, Depends(get_state)]


def state_of(request: Request) -> ApiState:
    """The API's state, for the hot routes that skip dependency resolution."""
    state: ApiState = request.app.state.inferq
    return state


def wait_seconds(request: Request, settings: Settings) -> float:
    """The ``wait`` query parameter, read directly: predict and task reads are the hot
    path, and FastAPI's dependency resolution was a fifth of their cost."""
    raw = request.query_params.get("wait")
    if raw is None or raw == "":
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        raise InvalidParameter(
            f"wait: {raw!r} is not a number of seconds", {"parameter": "wait", "value": raw}
        ) from None
    if not 0 <= wait <= settings.max_wait_seconds:
        raise wait_out_of_range(raw, settings.max_wait_seconds)
    return wait


def query_version(request: Request) -> int | None:
    """The ``version`` query parameter of a predict request, read directly like ``wait``."""
    raw = request.query_params.get("version")
    if raw is None or raw == "":
        return None
    if not raw.isdecimal() or int(raw) < 1:
        raise InvalidParameter(
            f"version: {raw!r} is not a positive integer", {"parameter": "version", "value": raw}
        )
    return int(raw)


def query_alias(request: Request) -> str | None:
    """The ``alias`` query parameter of a predict request."""
    return request.query_params.get("alias") or None


def resolve_model(models: Catalog, name: str, version: int | None,
                  alias: str | None = None) -> ModelMetadata:
    """The version of ``name`` a request names (``Catalog.resolve``) in ``models`` (the
    catalog that serves the name to the caller: ``TenantCatalogs.serving``), or a 404 that
    says what is missing."""
    try:
        metadata = models.resolve(name, version, alias)
    except catalog.AliasNotFound as exc:
        raise alias_not_found(name, alias or "", exc.aliases) from None
    if metadata is not None:
        return metadata
    versions = models.versions(name)
    if not versions:
        raise model_not_found(name)
    if version is None:  # An alias names a version no longer in the store.
        version = (models.default_version(name) if alias is None
                   else models.aliases(name).get(alias))
    raise VersionNotFound(
        f"model {name!r} has no version {version}; it has {', '.join(map(str, versions))}",
        {"model": name, "version": version, "versions": versions},
    )


def served_alias(models: Catalog, name: str, version: int | None, alias: str | None,
                 served: int) -> str | None:
    """The alias through which a request was served version ``served`` of ``name``: the
    one it named, else ``production`` when it named neither a version nor an alias and
    that alias points at ``served``; None when it pinned a version or got the latest."""
    if alias is not None or version is not None:
        return alias
    return DEFAULT_ALIAS if models.aliases(name).get(DEFAULT_ALIAS) == served else None


def model_not_found(name: str) -> ModelNotFound:
    return ModelNotFound(
        f"no model named {name!r}; GET /v1/models lists the models", {"model": name})


def alias_not_found(name: str, alias: str, aliases: dict[str, int]) -> AliasNotFound:
    has = (f"its aliases are {', '.join(sorted(aliases))}" if aliases
           else "it has no aliases")
    return AliasNotFound(f"model {name!r} has no alias {alias!r}; {has}",
                         {"model": name, "alias": alias, "aliases": sorted(aliases)})
