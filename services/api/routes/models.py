"""Models: listing, metadata, versions and aliases, and submitting predictions.

A caller sees the shared models and its tenant's own (``TenantCatalogs``): a name is its
tenant's own model when it has one, else the shared one. Only the default tenant (the
operator's) changes the shared models' aliases; another tenant's own models are, to the
caller, models that do not exist.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from redis.exceptions import RedisError

from services.api.body import read_body
from services.api.deps import (
    ApiState,
    StateDep,
    alias_not_found,
    model_not_found,
    query_alias,
    query_version,
    resolve_model,
    state_of,
    wait_seconds,
)
from services.api.errors import (
    ApiError,
    InvalidAlias,
    InvalidParameter,
    SharedModel,
    VersionNotFound,
)
from services.api.openapi import (
    ALIAS_BODY,
    ALIAS_DELETE_RESPONSES,
    ALIAS_PUT_RESPONSES,
    LIST_RESPONSES,
    MODEL_RESPONSES,
    PREDICT_ALIAS_PARAMETER,
    PREDICT_BODY,
    PREDICT_RESPONSES,
    PREDICT_VERSION_PARAMETER,
    VERSIONS_RESPONSES,
    WAIT_PARAMETER,
)
from services.api.principal import principal_of
from services.api.responses import json_response
from services.api.schemas import (
    AliasSet,
    ModelDescription,
    ModelList,
    ModelVersion,
    ModelVersions,
)
from services.api.tracing import request_trace
from services.api.validation import check_rows, parse_predict_body
from services.common import model_events
from services.common.catalog import (
    Catalog,
    delete_alias,
    invalid_name,
    set_alias,
    valid_model_name,
)
from services.common.metrics import TASKS_SUBMITTED, series
from services.common.records import TERMINAL
from services.common.tenants import model_event

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/models", tags=["models"])

#: ``{"version": N}`` and some room for whitespace.
MAX_ALIAS_BODY_BYTES = 1024


@router.get("", summary="List the models", response_model=ModelList, responses=LIST_RESPONSES)
async def list_models(request: Request, state: StateDep) -> dict[str, Any]:
    """Every model the caller can use (the shared ones and its own) with its versions, its
    aliases, the version a prediction uses by default and its task kind."""
    tenant = principal_of(request).tenant
    models = []
    found = await asyncio.to_thread(state.catalogs.models, tenant)
    for name, (catalog, versions) in found.items():
        default = catalog.get(name)
        models.append(
            {
                "name": name,
                "versions": versions,
                "latest": versions[-1],
                "default_version": default.version if default else versions[-1],
                "aliases": catalog.aliases(name),
                "task": default.task if default else None,
            }
        )
    return {"models": models}


@router.get("/{model}", summary="Describe a model", response_model=ModelDescription,
            responses=MODEL_RESPONSES)
async def get_model(
    request: Request, state: StateDep, model: str,
    version: Annotated[int | None, Query(
        ge=1, description="a version; by default the one predictions use")] = None,
    alias: Annotated[str | None, Query(
        min_length=1, description="an alias, in place of a version")] = None,
) -> ModelDescription:
    """The metadata of one version (by default the one a prediction without a version or
    an alias uses: the alias `production`'s, else the latest): task kind, feature names and
    dtypes in the order rows list them, classes, metrics, the artifact's sha256, when it was
    created, how it was trained (`lineage`, null for an imported model) and its aliases."""
    if version is not None and alias is not None:
        raise _version_and_alias(version, alias)
    catalog, _ = await _fresh(request, state, model)
    metadata = resolve_model(catalog, model, version, alias)
    aliases = catalog.aliases(model)
    return ModelDescription(
        **metadata.model_dump(), aliases=_pointing_at(aliases, metadata.version),
        default_version=catalog.default_version(model) or metadata.version)


@router.get("/{model}/versions", summary="List a model's versions",
            response_model=ModelVersions, responses=VERSIONS_RESPONSES)
async def list_versions(request: Request, state: StateDep, model: str) -> ModelVersions:
    """Every version, oldest first, with its metadata (metrics, lineage) and the aliases
    that point at it; and the version a prediction uses by default. Read from the store,
    so a version registered a moment ago (a training job that just succeeded) is listed
    even before this process hears its announcement."""
    catalog, _ = await _fresh(request, state, model)
    versions = catalog.versions(model)
    if not versions:
        raise model_not_found(model)
    aliases = catalog.aliases(model)
    found = await asyncio.to_thread(lambda: [catalog.get(model, v) for v in versions])
    return ModelVersions(
        model=model, default_version=catalog.default_version(model) or versions[-1],
        aliases=aliases,
        versions=[ModelVersion(**m.model_dump(), aliases=_pointing_at(aliases, m.version))
                  for m in found if m is not None])


@router.put("/{model}/aliases/{alias}", summary="Point an alias at a version",
            response_model=AliasSet, responses=ALIAS_PUT_RESPONSES,
            openapi_extra={"requestBody": ALIAS_BODY})
async def put_alias(request: Request, state: StateDep, model: str, alias: str) -> AliasSet:
    """Point `alias` at `version` (moving it when it exists). Predictions and batch jobs
    that name the alias, or name nothing when the alias is `production`, use that version
    from their next request on, in every API process."""
    version = _alias_version(await read_body(request, MAX_ALIAS_BODY_BYTES))
    if not valid_model_name(alias):
        raise InvalidAlias(invalid_name("alias", alias), {"alias": alias})
    catalog, owner = await _fresh(request, state, model)
    resolve_model(catalog, model, version)
    _check_changeable(request, model, owner)
    try:
        await asyncio.to_thread(set_alias, catalog.store, model, alias, version)
    except ValueError as exc:  # The version was removed meanwhile.
        raise VersionNotFound(str(exc), {"model": model, "version": version}) from None
    await _changed(state, catalog, owner, model)
    return AliasSet(model=model, alias=alias, version=version)


@router.delete("/{model}/aliases/{alias}", summary="Remove an alias", status_code=204,
               response_class=Response, responses=ALIAS_DELETE_RESPONSES)
async def remove_alias(request: Request, state: StateDep, model: str,
                       alias: str) -> Response:
    """Remove `alias`; requests that name it are then a 404, and without `production` a
    prediction uses the latest version."""
    catalog, owner = await _fresh(request, state, model)
    if not catalog.versions(model):
        raise model_not_found(model)
    _check_changeable(request, model, owner)
    if not await asyncio.to_thread(delete_alias, catalog.store, model, alias):
        raise alias_not_found(model, alias, catalog.aliases(model))
    await _changed(state, catalog, owner, model)
    return Response(status_code=204)


async def _fresh(request: Request, state: ApiState, model: str) -> tuple[Catalog, str]:
    """The catalog that serves ``model`` to the caller and the tenant that owns it
    (``TenantCatalogs.serving``), read again from the store first."""
    tenant = principal_of(request).tenant
    await asyncio.to_thread(state.catalogs.refresh, tenant, model)
    return state.catalogs.serving(tenant, model)


def _check_changeable(request: Request, model: str, owner: str) -> None:
    """A 403 when the caller may not change ``model``: a shared model, and the caller is
    not the default tenant (the operator's)."""
    if principal_of(request).tenant != owner:
        raise SharedModel(
            f"model {model!r} is shared by every tenant; only the operator changes its "
            "aliases and versions", {"model": model})


def _pointing_at(aliases: dict[str, int], version: int) -> list[str]:
    return [name for name, target in aliases.items() if target == version]


def _version_and_alias(version: int, alias: str) -> InvalidParameter:
    return InvalidParameter(
        f"version {version} and alias {alias!r} both given; give one of them",
        {"parameter": "alias", "version": version, "alias": alias})


def _alias_version(raw: bytes) -> int:
    """The version of a ``PUT .../aliases/{alias}`` body, ``{"version": N}``."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidAlias(f"the request body is not valid JSON: {exc}") from None
    version = body.get("version") if isinstance(body, dict) else None
    if type(version) is not int or version < 1 or len(body) != 1:
        raise InvalidAlias('the body must be {"version": N}, N a version of the model',
                           {"field": "version"})
    return version


async def _changed(state: ApiState, catalog: Catalog, owner: str, model: str) -> None:
    """Serve the change here at once, and announce it to the other API processes."""
    await asyncio.to_thread(catalog.refresh, model)
    try:
        await model_events.aannounce(state.redis, model_event(owner, model))
    except (RedisError, OSError) as exc:
        # The others re-read every model when their subscription comes back.
        log.warning("model change not announced: redis unreachable",
                    extra={"model": model, "error": repr(exc)})


@router.post(
    "/{model}/predict",
    summary="Submit rows for prediction",
    status_code=202,
    response_class=Response,
    responses=PREDICT_RESPONSES,
    openapi_extra={"parameters": [WAIT_PARAMETER, PREDICT_VERSION_PARAMETER,
                                  PREDICT_ALIAS_PARAMETER],
                   "requestBody": PREDICT_BODY},
)
async def predict(request: Request, model: str) -> Response:
    """Record a task for the rows and queue it for the model's worker pool.

    The answer is the task: 202 with `Location` while it is queued or running, or 200 when
    it finished within `wait` seconds. Rows are checked against the model's features first:
    a row that does not fit is a 422 naming its row and column. The version is the query's
    or the body's `version`, else the one the query's or the body's `alias` points at (they
    must agree; a version and an alias together are a 400), else the one the alias
    `production` points at, else the latest. The task names the version used.

    The request and its rows count against the key's rate limits; over them, a 429 with
    `Retry-After`, and nothing is queued.
    """
    state = state_of(request)
    try:
        wait = wait_seconds(request, state.settings)
        asked_version, asked_alias = query_version(request), query_alias(request)
        raw = await read_body(request, state.settings.max_body_bytes)
        body = parse_predict_body(raw, state.settings.max_rows)
        version = _agreed("version", asked_version, body.version)
        alias = _agreed("alias", asked_alias, body.alias)
        if version is not None and alias is not None:
            raise _version_and_alias(version, alias)
        tenant = principal_of(request).tenant
        catalog, owner = state.catalogs.serving(tenant, model)
        metadata = resolve_model(catalog, model, version, alias)
        rows = check_rows(body.instances, metadata)
        # The request and its rows, taken from the caller's limits by the submit itself.
        charge = state.limiter.charge(request.scope, len(rows))
    except ApiError:
        await state.limiter.take(request.scope)  # A request refused is still a request.
        raise
    queue = state.settings.queue_for(metadata.name)
    task = await state.tasks.submit_prediction(
        metadata, queue, rows, body.return_probabilities, wait, request_trace(request.scope),
        tenant=tenant, owner=owner, charge=charge,
    )
    series(TASKS_SUBMITTED, metadata.name, queue).inc()
    location = f"/v1/tasks/{task['task_id']}"
    status = 200 if task["status"] in TERMINAL else 202
    return json_response(task, status, {"Location": location})


def _agreed(name: str, query: Any, body: Any) -> Any:
    """The query's or the body's value of ``name``; a 400 when both are given and differ."""
    if query is not None and body is not None and query != body:
        raise InvalidParameter(
            f"{name}={query} in the query and \"{name}\": {body!r} in the body disagree; "
            "give one of them", {"parameter": name, "query": query, "body": body})
    return body if query is None else query
