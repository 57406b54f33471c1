"""Datasets: their records in Redis, and reading a range of their rows from storage.

A dataset is an uploaded file (CSV, JSON Lines or Parquet) in storage under
``dataset_key(id, format)`` and a record, the hash ``keys.dataset_record_key(id)``, listed in
the sorted set ``keys.datasets_index(tenant)`` by creation time. Records do not expire: a dataset
lives until it is deleted. Row data never goes through Redis.

The upload checked the file (``services.common.dataset_formats``), so every stored dataset
parses, and its record holds what reading needs: the columns with their dtypes, and for
text formats the byte offset of every ``INDEX_ROWS``-th row.
"""

from __future__ import annotations

import bisect
import io
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import redis
import redis.asyncio as aioredis

from services.common.dataset_formats import (
    ARROW_TYPES,
    CSV_CONVERT,
    INDEX_ROWS,
    ROW_COLUMN,
    Column,
    DatasetError,
    Layout,
)
from services.common.keys import dataset_record_key, datasets_index
from services.common.records import decoded
from services.common.tenants import DEFAULT_TENANT

if TYPE_CHECKING:
    from services.common.storage import Storage

__all__ = [
    "FORMATS",
    "INDEX_ROWS",
    "ROW_COLUMN",
    "Column",
    "Dataset",
    "DatasetError",
    "dataset_key",
    "delete_dataset",
    "get_dataset",
    "list_datasets",
    "load_dataset",
    "new_dataset_id",
    "read_rows",
    "save_dataset",
]

#: Each format's file extension in storage.
FORMATS: dict[str, str] = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}


def dataset_key(dataset_id: str, fmt: str) -> str:
    """Where the file of dataset ``dataset_id`` lives in storage."""
    return f"datasets/{dataset_id}/data.{FORMATS[fmt]}"


def new_dataset_id() -> str:
    """An id nobody can guess: 128 random bits."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Dataset:
    dataset_id: str
    name: str
    format: str
    rows: int
    columns: list[Column]
    bytes: int
    sha256: str
    created_at: float
    #: The storage key of the file.
    key: str
    #: ``[row, byte_offset]`` every ``INDEX_ROWS`` rows (csv, jsonl); empty for parquet.
    index: list[list[int]]
    #: Whose dataset it is: only its tenant's jobs use it.
    tenant: str = DEFAULT_TENANT

    @classmethod
    def create(cls, dataset_id: str, name: str, fmt: str, layout: Layout, size: int,
               sha256: str, created_at: float, tenant: str = DEFAULT_TENANT) -> Dataset:
        return cls(dataset_id, name, fmt, layout.rows, layout.columns, size, sha256,
                   created_at, dataset_key(dataset_id, fmt), layout.index, tenant)

    def to_public(self) -> dict[str, Any]:
        """The dataset as the REST API shows it."""
        moment = datetime.fromtimestamp(self.created_at, UTC)
        return {
            "dataset_id": self.dataset_id,
            "name": self.name,
            "format": self.format,
            "rows": self.rows,
            "columns": [asdict(c) for c in self.columns],
            "bytes": self.bytes,
            "sha256": self.sha256,
            "created_at": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }

    def to_record(self) -> dict[Any, Any]:
        return {
            "dataset_id": self.dataset_id,
            "name": self.name,
            "format": self.format,
            "rows": str(self.rows),
            "columns": orjson.dumps([asdict(c) for c in self.columns]).decode(),
            "bytes": str(self.bytes),
            "sha256": self.sha256,
            "created_at": repr(self.created_at),
            "key": self.key,
            "index": orjson.dumps(self.index).decode(),
            "tenant": self.tenant,
        }

    @classmethod
    def from_record(cls, raw: dict[Any, Any]) -> Dataset:
        record = {decoded(k): decoded(v) for k, v in raw.items()}
        return cls(
            dataset_id=record["dataset_id"],
            name=record["name"],
            format=record["format"],
            rows=int(record["rows"]),
            columns=[Column(**c) for c in orjson.loads(record["columns"])],
            bytes=int(record["bytes"]),
            sha256=record["sha256"],
            created_at=float(record["created_at"]),
            key=record["key"],
            index=orjson.loads(record["index"]),
            tenant=record.get("tenant") or DEFAULT_TENANT,
        )


async def save_dataset(client: aioredis.Redis, dataset: Dataset) -> None:
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset(dataset_record_key(dataset.dataset_id), mapping=dataset.to_record())
        pipe.zadd(datasets_index(dataset.tenant), {dataset.dataset_id: dataset.created_at})
        await pipe.execute()


async def get_dataset(client: aioredis.Redis, dataset_id: str, tenant: str) -> Dataset | None:
    """``tenant``'s dataset; None when there is none, or it is another tenant's."""
    raw = await client.hgetall(dataset_record_key(dataset_id))
    dataset = Dataset.from_record(raw) if raw else None
    return dataset if dataset is not None and dataset.tenant == tenant else None


def load_dataset(client: redis.Redis, dataset_id: str) -> Dataset | None:
    """``get_dataset`` for synchronous callers (workers)."""
    raw: Any = client.hgetall(dataset_record_key(dataset_id))
    return Dataset.from_record(raw) if raw else None


async def list_datasets(client: aioredis.Redis, limit: int, tenant: str) -> list[Dataset]:
    """``tenant``'s newest ``limit`` datasets, newest first."""
    ids: Any = await client.zrevrange(datasets_index(tenant), 0, limit - 1)
    async with client.pipeline(transaction=False) as pipe:
        for dataset_id in ids:
            pipe.hgetall(dataset_record_key(decoded(dataset_id)))
        found = await pipe.execute()
    listed = (Dataset.from_record(raw) for raw in found if raw)
    return [dataset for dataset in listed if dataset.tenant == tenant]


async def delete_dataset(client: aioredis.Redis, dataset: Dataset) -> bool:
    """Remove the record; False when there was none. The caller deletes the file."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.delete(dataset_record_key(dataset.dataset_id))
        pipe.zrem(datasets_index(dataset.tenant), dataset.dataset_id)
        deleted, _ = await pipe.execute()
    return bool(deleted)


def read_rows(storage: Storage, dataset: Dataset, start: int, stop: int,
              columns: list[str] | None = None) -> pa.Table:
    """Rows ``[start, stop)`` of the dataset (0-based; ``stop`` past the end reads to the
    end), led by a ``row`` int64 column holding each row's index in the dataset.

    Only what holds those rows is read: for CSV and JSON Lines the byte range between the
    index entries around them, for Parquet the row groups they fall in. ``columns`` picks
    and orders the columns after ``row`` (all by default).
    """
    if start < 0 or stop < start:
        raise ValueError(f"rows [{start}, {stop}) is not a range of rows")
    stop = min(stop, dataset.rows)
    start = min(start, stop)
    names = [c.name for c in dataset.columns] if columns is None else list(columns)
    unknown = set(names) - {c.name for c in dataset.columns}
    if unknown:
        raise ValueError(f"dataset {dataset.dataset_id} has no column {sorted(unknown)[0]!r}")
    if dataset.format == "parquet":
        first, table = _parquet_rows(storage, dataset, start, stop, names)
    else:
        first, data = _text_range(storage, dataset, start, stop)
        table = (_csv_table if dataset.format == "csv" else _jsonl_table)(dataset, data, names)
    table = table.slice(start - first, stop - start).select(names)
    return table.add_column(0, ROW_COLUMN, pa.array(np.arange(start, stop, dtype=np.int64)))


def _text_range(storage: Storage, dataset: Dataset, start: int, stop: int) -> tuple[int, bytes]:
    """The first row of the indexed block holding ``start``, and the bytes from it to the
    indexed block boundary at or after ``stop``."""
    rows = [row for row, _ in dataset.index]
    first_entry = max(bisect.bisect_right(rows, start) - 1, 0)
    end_entry = bisect.bisect_left(rows, stop)
    first, low = dataset.index[first_entry]
    high = dataset.index[end_entry][1] if end_entry < len(rows) else dataset.bytes
    return first, storage.get_range(dataset.key, low, high)


def _csv_table(dataset: Dataset, data: bytes, names: list[str]) -> pa.Table:
    all_names = [c.name for c in dataset.columns]
    return pa_csv.read_csv(
        io.BytesIO(data),
        read_options=pa_csv.ReadOptions(column_names=all_names),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types={c.name: ARROW_TYPES[c.dtype] for c in dataset.columns},
            include_columns=names,
            strings_can_be_null=CSV_CONVERT.strings_can_be_null,
        ),
    )


def _jsonl_table(dataset: Dataset, data: bytes, names: list[str]) -> pa.Table:
    objects = [orjson.loads(line) for line in data.split(b"\n") if line and not line.isspace()]
    dtypes = {c.name: c.dtype for c in dataset.columns}
    arrays = []
    for name in names:
        values = [obj.get(name) for obj in objects]
        if dtypes[name] == "string":
            values = [v if v is None or type(v) is str else orjson.dumps(v).decode()
                      for v in values]
        arrays.append(pa.array(values, type=ARROW_TYPES[dtypes[name]]))
    return pa.table(arrays, names=names)


def _parquet_rows(storage: Storage, dataset: Dataset, start: int, stop: int,
                  names: list[str]) -> tuple[int, pa.Table]:
    with storage.open(dataset.key) as file:
        parquet = pq.ParquetFile(file)
        groups: list[int] = []
        first = row = 0
        for group in range(parquet.metadata.num_row_groups):
            size = parquet.metadata.row_group(group).num_rows
            if row + size > start and (row < stop or not groups):
                if not groups:
                    first = row
                groups.append(group)
            row += size
        if not groups:
            return start, parquet.schema_arrow.empty_table().select(names)
        return first, parquet.read_row_groups(groups, columns=names)
