"""Datasets through a real API process on real Redis and a real store: uploads of each
format, every refusal with its line or row, the size limit, a client that disconnects
halfway, and rows read back by range."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from processes import INFERQ, ServiceProcess, service_env, start_api

from services.cli.redis_server import free_port
from services.common.datasets import load_dataset, read_rows
from services.common.keys import DATASETS_INDEX
from services.common.storage import Storage

pytestmark = pytest.mark.integration

MAX_BYTES = 24_000_000  # three parts of a multipart write
CSV = "text/csv"
JSONL = "application/x-ndjson"
PARQUET = "application/vnd.apache.parquet"
ROWS = 23_456


@pytest.fixture(scope="module")
def storage_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("datasets-storage")


@pytest.fixture(scope="module")
def stack_env(redis_server, model_store, storage_dir: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    redis_server.client().flushdb()
    return service_env(redis_server.url, model_store, INFERQ_STORAGE_URL=str(storage_dir),
                       INFERQ_MAX_DATASET_BYTES=str(MAX_BYTES))


@pytest.fixture(scope="module")
def storage(storage_dir: Path) -> Storage:
    return Storage.from_url(str(storage_dir))


@pytest.fixture
def nothing_left(storage_dir: Path, redis_server) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """The test must leave the store (staged parts too) and the listing as it found them."""

    def state() -> tuple[list[Path], int]:
        files = sorted(p for p in storage_dir.rglob("*") if p.is_file())
        return files, redis_server.client().zcard(DATASETS_INDEX)

    before = state()
    yield
    assert state() == before


def sample_rows() -> list[dict[str, object]]:
    return [{"id": i, "x": i / 4, "label": "two\nlines, \"q\"" if i % 11 == 0 else f"r{i}"}
            for i in range(ROWS)]


def encoded(fmt: str, rows: list[dict[str, object]]) -> bytes:
    if fmt == CSV:
        out = io.StringIO(newline="")
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue().encode()
    if fmt == JSONL:
        return b"".join(orjson.dumps(r) + b"\n" for r in rows)
    out_file = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out_file, row_group_size=5_000)
    return out_file.getvalue()


@pytest.mark.parametrize("fmt", [CSV, JSONL, PARQUET])
def test_round_trip(client: httpx.Client, storage: Storage, redis_server, fmt: str) -> None:  # type: ignore[no-untyped-def]
    rows = sample_rows()
    body = encoded(fmt, rows)
    answer = client.post("/v1/datasets", params={"name": "sample"}, content=body,
                         headers={"Content-Type": fmt})
    assert answer.status_code == 201, answer.text
    dataset = answer.json()
    dataset_id = dataset["dataset_id"]
    assert answer.headers["Location"] == f"/v1/datasets/{dataset_id}"
    assert len(dataset_id) == 32 and int(dataset_id, 16) >= 0
    assert dataset["rows"] == ROWS and dataset["bytes"] == len(body)
    assert dataset["sha256"] == hashlib.sha256(body).hexdigest()
    assert dataset["columns"] == [{"name": "id", "dtype": "int64"},
                                  {"name": "x", "dtype": "float64"},
                                  {"name": "label", "dtype": "string"}]
    assert client.get(f"/v1/datasets/{dataset_id}").json() == dataset
    assert client.get("/v1/datasets").json()["datasets"][0] == dataset

    record = load_dataset(redis_server.client(), dataset_id)
    assert record is not None and storage.get(record.key) == body
    start, stop = 9_990, 15_010
    table = read_rows(storage, record, start, stop)
    assert table.to_pylist() == [{"row": i, **rows[i]} for i in range(start, stop)]

    assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 204
    assert not storage.exists(record.key)
    assert client.get(f"/v1/datasets/{dataset_id}").json()["error"]["code"] == "dataset_not_found"
    assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 404


def test_listing_is_newest_first(client: httpx.Client) -> None:
    ids = []
    for name in ("older", "newer"):
        answer = client.post("/v1/datasets", params={"name": name}, content=b"a\n1\n",
                             headers={"Content-Type": CSV})
        ids.append(answer.json()["dataset_id"])
    listed = [d["dataset_id"] for d in client.get("/v1/datasets").json()["datasets"]]
    assert listed.index(ids[1]) < listed.index(ids[0])
    assert [d["dataset_id"] for d in
            client.get("/v1/datasets", params={"limit": 1}).json()["datasets"]] == [ids[1]]
    for dataset_id in ids:
        client.delete(f"/v1/datasets/{dataset_id}")


BAD_FILES = [
    (CSV, b"", {}, "the file is empty"),
    (CSV, b"1,2,3\n4,5,6\n", {"line": 1}, "header"),
    (CSV, b"a,b\n1,2\n3\n", {"line": 3, "row": 1}, "line 3 has 1 fields; the header has 2"),
    (CSV, b'a,b\n1,2\n"x\n', {"line": 3, "row": 1}, "never closed"),
    (CSV, b'{"a": 1}\n{"a": 2}\n', {"line": 1}, "looks like JSON"),
    (CSV, b"PAR1\x15\x04\x15\x00\x00", {"line": 1}, "Parquet file, not CSV"),
    (CSV, b"a,b\n1,\xff\xfe\n", {"line": 2, "row": 0}, "not UTF-8"),
    (JSONL, b"", {}, "the file is empty"),
    (JSONL, b'{"a": 1}\n{"a": 2,\n', {"line": 2, "row": 1}, "line 2 is not valid JSON"),
    (JSONL, b'{"a": 1}\n\n["a", 2]\n', {"line": 3, "row": 1}, "an array, not a JSON object"),
    (JSONL, b"a,b\n1,2\n", {"line": 1, "row": 0}, "line 1 is not valid JSON"),
    (PARQUET, b"", {}, "the file is empty"),
    (PARQUET, b"a,b\n1,2\n", {}, "does not start with PAR1"),
    (PARQUET, b"PAR1" + b"\x00" * 100 + b"PAR1", {}, "not a readable Parquet file"),
]


@pytest.mark.usefixtures("nothing_left")
@pytest.mark.parametrize(("fmt", "body", "where", "words"), BAD_FILES,
                         ids=[f"{f.split('/')[-1]}-{w}" for f, _, _, w in BAD_FILES])
def test_unreadable_files_are_400_naming_the_line(
    client: httpx.Client, fmt: str, body: bytes, where: dict[str, int], words: str,
) -> None:
    answer = client.post("/v1/datasets", params={"name": "bad"}, content=body,
                         headers={"Content-Type": fmt})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_dataset"
    assert words in error["message"]
    assert {k: error["details"][k] for k in where} == where
    assert error["details"]["format"] == {CSV: "csv", JSONL: "jsonl", PARQUET: "parquet"}[fmt]


@pytest.mark.usefixtures("nothing_left")
def test_a_bad_row_after_megabytes_stops_the_upload(client: httpx.Client) -> None:
    body = b"a,b\n" + b"1,2\n" * 200_000 + b"3\n"  # beyond the first checked block
    answer = client.post("/v1/datasets", params={"name": "bad"}, content=body,
                         headers={"Content-Type": CSV})
    assert answer.status_code == 400
    assert answer.json()["error"]["details"] == {"line": 200_002, "row": 200_000,
                                                 "format": "csv"}


@pytest.mark.usefixtures("nothing_left")
def test_other_types_and_names_are_refused(client: httpx.Client) -> None:
    answer = client.post("/v1/datasets", params={"name": "x"}, content=b"{}",
                         headers={"Content-Type": "application/json"})
    assert answer.status_code == 415
    assert answer.json()["error"]["code"] == "unsupported_media_type"
    answer = client.post("/v1/datasets", content=b"a\n1\n", headers={"Content-Type": CSV})
    assert answer.status_code == 400
    assert answer.json()["error"]["details"] == {"parameter": "name"}


def chunks(total: int) -> Iterator[bytes]:
    yield b"a,b\n"
    sent = 4
    while sent < total:
        yield b"1,2\n" * 16_384
        sent += 4 * 16_384


@pytest.mark.usefixtures("nothing_left")
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_over_the_limit_is_413_and_leaves_nothing(client: httpx.Client, declared: bool) -> None:
    body: bytes | Iterator[bytes] = b"".join(chunks(MAX_BYTES + 1)) if declared \
        else chunks(MAX_BYTES + 1)
    answer = client.post("/v1/datasets", params={"name": "big"}, content=body,
                         headers={"Content-Type": CSV})
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["details"] == {"max_bytes": MAX_BYTES}


@pytest.mark.usefixtures("nothing_left")
def test_a_client_that_disconnects_halfway_leaves_nothing(
    api: ServiceProcess, api_url: str, storage_dir: Path,
) -> None:
    """Half the declared body, then the socket closes: the upload is dropped, and the part
    already written to the store is removed."""
    where = urlsplit(api_url)
    half = b"a,b\n" + b"1,2\n" * 2_500_000  # 10 MB: more than one part
    with socket.create_connection((where.hostname, where.port)) as raw:
        raw.sendall(
            b"POST /v1/datasets?name=cut HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
            + f"Content-Length: {2 * len(half)}\r\n\r\n".encode() + half)
        deadline = time.monotonic() + 20
        while not any(p.is_file() for p in storage_dir.rglob("*")):
            assert time.monotonic() < deadline, "no part of the upload reached the store"
            time.sleep(0.02)
    api.wait_for_log("dataset upload cut off by the client", timeout=10)


@pytest.fixture(scope="module")
def s3_api(redis_server, model_store, s3_server, logs: Path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    env = service_env(redis_server.url, model_store,
                      INFERQ_STORAGE_URL=s3_server.url("uploads"), **s3_server.env)
    process = start_api(env, free_port(), logs)
    yield f"http://127.0.0.1:{process.args[process.args.index('--port') + 1]}"
    process.stop()


def test_uploads_against_s3(s3_api: str, s3_server, redis_server,  # type: ignore[no-untyped-def]
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A CSV larger than one part of a multipart upload, read back by range; a Parquet file
    that fails once written is deleted from the bucket."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    bucket = Storage.from_url(s3_server.url("uploads"))
    rows = [{**row, "id": i} for i, row in enumerate(sample_rows() * 20)]  # 12 MB: two parts
    body = encoded(CSV, rows)
    with httpx.Client(base_url=s3_api, timeout=60) as http:
        answer = http.post("/v1/datasets", params={"name": "big"}, content=body,
                           headers={"Content-Type": CSV})
        assert answer.status_code == 201, answer.text
        dataset = answer.json()
        assert dataset["rows"] == len(rows) and dataset["bytes"] == len(body)
        record = load_dataset(redis_server.client(), dataset["dataset_id"])
        assert record is not None and bucket.size(record.key) == len(body)
        start, stop = 200_005, 201_000
        assert read_rows(bucket, record, start, stop, ["id"]).to_pylist() == [
            {"row": i, "id": i} for i in range(start, stop)]

        broken = http.post("/v1/datasets", params={"name": "broken"},
                           content=b"PAR1" + b"\x00" * 64 + b"PAR1",
                           headers={"Content-Type": PARQUET})
        assert broken.status_code == 400
        assert bucket.list("datasets") == [record.key]
        assert http.delete(f"/v1/datasets/{record.dataset_id}").status_code == 204
        assert bucket.list("datasets") == []



def inferq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INFERQ, *args], capture_output=True, text=True, timeout=60)


def test_cli_uploads_lists_shows_and_deletes(api_url: str, tmp_path: Path) -> None:
    path = tmp_path / "iris.jsonl"
    path.write_bytes(encoded(JSONL, sample_rows()[:100]))
    uploaded = inferq("datasets", "upload", str(path), "--url", api_url)
    assert uploaded.returncode == 0, uploaded.stderr
    dataset = json.loads(uploaded.stdout)
    assert (dataset["name"], dataset["format"], dataset["rows"]) == ("iris.jsonl", "jsonl", 100)
    listed = json.loads(inferq("datasets", "list", "--url", api_url).stdout)
    assert listed["datasets"][0] == dataset
    shown = inferq("datasets", "show", dataset["dataset_id"], "--url", api_url)
    assert json.loads(shown.stdout) == dataset
    assert inferq("datasets", "delete", dataset["dataset_id"], "--url", api_url).returncode == 0
    missing = inferq("datasets", "show", dataset["dataset_id"], "--url", api_url)
    assert missing.returncode == 1
    assert json.loads(missing.stderr)["error"]["code"] == "dataset_not_found"

    # The format from --format when the extension says nothing; the API's refusal on stderr.
    odd = tmp_path / "rows.txt"
    odd.write_bytes(b"a,b\n1\n")
    unknown = inferq("datasets", "upload", str(odd), "--url", api_url)
    assert unknown.returncode == 1 and "--format csv|jsonl|parquet" in unknown.stderr
    refused = inferq("datasets", "upload", str(odd), "--format", "csv", "--name", "n",
                     "--url", api_url)
    assert refused.returncode == 1
    assert json.loads(refused.stderr)["error"]["details"]["line"] == 2


def test_an_unusable_store_is_503_and_the_api_still_serves(
    redis_server, model_store, logs: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = service_env(redis_server.url, model_store, INFERQ_STORAGE_URL=str(blocker / "store"))
    process = start_api(env, free_port(), logs)
    try:
        url = f"http://127.0.0.1:{process.args[process.args.index('--port') + 1]}"
        with httpx.Client(base_url=url, timeout=30) as http:
            assert http.get("/v1/models").status_code == 200
            answer = http.post("/v1/datasets", params={"name": "n"}, content=b"a\n1\n",
                               headers={"Content-Type": CSV})
            assert answer.status_code == 503
            assert answer.json()["error"]["code"] == "storage_unavailable"
            assert "INFERQ_STORAGE_URL" in answer.json()["error"]["message"]
    finally:
        process.stop()
