"""Datasets for tests: stored as an upload stores them, from bytes made in the test."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time

import redis.asyncio as aioredis

from services.common.dataset_formats import CsvValidator, JsonlValidator, validate_parquet
from services.common.datasets import Dataset, new_dataset_id, save_dataset
from services.common.storage import Storage


def put_dataset(redis_url: str, storage: Storage, data: bytes, fmt: str,
                name: str = "test") -> Dataset:
    """Check ``data`` as an upload of ``fmt`` and store its file and record."""
    if fmt == "parquet":
        layout = validate_parquet(io.BytesIO(data))
    else:
        validator = CsvValidator() if fmt == "csv" else JsonlValidator()
        validator.feed(data)
        layout = validator.finish()
    dataset = Dataset.create(new_dataset_id(), name, fmt, layout, len(data),
                             hashlib.sha256(data).hexdigest(), time.time())
    storage.put(dataset.key, data)

    async def save() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await save_dataset(client, dataset)
        finally:
            await client.aclose()

    asyncio.run(save())
    return dataset
