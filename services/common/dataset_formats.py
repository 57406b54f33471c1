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
  breaks; an empty field is null in a column of numbers or booleans and an empty
  string in a column of strings; empty lines are skipped.
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
import itertools
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


class CsvValidator(TextValidator):
    """CSV, checked a block at a time with array operations.

    A line break or a comma is inside a quoted field when an odd number of quotes comes
    before it in its record (RFC 4180 doubles a quote inside a field), so record ends,
    fields and their counts come from the positions of quotes, commas and line breaks.
    pyarrow then parses the block, which gives the columns' types and proves the count.
    """

    kind = "CSV"

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] | None = None

    def _block(self, block: bytes, *, final: bool) -> int:
        start = 0
        if self.names is None:
            if self._offset == 0 and block.startswith(PARQUET_MAGIC):
                raise DatasetError("the body is a Parquet file, not CSV; send it as "
                                   "application/vnd.apache.parquet", line=1)
            start = self._header(block, final)
            if self.names is None:
                return start  # the header goes on past this block
        self._decode(block)
        return start + self._rows(block, start, final)

    def _header(self, block: bytes, final: bool) -> int:
        """Where the header record ends in ``block`` (0 when it goes on past it)."""
        self._decode(block)
        data = np.frombuffer(block, dtype=np.uint8)
        breaks = np.flatnonzero(data == ord("\n"))
        quotes = np.flatnonzero(data == ord('"'))
        begin = 0
        while begin < len(block) and block[begin : begin + 1] in (b"\n", b"\r"):
            begin += 1  # empty lines before the header
        if begin == len(block):
            return begin
        closed = breaks[(breaks >= begin) & (np.searchsorted(quotes, breaks) % 2 == 0)]
        if len(closed) == 0 and not final:
            return 0
        end = int(closed[0]) + 1 if len(closed) else len(block)
        line = self._lines + block.count(b"\n", 0, begin) + 1
        if len(closed) == 0 and len(quotes) % 2:
            raise DatasetError(f"line {line}: a quoted field opened on this line is never "
                               "closed", line=line)
        text = block[begin:end].decode().lstrip("\ufeff").rstrip("\r\n")
        if text.lstrip().startswith(("{", "[")):
            raise DatasetError(f"line {line} looks like JSON, not a CSV header; send JSON "
                               "Lines as application/x-ndjson", line=line)
        names = [n.strip() for n in next(csv.reader([text]))]
        if all(_is_number(n) for n in names):
            raise DatasetError(
                f"line {line} holds only numbers ({','.join(names[:5])}): a CSV needs a header "
                "row naming its columns first", line=line)
        _check_names(names, line)
        self.names = names
        self.dtypes = dict.fromkeys(names, "null")
        return end

    def _rows(self, block: bytes, begin: int, final: bool) -> int:
        """Check the records of ``block[begin:]``; how many of its bytes they take (an
        unfinished record is left for the next block)."""
        assert self.names is not None
        data = np.frombuffer(block, dtype=np.uint8)[begin:]
        newlines = np.flatnonzero(data == ord("\n"))
        quotes = np.flatnonzero(data == ord('"'))
        commas = np.flatnonzero(data == ord(","))
        breaks = newlines
        if len(quotes):
            breaks = newlines[np.searchsorted(quotes, newlines) % 2 == 0]
            commas = commas[np.searchsorted(quotes, commas) % 2 == 0]
        size = len(data)
        unclosed = len(quotes) % 2 == 1
        if unclosed:  # the last record's quoted field goes on
            used = int(breaks[-1]) + 1 if len(breaks) else 0
            ends = breaks
        else:
            used = size
            ends = breaks if block.endswith(b"\n") else np.append(breaks, size)
        lines_before = self._lines + block.count(b"\n", 0, begin)
        if len(ends):
            self._records(block, begin, data, ends, commas, newlines, lines_before,
                          len(quotes) > 0)
        if unclosed and final:
            line = lines_before + int(np.count_nonzero(newlines < used)) + 1
            raise DatasetError(f"line {line}: a quoted field opened in the record starting "
                               "here is never closed", line=line, row=self.rows)
        return used

    def _records(self, block: bytes, begin: int, data: np.ndarray, ends: np.ndarray,
                 commas: np.ndarray, newlines: np.ndarray, lines_before: int,
                 quoted: bool) -> None:
        """Check and count the records ending at ``ends`` (offsets in ``data``, which is
        ``block[begin:]``), with the commas outside quotes and every line break."""
        assert self.names is not None
        size = len(data)
        starts = np.concatenate(([0], ends[:-1] + 1))
        lengths = ends - starts
        empty = (lengths == 0) | ((lengths == 1) & (data[np.minimum(starts, size - 1)] == 13))
        fields = np.searchsorted(commas, ends) - np.searchsorted(commas, starts) + 1
        ragged = np.flatnonzero(~empty & (fields != len(self.names)))
        rows_before = self.rows
        if len(ragged):
            at = int(ragged[0])
            line = lines_before + int(np.searchsorted(newlines, starts[at])) + 1
            raise DatasetError(
                f"line {line} has {fields[at]} fields; the header has {len(self.names)}",
                line=line, row=rows_before + int(np.count_nonzero(~empty[:at])))
        record_starts = starts[~empty]
        rows = np.arange(rows_before, rows_before + len(record_starts))
        indexed = rows % INDEX_ROWS == 0
        base = self._offset + begin
        self.index += [[int(r), base + int(o)]
                       for r, o in zip(rows[indexed], record_starts[indexed], strict=True)]
        self.rows += len(record_starts)
        if len(record_starts):
            end = begin + int(ends[-1]) + 1
            self._infer(block[begin:end], quoted, lines_before + 1, rows_before)

    def _infer(self, data: bytes, quoted: bool, line: int, rows_before: int) -> None:
        """Merge the types pyarrow reads in ``data``; its row count must be ours."""
        assert self.names is not None
        try:
            table = pa_csv.read_csv(
                io.BytesIO(data),
                read_options=pa_csv.ReadOptions(column_names=self.names),
                parse_options=pa_csv.ParseOptions(newlines_in_values=quoted),
                convert_options=CSV_CONVERT,
            )
        except pa.ArrowInvalid as exc:
            raise DatasetError(f"the rows from line {line} on are unreadable: {exc}",
                               line=line, row=rows_before) from None
        if table.num_rows != self.rows - rows_before:
            raise DatasetError(
                f"the rows from line {line} on are not RFC 4180 CSV (a quote inside a field "
                "that is not quoted?)", line=line, row=rows_before)
        for field in table.schema:
            self.dtypes[field.name] = merge_dtypes(self.dtypes[field.name],
                                                   _plain_dtype(field.type))

    def _check_end(self) -> None:
        if self.names is None:
            raise DatasetError("the file holds only empty lines", line=1)
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
    # The index of a Parquet dataset: where each row group starts, and its number.
    sizes = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
    starts = [0, *itertools.accumulate(sizes)][:-1]
    return Layout(metadata.num_rows, columns, [[row, g] for g, row in enumerate(starts)])


VALIDATORS: dict[str, type[TextValidator]] = {"csv": CsvValidator, "jsonl": JsonlValidator}
