"""Liveness, readiness and the Prometheus exposition."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder
from redis.exceptions import RedisError

from services.api.deps import StateDep
from services.api.error_responses import error_response
from services.api.errors import RedisUnavailable
from services.api.openapi import METRICS_RESPONSES, READY_RESPONSES
from services.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness", response_model=Health)
async def healthz() -> dict[str, str]:
    """200 while the process serves requests; it touches no dependency."""
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness", response_model=Health, responses=READY_RESPONSES)
async def readyz(state: StateDep) -> JSONResponse:
    """200 when Redis answers, else 503: no request that needs Redis could be served."""
    try:
        await state.redis.ping()
    except (RedisError, OSError):
        return error_response(RedisUnavailable("Redis does not answer"))
    return JSONResponse({"status": "ready"})


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse,
            responses=METRICS_RESPONSES)
async def metrics(request: Request, state: StateDep) -> Response:
    """The Prometheus text format, or OpenMetrics (which carries exemplars) when asked.
    With a metrics port (``INFERQ_METRICS_PORT``) they are served there only, and this path
    is as unknown as any other."""
    if state.settings.metrics_port:
        raise HTTPException(404)
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(REGISTRY), media_type=content_type)
