"""Files in and out of the tables: Parquet, CSV and Arrow IPC, streamed.

The library work behind ``regime-io ingest`` and ``regime-io export`` (as sqlite-utils'
``rows_from_file`` and ``Format`` are behind its ``insert`` command):

- :func:`detect_format`: the :data:`Format` of a path, from its suffix or an explicit choice;
- :func:`read_file`: a file as a stream of Arrow record batches typed for a table
  (CSV columns parsed with the table's types), with the row count when the file knows it;
- :func:`write_file`: a table or a stream of batches written atomically (the file appears
  whole or not at all);
- :func:`export_table`: a table's rows for a symbol and a range, read through
  :class:`~regime_io.integration.PostgreSQLIntegration` and written with :func:`write_file`;
- :func:`export_dataset`: a table (both tiers) as a hive-partitioned Parquet dataset
  (``symbol=NIFTY/month=2024-01-01/part-0.parquet``) for tools that read files.

Example:
    >>> from regime_io import files
    >>> files.detect_format("bars.parquet")
    'parquet'
    >>> files.detect_format("bars.txt", format="csv")
    'csv'
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from .errors import Remedy, UsageError
from .tables import table_spec
from .types import DateLike

if TYPE_CHECKING:
    import pyarrow as pa

    from .integration import PostgreSQLIntegration

__all__ = ["FORMATS", "PARTITION_KEYS", "ExportResult", "FileBatches", "Format", "PartitionKey", "detect_format",
           "export_dataset", "export_table", "parse_rename", "read_file", "write_file"]

Format = Literal["parquet", "csv", "ipc"]
"""File formats: Parquet, CSV, Arrow IPC (Feather v2 files and IPC streams)."""

FORMATS: dict[str, Format] = {
    ".parquet": "parquet", ".pq": "parquet",
    ".csv": "csv",
    ".arrow": "ipc", ".ipc": "ipc", ".feather": "ipc", ".arrows": "ipc",
}
"""File suffix -> :data:`Format`."""

# CSV files compressed as a whole (``bars.csv.gz``): Arrow decompresses them while reading.
COMPRESSED_CSV = (".gz", ".zst", ".bz2", ".lz4")

DEFAULT_BATCH_ROWS = 250_000

PathLike = str | os.PathLike[str]

PartitionKey = Literal["symbol", "timeframe", "month"]
"""What a Parquet dataset can be partitioned by (``timeframe``: tables that have one)."""

PARTITION_KEYS: tuple[PartitionKey, ...] = get_args(PartitionKey)


def detect_format(path: PathLike, *, format: str | None = None) -> Format:
    """The format of ``path``: ``format`` when given, else from the file's suffix.

    Raises:
        UsageError: ``format`` is not one of :data:`Format`, or the suffix is unknown.

    >>> detect_format("prices.feather")
    'ipc'
    >>> detect_format("AAPL_1min.csv.gz"), detect_format("bars.csv.zst")
    ('csv', 'csv')
    """
    allowed: tuple[Format, ...] = get_args(Format)
    if format is not None:
        for name in allowed:
            if format.lower() == name:
                return name
        raise UsageError(f"format {format!r} is not supported; allowed: {', '.join(allowed)}", value=format)
    suffixes = [s.lower() for s in Path(path).suffixes]
    if len(suffixes) >= 2 and suffixes[-1] in COMPRESSED_CSV and suffixes[-2] == ".csv":
        return "csv"
    found = FORMATS.get(suffixes[-1]) if suffixes else None
    if found is None:
        raise UsageError(f"cannot tell the format of {str(path)!r} from its suffix; use one of "
                         f"{', '.join(FORMATS)} (a CSV may end in {', '.join('.csv' + c for c in COMPRESSED_CSV)}) "
                         "or pass {fix}", value=str(path), fixes=(Remedy.argument("format"),))
    return found


def parse_rename(text: str | Mapping[str, str] | None) -> dict[str, str]:
    """``"o=open,h=high"`` (the CLI's ``--rename``) or a mapping, as ``{file column: table column}``.

    >>> parse_rename("o=open, h=high")
    {'o': 'open', 'h': 'high'}
    """
    if text is None:
        return {}
    if isinstance(text, Mapping):
        pairs = list(text.items())
    else:
        pairs = []
        for item in (p.strip() for p in str(text).split(",")):
            old, sep, new = item.partition("=")
            if not item or not sep or not old.strip() or not new.strip():
                raise UsageError(f"rename: {item!r} is not FILE_COLUMN=TABLE_COLUMN; write e.g. "
                                 "'o=open,h=high,l=low,c=close,v=volume'", value=text)
            pairs.append((old.strip(), new.strip()))
    out: dict[str, str] = {}
    for old, new in pairs:
        if old in out:
            raise UsageError(f"rename: {old!r} is renamed twice", value=text)
        out[str(old)] = str(new)
    return out


def csv_column_types(table: str, *, dates_as_text: bool = False) -> dict[str, pa.DataType]:
    """The Arrow types a CSV's columns are parsed with for ``table``.

    Decimals are parsed as float64: the writer rounds them to the column's scale with its
    own checks. Timestamps and dates are parsed as ISO 8601 unless ``dates_as_text``
    (then the writer parses them, with its ``date_format=``). Columns the table does not
    have are left to Arrow's inference.

    >>> csv_column_types("market_data")["volume"]
    DataType(int64)
    """
    import pyarrow as pa

    types: dict[str, pa.DataType] = {}
    for column in table_spec(table).columns:
        if column.kind == "decimal":
            types[column.name] = pa.float64()
        elif dates_as_text and column.kind in ("timestamp", "date"):
            types[column.name] = pa.string()
        else:
            types[column.name] = column.arrow_type
    return types


@dataclass
class FileBatches(Iterator["pa.RecordBatch"]):
    """A file read as a stream of record batches.

    An iterator (pass it to ``PostgreSQLIntegration.save`` as is): the file is read as the
    batches are consumed, with bounded memory, once. ``rows`` is the file's row count
    when its format records it (Parquet), else None.
    """

    path: Path
    format: Format
    batches: Iterator[pa.RecordBatch]
    rows: int | None = None

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self

    def __next__(self) -> pa.RecordBatch:
        return next(self.batches)


def read_file(path: PathLike, table: str, *, format: str | None = None, batch_rows: int = DEFAULT_BATCH_ROWS,
              date_format: str | None = None, rename: str | Mapping[str, str] | None = None,
              symbol: str | None = None, timeframe: str | None = None) -> FileBatches:
    """Open ``path`` as a stream of record batches for ``table``.

    Parameters:
        path: a Parquet, CSV or Arrow IPC file (see :data:`FORMATS`).
        table: the table the rows are for (a key, the seed's name or an alias): a CSV's
            columns are parsed with its types (:func:`csv_column_types`).
        format: one of :data:`Format`; default from the suffix.
        batch_rows: rows per batch (Parquet; CSV and IPC batches follow the file's blocks).
        date_format: the layout of a CSV's timestamps and dates when they are not ISO 8601
            (``"%d/%m/%Y %H:%M"``): they are then read as text, for the writer to parse
            with the same ``date_format=``.
        rename: the file's column names as the table's (``{"o": "open"}`` or
            ``"o=open,h=high"``): a vendor's ``o,h,l,c,v`` file loads without a script.
        symbol, timeframe: a constant ``symbol`` / ``timeframe`` column for a file of one
            series that has none (``symbol="AAPL", timeframe="1m"``).

    Returns:
        A :class:`FileBatches`: iterate it, pass it to ``PostgreSQLIntegration.save``.

    Raises:
        UsageError: unknown format or table, ``batch_rows`` < 1, a ``rename`` of a column
            the file does not have, ``symbol``/``timeframe`` for a file that has that column
            (or a table without it).
        OSError: the file cannot be opened. A file Arrow cannot parse raises Arrow's
            own error (``pyarrow.ArrowInvalid``) when the bad part is reached.

    Example:
        >>> batches = read_file("bars.parquet", "market_data")        # doctest: +SKIP
        >>> pg.save("market_data", batches)                            # doctest: +SKIP
    """
    import pyarrow as pa

    fmt = detect_format(path, format=format)
    spec = table_spec(table)
    key = spec.key
    if batch_rows < 1:
        raise UsageError(f"batch_rows must be at least 1, got {batch_rows!r}", value=batch_rows)
    renames = parse_rename(rename)
    constants = {name: value for name, value in (("symbol", symbol), ("timeframe", timeframe)) if value is not None}
    for name, value in constants.items():
        if name not in spec.column_names:
            raise UsageError(f"{key} has no {name} column; drop {name}={value!r}", table=key, column=name,
                             value=value)
    where = Path(path)
    rows: int | None = None
    if fmt == "parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(where)
        names, rows = parquet.schema_arrow.names, parquet.metadata.num_rows
        batches: Iterator[pa.RecordBatch] = parquet.iter_batches(batch_size=batch_rows)
    elif fmt == "csv":
        import pyarrow.csv as pacsv

        # The table's column types, keyed by the names the file uses.
        back = {new: old for old, new in renames.items()}
        types = {back.get(name, name): t for name, t in
                 csv_column_types(key, dates_as_text=date_format is not None).items()}
        reader = pacsv.open_csv(where, read_options=pacsv.ReadOptions(block_size=16 << 20),
                                convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True))
        names, batches = reader.schema.names, iter(reader)
    else:
        try:
            file_reader = pa.ipc.open_file(pa.memory_map(str(where)))
            names = file_reader.schema.names
            batches = (file_reader.get_batch(i) for i in range(file_reader.num_record_batches))
        except pa.ArrowInvalid:
            # Not an IPC file: an IPC stream (.arrows) has no footer.
            stream = pa.ipc.open_stream(pa.memory_map(str(where)))
            names, batches = stream.schema.names, iter(stream)
    if renames or constants:
        batches = _reshaped(batches, _final_names(where, key, names, renames, constants), constants)
    return FileBatches(where, fmt, batches, rows)


def _final_names(where: Path, key: str, names: list[str], renames: dict[str, str],
                 constants: dict[str, str]) -> list[str]:
    """The file's columns after ``renames``; refuses renames of absent columns and constants
    for columns the file already has."""
    missing = [old for old in renames if old not in names]
    if missing:
        raise UsageError(f"rename: {str(where)!r} has no column {', '.join(map(repr, missing))}; its columns: "
                         f"{', '.join(names)}", table=key, value=missing[0])
    final = [renames.get(n, n) for n in names]
    for name, value in constants.items():
        if name in final:
            raise UsageError(f"{str(where)!r} already has a {name} column; drop {name}={value!r} (or rename the "
                             "file's column)", table=key, column=name, value=value)
    return final


def _reshaped(batches: Iterator[pa.RecordBatch], names: list[str], constants: dict[str, str],
              ) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa

    for batch in batches:
        arrays = list(batch.columns)
        for value in constants.values():
            arrays.append(pa.array([value] * batch.num_rows, pa.string()))
        yield pa.RecordBatch.from_arrays(arrays, names=[*names, *constants])


def write_file(data: pa.Table | Iterable[pa.RecordBatch], path: PathLike, *, format: str | None = None,
               schema: pa.Schema | None = None) -> int:
    """Write a table or a stream of batches to ``path`` atomically; return the rows written.

    The rows go to ``<path>.part`` first, renamed over ``path`` once complete: a reader
    never sees half a file, and a failure leaves any previous ``path`` untouched.

    Parameters:
        data: an Arrow table, or record batches (consumed once, bounded memory).
        path: the file to write.
        format: one of :data:`Format`; default from the suffix.
        schema: the schema of an empty stream (default: the first batch's).

    >>> import pyarrow as pa, tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "x.csv"
    >>> write_file(pa.table({"a": [1, 2]}), out)
    2
    >>> out.read_text()
    '"a"\\n1\\n2\\n'
    """
    import pyarrow as pa

    fmt = detect_format(path, format=format)
    target = Path(path)
    if isinstance(data, pa.Table):
        batches: Iterator[pa.RecordBatch] = iter(data.to_batches())
        schema = data.schema
    else:
        batches = iter(data)
    first = next(batches, None)
    if first is not None:
        schema = schema or first.schema
    elif schema is None:
        schema = pa.schema([])
    tmp = target.with_name(target.name + ".part")
    writer: Any
    if fmt == "parquet":
        import pyarrow.parquet as pq

        writer = pq.ParquetWriter(tmp, schema, compression="zstd")
    elif fmt == "csv":
        import pyarrow.csv as pacsv

        writer = pacsv.CSVWriter(tmp, schema)
    else:
        writer = pa.ipc.new_file(tmp, schema)
    rows = 0
    try:
        for batch in ([first] if first is not None else []):
            writer.write_batch(batch)
            rows += batch.num_rows
        for batch in batches:
            writer.write_batch(batch)
            rows += batch.num_rows
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(tmp, target)
    return rows


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_table` wrote: ``rows`` rows of ``table`` to ``path``."""

    table: str
    path: Path
    rows: int

    def __str__(self) -> str:
        return f"{_rows(self.rows)} of {self.table} written to {self.path}"


def _rows(n: int) -> str:
    return f"{n:,} row" if n == 1 else f"{n:,} rows"


def export_table(pg: PostgreSQLIntegration[Any], table: str, path: PathLike, *, symbol: str | None = None,
                 start: DateLike | None = None, end: DateLike | None = None, timeframe: str | None = None,
                 format: str | None = None, allow_empty: bool = False,
                 as_of: DateLike | None = None) -> ExportResult:
    """Write ``table``'s rows for ``symbol`` in ``[start, end]`` to ``path`` (atomically).

    Bars and option bars are streamed (bounded memory); regimes and optimisation results
    are read whole. ``optimization_results`` needs no range (``symbol`` None: every symbol),
    and its ``parameters`` are written as JSON text.

    Parameters:
        pg: where to read from.
        table: a table key, the seed's name or an alias (``bars``, ``1min``, ``regimes``).
        path: the file to write; its format from the suffix or ``format``.
        symbol, start, end: the rows to export (inclusive; a date as ``end`` means the whole day).
        timeframe: only this timeframe (``market_data``, ``market_regimes``, ``optimization_results``).
        allow_empty: write an empty file instead of refusing when nothing matches.
        as_of: the rows as they were known at this instant (tables that keep history,
            ``docs/history.md``); default: now.

    Raises:
        UsageError: a missing ``symbol``/``start``/``end``; nothing matched (the file is not
            written unless ``allow_empty``).

    Example:
        >>> export_table(pg, "bars", "nifty.parquet", symbol="NIFTY",
        ...              start="2024-01-02", end="2024-01-31")          # doctest: +SKIP
        ExportResult(table='market_data', path=PosixPath('nifty.parquet'), rows=7875)
    """
    spec = table_spec(table)
    key = spec.key
    detect_format(path, format=format)  # refuse a bad name before reading anything
    data: Any
    schema: pa.Schema | None = None
    if key == "optimization_results":
        data = pg.get_optimization_results(symbol, timeframe=timeframe, parameters="json", as_of=as_of,
                                           return_type="arrow")
    else:
        if symbol is None or start is None or end is None:
            missing = [name for name, value in (("symbol", symbol), ("start", start), ("end", end)) if value is None]
            raise UsageError(f"export of {key} needs {', '.join(missing)}", table=key, params=tuple(missing))
        if key == "market_data":
            data = pg.iter_market_data(symbol, start, end, timeframe=timeframe, as_of=as_of, return_type="arrow")
            schema = spec.read_schema()
        elif key == "options_data":
            data = pg.iter_options_data(symbol, start, end, as_of=as_of, return_type="arrow")
            schema = spec.read_schema()
        elif key == "market_regimes":
            data = pg.get_market_regimes(symbol, start, end, timeframe=timeframe, as_of=as_of, return_type="arrow")
        else:
            data = pg.get_1min_market_regimes(symbol, start, end, as_of=as_of, return_type="arrow")
    if not allow_empty:
        data, empty = _peek_empty(data)
        if empty:
            what = f"{key} for {symbol!r}" if symbol is not None else key
            if start is not None:
                what += f" from {start} to {end}"
            raise UsageError(f"no rows of {what}; nothing written to {str(path)!r}", table=key)
    rows = write_file(data, path, format=format, schema=schema)
    return ExportResult(key, Path(path), rows)


def _peek_empty(data: Any) -> tuple[Any, bool]:
    """(data, True) when ``data`` (a table or a batch stream) has no rows."""
    import itertools

    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data, data.num_rows == 0
    stream = iter(data)
    for batch in stream:
        if batch.num_rows:
            return itertools.chain([batch], stream), False
    return iter(()), True



def export_dataset(pg: PostgreSQLIntegration[Any], table: str, directory: PathLike, *,
                   partition_by: str | Sequence[str] = ("symbol", "month"), symbols: Sequence[str] | None = None,
                   start: DateLike | None = None, end: DateLike | None = None, timeframe: str | None = None,
                   as_of: DateLike | None = None, allow_empty: bool = False,
                   overwrite: bool = False) -> ExportResult:
    """Write ``table`` (both tiers) as a hive-partitioned Parquet dataset in ``directory``.

    One directory level per partition key, ``key=value`` (``symbol=NIFTY/month=2024-01-01``;
    ``month`` is the first day of the rows' calendar month, a date; values percent-encoded
    where a path needs it), each holding ``part-0.parquet`` (zstd) without the partition
    columns: readers take them from the paths, so ``pl.scan_parquet(directory,
    hive_partitioning=True)`` and DuckDB's ``read_parquet('<dir>/**/*.parquet',
    hive_partitioning = true)`` return the table's columns (partition columns last).
    Rows are read symbol by symbol through the range readers' streams (bounded memory)
    and written to a hidden directory beside ``directory``, renamed into place when
    complete: a reader never sees half a dataset.

    Parameters:
        pg: where to read from.
        table: ``market_data``, ``options_data``, ``market_regimes`` or
            ``market_regimes_1min`` (or an alias).
        directory: the dataset's root; refused if it exists with files in it, unless
            ``overwrite`` (then it is replaced whole, once the new one is complete).
        partition_by: keys in directory order, a list or ``"symbol,month"``: any of
            ``symbol``, ``timeframe`` (tables that have one), ``month``.
        symbols: only these symbols (default: every symbol in the series catalog).
        start, end: only rows in ``[start, end]`` (inclusive; a date as ``end`` is the
            whole day); None leaves a side open.
        timeframe: only this timeframe (``market_data``, ``market_regimes``).
        as_of: the rows as they were known at this instant (docs/history.md).
        allow_empty: write an empty dataset instead of refusing when nothing matches.

    Returns:
        An :class:`ExportResult` (table, directory, rows).

    Raises:
        UsageError: an unknown or repeated partition key, a table without a time column,
            a non-empty ``directory`` without ``overwrite``, nothing matched.

    Example:
        >>> export_dataset(pg, "bars", "history/", partition_by="symbol,month")   # doctest: +SKIP
        >>> pl.scan_parquet("history/", hive_partitioning=True).filter(pl.col("symbol") == "NIFTY")  # doctest: +SKIP
    """
    import pyarrow.parquet as pq

    spec = table_spec(table)
    if spec.time_column is None:
        raise UsageError(f"{spec.key} has no time column to partition by month; export it with export_table",
                         table=spec.key, value=table)
    keys = _partition_keys(spec, partition_by)
    wanted = list(symbols) if symbols is not None else sorted(
        set(pg.catalog(spec.key, return_type="polars")["symbol"].to_list()))
    target = Path(directory)
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
        raise UsageError(f"{str(target)!r} exists and is not empty; pass a new directory or overwrite=True "
                         "(--overwrite)", table=spec.key, value=str(target))
    tmp = target.with_name(f".{target.name}.part-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    rows = 0
    try:
        for symbol in wanted:
            writers: dict[str, Any] = {}
            try:
                for batch in _symbol_batches(pg, spec.key, symbol, start, end, timeframe, as_of):
                    for where, part in _partitions(batch, keys, spec.time_column):
                        if where not in writers:
                            (tmp / where).mkdir(parents=True, exist_ok=True)
                            writers[where] = pq.ParquetWriter(tmp / where / "part-0.parquet", part.schema,
                                                              compression="zstd")
                        writers[where].write_table(part)
                        rows += part.num_rows
            finally:
                for writer in writers.values():
                    writer.close()
        if rows == 0 and not allow_empty:
            raise UsageError(f"no rows of {spec.key} for {', '.join(wanted) or 'any symbol'}; nothing written to "
                             f"{str(target)!r}", table=spec.key)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(spec.key, target, rows)


def _partition_keys(spec: Any, partition_by: str | Sequence[str]) -> list[PartitionKey]:
    names = [n.strip() for n in partition_by.split(",")] if isinstance(partition_by, str) else list(partition_by)
    allowed = [k for k in PARTITION_KEYS if k != "timeframe" or "timeframe" in spec.column_names]
    for name in names:
        if name not in allowed:
            raise UsageError(f"partition_by: {name!r} is not a partition key of {spec.key}; allowed: "
                             f"{', '.join(allowed)}", table=spec.key, value=name)
    if len(set(names)) != len(names) or not names:
        raise UsageError(f"partition_by: {partition_by!r} names no key or one twice; allowed: {', '.join(allowed)}",
                         table=spec.key, value=partition_by)
    return names  # type: ignore[return-value]


def _symbol_batches(pg: PostgreSQLIntegration[Any], key: str, symbol: str, start: Any, end: Any,
                    timeframe: str | None, as_of: Any) -> Iterator[pa.RecordBatch]:
    """One symbol's rows (both tiers) as Arrow batches: streamed for bars and option bars."""
    if key == "market_data":
        yield from pg.iter_market_data(symbol, start, end, timeframe=timeframe, as_of=as_of, return_type="arrow")
    elif key == "options_data":
        yield from pg.iter_options_data(symbol, start, end, as_of=as_of, return_type="arrow")
    elif key == "market_regimes":
        yield from pg.get_market_regimes(symbol, start, end, timeframe=timeframe, as_of=as_of,
                                         return_type="arrow").to_batches()
    else:
        yield from pg.get_1min_market_regimes(symbol, start, end, as_of=as_of, return_type="arrow").to_batches()


def _partitions(batch: pa.RecordBatch, keys: Sequence[str], time_column: str) -> Iterator[tuple[str, pa.Table]]:
    """``batch``'s rows per partition: the hive path (``symbol=A/month=2024-01-01``) and
    the rows without the partition columns."""
    import urllib.parse

    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.Table.from_batches([batch])
    columns = {k: table.column(k) for k in keys if k != "month"}
    if "month" in keys:
        columns["month"] = pc.floor_temporal(table.column(time_column), unit="month").cast(pa.date32())
    rest = table.drop_columns([k for k in keys if k != "month"])
    combos = pa.table({k: columns[k] for k in keys}).group_by(list(keys)).aggregate([]).to_pylist()
    for combo in combos:
        mask = None
        for k in keys:
            test = pc.equal(columns[k], pa.scalar(combo[k], columns[k].type))
            mask = test if mask is None else pc.and_(mask, test)
        where = "/".join(f"{k}={urllib.parse.quote(str(combo[k]), safe='')}" for k in keys)
        yield where, rest.filter(mask)
