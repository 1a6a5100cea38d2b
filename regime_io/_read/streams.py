"""Streams: a range read in frames of at most ``batch_rows`` rows (bounded memory).

``iter_market_data`` and ``iter_options_data`` take the arguments of their range readers
(:mod:`regime_io._read.readers`) and return a :class:`~regime_io._frames.BatchStream`
(also an Arrow C stream) whose schema is known before the first batch. A range with no
sealed chunk is one connectorx statement streamed as it arrives (the router's guard
checks that in the same statement); otherwise, or when a month is sealed meanwhile, the
stream reads both tiers one symbol (or symbol-month) at a time, each piece a range read.

Example:
    >>> for frame in iter_market_data(db, "NIFTY", "2023-01-01", "2023-12-31"):  # doctest: +SKIP
    ...     process(frame)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .._conn.engines import stream_cx
from .._frames import BatchStream, check_return_type
from .._sql.query import TimeRange
from .._tiers.knowledge import as_of_instant
from .._tiers.router import Scope, is_changed, stream_guard
from .._tiers.sealed_format import next_period, period_of
from ..errors import ReadError, UsageError
from ..tables import TableSpec
from ..types import DateLike, ReturnType
from .decode import as_read, reader_schema
from .readers import equal_filters, option_filters, range_args, read_range, sorted_symbols
from .sqltext import range_order, range_query
from .zones import check_tz, zoned, zoned_batches

if TYPE_CHECKING:
    from .._conn.database import Database

__all__ = ["empty_stream", "iter_market_data", "iter_options_data"]


def iter_market_data(db: Database, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                     end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                     timeframe: str | None = None, batch_rows: int = 250_000,
                     exact: bool = False, as_of: DateLike | None = None,
                     tz: str | None = None, return_type: ReturnType = "polars") -> BatchStream[Any]:
    """Stream bars in frames of at most ``batch_rows`` rows (bounded memory), each of
    ``return_type`` (``"arrow"``: ``pyarrow.RecordBatch``).

    Arguments are checked when called, not at the first batch. Frames have the schema
    of :func:`get_market_data` and its row order. Served by connectorx's Arrow stream.
    The stream is also an Arrow C stream (:class:`~regime_io._frames.BatchStream`).

    Example:
        >>> for frame in iter_market_data(db, "NIFTY", "2023-01-01", "2023-12-31"):  # doctest: +SKIP
        ...     process(frame)
    """
    check_return_type(return_type)
    spec = db.spec("market_data")
    known = as_of_instant(db, spec, as_of)
    wanted, rng = range_args(db, spec, symbol, symbols, start_date, end_date)
    extra = equal_filters(spec, timeframe=timeframe)
    return _batch_stream(db, spec, exact, check_tz(tz), return_type, _stream_range(
        db, spec, wanted, rng, exact=exact, extra=extra, batch_rows=batch_rows, what="iter_market_data", as_of=known))


def iter_options_data(db: Database, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                      end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                      expiry: DateLike | Sequence[DateLike] | None = None,
                      strikes: float | Decimal | Sequence[float | Decimal] | None = None,
                      option_type: str | Sequence[str] | None = None, batch_rows: int = 250_000,
                      exact: bool = False, as_of: DateLike | None = None,
                      tz: str | None = None, return_type: ReturnType = "polars") -> BatchStream[Any]:
    """Stream option bars in frames of ``return_type`` (filters as :func:`get_options_data`).

    Example:
        >>> rows = sum(f.height for f in iter_options_data(db, "NIFTY", "2023-01-01", "2023-12-31"))  # doctest: +SKIP
    """
    check_return_type(return_type)
    spec = db.spec("options_data")
    known = as_of_instant(db, spec, as_of)
    wanted, rng = range_args(db, spec, symbol, symbols, start_date, end_date)
    extra = option_filters(spec, expiry=expiry, strikes=strikes, option_type=option_type)
    return _batch_stream(db, spec, exact, check_tz(tz), return_type, _stream_range(
        db, spec, wanted, rng, exact=exact, extra=extra, batch_rows=batch_rows, what="iter_options_data", as_of=known))


def _batch_stream(db: Database, spec: TableSpec, exact: bool, tz: str | None, return_type: ReturnType,
                  batches: Iterator[pa.RecordBatch]) -> BatchStream[Any]:
    """A stream's batches (time column in the zone asked for) with their schema, known
    before the first batch: the range reader's schema, zoned alike."""
    schema = zoned(db, spec, reader_schema(spec, list(spec.column_names), exact=exact).empty_table(), tz).schema
    return BatchStream(schema, zoned_batches(db, spec, batches, tz), return_type=return_type)


def empty_stream(spec: TableSpec, *, exact: bool = False, return_type: ReturnType = "polars") -> BatchStream[Any]:
    """A stream of no batches with the reader schema of ``spec`` (the disabled mode)."""
    return BatchStream(reader_schema(spec, list(spec.column_names), exact=exact), iter(()), return_type=return_type)


def _stream_range(db: Database, spec: TableSpec, symbols: list[str], rng: TimeRange, *, exact: bool,
                  extra: Sequence[tuple[str, Any]], batch_rows: int, what: str,
                  as_of: dt.datetime | None = None) -> Iterator[pa.RecordBatch]:
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise UsageError(f"batch_rows: expected a positive integer, got {batch_rows!r}", table=spec.key,
                        value=batch_rows)
    if any(v == [] for _, v in extra):
        symbols = []
    names = list(spec.column_names)
    schema = reader_schema(spec, names, exact=exact)
    if not symbols:
        return iter(())
    if as_of is not None:  # one symbol-month at a time, each read as of (like a stream over both tiers)
        return _stream_both(db, spec, symbols, rng, exact=exact, extra=extra, batch_rows=batch_rows, what=what,
                            as_of=as_of)
    # One statement, one snapshot: with no chunks in the range (the guard checks it in the
    # statement), the whole stream comes from the row tier.
    relation = stream_guard(db, spec, Scope(symbols, rng, extra))
    if relation is None:
        return _stream_both(db, spec, symbols, rng, exact=exact, extra=extra, batch_rows=batch_rows, what=what)
    q, sql = range_query(db, spec, symbols, rng, names=names, exact=exact, extra=extra, drop_symbol=False,
                         relation=relation)

    def batches() -> Iterator[pa.RecordBatch]:
        started = False
        try:
            for batch in stream_cx(db, q, sql, batch_rows=batch_rows, what=what, table=spec.key):
                started = True
                if batch.num_rows:
                    table = as_read(pa.Table.from_batches([batch]), spec, schema, exact=exact)
                    yield table.combine_chunks().to_batches()[0]
        except ReadError as err:
            if started or not is_changed(err):
                raise
            # Sealed between the check and the statement: nothing was yielded; read both tiers.
            yield from _stream_both(db, spec, symbols, rng, exact=exact, extra=extra, batch_rows=batch_rows,
                                    what=what)

    return batches()


def _stream_both(db: Database, spec: TableSpec, symbols: list[str], rng: TimeRange, *, exact: bool,
                 extra: Sequence[tuple[str, Any]], batch_rows: int, what: str,
                 as_of: dt.datetime | None = None) -> Iterator[pa.RecordBatch]:
    """A stream over both tiers: one symbol at a time (one month at a time when the row
    order is time-major within a symbol), each piece read like a range read."""
    names = list(spec.column_names)
    order = range_order(spec)
    time_major = order[1] == spec.time_column or any(n == "timeframe" for n, _ in extra)
    pieces: list[tuple[str, TimeRange]] = []
    for symbol in sorted_symbols(db, symbols):
        if not time_major:
            pieces.append((symbol, rng))
            continue
        start = rng.start
        while start < rng.end or (start == rng.end and not rng.end_exclusive):
            month_end = dt.datetime.combine(next_period(period_of(start)), dt.time())
            if month_end < rng.end or (month_end == rng.end and rng.end_exclusive):
                pieces.append((symbol, TimeRange(start, month_end, end_exclusive=True)))
            else:
                pieces.append((symbol, TimeRange(start, rng.end, end_exclusive=rng.end_exclusive)))
                break
            start = month_end

    def batches() -> Iterator[pa.RecordBatch]:
        for symbol, piece in pieces:
            table = read_range(db, spec, [symbol], piece, names=names, exact=exact, extra=extra, what=what,
                                as_of=as_of)
            yield from (b for b in table.combine_chunks().to_batches(max_chunksize=batch_rows) if b.num_rows)

    return batches()
