"""Turn user frames into Arrow tables that fit a table declaration exactly, or explain why not.

Everything is checked before anything is sent to the server. Errors name the table, the
column, the first offending row (0-based, in the input as given) and its value.

Rules (documented in ``docs/writing.md``):

- Columns: missing required columns and unknown columns are errors (``extra_columns=
  "ignore"`` drops unknown ones); the server-filled ``id``/``created_at`` are dropped.
- DECIMAL(p, s): ints, floats and decimals are accepted; floats are first snapped to
  ``s + 4`` decimal places (removing binary noise such as 1.00499999...; fewer for large
  values of a wide price scale, as a double holds 15 digits: ``regime_io._write.decimals``),
  then rounded half away from zero to ``s`` places, which is what PostgreSQL does for
  ``float8::numeric(p, s)`` (1.005 -> 1.01, -0.125 -> -0.13). NaN, ±inf and values whose
  rounded magnitude reaches ``10 ** (p - s)`` are errors. Strings and booleans are errors.
- BIGINT: integers; floats only when integral (pandas turns int columns with NaN into
  floats); negative volume / open interest are errors.
- Symbols: stripped and upper-cased (``symbol_case="keep"``: stripped only), the spelling
  every reader looks them up in; ``" aapl"`` and ``AAPL`` are one series.
- Text: at most the VARCHAR length in characters; NUL bytes are errors (PostgreSQL text
  cannot hold them); empty strings in key columns (``symbol``, ``timeframe``...) are
  errors (the readers could never ask for them); ``option_type`` accepts CE/PE, C/P, CALL/PUT (any case), stored CE/PE.
- Timestamps: naive values are stored as given; zone-aware values are converted to
  ``storage_timezone`` and stored naive; strings are parsed (ISO 8601), and a column mixing
  strings with and without offsets, or unparsable strings, is an error.
- Dates: dates, midnight timestamps or ISO date strings.
- JSON: dicts, JSON strings or struct columns, stored as canonical JSON (sorted keys).
- Duplicate natural keys in one batch: an error (``on_duplicate="keep_last"`` keeps the last).
  The validated batch comes back sorted by the natural key (cheaper index inserts).
- OHLC sanity (low <= open/close <= high): a warning, an error with ``strict=True``.
- Lost digits: values rounded to a DECIMAL column's scale that had non-zero digits beyond
  it (129.76819 -> 129.77), and timestamps cut below a microsecond: one warning per column
  with the count, the first row and ``value -> stored``; an error with ``strict=True``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import difflib
import hashlib
import json
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .. import _frames
from .._schema.timezones import TIME_KIND_KEY
from .._sql.args import normalise_symbol
from ..errors import Remedy, ValidationError
from ..tables import GENERATED_COLUMNS, Column, TableSpec
from ..types import ExtraColumns, OnDuplicate, SymbolCase, check_choice
from .decimals import float_units
from .key_order import RANKED_FRAME_ROWS, SMALL_FRAME_ROWS, Ordered, TextCodes, in_key_order
from .soft import DataQualityWarning, check_rounding, check_soft, check_sub_microsecond

__all__ = ["DataQualityWarning", "to_polars", "validate"]


_OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE)


_MAX_SHOWN = 60  # characters of a bad value quoted in a message


# ISO 8601 as writers accept it: a date, optionally a time (minutes at least, any fraction)
# and a UTC offset. Anything else needs an explicit date_format=. The basic forms
# ("20240131", "20240131T0930", "20240131 093100") are first rewritten to these
# (_dashed), with the same meaning, as readers read them (regime_io._sql.args).
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"

_BASIC = r"^\d{8}(?:$|[T ])|^\d{4}-\d{2}-\d{2}[T ]\d{4}"
_OFFSET_TAIL = r"([.,]\d+)?([Zz]|[+-]\d{2}:?\d{2})?$"


_ISO_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?(?:[Zz]|[+-]\d{2}:?\d{2})?$"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def to_polars(data: Any, table: str) -> pl.DataFrame:
    """Accept polars (eager or lazy), pandas, Arrow, a dict of columns, one row as a dict
    (optimisation results) or a list of row dicts; return a polars DataFrame."""

    def explain(frame: Any, err: Exception) -> None:
        for name in frame.columns:  # name the column and row when a mix of kinds is the cause
            if frame[name].dtype == object:
                _check_mixed_kinds(table, str(name), frame[name].tolist())
        raise ValidationError(f"{table}: cannot convert the pandas frame: {err}", table=table) from err

    frame = _frames.to_polars(data, what=table, on_pandas_error=explain)
    if frame is not None:
        if type(data).__module__.startswith("pandas"):
            pandas_frame = _frames.pandas_index_as_columns(data, what=table)
            for name in pandas_frame.columns:
                # In an object column polars reads True as 1.0 beside numbers, and naive
                # datetimes as UTC beside zoned ones: refuse such mixes.
                if pandas_frame[name].dtype == object and frame.get_column(str(name)).dtype != pl.String:
                    _check_mixed_kinds(table, str(name), pandas_frame[name].tolist())
        return frame
    if isinstance(data, Mapping):
        # One row ({"symbol": "X", "parameters": {...}}) or columns ({"symbol": [...]}).
        if data and all(isinstance(v, (list, tuple)) for v in data.values()):
            rows: Sequence[Mapping[str, Any]] | None = None
            columns = {k: list(v) for k, v in data.items()}
            return _frame_from_rows(table, None, columns)
        rows = [data]
        return _frame_from_rows(table, rows, None)
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        if not all(isinstance(r, Mapping) for r in data):
            raise ValidationError(f"{table}: a list input must hold one dict per row", table=table)
        return _frame_from_rows(table, data, None)
    raise ValidationError(
        f"{table}: unsupported input type {type(data).__name__}; pass a polars or pandas DataFrame, "
        "a polars LazyFrame, a pyarrow Table/RecordBatch, a dict or a list of dicts",
        table=table,
    )


def _frame_from_rows(table: str, rows: Sequence[Mapping[str, Any]] | None,
                     columns: dict[str, list[Any]] | None) -> pl.DataFrame:
    if columns is None:
        assert rows is not None
        names: list[str] = []
        for r in rows:
            names.extend(k for k in r if k not in names)
        columns = {n: [r.get(n) for r in rows] for n in names}
    series = []
    for name, values in columns.items():
        if any(isinstance(v, (dict, list)) for v in values):
            # JSON-ish values (optimisation parameters) stay Python objects until encoded.
            series.append(pl.Series(name, values, dtype=pl.Object))
            continue
        _check_mixed_kinds(table, name, values)
        try:
            series.append(pl.Series(name, values, strict=False))
        except Exception as err:
            raise ValidationError(f"{table}.{name}: cannot build a column from the values: {err}",
                                  table=table, column=name) from err
    return pl.DataFrame(series)


# Kinds of Python values that must not share a column: polars would silently turn
# [1.5, "abc"] into text (and report row 0), or read naive datetimes as UTC beside zoned ones.
_CLASHING_KINDS = ({"bool", "number", "text"}, {"naive datetime", "zoned datetime"})


def _kind(value: Any) -> str | None:
    try:
        if value is None or value != value:  # None, NaN, NaT
            return None
    except (TypeError, ValueError):  # pandas.NA refuses comparison
        return None
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, numbers.Number):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dt.datetime):
        return "naive datetime" if value.tzinfo is None else "zoned datetime"
    return None


def _check_mixed_kinds(table: str, name: str, values: Sequence[Any]) -> None:
    """Raise when a column of Python values mixes numbers, booleans and text (or naive and
    zoned datetimes), naming the first row whose kind differs from the first value's."""
    first: str | None = None
    for row, value in enumerate(values):
        kind = _kind(value)
        if kind is None:
            continue
        if first is None:
            first = kind
        elif kind != first and any(kind in group and first in group for group in _CLASHING_KINDS):
            raise ValidationError(
                f"{table}.{name}: mixes {first} and {kind} values (first bad row {row}: {_short(value)})",
                table=table, column=name, row=row, value=value)


def _first(mask: pl.Series) -> int | None:
    idx = mask.arg_true()
    return int(idx[0]) if len(idx) else None


def _fail(spec: TableSpec, col: str, row: int, value: Any, why: str,
          fixes: tuple[Remedy, ...] = ()) -> ValidationError:
    return ValidationError(
        f"{spec.key}.{col}: {why} (first bad row {row}: {_short(value)})",
        table=spec.key, column=col, row=row, value=value, fixes=fixes,
    )


def validate(
    spec: TableSpec,
    data: Any,
    *,
    storage_timezone: str = "UTC",
    extra_columns: ExtraColumns = "error",
    on_duplicate: OnDuplicate = "error",
    strict: bool = False,
    date_format: str | None = None,
    symbol_case: SymbolCase = "upper",
) -> pa.Table:
    """Check ``data`` against ``spec``; return an Arrow table with exactly ``spec.arrow_schema()``,
    its rows sorted by the natural key.

    Raises:
        ValidationError: naming the table, column, first bad row and value.

    Example:
        >>> import polars as pl
        >>> from regime_io.tables import TABLES
        >>> frame = pl.DataFrame({"symbol": ["NIFTY"], "timestamp": ["2024-01-02 09:15"],
        ...     "regime": ["bull"], "confidence": [87.456]})
        >>> validate(TABLES["market_regimes_1min"], frame).column("confidence")[0].as_py()
        Decimal('87.46')
    """
    check_choice("extra_columns", extra_columns, ExtraColumns)
    check_choice("on_duplicate", on_duplicate, OnDuplicate)
    df = to_polars(data, spec.key)
    if df.width == 0:
        raise ValidationError(f"{spec.key}: the input has no columns; expected {', '.join(spec.column_names)}",
                              table=spec.key)
    _check_columns(spec, df, extra_columns)
    n = df.height
    out: dict[str, pl.Series] = {}
    lossy: list[tuple[str, str, int, Any]] = []
    units: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}  # float prices as stored (check_soft)
    # Key and vocabulary text columns' TextCodes (frames key_order ranks): taken once.
    texts: dict[str, TextCodes] | None = {} if SMALL_FRAME_ROWS < n <= RANKED_FRAME_ROWS else None
    present = set(df.columns)  # (df.columns builds a list per call)
    for col in spec.columns:
        if col.name in present:
            series = df.get_column(col.name)
        elif col.computed:
            series = pl.Series(col.name, [None] * n, dtype=pl.Null)
        elif col.nullable:
            continue  # absent: all NULL, added as Arrow nulls at the end (no checks apply)
        else:  # unreachable: _check_columns reported it
            raise AssertionError(col.name)
        if col.name == "symbol" and series.dtype in (pl.String, pl.Categorical, pl.Enum):
            series = series.cast(pl.String)
            if texts is not None:
                texts["symbol"] = TextCodes.of(series)
            series = _normalise_symbols(series, symbol_case, texts)
        if col.kind == "decimal" and series.dtype == pl.Float64:
            # Converted and judged by one float_units pass (it was run twice: ~0.1 s of a
            # 1M-bar write with four price columns).
            out[col.name], snapped = _float_to_decimal(spec, col, series)
            check_rounding(spec, col, series, lossy, snapped=snapped)
            units[col.name] = (snapped[0], series.is_not_null().to_numpy() if series.null_count() else None)
            continue
        out[col.name] = _convert(spec, col, series, storage_timezone, date_format, texts)
        if col.kind == "decimal":
            check_rounding(spec, col, series, lossy)
        elif col.kind == "timestamp":
            check_sub_microsecond(spec, col, series, lossy)
    frame = pl.DataFrame(list(out.values()))
    frame = _fill_computed(spec, frame)
    for col in spec.columns:
        if col.name not in out:
            continue
        column = frame.get_column(col.name)
        if not col.nullable and column.null_count():  # a stored count: no pass over the data
            row = _first(column.is_null())
            assert row is not None
            raise _fail(spec, col.name, row, None, "NULL in a NOT NULL column")
    _check_non_negative(spec, frame)
    check_soft(spec, frame, strict=strict, lossy=lossy, units=units)
    frame, order = _check_duplicates(spec, frame, on_duplicate, texts)
    schema = spec.arrow_schema()
    kind = _time_kind(df, spec.time_column)
    if kind is not None:  # for the time zone rule (regime_io._schema.timezones), read by the writer
        schema = schema.with_metadata({TIME_KIND_KEY: kind})
    n = frame.height  # fewer than the input's rows after on_duplicate="keep_last"
    arrays = []
    for c in spec.columns:
        if c.name not in out:
            arrays.append(pa.nulls(n, c.arrow_type))  # absent (all NULL): nothing to put in order
        else:
            values = _arrow_column(frame, c)
            arrays.append(values if order is None else values.take(order))
    return pa.Table.from_arrays(arrays, schema=schema)


def _arrow_column(frame: pl.DataFrame, col: Column) -> pa.Array | pa.ChunkedArray:
    values = frame.get_column(col.name).to_arrow(compat_level=_ARROW)
    return values if values.type == col.arrow_type else values.cast(col.arrow_type)  # a cast costs ~25 us


# Plain Arrow types (string, not string_view), which the casts above and pyarrow's
# compute functions take directly.
_ARROW = pl.CompatLevel.oldest()


def _time_kind(df: pl.DataFrame, name: str | None) -> str | None:
    """"aware" or "naive": how the input's time column arrived (None: no rows to tell)."""
    if name is None or name not in df.columns or df.height == 0:
        return None
    dtype = df.schema[name]
    if isinstance(dtype, pl.Datetime):
        return "aware" if dtype.time_zone is not None else "naive"
    if dtype == pl.String:
        present = df.get_column(name).drop_nulls()
        if present.len() == 0:
            return None
        return "aware" if bool(present.str.strip_chars().str.contains(_OFFSET.pattern).any()) else "naive"
    return "naive"


def _normalise_symbols(s: pl.Series, case: SymbolCase, texts: dict[str, TextCodes] | None) -> pl.Series:
    """Symbols spelled as every reader looks them up (``normalise_symbol``): ``" aapl"`` is
    ``AAPL``, never a second series. Mapped over the few distinct values (polars' unique
    costs ~8 ms on 1M values, rewriting every value ~100 ms); live saves' few rows in Python;
    ``texts["symbol"]`` (when given) names them and is renamed alike."""
    codes = texts.get("symbol") if texts is not None else None
    distinct = (set(codes.dictionary.to_pylist()) if codes is not None else set(s.to_list())
                if len(s) <= SMALL_FRAME_ROWS else set(s.unique().to_list())) - {None}
    changed = {v: spelled for v in distinct if (spelled := normalise_symbol(v, case)) != v}
    if not changed:
        return s
    if texts is not None and codes is not None:
        texts["symbol"] = codes.renamed(changed)
    return s.replace(list(changed), list(changed.values())).alias(s.name)


def _check_columns(spec: TableSpec, df: pl.DataFrame, extra_columns: ExtraColumns) -> None:
    known = set(spec.column_names)
    unknown = [c for c in df.columns if c not in known and c not in GENERATED_COLUMNS]
    missing = [c.name for c in spec.columns if c.name not in df.columns and not (c.nullable or c.computed)]
    problems = []
    if missing:
        hints = []
        for name in missing:
            close = difflib.get_close_matches(name, unknown, n=1)
            hints.append(f"{name!r}" + (f" (found {close[0]!r}: misspelled?)" if close else ""))
        problems.append(f"missing required column(s) {', '.join(hints)}")
    if unknown and extra_columns == "error":
        problems.append(f"unknown column(s) {', '.join(map(repr, unknown))} (pass {{fix}} to drop them)")
    if problems:
        raise ValidationError(
            f"{spec.key}: {'; '.join(problems)}; the table has {', '.join(spec.column_names)}",
            table=spec.key, column=(missing or unknown)[0],
            fixes=(Remedy.argument("extra_columns", "ignore"),) if unknown and extra_columns == "error" else (),
        )


def _convert(spec: TableSpec, col: Column, s: pl.Series, tz: str, date_format: str | None,
             texts: dict[str, TextCodes] | None = None) -> pl.Series:
    if s.dtype == pl.Null:
        return pl.Series(col.name, [None] * len(s), dtype=_polars_type(col))
    if col.kind == "text":
        return _to_text(spec, col, s, texts)
    if col.kind == "decimal":
        return _to_decimal(spec, col, s)
    if col.kind == "bigint":
        return _to_bigint(spec, col, s)
    if col.kind == "timestamp":
        return _to_timestamp(spec, col, s, tz, date_format)
    if col.kind == "date":
        return _to_date(spec, col, s, tz, date_format)
    return _to_json(spec, col, s)


def _polars_type(col: Column) -> pl.DataType:
    if col.kind == "decimal":
        return pl.Decimal(col.precision, col.scale or 0)
    return {"text": pl.String(), "json": pl.String(), "timestamp": pl.Datetime("us"), "date": pl.Date(),
            "bigint": pl.Int64()}[col.kind]


def _wrong_type(spec: TableSpec, col: Column, s: pl.Series, expected: str) -> ValidationError:
    row = _first(s.is_not_null()) or 0
    return _fail(spec, col.name, row, s[row] if len(s) else None, f"expected {expected}, got {s.dtype} values")


def _to_text(spec: TableSpec, col: Column, s: pl.Series, texts: dict[str, TextCodes] | None = None) -> pl.Series:
    """``s`` as checked text (``texts``: a key or vocabulary column's TextCodes are read,
    taken first when missing, and renamed with the values)."""
    if s.dtype in (pl.Categorical, pl.Enum):
        s = s.cast(pl.String)
    if s.dtype != pl.String:
        raise _wrong_type(spec, col, s, "text")
    codes = None
    # (Not a computed column: run_id is filled after these checks, so its codes would be stale.)
    if texts is not None and not col.computed and (col.name in spec.primary_key or col.aliases is not None
                                                   or col.vocabulary is not None):
        codes = texts.get(col.name) or TextCodes.of(s)
        texts[col.name] = codes
    # Every check in one pass (each polars call costs ~0.1 ms whatever the size, which
    # is most of a rolling save's few rows); the offending row is looked up only on failure.
    # With codes, over the distinct values alone.
    has_nul, has_empty, longest = _text_stats(s if codes is None else codes.dictionary)
    if has_nul:
        nul = s.str.contains("\x00", literal=True).fill_null(False)
        row = _first(nul)
        assert row is not None
        raise _fail(spec, col.name, row, s[row], "contains a NUL byte, which PostgreSQL text cannot store")
    if has_empty and col.name in spec.primary_key:
        # The readers refuse "" as a symbol or timeframe argument, so such rows could be
        # written but never asked for.
        row = _first((s.str.len_bytes() == 0).fill_null(False))
        assert row is not None
        raise _fail(spec, col.name, row, s[row], "is empty; key columns need at least one character")
    if col.aliases is not None or col.vocabulary is not None:
        # The same Column.canonical() the readers filter with, over the few distinct values.
        distinct = s.unique().to_list() if codes is None else codes.dictionary.to_pylist()
        spellings = [v for v in distinct if v is not None]
        mapping = {v: col.canonical(v) for v in spellings}
        if None in mapping.values():
            bad = s.is_in([v for v, c in mapping.items() if c is None]).fill_null(False)
            row = _first(bad)
            assert row is not None
            raise _fail(spec, col.name, row, s[row], f"not an accepted value; allowed: {col.accepted}")
        if any(k != v for k, v in mapping.items()):
            s = s.replace_strict(list(mapping), list(mapping.values()), default=None,
                                 return_dtype=pl.String).alias(col.name)
            if texts is not None and codes is not None:
                codes = texts[col.name] = codes.renamed(mapping)
            # A value changed; otherwise the first pass's answer stands.
            longest = _text_stats(s if codes is None else codes.dictionary)[2]
    assert col.length is not None
    if (longest or 0) <= col.length:
        return s  # no value has more bytes, so none has more characters: skip counting them
    long = (s.str.len_chars() > col.length).fill_null(False)
    if long.any():
        row = _first(long)
        assert row is not None
        raise _fail(spec, col.name, row, s[row], f"longer than VARCHAR({col.length}) ({len(s[row])} characters)")
    return s


def _text_stats(s: pl.Series | pa.Array) -> tuple[bool, bool, int]:
    """(any NUL byte, any empty string, most bytes in a value) of a text column (or of its
    distinct values, a TextCodes dictionary).

    Arrow's kernels: ~30 us for a live save's few rows where a polars select costs
    ~290 us, and 19 ms vs 22 ms on 1M values.
    """
    values = s.to_arrow(compat_level=_ARROW) if isinstance(s, pl.Series) else s
    # One aggregate (min_max) and a popcount: each pc.any()/pc.max() call costs ~15-20 us.
    shortest, longest = pc.min_max(pc.binary_length(values)).values()
    return _has_nul(values), shortest.as_py() == 0, int(longest.as_py() or 0)


def _has_nul(values: pa.Array | pa.ChunkedArray) -> bool:
    """Whether a text column holds a NUL byte: the bytes between the first and last
    offset counted at once (1M symbols: ~0.4 ms, against ~6 ms for Arrow's substring
    search); a chunk with nulls, whose slots may point anywhere, is searched as before."""
    for chunk in values.chunks if isinstance(values, pa.ChunkedArray) else [values]:
        if len(chunk) == 0:
            continue
        large = pa.types.is_large_string(chunk.type) or pa.types.is_large_binary(chunk.type)
        plain = pa.types.is_string(chunk.type) or pa.types.is_binary(chunk.type) or large
        if chunk.null_count or not plain:
            if pc.match_substring(chunk, "\x00").true_count:
                return True
            continue
        _, offsets_buffer, data = chunk.buffers()
        offsets = np.frombuffer(offsets_buffer, dtype=np.int64 if large else np.int32)
        lo, hi = int(offsets[chunk.offset]), int(offsets[chunk.offset + len(chunk)])
        if hi > lo and data is not None:
            raw = np.frombuffer(data, dtype=np.uint8)[lo:hi]
            if np.count_nonzero(raw) != len(raw):
                return True
    return False


def _to_decimal(spec: TableSpec, col: Column, s: pl.Series) -> pl.Series:
    assert col.precision is not None and col.scale is not None
    if s.dtype == pl.Boolean or not (s.dtype.is_numeric()):
        raise _wrong_type(spec, col, s, f"numbers for NUMERIC({col.precision},{col.scale})")
    if s.dtype == pl.Float64:
        return _float_to_decimal(spec, col, s)[0]
    if s.dtype.is_float():
        finite = s.is_finite().fill_null(True)
        if not finite.all():
            row = _first(~finite)
            assert row is not None
            raise _fail(spec, col.name, row, s[row], "NaN and infinity cannot be stored in NUMERIC")
        # Values too large for the staging decimal would overflow it silently: check on floats first.
        big = (s.abs() >= col.max_abs).fill_null(False)
        if big.any():
            row = _first(big)
            assert row is not None
            raise _fail(spec, col.name, row, s[row],
                        f"overflows NUMERIC({col.precision},{col.scale}) (|value| must be < {col.max_abs:g})")
    # Snap to scale+4 places, then round half away from zero to the column's scale.
    wide = s.cast(pl.Decimal(38, col.scale + 4), strict=False)
    rounded = wide.round(col.scale, mode="half_away_from_zero")
    bound = decimal.Decimal(col.max_abs)
    over = (rounded.abs() >= bound).fill_null(False) | (rounded.is_null() & s.is_not_null())
    if over.any():
        row = _first(over)
        assert row is not None
        raise _fail(spec, col.name, row, s[row],
                    f"overflows NUMERIC({col.precision},{col.scale}) after rounding to {col.scale} places "
                    f"(|value| must be < {col.max_abs:g})")
    return rounded.cast(pl.Decimal(col.precision, col.scale)).alias(col.name)


def _float_to_decimal(spec: TableSpec, col: Column, s: pl.Series) -> tuple[pl.Series, tuple[np.ndarray, np.ndarray]]:
    """The float64 case of :func:`_to_decimal` in integer arithmetic (3-4x faster on 1M rows),
    and the :func:`~regime_io._write.decimals.float_units` it stored (for check_rounding).

    Same checks and messages as the Decimal path; the values are
    :func:`~regime_io._write.decimals.float_units`: at scales up to 3 exactly the Decimal
    path's (``rint(x * 10**(s+4))`` is polars' float -> Decimal(38, s+4) cast, the snap),
    at wider scales a large value snaps to the 15 digits a double holds.
    """
    assert col.precision is not None and col.scale is not None
    values = s.to_numpy()  # nulls are NaN here
    nulls = s.null_count()
    valid = s.is_not_null().to_numpy() if nulls else np.ones(len(values), dtype=bool)
    not_finite = ~np.isfinite(values) & valid
    if not_finite.any():
        row = int(np.argmax(not_finite))
        raise _fail(spec, col.name, row, s[row], "NaN and infinity cannot be stored in NUMERIC")
    big = np.abs(values) >= col.max_abs  # False for NaN (nulls)
    if big.any():
        row = int(np.argmax(big))
        raise _fail(spec, col.name, row, s[row],
                    f"overflows NUMERIC({col.precision},{col.scale}) (|value| must be < {col.max_abs:g})")
    signed, lost = float_units(values, col.scale)
    over = np.abs(signed) >= 10**col.precision
    if over.any():
        row = int(np.argmax(over))
        raise _fail(spec, col.name, row, s[row],
                    f"overflows NUMERIC({col.precision},{col.scale}) after rounding to {col.scale} places "
                    f"(|value| must be < {col.max_abs:g})")
    # decimal128 values are 16-byte little-endian integers in units of 10**-scale.
    words = np.empty((len(signed), 2), dtype=np.int64)
    words[:, 0] = signed
    np.right_shift(signed, 63, out=words[:, 1])
    validity = pa.array(valid).buffers()[1] if nulls else None
    arrow = pa.Array.from_buffers(pa.decimal128(col.precision, col.scale), len(signed),
                                  [validity, pa.py_buffer(words)], null_count=nulls)
    return pl.Series(col.name, arrow), (signed, lost)


def _to_bigint(spec: TableSpec, col: Column, s: pl.Series) -> pl.Series:
    if s.dtype == pl.Boolean or not s.dtype.is_numeric():
        raise _wrong_type(spec, col, s, "whole numbers")
    if s.dtype.is_float() or isinstance(s.dtype, pl.Decimal):
        f = s.cast(pl.Float64)
        bad = (~f.is_finite() | (f != f.floor()) | (f.abs() >= 2.0**63)).fill_null(False)
        if bad.any():
            row = _first(bad)
            assert row is not None
            raise _fail(spec, col.name, row, s[row], "expected whole numbers for BIGINT")
        return f.cast(pl.Int64).alias(col.name)
    if s.dtype in (pl.UInt64,):
        over = (s > 2**63 - 1).fill_null(False)
        if over.any():
            row = _first(over)
            assert row is not None
            raise _fail(spec, col.name, row, s[row], "too large for BIGINT")
    return s.cast(pl.Int64)


def _to_timestamp(spec: TableSpec, col: Column, s: pl.Series, tz: str, date_format: str | None) -> pl.Series:
    if s.dtype == pl.String:
        s = _parse_datetime_strings(spec, col, s, date_format)
    elif s.dtype == pl.Date:
        s = s.cast(pl.Datetime("us"))
    elif not isinstance(s.dtype, pl.Datetime):
        raise _wrong_type(spec, col, s, "datetimes (or ISO 8601 strings)")
    zone = s.dtype.time_zone  # type: ignore[attr-defined]
    if zone is not None:
        s = s.dt.convert_time_zone(tz).dt.replace_time_zone(None)
    return s.cast(pl.Datetime("us")).alias(col.name)


def _parse_with_format(spec: TableSpec, col: Column, s: pl.Series, date_format: str, *, date: bool) -> pl.Series:
    """Strings in the caller's explicit layout; the first that does not fit is named."""
    stripped = s.str.strip_chars()
    try:
        parsed = (stripped.str.to_date(format=date_format, strict=False) if date
                  else stripped.str.to_datetime(format=date_format, time_unit="us", strict=False))
    except Exception as err:  # polars refuses the format itself
        raise ValidationError(f"{spec.key}.{col.name}: date_format {date_format!r} is not usable: "
                              f"{str(err).splitlines()[0]}", table=spec.key, column=col.name,
                              value=date_format) from None
    bad = parsed.is_null() & stripped.is_not_null()
    if bad.any():
        row = _first(bad)
        assert row is not None
        raise _fail(spec, col.name, row, s[row], f"does not match date_format {date_format!r}")
    return parsed.alias(col.name)


def _dashed(stripped: pl.Series) -> pl.Series:
    """ISO 8601 basic forms in the extended form: ``20240131`` -> ``2024-01-31``,
    ``20240131T0930`` -> ``2024-01-31T09:30``, ``20240131 093100`` -> ``2024-01-31 09:31:00``.
    A column with none (the usual case) costs one regex scan."""
    if not stripped.str.contains(_BASIC).fill_null(False).any():
        return stripped
    out = stripped.str.replace(r"^(\d{4})(\d{2})(\d{2})($|[T ])", "${1}-${2}-${3}${4}")
    out = out.str.replace(r"^(\d{4}-\d{2}-\d{2}[T ])(\d{2})(\d{2})(\d{2})" + _OFFSET_TAIL, "${1}${2}:${3}:${4}${5}${6}")
    return out.str.replace(r"^(\d{4}-\d{2}-\d{2}[T ])(\d{2})(\d{2})" + _OFFSET_TAIL, "${1}${2}:${3}${4}${5}")


def _check_iso(spec: TableSpec, col: Column, stripped: pl.Series, original: pl.Series, *, date: bool) -> None:
    """Refuse strings that are not ISO 8601: '04/03/2024' is 4 March or 3 April."""
    pattern = _ISO_DATE if date else _ISO_TIMESTAMP
    bad = ~stripped.str.contains(pattern).fill_null(True)
    if bad.any():
        row = _first(bad)
        assert row is not None
        example = ("'2024-01-25' or '20240125'" if date
                   else "'2024-03-04 09:15', '2024-03-04T09:15:00+05:30' or '20240304T0915'")
        raise _fail(spec, col.name, row, original[row],
                    f"is not ISO 8601 (e.g. {example}); day-first and month-first layouts are ambiguous, so "
                    "they are refused: pass {fix} (e.g. {fix}) or datetime values",
                    (Remedy.argument("date_format"), Remedy.argument("date_format", "%d/%m/%Y %H:%M")))


def _parse_datetime_strings(spec: TableSpec, col: Column, s: pl.Series, date_format: str | None) -> pl.Series:
    if date_format is not None:
        return _parse_with_format(spec, col, s, date_format, date=False)
    stripped = _dashed(s.str.strip_chars())
    _check_iso(spec, col, stripped, s, date=False)
    has_offset = stripped.str.contains(_OFFSET.pattern + "", literal=False).fill_null(False)
    present = stripped.is_not_null()
    n_offset = int(has_offset.sum())
    if 0 < n_offset < int(present.sum()):
        row = _first(present & ~has_offset) if has_offset[_first(present) or 0] else _first(has_offset)
        assert row is not None
        raise _fail(spec, col.name, row, s[row],
                    "mixes timestamps with and without a UTC offset; make them all naive or all zoned")
    zone = "UTC" if n_offset else None
    source = stripped.str.replace(r"(?i)Z$", "+00:00") if n_offset else stripped
    parsed: pl.Series | None
    try:
        parsed = source.str.to_datetime(time_unit="us", time_zone=zone, strict=False)
    except Exception:  # polars could not infer one format for the whole column
        parsed = None
    if parsed is None or (parsed.is_null() & present).any():
        # Mixed precisions and other valid ISO 8601 forms polars' inference rejects.
        parsed = pl.Series(col.name, [_parse_one(v) for v in stripped], dtype=pl.Datetime("us", zone))
        bad = parsed.is_null() & present
        if bad.any():
            row = _first(bad)
            assert row is not None
            raise _fail(spec, col.name, row, s[row], "cannot parse as an ISO 8601 timestamp")
    return parsed


def _parse_one(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.timezone.utc)
    return parsed


def _to_date(spec: TableSpec, col: Column, s: pl.Series, tz: str, date_format: str | None) -> pl.Series:
    if s.dtype == pl.Date:
        return s
    if s.dtype == pl.String and date_format is not None:
        return _parse_with_format(spec, col, s, date_format, date=True)
    if s.dtype == pl.String:
        stripped = _dashed(s.str.strip_chars())
        _check_iso(spec, col, stripped, s, date=False)
        parsed = stripped.str.to_date(format="%Y-%m-%d", strict=False)
        bad = parsed.is_null() & stripped.is_not_null()
        if bad.any():
            s = _to_timestamp(spec, col, s, tz, None)  # "2024-01-25 00:00" is date-like too
        else:
            return parsed.alias(col.name)
    if isinstance(s.dtype, pl.Datetime):
        if s.dtype.time_zone is not None:
            s = s.dt.replace_time_zone(None)
        not_midnight = (s.dt.truncate("1d") != s).fill_null(False)
        if not_midnight.any():
            row = _first(not_midnight)
            assert row is not None
            raise _fail(spec, col.name, row, s[row], "expected a date; this timestamp has a time of day")
        return s.dt.date().alias(col.name)
    raise _wrong_type(spec, col, s, "dates")


def _to_json(spec: TableSpec, col: Column, s: pl.Series) -> pl.Series:
    values: list[str | None] = []
    if isinstance(s.dtype, pl.Struct):
        items: list[Any] = s.to_list()
    elif s.dtype in (pl.String, pl.Object):
        items = s.to_list()
    else:
        raise _wrong_type(spec, col, s, "dicts, JSON strings or a struct column")
    for row, item in enumerate(items):
        if item is None:
            values.append(None)
            continue
        if isinstance(item, str):
            try:
                item = json.loads(item)
            except json.JSONDecodeError as err:
                raise _fail(spec, col.name, row, item, f"not valid JSON ({err.msg})") from None
        try:
            values.append(json.dumps(item, sort_keys=True, separators=(",", ":"), allow_nan=False,
                                     default=_json_default))
        except (TypeError, ValueError) as err:
            raise _fail(spec, col.name, row, item, f"not JSON-serialisable ({err})") from None
        if "\\u0000" in values[-1]:  # type: ignore[operator]
            raise _fail(spec, col.name, row, item, "contains a NUL character, which JSONB cannot store")
    return pl.Series(col.name, values, dtype=pl.String)


def _json_default(value: Any) -> Any:
    # Numpy scalars and dates are common in optimiser output; everything else is an error.
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _fill_computed(spec: TableSpec, frame: pl.DataFrame) -> pl.DataFrame:
    """Fill ``run_id`` of optimisation results with a content hash where missing."""
    computed = [c for c in spec.columns if c.computed]
    for col in computed:
        if not frame.get_column(col.name).is_null().any():
            continue
        others = [c for c in spec.column_names if c != col.name]
        hashes = [
            hashlib.sha256(json.dumps([_hashable(v) for v in row], separators=(",", ":")).encode()).hexdigest()
            for row in frame.select(others).iter_rows()
        ]
        frame = frame.with_columns(
            pl.when(pl.col(col.name).is_null()).then(pl.Series(hashes)).otherwise(pl.col(col.name)).alias(col.name)
        )
    return frame


def _hashable(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime, decimal.Decimal)):
        return str(value)
    return value


def _check_non_negative(spec: TableSpec, frame: pl.DataFrame) -> None:
    present = set(frame.columns)
    for name in spec.non_negative:
        if name not in present:
            continue  # absent: all NULL
        column = frame.get_column(name)
        # The minimum first (one aggregate, nulls skipped): a comparison, fill_null and any()
        # took 0.57 ms on a restated day's 14,400 volumes, most of its validation's 8.5.
        lowest = column.min()
        if lowest is None or (isinstance(lowest, int | float | decimal.Decimal) and lowest >= 0):
            continue
        negative = (column < 0).fill_null(False)
        if negative.any():
            row = _first(negative)
            assert row is not None
            raise _fail(spec, name, row, frame.get_column(name)[row], "must not be negative")


def _check_duplicates(spec: TableSpec, frame: pl.DataFrame, on_duplicate: OnDuplicate,
                      texts: dict[str, TextCodes] | None = None) -> Ordered:
    """Refuse (or drop all but the last of) rows sharing a natural key; return the rows
    and their key order (see :func:`~regime_io._write.key_order.in_key_order`; ``texts``:
    the key's TextCodes of these rows)."""
    key = list(spec.primary_key)
    ordered = in_key_order(frame, key, texts=texts)
    if ordered is not None:
        return ordered
    dup = frame.select(key).is_duplicated()
    if on_duplicate == "keep_last":
        unique = frame.unique(subset=key, keep="last", maintain_order=True)
        ordered = in_key_order(unique, key)
        assert ordered is not None  # no key left twice
        return ordered
    row = _first(dup)
    assert row is not None
    values = frame.row(row, named=True)
    shown = ", ".join(f"{k}={values[k]!s}" for k in key)
    count = int(dup.sum())
    raise ValidationError(
        f"{spec.key}: duplicate natural key in the batch ({count} rows share a key; first bad row {row}: {shown}); "
        "pass {fix} to keep the last of each",
        table=spec.key, column=key[0], row=row, value=values[key[0]],
        fixes=(Remedy.argument("on_duplicate", "keep_last"),),
    )
