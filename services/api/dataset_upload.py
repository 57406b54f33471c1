"""Receiving a dataset: the request body streamed to storage while it is counted, hashed and
checked, never held whole in memory.

CSV and JSON Lines are checked as they stream (``services.common.dataset_formats``): a bad
line stops the upload at once. Parquet keeps its schema in a footer at the end, so its file
is written first and then read back by ranges; a file that fails is deleted. Whatever goes
wrong (a refused file, the size limit, a client that disconnects halfway, a store or Redis
that fails) leaves no record and nothing in storage.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator

from fastapi import Request
from starlette.requests import ClientDisconnect

from services.api.deps import ApiState
from services.api.errors import (
    InvalidDataset,
    PayloadTooLarge,
    StorageUnavailable,
    UnsupportedMediaType,
)
from services.api.principal import principal_of
from services.common.dataset_formats import (
    PARQUET_MAGIC,
    VALIDATORS,
    DatasetError,
    Layout,
    validate_parquet,
)
from services.common.datasets import (
    Dataset,
    dataset_key,
    get_dataset,
    new_dataset_id,
    save_dataset,
)
from services.common.datasets import delete_dataset as delete_record
from services.common.media import DATASET_MEDIA_TYPES
from services.common.storage import Storage, StorageError, storage_from_settings

log = logging.getLogger(__name__)

#: The media types an upload may declare, to the format each names.
MEDIA_TYPES: dict[str, str] = {media: fmt for fmt, media in DATASET_MEDIA_TYPES.items()}

#: Bytes gathered from the request before they are hashed, checked and written together:
#: one thread hop and one storage write a mebibyte, not one per network read.
BATCH_BYTES = 1 << 20


def dataset_store(state: ApiState) -> Storage:
    """The API's store, opened now if it could not be at start; 503 while it cannot."""
    if state.storage is None:
        try:
            state.storage = storage_from_settings(state.settings)
        except (StorageError, ValueError) as exc:
            raise StorageUnavailable(
                f"the dataset store cannot be used ({exc}); check INFERQ_STORAGE_URL") from None
    return state.storage


def upload_format(request: Request) -> str:
    """The format the request's ``Content-Type`` names, or a 415 listing those taken."""
    declared = request.headers.get("content-type", "")
    media = declared.split(";", 1)[0].strip().lower()
    if media not in MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {declared or '(none)'!r} is not a dataset type; send "
            f"{', '.join(MEDIA_TYPES)}",
            {"content_type": declared, "supported": list(MEDIA_TYPES)})
    return MEDIA_TYPES[media]


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the file exceeds the limit of {limit} bytes per dataset (INFERQ_MAX_DATASET_BYTES)",
        {"max_bytes": limit})


class Ingest:
    """One upload's bytes on their way to storage: counted, hashed and checked."""

    def __init__(self, fmt: str, limit: int) -> None:
        self.format = fmt
        self.limit = limit
        self.size = 0
        self._sha256 = hashlib.sha256()
        self._validator = VALIDATORS[fmt]() if fmt in VALIDATORS else None

    def count(self, data: bytes) -> None:
        """Count ``data`` in; a 413 once the file is over the limit."""
        if self.size == 0 and self.format == "parquet" and not data.startswith(PARQUET_MAGIC):
            raise DatasetError("the body is not a Parquet file: it does not start with PAR1")
        self.size += len(data)
        if self.size > self.limit:
            raise too_large(self.limit)

    def take(self, data: bytes) -> None:
        """Hash and check ``data``; CPU work, run off the event loop."""
        self._sha256.update(data)
        if self._validator is not None:
            self._validator.feed(data)

    def finish(self) -> Layout | None:
        """The text file's layout; None for Parquet, which is read back once written."""
        if self.size == 0:
            raise DatasetError("the file is empty")
        return self._validator.finish() if self._validator is not None else None

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()


async def batched(chunks: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    pending = bytearray()
    async for chunk in chunks:
        pending += chunk
        if len(pending) >= size:
            yield bytes(pending)
            pending.clear()
    if pending:
        yield bytes(pending)


async def receive_dataset(request: Request, state: ApiState, name: str) -> Dataset:
    """Store the request's body as a new dataset named ``name`` and record it."""
    fmt = upload_format(request)
    storage = dataset_store(state)
    limit = state.settings.max_dataset_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    started = time.perf_counter()
    dataset_id = new_dataset_id()
    key = dataset_key(dataset_id, fmt)
    ingest = Ingest(fmt, limit)
    try:
        async with storage.awriter(key) as out:
            async for data in batched(request.stream(), BATCH_BYTES):
                ingest.count(data)
                await asyncio.to_thread(ingest.take, data)
                await out.write(data)
            layout = await asyncio.to_thread(ingest.finish)
        if layout is None:
            layout = await asyncio.to_thread(_check_parquet, storage, key)
    except DatasetError as exc:
        raise InvalidDataset(exc.message, {**exc.details, "format": fmt}) from None
    except StorageError as exc:
        log.warning("dataset upload failed in storage", extra={"error": str(exc)})
        raise StorageUnavailable("the dataset store failed; retry in a moment") from None
    except ClientDisconnect:
        log.info("dataset upload cut off by the client",
                 extra={"dataset_id": dataset_id, "received_bytes": ingest.size})
        raise
    dataset = Dataset.create(dataset_id, name, fmt, layout, ingest.size, ingest.sha256,
                             time.time(), principal_of(request).tenant)
    try:
        await save_dataset(state.redis, dataset)
    except BaseException:
        await asyncio.to_thread(storage.delete, key)
        raise
    log.info("dataset uploaded", extra={
        "dataset_id": dataset_id, "format": fmt, "rows": layout.rows, "bytes": ingest.size,
        "seconds": round(time.perf_counter() - started, 3)})
    return dataset


def _check_parquet(storage: Storage, key: str) -> Layout:
    """The written Parquet file's layout; the file is deleted when it is not readable."""
    try:
        with storage.open(key) as file:
            return validate_parquet(file)
    except BaseException:
        storage.delete(key)
        raise


async def remove_dataset(state: ApiState, dataset_id: str, tenant: str) -> bool:
    """Delete ``tenant``'s dataset's record, then its file; False when it has no such
    dataset (another tenant's is none of its)."""
    dataset = await get_dataset(state.redis, dataset_id, tenant)
    if dataset is None:
        return False
    storage = dataset_store(state)
    if not await delete_record(state.redis, dataset):
        return False
    try:
        await asyncio.to_thread(storage.delete, dataset.key)
    except StorageError as exc:
        log.warning("dataset file left behind", extra={"key": dataset.key, "error": str(exc)})
    return True
