"""How a sealed payload's columns are stored and rebuilt (issue 23): time and decimal
columns as differences within each record batch (each batch's first value kept apart),
integer columns narrowed, decimals as their difference from a base column of the same
scale, and the running sums and adds that rebuild them -- straight to float64 for float
reads. The IPC file around them, windows and patches are :mod:`.sealed_format`'s.

The kinds, as the payload's ``regime_io.delta`` metadata names them per column
(``kind|type|a|b|nullable[|base]``): ``d<bits>`` differences, ``n<bits>`` an integer
column narrowed, ``r<bits>`` a decimal's difference from the column named last.

Example:
    >>> import pyarrow as pa
    >>> stored, kinds, firsts = to_deltas(pa.table({"close": pa.array([1, 3, 6], pa.int64())}), narrow=True)
    >>> kinds, stored.column("close").type
    ({'close': 'n8|int|64||1'}, DataType(int8))
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = [
    "BATCH_ROWS", "EXACT_DOUBLE_DIGITS", "OVERLAID_KEY", "decimal_from_unscaled", "from_deltas", "overlay_places",
    "rows_in", "running_sums", "to_deltas", "to_deltas_many", "undelta_schema", "unscaled",
]


# Rows per record batch of a payload. The IPC file's footer indexes the batches and the
# schema metadata lists each batch's first timestamp, so a read of one day decodes one
# or two batches instead of the month (a 41,760-row symbol-month, CPU time: whole 4.6 ms,
# one batch 0.9 ms). Measured: 8,192 rows cost +0.1% bytes and +30% CPU to decode
# whole against one batch; 4,096 rows +2.4% bytes and +100% CPU.
BATCH_ROWS = 8192


# Unscaled values of up to 15 digits are exact doubles (2**53 ~ 9.0e15), so dividing by
# 10**scale rounds once, correctly; NUMERIC(16, 8) (price_scale 8) takes the text path.
EXACT_DOUBLE_DIGITS = 15


def unscaled(array: pa.Array) -> np.ndarray:
    """The int64 values behind a timestamp or a ``decimal128(p <= 18)`` array without nulls
    (read from the data buffer: a cast and to_numpy took ~25 us of a 1,440-row patch's
    encoding)."""
    if pa.types.is_timestamp(array.type):
        return np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset: array.offset + len(array)]
    words = np.frombuffer(array.buffers()[1], dtype=np.int64)[2 * array.offset: 2 * (array.offset + len(array))]
    return words[0::2].copy()  # little-endian 128-bit: the low word is the value for p <= 18


# Each width with the range it holds, worked out once (_width runs per table and column).
_WIDTHS = tuple((bits, kind, -(2 ** (bits - 1)), 2 ** (bits - 1))
                for bits, kind in ((8, np.int8), (16, np.int16), (32, np.int32), (64, np.int64)))


def _narrowest(values: np.ndarray) -> tuple[int, type[np.signedinteger[Any]]]:
    """The narrowest signed integer type holding every value (int64 when empty)."""
    return _width(int(values.min()), int(values.max())) if len(values) else (64, np.int64)


def _width(lo: int, hi: int) -> tuple[int, type[np.signedinteger[Any]]]:
    """The narrowest signed integer type holding ``lo`` and ``hi``."""
    for bits, kind, low, high in _WIDTHS:
        if low <= lo and hi < high:
            return bits, kind
    return 64, np.int64


def _int_array(values: np.ndarray) -> pa.Array:
    """A numpy integer array without nulls as Arrow, its buffer taken as it is (pa.array
    inferred the type first: 12 us against 2 for a 1,440-row patch's column)."""
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def _single(column: pa.ChunkedArray) -> pa.Array:
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def to_deltas(table: pa.Table, *, narrow: bool,
              relative: bool = False) -> tuple[pa.Table, dict[str, str], dict[str, list[int]]]:
    """Time and decimal columns without nulls as differences within each batch, so a
    batch decodes on its own. With ``narrow`` (codecs ``arrow-ipc-lz4-narrow`` and
    ``-rel``) each batch's first value goes to the returned firsts (its difference stored
    as 0), the differences take the narrowest integer type holding them, and so do
    integer columns without nulls (stored as they are: kind ``n<bits>``); else
    (``arrow-ipc-lz4-delta``) the first value stays in place and the differences are
    int32 when they all fit. With ``relative`` (``-rel``): decimals relative to a base
    column, :func:`_relative`. One table's :func:`to_deltas_many`."""
    return to_deltas_many([table], narrow=narrow, relative=relative)[0]


@dataclass
class _Encoded:
    """One table's part of :func:`to_deltas_many`: its columns as stored, and their kinds."""

    fields: list[pa.Field]
    arrays: list[pa.Array | pa.ChunkedArray]
    deltas: dict[str, str] = dataclasses.field(default_factory=dict)
    firsts: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    # decimal column -> the bits of its own differences (for _relative)
    bits: dict[str, int] = dataclasses.field(default_factory=dict)


def _storable(kind: pa.DataType, narrow: bool) -> bool:
    """Whether a column without nulls of this type is stored other than as it is."""
    return ((narrow and pa.types.is_signed_integer(kind)) or pa.types.is_timestamp(kind)
            or (pa.types.is_decimal(kind) and kind.precision <= 18))


def to_deltas_many(tables: Sequence[pa.Table], *, narrow: bool, relative: bool = False,
                   offsets: bool = False) -> list[tuple[pa.Table, dict[str, str], dict[str, list[int]]]]:
    """:func:`to_deltas` of each of ``tables``, each column's arithmetic done once over
    all of them (tables of one schema; each table's result is the one it gets alone).

    A restatement encodes ten 1,440-row patches: one by one, ~20 numpy calls of a few
    microseconds each per table took 1.7-2.7 ms for the ten; at once 1.4 ms, and 1.15 ms
    with a column of one width cut in slices (:func:`_parts`).

    With ``offsets`` (codec ``arrow-ipc-offsets``, with ``narrow`` and ``relative``): a
    time column's differences in units of their common step (kind ``s``, :func:`_step`),
    and a decimal column as each value's offset from its batch's first value (kind ``a``)
    where that is no wider than its differences (:func:`_offsets`)."""
    if not tables:
        return []
    if len(tables) > 1 and not _joinable(tables, narrow):
        return [to_deltas_many([t], narrow=narrow, relative=relative, offsets=offsets)[0] for t in tables]
    schema = tables[0].schema
    sizes = np.array([t.num_rows for t in tables], dtype=np.int64)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    # Each batch's first row, across the tables (every table starts a batch).
    heads = np.concatenate([np.arange(a, b, BATCH_ROWS) for a, b in zip(starts.tolist(), ends.tolist(), strict=True)])
    spans = list(zip(starts.tolist(), ends.tolist(), strict=True))
    out = [_Encoded(list(schema), list(t.columns)) for t in tables]
    decimals: dict[str, np.ndarray] = {}  # decimal column -> its values over every table
    for i, fld in enumerate(schema):
        kind = fld.type
        if not _storable(kind, narrow):
            continue
        column = (_single(tables[0].column(i)) if len(tables) == 1 else
                  pa.chunked_array([c for t in tables for c in t.column(i).chunks], type=kind).combine_chunks())
        if column.null_count:  # (one table: more than one have none, _joinable)
            continue
        if pa.types.is_integer(kind):  # (narrow, signed: _storable)
            values = column.to_numpy()
            widths = _narrowest_each(values, starts, sizes)
            for part, (bits, _), stored in zip(out, widths, _parts(fld.name, values, spans, widths), strict=True):
                if bits < kind.bit_width:
                    part.deltas[fld.name] = f"n{bits}|int|{kind.bit_width}||{int(fld.nullable)}"
                    part.fields[i], part.arrays[i] = stored
            continue
        values = unscaled(column)
        # One subtraction over the column, then each batch's first value put back as is
        # (a 44,640-row month: 9 us, against 62 us for np.diff per batch).
        diff = np.empty_like(values)
        np.subtract(values[1:], values[:-1], out=diff[1:])
        if narrow:
            diff[heads] = 0
            widths = _narrowest_each(diff, starts, sizes)
        else:
            diff[heads] = values[heads]
            widths = [(32, np.int32) if bits <= 32 else (64, np.int64)
                      for bits, _ in _narrowest_each(diff, starts, sizes)]
        # The type before the differences, so a chunk decodes without its declaration.
        was = (f"timestamp|{kind.unit}|{kind.tz or ''}" if pa.types.is_timestamp(kind)
               else f"decimal|{kind.precision}|{kind.scale}")
        kinds = [f"d{bits}|{was}|{int(fld.nullable)}" for bits, _ in widths]
        stored_parts = _parts(fld.name, diff, spans, widths)
        if offsets and pa.types.is_timestamp(kind):
            widths, kinds, stored_parts = _stepped_parts(fld.name, diff, spans, starts, sizes, widths, kinds,
                                                         stored_parts)
        for part, (a, b), (bits, _), how, stored in zip(out, spans, widths, kinds, stored_parts, strict=True):
            if narrow:
                part.firsts[fld.name] = values[a:b:BATCH_ROWS].tolist()
            part.deltas[fld.name] = how
            part.fields[i], part.arrays[i] = stored
            if pa.types.is_decimal(kind):
                part.bits[fld.name] = bits
        if pa.types.is_decimal(kind):
            decimals[fld.name] = values
    if relative:
        _relative(schema.names, out, decimals, starts, sizes)
    if offsets:
        for name, values in decimals.items():
            _offsets(schema.get_field_index(name), values, heads, out, spans, starts, sizes)
    return [(pa.Table.from_arrays(part.arrays, schema=pa.schema(part.fields)), part.deltas, part.firsts)
            for part in out]


_Widths = list[tuple[int, type[np.signedinteger[Any]]]]
_Stored = list[tuple[pa.Field, pa.Array]]


def _step(diff: np.ndarray) -> int:
    """The step every one of ``diff`` (a sorted time column's differences in one table,
    each batch's first stored as 0) is a multiple of, or 1 when they have none: one-minute
    bars' 60,000,000 us differences are then stored as 1s in one byte each, where they
    took 4 (LZ4 squeezed the int32 ones to almost nothing, but decompressing every column
    cost 3.4 ms of the ~40 ms decode of 1M bars, and the prices it also ran over do not
    compress). Tried: the second difference, then (daily bars starting on a Friday: 3
    days, then 1) the smallest positive one."""
    if len(diff) < 2:
        return 1
    tried = 0
    for step in (int(diff[1]), None):
        if step is None:
            positive = diff[diff > 0]
            step = int(positive.min()) if len(positive) else 1
        if step <= 1 or step == tried:
            continue
        tried = step
        others = diff[diff != step]  # (the division only where needed: 4.5 -> 1.4 ms over 1M minutes)
        if not np.any(others % step):
            return step
    return 1


def _stepped_parts(name: str, diff: np.ndarray, spans: list[tuple[int, int]], starts: np.ndarray, sizes: np.ndarray,
                   widths: _Widths, kinds: list[str], stored: _Stored) -> tuple[_Widths, list[str], _Stored]:
    """A time column's differences in each table (``spans``; ``starts`` and ``sizes`` the
    same as arrays) divided by their :func:`_step` (kind ``s``, the step last), where it
    is more than 1."""
    steps = [_step(diff[a:b]) for a, b in spans]
    if all(step == 1 for step in steps):
        return widths, kinds, stored
    scaled = diff.copy()
    for (a, b), step in zip(spans, steps, strict=True):
        if step > 1:
            scaled[a:b] //= step
    new_widths = _narrowest_each(scaled, starts, sizes)
    new_stored = _parts(name, scaled, spans, new_widths)
    stepped = [step > 1 for step in steps]
    return ([new_widths[j] if s else widths[j] for j, s in enumerate(stepped)],
            [f"s{new_widths[j][0]}|{kinds[j].split('|', 1)[1]}|{steps[j]}" if s else kinds[j]
             for j, s in enumerate(stepped)],
            [new_stored[j] if s else stored[j] for j, s in enumerate(stepped)])


def _offsets(i: int, values: np.ndarray, heads: np.ndarray, out: list[_Encoded], spans: list[tuple[int, int]],
             starts: np.ndarray, sizes: np.ndarray) -> None:
    """Decimal column ``i`` (its unscaled ``values`` over every table) as each value's
    offset from its batch's first value (kind ``a``) in each table where it is stored as
    differences (not relative to another column) and the offsets are no wider: rebuilt by
    one add per batch instead of a running sum (numpy's ~3 ns a value on the 2-core Xeon
    against ~0.8 for the add). Sets each part's column in place."""
    name = out[0].fields[i].name
    summed = [part.deltas[name][0] == "d" for part in out]
    if not any(summed):
        return
    lengths = np.diff(np.append(heads, starts[-1] + sizes[-1]))
    offset = values - np.repeat(values[heads], lengths)
    widths = _narrowest_each(offset, starts, sizes)
    chosen = [d and bits <= part.bits[name] for d, (bits, _), part in zip(summed, widths, out, strict=True)]
    if not any(chosen):
        return
    for part, use, (bits, _), stored in zip(out, chosen, widths, _parts(name, offset, spans, widths), strict=True):
        if use:
            part.deltas[name] = f"a{bits}|{part.deltas[name].split('|', 1)[1]}"
            part.fields[i], part.arrays[i] = stored


def _parts(name: str, values: np.ndarray, spans: list[tuple[int, int]],
           widths: list[tuple[int, type[np.signedinteger[Any]]]]) -> list[tuple[pa.Field, pa.Array]]:
    """Each table's rows of ``values`` (``spans``) in its width, as a stored column: the
    whole column cast once per width, each table's rows a view of it (a restated day's ten
    patches: a cast per width their parts take, not one per patch; the differences 2.03
    -> 1.91 ms). A view, not an Arrow slice: the IPC writer records a slice at an offset
    with other buffer lengths and padding (the same rows, other bytes than the table gets
    alone)."""
    fields: dict[Any, pa.Field] = {}
    cast: dict[Any, np.ndarray] = {}
    out = []
    for (a, b), (_, as_type) in zip(spans, widths, strict=True):
        if as_type not in cast:  # (values of the other tables may not fit: they are not viewed)
            cast[as_type] = values.astype(as_type, copy=False)
            fields[as_type] = pa.field(name, pa.from_numpy_dtype(as_type), nullable=False)
        out.append((fields[as_type], _int_array(cast[as_type][a:b])))
    return out


def _joinable(tables: Sequence[pa.Table], narrow: bool) -> bool:
    """Whether ``tables`` share one schema and no column stored otherwise than as it is
    has a null in any of them (a column with nulls in one table is kept as it is there
    alone: such tables are encoded one by one)."""
    schema = tables[0].schema
    if any(t.schema != schema for t in tables[1:]):
        return False
    return not any(t.column(i).null_count for i, f in enumerate(schema) if _storable(f.type, narrow) for t in tables)


def _narrowest_each(values: np.ndarray, starts: np.ndarray,
                    sizes: np.ndarray) -> list[tuple[int, type[np.signedinteger[Any]]]]:
    """:func:`_narrowest` of each table's part of ``values`` (``starts``, ``sizes``)."""
    if len(sizes) == 1:
        return [_narrowest(values)]
    full = sizes > 0
    lows = np.minimum.reduceat(values, starts[full]) if full.any() else np.empty(0, values.dtype)
    highs = np.maximum.reduceat(values, starts[full]) if full.any() else np.empty(0, values.dtype)
    out: list[tuple[int, type[np.signedinteger[Any]]]] = [(64, np.int64)] * len(sizes)
    for j, lo, hi in zip(np.flatnonzero(full).tolist(), lows.tolist(), highs.tolist(), strict=True):
        out[j] = _width(lo, hi)
    return out


def _relative(names: list[str], out: list[_Encoded], decimals: dict[str, np.ndarray], starts: np.ndarray,
              sizes: np.ndarray) -> None:
    """Decimal columns stored as their difference from a base column of the same scale
    (kind ``r<bits>``, the base's name last), where that difference is no wider than the
    column's own differences: among the columns of one scale, the base is the one whose
    own differences are narrowest (the last of equals: a bar's close), in each table. On
    the benchmark's 1M one-minute bars (issue 23) open, high and low all go against the
    close: payloads 11.94 -> 11.77 bytes a bar, and decoding every chunk as floats 50 ->
    40 ms (one symbol's three months 3.3 -> 2.4 ms; the relative columns land in float64
    from one add, no int64 copy between). Sets each part's columns in place."""
    by_scale: dict[str, list[str]] = {}
    for name in decimals:
        by_scale.setdefault(out[0].deltas[name].split("|")[3], []).append(name)
    spans = list(zip(starts.tolist(), (starts + sizes).tolist(), strict=True))
    for same_scale in by_scale.values():
        if len(same_scale) < 2:
            continue
        # Per (column, base): its widths and stored arrays in every table, worked out once
        # for the tables of that base.
        relative: dict[tuple[str, str], tuple[list[tuple[int, Any]], list[tuple[pa.Field, pa.Array]]]] = {}
        for j, part in enumerate(out):
            base = min(reversed(same_scale), key=part.bits.__getitem__)
            for name in same_scale:
                if name == base:
                    continue
                if (name, base) not in relative:
                    rel = decimals[name] - decimals[base]
                    widths = _narrowest_each(rel, starts, sizes)
                    relative[name, base] = widths, _parts(name, rel, spans, widths)
                widths, stored = relative[name, base]
                bits = widths[j][0]
                if bits > part.bits[name]:
                    continue
                _, kind, precision, scale, nullable = part.deltas[name].split("|")
                part.deltas[name] = f"r{bits}|{kind}|{precision}|{scale}|{nullable}|{base}"
                part.firsts.pop(name, None)  # (absolute per row: no batch restarts from a first value)
                part.fields[names.index(name)], part.arrays[names.index(name)] = stored[j]


OVERLAID_KEY = b"regime_io.overlaid"  # set by from_deltas when it wrote the patch in


def _as_float(field: pa.Field, floats: bool) -> bool:
    """Whether a decimal column stored as differences comes back as float64 (``floats``
    asked, and its unscaled values exact doubles: see :func:`~regime_io._tiers.sealed_format.decode`)."""
    return floats and pa.types.is_decimal(field.type) and field.type.precision <= EXACT_DOUBLE_DIGITS


def overlay_places(times: np.ndarray, overlay: pa.Table, stored: list[list[pa.Array]], schema: pa.Schema,
                    deltas: dict[str, str], time_col: str, floats: bool) -> np.ndarray | None:
    """Where each row of ``overlay`` (a patch, decoded in the same types) goes among the
    built rows (``times``: their times, sorted), or None when it cannot be written over
    them as they are built: a new time (the patch adds a row), a null, or a column
    not of fixed width (then :func:`~regime_io._tiers.sealed_format.apply_patch` lays the patch over the rows)."""
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
    stamps = overlay.column(time_col)
    wanted = (unscaled(stamps.chunk(0)) if stamps.num_chunks == 1 and pa.types.is_timestamp(stamps.type)
              else stamps.cast(pa.int64()).to_numpy())
    at = np.searchsorted(times, wanted)
    if (at >= len(times)).any() or not bool((times[at] == wanted).all()):
        return None
    return at


def from_deltas(columns: list[list[pa.Array]], deltas: dict[str, str], schema: pa.Schema, *, floats: bool,
                 window: tuple[int, int] | None = None, time_col: str = "",
                 overlay: pa.Table | None = None, firsts: dict[str, list[int]] | None = None) -> pa.Table:
    """Batches (``columns``: each column's arrays, one per batch; the batches of several
    payloads alike may follow one another, a column's narrowed type differing between
    them) read back in the payload's types (``schema``: the types before
    :func:`to_deltas`; ``floats``: decimals as float64, see
    :func:`~regime_io._tiers.sealed_format.decode`). Each batch's
    running sum is written straight into the column's output (each batch restarts from an
    absolute value): 1M bars, 5 columns, 12.6 ms against 18.1 ms for one sum over the
    concatenated batches less the sum reached before each batch (two more passes).
    ``firsts``: each batch's first value per column where the payload keeps them apart
    (:data:`~regime_io._tiers.sealed_format.CODEC`); columns stored narrowed, not as differences, are widened back.

    ``window`` (microseconds, both ends included): only the rows of ``time_col`` (summed
    first) in it are built -- the other columns are summed whole, then sliced before the
    decimals or floats are made (a restated day: 1,440 rows built of the 16,384 of its two
    batches).

    ``overlay``: a patch's rows (same types), written over the rows of the same time as
    the columns are built -- when every time is there and nothing is null (the schema's
    metadata then says so, :data:`OVERLAID_KEY`); a patched month read 0.33 ms faster
    than laying the patch over the built rows (:func:`~regime_io._tiers.sealed_format.apply_patch`, 44,640 rows)."""
    rows = slice(0, sum(len(c) for c in columns[0]) if columns else 0)
    times = None
    firsts = firsts or {}
    if time_col in deltas:
        times = running_sums(columns[schema.get_field_index(time_col)], firsts.get(time_col), how=deltas[time_col])
        if window is not None:
            rows = rows_in(times, window)
    places = None
    if overlay is not None and times is not None:
        places = overlay_places(times[rows], overlay, columns, schema, deltas, time_col, floats)
    # The patch's columns when it is written over the rows, by name.
    over = {name: overlay.column(name) for name in schema.names} if places is not None and overlay is not None else {}
    plan = _plan_of(schema, deltas, floats=floats)
    kept: dict[str, np.ndarray] = {}  # the running sums of bases (kind "r" columns' own values)

    def sums(name: str) -> np.ndarray:
        if name == time_col and times is not None:
            return times
        if name in kept:
            return kept[name]
        found = running_sums(columns[schema.get_field_index(name)], firsts.get(name), how=deltas[name])
        if name in plan.bases:
            kept[name] = found
        return found

    # Float reads: each base and the columns stored relative to it, built together.
    grouped: dict[str, np.ndarray] = {}
    for base, users, scale in plan.groups:
        built = _float_group(columns[schema.get_field_index(base)], firsts.get(base),
                             [columns[schema.get_field_index(u)] for u in users], rows, scale,
                             offsets=deltas[base][0] == "a")
        grouped.update(zip([*users, base], built, strict=True))
    arrays = []
    for i, (name, how, base, as_float, scale) in enumerate(plan.steps):
        column = columns[i]
        kind = plan.out.field(i).type
        if how == "joined":
            # One array per chunk, as the summed columns are: polars aligns a frame's
            # chunks, and a volume column in 8,192-row batches beside month-long price
            # columns split every column of 1M bars into 140 pieces (from_arrow 3.2 ms,
            # 0.7 ms aligned; every bar into polars 45.9 -> 43.1 ms, as Arrow unchanged).
            wide = _widened(column, rows, kind) if over else None
            if wide is not None:  # the patch written straight into the widened column
                wide[places] = over[name].to_numpy()
                arrays.append(pa.Array.from_buffers(kind, len(wide), [None, pa.py_buffer(wide)]))
                continue
            built = _joined(column, rows, kind)
            if over:
                plain = built.to_numpy(zero_copy_only=False).copy()
                plain[places] = over[name].to_numpy()
                built = pa.array(plain, type=kind)
            arrays.append(built)
            continue
        # Decimals read as floats: the int64 running sums (unscaled values of at most 15
        # digits, exact doubles, < 2**53) converted and divided by 10**scale in place, which
        # rounds once, correctly. Summing in float64 straight away was slower (a 44,640-row
        # month: 1.13 ms against 0.65: numpy's float cumsum and the int16 -> float64 copy).
        if how == "grouped":
            values = floated = grouped[name]
        elif how == "relative":  # the base's values plus the stored differences
            values = np.add(sums(base)[rows], _narrow_values(column)[rows])
            floated = None
        else:
            values, floated = sums(name)[rows], None
        if pa.types.is_timestamp(kind):
            arrays.append(pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(values)]))
        elif as_float:
            # What decimal_to_float gives for the decimal128 of these values, without it.
            if floated is None:
                floated = values.astype(np.float64)
                floated /= scale
            if over:
                floated[places] = over[name].to_numpy()
            arrays.append(pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(floated)]))
        else:
            if over:
                values = values.copy()
                values[places] = unscaled(over[name].combine_chunks())
            arrays.append(decimal_from_unscaled(pa.array(values, pa.int64()), kind))
    return pa.Table.from_arrays(arrays, schema=plan.out.with_metadata({OVERLAID_KEY: b"1"}) if over else plan.out)


@dataclass(frozen=True)
class _Plan:
    """How :func:`from_deltas` builds each column of one stored layout, worked out once per
    layout (it took ~40 us of Python a chunk, each time: a read of every bar decodes 30)."""

    schema: pa.Schema  # the layout's (held: its id keys the cache)
    deltas: dict[str, str]
    out: pa.Schema  # the columns built: decimals read as floats are float64
    bases: frozenset[str]  # columns others are stored relative to
    groups: tuple[tuple[str, tuple[str, ...], float], ...]  # float reads: base, its users, 10**scale
    # Per column: name, how it is built ("joined", "grouped", "relative" or "summed"), its
    # base (relative ones), whether it comes back as float64, 10**scale.
    steps: tuple[tuple[str, str, str, bool, float], ...]


_PLANS: dict[tuple[int, bool], _Plan] = {}


def _plan_of(schema: pa.Schema, deltas: dict[str, str], *, floats: bool) -> _Plan:
    found = _PLANS.get((id(schema), floats))
    if found is not None and found.schema is schema and found.deltas == deltas:
        return found
    base_of = {name: how.rsplit("|", 1)[1] for name, how in deltas.items() if how[0] == "r"}
    bases = frozenset(base_of.values())
    groups = []
    for base in sorted(bases, key=schema.get_field_index):
        if _as_float(schema.field(base), floats):
            users = tuple(f.name for f in schema if base_of.get(f.name) == base and _as_float(f, floats))
            groups.append((base, users, float(10 ** schema.field(base).type.scale)))
    in_group = {name for base, users, _ in groups for name in (base, *users)}
    steps, fields = [], []
    for field in schema:
        name, as_float = field.name, _as_float(field, floats)
        how = ("joined" if name not in deltas or deltas[name][0] == "n" else "grouped" if name in in_group
               else "relative" if name in base_of else "summed")
        scale = float(10 ** field.type.scale) if pa.types.is_decimal(field.type) else 1.0
        steps.append((name, how, base_of.get(name, ""), as_float, scale))
        fields.append(pa.field(name, pa.float64(), nullable=field.nullable) if as_float and how != "joined" else field)
    plan = _Plan(schema, dict(deltas), pa.schema(fields), bases, tuple(groups), tuple(steps))
    if len(_PLANS) >= 256:
        _PLANS.clear()
    _PLANS[(id(schema), floats)] = plan
    return plan


def _narrow_values(arrays: list[pa.Array]) -> np.ndarray:
    """A column stored without nulls in narrowed batches as one numpy array (still narrow)."""
    if len(arrays) == 1:
        return arrays[0].to_numpy()
    return np.concatenate([a.to_numpy() for a in arrays]) if arrays else np.empty(0, np.int64)


def _float_group(base: list[pa.Array], base_firsts: list[int] | None, users: list[list[pa.Array]], rows: slice,
                 scale: float, *, offsets: bool = False) -> list[np.ndarray]:
    """The ``rows`` of the columns stored relative to ``base`` (``users``) and of the base
    itself (last), as float64 divided by ``scale`` -- built one batch at a time, so a
    batch's base sums, its users' adds and the divisions all run on ~64 KB that stays
    in cache, instead of whole-column passes through memory (a 100,000-bar column is
    800 KB). With the steady batches' cheaper sums, one symbol's 100,000 bars decode
    3.84 -> 3.55 ms and every bar 30.4 -> 28.6 ms after a ``gc.collect()`` (61 and 21
    alternated pairs).
    Users' stored differences plus the base's unscaled values, added as doubles, are exact
    (integers below 2**53): the same double as the integer sum converted. ``offsets``: the
    base is stored as offsets from each batch's first value (kind ``a``), not differences."""
    n = rows.stop - rows.start
    outs = [np.empty(n, dtype=np.float64) for _ in range(len(users) + 1)]
    based = outs[-1]
    summed = np.empty(max((len(a) for a in base), default=0), dtype=np.int64)
    pos = 0
    for b, diffs in enumerate(base):
        size = len(diffs)
        lo, hi = max(rows.start, pos), min(rows.stop, pos + size)
        if lo < hi:
            if offsets:
                assert base_firsts is not None  # (kind a comes with each batch's first value)
                np.add(diffs.to_numpy(), np.int64(base_firsts[b]), out=summed[:size])
            else:
                _sum_batch(summed[:size], diffs.to_numpy(), None if base_firsts is None else base_firsts[b])
            at, of = slice(lo - rows.start, hi - rows.start), slice(lo - pos, hi - pos)
            here = based[at]
            here[:] = summed[of]
            for user, out in zip(users, outs, strict=False):
                built = out[at]
                built[:] = user[b].to_numpy()[of]
                built += here
                built /= scale
            here /= scale
        pos += size
    return outs


def _joined(arrays: list[pa.Array], rows: slice, kind: pa.DataType) -> pa.Array:
    """The ``rows`` of a column stored as ``arrays`` (one per batch) as one array of type
    ``kind``; arrays stored narrowed (no null: "n" columns have none) are widened by
    numpy's copy (Arrow's cast took ~20 us of a 1,440-row patch segment's decode)."""
    if not arrays:
        return pa.array([], kind)
    wide = _widened(arrays, rows, kind)
    if wide is not None:
        return pa.Array.from_buffers(kind, len(wide), [None, pa.py_buffer(wide)])
    if any(a.type != arrays[0].type for a in arrays):  # narrowed apart, and nulls: cast
        arrays = [a.cast(kind) for a in arrays]
    built = pa.chunked_array(arrays, arrays[0].type).slice(rows.start, rows.stop - rows.start).combine_chunks()
    return built if built.type == kind else built.cast(kind)


def _widened(arrays: list[pa.Array], rows: slice, kind: pa.DataType) -> np.ndarray | None:
    """The ``rows`` of a column stored narrowed (no null: "n" columns have none) as one
    numpy array of ``kind``, each batch widened straight into it (no joined narrow copy
    first); None when the column is not stored narrowed or has nulls."""
    if not arrays or all(a.type == kind for a in arrays) or any(a.null_count for a in arrays):
        return None
    wide = np.empty(rows.stop - rows.start, dtype=kind.to_pandas_dtype())
    pos = 0
    for array in arrays:
        lo, hi = max(rows.start, pos), min(rows.stop, pos + len(array))
        if lo < hi:
            wide[lo - rows.start:hi - rows.start] = array.to_numpy()[lo - pos:hi - pos]
        pos += len(array)
    return wide


def rows_in(times: np.ndarray, window: tuple[int, int]) -> slice:
    """The rows of ``times`` (sorted, as a payload is) in ``window``, both ends included."""
    return slice(int(np.searchsorted(times, window[0], "left")), int(np.searchsorted(times, window[1], "right")))


def running_sums(column: list[pa.Array], firsts: list[int] | None = None, *, how: str = "d") -> np.ndarray:
    """A delta-coded column's values (``column``: one array per batch): each batch's
    running sum (int64), from its first value (``firsts``, one per batch, when kept
    apart: the stored difference is 0). ``how``: the column's kind -- ``s``: the
    differences in units of the step named last; ``a``: offsets from the first value."""
    values = np.empty(sum(len(c) for c in column), dtype=np.int64)
    unit = int(how.rsplit("|", 1)[1]) if how[0] == "s" else 1
    # (Kinds s and a come with each batch's first value: only the narrow codecs write them.)
    assert firsts is not None or how[0] not in "as", how
    pos = 0
    for b, chunk in enumerate(column):
        part, first = values[pos:pos + len(chunk)], None if firsts is None else firsts[b]
        if how[0] == "a" and firsts is not None:
            np.add(chunk.to_numpy(), np.int64(firsts[b]), out=part)
        else:
            _sum_batch(part, chunk.to_numpy(), first, unit)
        pos += len(chunk)
    return values


def _sum_batch(part: np.ndarray, diffs: np.ndarray, first: int | None, unit: int = 1) -> None:
    """``part`` (int64) = the running sum of one batch's ``diffs`` (``first``: its value
    at 0 when kept apart; ``unit``: what one stored step is worth, with ``first``)."""
    if not _steady_sums(part, diffs, first, unit):
        # Widened first, then summed in place: numpy's cumsum casting int32 as it goes
        # (dtype=) ran ~10x slower than the copy and the same-type sum together.
        part[:] = diffs
        if first is not None and len(diffs):
            part[0] = first if unit == 1 else 0
        np.cumsum(part, out=part)
        if unit != 1 and first is not None:
            part *= unit
            part += first


# A batch whose differences are one step but for at most 1 in this many (bars of a
# session: one overnight gap in 375 minutes) is rebuilt without a running sum.
_STEADY_ONE_IN = 16
_STEPS = np.arange(BATCH_ROWS, dtype=np.int64)


def _steady_sums(out: np.ndarray, diffs: np.ndarray, first: int | None, unit: int = 1) -> bool:
    """``out`` = the running sum of ``diffs`` (``first``: the value at 0 when kept apart,
    else ``diffs[0]``), when nearly every difference is the same step: the first value
    plus step x position, plus each rare other difference's excess carried to the end --
    vectorised work instead of numpy's running sum (~5 ns a value with the widening copy
    on the 2-core Xeon; one symbol's 100,000 minutes 0.47 -> 0.12 ms). False (``out``
    untouched) otherwise. ``unit``: what one stored step is worth (with ``first``)."""
    n = len(diffs)
    if unit != 1 and first is None:
        return False
    if n < 64 or n > BATCH_ROWS:
        return False
    step = diffs[1]
    if diffs[2] != step and diffs[3] != step:
        return False  # (prices: rejected before a pass over the batch; 0.09 ms of one symbol's 100,000 bars)
    odd = diffs[1:] != step
    count = int(np.count_nonzero(odd))
    if count * _STEADY_ONE_IN > n:
        return False
    np.add(_stepped(int(step) * unit)[:n], int(diffs[0]) if first is None else first, out=out)
    if count:
        at = np.flatnonzero(odd) + 1
        excess = np.cumsum((diffs[at].astype(np.int64) - int(step)) * unit)
        out[at[0]:] += np.repeat(excess, np.diff(np.append(at, n)))
    return True


@functools.lru_cache(maxsize=16)
def _stepped(step: int) -> np.ndarray:
    """step x position for a batch's rows (a few steps per table: one minute, one day),
    kept so a steady batch is one add."""
    stepped = _STEPS * step
    stepped.flags.writeable = False
    return stepped


def undelta_schema(stored: pa.Schema, deltas: dict[str, str]) -> pa.Schema:
    """The payload schema a delta-coded chunk was written with (its metadata says what
    each delta column was)."""
    # The same few schemas again and again (a chunk's columns, their stored widths): built
    # once. Built each time it took ~25 us of a 1,440-row patch segment's ~200 us decode;
    # keyed by the schema's text (0.7 us), not the schema (its hash: 3 us, 8 after a gc).
    key = (stored.to_string(show_field_metadata=False, show_schema_metadata=False), tuple(deltas.items()))
    found = _UNDELTA.get(key)
    if found is None:
        if len(_UNDELTA) >= 256:
            _UNDELTA.clear()
        found = _UNDELTA[key] = _undelta(stored, key[1])
    return found


_UNDELTA: dict[tuple[str, tuple[tuple[str, str], ...]], pa.Schema] = {}


def _undelta(stored: pa.Schema, items: tuple[tuple[str, str], ...]) -> pa.Schema:
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
