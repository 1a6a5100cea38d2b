"""The sealed tier's chunk format: encoding, decoding and per-chunk statistics.

A chunk holds one ``chunk_by`` key's rows of one period (a calendar month) of a
time-series table as one Arrow IPC file (record batches of :data:`BATCH_ROWS` rows),
compressed with :data:`CODEC` (LZ4, time and decimals as differences; older chunks:
zstd), in the companion table
``<table>_chunks`` (DDL: :func:`regime_io._schema.ddl.chunk_table_sql`). The payload holds
the declaration's columns except the chunk key (stored once, in the chunk's row), with
the declared Arrow types: DECIMAL columns stay ``decimal128(p, s)``, so exact reads are
exact and float reads convert the same values the row tier converts.

Why Arrow IPC and not Parquet (the first codec, zstd; 1M one-minute bars, 10 symbols x 100,000
minutes, random-walk prices with 2 decimals, 30 symbol-month chunks, 2 shared cores):

==================  ==========  ==========  ==========
codec               bytes/bar   encode      decode
==================  ==========  ==========  ==========
Arrow IPC + zstd    16.3        0.2-0.3 s   0.14-0.24 s
Parquet + zstd      29.3        1.6-2.0 s   1.2-1.3 s
==================  ==========  ==========  ==========

(Same data with decimals as int64: IPC 16.3, Parquet 25.9 bytes/bar.) IPC is smaller on
this data, 5x faster to decode and needs no schema translation; see ``docs/schema.md``.

Float reads: Arrow's ``decimal128 -> float64`` cast is not correctly rounded (on 300,000
random NUMERIC(10,2) values 13% differ in the last bit from PostgreSQL's ``numeric::float8``),
so :func:`decimal_to_float` divides the unscaled integer by ``10**scale`` instead: both
are exact doubles (p <= 15), and IEEE division is correctly rounded, like strtod.

Example:
    >>> import pyarrow as pa, datetime as dt
    >>> from regime_io.tables import TABLES
    >>> spec = TABLES["market_regimes_1min"]
    >>> rows = pa.table({"timestamp": [dt.datetime(2024, 1, 2, 9, 15)], "regime": ["TRENDING"],
    ...                  "confidence": pa.array(["0.95"]).cast(pa.decimal128(5, 2))})
    >>> payload = encode(spec, conform_payload(spec, rows))
    >>> decode(spec, payload, fingerprint(spec)).column("confidence").to_pylist()
    [Decimal('0.95')]
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import hashlib
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from ..errors import SchemaError
from ..tables import TableSpec
from .chunk_bytes import FILE_END, Segment, footer_blocks, framed, patch_segments

__all__ = [
    "CODEC", "PATCH_ROWS", "add_segment", "apply_patch", "as_type", "chunk_stats", "conform_payload",
    "decimal_from_unscaled", "decimal_to_float", "decode", "decode_patch", "encode", "fingerprint", "json_value",
    "key_positions", "last_row_json", "payload_key", "period_from_number", "period_number", "period_of",
    "window_bytes",
]


def chunk_stat_columns(spec: TableSpec) -> tuple[str, ...]:
    """Payload columns whose min/max each chunk records for pruning (all but time and JSON)."""
    return tuple(n for n in spec.chunk_columns
                 if n != spec.time_column and spec.column(n).kind != "json")


# The codec new chunks are written with, and every codec this version reads.
# "arrow-ipc-lz4-delta" (issue 23): time and decimal columns as integer differences
# within each record batch (int32 when every difference fits), LZ4 frames. On a
# 44,000-row symbol-month of one-minute bars (2 cores): 17.1 bytes/bar and 0.56 ms to
# read the IPC file, against 15.8 bytes/bar and 2.76 ms for "arrow-ipc-zstd" (the
# decimal128 prices are 16 bytes a value before compression, and zstd's decompression
# of them was most of a sealed read). ArcticDB reads LZ4 too.
#
# "arrow-ipc-lz4-narrow" (issue 23, its successor): the differences without each batch's
# first value (kept in the schema metadata), so they fit int8/int16 for prices, and
# integer columns without nulls (volume) in the narrowest type that holds them. The same
# month: 12.0 bytes/bar instead of 17.2, and its LZ4 batches decompressed in 60 us
# instead of 365 (most of what LZ4 rebuilt were the high bytes of int32 differences).
# Earlier versions of this library refuse the new name with a SchemaError instead of
# reading the differences wrong.
#
# "arrow-ipc-lz4-rel" (issue 23, round 11): a decimal column that differs from another of
# the same scale by less than it differs from its own previous value (a bar's open, high
# and low against its close) is stored as that difference, kind ``r``: a read adds two
# columns instead of running a sum over each (numpy's running sum costs ~2.3 ns a value
# on the 2-core Xeon, the adds a fraction of that; 4 prices -> 1 summed), in slightly
# fewer bytes (see _relative).
RELATIVE_CODEC = "arrow-ipc-lz4-rel"
CODEC = RELATIVE_CODEC
NARROW_CODEC = "arrow-ipc-lz4-narrow"
DELTA_CODEC = "arrow-ipc-lz4-delta"
ZSTD_CODEC = "arrow-ipc-zstd"
CODECS = (RELATIVE_CODEC, NARROW_CODEC, DELTA_CODEC, ZSTD_CODEC)


def payload_schema(spec: TableSpec) -> pa.Schema:
    """The Arrow schema of a chunk's payload: the declared types, chunk key left out."""
    return spec.chunk_schema()


def fingerprint(spec: TableSpec) -> str:
    """A short hash of the payload schema (names, types, nullability): a chunk written
    under another declaration is conformed on decode (new nullable columns as nulls).
    Remembered per declaration object (declarations hold dicts, so they are not
    hashable): a read of 30 chunks asked for it 60 times, 3 ms of a 55 ms read."""
    known = _FINGERPRINTS.get(id(spec))
    if known is not None and known[0] is spec:
        return known[1]
    text = ";".join(f"{f.name}:{f.type}:{int(f.nullable)}" for f in payload_schema(spec))
    value = hashlib.sha1(text.encode()).hexdigest()[:16]
    if len(_FINGERPRINTS) >= 256:  # declarations made on the fly: keep the memo small
        _FINGERPRINTS.clear()
    _FINGERPRINTS[id(spec)] = (spec, value)
    return value


_FINGERPRINTS: dict[int, tuple[TableSpec, str]] = {}


def sort_keys(spec: TableSpec) -> list[tuple[str, str]]:
    """Row order inside a chunk: the natural key without the chunk key, time first."""
    time_col = spec.time_column or "timestamp"
    rest = [c for c in spec.primary_key if c not in spec.chunk_by and c != time_col]
    return [(time_col, "ascending"), *((c, "ascending") for c in rest)]


def conform_payload(spec: TableSpec, table: pa.Table) -> pa.Table:
    """``table`` reduced to the payload columns in declared order and types, sorted."""
    schema = payload_schema(spec)
    arrays = []
    for f in schema:
        if f.name not in table.column_names and f.nullable:  # a nullable column left out: nulls
            arrays.append(pa.chunked_array([pa.nulls(table.num_rows, f.type)]))
            continue
        column = table.column(f.name)
        arrays.append(column.cast(f.type) if column.type != f.type else column)
    out = pa.Table.from_arrays(arrays, schema=schema)
    if spec.time_column is not None and payload_key(spec) == [spec.time_column] and out.num_rows > 1:
        # Time alone is the key: rows already in strictly increasing time (a backfill's
        # series, cut from time-ordered input) need no sort (~2 ms a 33,000-row chunk).
        ts = out.column(spec.time_column)
        if not ts.null_count:
            values = ts.cast(pa.int64()).to_numpy()
            if bool(np.all(values[1:] > values[:-1])):
                return out
    return out.sort_by(sort_keys(spec))


# Rows per record batch of a payload. The IPC file's footer indexes the batches and the
# schema metadata lists each batch's first timestamp, so a read of one day decodes one
# or two batches instead of the month (a 41,760-row symbol-month, CPU time: whole 4.6 ms,
# one batch 0.9 ms). Measured: 8,192 rows cost +0.1% bytes and +30% CPU to decode
# whole against one batch; 4,096 rows +2.4% bytes and +100% CPU.
BATCH_ROWS = 8192


# Unscaled values of up to 15 digits are exact doubles (2**53 ~ 9.0e15), so dividing by
# 10**scale rounds once, correctly; NUMERIC(16, 8) (price_scale 8) takes the text path.
_EXACT_DOUBLE_DIGITS = 15


_STARTS_KEY = b"regime_io.batch_starts"


_DELTA_KEY = b"regime_io.delta"  # "column=d32|d64,..." : columns stored as differences
_FIRSTS_KEY = b"regime_io.firsts"  # "column:v,v,...;..." : each batch's first value (CODEC)


def encode(spec: TableSpec, table: pa.Table, *, codec: str = CODEC) -> bytes:
    """One payload: ``table`` (already :func:`conform_payload`-ed, so sorted by time) as
    an Arrow IPC file of :data:`BATCH_ROWS`-row batches, written with ``codec``."""
    table = table.combine_chunks()
    time_col = table.column(spec.time_column or "timestamp")
    starts = [time_col[i].value for i in range(0, table.num_rows, BATCH_ROWS)]
    metadata = {_STARTS_KEY: ",".join(map(str, starts)).encode()}
    compression = "zstd"
    # (By name, not by CODEC: tests write older codecs by setting CODEC.)
    if codec in (RELATIVE_CODEC, NARROW_CODEC, DELTA_CODEC):
        table, deltas, firsts = _to_deltas(table, narrow=codec != DELTA_CODEC, relative=codec == RELATIVE_CODEC)
        metadata[_DELTA_KEY] = ",".join(f"{k}={v}" for k, v in deltas.items()).encode()
        if firsts:
            metadata[_FIRSTS_KEY] = ";".join(f"{k}:{','.join(map(str, v))}" for k, v in firsts.items()).encode()
        compression = "lz4"
    elif codec != ZSTD_CODEC:
        raise ValueError(f"unknown codec {codec!r}")
    schema = table.schema.with_metadata(metadata)
    sink = pa.BufferOutputStream()
    # Buffers compressed on the calling thread: LZ4 is faster than handing each buffer to
    # Arrow's pool (a 1,440-row patch 133 -> 61 us, a 44,640-row month 2.3 -> 1.7 ms), and
    # write_chunks already encodes chunks side by side.
    options = ipc.IpcWriteOptions(compression=compression, use_threads=False)
    with ipc.new_file(sink, schema, options=options) as writer:
        writer.write_table(table.replace_schema_metadata(schema.metadata), max_chunksize=BATCH_ROWS)
    return sink.getvalue().to_pybytes()


def _unscaled(array: pa.Array) -> np.ndarray:
    """The int64 values behind a timestamp or a ``decimal128(p <= 18)`` array without nulls
    (read from the data buffer: a cast and to_numpy took ~25 us of a 1,440-row patch's
    encoding)."""
    if pa.types.is_timestamp(array.type):
        return np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset: array.offset + len(array)]
    words = np.frombuffer(array.buffers()[1], dtype=np.int64)[2 * array.offset: 2 * (array.offset + len(array))]
    return words[0::2].copy()  # little-endian 128-bit: the low word is the value for p <= 18


_WIDTHS = ((8, np.int8), (16, np.int16), (32, np.int32), (64, np.int64))


def _narrowest(values: np.ndarray) -> tuple[int, type[np.signedinteger[Any]]]:
    """The narrowest signed integer type holding every value (int64 when empty)."""
    if len(values):
        lo, hi = int(values.min()), int(values.max())
        for bits, kind in _WIDTHS:
            if -(2 ** (bits - 1)) <= lo and hi < 2 ** (bits - 1):
                return bits, kind
    return 64, np.int64


def _to_deltas(table: pa.Table, *, narrow: bool,
               relative: bool = False) -> tuple[pa.Table, dict[str, str], dict[str, list[int]]]:
    """Time and decimal columns without nulls as differences within each batch, so a
    batch decodes on its own: with ``narrow`` (:data:`NARROW_CODEC`, :data:`CODEC`) each
    batch's first value goes to the returned firsts (its difference stored as 0), the
    differences take the narrowest integer type holding them, and so do integer columns
    without nulls (stored as they are: kind ``n<bits>``); else (:data:`DELTA_CODEC`) the
    first value stays in place and the differences are int32 when they all fit. With
    ``relative`` (:data:`CODEC`): decimals relative to a base column, :func:`_relative`."""
    deltas: dict[str, str] = {}
    firsts: dict[str, list[int]] = {}
    unscaled: dict[str, tuple[np.ndarray, int]] = {}  # decimal column -> its values, their differences' width
    for i, field in enumerate(table.schema):
        column = table.column(i).combine_chunks()
        kind = field.type
        if narrow and not column.null_count and pa.types.is_integer(kind) and pa.types.is_signed_integer(kind):
            values = column.to_numpy()
            bits, as_type = _narrowest(values)
            if bits < kind.bit_width:
                deltas[field.name] = f"n{bits}|int|{kind.bit_width}||{int(field.nullable)}"
                table = table.set_column(i, pa.field(field.name, pa.from_numpy_dtype(as_type), nullable=False),
                                         pa.array(values.astype(as_type)))
            continue
        if column.null_count or not (pa.types.is_timestamp(kind) or
                                     (pa.types.is_decimal(kind) and kind.precision <= 18)):
            continue
        values = _unscaled(column)
        # One subtraction over the column, then each batch's first value put back as is
        # (a 44,640-row month: 9 us, against 62 us for np.diff per batch).
        diff = np.empty_like(values)
        np.subtract(values[1:], values[:-1], out=diff[1:])
        if narrow:
            firsts[field.name] = values[::BATCH_ROWS].tolist()
            diff[::BATCH_ROWS] = 0
            bits, as_type = _narrowest(diff)
        else:
            diff[::BATCH_ROWS] = values[::BATCH_ROWS]
            bits, as_type = (32, np.int32) if _narrowest(diff)[0] <= 32 else (64, np.int64)
        # The type before the differences, so a chunk decodes without its declaration.
        was = (f"timestamp|{kind.unit}|{kind.tz or ''}" if pa.types.is_timestamp(kind)
               else f"decimal|{kind.precision}|{kind.scale}")
        deltas[field.name] = f"d{bits}|{was}|{int(field.nullable)}"
        table = table.set_column(i, pa.field(field.name, pa.from_numpy_dtype(as_type), nullable=False),
                                 pa.array(diff.astype(as_type, copy=False)))
        if pa.types.is_decimal(kind):
            unscaled[field.name] = (values, bits)
    if relative:
        table = _relative(table, unscaled, deltas, firsts)
    return table, deltas, firsts


def _relative(table: pa.Table, unscaled: dict[str, tuple[np.ndarray, int]], deltas: dict[str, str],
              firsts: dict[str, list[int]]) -> pa.Table:
    """Decimal columns stored as their difference from a base column of the same scale
    (kind ``r<bits>``, the base's name last), where that difference is no wider than the
    column's own differences: among the columns of one scale, the base is the one whose
    own differences are narrowest (the last of equals: a bar's close). On the benchmark's
    1M one-minute bars (issue 23) open, high and low all go against the close: payloads
    11.94 -> 11.77 bytes a bar, and decoding every chunk as floats 50 -> 40 ms (one
    symbol's three months 3.3 -> 2.4 ms; the relative columns land in float64 from one
    add, no int64 copy between)."""
    by_scale: dict[str, list[str]] = {}
    for name in unscaled:
        by_scale.setdefault(deltas[name].split("|")[3], []).append(name)
    for names in by_scale.values():
        if len(names) < 2:
            continue
        base = min(reversed(names), key=lambda n: unscaled[n][1])
        for name in names:
            values, own_bits = unscaled[name]
            rel = values - unscaled[base][0]
            bits, as_type = _narrowest(rel)
            if name == base or bits > own_bits:
                continue
            _, kind, precision, scale, nullable = deltas[name].split("|")
            deltas[name] = f"r{bits}|{kind}|{precision}|{scale}|{nullable}|{base}"
            del firsts[name]
            i = table.schema.get_field_index(name)
            table = table.set_column(i, pa.field(name, pa.from_numpy_dtype(as_type), nullable=False),
                                     pa.array(rel.astype(as_type, copy=False)))
    return table


_OVERLAID_KEY = b"regime_io.overlaid"  # set by _from_deltas when it wrote the patch in


def _as_float(field: pa.Field, floats: bool) -> bool:
    """Whether a decimal column stored as differences comes back as float64 (``floats``
    asked, and its unscaled values exact doubles: see :func:`decode`)."""
    return floats and pa.types.is_decimal(field.type) and field.type.precision <= _EXACT_DOUBLE_DIGITS


def _overlay_places(times: np.ndarray, overlay: pa.Table, stored: list[list[pa.Array]], schema: pa.Schema,
                    deltas: dict[str, str], time_col: str, floats: bool) -> np.ndarray | None:
    """Where each row of ``overlay`` (a patch, decoded in the same types) goes among the
    built rows (``times``: their times, sorted), or None when it cannot be written over
    them as they are built: a new time (the patch adds a row), a null, or a column
    not of fixed width (then :func:`apply_patch` lays the patch over the rows)."""
    if overlay.column_names != schema.names:
        return None
    for i, field in enumerate(schema):
        column = overlay.column(field.name)
        if column.null_count:
            return None
        if field.name in deltas:
            if column.type != (pa.float64() if _as_float(field, floats) else field.type):
                return None
        elif (column.type != field.type or any(c.null_count for c in stored[i])
              or not (pa.types.is_integer(field.type) or pa.types.is_floating(field.type))):
            return None
    wanted = overlay.column(time_col).cast(pa.int64()).to_numpy()
    at = np.searchsorted(times, wanted)
    if (at >= len(times)).any() or not bool((times[at] == wanted).all()):
        return None
    return at


def _from_deltas(columns: list[list[pa.Array]], deltas: dict[str, str], schema: pa.Schema, *, floats: bool,
                 window: tuple[int, int] | None = None, time_col: str = "",
                 overlay: pa.Table | None = None, firsts: dict[str, list[int]] | None = None) -> pa.Table:
    """Batches (``columns``: each column's arrays, one per batch; the batches of several
    payloads alike may follow one another, a column's narrowed type differing between
    them) read back in the payload's types (``schema``: the types before
    :func:`_to_deltas`; ``floats``: decimals as float64, see :func:`decode`). Each batch's
    running sum is written straight into the column's output (each batch restarts from an
    absolute value): 1M bars, 5 columns, 12.6 ms against 18.1 ms for one sum over the
    concatenated batches less the sum reached before each batch (two more passes).
    ``firsts``: each batch's first value per column where the payload keeps them apart
    (:data:`CODEC`); columns stored narrowed, not as differences, are widened back.

    ``window`` (microseconds, both ends included): only the rows of ``time_col`` (summed
    first) in it are built -- the other columns are summed whole, then sliced before the
    decimals or floats are made (a restated day: 1,440 rows built of the 16,384 of its two
    batches).

    ``overlay``: a patch's rows (same types), written over the rows of the same time as
    the columns are built -- when every time is there and nothing is null (the schema's
    metadata then says so, :data:`_OVERLAID_KEY`); a patched month read 0.33 ms faster
    than laying the patch over the built rows (:func:`apply_patch`, 44,640 rows)."""
    rows = slice(0, sum(len(c) for c in columns[0]) if columns else 0)
    times = None
    firsts = firsts or {}
    if time_col in deltas:
        times = _running_sums(columns[schema.get_field_index(time_col)], firsts.get(time_col))
        if window is not None:
            rows = _rows_in(times, window)
    places = None
    if overlay is not None and times is not None:
        places = _overlay_places(times[rows], overlay, columns, schema, deltas, time_col, floats)
    # The patch's columns when it is written over the rows, by name.
    over = {name: overlay.column(name) for name in schema.names} if places is not None and overlay is not None else {}
    # The running sums of columns others are stored relative to (kind "r"), kept for them.
    bases = {how.rsplit("|", 1)[1] for how in deltas.values() if how[0] == "r"}
    kept: dict[str, np.ndarray] = {}

    def sums(name: str) -> np.ndarray:
        if name == time_col and times is not None:
            return times
        if name in kept:
            return kept[name]
        found = _running_sums(columns[schema.get_field_index(name)], firsts.get(name))
        if name in bases:
            kept[name] = found
        return found

    unscaled_floats: dict[str, np.ndarray] = {}  # a base's unscaled values in ``rows``, as float64

    def as_floats(name: str) -> np.ndarray:
        if name not in unscaled_floats:
            unscaled_floats[name] = sums(name)[rows].astype(np.float64)
        return unscaled_floats[name]

    arrays = []
    fields = []
    for i, field in enumerate(schema):
        fields.append(field)
        column = columns[i]
        if field.name not in deltas or deltas[field.name][0] == "n":
            # One array per chunk, as the summed columns are: polars aligns a frame's
            # chunks, and a volume column in 8,192-row batches beside month-long price
            # columns split every column of 1M bars into 140 pieces (from_arrow 3.2 ms,
            # 0.7 ms aligned; every bar into polars 45.9 -> 43.1 ms, as Arrow unchanged).
            built = _joined(column, rows, field.type)
            if over:
                plain = built.to_numpy(zero_copy_only=False).copy()
                plain[places] = over[field.name].to_numpy()
                built = pa.array(plain, type=field.type)
            arrays.append(built)
            continue
        # Decimals read as floats: the int64 running sums (unscaled values of at most 15
        # digits, exact doubles, < 2**53) converted and divided by 10**scale in place, which
        # rounds once, correctly. Summing in float64 straight away was slower (a 44,640-row
        # month: 1.13 ms against 0.65: numpy's float cumsum and the int16 -> float64 copy).
        as_float = _as_float(field, floats)
        how = deltas[field.name]
        floated = None
        if how[0] == "r":  # the base's values plus the stored differences, one vectorised add
            base, rel = how.rsplit("|", 1)[1], _narrow_values(column)[rows]
            if as_float:
                # Added as doubles: integers below 2**53, so the sum is exact, the same
                # double as the integer sum converted (a 41,760-row month: 35 us a column
                # against 55 for an int64 add cast into float64 as it goes).
                floated = rel.astype(np.float64)
                floated += as_floats(base)
                values = rel
            else:
                values = np.add(sums(base)[rows], rel)
        elif as_float and field.name in bases:
            floated = as_floats(field.name).copy()
            values = floated
        else:
            values = sums(field.name)[rows]
        if pa.types.is_timestamp(field.type):
            arrays.append(pa.Array.from_buffers(field.type, len(values), [None, pa.py_buffer(values)]))
        elif as_float:
            # What decimal_to_float gives for the decimal128 of these values, without it.
            floated = values.astype(np.float64) if floated is None else floated
            floated /= float(10 ** field.type.scale)
            if over:
                floated[places] = over[field.name].to_numpy()
            arrays.append(pa.Array.from_buffers(pa.float64(), len(values), [None, pa.py_buffer(floated)]))
            fields[-1] = pa.field(field.name, pa.float64(), nullable=field.nullable)
        else:
            if over:
                values = values.copy()
                values[places] = _unscaled(over[field.name].combine_chunks())
            arrays.append(decimal_from_unscaled(pa.array(values, pa.int64()), field.type))
    metadata = {_OVERLAID_KEY: b"1"} if over else None
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=metadata))


def _narrow_values(arrays: list[pa.Array]) -> np.ndarray:
    """A column stored without nulls in narrowed batches as one numpy array (still narrow)."""
    if len(arrays) == 1:
        return arrays[0].to_numpy()
    return np.concatenate([a.to_numpy() for a in arrays]) if arrays else np.empty(0, np.int64)


def _joined(arrays: list[pa.Array], rows: slice, kind: pa.DataType) -> pa.Array:
    """The ``rows`` of a column stored as ``arrays`` (one per batch) as one array of type
    ``kind``; arrays stored narrowed (no null: "n" columns have none) are widened by
    numpy's copy (Arrow's cast took ~20 us of a 1,440-row patch segment's decode)."""
    if not arrays:
        return pa.array([], kind)
    if any(a.type != arrays[0].type for a in arrays):  # narrowed apart, in the batches of several payloads
        if any(a.null_count for a in arrays):  # (stored plain where it holds nulls)
            arrays = [a.cast(kind) for a in arrays]
        else:
            return _widened(np.concatenate([a.to_numpy() for a in arrays])[rows], kind)
    built = pa.chunked_array(arrays, arrays[0].type).slice(rows.start, rows.stop - rows.start).combine_chunks()
    return built if built.type == kind else _widened(built.to_numpy(), kind)


def _widened(values: np.ndarray, kind: pa.DataType) -> pa.Array:
    wide = values.astype(kind.to_pandas_dtype())
    return pa.Array.from_buffers(kind, len(wide), [None, pa.py_buffer(wide)])


def _rows_in(times: np.ndarray, window: tuple[int, int]) -> slice:
    """The rows of ``times`` (sorted, as a payload is) in ``window``, both ends included."""
    return slice(int(np.searchsorted(times, window[0], "left")), int(np.searchsorted(times, window[1], "right")))


def _running_sums(column: list[pa.Array], firsts: list[int] | None = None) -> np.ndarray:
    """A delta-coded column's values (``column``: one array per batch): each batch's
    running sum (int64), from its first value (``firsts``, one per batch, when kept
    apart: the stored difference is 0)."""
    values = np.empty(sum(len(c) for c in column), dtype=np.int64)
    pos = 0
    for b, chunk in enumerate(column):
        part = values[pos:pos + len(chunk)]
        diffs = chunk.to_numpy()
        if not _steady_sums(part, diffs, None if firsts is None else firsts[b]):
            # Widened first, then summed in place: numpy's cumsum casting int32 as it goes
            # (dtype=) ran ~10x slower than the copy and the same-type sum together.
            part[:] = diffs
            if firsts is not None and len(chunk):
                part[0] = firsts[b]
            np.cumsum(part, out=part)
        pos += len(chunk)
    return values


# A batch whose differences are one step but for at most 1 in this many (bars of a
# session: one overnight gap in 375 minutes) is rebuilt without a running sum.
_STEADY_ONE_IN = 16
_STEPS = np.arange(BATCH_ROWS, dtype=np.int64)


def _steady_sums(out: np.ndarray, diffs: np.ndarray, first: int | None) -> bool:
    """``out`` = the running sum of ``diffs`` (``first``: the value at 0 when kept apart,
    else ``diffs[0]``), when nearly every difference is the same step: the first value
    plus step x position, plus each rare other difference's excess carried to the end --
    vectorised work instead of numpy's running sum (~5 ns a value with the widening copy
    on the 2-core Xeon; one symbol's 100,000 minutes 0.47 -> 0.12 ms). False (``out``
    untouched) otherwise."""
    n = len(diffs)
    if n < 64 or n > BATCH_ROWS:
        return False
    step = diffs[1]
    odd = diffs[1:] != step
    if int(np.count_nonzero(odd)) * _STEADY_ONE_IN > n:
        return False
    np.multiply(_STEPS[:n], int(step), out=out)
    out += int(diffs[0]) if first is None else first
    at = np.flatnonzero(odd) + 1
    if len(at):
        excess = np.cumsum(diffs[at].astype(np.int64) - int(step))
        out[at[0]:] += np.repeat(excess, np.diff(np.append(at, n)))
    return True


_READ_OPTIONS = ipc.IpcReadOptions(use_threads=False)


def decode(spec: TableSpec, payload: Any, chunk_fingerprint: str, *, codec: str = CODEC,
           window: tuple[dt.datetime, dt.datetime] | None = None, floats: bool = False,
           patch: Any = None) -> pa.Table:
    """A chunk's rows back as an Arrow table with the current payload schema.

    ``window``: only the rows in ``[start, end]`` (both ends included) come back, and
    only the record batches that can hold them are decoded (the rows a day's window
    builds from its two batches: 1,440 of 16,384). ``floats``: decimal columns
    stored as differences may come back as float64 (the values :func:`decimal_to_float`
    gives), not ``decimal128``: a float read skips building 16-byte decimals it would
    convert at once (1.2 ms of a 6.8 ms symbol-month read, 41,760 rows x 4 prices).
    ``patch``: the chunk's patch payload (rows restated since the payload was written,
    same fingerprint and codec), laid over the payload's rows (:func:`apply_patch`).
    """
    if patch is None:
        return _decode(spec, payload, chunk_fingerprint, codec=codec, window=window, floats=floats)
    restated = decode_patch(spec, patch, chunk_fingerprint, codec=codec, window=window, floats=floats)
    if restated.num_rows == 0:
        return _decode(spec, payload, chunk_fingerprint, codec=codec, window=window, floats=floats)
    # Time alone the key: the patch's rows are written over the payload's as its columns
    # are built (_from_deltas), when each of their times is there already.
    overlay = restated if spec.time_column is not None and payload_key(spec) == [spec.time_column] else None
    rows = _decode(spec, payload, chunk_fingerprint, codec=codec, window=window, floats=floats, overlay=overlay)
    if overlay is not None and rows.schema.metadata and rows.schema.metadata.get(_OVERLAID_KEY):
        return rows.replace_schema_metadata(None)
    return apply_patch(spec, rows, restated)


# A chunk's patch (schema version 9) holds the rows restated or added since its payload was
# encoded, so a restatement rewrites the patch, not the month: 1 day x 10 symbols restated
# into sealed months re-encoded 10 x 41,760 rows (~200 ms) for 14,400. Past this many rows
# the next write folds the patch into a new payload: a read of a patched month decodes
# both and lays one over the other (a 1,440-row patch over a 41,760-row month: +1.1 ms),
# so the patch stays below one record batch.
PATCH_ROWS = BATCH_ROWS

def add_segment(spec: TableSpec, patch: Any, rows: pa.Table, *, replacing: Sequence[Segment] = ()) -> bytes:
    """A framed patch: the segments of ``patch`` (framed, or None) but ``replacing``, and
    ``rows`` (conformed; their span meets no segment kept) encoded as one more
    (:mod:`~regime_io._tiers.chunk_bytes`)."""
    bounds = pc.min_max(rows.column(spec.time_column or "timestamp").cast(pa.int64()))
    return framed(patch, encode(spec, rows), rows.num_rows, bounds["min"].as_py(), bounds["max"].as_py(),
                  replacing=replacing)


def decode_patch(spec: TableSpec, patch: Any, chunk_fingerprint: str, *, codec: str = CODEC,
                 window: tuple[dt.datetime, dt.datetime] | None = None, floats: bool = False,
                 segments: Sequence[Segment] | None = None) -> pa.Table:
    """A chunk's patch as rows, in payload order: the segments in ``window`` (or those
    given, of :func:`patch_segments`), each decoded with ``window``."""
    read = patch_segments(patch) if segments is None else list(segments)
    if read is None:
        return _decode(spec, patch, chunk_fingerprint, codec=codec, window=window, floats=floats)
    if window is not None:
        lo, hi = pd_micros(window[0]), pd_micros(window[1])
        # (None in the window: the first is decoded all the same, for its empty table's types.)
        read = [s for s in read if s.meets(lo, hi)] or read[:1]
    if not read:
        return payload_schema(spec).empty_table()
    buffer = patch if isinstance(patch, pa.Buffer) else pa.py_buffer(patch)
    return _decode_many(spec, [buffer.slice(s.start, s.size) for s in read], chunk_fingerprint, codec=codec,
                        window=window, floats=floats)


def payload_key(spec: TableSpec) -> list[str]:
    """The natural key inside one chunk: the primary key less the chunk key."""
    return [c for c in spec.primary_key if c not in spec.chunk_by]


def apply_patch(spec: TableSpec, rows: pa.Table, patch: pa.Table) -> pa.Table:
    """``rows`` with every row of ``patch`` in place of the row of the same key (or added),
    sorted as a payload is (:func:`sort_keys`)."""
    if patch.num_rows == 0:
        return rows
    if patch.schema != rows.schema:
        # Decoded apart, a column may be float64 in one (stored as differences: no nulls)
        # and decimal128 in the other: converted the correctly rounded way, not cast.
        patch = pa.Table.from_arrays([as_type(patch.column(f.name), f.type) for f in rows.schema], schema=rows.schema)
    at = key_positions(spec, rows, patch)
    found = at >= 0
    if spec.time_column is not None and payload_key(spec) == [spec.time_column]:
        return _merge_by_time(rows, patch, spec.time_column, at, found)
    # options: (strike, type, time)
    if found.any():
        keep = np.ones(rows.num_rows, dtype=bool)
        keep[at[found]] = False
        rows = rows.filter(pa.array(keep))
    return pa.concat_tables([rows, patch]).sort_by(sort_keys(spec))


def key_positions(spec: TableSpec, old: pa.Table, new: pa.Table) -> np.ndarray:
    """For each row of ``new``, the index of the row of ``old`` with its key
    (:func:`payload_key`), or -1 -- the one key match of patches and merges.

    Time alone as the key (bars, regimes): binary search over the stored times (a restated
    day against a month: 0.1 ms, where a polars join of the two took ~1 ms a chunk).
    """
    key = payload_key(spec)
    if spec.time_column is not None and key == [spec.time_column]:
        stored = old.column(key[0]).cast(pa.int64()).to_numpy()
        wanted = new.column(key[0]).cast(pa.int64()).to_numpy()
        order = None
        if len(stored) > 1 and not bool(np.all(stored[1:] > stored[:-1])):  # rows moved in by a backfill
            order = np.argsort(stored, kind="stable")
            stored = stored[order]
        at = np.searchsorted(stored, wanted)
        hit = at < len(stored)
        hit[hit] = stored[at[hit]] == wanted[hit]
        found = at if order is None else order[np.minimum(at, len(order) - 1)]
        return np.where(hit, found, -1)
    mine = pl.from_arrow(old.select(key))
    theirs = pl.from_arrow(new.select(key))
    assert isinstance(mine, pl.DataFrame) and isinstance(theirs, pl.DataFrame)
    joined = theirs.with_row_index("__n").join(mine.with_row_index("__o"), on=key, how="left", nulls_equal=True)
    return joined.sort("__n")["__o"].fill_null(-1).cast(pl.Int64).to_numpy()


def _merge_by_time(rows: pa.Table, patch: pa.Table, time_col: str, at: np.ndarray, found: np.ndarray) -> pa.Table:
    """:func:`apply_patch` when time alone is the key (``at``/``found``: the patch rows'
    places in ``rows``): both sides are sorted by it, so the output order is one binary
    search and one gather, no sort (a 1,440-row patch over a 44,640-row month: 0.6 ms
    against 1.6 ms for concatenating and sorting)."""
    if found.all():
        if len(at) == rows.num_rows and bool((at == np.arange(len(at))).all()):
            return patch  # every row replaced (a patch restated whole again)
        # Restated rows only, no new time: each column copied once with the patch's values
        # in place (a 1,440-row patch over a 44,640-row month: 0.3 ms against 0.6 ms for
        # the gather below).
        mask = np.zeros(rows.num_rows, dtype=bool)
        mask[at] = True
        where = pa.array(mask)
        return pa.Table.from_arrays([pc.replace_with_mask(rows.column(i).combine_chunks(), where,
                                                          patch.column(i).combine_chunks())
                                     for i in range(rows.num_columns)], schema=rows.schema)
    base = rows.column(time_col).cast(pa.int64()).to_numpy()
    new = patch.column(time_col).cast(pa.int64()).to_numpy()
    keep = np.ones(len(base), dtype=bool)
    keep[at[found]] = False
    kept = np.flatnonzero(keep)
    # Where each patch row lands among the kept rows (times are unique: no ties).
    slots = np.searchsorted(base[kept], new) + np.arange(len(new))
    is_patch = np.zeros(len(kept) + len(new), dtype=bool)
    is_patch[slots] = True
    order = np.empty(len(is_patch), dtype=np.int64)
    order[~is_patch] = kept
    order[is_patch] = len(base) + np.arange(len(new))
    return pa.concat_tables([rows, patch]).take(order)


class _Opened(NamedTuple):
    """A payload opened for reading: its IPC reader, the batches a read wants and what
    the schema's metadata says of them."""

    reader: ipc.RecordBatchFileReader
    wanted: list[int]
    deltas: dict[str, str]  # column -> how it is stored (_to_deltas)
    firsts: dict[str, list[int]]  # column -> each wanted batch's first value (CODEC)

    def layout(self) -> tuple[pa.Schema, frozenset[str], frozenset[str], frozenset[str]]:
        """What must match for batches of several payloads to be built as one: the
        payload schema, the columns stored as differences, those with firsts kept, and
        those stored relative to another (with its name)."""
        summed = frozenset(n for n, how in self.deltas.items() if how[0] == "d")
        relative = frozenset(f"{n}|{how.rsplit('|', 1)[1]}" for n, how in self.deltas.items() if how[0] == "r")
        return _undelta_schema(self.reader.schema, self.deltas), summed, frozenset(self.firsts), relative


def _open(payload: Any, micros: tuple[int, int] | None) -> _Opened:
    # One thread: LZ4 frames of 8,192 rows decompress faster than Arrow's threads start (all
    # 30 chunks of 1M bars: 12 ms on the calling thread, 18-28 ms with use_threads).
    reader = ipc.open_file(pa.py_buffer(payload) if not isinstance(payload, pa.Buffer) else payload,
                           options=_READ_OPTIONS)
    wanted = _batches_in(reader.schema, reader.num_record_batches, micros)
    meta = reader.schema.metadata or {}
    deltas = dict(item.split("=", 1) for item in meta.get(_DELTA_KEY, b"").decode().split(",") if item)
    # Each batch's first values, of the batches read (CODEC keeps them apart).
    firsts: dict[str, list[int]] = {}
    for item in meta.get(_FIRSTS_KEY, b"").decode().split(";"):
        if item:
            name, values = item.split(":", 1)
            every = values.split(",")
            firsts[name] = [int(every[i]) for i in wanted]
    return _Opened(reader, wanted, deltas, firsts)


def _check_codec(spec: TableSpec, codec: str) -> None:
    if codec not in CODECS:
        raise SchemaError(f"{spec.key}: a chunk uses codec {codec!r}; this version reads {', '.join(CODECS)}",
                          table=spec.key)


def _decode_many(spec: TableSpec, payloads: Sequence[Any], chunk_fingerprint: str, *, codec: str,
                 window: tuple[dt.datetime, dt.datetime] | None, floats: bool) -> pa.Table:
    """Payloads of one chunk whose rows follow one another in time (a patch's segments),
    as one table: their batches built together when laid out alike (one pass per column:
    5 segments of 1,440 rows 0.87 -> 0.47 ms), else each on its own and concatenated."""
    _check_codec(spec, codec)
    micros = None if window is None else (pd_micros(window[0]), pd_micros(window[1]))
    opened = [_open(p, micros) for p in payloads]
    layout = opened[0].layout()
    if len(opened) == 1 or not opened[0].deltas or any(o.layout() != layout for o in opened[1:]):
        parts = [_build(spec, [o], chunk_fingerprint, micros=micros, floats=floats, overlay=None) for o in opened]
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)
    return _build(spec, opened, chunk_fingerprint, micros=micros, floats=floats, overlay=None)


def _decode(spec: TableSpec, payload: Any, chunk_fingerprint: str, *, codec: str,
            window: tuple[dt.datetime, dt.datetime] | None, floats: bool, overlay: pa.Table | None = None) -> pa.Table:
    _check_codec(spec, codec)
    micros = None if window is None else (pd_micros(window[0]), pd_micros(window[1]))
    return _build(spec, [_open(payload, micros)], chunk_fingerprint, micros=micros, floats=floats, overlay=overlay)


def _build(spec: TableSpec, opened: list[_Opened], chunk_fingerprint: str, *, micros: tuple[int, int] | None,
           floats: bool, overlay: pa.Table | None) -> pa.Table:
    """The rows of ``opened`` (one payload; several only when delta-coded and laid out
    alike, :meth:`_Opened.layout`)."""
    first = opened[0]
    reader, deltas = first.reader, first.deltas
    time_col = spec.time_column or "timestamp"
    trimmed = micros is None
    if deltas:
        schema = _undelta_schema(reader.schema, deltas)
        columns: list[list[pa.Array]] = [[] for _ in reader.schema]
        firsts: dict[str, list[int]] = {name: [] for name in first.firsts}
        for one in opened:
            for i in one.wanted:
                batch = one.reader.get_batch(i)
                for c, column in enumerate(columns):
                    column.append(batch.column(c))
            for name, values in one.firsts.items():
                firsts[name] += values
        trimmed = trimmed or time_col in deltas
        # A chunk written under another declaration is conformed below in exact types.
        current = chunk_fingerprint == fingerprint(spec)
        table = _from_deltas(columns, deltas, schema, floats=floats and current,
                             window=micros if time_col in deltas else None, time_col=time_col,
                             overlay=overlay if current else None, firsts=firsts)
    elif len(first.wanted) == reader.num_record_batches:
        table = reader.read_all().replace_schema_metadata(None)
    else:
        table = pa.Table.from_batches([reader.get_batch(i) for i in first.wanted], schema=reader.schema)
        table = table.replace_schema_metadata(None)
    if not trimmed and micros is not None:  # (older codecs: the rows are built, then cut)
        rows = _rows_in(table.column(time_col).cast(pa.int64()).to_numpy(), micros)
        table = table.slice(rows.start, rows.stop - rows.start)
    if chunk_fingerprint == fingerprint(spec):
        return table
    # Written under another declaration: add new (nullable) columns, cast changed types.
    schema = payload_schema(spec)
    arrays = []
    for field in schema:
        if field.name in table.column_names:
            arrays.append(table.column(field.name).cast(field.type))
        elif field.nullable:
            arrays.append(pa.nulls(table.num_rows, field.type))
        else:
            raise SchemaError(f"{spec.key}: a sealed chunk lacks the NOT NULL column {field.name!r}; "
                              "unseal it with the version that wrote it", table=spec.key, column=field.name)
    return pa.Table.from_arrays(arrays, schema=schema)


def _batches_in(schema: pa.Schema, count: int, micros: tuple[int, int] | None) -> list[int]:
    """The record batches of a payload (``schema``: its schema, with the batches' first
    times in its metadata) that can hold rows of ``micros`` (every batch without it)."""
    if micros is None or count <= 1:
        return list(range(count))
    starts = [int(v) for v in (schema.metadata or {}).get(_STARTS_KEY, b"").split(b",") if v]
    if len(starts) != count:
        return list(range(count))
    lo, hi = micros
    # Batch i holds times in [starts[i], starts[i + 1]] (equal times may straddle).
    return [i for i in range(count) if starts[i] <= hi and (i + 1 == count or starts[i + 1] >= lo)]


def window_bytes(tail: bytes, size: int, window: tuple[dt.datetime, dt.datetime]) -> tuple[int, int] | None:
    """The byte range ``(start, stop)`` of the payload of ``size`` bytes (``tail``: its last
    bytes) that holds every record batch :func:`decode` reads for ``window``: a restatement
    fetches that range and the tail, not the payload (a restated day: 2 batches of a
    month's 6, ~280 KB of ~770 KB). None when the tail does not hold the footer, or the
    footer is not one this reads: then the whole payload is needed."""
    if len(tail) < FILE_END.size:
        return None
    length, magic = FILE_END.unpack_from(tail, len(tail) - FILE_END.size)
    if magic != b"ARROW1" or not 0 < length <= len(tail) - FILE_END.size:
        return None
    blocks = footer_blocks(tail[len(tail) - FILE_END.size - length: len(tail) - FILE_END.size])
    try:
        # The reader takes its schema from the footer at the end: the tail alone opens.
        reader = ipc.open_file(pa.py_buffer(tail), options=_READ_OPTIONS)
    except pa.ArrowInvalid:
        return None
    if blocks is None or len(blocks) != reader.num_record_batches:
        return None
    wanted = _batches_in(reader.schema, len(blocks), (pd_micros(window[0]), pd_micros(window[1])))
    if not wanted:
        return (0, 0)
    first, last = blocks[wanted[0]], blocks[wanted[-1]]
    return first[0], last[0] + last[1] + last[2]


def _undelta_schema(stored: pa.Schema, deltas: dict[str, str]) -> pa.Schema:
    """The payload schema a delta-coded chunk was written with (its metadata says what
    each delta column was)."""
    return _undelta_cached(stored.remove_metadata(), tuple(deltas.items()))


# The same few schemas again and again (a chunk's columns, their stored widths): built once.
# Built each time it took ~25 us of a 1,440-row patch segment's ~200 us decode.
@functools.lru_cache(maxsize=256)
def _undelta_cached(stored: pa.Schema, items: tuple[tuple[str, str], ...]) -> pa.Schema:
    deltas = dict(items)
    fields = []
    for field in stored:
        if field.name not in deltas:
            fields.append(field)
            continue
        _, kind, a, b, nullable = deltas[field.name].split("|")[:5]  # (kind "r": its base follows)
        was = (pa.timestamp(a, tz=b or None) if kind == "timestamp" else
               pa.from_numpy_dtype(np.dtype(f"int{a}")) if kind == "int" else pa.decimal128(int(a), int(b)))
        fields.append(pa.field(field.name, was, nullable=nullable == "1"))
    return pa.schema(fields)


def decimal_from_unscaled(array: pa.Array | pa.ChunkedArray, kind: pa.Decimal128Type) -> pa.Array:
    """int64 unscaled values (``12976`` for 129.76 at scale 2) as ``decimal128`` of ``kind``."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    values = np.asarray((array.fill_null(0) if array.null_count else array).to_numpy(zero_copy_only=False),
                        dtype=np.int64)
    words = np.empty(2 * len(values), dtype=np.int64)
    words[0::2] = values
    words[1::2] = values >> 63  # the high word: the sign, extended
    validity = array.buffers()[0] if array.null_count else None
    if validity is not None and array.offset:
        validity = pa.array(array.is_valid()).buffers()[1]
    return pa.Array.from_buffers(kind, len(values), [validity, pa.py_buffer(words)])


def decimal_to_float(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``decimal128(p, s)`` values as float64, correctly rounded (as ``numeric::float8``)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    scale = array.type.scale
    if len(array) == 0:
        return pa.array([], pa.float64())
    if array.type.precision > _EXACT_DOUBLE_DIGITS:  # price_scale 8: unscaled values past 2**53 are not exact
        return pc.cast(array.cast(pa.string()), pa.float64())  # text and strtod, as numeric::float8
    words = np.frombuffer(array.buffers()[1], dtype=np.int64)[2 * array.offset: 2 * (array.offset + len(array))]
    # Little-endian 128-bit integers: the low word is the value for every p <= 18.
    values = words[0::2].astype(np.float64) / float(10 ** scale)
    mask = array.is_null().to_numpy(zero_copy_only=False) if array.null_count else None
    return pa.array(values, type=pa.float64(), mask=mask)


def as_type(column: pa.ChunkedArray, kind: pa.DataType) -> pa.ChunkedArray | pa.Array:
    """A decoded column in the type asked: a decimal as float64 correctly rounded
    (:func:`decimal_to_float`, as ``numeric::float8``),
    anything else cast."""
    if column.type == kind:
        return column
    if pa.types.is_float64(kind) and pa.types.is_decimal(column.type):
        return decimal_to_float(column)
    return column.cast(kind)


def pd_micros(value: dt.datetime) -> int:
    """A naive datetime as microseconds since the epoch (Arrow's ``timestamp[us]`` value)."""
    return (value - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)


def period_of(value: dt.datetime | dt.date) -> dt.date:
    """The first day of the calendar month holding ``value`` (the chunk period)."""
    day = value.date() if isinstance(value, dt.datetime) else value
    return day.replace(day=1)


def period_number(value: dt.datetime | dt.date) -> int:
    """The period of ``value`` counted in months from January 1970 (numpy's datetime64[M])."""
    return (value.year - 1970) * 12 + value.month - 1


def period_from_number(number: int) -> dt.date:
    """The first day of the period :func:`period_number` numbers ``number``."""
    year, month = divmod(number, 12)
    return dt.date(1970 + year, month + 1, 1)


def next_period(start: dt.date) -> dt.date:
    return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def last_row_json(spec: TableSpec, key: tuple[Any, ...], payload: pa.Table) -> str:
    """The newest row of a chunk (``payload`` is sorted by time: its last row) with the
    chunk ``key``, as JSON that ``jsonb_populate_record`` turns back into the table's row
    exactly: decimals and times as their text, JSON columns as JSON."""
    row = dict(zip(spec.chunk_by, key, strict=True))
    row.update(payload.slice(payload.num_rows - 1).to_pylist()[0])
    return json.dumps({name: json.loads(value) if value is not None and spec.column(name).kind == "json"
                       else json_value(value) for name, value in row.items()})


def json_value(value: Any) -> Any:
    """A stored value as JSON that PostgreSQL reads back exactly into its column type:
    dates and times as ISO text, decimals as their text (not a float)."""
    if isinstance(value, dt.date):  # datetime is a date
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


def chunk_stats(spec: TableSpec, payload: pa.Table) -> dict[str, Any]:
    """Row count, first/last timestamp and per-column min/max of one chunk's rows."""
    time_col = spec.time_column or "timestamp"
    bounds = pc.min_max(payload.column(time_col))
    stats: dict[str, Any] = {"row_count": payload.num_rows, "first_ts": bounds["min"].as_py(),
                             "last_ts": bounds["max"].as_py()}
    for name in chunk_stat_columns(spec):
        column = payload.column(name)
        kind = column.type
        if pa.types.is_decimal(kind) and kind.precision <= 18 and len(column) and not column.null_count:
            # From the unscaled integers: Arrow's min_max over decimal128 took 35 us for
            # 7,200 rows (6 us for int64); a backfill computes it for 4 prices x 30 months.
            values = _unscaled(column.combine_chunks())
            stats[f"min_{name}"] = decimal.Decimal(int(values.min())).scaleb(-kind.scale)
            stats[f"max_{name}"] = decimal.Decimal(int(values.max())).scaleb(-kind.scale)
            continue
        mm = pc.min_max(column)
        stats[f"min_{name}"] = mm["min"].as_py()
        stats[f"max_{name}"] = mm["max"].as_py()
    return stats
