"""Where a batch job's outputs live in storage, and what their columns are.

Each chunk writes ``jobs/<id>/parts/<chunk>.<ext>`` (rows in input order, no
header) and, when it rejected rows, ``jobs/<id>/errors/<chunk>.jsonl``. A csv or jsonl
result is the parts streamed in chunk order (a csv's header first); a parquet result is
one file, ``jobs/<id>/results.parquet``, assembled from the parts when the last chunk is
counted, before the job is marked succeeded.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from services.common.dataset_formats import ROW_COLUMN
from services.common.media import DATASET_MEDIA_TYPES

#: An output file travels as a dataset file of its format does.
MEDIA_TYPES = DATASET_MEDIA_TYPES
#: The columns every output has, around the id and passthrough columns (and ``row``, the
#: row's index in the dataset, first).
PREDICTION_COLUMN = "prediction"
PROBABILITY_PREFIX = "probability_"


def output_columns(id_column: str | None, passthrough: Sequence[str],
                   classes: Sequence[Any] | None, probabilities: bool) -> list[str]:
    """The columns of a job's output, in order."""
    columns = [ROW_COLUMN]
    if id_column:
        columns.append(id_column)
    columns += [c for c in passthrough if c != id_column]
    columns.append(PREDICTION_COLUMN)
    if probabilities and classes:
        columns += [f"{PROBABILITY_PREFIX}{c}" for c in classes]
    return columns


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"


def part_key(job_id: str, chunk: int, fmt: str) -> str:
    return f"{job_prefix(job_id)}parts/{chunk:06d}.{fmt}"


def errors_prefix(job_id: str) -> str:
    return f"{job_prefix(job_id)}errors/"


def errors_key(job_id: str, chunk: int) -> str:
    return f"{errors_prefix(job_id)}{chunk:06d}.jsonl"


def result_key(job_id: str) -> str:
    """The assembled output of a parquet job."""
    return f"{job_prefix(job_id)}results.parquet"


def csv_header(columns: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(columns)
    return buffer.getvalue().encode()
