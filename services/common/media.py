"""The media types dataset files travel as: the API reads the format from ``Content-Type``,
the CLI sends the one of its file's format. Light on purpose: the CLI imports it at start."""

from __future__ import annotations

#: Each dataset format, to the media type of its files.
DATASET_MEDIA_TYPES: dict[str, str] = {
    "csv": "text/csv",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
