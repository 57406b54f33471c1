"""Each tenant lists its jobs from an index of its own: another tenant's many jobs never hide
its few. The services run in this process on a real Redis, the page a listing reads made
small (``LIST_SCAN``), so that a handful of jobs stands for a busy tenant's thousands; the
jobs an older API left in the shared index only are indexed for their tenants when an API
starts (a real API process)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
import redis.asyncio as aioredis
from processes import ServiceProcess, auth_on, create_key, service_env, start_api

from services.api import job_service
from services.api.job_service import JobService
from services.api.schemas import BatchJobRequest, TrainingJobRequest
from services.api.training_service import TrainingService
from services.api.waiter import TaskWaiter
from services.cli.redis_server import free_port
from services.common import jobs, keys
from services.common import training_jobs as tj
from services.common import training_spec as ts
from services.common.catalog import Feature, ModelMetadata
from services.common.dataset_formats import Column
from services.common.datasets import Dataset, save_dataset
from services.common.settings import Settings
from services.common.storage import Storage

COLUMNS = [Column("x0", "float64"), Column("x1", "float64"), Column("y", "float64")]
MODEL = ModelMetadata(name="lists", version=1, task="regression", estimator="Ridge",
                      features=[Feature(name="x0"), Feature(name="x1")], sha256="0" * 64,
                      created_at=datetime.now(UTC), sklearn_version="1.5.0")


def dataset(tenant: str) -> Dataset:
    return Dataset(uuid.uuid4().hex, "lists", "csv", 10, COLUMNS, 100, "0" * 64, time.time(),
                   "datasets/lists/data.csv", [[0, 10]], tenant)


class Services:
    """A batch and a training service on the test's Redis, as one API process has them."""

    def __init__(self, url: str, storage: Storage) -> None:
        self.client = aioredis.Redis.from_url(url)
        settings = Settings(redis_url=url, job_retention_seconds=3600)
        waiter = TaskWaiter(self.client)
        self.batch = JobService(self.client, settings, waiter, lambda: storage)
        self.training = TrainingService(self.client, settings, waiter, lambda: storage)
        self.datasets: dict[str, Dataset] = {}

    async def submit(self, tenant: str, kind: str) -> str:
        """A job of ``kind`` submitted as ``tenant`` would: its id."""
        if tenant not in self.datasets:
            self.datasets[tenant] = dataset(tenant)
            await save_dataset(self.client, self.datasets[tenant])
        data = self.datasets[tenant]
        if kind == jobs.KIND:
            job = await self.batch.submit(MODEL, data, BatchJobRequest(dataset_id=data.dataset_id))
        else:
            body = TrainingJobRequest(dataset_id=data.dataset_id, target_column="y",
                                      estimator="Ridge")
            spec = ts.check_spec(body.model_dump(exclude_none=True, exclude={"dataset_id"}),
                                 COLUMNS)
            job = await self.training.submit_training("lists", data, body, spec)
        return str(job["job_id"])

    def service(self, kind: str) -> JobService:
        return self.batch if kind == jobs.KIND else self.training


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> int:
    """Listings read 3 jobs at a time: 5 jobs are more than a page."""
    monkeypatch.setattr(job_service, "LIST_SCAN", 3)
    return 3


@pytest.mark.parametrize("kind", [jobs.KIND, tj.KIND])
def test_a_busy_tenant_never_hides_another_tenants_jobs(
        clean_redis: redis.Redis, redis_server: Any, tmp_path: Path, small_pages: int,
        kind: str) -> None:
    async def scenario() -> None:
        services = Services(redis_server.url, Storage.from_url(str(tmp_path)))
        service = services.service(kind)
        quiet = await services.submit("globex", kind)
        busy = [await services.submit("acme", kind) for _ in range(small_pages + 2)]
        # The busy tenant's jobs fill the newest page of the shared index.
        assert quiet not in {i.decode() for i in clean_redis.zrevrange(keys.JOBS_INDEX, 0,
                                                                        small_pages - 1)}

        listed = await service.list("globex", None, None, 100)
        assert [j["job_id"] for j in listed] == [quiet]
        assert listed[0]["kind"] == kind

        # The busy tenant's own listing reads on past a page, newest first, up to ``limit``.
        mine = [j["job_id"] for j in await service.list("acme", None, None, 100)]
        assert mine == busy[::-1]
        assert [j["job_id"] for j in await service.list("acme", None, None, 4)] == \
            busy[::-1][:4]
        assert [j["job_id"] for j in await service.list("acme", "queued", "lists", 2)] == \
            busy[::-1][:2]
        assert await service.list("acme", "succeeded", None, 100) == []
        assert await service.list("acme", None, "other", 100) == []
        # The other kind's listing has none of them.
        other = services.training if kind == jobs.KIND else services.batch
        assert await other.list("globex", None, None, 100) == []
        await services.client.aclose()

    asyncio.run(scenario())


def old_job(client: redis.Redis, tenant: str | None, kind: str, submitted_at: float) -> str:
    """A job as an API without the tenants' indexes submitted it: in the shared index only.
    ``tenant`` None: a record from before tenants (the default tenant's)."""
    job_id = str(uuid.uuid4())
    if kind == jobs.KIND:
        record = jobs.new_job_record(
            model="lists", version=1, dataset_id="d", queue="parked", input_format="csv",
            output_format="csv", id_column=None, passthrough=[], columns=["prediction"],
            return_probabilities=False, max_failed_rows=0, rows=10, chunks=1, chunk_rows=10,
            trace_id=None, now=submitted_at, notify=None)
    else:
        record = tj.new_record(model="lists", dataset_id="d", dataset_sha256="0" * 64,
                               queue="parked", spec={"estimator": "Ridge"}, candidates=1,
                               folds=1, alias=None, promote_if=None, trace_id=None,
                               now=submitted_at)
    if tenant is not None:
        record["tenant"] = tenant
    client.eval(jobs.SUBMIT_SCRIPT, 3, keys.job_key(job_id), keys.JOBS_INDEX, "parked", 3600,
                orjson.dumps(record), repr(submitted_at), job_id)
    return job_id


def test_older_jobs_are_indexed_for_their_tenants_and_expired_ones_trimmed(
        clean_redis: redis.Redis, redis_server: Any, tmp_path: Path, small_pages: int) -> None:
    now = time.time()
    globex_batch = old_job(clean_redis, "globex", jobs.KIND, now - 10)
    globex_training = old_job(clean_redis, "globex", tj.KIND, now - 9)
    default_batch = old_job(clean_redis, None, jobs.KIND, now - 8)
    # From before job kinds too: a batch job's record without ``kind``.
    clean_redis.hdel(keys.job_key(default_batch), "kind")
    # More than a page submitted in the same instant, across a page's end.
    same_time = sorted(old_job(clean_redis, "initech", jobs.KIND, now - 5)
                       for _ in range(small_pages + 2))
    expired = old_job(clean_redis, "initech", jobs.KIND, now - 4)
    clean_redis.delete(keys.job_key(expired))

    async def scenario() -> None:
        services = Services(redis_server.url, Storage.from_url(str(tmp_path)))
        assert await services.batch.list("globex", None, None, 100) == []
        assert await services.batch.index_older() == 3 + len(same_time)
        assert [j["job_id"] for j in await services.batch.list("globex", None, None, 100)] \
            == [globex_batch]
        assert [j["job_id"] for j in await services.training.list("globex", None, None, 10)] \
            == [globex_training]
        assert [j["job_id"] for j in await services.batch.list("default", None, None, 10)] \
            == [default_batch]
        assert sorted(j["job_id"] for j in await services.batch.list("initech", None, None,
                                                                      100)) == same_time
        assert clean_redis.zscore(keys.tenant_jobs_index("initech", jobs.KIND), expired) is None
        # Indexed once: the next pass finds nothing new.
        assert await services.batch.index_older() == 0

        # A job whose record expired leaves its tenant's index at the sweep, as it leaves
        # the shared one; a job alive stays.
        clean_redis.delete(keys.job_key(globex_batch))
        assert await services.batch.sweep(now=now + 7200) == 2  # With initech's expired.
        index = keys.tenant_jobs_index("globex", jobs.KIND)
        assert clean_redis.zscore(index, globex_batch) is None
        assert clean_redis.zscore(keys.JOBS_INDEX, globex_batch) is None
        assert clean_redis.zscore(keys.tenant_jobs_index("globex", tj.KIND),
                                  globex_training) is not None
        await services.client.aclose()

    asyncio.run(scenario())


@pytest.fixture
def old_jobs_api(redis_server: Any, model_store: Path, clean_redis: redis.Redis,
                 tmp_path: Path) -> Iterator[tuple[ServiceProcess, dict[str, str], str]]:
    """An API started on a Redis that holds a job an older API submitted for tenant
    globex: the API, globex's key and the job's id."""
    job_id = old_job(clean_redis, "globex", jobs.KIND, time.time() - 5)
    env = auth_on(service_env(redis_server.url, model_store))
    key = create_key(env, "globex", "jobs,train")["key"]
    api = start_api(env, free_port(), tmp_path)
    yield api, {"Authorization": f"Bearer {key}"}, job_id
    api.stop()


def test_an_api_lists_the_jobs_an_older_api_submitted(
        old_jobs_api: tuple[ServiceProcess, dict[str, str], str]) -> None:
    api, headers, job_id = old_jobs_api
    url = f"http://127.0.0.1:{api.args[api.args.index('--port') + 1]}"
    with httpx.Client(base_url=url, headers=headers, timeout=20) as http:
        deadline = time.monotonic() + 10
        while True:
            listed = http.get("/v1/batch-jobs", params={"limit": 5})
            assert listed.status_code == 200, listed.text
            if listed.json()["jobs"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert [j["job_id"] for j in listed.json()["jobs"]] == [job_id]
        assert http.get("/v1/training-jobs").json() == {"jobs": []}
