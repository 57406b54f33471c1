"""Checking an uploaded file as it streams in: CSV and JSON Lines chunk by chunk, Parquet by
its footer and row groups once written.

A validator learns what ``read_rows`` needs later: the row count, the columns and their
dtypes, and for text formats the byte offset of every ``INDEX_ROWS``-th row, so a range of
rows is read from its byte range alone. A file it refuses raises ``DatasetError`` naming
the line (text formats, 1-based, as an editor counts them) and the row (0-based, as the
dataset counts them, not counting a CSV header).

The formats, as inferq reads them:

- CSV: RFC 4180 with a header row of unique, non-empty column names; every row has as
  many fields as the header; a quoted field may hold commas, quotes (doubled) and line
  breaks; an empty field is null; empty lines are skipped.
- JSON Lines: one JSON object a line; blank lines are skipped. The columns are the union of
  the keys of all lines, in the order they first appear; a line without a key has null
  there. Values of one key may differ in type: numbers and integers make a float64 column,
  other mixes a string column (non-strings as their JSON text).
- Parquet: any file pyarrow reads.

Column dtypes: ``int64``, ``float64``, ``bool``, ``string``, ``null`` (nothing but nulls),
and for Parquet whatever else its schema holds (e.g. ``timestamp[us]``). A column named
``row`` is refused: rows read back carry their index under that name.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

#: Every this many rows, the byte offset where the row starts is kept in the dataset's index.
INDEX_ROWS = 10_000

#: What a text block collects before it is checked: large enough that pyarrow's type
#: inference is cheap per row, small enough to keep an upload's memory flat.
BLOCK_BYTES = 1 << 20

#: A CSV record or JSON line longer than this is refused rather than held in memory.
MAX_RECORD_BYTES = 64 << 20

#: The name of the column ``read_rows`` adds: each row's 0-based index in the dataset.
ROW_COLUMN = "row"

PARQUET_MAGIC = b"PAR1"

#: What an empty CSV field and the null-like words pyarrow knows read as; the same at
#: upload and at read time.
CSV_CONVERT = pa_csv.ConvertOptions(strings_can_be_null=False)

_PLAIN_TYPES = {pa.int64(): "int64", pa.float64(): "float64", pa.bool_(): "bool",
                pa.string(): "string", pa.null(): "null"}
_PYTHON_TYPES = {bool: "bool", int: "int64", float: "float64", str: "string",
                 type(None): "null"}
ARROW_TYPES = {name: arrow for arrow, name in _PLAIN_TYPES.items()}


class DatasetError(ValueError):
    """A file that is not a readable dataset of its format; ``details`` says where."""

    def __init__(self, message: str, **where: int) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = where


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str


@dataclass(frozen=True)
class Layout:
    """What a validated file holds."""

    rows: int
    columns: list[Column]
    #: ``[row, byte_offset]`` every ``INDEX_ROWS`` rows from row 0 (text formats).
    index: list[list[int]]


def merge_dtypes(a: str, b: str) -> str:
    """The dtype of a column whose values were ``a`` in one part and ``b`` in another."""
    if a == b or b == "null":
        return a
    if a == "null":
        return b
    if {a, b} == {"int64", "float64"}:
        return "float64"
    return "string"


def _plain_dtype(arrow_type: pa.DataType) -> str:
    return _PLAIN_TYPES.get(arrow_type, "string")


def arrow_dtype(arrow_type: pa.DataType) -> str:
    """A Parquet column's dtype as a dataset lists it."""
    if arrow_type == pa.float64():
        return "float64"
    if arrow_type in (pa.large_string(), pa.string_view()):
        return "string"
    return str(arrow_type)


def _check_names(names: list[str], line: int | None = None) -> None:
    where = {"line": line} if line is not None else {}
    seen: set[str] = set()
    for position, name in enumerate(names, 1):
        if name == "":
            raise DatasetError(f"column {position} has no name", column=position, **where)
        if name in seen:
            raise DatasetError(f"column {name!r} appears twice", column=position, **where)
        if name == ROW_COLUMN:
            raise DatasetError(
                f"a column may not be named {ROW_COLUMN!r}: rows read back carry their index "
                "under that name; rename it", column=position, **where)
        seen.add(name)


class TextValidator:
    """Feeds a text file through ``feed`` in chunks of any size; ``finish`` ends it.

    Subclasses check one block of whole lines at a time (``_block``), and may hand back an
    unfinished tail (a CSV record whose quoted field goes on) to be checked with what
    follows.
    """

    kind = "text"

    def __init__(self) -> None:
        self._pending = bytearray()
        self._drain_at = BLOCK_BYTES  # a tail left unchecked is not rescanned every chunk
        self._offset = 0  # the file offset of ``_pending[0]``
        self._lines = 0  # lines before ``_pending``
        self.rows = 0
        self.index: list[list[int]] = []
        self.dtypes: dict[str, str] = {}

    def feed(self, chunk: bytes) -> None:
        self._pending += chunk
        if len(self._pending) >= self._drain_at:
            self._drain(final=False)
            self._drain_at = len(self._pending) + BLOCK_BYTES

    def finish(self) -> Layout:
        self._drain(final=True)
        if self._offset == 0 and not self._pending:
            raise DatasetError("the file is empty")
        self._check_end()
        return Layout(self.rows, [Column(n, t) for n, t in self.dtypes.items()], self.index)

    def _drain(self, *, final: bool) -> None:
        end = len(self._pending) if final else self._pending.rfind(b"\n") + 1
        if end == 0:
            if len(self._pending) > MAX_RECORD_BYTES:
                raise DatasetError(
                    f"line {self._lines + 1} is longer than {MAX_RECORD_BYTES} bytes",
                    line=self._lines + 1, row=self.rows)
            return
        block = bytes(self._pending[:end])
        used = self._block(block, final=final)
        del self._pending[:used]
        self._offset += used
        self._lines += block.count(b"\n", 0, used)
        if not final and len(self._pending) > MAX_RECORD_BYTES:
            raise DatasetError(
                f"the record starting at line {self._lines + 1} is longer than "
                f"{MAX_RECORD_BYTES} bytes (an unclosed quote?)",
                line=self._lines + 1, row=self.rows)

    def _decode(self, block: bytes) -> None:
        try:
            block.decode()
        except UnicodeDecodeError as exc:
            line = self._lines + block.count(b"\n", 0, exc.start) + 1
            column = exc.start - block.rfind(b"\n", 0, exc.start)
            raise DatasetError(
                f"line {line} is not UTF-8 text (byte {column} of the line): is this a "
                f"{self.kind} file?", line=line, row=self.rows) from None

    def _note_row(self, offset: int) -> None:
        if self.rows % INDEX_ROWS == 0:
            self.index.append([self.rows, offset])
        self.rows += 1

    def _block(self, block: bytes, *, final: bool) -> int:
        raise NotImplementedError

    def _check_end(self) -> None:
        if self.rows == 0:
            raise DatasetError(
                f"the file holds no rows; a dataset needs at least one ({self.kind})")


def _blank(line: bytes) -> bool:
    """A JSON line of nothing but white space is skipped."""
    return not line or line.isspace()


def _empty(line: bytes) -> bool:
    """A CSV line with nothing on it is skipped, as pyarrow skips it when reading; one of
    spaces is a row (of one field)."""
    return not line or line == b"\r"


class CsvValidator(TextValidator):
    kind = "CSV"

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] | None = None

    def _block(self, block: bytes, *, final: bool) -> int:
        if self._offset == 0 and block.startswith(PARQUET_MAGIC):
            raise DatasetError("the body is a Parquet file, not CSV; send it as "
                               "application/vnd.apache.parquet", line=1)
        self._decode(block)
        quoted = b'"' in block
        if not quoted and self.names is not None:
            self._plain_block(block)
            return len(block)
        lines = block.split(b"\n")
        if block.endswith(b"\n"):
            lines.pop()
        pos = 0
        line_no = self._lines
        used = 0
        record_start = -1
        record_line = 0
        odd = 0
        data_start = -1  # where this block's first data record starts
        rows_before = self.rows
        for line in lines:
            line_no += 1
            start = pos
            pos += len(line) + 1
            if record_start < 0:
                if _empty(line):
                    used = min(pos, len(block))
                    continue
                record_start, record_line, odd = start, line_no, 0
            if quoted:
                odd ^= line.count(b'"') & 1
                if odd:
                    continue  # a quoted field goes on past this line break
            record = block[record_start:pos]
            if self.names is None:
                self._header(record, record_line)
            else:
                if data_start < 0:
                    data_start = record_start
                self._fields(record, record_line, quoted)
                self._note_row(self._offset + record_start)
            record_start = -1
            used = min(pos, len(block))
        if record_start >= 0 and final:
            raise DatasetError(f"line {record_line}: a quoted field opened on this line is "
                               "never closed", line=record_line, row=self.rows)
        if data_start >= 0:
            self._infer(block[data_start:used], quoted, record_line, rows_before)
        return used

    def _plain_block(self, block: bytes) -> None:
        """A block of data rows without quotes, checked with array operations: a line's
        fields are its commas plus one, and a line is a record."""
        assert self.names is not None
        data = np.frombuffer(block, dtype=np.uint8)
        breaks = np.flatnonzero(data == ord("\n"))
        ends = breaks if block.endswith(b"\n") else np.append(breaks, len(block))
        starts = np.concatenate(([0], breaks + 1))[: len(ends)]
        lengths = ends - starts
        first_byte = data[np.minimum(starts, len(block) - 1)]
        empty = (lengths == 0) | ((lengths == 1) & (first_byte == ord("\r")))
        commas = np.flatnonzero(data == ord(","))
        fields = np.searchsorted(commas, ends) - np.searchsorted(commas, starts) + 1
        ragged = np.flatnonzero(~empty & (fields != len(self.names)))
        rows_before = self.rows
        if len(ragged):
            at = int(ragged[0])
            line = self._lines + at + 1
            raise DatasetError(
                f"line {line} has {fields[at]} fields; the header has {len(self.names)}",
                line=line, row=rows_before + int(np.count_nonzero(~empty[:at])))
        record_starts = starts[~empty]
        rows = np.arange(rows_before, rows_before + len(record_starts))
        indexed = rows % INDEX_ROWS == 0
        self.index += [[int(r), self._offset + int(o)]
                       for r, o in zip(rows[indexed], record_starts[indexed], strict=True)]
        self.rows += len(record_starts)
        if len(record_starts):
            self._infer(block, False, self._lines + len(ends), rows_before)

    def _header(self, record: bytes, line: int) -> None:
        text = record.decode().lstrip("\ufeff")
        if text.lstrip().startswith(("{", "[")):
            raise DatasetError("line 1 looks like JSON, not a CSV header; send JSON Lines as "
                               "application/x-ndjson", line=line)
        names = [n.strip() for n in next(csv.reader([text.rstrip("\r\n")]))]
        if all(_is_number(n) for n in names):
            raise DatasetError(
                f"line {line} holds only numbers ({','.join(names[:5])}): a CSV needs a header "
                "row naming its columns first", line=line)
        _check_names(names, line)
        self.names = names
        self.dtypes = dict.fromkeys(names, "null")

    def _fields(self, record: bytes, line: int, quoted: bool) -> None:
        assert self.names is not None
        if quoted and b'"' in record:
            count = len(next(csv.reader([record.decode().rstrip("\r\n")])))
        else:
            count = record.count(b",") + 1
        if count != len(self.names):
            raise DatasetError(
                f"line {line} has {count} fields; the header has {len(self.names)}",
                line=line, row=self.rows)

    def _infer(self, data: bytes, quoted: bool, line: int, rows_before: int) -> None:
        assert self.names is not None
        try:
            table = pa_csv.read_csv(
                io.BytesIO(data),
                read_options=pa_csv.ReadOptions(column_names=self.names),
                parse_options=pa_csv.ParseOptions(newlines_in_values=quoted),
                convert_options=CSV_CONVERT,
            )
        except pa.ArrowInvalid as exc:
            raise DatasetError(f"rows from {rows_before} on (up to line {line}) are unreadable:"
                               f" {exc}", line=line, row=rows_before) from None
        for field in table.schema:
            self.dtypes[field.name] = merge_dtypes(self.dtypes[field.name],
                                                   _plain_dtype(field.type))

    def _check_end(self) -> None:
        if self.names is None:
            raise DatasetError("the file holds only blank lines", line=1)
        super()._check_end()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class JsonlValidator(TextValidator):
    kind = "JSON Lines"

    def _block(self, block: bytes, *, final: bool) -> int:
        if self._offset == 0 and block.startswith(PARQUET_MAGIC):
            raise DatasetError("the body is a Parquet file, not JSON Lines; send it as "
                               "application/vnd.apache.parquet", line=1)
        lines = block.split(b"\n")
        if block.endswith(b"\n"):
            lines.pop()
        pos = 0
        line_no = self._lines
        rows_before = self.rows
        loads = orjson.loads
        for line in lines:
            line_no += 1
            start = pos
            pos += len(line) + 1
            if _blank(line):
                continue
            try:
                value = loads(line)
            except orjson.JSONDecodeError as exc:
                raise DatasetError(f"line {line_no} is not valid JSON: {exc}",
                                   line=line_no, row=self.rows) from None
            if type(value) is not dict:
                kind = "an array" if isinstance(value, list) else f"a {type(value).__name__}"
                raise DatasetError(
                    f"line {line_no} is {kind}, not a JSON object: each line must be one "
                    "object of column names to values", line=line_no, row=self.rows)
            self._note_row(self._offset + start)
        if self.rows > rows_before:
            self._infer(block)
        return len(block)

    def _infer(self, block: bytes) -> None:
        try:
            table = pa_json.read_json(io.BytesIO(block),
                                      read_options=pa_json.ReadOptions(block_size=len(block) + 1))
            found = {f.name: _plain_dtype(f.type) for f in table.schema}
        except pa.ArrowInvalid:
            found = _python_dtypes(block)  # mixed types in a key: pyarrow refuses, we merge
        for name, dtype in found.items():
            self.dtypes[name] = merge_dtypes(self.dtypes.get(name, "null"), dtype)

    def _check_end(self) -> None:
        super()._check_end()
        _check_names(list(self.dtypes))


def _python_dtypes(block: bytes) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in block.split(b"\n"):
        if _blank(line):
            continue
        for name, value in orjson.loads(line).items():
            dtype = _PYTHON_TYPES.get(type(value), "string")
            found[name] = merge_dtypes(found.get(name, "null"), dtype)
    return found


def validate_parquet(file: BinaryIO) -> Layout:
    """Check a whole Parquet file: its footer, then every row group read through (one at a
    time, so memory stays at a row group's size)."""
    try:
        parquet = pq.ParquetFile(file)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"the body is not a readable Parquet file: {exc}") from None
    metadata = parquet.metadata
    names = parquet.schema_arrow.names
    _check_names(names)
    row = 0
    for group in range(metadata.num_row_groups):
        try:
            parquet.read_row_group(group)
        except (pa.ArrowException, OSError) as exc:
            raise DatasetError(
                f"row group {group} (rows {row} to {row + metadata.row_group(group).num_rows - 1})"
                f" is unreadable: {exc}", row=row, row_group=group) from None
        row += metadata.row_group(group).num_rows
    if metadata.num_rows == 0:
        raise DatasetError("the file holds no rows; a dataset needs at least one (Parquet)")
    columns = [Column(f.name, arrow_dtype(f.type)) for f in parquet.schema_arrow]
    return Layout(metadata.num_rows, columns, [])


VALIDATORS: dict[str, type[TextValidator]] = {"csv": CsvValidator, "jsonl": JsonlValidator}
