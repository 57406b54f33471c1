"""Worker pools: each queue's backlog and, in a cluster, its Deployment's replicas."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.api.deps import StateDep
from services.api.metrics import read_backlog
from services.api.openapi import POOLS_RESPONSES
from services.api.schemas import PoolList

router = APIRouter(prefix="/v1/pools", tags=["pools"])


@router.get("", summary="Show the worker pools' backlog", response_model=PoolList,
            responses=POOLS_RESPONSES)
async def list_pools(state: StateDep) -> dict[str, Any]:
    """Each pool's queue: what waits in it, what its workers hold, and, in Kubernetes, how
    many worker pods are ready and desired."""
    pool_queues = state.settings.pool_queues
    backlog = await read_backlog(state.redis, pool_queues.values())
    replicas = await state.cluster.replicas() if state.cluster is not None else None
    pools = []
    for name, queue in pool_queues.items():
        waiting, inflight = backlog[queue]
        found = replicas.get(name) if replicas is not None else None
        pools.append({
            "name": name,
            "queue": queue,
            "waiting": waiting,
            "inflight": inflight,
            "backlog": waiting + inflight,
            "ready_replicas": found.ready if found else None,
            "desired_replicas": found.desired if found else None,
        })
    return {"pools": pools}
