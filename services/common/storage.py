"""Object storage for datasets, job outputs and models: a local directory or an S3 bucket.

One small interface over obstore. Keys are relative and "/"-separated
(``datasets/<id>/data.csv``); a store is named by a URL: a directory (``/abs/dir``,
``relative/dir``, ``file:///dir``) or ``s3://bucket/prefix``, whose endpoint, credentials
and region come from the standard AWS variables (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``) or the pod's identity.

Writes are all or nothing: ``put`` replaces an object whole, and a ``writer`` block that
raises leaves nothing at its key (the multipart upload is aborted; on a directory, the
staging file is removed).
"""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import AlreadyExistsError, BaseError
from obstore.store import LocalStore, S3Store

if TYPE_CHECKING:
    from obstore import AsyncWritableFile, ReadableFile, WritableFile

    from services.common.settings import Settings

_File = TypeVar("_File")

# Bytes a writer holds before it sends a part; S3 wants parts of at least 5 MiB.
PART_SIZE = 8 * 1024 * 1024


class StorageError(Exception):
    """The store could not do what was asked: unreachable, denied, misconfigured."""


class NotFound(StorageError):
    """No object at the key."""


class AlreadyExists(StorageError):
    """An object is at the key already, and the write was to create it."""


@contextmanager
def _errors(key: str) -> Iterator[None]:
    """obstore's errors as ours, naming the key."""
    try:
        yield
    except FileNotFoundError as exc:
        raise NotFound(f"no object at {key!r}") from exc
    except AlreadyExistsError as exc:
        raise AlreadyExists(f"an object is at {key!r} already") from exc
    except (BaseError, OSError) as exc:
        raise StorageError(f"storage failed on {key!r}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_key(key: str) -> str:
    """A key is relative, "/"-separated, without empty, "." or ".." parts."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid storage key {key!r}: use relative, '/'-separated names")
    return key


def _check_prefix(prefix: str) -> str | None:
    prefix = prefix.strip("/")
    return check_key(prefix) if prefix else None


class Writer:
    """Bytes written to one key; they become visible when the ``writer`` block ends cleanly."""

    def __init__(self, file: WritableFile, key: str) -> None:
        self._file = file
        self._key = key
        self.bytes_written = 0

    def write(self, data: bytes) -> None:
        with _errors(self._key):
            self._file.write(data)
        self.bytes_written += len(data)


class AsyncWriter:
    """The asynchronous ``Writer`` of ``awriter``."""

    def __init__(self, file: AsyncWritableFile, key: str) -> None:
        self._file = file
        self._key = key
        self.bytes_written = 0

    async def write(self, data: bytes) -> None:
        with _errors(self._key):
            await self._file.write(data)
        self.bytes_written += len(data)


class _ObjectFile(io.RawIOBase):
    """A seekable, read-only file over one object, for readers such as pyarrow."""

    def __init__(self, reader: ReadableFile, key: str) -> None:
        self._reader = reader
        self._key = key

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        with _errors(self._key):
            return bytes(self._reader.read(None if size is None or size < 0 else size))

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        with _errors(self._key):
            return self._reader.seek(offset, whence)

    def tell(self) -> int:
        return self._reader.tell()

    def size(self) -> int:
        return self._reader.size

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
        super().close()


class Storage:
    """Objects under one URL. Safe to share between threads."""

    def __init__(self, url: str, store: LocalStore | S3Store, part_size: int = PART_SIZE) -> None:
        self.url = url
        self._store = store
        self.part_size = part_size

    @classmethod
    def from_url(cls, url: str, *, part_size: int = PART_SIZE) -> Storage:
        """A directory (created when missing) or ``s3://bucket/prefix``."""
        parts = urlsplit(url)
        if parts.scheme == "s3":
            return cls._s3(parts.netloc, parts.path.strip("/"), part_size)
        if parts.scheme == "file":
            path = Path(parts.path)
        elif parts.scheme == "":
            path = Path(url).expanduser()
        else:
            raise ValueError(f"storage URL {url!r}: use a directory or s3://bucket/prefix")
        path = path.absolute()
        try:
            path.mkdir(parents=True, exist_ok=True)
            store = LocalStore(path, automatic_cleanup=True)
        except (BaseError, OSError) as exc:
            raise StorageError(f"cannot use {path} as storage: {_first_line(exc)}") from exc
        return cls(str(path), store, part_size)

    @classmethod
    def _s3(cls, bucket: str, prefix: str, part_size: int) -> Storage:
        if not bucket:
            raise ValueError("storage URL s3://...: name a bucket, as s3://bucket/prefix")
        if prefix:
            check_key(prefix)
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        # Credentials, region and endpoint are read from the environment by obstore
        # (or the instance's or pod's identity when no keys are set).
        plain_http = bool(endpoint and endpoint.startswith("http:"))
        try:
            store = S3Store(bucket, prefix=prefix or None,
                            client_options={"allow_http": True} if plain_http else None)
        except (BaseError, ValueError) as exc:
            raise StorageError(f"cannot use s3://{bucket}: {_first_line(exc)}") from exc
        url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        return cls(url, store, part_size)

    def __repr__(self) -> str:
        return f"Storage({self.url!r})"

    def within(self, prefix: str) -> Storage:
        """The objects under ``prefix`` of this store, as a store of their own (its keys
        relative to ``prefix``)."""
        return Storage.from_url(f"{self.url.rstrip('/')}/{check_key(prefix.strip('/'))}",
                                part_size=self.part_size)

    # -- Writing.

    @contextmanager
    def writer(self, key: str) -> Iterator[Writer]:
        """Stream an object in; it appears at ``key`` only when the block ends cleanly."""
        file = self._open_writer(key, obstore.open_writer)
        try:
            yield Writer(file, key)
        except BaseException as exc:
            # The file's own exit with the exception aborts the upload.
            file.__exit__(type(exc), exc, exc.__traceback__)
            raise
        with _errors(key):
            file.close()

    @asynccontextmanager
    async def awriter(self, key: str) -> AsyncIterator[AsyncWriter]:
        """``writer`` for coroutines."""
        file = self._open_writer(key, obstore.open_writer_async)
        try:
            yield AsyncWriter(file, key)
        except BaseException as exc:
            await file.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        with _errors(key):
            await file.close()

    def _open_writer(self, key: str, opener: Callable[..., _File]) -> _File:
        """``opener`` (obstore's sync or async ``open_writer``) on a checked ``key``."""
        with _errors(check_key(key)):
            return opener(self._store, key, buffer_size=self.part_size)

    def put(self, key: str, data: bytes, *, create: bool = False) -> None:
        """Write a whole object at once, replacing any there; with ``create``, raise
        AlreadyExists instead when one is there (a conditional write: one writer wins)."""
        with _errors(check_key(key)):
            obstore.put(self._store, key, data, mode="create" if create else "overwrite")

    # -- Reading.

    def get(self, key: str) -> bytes:
        with _errors(check_key(key)):
            return bytes(obstore.get(self._store, key).bytes())

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``, cut at the end of the object like a slice."""
        check_key(key)
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range [{start}, {end})")
        if start == end:
            return b""
        try:
            with _errors(key):
                return bytes(obstore.get_range(self._store, key, start=start, end=end))
        except StorageError as exc:
            if isinstance(exc, NotFound) or start < self.size(key):
                raise
            return b""

    def open(self, key: str) -> BinaryIO:
        """A seekable file reading the object in ranges (parquet footers, row groups)."""
        with _errors(check_key(key)):
            reader = obstore.open_reader(self._store, key, buffer_size=1024 * 1024)
        return cast(BinaryIO, _ObjectFile(reader, key))

    async def astream(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The object's bytes in chunks of about ``chunk_size``; NotFound before the first."""
        with _errors(check_key(key)):
            result = await obstore.get_async(self._store, key)
            async for chunk in result.stream(min_chunk_size=chunk_size):
                yield bytes(chunk)

    def size(self, key: str) -> int:
        with _errors(check_key(key)):
            return int(obstore.head(self._store, key)["size"])

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except NotFound:
            return False
        return True

    def list(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix`` (whole path segments: "a/b" holds "a/b/c", not "a/bc"), sorted."""
        where = _check_prefix(prefix)
        with _errors(prefix):
            return sorted(
                meta["path"] for chunk in obstore.list(self._store, where) for meta in chunk
            )

    # -- Deleting.

    def delete(self, key: str) -> None:
        """Remove the object; a missing one is no error."""
        try:
            with _errors(check_key(key)):
                obstore.delete(self._store, key)
        except NotFound:
            pass

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under ``prefix``; how many there were."""
        if _check_prefix(prefix) is None:
            raise ValueError("delete_prefix needs a prefix; it never empties the whole store")
        keys = self.list(prefix)
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            try:
                with _errors(prefix):
                    obstore.delete(self._store, batch)
            except NotFound:
                for key in batch:
                    self.delete(key)
        return len(keys)


def storage_from_settings(settings: Settings) -> Storage:
    """The store of ``INFERQ_STORAGE_URL``."""
    return Storage.from_url(settings.storage_url)
