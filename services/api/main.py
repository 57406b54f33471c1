"""Assembling the FastAPI application: state, routers, error handlers, middleware."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.responses import ORJSONResponse
from redis.exceptions import RedisError

from services.api.auth import (
    ROUTE_SCOPES,
    Authenticator,
    AuthMiddleware,
    KeySeeder,
    auth_problem,
)
from services.api.catalog_follower import CatalogFollower
from services.api.cluster import ClusterView
from services.api.dataset_upload import dataset_store
from services.api.deps import ApiState
from services.api.error_responses import install_error_handlers
from services.api.hot_routes import HotRoutesMiddleware
from services.api.job_service import JobService, JobSweeper
from services.api.metrics import BacklogExporter
from services.api.observation import ObservedRequestsMiddleware
from services.api.openapi import secure_document
from services.api.rate_limit import RateLimiter, RateLimitMiddleware
from services.api.routes import (
    api_keys,
    batch_jobs,
    datasets,
    docs,
    health,
    models,
    pools,
    tasks,
    training_jobs,
)
from services.api.task_service import TaskService
from services.api.training_service import TrainingService
from services.api.waiter import TaskWaiter
from services.common import keys
from services.common.api_keys import SeedFileError
from services.common.catalog import Catalog, TenantCatalogs
from services.common.heap import settle_heap
from services.common.records import unreachable_redis, unsupported_redis
from services.common.redaction import redact_url
from services.common.settings import Settings, get_settings
from services.common.storage import Storage, StorageError, storage_from_settings
from services.common.telemetry import exporter_configured, init_tracing, shutdown_tracing

log = logging.getLogger(__name__)


async def refuse_unsupported_redis(client: aioredis.Redis) -> None:
    """Stop the start of an API whose Redis cannot run its scripts; an unreachable Redis is
    the readiness check's matter, not the start's."""
    try:
        info = await client.info("server")
    except (RedisError, OSError) as exc:
        level, line = unreachable_redis(exc)
        log.log(level, "redis unreachable at start", extra={"problem": line})
        return
    problem = unsupported_redis(info)
    if problem:
        log.error(problem)
        raise RuntimeError(problem)


def _storage_or_none(settings: Settings) -> Storage | None:
    """The dataset store; None, and a warning, when it cannot be used yet: predictions do
    not need it, and dataset requests try again (503 while it fails)."""
    try:
        return storage_from_settings(settings)
    except (StorageError, ValueError) as exc:
        log.warning("storage unusable; dataset requests will fail until it is",
                    extra={"storage": redact_url(settings.storage_url), "error": str(exc)})
        return None


async def start_authentication(authenticator: Authenticator, settings: Settings,
                               client: aioredis.Redis) -> KeySeeder | None:
    """Refuse to start without what authentication needs; store the seed file's keys (in
    the background while Redis is unreachable: the seeder returned, to start)."""
    problem = auth_problem(settings)
    if problem:
        log.error(problem)
        raise RuntimeError(problem)
    authenticator.bind(client)
    if settings.auth == "off":
        log.warning("authentication is off (INFERQ_AUTH=off): every request is served as "
                    "the default tenant with every scope; set INFERQ_AUTH=on and "
                    "INFERQ_AUTH_SECRET to require API keys")
        return None
    if settings.auth_seed_file is None:
        return None
    try:
        seeder = KeySeeder(authenticator.store, settings.auth_seed_file)
    except SeedFileError as exc:
        log.error(str(exc))
        raise RuntimeError(str(exc)) from None
    return None if await seeder.seed_once() else seeder


def _secure_openapi(app: FastAPI) -> None:
    """The document states, on each operation under /v1, the key and scopes it needs."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            secure_document(build(), ROUTE_SCOPES)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    authenticator = Authenticator(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A bounded pool that makes a burst of requests wait for a connection; redis-py's
        # default pool refuses the 101st concurrent request outright.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.broker_url,
            max_connections=settings.redis_max_connections,
            timeout=settings.redis_socket_timeout,
            socket_timeout=settings.redis_socket_timeout,
            socket_connect_timeout=settings.redis_socket_timeout,
            health_check_interval=10,
            **settings.redis_tls,
        )
        client = aioredis.Redis.from_pool(pool)
        await refuse_unsupported_redis(client)
        seeder = await start_authentication(authenticator, settings, client)
        waiter = TaskWaiter(client)
        waiter.follow(keys.API_KEYS_CHANNEL, authenticator.changed, authenticator.subscribed)
        catalogs = TenantCatalogs(Catalog(settings.model_store))
        follower = CatalogFollower(catalogs)
        waiter.follow(keys.MODELS_CHANNEL, follower.changed, follower.subscribed)
        backlog = BacklogExporter(client, settings.queue_kinds)
        jobs = JobService(client, settings, waiter,
                          lambda: dataset_store(app.state.inferq))
        sweeper = JobSweeper(jobs, settings.job_sweep_seconds)
        app.state.inferq = ApiState(
            settings=settings,
            redis=client,
            catalogs=catalogs,
            waiter=waiter,
            tasks=TaskService(client, settings, waiter),
            jobs=jobs,
            training=TrainingService(client, settings, waiter,
                                     lambda: dataset_store(app.state.inferq)),
            backlog=backlog,
            cluster=ClusterView(settings.k8s_namespace, settings.k8s_worker_selector or "")
            if settings.k8s_namespace
            else None,
            storage=_storage_or_none(settings),
            limiter=RateLimiter(client, settings),
        )
        follower.start()
        if seeder is not None:
            seeder.start()
        waiter.start()
        backlog.start()
        sweeper.start()
        tracing = init_tracing("inferq-api")
        settle_heap()
        log.info(
            "api ready",
            extra={"redis": settings.redis_url_redacted, "model_store": str(settings.model_store),
                   "storage": redact_url(settings.storage_url),
                   "events_channel": waiter.channel},
        )
        try:
            yield
        finally:
            await sweeper.stop()
            await backlog.stop()
            await waiter.stop()
            await follower.stop()
            if seeder is not None:
                await seeder.stop()
            await client.aclose()
            if tracing:
                shutdown_tracing()

    options: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI).parameters:
        # inferq opens its own server span (and keeps probes untraced) on every version,
        # and exports its metrics with prometheus-client: FastAPI's own instrumentation
        # would only add work to every request.
        options["telemetry"] = {
            "tracing": False,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
        }
    app = FastAPI(
        **options,
        title="inferq",
        version="1",
        description="Asynchronous ML inference: submit rows, get a task, read its result.",
        default_response_class=ORJSONResponse,
        lifespan=lifespan,
        # Served by ``routes.docs`` from the package: FastAPI's pages load from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.authenticator = authenticator
    _secure_openapi(app)
    # Innermost: the hot routes are still authenticated, counted, timed and traced.
    app.add_middleware(HotRoutesMiddleware)
    # Every authenticated request but a prediction (its handler knows its rows) is taken
    # from its key's limits before it runs.
    app.add_middleware(RateLimitMiddleware)
    # Refusals are counted and traced like any answer.
    app.add_middleware(AuthMiddleware, authenticator=authenticator)
    app.add_middleware(ObservedRequestsMiddleware, tracing=exporter_configured())
    routers = [module.router
               for module in (health, models, tasks, datasets, batch_jobs, training_jobs, pools,
                              api_keys, docs)]
    for router in routers:
        app.include_router(router)
    # The app's own routes (/openapi.json) and the routers' as they declared them.
    install_error_handlers(
        app, [*app.router.routes, *(route for router in routers for route in router.routes)])
    return app
