"""Readers: ranges, latest rows, regime statistics and point-in-time joins as frames.

Every reader returns a ``polars.DataFrame`` by default (``return_type="pandas"`` or
``"arrow"`` for the others) whose columns and dtypes are fixed per reader and identical
for empty and non-empty results: DECIMAL columns as ``Float64`` (exact
``Decimal(p, s)`` with ``exact=True``), timestamps as naive ``Datetime("us")`` in the
storage time zone. Time ranges are ``[start, end]`` inclusive; a date as ``end`` means
the whole of that day. See ``docs/reading.md`` for the dtype and engine tables.

Engines: range reads run on the pool's warm ADBC connection (small ranges with bound
parameters; larger ones with inlined values, which the driver streams through COPY
binary into Arrow); streams (:mod:`regime_io._read.streams`), resampling and as-of joins
go through connectorx; latest rows, option chains, regime statistics and optimisation
results go through the pool's warm connections with bound parameters, because a new
connectorx connection per call would cost more than the query.

Example:
    >>> from regime_io import PostgreSQLIntegration
    >>> pg = PostgreSQLIntegration()                                    # doctest: +SKIP
    >>> bars = pg.get_market_data("NIFTY", "2024-01-02", "2024-01-31", timeframe="1m")  # doctest: +SKIP
    >>> pg.asof_regimes(bars)                                           # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from .._conn.engines import read_lookups
from .._frames import VIEWS, check_index_col, check_return_type, conform, convert, with_index
from .._schema.timezones import check_time_kind
from .._sql.args import (
    is_aware,
    parse_date,
    parse_duration,
    parse_range,
    parse_time,
    resolve_symbols,
    symbol_arg,
    symbol_list,
    text_arg,
)
from .._sql.query import AtLeast, Query, TimeRange
from .._sql.quote import quote_ident
from .._tiers.knowledge import as_of_instant
from .._tiers.router import (
    NEWEST_CHUNK_MATCH,
    Relation,
    RowRead,
    Scope,
    SqlBuilder,
    collation_order,
    merge_latest,
    newest_chunks_queries,
    newest_sealed_rows,
    read_rows,
    read_sql,
)
from ..errors import UsageError
from ..tables import TableKey, TableSpec, regime_spec
from ..types import DateLike, ParametersAs, RegimeTable, ReturnType
from . import resample as _sessions
from .decode import (
    DISTRIBUTION_SCHEMA,
    TRANSITIONS_SCHEMA,
    as_read,
    column_names,
    decode_parameters,
    empty_frame,
    reader_schema,
)
from .hints import explain_empty
from .history import latest_as_of
from .lastrows import check_last, read_last_rows
from .resample import Resample, bucket_sql, parse_resample, session_hours, table_is_aware
from .sqltext import (
    latest_query,
    range_order,
    range_query,
    select_list,
    symbol_condition,
    symbol_left_out,
    where_conditions,
)
from .zones import check_tz, zoned

if TYPE_CHECKING:
    from .._conn.database import Database

__all__ = [
    "get_1min_market_regimes", "get_latest", "get_market_data", "get_market_regime_distribution",
    "get_market_regimes", "get_optimization_results", "get_option_chain", "get_options_data",
    "get_regime_transitions",
]


_LATEST_TABLES: tuple[TableKey, ...] = ("market_data", "market_regimes", "market_regimes_1min")


# ---------------------------------------------------------------------------------------
# Range readers


def get_market_data(db: Database, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                    end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                    timeframe: str | None = None, columns: Sequence[str] | None = None,
                    resample: str | dt.timedelta | None = None, calendar: str | None = None, exact: bool = False,
                    as_of: DateLike | None = None, tz: str | None = None, last: int | None = None,
                    index_col: str | Sequence[str] | None = None, strict: bool = False,
                    return_type: ReturnType = "polars") -> Any:
    """OHLCV bars of one or more symbols in ``[start, end]`` (inclusive).

    Parameters:
        symbol_or_symbols: ``"NIFTY"`` or ``["NIFTY", "BANKNIFTY"]``.
        start, end: datetimes, dates or ISO strings; a date as ``end`` includes that day.
        timeframe: only bars of this timeframe (e.g. ``"1m"``).
        columns: a subset of the table's columns, returned in the order given.
        resample: aggregate server-side into buckets of this size (``"5m"``, ``"1h"``,
            ``"1d"``, ``"1w"``, ``"1mo"``, pandas' ``"5T"``/``"1H"``/``"1D"``): first open,
            max high, min low, last close, summed volume; buckets are labelled by their
            start (left edge); intraday buckets start at the session open of ``calendar``
            and never span two sessions (``regime_io._read.resample``); ``timeframe`` becomes
            the resample label.
        calendar: the exchange calendar whose session open anchors intraday buckets; None:
            the ``calendars`` setting's entry for the symbol, else the ``calendar`` setting.
            Bars outside its sessions warn (``CalendarMismatchWarning``).
        exact: DECIMAL columns as exact decimals instead of Float64.
        as_of: the rows as they were known at this instant (docs/history.md); default: now.
        last: only the last ``last`` rows of each symbol at or before ``end`` (:mod:`regime_io._read.lastrows`).
        index_col: with ``return_type="pandas"``, the column(s) to make the index, as
            ``pandas.read_sql`` does (``"timestamp"``: a ``DatetimeIndex``).
        strict: with ``resample``, bars outside the calendar's sessions are a ``UsageError``
            instead of a warning.
        return_type: ``"polars"``, ``"pandas"`` or ``"arrow"``.

    Returns rows ordered by symbol, timeframe and timestamp.

    Raises:
        UsageError: bad arguments (``start`` after ``end``, unknown column, bad dates).
        ReadError: the server refused the query.

    Example:
        >>> get_market_data(db, "NIFTY", "2024-01-02", "2024-01-02", resample="5m")  # doctest: +SKIP
    """
    spec = db.spec("market_data")
    check_return_type(return_type)
    known = as_of_instant(db, spec, as_of)
    wanted, rng = range_args(db, spec, symbol, symbols, start_date, end_date)
    names = column_names(spec, columns)
    index = check_index_col(index_col, return_type, names, table=spec.key)
    extra = equal_filters(spec, timeframe=timeframe)
    every = parse_resample(resample) if resample is not None else None
    n = check_last(spec, last, resample=resample)
    groups = _sessions.calendar_groups(db.settings, wanted, calendar)
    if every is not None:
        for name in groups:
            session_hours(name)  # an unknown calendar is refused whatever the size
    if not wanted:
        return with_index(empty_frame(spec, return_type=return_type, exact=exact, columns=names), index)
    if every is None:
        table = read_range(db, spec, wanted, rng, names=names, exact=exact, extra=extra,
                            what="get_market_data", as_of=known, last=n, views=return_type == "polars" and VIEWS)
    else:
        table = _read_resampled(db, spec, groups, rng, names=names, exact=exact, extra=extra,
                                every=every, strict=strict, as_of=known)
    if table.num_rows == 0:
        explain_empty(db, spec, wanted, timeframe=dict(extra).get("timeframe"), resample_hint=every is None)
    return with_index(convert(zoned(db, spec, table, check_tz(tz)), return_type), index)


def get_options_data(db: Database, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                     end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                     expiry: DateLike | Sequence[DateLike] | None = None,
                     strikes: float | Decimal | Sequence[float | Decimal] | None = None,
                     option_type: str | Sequence[str] | None = None, columns: Sequence[str] | None = None,
                     exact: bool = False, as_of: DateLike | None = None,
                     tz: str | None = None, last: int | None = None,
                    index_col: str | Sequence[str] | None = None,
                    return_type: ReturnType = "polars") -> Any:
    """Option bars of ``symbol`` in ``[start, end]``, optionally by expiry, strike and type.

    Strikes are compared at the column's scale (two decimals). Rows are ordered by
    timestamp, then expiry, strike and type.

    Example:
        >>> get_options_data(db, "NIFTY", "2024-01-02", "2024-01-02", expiry="2024-01-25",
        ...                  strikes=[21500, 21600], option_type="CE")   # doctest: +SKIP
    """
    spec = db.spec("options_data")
    check_return_type(return_type)
    known = as_of_instant(db, spec, as_of)
    wanted, rng = range_args(db, spec, symbol, symbols, start_date, end_date)
    names = column_names(spec, columns)
    index = check_index_col(index_col, return_type, names, table=spec.key)
    extra = option_filters(spec, expiry=expiry, strikes=strikes, option_type=option_type)
    table = read_range(db, spec, wanted, rng, names=names, exact=exact, extra=extra, what="get_options_data",
                        as_of=known, last=check_last(spec, last))
    if table.num_rows == 0:
        explain_empty(db, spec, wanted)
    return with_index(convert(zoned(db, spec, table, check_tz(tz)), return_type), index)


def get_market_regimes(db: Database, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                       end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                       timeframe: str | None = None, columns: Sequence[str] | None = None,
                       exact: bool = False, as_of: DateLike | None = None,
                       tz: str | None = None, last: int | None = None,
                    index_col: str | Sequence[str] | None = None,
                    return_type: ReturnType = "polars") -> Any:
    """Regime classifications (``market_regimes``) of ``symbol`` in ``[start, end]``.

    Example:
        >>> get_market_regimes(db, "NIFTY", "2024-01-01", "2024-01-31", timeframe="5m")  # doctest: +SKIP
    """
    spec = db.spec("market_regimes")
    check_return_type(return_type)
    known = as_of_instant(db, spec, as_of)
    wanted, rng = range_args(db, spec, symbol, symbols, start_date, end_date)
    names = column_names(spec, columns)
    index = check_index_col(index_col, return_type, names, table=spec.key)
    extra = equal_filters(spec, timeframe=timeframe)
    table = read_range(db, spec, wanted, rng, names=names, exact=exact, extra=extra,
                        what="get_market_regimes", as_of=known, last=check_last(spec, last))
    if table.num_rows == 0:
        explain_empty(db, spec, wanted, timeframe=dict(extra).get("timeframe"))
    return with_index(convert(zoned(db, spec, table, check_tz(tz)), return_type), index)


def get_1min_market_regimes(db: Database, symbol: str | Sequence[str] | None = None,
                            start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                            symbols: Sequence[str] | None = None, columns: Sequence[str] | None = None,
                            exact: bool = False, as_of: DateLike | None = None,
                            tz: str | None = None, last: int | None = None,
                    index_col: str | Sequence[str] | None = None,
                    return_type: ReturnType = "polars") -> Any:
    """1-minute regimes of ``symbol`` in ``[start_date, end_date]`` (the seed's reader).

    Example:
        >>> get_1min_market_regimes(db, "NIFTY", "2024-01-02", "2024-01-02")  # doctest: +SKIP
    """
    spec = db.spec("market_regimes_1min")
    check_return_type(return_type)
    known = as_of_instant(db, spec, as_of)
    wanted, rng = range_args(db, spec, symbol, symbols, start_date, end_date)
    names = column_names(spec, columns)
    index = check_index_col(index_col, return_type, names, table=spec.key)
    table = read_range(db, spec, wanted, rng, names=names, exact=exact, extra=[],
                        what="get_1min_market_regimes", as_of=known, last=check_last(spec, last))
    if table.num_rows == 0:
        explain_empty(db, spec, wanted)
    return with_index(convert(zoned(db, spec, table, check_tz(tz)), return_type), index)


def get_optimization_results(db: Database, symbol: str | Sequence[str] | None = None, *,
                             symbols: Sequence[str] | None = None, algorithm: str | None = None,
                             timeframe: str | None = None, top: int | None = None, exact: bool = False,
                             parameters: ParametersAs = "struct", as_of: DateLike | None = None,
                             return_type: ReturnType = "polars") -> Any:
    """Optimisation results, best ``fitness_value`` first (ties: oldest first).

    ``parameters`` (JSONB) is decoded into a struct column whose fields are the union of
    the keys of the rows returned (a key missing from a row is null; a key whose values
    have different JSON types across rows becomes a string); ``parameters="json"`` keeps
    the JSON text instead, a fixed String column. Served by the warm ADBC connection.

    Example:
        >>> get_optimization_results(db, "NIFTY", algorithm="bayesian", top=5)  # doctest: +SKIP
    """
    spec = db.spec("optimization_results")
    check_return_type(return_type)
    known = as_of_instant(db, spec, as_of)
    if parameters not in ("struct", "json"):
        raise UsageError(f"parameters {parameters!r} is not supported; allowed: struct, json", value=parameters)
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise UsageError(f"top: expected a positive integer, got {top!r}", table=spec.key, value=top)
    wanted = resolve_symbols(symbol, symbols, case=db.settings.symbol_case, required=False)
    filters = equal_filters(spec, algorithm=algorithm, timeframe=timeframe)
    names = list(spec.column_names)

    def build(relation: Relation) -> tuple[Query, str]:
        q = Query()
        target = relation(q)
        conditions = []
        if wanted is not None:
            conditions.append(symbol_condition(q, wanted) if wanted else "false")
        for name, value in filters:
            conditions.append(f"t.{quote_ident(name)} = {q.param(value)}")
        sql = (f"SELECT {select_list(spec, names, exact=exact, engine='adbc')} FROM {target} t"
               + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
               + ' ORDER BY t."fitness_value" DESC, t."id"'
               + (f" LIMIT {q.param(top)}" if top is not None else ""))
        return q, sql

    everything = TimeRange(dt.datetime.min, dt.datetime.max, end_exclusive=False)  # unused: never sealed
    raw = read_sql(db, spec, Scope([], everything), build, what="get_optimization_results", as_of=known)
    table = as_read(raw, spec, reader_schema(spec, names, exact=exact), exact=exact)
    return convert(decode_parameters(table, parameters), return_type)


# ---------------------------------------------------------------------------------------
# Latest rows and option chains (warm ADBC connection, index-driven plans)


def get_latest(db: Database, table: str, symbol: str | Sequence[str] | None = None, *,
               symbols: Sequence[str] | None = None, timeframe: str | None = None, exact: bool = False,
               as_of: DateLike | None = None, tz: str | None = None, return_type: ReturnType = "polars") -> Any:
    """The latest row of each series of ``market_data``, ``market_regimes`` or
    ``market_regimes_1min``.

    A series is a symbol, or a (symbol, timeframe) pair in the tables that have a
    timeframe, unless ``timeframe`` picks one. ``symbol`` gives that symbol's latest
    row(s), ``symbols`` those of each listed symbol, and neither every symbol present.
    Symbols without rows are simply absent. Rows are ordered by symbol (and timeframe).

    The series come from the series catalog (:mod:`regime_io._tiers.catalog`), joined to the
    table on the exact key ``(symbol[, timeframe], timestamp = last_ts)``: one primary-key
    probe per series, whatever the history length, and one SQL form that Citus pushes
    down to its workers (:func:`regime_io._read.sqltext.latest_query`). Rows written by other
    tools are found after ``refresh_catalog()``.

    Example:
        >>> get_latest(db, "market_regimes_1min", symbols=["NIFTY", "BANKNIFTY"])  # doctest: +SKIP
    """
    check_return_type(return_type)
    spec = db.spec(table)
    if spec.key not in _LATEST_TABLES:
        raise UsageError(f"get_latest does not read {table!r}; allowed: {', '.join(_LATEST_TABLES)}",
                        table=table, value=table)
    tf = dict(equal_filters(spec, timeframe=timeframe)).get("timeframe")
    wanted = resolve_symbols(symbol, symbols, case=db.settings.symbol_case, required=False)
    schema = reader_schema(spec, list(spec.column_names), exact=exact)
    known = as_of_instant(db, spec, as_of)
    if wanted == []:
        return convert(zoned(db, spec, schema.empty_table(), check_tz(tz)), return_type)
    if known is not None:
        rows = as_read(latest_as_of(db, spec, wanted, tf, exact=exact, as_of=known), spec, schema, exact=exact)
        return convert(zoned(db, spec, rows, check_tz(tz)), return_type)
    # The sealed tier's newest rows in the same statement; chunks sealed before schema
    # version 8 (no last_row), while the table may have any, in the same round trip.
    relations = [(newest_sealed_rows(db, spec), NEWEST_CHUNK_MATCH)] if spec.sealable else []
    older = newest_chunks_queries(db, spec, wanted, tf)
    found = read_lookups(db, [latest_query(db, spec, wanted, timeframe=tf, exact=exact, relations=relations),
                              *older], what="get_latest", table=spec.key)
    table_ = merge_latest(db, spec, as_read(found[0], spec, schema, exact=exact), found[1:], schema)
    if table_.num_rows < len(wanted or ()):  # some symbol named has no row
        explain_empty(db, spec, [s for s in wanted or () if s not in set(table_.column("symbol").to_pylist())],
                      timeframe=tf)
    return convert(zoned(db, spec, table_, check_tz(tz)), return_type)


def get_option_chain(db: Database, symbol: str, at: DateLike, *, expiry: DateLike | None = None,
                     exact: bool = False, as_of: DateLike | None = None,
                     tz: str | None = None, return_type: ReturnType = "polars") -> Any:
    """The option chain of ``symbol`` as it stood at ``at``: for each (expiry, strike,
    type) not expired at ``at`` (``expiry_date >= at``'s date), its latest row at or
    before ``at``. Contracts with no row at or before ``at`` are absent.

    A date as ``at`` means the end of that day. Rows are ordered by expiry, strike and
    type. The plan skip-scans the distinct contracts on the primary key and takes one
    index probe per contract.

    Example:
        >>> get_option_chain(db, "NIFTY", "2024-01-02 10:30", expiry="2024-01-25")  # doctest: +SKIP
    """
    spec = db.spec("options_data")
    check_return_type(return_type)
    known = as_of_instant(db, spec, as_of)
    sym = symbol_arg(symbol, case=db.settings.symbol_case)
    when, is_date = parse_time(at, name="at", timezone=db.settings.storage_timezone)
    _check_bounds(db, spec, at)
    if is_date:
        when = when + dt.timedelta(days=1) - dt.timedelta(microseconds=1)
    expiry_day = None if expiry is None else parse_date(expiry, name="expiry")
    key = 't."expiry_date", t."strike_price", t."option_type"'
    names = list(spec.column_names)

    def build(relation: Relation) -> tuple[Query, str]:
        q = Query()
        target = relation(q)
        p_symbol, p_at = q.param(sym), q.param(when)
        # The timestamp bound lets the server skip partitions after ``at``.
        expiry_cond = f't."expiry_date" >= {p_at}::date AND t."timestamp" <= {p_at}'
        if expiry_day is not None:
            expiry_cond += f' AND t."expiry_date" = {q.param(expiry_day)}'
        return q, _chain_sql(spec, names, exact, target, key, p_symbol, p_at, expiry_cond)

    # Sealed rows: the symbol's chunks up to ``at`` of contracts not expired at ``at``.
    scope_extra: list[tuple[str, Any]] = [("expiry_date", AtLeast(when.date()))]
    if expiry_day is not None:
        scope_extra.append(("expiry_date", expiry_day))
    scope = Scope([str(sym)], TimeRange(dt.datetime(1900, 1, 1), when, end_exclusive=False), scope_extra)
    raw = read_sql(db, spec, scope, build, what="get_option_chain", as_of=known)
    table = as_read(raw, spec, reader_schema(spec, names, exact=exact), exact=exact)
    return convert(zoned(db, spec, table, check_tz(tz)), return_type)


def _chain_sql(spec: TableSpec, names: list[str], exact: bool, target: str, key: str, p_symbol: str, p_at: str,
               expiry_cond: str) -> str:
    """The option chain's skip scan over ``target``: each contract once, then its latest row."""
    return (
        "WITH RECURSIVE contracts(expiry_date, strike_price, option_type) AS ("
        f'(SELECT {key} FROM {target} t WHERE t."symbol" = {p_symbol} AND {expiry_cond} '
        f"ORDER BY {key} LIMIT 1) UNION ALL "
        f"SELECT n.* FROM contracts c CROSS JOIN LATERAL (SELECT {key} FROM {target} t "
        f'WHERE t."symbol" = {p_symbol} AND {expiry_cond} '
        f"AND ({key}) > (c.expiry_date, c.strike_price, c.option_type) ORDER BY {key} LIMIT 1) n) "
        f"SELECT l.* FROM contracts c CROSS JOIN LATERAL ("
        f"SELECT {select_list(spec, names, exact=exact, engine='adbc', alias='t')} FROM {target} t "
        f'WHERE t."symbol" = {p_symbol} AND t."expiry_date" = c.expiry_date '
        f'AND t."strike_price" = c.strike_price AND t."option_type" = c.option_type '
        f'AND t."timestamp" <= {p_at} ORDER BY t."timestamp" DESC LIMIT 1) l '
        "ORDER BY c.expiry_date, c.strike_price, c.option_type"
    )


# ---------------------------------------------------------------------------------------
# Regime statistics (window functions in SQL; only the per-regime rows travel)


def get_market_regime_distribution(db: Database, symbol: str, start_date: DateLike | None = None,
                                   end_date: DateLike | None = None, *,
                                   table: RegimeTable = "1min", timeframe: str | None = None,
                                   max_gap: str | dt.timedelta | None = None, as_of: DateLike | None = None,
                                   return_type: ReturnType = "polars") -> Any:
    """Per regime: ``count`` of rows, ``share`` of rows, ``seconds`` spent and
    ``time_share`` (the time-weighted share), ordered by count (descending), then regime.

    Each row weighs the time until the next row of its series. A gap longer than
    ``max_gap`` (default: 10x the median gap of the range) is a break in the data
    (overnight, a dead feed) and, like the last row of the range, the row then weighs one
    median gap. With fewer than two rows there are no gaps: ``seconds`` is 0 and
    ``time_share`` equals ``share``.

    ``table="1min"`` reads ``market_regimes_1min``, ``"regimes"`` reads
    ``market_regimes`` (``timeframe`` selects one; without it each timeframe is its own
    series and their rows are pooled).

    Example:
        >>> get_market_regime_distribution(db, "NIFTY", "2024-01-01", "2024-01-31")  # doctest: +SKIP
    """
    check_return_type(return_type)
    spec, where, series, scope = _regime_rows(db, symbol, start_date, end_date, table=table, timeframe=timeframe)
    max_seconds = None if max_gap is None else parse_duration(max_gap, name="max_gap").total_seconds()

    def build(relation: Relation) -> tuple[Query, str]:
        q = Query()
        gap_limit = "10 * typical.median_gap" if max_seconds is None else q.param(max_seconds) + "::float8"
        return q, _DISTRIBUTION_SQL.format(series=series, relation=relation(q), where=where(q), gap_limit=gap_limit)

    result = conform(_stat_rows(db, spec, scope, build, as_of, what="get_market_regime_distribution"),
                     DISTRIBUTION_SCHEMA)
    return convert(result, return_type)


_DISTRIBUTION_SQL = (
    "WITH r AS (SELECT t.\"regime\" AS regime, "
    'EXTRACT(EPOCH FROM lead(t."timestamp") OVER (PARTITION BY {series} ORDER BY t."timestamp") '
    '- t."timestamp")::float8 AS gap FROM {relation} t WHERE {where}), '
    "typical AS (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) AS median_gap "
    "FROM r WHERE gap > 0), "
    "w AS (SELECT r.regime, CASE WHEN r.gap <= {gap_limit} THEN r.gap ELSE typical.median_gap END "
    "AS seconds FROM r CROSS JOIN typical) "
    "SELECT regime, count(*)::int8 AS count, "
    "(count(*)::float8 / sum(count(*)) OVER ())::float8 AS share, "
    "coalesce(sum(seconds), 0)::float8 AS seconds, "
    "coalesce(sum(seconds) / nullif(sum(sum(seconds)) OVER (), 0), "
    "count(*)::float8 / sum(count(*)) OVER ())::float8 AS time_share "
    'FROM w GROUP BY regime ORDER BY count DESC, regime COLLATE "C"'
)


def get_regime_transitions(db: Database, symbol: str, start_date: DateLike | None = None,
                           end_date: DateLike | None = None, *,
                           table: RegimeTable = "1min", timeframe: str | None = None,
                           as_of: DateLike | None = None, return_type: ReturnType = "polars") -> Any:
    """The regime transition matrix as rows: ``from_regime``, ``to_regime``, ``count``,
    ``probability`` (count / all transitions out of ``from_regime``; self-transitions
    included, so each ``from_regime``'s probabilities sum to 1) and ``mean_run_length``
    of ``from_regime`` (consecutive rows in that regime, averaged over its runs; runs are
    cut at the range's ends). A regime seen only in the range's final run has no
    outgoing transition and no row. Ordered by ``from_regime``, ``to_regime``.

    Example:
        >>> get_regime_transitions(db, "NIFTY", "2024-01-01", "2024-01-31")  # doctest: +SKIP
    """
    check_return_type(return_type)
    spec, where, series, scope = _regime_rows(db, symbol, start_date, end_date, table=table, timeframe=timeframe)

    def build(relation: Relation) -> tuple[Query, str]:
        q = Query()
        return q, _TRANSITIONS_SQL.format(series=series, relation=relation(q), where=where(q))

    result = conform(_stat_rows(db, spec, scope, build, as_of, what="get_regime_transitions"), TRANSITIONS_SCHEMA)
    return convert(result, return_type)


_TRANSITIONS_SQL = (
    'WITH r AS (SELECT t."regime" AS regime, t."timestamp" AS ts, {series} AS series, '
    'lag(t."regime") OVER (PARTITION BY {series} ORDER BY t."timestamp") AS prev '
    "FROM {relation} t WHERE {where}), "
    "runs AS (SELECT regime, series, sum(CASE WHEN prev IS DISTINCT FROM regime THEN 1 ELSE 0 END) "
    "OVER (PARTITION BY series ORDER BY ts) AS run FROM r), "
    "lengths AS (SELECT regime, avg(n)::float8 AS mean_run_length FROM "
    "(SELECT regime, series, run, count(*) AS n FROM runs GROUP BY regime, series, run) x GROUP BY regime), "
    "pairs AS (SELECT prev AS from_regime, regime AS to_regime, count(*) AS n FROM r "
    "WHERE prev IS NOT NULL GROUP BY prev, regime) "
    "SELECT p.from_regime, p.to_regime, p.n::int8 AS count, "
    "(p.n::float8 / sum(p.n) OVER (PARTITION BY p.from_regime))::float8 AS probability, "
    "l.mean_run_length FROM pairs p JOIN lengths l ON l.regime = p.from_regime "
    'ORDER BY p.from_regime COLLATE "C", p.to_regime COLLATE "C"'
)


# ---------------------------------------------------------------------------------------
# Internals


def _check_bounds(db: Database, spec: TableSpec, *bounds: Any) -> None:
    """The time zone rule (regime_io._schema.timezones) for zone-aware bounds: refused against a
    table written with naive times. Naive bounds (dates, '2024-01-02 09:15') are storage-zone
    times like everything stored, whichever kind was written, so they always pass."""
    if any(is_aware(b) for b in bounds if b is not None):
        check_time_kind(db, spec, aware=True, what=f"{spec.key} bounds")


def range_args(db: Database, spec: TableSpec, symbol: Any, symbols: Any, start_date: Any,
                end_date: Any) -> tuple[list[str], TimeRange]:
    """The symbols and the time range every range reader and stream takes, checked alike."""
    wanted = resolve_symbols(symbol, symbols, case=db.settings.symbol_case)
    assert wanted is not None
    rng = parse_range(start_date, end_date, timezone=db.settings.storage_timezone)
    _check_bounds(db, spec, start_date, end_date)
    return wanted, rng


def equal_filters(spec: TableSpec, **values: Any) -> list[tuple[str, Any]]:
    """Equality filters on text columns, spelled as the writers store them
    (:meth:`~regime_io.tables.Column.canonical`): ``"1min"`` finds ``"1m"`` rows."""
    extra: list[tuple[str, Any]] = []
    for name, value in values.items():
        if value is None:
            continue
        text = text_arg(value, name=name)
        if name not in spec.column_names:
            raise UsageError(f"{spec.key} has no {name} column; drop {name}={value!r}", table=spec.key,
                             column=name, value=value)
        extra.append((name, _canonical(spec, name, text)))
    return extra


def _canonical(spec: TableSpec, name: str, value: Any) -> str:
    column = spec.column(name)
    canonical = column.canonical(value)
    if canonical is None:
        raise UsageError(f"{name}: {value!r} is not an accepted value; allowed: {column.accepted}",
                         table=spec.key, column=name, value=value)
    return canonical


def read_range(db: Database, spec: TableSpec, symbols: list[str], rng: TimeRange, *, names: list[str],
                exact: bool, extra: Sequence[tuple[str, Any]], what: str,
                as_of: dt.datetime | None = None, last: int | None = None, views: bool = False) -> pa.Table:
    """Rows of both tiers: the row tier's answer merged with the sealed chunks' (``regime_io._tiers.sealed_read``);
    with ``last``, only the last rows of each symbol (:mod:`regime_io._read.lastrows`); ``views``: the
    answer is for polars (text may come as Arrow string views, :func:`~regime_io._tiers.router.read_rows`)."""
    schema = reader_schema(spec, names, exact=exact)
    if not symbols or any(value == [] for _, value in extra):
        return schema.empty_table()
    if last is not None:
        return read_last_rows(db, spec, symbols, rng, last, names=names, exact=exact, extra=extra, what=what,
                              as_of=as_of)
    if as_of is not None:
        return _rows_as_of(db, spec, symbols, rng, names=names, exact=exact, extra=extra, what=what, as_of=as_of)

    return read_rows(db, spec, Scope(symbols, rng, extra), range_read(db, spec, symbols, rng, exact=exact,
                                                                      extra=extra, what=what),
                     names=names, exact=exact, order=range_order(spec), views=views)


def range_read(db: Database, spec: TableSpec, symbols: list[str], rng: TimeRange, *, exact: bool,
               extra: Sequence[tuple[str, Any]], what: str) -> RowRead:
    """The row tier's part of a range read, for the router to run."""
    small = is_small_range(spec, symbols, rng)

    def build(names: list[str], relation: Relation | None) -> tuple[Query, str]:
        # Larger ranges: the same warm connection, values inlined as literals (``sql_value``,
        # as for connectorx). Without bound parameters the ADBC driver reads the result with
        # ``COPY (query) TO STDOUT (FORMAT binary)`` streamed into Arrow; with them it would
        # hold the whole result in libpq first. DECIMAL comes as text either way (parsed by
        # ``decimal_text``): binary NUMERIC reaches ADBC as an opaque type (a day's bars 5.7
        # ms, 3.2 as text, 3.6 as ``::float8``: medians of 300). Against connectorx (issue
        # 12 item 6): no new backend per read, ~30% less client CPU.
        return range_query(db, spec, symbols, rng, names=names, exact=exact, extra=extra,
                           drop_symbol=symbol_left_out(symbols, names) is not None,
                           engine="adbc" if exact else "cx", relation=relation)

    def decode(table: pa.Table, names: list[str]) -> pa.Table:
        schema = reader_schema(spec, names, exact=exact)
        return as_read(table, spec, schema, exact=exact,
                       constants=symbol_left_out(symbols, names))

    # Large reads of several symbols: statements over runs of them, run at once (the router);
    # their answers one after the other are this one's, as it is ordered by symbol first.
    split = (partial(range_read, db, spec, rng=rng, exact=exact, extra=extra, what=what)
             if len(symbols) > 1 and range_order(spec)[0] == "symbol"
             and rows_bound(spec, symbols, rng) >= SPLIT_ROWS else None)
    return RowRead(build, decode, what=what, inline=not small, scope=Scope(symbols, rng, extra), split=split)


# Range reads that can return at most this many one-minute bars (symbols x minutes in the
# range) bind their values as parameters (one round trip, the driver's row protocol);
# larger ones inline them so that the driver streams the result through COPY.
SMALL_RANGE_ROWS = 20_000


# Range reads of two symbols or more that can return at least this many one-minute bars
# (:func:`rows_bound`) may run as statements over groups of the symbols, at once: the
# router asks the catalog how many rows to expect (its ``TOGETHER_ROWS``).
SPLIT_ROWS = 200_000


def rows_bound(spec: TableSpec, symbols: list[str], rng: TimeRange) -> float:
    """The most rows a range read can return when the table is keyed by (symbol[,
    timeframe], time) and holds minute bars of one timeframe (symbols x minutes); infinite
    when another key column (option bars: a row per contract and minute) voids the bound.
    Several timeframes, or bars finer than a minute, make it optimistic; the cost of that
    is only a slower path, never a wrong result."""
    if set(spec.primary_key) - {"symbol", "timeframe", spec.time_column}:
        return float("inf")
    minutes = (rng.end - rng.start).total_seconds() / 60 + 1
    return len(symbols) * minutes


def is_small_range(spec: TableSpec, symbols: list[str], rng: TimeRange) -> bool:
    """True when the range holds few rows for sure, judged from the table's key: a table
    keyed by (symbol[, timeframe], time) holds one row per symbol and minute for one
    timeframe of minute bars, so symbols x minutes bounds the read.

    Any other key column (option bars: one row per contract and minute) voids the bound
    (:func:`rows_bound`): such reads always stream through COPY.
    """
    return rows_bound(spec, symbols, rng) <= SMALL_RANGE_ROWS


def _read_resampled(db: Database, spec: TableSpec, groups: dict[str, list[str]], rng: TimeRange, *,
                    names: list[str], exact: bool, extra: Sequence[tuple[str, Any]], every: Resample,
                    strict: bool, as_of: dt.datetime | None = None) -> pa.Table:
    """One read per calendar of the symbols (``calendar_groups``), each checked against its sessions."""
    parts = []
    for calendar, symbols in groups.items():
        table = _read_resampled_on(db, spec, symbols, rng, names=names, exact=exact, extra=extra, every=every,
                                   calendar=calendar, as_of=as_of)
        outside = pc.sum(table["_outside"]).as_py() or 0
        _sessions.check_fit(spec.key, calendar, outside, pc.min(table["_example"]).as_py(), strict=strict,
                  what="get_market_data(resample=...)")
        parts.append(conform(table.drop_columns(["_outside", "_example"]), reader_schema(spec, names, exact=exact)))
    table = pa.concat_tables(parts)
    if len(parts) > 1:
        table = table.sort_by([("symbol", "ascending"), ("timestamp", "ascending")])
    return table


def _read_resampled_on(db: Database, spec: TableSpec, symbols: list[str], rng: TimeRange, *, names: list[str],
                       exact: bool, extra: Sequence[tuple[str, Any]], every: Resample, calendar: str,
                       as_of: dt.datetime | None = None) -> pa.Table:
    aware = table_is_aware(db, spec)
    what = "get_market_data(resample=...)"
    first, last = _sessions.session_days(db, spec, symbols, rng)
    sessions = _sessions.stored_sessions(db, spec, calendar, first, last)

    def build(relation: Relation) -> tuple[Query, str]:
        q = Query()
        target = relation(q)
        conditions = where_conditions(q, spec, symbols, rng, extra)
        bucket = bucket_sql(q, every, column='t."timestamp"', calendar=calendar, aware=aware,
                            storage_zone=db.settings.storage_timezone, sessions=sessions)
        outside = _sessions.outside_sql(q, sessions, column='t."timestamp"')
        cast = "" if exact else "::float8"
        return q, (
            f'SELECT t."symbol" AS "symbol", {bucket} AS "timestamp", '
            f'(array_agg(t."open" ORDER BY t."timestamp"))[1]{cast} AS "open", '
            f'max(t."high"){cast} AS "high", min(t."low"){cast} AS "low", '
            f'(array_agg(t."close" ORDER BY t."timestamp" DESC))[1]{cast} AS "close", '
            f'sum(t."volume")::int8 AS "volume", {q.param(every.label)}::text AS "timeframe", '
            f'count(*) FILTER (WHERE {outside})::int8 AS "_outside", '
            f'min(t."timestamp") FILTER (WHERE {outside}) AS "_example" '
            f"FROM {target} t WHERE {' AND '.join(conditions)} "
            f'GROUP BY t."symbol", t."timeframe", 2 ORDER BY 1, t."timeframe", 2'
        )

    return read_sql(db, spec, Scope(symbols, rng, extra), build, what=what, as_of=as_of, engine="cx")


def option_filters(spec: TableSpec, *, expiry: Any, strikes: Any, option_type: Any) -> list[tuple[str, Any]]:
    extra: list[tuple[str, Any]] = []
    if expiry is not None:
        if isinstance(expiry, (str, dt.date)):
            extra.append(("expiry_date", parse_date(expiry, name="expiry")))
        else:
            extra.append(("expiry_date", [parse_date(e, name="expiry") for e in expiry]))
    if strikes is not None:
        scale = spec.column("strike_price").scale or 0
        quantum = Decimal(1).scaleb(-scale)
        values = []
        for strike in [strikes] if isinstance(strikes, (int, float, Decimal)) else strikes:
            if isinstance(strike, bool) or not isinstance(strike, (int, float, Decimal)):
                raise UsageError(f"strikes: expected numbers, got {strike!r}", table=spec.key,
                                column="strike_price", value=strike)
            value = Decimal(repr(strike)) if isinstance(strike, float) else Decimal(strike)
            if not value.is_finite():
                raise UsageError(f"strikes: {strike!r} is not a finite number", table=spec.key,
                                column="strike_price", value=strike)
            values.append(value.quantize(quantum))
        extra.append(("strike_price", values))
    if option_type is not None:
        types = list(dict.fromkeys(_canonical(spec, "option_type", t)
                                   for t in symbol_list(option_type, name="option_type", case=None)))
        extra.append(("option_type", types if len(types) != 1 else types[0]))
    return extra


def sorted_symbols(db: Database, symbols: list[str]) -> list[str]:
    """``symbols`` in the server's collation order (the order range reads return them in)."""
    return collation_order(db, symbols)


def _regime_rows(db: Database, symbol: str, start_date: DateLike | None, end_date: DateLike | None, *,
                 table: str, timeframe: str | None) -> tuple[TableSpec, Callable[[Query], str], str, Scope]:
    """The WHERE clause and series expression shared by the regime statistics, and the
    (symbols, range, filters) scope their sealed rows are fetched with."""
    spec = regime_spec(table)
    sym = symbol_arg(symbol, case=db.settings.symbol_case)
    rng = parse_range(start_date, end_date, timezone=db.settings.storage_timezone)
    _check_bounds(db, spec, start_date, end_date)
    tf = dict(equal_filters(spec, timeframe=timeframe)).get("timeframe")
    has_timeframe = "timeframe" in spec.column_names
    assert sym is not None

    def where(q: Query) -> str:
        conditions = [f't."symbol" = {q.param(sym)}', *rng.conditions(q, 't."timestamp"')]
        if tf is not None:
            conditions.append(f't."timeframe" = {q.param(tf)}')
        return " AND ".join(conditions)

    series = 't."timeframe"' if has_timeframe else "0"
    return spec, where, series, Scope([sym], rng, [("timeframe", tf)] if tf is not None else [])


# ---------------------------------------------------------------------------------------
# As of a knowledge time (regime_io._tiers.knowledge)


def _rows_as_of(db: Database, spec: TableSpec, symbols: list[str], rng: TimeRange, *, names: list[str],
                exact: bool, extra: Sequence[tuple[str, Any]], what: str, as_of: dt.datetime) -> pa.Table:
    """A range read as of ``as_of``: the range query over the table as then known (both tiers)."""
    schema = reader_schema(spec, names, exact=exact)
    constants = symbol_left_out(symbols, names)

    def build(relation: Relation) -> tuple[Query, str]:
        return range_query(db, spec, symbols, rng, names=names, exact=exact, extra=extra,
                           drop_symbol=constants is not None, engine="adbc", relation=relation)

    table = read_sql(db, spec, Scope(symbols, rng, extra), build, what=what, as_of=as_of)
    return as_read(table, spec, schema, exact=exact, constants=constants)


def _stat_rows(db: Database, spec: TableSpec, scope: Scope, build: SqlBuilder, as_of: DateLike | None, *,
               what: str) -> pa.Table:
    """A regime statistic's rows, over both tiers, now or as of ``as_of``."""
    return read_sql(db, spec, scope, build, what=what, as_of=as_of_instant(db, spec, as_of))
