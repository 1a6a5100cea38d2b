"""A batch's rows by the sealed chunk they belong to: series keys, calendar periods, groups.

A chunk holds one series (its ``chunk_by`` values: the symbol, and the timeframe where
the table has one) over one calendar month. Writers group their validated rows so
(:func:`chunk_groups`), sealing splits a month's rows by series (:func:`split_by_series`),
and both name the months a batch touches (:func:`periods_of`).
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..tables import TableSpec
from . import sealed_format as chunks

__all__ = ["ChunkKey", "SeriesKey", "chunk_groups", "period_range", "periods_of", "split_by_series"]


SeriesKey = tuple[Any, ...]  # the chunk_by values of one series


ChunkKey = tuple[SeriesKey, dt.date]  # (series, period_start)


def periods_of(spec: TableSpec, table: pa.Table) -> list[dt.date]:
    """The distinct calendar months of ``table``'s time column, sorted."""
    ts = table.column(spec.time_column or "timestamp")
    if ts.null_count == len(ts) or table.num_rows == 0:
        return []
    first, last = (v.as_py() for v in pc.min_max(ts).values())
    if (first.year, first.month) == (last.year, last.month):
        return [dt.date(first.year, first.month, 1)]  # a live save's rows: ~15 us, numpy's unique ~60 us
    # The distinct days by hashing, then their months: 1M bars, 9 ms against 26 ms for
    # numpy's sorting unique of datetime64[M].
    micros = (pc.drop_null(ts) if ts.null_count else ts).cast(pa.int64()).to_numpy(zero_copy_only=False)
    days = pc.unique(pa.array(np.floor_divide(micros, 86_400_000_000))).to_pylist()
    epoch = dt.date(1970, 1, 1)
    return sorted({(epoch + dt.timedelta(days=d)).replace(day=1) for d in days})


def time_span(spec: TableSpec, table: pa.Table) -> tuple[Any, Any] | None:
    """The first and last time of ``table``'s rows (Python values), or None when it has no
    rows or ``spec`` no time column: the span a write probes, merges and records."""
    if spec.time_column is None or table.num_rows == 0:
        return None
    bounds = pc.min_max(table.column(spec.time_column))
    return bounds["min"].as_py(), bounds["max"].as_py()


def period_range(first: dt.date, last: dt.date) -> list[dt.date]:
    out, p = [], chunks.period_of(first)
    while p <= last:
        out.append(p)
        p = chunks.next_period(p)
    return out


def chunk_groups(spec: TableSpec, table: pa.Table) -> tuple[dict[ChunkKey, pa.Table], np.ndarray]:
    """``table``'s rows by the chunk they belong to ((series, period) -> its rows, in their
    order; chunks in order of first appearance) and each row's chunk number (an index into
    the dict's order). A writer's validated rows come in key order, so each chunk's rows
    are usually one run: slices of ``table``, no copy. Otherwise one gather.

    Why not polars' partition_by: the round trip (from Arrow, the period column, the
    partition, back to Arrow) took 8 ms of a 62 ms restatement of 14,400 rows and ~0.2 s
    of a 1M-row backfill.
    """
    n = table.num_rows
    codes = np.zeros(n, dtype=np.int64)
    values: list[list[Any]] = []
    indices: list[np.ndarray] = []
    for name in spec.chunk_by:  # NOT NULL: validated
        distinct, index = _key_codes(table.column(name).combine_chunks())
        values.append(distinct)
        indices.append(index)
        codes = codes * len(values[-1]) + indices[-1]
    micros = table.column(spec.time_column or "timestamp").cast(pa.int64()).to_numpy(zero_copy_only=False)
    months = _month_numbers(micros)  # chunks.period_number
    first_month = int(months.min()) if n else 0
    codes = codes * (int(months.max()) - first_month + 1 if n else 1) + (months - first_month)
    starts = np.flatnonzero(np.concatenate(([True], codes[1:] != codes[:-1]))) if n else np.zeros(0, np.int64)
    run_codes = codes[starts]
    if len(np.unique(run_codes)) == len(run_codes):  # one run per chunk
        bounds = [*starts.tolist(), n]
        firsts = starts
        parts = [table.slice(a, b - a) for a, b in itertools.pairwise(bounds)]
        number = np.repeat(np.arange(len(starts)), np.diff(bounds))
    else:
        _, firsts, number = np.unique(codes, return_index=True, return_inverse=True)
        rank = np.argsort(np.argsort(firsts))  # chunk numbers in order of first appearance
        number = rank[number]
        firsts = np.sort(firsts)
        order = np.argsort(number, kind="stable")
        gathered = table.take(pa.array(order))
        bounds = [0, *np.cumsum(np.bincount(number, minlength=len(firsts))).tolist()]
        parts = [gathered.slice(a, b - a) for a, b in itertools.pairwise(bounds)]
    keys = [(tuple(v[ix[i]] for v, ix in zip(values, indices, strict=True)),
             chunks.period_from_number(int(months[i]))) for i in firsts.tolist()]
    return dict(zip(keys, parts, strict=True)), number


def _key_codes(column: pa.Array) -> tuple[list[Any], np.ndarray]:
    """A key column's distinct values and each row's index into them. Rows in key order
    (a validated backfill) come in a few runs, found by comparing neighbours: 7 ms for a
    1M-row symbol column, where Arrow's dictionary_encode took 24 ms."""
    n = len(column)
    if n > 1:
        starts = np.flatnonzero(pc.not_equal(column.slice(1), column.slice(0, n - 1)).to_numpy(
            zero_copy_only=False)) + 1
        if len(starts) < n // 64:  # else a hash of every value is cheaper than a dict of runs
            starts = np.concatenate(([0], starts))
            distinct: dict[Any, int] = {}
            run_codes = [distinct.setdefault(v, len(distinct)) for v in column.take(starts).to_pylist()]
            lengths = np.diff(np.append(starts, n))
            return list(distinct), np.repeat(np.array(run_codes, dtype=np.int64), lengths)
    encoded = pc.dictionary_encode(column)
    return encoded.dictionary.to_pylist(), encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def _month_numbers(micros: np.ndarray) -> np.ndarray:
    """Each time's month (``chunks.period_number``: months since 1970-01), by where it
    falls among the month starts of its span: 5 ms for 1M times, where numpy's
    ``datetime64[M]`` conversion took 18."""
    if not len(micros):
        return np.zeros(0, dtype=np.int64)
    first, last = (np.datetime64(int(v), "us").astype("datetime64[M]") for v in (micros.min(), micros.max()))
    starts = np.arange(first, last + 1)
    bounds = starts.astype("datetime64[us]").astype(np.int64)
    return np.searchsorted(bounds, micros, side="right") - 1 + int(starts[0].astype(np.int64))


def split_by_series(spec: TableSpec, table: pa.Table) -> dict[SeriesKey, pa.Table]:
    """The rows of one period by series (:func:`chunk_groups`, in Arrow: polars'
    partition_by and the round trip took 0.16 s of a 2.65 s seal of 1M bars)."""
    groups, _ = chunk_groups(spec, table)
    out: dict[SeriesKey, pa.Table] = {}
    for (series, _period), part in groups.items():
        out[series] = pa.concat_tables([out[series], part]) if series in out else part
    return out
