"""Storage on a local directory and on a real S3 server (SeaweedFS): the same tests on both."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.common.settings import Settings
from services.common.storage import (
    PART_SIZE,
    AlreadyExists,
    NotFound,
    Storage,
    StorageError,
    storage_from_settings,
)

# The smallest part S3 takes; writes of a few parts stay fast.
SMALL_PART = 5 * 1024 * 1024


class Boom(Exception):
    pass


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Storage:
    if request.param == "local":
        return Storage.from_url(str(tmp_path / "store"), part_size=SMALL_PART)
    server = request.getfixturevalue("s3_server")
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
    # A prefix of its own per test: the bucket is shared by the session.
    return Storage.from_url(f"s3://{server.bucket}/t-{uuid.uuid4().hex[:8]}",
                            part_size=SMALL_PART)


def test_put_get_and_metadata(storage: Storage) -> None:
    storage.put("a/b/one.txt", b"hello")
    storage.put("a/b/one.txt", b"hello again")
    assert storage.get("a/b/one.txt") == b"hello again"
    assert storage.size("a/b/one.txt") == 11
    assert storage.exists("a/b/one.txt")
    assert not storage.exists("a/b/two.txt")
    with pytest.raises(NotFound, match=r"a/b/two\.txt"):
        storage.get("a/b/two.txt")
    with pytest.raises(NotFound):
        storage.size("a/b/two.txt")


def test_create_refuses_to_overwrite(storage: Storage) -> None:
    storage.put("once", b"first", create=True)
    with pytest.raises(AlreadyExists, match="once"):
        storage.put("once", b"second", create=True)
    assert storage.get("once") == b"first"


def test_get_range_slices_like_python(storage: Storage) -> None:
    data = bytes(range(256)) * 4
    storage.put("r.bin", data)
    for start, end in [(0, 10), (100, 356), (1000, 1024), (1000, 5000), (5, 5), (2000, 3000)]:
        assert storage.get_range("r.bin", start, end) == data[start:end], (start, end)
    with pytest.raises(NotFound):
        storage.get_range("missing.bin", 0, 10)
    with pytest.raises(ValueError, match="range"):
        storage.get_range("r.bin", 10, 5)


def test_list_delete_and_delete_prefix(storage: Storage) -> None:
    for key in ["x/1", "x/2", "x/sub/3", "xy/4", "z"]:
        storage.put(key, b"-")
    assert storage.list("x") == ["x/1", "x/2", "x/sub/3"]
    assert storage.list("x/") == ["x/1", "x/2", "x/sub/3"]
    assert storage.list("") == ["x/1", "x/2", "x/sub/3", "xy/4", "z"]
    storage.delete("z")
    storage.delete("z")  # missing: no error
    assert not storage.exists("z")
    assert storage.delete_prefix("x") == 3
    assert storage.list("") == ["xy/4"]
    assert storage.delete_prefix("nothing-here") == 0
    with pytest.raises(ValueError):
        storage.delete_prefix("")


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "./a", "a/"])
def test_bad_keys_are_refused(tmp_path: Path, key: str) -> None:
    storage = Storage.from_url(str(tmp_path))
    with pytest.raises(ValueError, match="key"):
        storage.put(key, b"x")


def test_writer_streams_several_parts(storage: Storage) -> None:
    chunk = os.urandom(1024 * 1024)
    with storage.writer("big/data.bin") as writer:
        for _ in range(12):  # three parts
            writer.write(chunk)
        assert not storage.exists("big/data.bin")  # nothing visible before the block ends
    assert writer.bytes_written == 12 * len(chunk)
    assert storage.size("big/data.bin") == 12 * len(chunk)
    assert storage.get_range("big/data.bin", 11 * len(chunk), 12 * len(chunk)) == chunk


def test_writer_that_raises_leaves_nothing(storage: Storage,
                                           request: pytest.FixtureRequest) -> None:
    storage.put("keep/old.bin", b"old")
    with pytest.raises(Boom), storage.writer("keep/new.bin") as writer:
        for _ in range(7):  # past the first part: a multipart upload is under way
            writer.write(os.urandom(1024 * 1024))
        raise Boom
    with pytest.raises(Boom), storage.writer("keep/old.bin") as writer:
        writer.write(b"replacement" * 1_000_000)
        raise Boom
    assert not storage.exists("keep/new.bin")
    assert storage.get("keep/old.bin") == b"old"
    assert storage.list("keep") == ["keep/old.bin"]
    if storage.url.startswith("/"):
        # No staging file left in the directory either.
        left = sorted(str(p.relative_to(storage.url)) for p in Path(storage.url).rglob("*")
                      if p.is_file())
        assert left == ["keep/old.bin"]
    else:
        # Nor a multipart upload left open on the server.
        assert request.getfixturevalue("s3_server").pending_uploads() == []


def test_empty_writer_writes_an_empty_object(storage: Storage) -> None:
    with storage.writer("empty.bin"):
        pass
    assert storage.get("empty.bin") == b""


def test_async_writer_and_stream(storage: Storage) -> None:
    data = os.urandom(6 * 1024 * 1024 + 123)

    async def roundtrip() -> list[bytes]:
        async with storage.awriter("up/file.bin") as writer:
            for start in range(0, len(data), 1 << 20):
                await writer.write(data[start : start + (1 << 20)])
        return [chunk async for chunk in storage.astream("up/file.bin", chunk_size=1 << 20)]

    chunks = asyncio.run(roundtrip())
    assert b"".join(chunks) == data
    assert len(chunks) >= 2

    async def failing() -> None:
        async with storage.awriter("up/broken.bin") as writer:
            await writer.write(data)
            raise Boom

    with pytest.raises(Boom):
        asyncio.run(failing())
    assert not storage.exists("up/broken.bin")

    async def missing() -> None:
        async for _ in storage.astream("up/missing.bin"):
            pass

    with pytest.raises(NotFound):
        asyncio.run(missing())


def test_open_is_a_seekable_file_for_pyarrow(storage: Storage, tmp_path: Path) -> None:
    table = pa.table({"x": list(range(10_000)), "y": [f"v{i}" for i in range(10_000)]})
    local = tmp_path / "t.parquet"
    pq.write_table(table, local, row_group_size=1000)
    storage.put("t.parquet", local.read_bytes())
    with storage.open("t.parquet") as file:
        parquet = pq.ParquetFile(file)
        assert parquet.metadata.num_row_groups == 10
        group = parquet.read_row_group(7, columns=["y"])
        assert group.column("y")[0].as_py() == "v7000"
    with storage.open("t.parquet") as file:
        file.seek(-4, os.SEEK_END)
        assert file.read() == b"PAR1"
        file.seek(0)
        assert file.read(4) == b"PAR1"
    with pytest.raises(NotFound):
        storage.open("nope.parquet")


def test_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Storage.from_url(f"file://{tmp_path}/f").url == f"{tmp_path}/f"
    monkeypatch.chdir(tmp_path)
    relative = Storage.from_url("rel/dir")
    assert relative.url == f"{tmp_path}/rel/dir"
    relative.put("k", b"v")
    assert (tmp_path / "rel" / "dir" / "k").read_bytes() == b"v"
    with pytest.raises(ValueError, match="ftp://"):
        Storage.from_url("ftp://host/x")
    with pytest.raises(ValueError, match="bucket"):
        Storage.from_url("s3:///prefix")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    assert Storage.from_url("s3://bucket/some/prefix/").url == "s3://bucket/some/prefix"


def test_unreachable_s3_is_a_storage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.cli.redis_server import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_RETRIES", "0")
    storage = Storage.from_url("s3://nowhere/x")
    with pytest.raises(StorageError) as raised:
        storage.get("k")
    assert not isinstance(raised.value, NotFound)


def test_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFERQ_STORAGE_URL", raising=False)
    assert Settings().storage_url == str(Path.home() / ".inferq" / "storage")
    monkeypatch.setenv("INFERQ_STORAGE_URL", str(tmp_path / "s"))
    storage = storage_from_settings(Settings())
    assert storage.url == str(tmp_path / "s")
    assert storage.part_size == PART_SIZE
