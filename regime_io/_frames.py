"""Reader outputs: one Arrow schema per reader, then polars, pandas or Arrow.

Every reader builds an Arrow table that matches its declared schema exactly (column
order and types, for empty and non-empty results alike) and converts it last, so the
three return types can only differ by the libraries' own type mapping.

Example:
    >>> import pyarrow as pa
    >>> schema = pa.schema([("symbol", pa.string()), ("close", pa.float64())])
    >>> conform(pa.table({"close": [1.5]}), schema, constants={"symbol": "NIFTY"}).to_pylist()
    [{'symbol': 'NIFTY', 'close': 1.5}]
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, get_args

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import UsageError
from .types import ReturnType

if TYPE_CHECKING:
    import polars as pl

RETURN_TYPES: tuple[str, ...] = get_args(ReturnType)


def check_return_type(return_type: Any) -> None:
    if return_type not in RETURN_TYPES:
        raise UsageError(f"return_type {return_type!r} is not supported; allowed: {', '.join(RETURN_TYPES)}",
                         value=return_type)


def to_polars(data: Any, *, what: str, on_pandas_error: Callable[[Any, Exception], None] | None = None,
              ) -> pl.DataFrame | None:
    """``data`` as a polars DataFrame if it is a frame (polars eager/lazy, Arrow, pandas),
    else None. The one place frames of every library become polars.

    A pandas frame's named index levels become columns (a ``DatetimeIndex`` named
    ``timestamp``, a ``MultiIndex`` of ``symbol`` and ``timestamp``); an unnamed
    ``DatetimeIndex`` becomes ``timestamp`` when there is no such column. A default
    ``RangeIndex`` (or the unnamed index a ``to_csv()`` round trip leaves) is dropped.
    ``on_pandas_error`` may raise a better error when polars cannot type a column.
    """
    import polars as pl

    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, pl.LazyFrame):
        return data.collect()
    if isinstance(data, (pa.Table, pa.RecordBatch)):
        frame = pl.from_arrow(data)
        assert isinstance(frame, pl.DataFrame)
        return frame
    if type(data).__module__.startswith("pandas") and hasattr(data, "columns"):
        data = pandas_index_as_columns(data, what=what)
        try:
            return pl.from_pandas(data)
        except Exception as err:  # object columns polars cannot type (mixed kinds)
            if on_pandas_error is not None:
                on_pandas_error(data, err)
            raise UsageError(f"{what}: cannot convert the pandas frame: {err}") from err
    return None


def pandas_index_as_columns(frame: Any, *, what: str) -> Any:
    import pandas as pd

    index = frame.index
    names = [n for n in index.names if n is not None]
    if names:
        clash = [n for n in names if n in frame.columns]
        if clash:
            raise UsageError(f"{what}: {', '.join(map(repr, clash))} is both an index level and a column; "
                             "drop one (frame.reset_index(drop=True) or frame.drop(columns=...))")
        if len(names) != index.nlevels:
            raise UsageError(f"{what}: the index has unnamed levels beside {names!r}; name them or reset it")
        return frame.reset_index()
    if isinstance(index, pd.DatetimeIndex) and "timestamp" not in frame.columns:
        return frame.rename_axis("timestamp").reset_index()
    return frame


# Constant text columns of at least _SHARED_FROM rows are slices of one array of
# _SHARED_ROWS per value and type, built once (no copy: an Arrow slice). A sealed read
# fills two per chunk (symbol, timeframe): every bar of the benchmark (30 chunks of
# 33,000-44,640 rows) spent 6.7 ms building them as string views and 2.9 ms as text, most
# of it in fresh memory's page faults (13 us a column when the memory is reused). At most
# _SHARED_VALUES arrays are kept, each of values up to _SHARED_BYTES long (~1-2.3 MB); shorter
# columns (a latest row) and longer values are built as asked.
_SHARED_FROM = 1024
_SHARED_ROWS = 1 << 16
_SHARED_VALUES = 32
_SHARED_BYTES = 32


def constant(value: Any, length: int, type_: pa.DataType) -> pa.Array:
    """``length`` copies of ``value`` (filled in C++, not from a Python list)."""
    if (isinstance(value, str) and _SHARED_FROM <= length <= _SHARED_ROWS and len(value.encode()) <= _SHARED_BYTES
            and type_ in (pa.string(), pa.string_view())):
        return _shared_text(value, type_).slice(0, length)
    return _constant(value, length, type_)


@functools.lru_cache(maxsize=_SHARED_VALUES)
def _shared_text(value: str, type_: pa.DataType) -> pa.Array:
    return _constant(value, _SHARED_ROWS, type_)


def _constant(value: Any, length: int, type_: pa.DataType) -> pa.Array:
    if isinstance(value, str) and type_ == pa.string_view():
        return _constant_views(value.encode(), length)
    if isinstance(value, str) and type_ == pa.string() and length * len(value.encode()) < 2**31:
        # Text laid out directly (offsets 0, k, 2k...): fill_null took 0.14 ms for 33,000
        # rows, twice per sealed symbol-month (symbol, timeframe); this takes ~0.01 ms
        # (44,640 rows: 12 us, 34 us with the offsets made in int64 and narrowed).
        data = value.encode()
        offsets = np.arange(0, (length + 1) * len(data), len(data), dtype=np.int32) if data else \
            np.zeros(length + 1, dtype=np.int32)
        return pa.Array.from_buffers(type_, length, [None, pa.py_buffer(offsets), pa.py_buffer(data * length)])
    return pc.fill_null(pa.nulls(length, type_), pa.scalar(value, type_))


def conform(table: pa.Table, schema: pa.Schema, *, constants: Mapping[str, Any] | None = None) -> pa.Table:
    """Select, add and cast columns so ``table`` has exactly ``schema``.

    ``constants`` fills columns the query left out (the symbol of a single-symbol read).
    Casts are safe: a value that does not fit raises instead of being truncated.
    """
    constants = constants or {}
    arrays = []
    for field in schema:
        if field.name in constants:
            arrays.append(constant(constants[field.name], table.num_rows, field.type))
            continue
        column = table.column(field.name)
        if column.type != field.type:
            column = column.cast(field.type)
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=schema)


def _constant_views(data: bytes, length: int) -> pa.Array:
    """``length`` string views of ``data``, each 16 bytes: the length, then the bytes
    themselves up to 12, else their first 4 and where they lie (all in one buffer, once).
    Built so, a chunk's key column reaches polars as it is (a 1M-row column cast from
    Arrow text took ~1.8 ms; this is one 16-byte pattern repeated)."""
    view = bytearray(16)
    view[:4] = len(data).to_bytes(4, "little")
    buffers = [None, None]
    if len(data) <= 12:
        view[4:4 + len(data)] = data
    else:  # prefix, then buffer 0 at offset 0
        view[4:8] = data[:4]
        buffers.append(pa.py_buffer(data))
    buffers[1] = pa.py_buffer(np.tile(np.frombuffer(bytes(view), dtype=np.uint8), length))
    return pa.Array.from_buffers(pa.string_view(), length, buffers)


def empty_table(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:  # pragma: no cover - pandas is an optional extra
        raise UsageError("return_type='pandas' needs pandas: pip install 'regime-io[pandas]'") from None
    return pandas


def convert(table: pa.Table, return_type: ReturnType) -> Any:
    """The Arrow table as the requested frame type."""
    if return_type == "arrow":
        return table
    if return_type == "polars":
        import polars as pl

        frame = pl.from_arrow(_string_views(table), rechunk=not _long_chunks(table))
        assert isinstance(frame, pl.DataFrame)
        return frame
    if return_type == "pandas":
        _pandas()
        return table.to_pandas()
    check_return_type(return_type)
    raise AssertionError("unreachable")


# Rows per chunk (on average, every column chunked alike) from which a table's chunks
# become the frame's as they are: polars' default rechunk copied every column of one
# symbol's 100,000 sealed bars (three month chunks) into one piece, 0.79 ms against 0.14
# ms, and a frame in month-long pieces computes as fast. Shorter pieces are joined: polars
# pays per piece in many operations.
_KEEP_CHUNKS_FROM = 8192


def _long_chunks(table: pa.Table) -> bool:
    if table.num_columns == 0 or table.num_rows == 0:
        return False
    counts = {c.num_chunks for c in table.columns}
    return len(counts) == 1 and table.num_rows >= _KEEP_CHUNKS_FROM * counts.pop()


def _views_cast() -> bool:
    try:  # pyarrow >= 17 (the floor is 16, which has no such cast)
        pa.array(["x"]).cast(pa.string_view())
    except (pa.ArrowNotImplementedError, AttributeError):
        return False
    return True


# Whether this pyarrow casts text to Arrow string views (polars' own layout, taken as is).
VIEWS = _views_cast()
# Below this many rows the cast costs more than polars' own conversion (a one-row latest
# read: +0.08 ms for the cast, nothing saved).
_VIEWS_FROM = 1024


def _string_views(table: pa.Table) -> pa.Table:
    """``table`` with its text columns as Arrow string views, polars' own layout: polars
    converted a 41,760-row symbol column to views in 0.48 ms, Arrow's cast takes 0.09 ms
    (1M rows: 7.8 ms against 1.8 ms), and a sealed month read carries two such columns."""
    if not VIEWS or table.num_rows < _VIEWS_FROM:
        return table
    text = (pa.string(), pa.large_string())
    if not any(t in text for t in table.schema.types):
        return table
    return pa.Table.from_arrays([c.cast(pa.string_view()) if c.type in text else c for c in table.columns],
                                names=table.column_names)


def convert_batch(batch: pa.RecordBatch, return_type: ReturnType) -> Any:
    """One record batch as the requested frame type (``"arrow"``: the batch itself).

    The same libraries' conversions as :func:`convert`, so a stream's frames concatenate
    to the eager reader's frame."""
    if return_type == "arrow":
        return batch
    return convert(pa.Table.from_batches([batch]), return_type)


T = TypeVar("T")


class BatchStream(Generic[T]):
    """Rows of one schema in batches, as the streams (``iter_market_data``...) return them.

    Iterated, it yields one frame per batch of the ``return_type`` asked for (bounded
    memory): polars DataFrames (``"polars"``), pandas DataFrames (``"pandas"``) or
    ``pyarrow.RecordBatch`` objects (``"arrow"``). Whatever the return type, it also
    speaks the Arrow PyCapsule stream protocol (``__arrow_c_stream__``), so
    ``pa.RecordBatchReader.from_stream(s)``, ``pl.DataFrame(s)``, DuckDB and any other
    Arrow consumer read its Arrow batches directly, and a writer of this library accepts
    it. One pass: batches consumed by either route are not seen again.

    >>> s = BatchStream(pa.schema([("a", pa.int64())]), iter([pa.record_batch({"a": [1, 2]})]), return_type="arrow")
    >>> pa.RecordBatchReader.from_stream(s).read_all().num_rows
    2
    """

    def __init__(self, schema: pa.Schema, batches: Iterator[pa.RecordBatch], *, return_type: ReturnType) -> None:
        check_return_type(return_type)
        self.schema = schema
        self.return_type: ReturnType = return_type
        self._batches = iter(batches)

    def __iter__(self) -> BatchStream[T]:
        return self

    def __next__(self) -> T:
        return cast(T, convert_batch(self._next_batch(), self.return_type))

    def _next_batch(self) -> pa.RecordBatch:
        batch = next(self._batches)
        if batch.schema != self.schema:  # e.g. nullability lost on the way: the declared schema wins
            batch = pa.RecordBatch.from_arrays(batch.columns, schema=self.schema)
        return batch

    def arrow_batches(self) -> Iterator[pa.RecordBatch]:
        """The rest of the stream as Arrow record batches, whatever ``return_type`` says."""
        while True:
            try:
                batch = self._next_batch()
            except StopIteration:
                return
            yield batch

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        reader = pa.RecordBatchReader.from_batches(self.schema, self.arrow_batches())
        return reader.__arrow_c_stream__(requested_schema)

    def read_all(self) -> pa.Table:
        """The rest of the stream as one Arrow table (as ``pyarrow.RecordBatchReader.read_all``)."""
        return pa.Table.from_batches(list(self.arrow_batches()), schema=self.schema)

    def __repr__(self) -> str:
        return f"<BatchStream[{self.return_type}] {', '.join(self.schema.names)}>"


def as_stream(data: Any) -> Any:
    """``data``, or a ``pyarrow.RecordBatchReader`` over it when it is an Arrow stream that
    is not a frame: any object with ``__arrow_c_stream__`` (a DuckDB relation, a nanoarrow
    or ADBC stream, :class:`BatchStream`), a pyarrow dataset or scanner. Frames (Arrow
    tables, polars and pandas frames, which speak the protocol too) are left alone."""
    if isinstance(data, BatchStream):  # its Arrow batches, whatever frames it yields when iterated
        return pa.RecordBatchReader.from_stream(data)
    if isinstance(data, (pa.Table, pa.RecordBatch, pa.RecordBatchReader, Iterator)):
        return data
    module = type(data).__module__
    if module.startswith(("polars", "pandas")):
        return data
    if module.startswith("pyarrow") and hasattr(data, "to_reader"):  # a dataset Scanner
        return data.to_reader()
    if module.startswith("pyarrow") and hasattr(data, "scanner"):  # a Dataset: scanned in batches
        return data.scanner().to_reader()
    if hasattr(data, "__arrow_c_stream__"):
        return pa.RecordBatchReader.from_stream(data)
    return data


def check_index_col(index_col: Any, return_type: str, columns: Sequence[str], *, table: str) -> list[str] | None:
    """``index_col`` (``pandas.read_sql``'s) checked against the result's columns: None, or
    the column names that become the pandas index."""
    if index_col is None:
        return None
    names = [index_col] if isinstance(index_col, str) else index_col
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise UsageError(f"index_col: expected a column name or a list of them, got {index_col!r}", table=table,
                         value=index_col)
    if return_type != "pandas":
        raise UsageError(f"index_col={index_col!r} applies to return_type='pandas' (polars and Arrow frames have "
                         f"no index), not {return_type!r}", table=table, value=index_col)
    for name in names:
        if name not in columns:
            raise UsageError(f"index_col: {name!r} is not a column of the result; allowed: {', '.join(columns)}",
                             table=table, column=name, value=index_col)
    if len(set(names)) != len(names):
        raise UsageError(f"index_col: {index_col!r} names a column twice", table=table, value=index_col)
    return list(names)


def with_index(frame: Any, index_col: list[str] | None) -> Any:
    """A pandas frame with ``index_col`` as its index (one column: e.g. a ``DatetimeIndex``;
    several: a ``MultiIndex``), as ``pandas.read_sql(..., index_col=)`` returns it."""
    if not index_col:
        return frame
    return frame.set_index(index_col[0] if len(index_col) == 1 else index_col)
