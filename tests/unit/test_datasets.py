"""Datasets: the streaming checks of each format, the records in Redis, and read_rows."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis.asyncio as aioredis

from services.common import dataset_formats
from services.common.dataset_formats import (
    INDEX_ROWS,
    Column,
    CsvValidator,
    DatasetError,
    JsonlValidator,
    Layout,
    merge_dtypes,
    validate_parquet,
)
from services.common.datasets import (
    Dataset,
    dataset_key,
    delete_dataset,
    get_dataset,
    list_datasets,
    load_dataset,
    new_dataset_id,
    read_rows,
    save_dataset,
)
from services.common.storage import Storage


def check(validator: CsvValidator | JsonlValidator, data: bytes, chunk: int = 7) -> Layout:
    for start in range(0, len(data), chunk):
        validator.feed(data[start : start + chunk])
    return validator.finish()


def refused(validator: CsvValidator | JsonlValidator, data: bytes) -> DatasetError:
    with pytest.raises(DatasetError) as caught:
        check(validator, data)
    return caught.value


# -- CSV.

def test_csv_columns_rows_and_dtypes() -> None:
    data = b'id,x,label,flag,empty\n1,1.5,"a, b",true,\n2,3,"say ""hi""\nthere",false,\n\n'
    layout = check(CsvValidator(), data)
    assert layout.rows == 2
    assert layout.columns == [Column("id", "int64"), Column("x", "float64"),
                              Column("label", "string"), Column("flag", "bool"),
                              Column("empty", "null")]
    assert layout.index == [[0, data.index(b"1,1.5")]]


@pytest.mark.parametrize(("data", "line", "words"), [
    (b"", None, "empty"),
    (b"\n\n", 1, "only empty lines"),
    (b"a,b\n", None, "no rows"),
    (b"1,2\n3,4\n", 1, "header"),
    (b"a,b\n1,2\n3\n", 3, "line 3 has 1 fields; the header has 2"),
    (b"a,b\n1,2\n  \n", 3, "line 3 has 1 fields"),
    (b"a,b\n1,2\n3,4,5\n", 3, "line 3 has 3 fields"),
    (b'a,b\n1,"open\n2,3\n', 2, "never closed"),
    (b"a,b\n1,\xff\n", 2, "not UTF-8"),
    (b"a,a\n1,2\n", 1, "twice"),
    (b"a,,c\n1,2,3\n", 1, "no name"),
    (b"row,b\n1,2\n", 1, "'row'"),
    (b'{"a": 1}\n', 1, "JSON"),
    (b"PAR1\x00\x01", 1, "Parquet"),
])
def test_csv_refusals_name_the_line(data: bytes, line: int | None, words: str) -> None:
    error = refused(CsvValidator(), data)
    assert words in error.message
    assert error.details.get("line") == line


def test_csv_ragged_row_far_down_is_named() -> None:
    body = b"a,b\n" + b"1,2\n" * 30_000 + b"1,2,3\n"
    error = refused(CsvValidator(), body)
    assert error.details == {"line": 30_002, "row": 30_000}


def test_csv_without_quotes_is_checked_block_by_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks without a quote take the array path: its index, counts and refusals are those
    of the line by line one."""
    monkeypatch.setattr(dataset_formats, "BLOCK_BYTES", 4096)
    lines = [b"a,b\r\n"] + [b"%d,x%d\r\n" % (i, i) + (b"\r\n" if i % 5_000 == 0 else b"")
                            for i in range(25_000)]
    body = b"".join(lines)
    layout = check(CsvValidator(), body, chunk=1000)
    starts = [body.index(b"\n%d,x" % r) + 1 for r in range(INDEX_ROWS, 25_000, INDEX_ROWS)]
    assert layout.index == [[0, 5], *([r, o] for r, o in zip(
        range(INDEX_ROWS, 25_000, INDEX_ROWS), starts, strict=True))]
    assert layout.rows == 25_000
    assert layout.columns == [Column("a", "int64"), Column("b", "string")]
    error = refused(CsvValidator(), body + b"1,2,3\r\n")
    # One line a row, and an empty line after every 5,000th row.
    assert error.details == {"line": 1 + 25_000 + 5 + 1, "row": 25_000}
    assert error.message.startswith(f"line {1 + 25_000 + 5 + 1} has 3 fields")


def test_csv_dtypes_merge_across_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataset_formats, "BLOCK_BYTES", 64)
    body = b"n,s\n" + b"1,1\n" * 40 + b"2.5,x\n"
    layout = check(CsvValidator(), body, chunk=16)
    assert layout.columns == [Column("n", "float64"), Column("s", "string")]
    assert layout.rows == 41


def test_merge_dtypes() -> None:
    assert merge_dtypes("null", "int64") == "int64"
    assert merge_dtypes("int64", "float64") == "float64"
    assert merge_dtypes("bool", "int64") == "string"


# -- JSON Lines.

def test_jsonl_union_of_keys_and_mixed_types() -> None:
    data = b'{"a": 1, "b": "x"}\n\n{"a": 2.5, "c": true}\n{"a": 3, "b": 7}\n'
    layout = check(JsonlValidator(), data)
    assert layout.rows == 3
    assert layout.columns == [Column("a", "float64"), Column("b", "string"),
                              Column("c", "bool")]


@pytest.mark.parametrize(("data", "line", "words"), [
    (b"", None, "empty"),
    (b'{"a": 1}\n{"a": \n', 2, "line 2 is not valid JSON"),
    (b'{"a": 1}\n[1, 2]\n', 2, "line 2 is an array, not a JSON object"),
    (b'{"a": 1}\n3\n', 2, "line 2 is a int"),
    (b"a,b\n1,2\n", 1, "line 1 is not valid JSON"),
    (b'{"row": 1}\n', None, "'row'"),
])
def test_jsonl_refusals_name_the_line(data: bytes, line: int | None, words: str) -> None:
    error = refused(JsonlValidator(), data)
    assert words in error.message
    assert error.details.get("line") == line


# -- Parquet.

def parquet_bytes(table: pa.Table, row_group_size: int) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=row_group_size)
    return out.getvalue()


def test_parquet_layout_and_refusals() -> None:
    table = pa.table({"x": [1.0, 2.0, 3.0], "name": ["a", "b", "c"]})
    layout = validate_parquet(io.BytesIO(parquet_bytes(table, 2)))
    assert layout.rows == 3
    assert layout.columns == [Column("x", "float64"), Column("name", "string")]
    with pytest.raises(DatasetError, match="not a readable Parquet file"):
        validate_parquet(io.BytesIO(b"a,b\n1,2\n"))
    with pytest.raises(DatasetError, match="no rows"):
        validate_parquet(io.BytesIO(parquet_bytes(table.slice(0, 0), 2)))


# -- Records and read_rows.

ROWS = 25_123


def sample_rows() -> list[dict[str, object]]:
    return [{"id": i, "x": i * 0.5, "label": f"r{i}" if i % 7 else "multi\nline, \"quoted\""}
            for i in range(ROWS)]


def stored(storage: Storage, fmt: str) -> Dataset:
    """The sample rows written in ``fmt`` and checked as an upload would be."""
    rows = sample_rows()
    if fmt == "csv":
        out = io.StringIO(newline="")
        writer = csv.DictWriter(out, fieldnames=["id", "x", "label"], lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
        data = out.getvalue().encode()
    elif fmt == "jsonl":
        data = b"".join(orjson.dumps(r) + b"\n" for r in rows)
    else:
        data = parquet_bytes(pa.Table.from_pylist(rows), 4_000)
    dataset_id = new_dataset_id()
    key = dataset_key(dataset_id, fmt)
    storage.put(key, data)
    if fmt == "parquet":
        with storage.open(key) as file:
            layout = validate_parquet(file)
    else:
        validator = CsvValidator() if fmt == "csv" else JsonlValidator()
        layout = check(validator, data, chunk=5_000)
    return Dataset.create(dataset_id, "sample", fmt, layout, len(data),
                          hashlib.sha256(data).hexdigest(), 1_700_000_000.5)


@pytest.mark.parametrize("block", [4096, dataset_formats.BLOCK_BYTES])
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_read_rows_equals_the_file(tmp_path: Path, fmt: str, block: int,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Also with small blocks, whose ends fall inside quoted fields that hold line breaks."""
    monkeypatch.setattr(dataset_formats, "BLOCK_BYTES", block)
    storage = Storage.from_url(str(tmp_path))
    dataset = stored(storage, fmt)
    assert dataset.rows == ROWS
    if fmt != "parquet":
        assert [r for r, _ in dataset.index] == list(range(0, ROWS, INDEX_ROWS))
    expected = sample_rows()
    start, stop = INDEX_ROWS - 3, 2 * INDEX_ROWS + 5
    table = read_rows(storage, dataset, start, stop)
    assert table.column_names == ["row", "id", "x", "label"]
    assert table.to_pylist() == [{"row": i, **expected[i]} for i in range(start, stop)]
    tail = read_rows(storage, dataset, ROWS - 2, ROWS + 10, columns=["label", "id"])
    assert tail.to_pylist() == [{"row": i, "label": expected[i]["label"], "id": i}
                                for i in (ROWS - 2, ROWS - 1)]
    assert read_rows(storage, dataset, ROWS, ROWS + 1).num_rows == 0
    with pytest.raises(ValueError, match="no column 'nope'"):
        read_rows(storage, dataset, 0, 1, columns=["nope"])


def test_records_in_redis(redis_server) -> None:  # type: ignore[no-untyped-def]
    layout = Layout(3, [Column("a", "int64")], [[0, 2]])

    async def scenario() -> None:
        client = aioredis.Redis(port=redis_server.port)
        first = Dataset.create(new_dataset_id(), "one", "csv", layout, 10, "ab", 100.0)
        second = Dataset.create(new_dataset_id(), "two", "csv", layout, 10, "cd", 200.0)
        theirs = Dataset.create(new_dataset_id(), "three", "csv", layout, 10, "ef", 300.0,
                                "acme")
        for dataset in (first, second, theirs):
            await save_dataset(client, dataset)
        assert await get_dataset(client, first.dataset_id, "default") == first
        assert load_dataset(redis_server.client(), second.dataset_id) == second
        listed = [d.dataset_id for d in await list_datasets(client, 100, "default")]
        assert listed.index(second.dataset_id) < listed.index(first.dataset_id)
        assert theirs.dataset_id not in listed
        # Another tenant's dataset is none of the default tenant's, and the other way round.
        assert await get_dataset(client, theirs.dataset_id, "default") is None
        assert await get_dataset(client, first.dataset_id, "acme") is None
        assert await get_dataset(client, theirs.dataset_id, "acme") == theirs
        assert [d.dataset_id for d in await list_datasets(client, 100, "acme")] == [
            theirs.dataset_id]
        assert await delete_dataset(client, first)
        assert not await delete_dataset(client, first)
        assert await get_dataset(client, first.dataset_id, "default") is None
        await client.aclose()

    asyncio.run(scenario())
    public = Dataset.create("d1", "n", "csv", layout, 10, "ab", 0.25).to_public()
    assert public["created_at"] == "1970-01-01T00:00:00.250Z"
    assert public["columns"] == [{"name": "a", "dtype": "int64"}]
    assert set(public) == {"dataset_id", "name", "format", "rows", "columns", "bytes",
                           "sha256", "created_at"}


def test_jsonl_rows_read_back_in_their_column_types(tmp_path: Path) -> None:
    storage = Storage.from_url(str(tmp_path))
    data = b'{"a": 1, "b": "x", "d": {"k": [1]}}\n{"a": 2.5, "c": true}\n{"a": 3, "b": 7}\n'
    layout = check(JsonlValidator(), data)
    dataset = Dataset.create("j1", "mixed", "jsonl", layout, len(data), "", 0.0)
    storage.put(dataset.key, data)
    assert read_rows(storage, dataset, 0, 3).to_pylist() == [
        {"row": 0, "a": 1.0, "b": "x", "d": '{"k":[1]}', "c": None},
        {"row": 1, "a": 2.5, "b": None, "d": None, "c": True},
        {"row": 2, "a": 3.0, "b": "7", "d": None, "c": None},
    ]
