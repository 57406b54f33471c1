"""The API's read-only view of the worker Deployments, when it runs in Kubernetes."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

POOL_LABEL = "inferq.io/pool"


@dataclass
class Replicas:
    ready: int
    desired: int


class ClusterView:
    """Ready and desired replicas of each pool's Deployment, read at most every few seconds.

    In a pod it uses the service account; elsewhere the current kubeconfig. The Kubernetes
    client blocks, so calls run in a thread and never on the event loop.
    """

    def __init__(self, namespace: str, selector: str, cache_seconds: float = 2.0) -> None:
        self._namespace = namespace
        self._selector = selector
        self._cache_seconds = cache_seconds
        self._api: Any = None
        self._cached: dict[str, Replicas] = {}
        self._read_at = -float("inf")

    def _client(self) -> Any:
        if self._api is None:
            from kubernetes import client, config

            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            self._api = client.AppsV1Api()
        return self._api

    def _read(self) -> dict[str, Replicas]:
        deployments = self._client().list_namespaced_deployment(
            self._namespace, label_selector=self._selector, _request_timeout=3
        )
        replicas = {}
        for item in deployments.items:
            pool = (item.metadata.labels or {}).get(POOL_LABEL)
            if pool:
                replicas[pool] = Replicas(
                    ready=item.status.ready_replicas or 0, desired=item.spec.replicas or 0
                )
        return replicas

    async def replicas(self) -> dict[str, Replicas] | None:
        """Replicas by pool; None when the Kubernetes API cannot be read."""
        if time.monotonic() - self._read_at < self._cache_seconds:
            return self._cached
        try:
            self._cached = await asyncio.to_thread(self._read)
        except Exception as exc:
            log.warning("kubernetes api unavailable", extra={"error": repr(exc)})
            return None
        self._read_at = time.monotonic()
        return self._cached
