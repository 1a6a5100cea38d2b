"""Readers: ranges, latest rows, regime statistics and point-in-time joins as frames.

Every reader returns a ``polars.DataFrame`` by default (``return_type="pandas"`` or
``"arrow"`` for the others) whose columns and dtypes are fixed per reader and identical
for empty and non-empty results: DECIMAL columns as ``Float64`` (exact
``Decimal(p, s)`` with ``exact=True``), timestamps as naive ``Datetime("us")`` in the
storage time zone. Time ranges are ``[start, end]`` inclusive; a date as ``end`` means
the whole of that day. See ``docs/reading.md`` for the dtype and engine tables.

Engines: range reads (and streams) go through connectorx, which decodes the binary
protocol straight into Arrow; latest rows, option chains, regime statistics and
optimisation results go through the pool's warm ADBC connection with bound parameters,
because a new connectorx connection per call would cost more than the query.

Example:
    >>> from regime_io import PostgreSQLIntegration
    >>> pg = PostgreSQLIntegration()                                    # doctest: +SKIP
    >>> bars = pg.get_market_data("NIFTY", "2024-01-02", "2024-01-31", timeframe="1m")  # doctest: +SKIP
    >>> pg.asof_regimes(bars)                                           # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from ._frames import ReturnType, check_return_type, conform, convert
from ._readsql import (
    DateLike,
    Query,
    TimeRange,
    parse_date,
    parse_duration,
    parse_range,
    parse_time,
    read_adbc,
    read_cx,
    read_lookup,
    stream_cx,
    symbol_list,
    text_arg,
)
from ._sql import quote_ident
from .errors import ReadError
from .tables import TABLES, TableKey, TableSpec, table_spec

if TYPE_CHECKING:
    import polars as pl

    from .database import Database

__all__ = [
    "DISTRIBUTION_SCHEMA",
    "TRANSITIONS_SCHEMA",
    "asof_regimes",
    "empty_distribution",
    "empty_frame",
    "empty_transitions",
    "get_1min_market_regimes",
    "get_latest",
    "get_market_data",
    "get_market_regime_distribution",
    "get_market_regimes",
    "get_optimization_results",
    "get_option_chain",
    "get_options_data",
    "get_regime_transitions",
    "iter_market_data",
    "iter_options_data",
    "output_schema",
]

log = logging.getLogger(__name__)

RegimeTable = Literal["1min", "regimes"]
ParametersAs = Literal["struct", "json"]

DISTRIBUTION_SCHEMA = pa.schema([
    ("regime", pa.string()),
    ("count", pa.int64()),
    ("share", pa.float64()),
    ("seconds", pa.float64()),
    ("time_share", pa.float64()),
])

TRANSITIONS_SCHEMA = pa.schema([
    ("from_regime", pa.string()),
    ("to_regime", pa.string()),
    ("count", pa.int64()),
    ("probability", pa.float64()),
    ("mean_run_length", pa.float64()),
])

def _range_order(spec: TableSpec) -> tuple[str, ...]:
    """Row order of range reads: the natural key (time last), except option bars, which
    come time first after the symbol, as a backtest replays them."""
    if spec.key == "options_data":
        time_col = spec.time_column or "timestamp"
        rest = tuple(c for c in spec.primary_key if c not in ("symbol", time_col))
        return ("symbol", time_col, *rest)
    return spec.primary_key


_REGIME_TABLES: dict[str, TableKey] = {
    "1min": "market_regimes_1min", "regimes": "market_regimes",
    "market_regimes_1min": "market_regimes_1min", "1min_market_regimes": "market_regimes_1min",
    "market_regimes": "market_regimes",
}
_LATEST_TABLES: tuple[TableKey, ...] = ("market_data", "market_regimes", "market_regimes_1min")
# Epoch origin for resampling buckets: the same alignment as Polars' group_by_dynamic.
_BUCKET_ORIGIN = "TIMESTAMP '1970-01-01 00:00:00'"


# ---------------------------------------------------------------------------------------
# Schemas and empty results


def output_schema(table: str, *, exact: bool = False, columns: Sequence[str] | None = None) -> pa.Schema:
    """The Arrow schema a reader of ``table`` returns (``parameters`` as JSON text).

    >>> output_schema("market_data", columns=["timestamp", "close"])
    timestamp: timestamp[us]
    close: double
    """
    spec = _spec(table)
    return _schema(spec, _column_names(spec, columns), exact=exact)


def empty_frame(table: str, *, return_type: ReturnType = "polars", exact: bool = False,
                columns: Sequence[str] | None = None) -> Any:
    """An empty result of ``table``'s readers, with the full schema.

    >>> empty_frame("market_regimes_1min").schema["confidence"]
    Float64
    """
    check_return_type(return_type)
    spec = _spec(table)
    arrow = _schema(spec, _column_names(spec, columns), exact=exact).empty_table()
    if spec.key == "optimization_results" and "parameters" in arrow.column_names:
        arrow = _decode_parameters(arrow, "struct")
    return convert(arrow, return_type)


def empty_distribution(*, return_type: ReturnType = "polars") -> Any:
    """An empty :func:`get_market_regime_distribution` result."""
    check_return_type(return_type)
    return convert(DISTRIBUTION_SCHEMA.empty_table(), return_type)


def empty_transitions(*, return_type: ReturnType = "polars") -> Any:
    """An empty :func:`get_regime_transitions` result."""
    check_return_type(return_type)
    return convert(TRANSITIONS_SCHEMA.empty_table(), return_type)


# ---------------------------------------------------------------------------------------
# Range readers


def get_market_data(db: Database, symbol_or_symbols: str | Sequence[str], start: DateLike, end: DateLike, *,
                    timeframe: str | None = None, columns: Sequence[str] | None = None,
                    resample: str | dt.timedelta | None = None, exact: bool = False,
                    return_type: ReturnType = "polars") -> Any:
    """OHLCV bars of one or more symbols in ``[start, end]`` (inclusive).

    Parameters:
        symbol_or_symbols: ``"NIFTY"`` or ``["NIFTY", "BANKNIFTY"]``.
        start, end: datetimes, dates or ISO strings; a date as ``end`` includes that day.
        timeframe: only bars of this timeframe (e.g. ``"1m"``).
        columns: a subset of the table's columns, returned in the order given.
        resample: aggregate server-side into buckets of this size (``"5m"``, ``"1h"``,
            ``"1d"``): first open, max high, min low, last close, summed volume; buckets
            are labelled by their start, aligned to the epoch like Polars'
            ``group_by_dynamic``, and ``timeframe`` becomes the resample label.
        exact: DECIMAL columns as exact decimals instead of Float64.
        return_type: ``"polars"``, ``"pandas"`` or ``"arrow"``.

    Returns rows ordered by symbol, timeframe and timestamp.

    Raises:
        ReadError: bad arguments (``start`` after ``end``, unknown column, bad dates) or
            a query the server refused.

    Example:
        >>> get_market_data(db, "NIFTY", "2024-01-02", "2024-01-02", resample="5m")  # doctest: +SKIP
    """
    spec = TABLES["market_data"]
    check_return_type(return_type)
    symbols = symbol_list(symbol_or_symbols)
    names = _column_names(spec, columns)
    rng = parse_range(start, end, timezone=db.settings.storage_timezone)
    tf = text_arg(timeframe, name="timeframe")
    every = _resample_every(resample) if resample is not None else None
    if not symbols:
        return empty_frame(spec.key, return_type=return_type, exact=exact, columns=names)
    extra: list[tuple[str, Any]] = [("timeframe", tf)] if tf is not None else []
    if every is None:
        table = _read_range(db, spec, symbols, rng, names=names, exact=exact, extra=extra,
                            what="get_market_data")
    else:
        label = resample if isinstance(resample, str) else _duration_label(every)
        table = _read_resampled(db, spec, symbols, rng, names=names, exact=exact, extra=extra,
                                every=every, label=label)
    return convert(table, return_type)


def get_options_data(db: Database, symbol: str, start: DateLike, end: DateLike, *,
                     expiry: DateLike | Sequence[DateLike] | None = None,
                     strikes: Sequence[float | int | Decimal] | None = None,
                     option_type: str | Sequence[str] | None = None, columns: Sequence[str] | None = None,
                     exact: bool = False, return_type: ReturnType = "polars") -> Any:
    """Option bars of ``symbol`` in ``[start, end]``, optionally by expiry, strike and type.

    Strikes are compared at the column's scale (two decimals). Rows are ordered by
    timestamp, then expiry, strike and type.

    Example:
        >>> get_options_data(db, "NIFTY", "2024-01-02", "2024-01-02", expiry="2024-01-25",
        ...                  strikes=[21500, 21600], option_type="CE")   # doctest: +SKIP
    """
    spec = TABLES["options_data"]
    check_return_type(return_type)
    symbols = symbol_list(text_arg(symbol, name="symbol", allow_none=False))
    names = _column_names(spec, columns)
    rng = parse_range(start, end, timezone=db.settings.storage_timezone)
    extra = _option_filters(spec, expiry=expiry, strikes=strikes, option_type=option_type)
    table = _read_range(db, spec, symbols, rng, names=names, exact=exact, extra=extra, what="get_options_data")
    return convert(table, return_type)


def get_market_regimes(db: Database, symbol: str, start: DateLike, end: DateLike, *,
                       timeframe: str | None = None, exact: bool = False,
                       return_type: ReturnType = "polars") -> Any:
    """Regime classifications (``market_regimes``) of ``symbol`` in ``[start, end]``.

    Example:
        >>> get_market_regimes(db, "NIFTY", "2024-01-01", "2024-01-31", timeframe="5m")  # doctest: +SKIP
    """
    spec = TABLES["market_regimes"]
    check_return_type(return_type)
    symbols = symbol_list(text_arg(symbol, name="symbol", allow_none=False))
    rng = parse_range(start, end, timezone=db.settings.storage_timezone)
    tf = text_arg(timeframe, name="timeframe")
    extra: list[tuple[str, Any]] = [("timeframe", tf)] if tf is not None else []
    table = _read_range(db, spec, symbols, rng, names=list(spec.column_names), exact=exact, extra=extra,
                        what="get_market_regimes")
    return convert(table, return_type)


def get_1min_market_regimes(db: Database, symbol: str, start_date: DateLike, end_date: DateLike, *,
                            exact: bool = False, return_type: ReturnType = "polars") -> Any:
    """1-minute regimes of ``symbol`` in ``[start_date, end_date]`` (the seed's reader).

    Example:
        >>> get_1min_market_regimes(db, "NIFTY", "2024-01-02", "2024-01-02")  # doctest: +SKIP
    """
    spec = TABLES["market_regimes_1min"]
    check_return_type(return_type)
    symbols = symbol_list(text_arg(symbol, name="symbol", allow_none=False))
    rng = parse_range(start_date, end_date, timezone=db.settings.storage_timezone,
                      start_name="start_date", end_name="end_date")
    table = _read_range(db, spec, symbols, rng, names=list(spec.column_names), exact=exact, extra=[],
                        what="get_1min_market_regimes")
    return convert(table, return_type)


def get_optimization_results(db: Database, symbol: str | None = None, *, algorithm: str | None = None,
                             timeframe: str | None = None, top: int | None = None, exact: bool = False,
                             parameters: ParametersAs = "struct", return_type: ReturnType = "polars") -> Any:
    """Optimisation results, best ``fitness_value`` first (ties: oldest first).

    ``parameters`` (JSONB) is decoded into a struct column whose fields are the union of
    the keys of the rows returned (a key missing from a row is null; a key whose values
    have different JSON types across rows becomes a string); ``parameters="json"`` keeps
    the JSON text instead, a fixed String column. Served by the warm ADBC connection.

    Example:
        >>> get_optimization_results(db, "NIFTY", algorithm="bayesian", top=5)  # doctest: +SKIP
    """
    spec = TABLES["optimization_results"]
    check_return_type(return_type)
    if parameters not in ("struct", "json"):
        raise ReadError(f"parameters {parameters!r} is not supported; allowed: struct, json", value=parameters)
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise ReadError(f"top: expected a positive integer, got {top!r}", table=spec.key, value=top)
    q = Query()
    conditions = []
    for name, value in (("symbol", symbol), ("algorithm", algorithm), ("timeframe", timeframe)):
        if text_arg(value, name=name) is not None:
            conditions.append(f"t.{quote_ident(name)} = {q.param(value)}")
    names = list(spec.column_names)
    sql = (f"SELECT {_select_list(spec, names, exact=exact, engine='adbc')} FROM {db.table(spec.key)} t"
           + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
           + ' ORDER BY t."fitness_value" DESC, t."id"'
           + (f" LIMIT {q.param(top)}" if top is not None else ""))
    table = conform(read_adbc(db, q, sql, what="get_optimization_results", table=spec.key),
                    _schema(spec, names, exact=exact))
    return convert(_decode_parameters(table, parameters), return_type)


# ---------------------------------------------------------------------------------------
# Latest rows and option chains (warm ADBC connection, index-driven plans)


def get_latest(db: Database, table: str, symbol: str | None = None, *, symbols: Sequence[str] | None = None,
               timeframe: str | None = None, exact: bool = False, return_type: ReturnType = "polars") -> Any:
    """The latest row of each series of ``market_data``, ``market_regimes`` or
    ``market_regimes_1min``.

    A series is a symbol, or a (symbol, timeframe) pair in the tables that have a
    timeframe, unless ``timeframe`` picks one. ``symbol`` gives that symbol's latest
    row(s), ``symbols`` those of each listed symbol, and neither every symbol present.
    Symbols without rows are simply absent. Rows are ordered by symbol (and timeframe).

    The plans are index-driven: a LATERAL ``ORDER BY timestamp DESC LIMIT 1`` per series,
    over the given symbols or a recursive skip scan of the distinct symbols (and, per
    symbol, of its timeframes): never a scan of the whole table.

    Example:
        >>> get_latest(db, "market_regimes_1min", symbols=["NIFTY", "BANKNIFTY"])  # doctest: +SKIP
    """
    check_return_type(return_type)
    spec = _spec(table)
    if spec.key not in _LATEST_TABLES:
        raise ReadError(f"get_latest does not read {table!r}; allowed: {', '.join(_LATEST_TABLES)}",
                        table=table, value=table)
    if symbol is not None and symbols is not None:
        raise ReadError("pass symbol or symbols, not both", table=spec.key)
    has_timeframe = "timeframe" in spec.column_names
    tf = text_arg(timeframe, name="timeframe")
    if tf is not None and not has_timeframe:
        raise ReadError(f"{spec.key} has no timeframe column; drop timeframe={tf!r}", table=spec.key, value=tf)
    wanted: list[str] | None
    if symbol is not None:
        wanted = symbol_list(text_arg(symbol, name="symbol", allow_none=False))
    elif symbols is not None:
        wanted = symbol_list(symbols, name="symbols")
    else:
        wanted = None
    schema = _schema(spec, list(spec.column_names), exact=exact)
    if wanted == []:
        return convert(schema.empty_table(), return_type)
    q, sql = _latest_query(db, spec, wanted, timeframe=tf, exact=exact)
    table_ = conform(read_lookup(db, q, sql, what="get_latest", table=spec.key), schema)
    return convert(table_, return_type)


def get_option_chain(db: Database, symbol: str, at: DateLike, *, expiry: DateLike | None = None,
                     exact: bool = False, return_type: ReturnType = "polars") -> Any:
    """The option chain of ``symbol`` as it stood at ``at``: for each (expiry, strike,
    type) not expired at ``at`` (``expiry_date >= at``'s date), its latest row at or
    before ``at``. Contracts with no row at or before ``at`` are absent.

    A date as ``at`` means the end of that day. Rows are ordered by expiry, strike and
    type. The plan skip-scans the distinct contracts on the primary key and takes one
    index probe per contract.

    Example:
        >>> get_option_chain(db, "NIFTY", "2024-01-02 10:30", expiry="2024-01-25")  # doctest: +SKIP
    """
    spec = TABLES["options_data"]
    check_return_type(return_type)
    sym = text_arg(symbol, name="symbol", allow_none=False)
    when, is_date = parse_time(at, name="at", timezone=db.settings.storage_timezone)
    if is_date:
        when = when + dt.timedelta(days=1) - dt.timedelta(microseconds=1)
    q = Query()
    target = db.table(spec.key)
    p_symbol, p_at = q.param(sym), q.param(when)
    # The timestamp bound lets the server skip partitions after ``at``.
    expiry_cond = f't."expiry_date" >= {p_at}::date AND t."timestamp" <= {p_at}'
    if expiry is not None:
        expiry_cond += f' AND t."expiry_date" = {q.param(parse_date(expiry, name="expiry"))}'
    key = 't."expiry_date", t."strike_price", t."option_type"'
    names = list(spec.column_names)
    sql = (
        "WITH RECURSIVE contracts(expiry_date, strike_price, option_type) AS ("
        f'(SELECT {key} FROM {target} t WHERE t."symbol" = {p_symbol} AND {expiry_cond} '
        f"ORDER BY {key} LIMIT 1) UNION ALL "
        f"SELECT n.* FROM contracts c CROSS JOIN LATERAL (SELECT {key} FROM {target} t "
        f'WHERE t."symbol" = {p_symbol} AND {expiry_cond} '
        f"AND ({key}) > (c.expiry_date, c.strike_price, c.option_type) ORDER BY {key} LIMIT 1) n) "
        f"SELECT l.* FROM contracts c CROSS JOIN LATERAL ("
        f"SELECT {_select_list(spec, names, exact=exact, engine='adbc', alias='t')} FROM {target} t "
        f'WHERE t."symbol" = {p_symbol} AND t."expiry_date" = c.expiry_date '
        f'AND t."strike_price" = c.strike_price AND t."option_type" = c.option_type '
        f'AND t."timestamp" <= {p_at} ORDER BY t."timestamp" DESC LIMIT 1) l '
        "ORDER BY c.expiry_date, c.strike_price, c.option_type"
    )
    table = conform(read_adbc(db, q, sql, what="get_option_chain", table=spec.key),
                    _schema(spec, names, exact=exact))
    return convert(table, return_type)


# ---------------------------------------------------------------------------------------
# Regime statistics (window functions in SQL; only the per-regime rows travel)


def get_market_regime_distribution(db: Database, symbol: str, start_date: DateLike, end_date: DateLike, *,
                                   table: RegimeTable = "1min", timeframe: str | None = None,
                                   max_gap: str | dt.timedelta | None = None,
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
    spec, q, where, series = _regime_rows(db, symbol, start_date, end_date, table=table, timeframe=timeframe)
    gap_limit = ("10 * typical.median_gap" if max_gap is None
                 else q.param(parse_duration(max_gap, name="max_gap").total_seconds()) + "::float8")
    sql = (
        "WITH r AS (SELECT t.\"regime\" AS regime, "
        f'EXTRACT(EPOCH FROM lead(t."timestamp") OVER (PARTITION BY {series} ORDER BY t."timestamp") '
        f'- t."timestamp")::float8 AS gap FROM {db.table(spec.key)} t WHERE {where}), '
        "typical AS (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) AS median_gap "
        "FROM r WHERE gap > 0), "
        f"w AS (SELECT r.regime, CASE WHEN r.gap <= {gap_limit} THEN r.gap ELSE typical.median_gap END "
        "AS seconds FROM r CROSS JOIN typical) "
        "SELECT regime, count(*)::int8 AS count, "
        "(count(*)::float8 / sum(count(*)) OVER ())::float8 AS share, "
        "coalesce(sum(seconds), 0)::float8 AS seconds, "
        "coalesce(sum(seconds) / nullif(sum(sum(seconds)) OVER (), 0), "
        "count(*)::float8 / sum(count(*)) OVER ())::float8 AS time_share "
        'FROM w GROUP BY regime ORDER BY count DESC, regime COLLATE "C"'
    )
    result = conform(read_adbc(db, q, sql, what="get_market_regime_distribution", table=spec.key),
                     DISTRIBUTION_SCHEMA)
    return convert(result, return_type)


def get_regime_transitions(db: Database, symbol: str, start_date: DateLike, end_date: DateLike, *,
                           table: RegimeTable = "1min", timeframe: str | None = None,
                           return_type: ReturnType = "polars") -> Any:
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
    spec, q, where, series = _regime_rows(db, symbol, start_date, end_date, table=table, timeframe=timeframe)
    sql = (
        f'WITH r AS (SELECT t."regime" AS regime, t."timestamp" AS ts, {series} AS series, '
        f'lag(t."regime") OVER (PARTITION BY {series} ORDER BY t."timestamp") AS prev '
        f"FROM {db.table(spec.key)} t WHERE {where}), "
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
    result = conform(read_adbc(db, q, sql, what="get_regime_transitions", table=spec.key), TRANSITIONS_SCHEMA)
    return convert(result, return_type)


# ---------------------------------------------------------------------------------------
# Point-in-time join


def asof_regimes(db: Database, bars: Any = None, *, symbol: str | None = None, start: DateLike | None = None,
                 end: DateLike | None = None, table: RegimeTable = "1min", timeframe: str | None = None,
                 tolerance: str | dt.timedelta | None = None) -> pl.DataFrame:
    """Attach to each bar the latest regime known at or before the bar's timestamp.

    No look-ahead: a regime stamped after a bar is never attached to it (like kdb+'s
    ``aj`` or QuestDB's ``ASOF JOIN``). With ``tolerance`` a regime older than that
    (``"5m"``, a timedelta) is not attached either.

    Parameters:
        bars: a polars/pandas frame or Arrow table with a ``timestamp`` column (and a
            ``symbol`` column, or pass ``symbol``); ``None`` reads ``market_data`` bars of
            ``symbol`` in ``[start, end]``.
        table: ``"1min"`` (``market_regimes_1min``) or ``"regimes"`` (``market_regimes``;
            ``timeframe`` picks the regime timeframe and is required when the table holds
            several for these symbols).

    Returns the bars, in their order, plus ``regime_timestamp`` (when the attached regime
    was stamped; null when none) and the regime table's columns other than symbol,
    timestamp and timeframe (a name the bars already use gets a ``_regime`` suffix).

    Example:
        >>> bars = get_market_data(db, "NIFTY", "2024-01-02", "2024-01-02", timeframe="1m")  # doctest: +SKIP
        >>> asof_regimes(db, bars, tolerance="5m")                                          # doctest: +SKIP
    """
    import polars as pl

    spec = _regime_spec(table)
    tf = text_arg(timeframe, name="timeframe")
    if tf is not None and "timeframe" not in spec.column_names:
        raise ReadError(f"{spec.key} has no timeframe column; drop timeframe={tf!r}", table=spec.key, value=tf)
    tol = parse_duration(tolerance, name="tolerance") if tolerance is not None else None
    tz = db.settings.storage_timezone
    if bars is None:
        if symbol is None or start is None or end is None:
            raise ReadError("asof_regimes without bars needs symbol, start and end (bars are read from market_data)")
        frame = (get_market_data(db, symbol, start, end) if db.settings.enabled
                 else empty_frame("market_data"))
        added_symbol = False
    else:
        if start is not None or end is not None:
            raise ReadError("start and end only apply when bars is None; filter the bars instead")
        frame = _as_polars(bars)
        if "timestamp" not in frame.columns:
            raise ReadError(f"bars have no 'timestamp' column; columns: {', '.join(frame.columns)}",
                            column="timestamp")
        frame = frame.with_columns(_naive_us(frame, "timestamp", tz))
        added_symbol = "symbol" not in frame.columns
        if added_symbol:
            if symbol is None:
                raise ReadError("bars have no 'symbol' column; pass symbol=", column="symbol")
            frame = frame.with_columns(pl.lit(text_arg(symbol, name="symbol"), dtype=pl.String).alias("symbol"))
        elif symbol is not None:
            raise ReadError("bars already have a 'symbol' column; drop symbol=", column="symbol")

    value_names = [n for n in spec.column_names if n not in ("symbol", "timestamp", "timeframe")]
    schema = _schema(spec, ["symbol", "timestamp", *value_names], exact=False)
    symbols = [s for s in frame.get_column("symbol").unique(maintain_order=True).to_list() if s is not None]
    timestamps = frame.get_column("timestamp").drop_nulls()
    if symbols and len(timestamps) and db.settings.enabled:  # disabled: no regimes, no connection
        regimes = _regimes_for_asof(db, spec, symbols, timestamps.min(), timestamps.max(),  # type: ignore[arg-type]
                                    tolerance=tol, timeframe=tf, names=list(schema.names))
    else:
        regimes = schema.empty_table()
    right = pl.from_arrow(conform(regimes, schema))
    assert isinstance(right, pl.DataFrame)
    clash = set(frame.columns)
    right = right.rename({"timestamp": "regime_timestamp"} | {n: f"{n}_regime" for n in value_names if n in clash})
    right = right.sort("regime_timestamp")
    left = frame.with_row_index("__row").sort("timestamp", maintain_order=True)
    joined = left.join_asof(right, left_on="timestamp", right_on="regime_timestamp", by="symbol",
                            strategy="backward", tolerance=tol, coalesce=False, check_sortedness=False)
    joined = joined.sort("__row").drop("__row")
    if "symbol_right" in joined.columns:
        joined = joined.drop("symbol_right")
    if added_symbol:
        joined = joined.drop("symbol")
    return joined


# ---------------------------------------------------------------------------------------
# Streams


def iter_market_data(db: Database, symbol: str | Sequence[str], start: DateLike, end: DateLike, *,
                     timeframe: str | None = None, batch_rows: int = 250_000,
                     exact: bool = False) -> Iterator[pa.RecordBatch]:
    """Stream bars as Arrow record batches of at most ``batch_rows`` rows (bounded memory).

    Arguments are checked when called, not at the first batch. Batches have the schema
    of :func:`get_market_data` and its row order. Served by connectorx's Arrow stream.

    Example:
        >>> for batch in iter_market_data(db, "NIFTY", "2023-01-01", "2023-12-31"):  # doctest: +SKIP
        ...     process(batch)
    """
    spec = TABLES["market_data"]
    symbols = symbol_list(symbol)
    rng = parse_range(start, end, timezone=db.settings.storage_timezone)
    tf = text_arg(timeframe, name="timeframe")
    extra: list[tuple[str, Any]] = [("timeframe", tf)] if tf is not None else []
    return _stream_range(db, spec, symbols, rng, exact=exact, extra=extra, batch_rows=batch_rows,
                         what="iter_market_data")


def iter_options_data(db: Database, symbol: str, start: DateLike, end: DateLike, *,
                      expiry: DateLike | Sequence[DateLike] | None = None,
                      strikes: Sequence[float | int | Decimal] | None = None,
                      option_type: str | Sequence[str] | None = None, batch_rows: int = 250_000,
                      exact: bool = False) -> Iterator[pa.RecordBatch]:
    """Stream option bars as Arrow record batches (filters as :func:`get_options_data`).

    Example:
        >>> rows = sum(b.num_rows for b in iter_options_data(db, "NIFTY", "2023-01-01", "2023-12-31"))  # doctest: +SKIP
    """
    spec = TABLES["options_data"]
    symbols = symbol_list(text_arg(symbol, name="symbol", allow_none=False))
    rng = parse_range(start, end, timezone=db.settings.storage_timezone)
    extra = _option_filters(spec, expiry=expiry, strikes=strikes, option_type=option_type)
    return _stream_range(db, spec, symbols, rng, exact=exact, extra=extra, batch_rows=batch_rows,
                         what="iter_options_data")


# ---------------------------------------------------------------------------------------
# Internals


def _spec(table: str) -> TableSpec:
    try:
        return table_spec(table)
    except Exception:
        allowed = ", ".join(TABLES)
        raise ReadError(f"unknown table {table!r}; allowed: {allowed}", table=str(table), value=table) from None


def _regime_spec(table: str) -> TableSpec:
    key = _REGIME_TABLES.get(table) if isinstance(table, str) else None
    if key is None:
        raise ReadError(f"table {table!r} is not a regime table; allowed: '1min', 'regimes'", value=table)
    return TABLES[key]


def _column_names(spec: TableSpec, columns: Sequence[str] | str | None) -> list[str]:
    if columns is None:
        return list(spec.column_names)
    names = [columns] if isinstance(columns, str) else list(columns)
    allowed = spec.column_names
    for name in names:
        if name not in allowed:
            raise ReadError(f"{spec.key}: unknown column {name!r}; allowed: {', '.join(allowed)}",
                            table=spec.key, column=str(name), value=name)
    if not names:
        raise ReadError(f"{spec.key}: columns is empty; pass None for every column", table=spec.key)
    if len(set(names)) != len(names):
        raise ReadError(f"{spec.key}: columns {names!r} name a column twice", table=spec.key)
    return names


def _schema(spec: TableSpec, names: Sequence[str], *, exact: bool) -> pa.Schema:
    full = spec.read_schema(exact=exact)
    return pa.schema([full.field(n) for n in names])


def _select_list(spec: TableSpec, names: Sequence[str], *, exact: bool, engine: Literal["cx", "adbc"],
                 alias: str = "t") -> str:
    """SELECT expressions giving each column its reader type (or one the client casts).

    DECIMAL is cast to float8 on the server for ADBC; connectorx gets it as text, which
    :func:`_decimal_text_to_float` parses into the same float64 (the server's ``::float8``
    formats the same text and parses it, on the server's one core). Exact reads get
    NUMERIC from connectorx (decimal128(38,10), rescaled on the client) and text from
    ADBC (which has no Arrow decimal for NUMERIC).
    """
    parts = []
    for name in names:
        column = spec.column(name)
        ref = f"{alias}.{quote_ident(name)}"
        if column.kind == "decimal" and not exact and engine == "cx":
            parts.append(f"{ref}::text AS {quote_ident(name)}")
        elif column.kind == "decimal" and not exact:
            parts.append(f"{ref}::float8 AS {quote_ident(name)}")
        elif (column.kind == "decimal" and engine == "adbc") or column.kind == "json":
            parts.append(f"{ref}::text AS {quote_ident(name)}")
        else:
            parts.append(f"{ref} AS {quote_ident(name)}")
    return ", ".join(parts)


def _decimal_text_to_float(table: pa.Table, spec: TableSpec) -> pa.Table:
    """DECIMAL columns read as text (see :func:`_select_list`) as float64.

    PostgreSQL's ``numeric::float8`` is exactly "format as text, parse with strtod";
    Arrow's parser is correctly rounded too, so the floats are identical (checked on 11M
    rows x 4 prices), and 1M bars read in 0.81 s instead of 1.00 s with ``::float8``.
    """
    texts = [field.name for field in table.schema
             if field.name in spec.column_names and spec.column(field.name).kind == "decimal"
             and (pa.types.is_string(field.type) or pa.types.is_large_string(field.type))]
    if not texts:
        return table

    def parse(name: str) -> pa.ChunkedArray:
        return pc.cast(table.column(name), pa.float64())

    if table.num_rows < _PARALLEL_PARSE_ROWS or len(texts) == 1:
        parsed = [parse(name) for name in texts]
    else:
        # Arrow's cast releases the GIL: the price columns parse side by side (1M bars,
        # 4 prices: 38 -> 20 ms on 2 cores).
        with ThreadPoolExecutor(max_workers=len(texts)) as pool:
            parsed = list(pool.map(parse, texts))
    for name, array in zip(texts, parsed, strict=True):
        table = table.set_column(table.schema.get_field_index(name), pa.field(name, pa.float64()), array)
    return table


# Tables at least this long parse their DECIMAL text columns in parallel.
_PARALLEL_PARSE_ROWS = 100_000


def _symbol_condition(q: Query, symbols: list[str]) -> str:
    if len(symbols) == 1:
        return f't."symbol" = {q.param(symbols[0])}'
    return f't."symbol" = ANY({q.param(symbols)}::text[])'


def _conditions(q: Query, spec: TableSpec, symbols: list[str], rng: TimeRange,
                extra: Sequence[tuple[str, Any]]) -> list[str]:
    conditions = [_symbol_condition(q, symbols), *rng.conditions(q, 't."timestamp"')]
    for name, value in extra:
        ref = f"t.{quote_ident(name)}"
        column = spec.column(name)
        if isinstance(value, list):
            cast = {"date": "date", "decimal": "numeric"}.get(column.kind, "text")
            conditions.append(f"{ref} = ANY({q.param(value)}::{cast}[])")
        else:
            conditions.append(f"{ref} = {q.param(value)}")
    return conditions


def _range_query(db: Database, spec: TableSpec, symbols: list[str], rng: TimeRange, *, names: list[str],
                 exact: bool, extra: Sequence[tuple[str, Any]], drop_symbol: bool,
                 engine: Literal["cx", "adbc"] = "cx") -> tuple[Query, str]:
    q = Query()
    sql_names = [n for n in names if not (drop_symbol and n == "symbol")]
    order = [n for n in _range_order(spec) if not (len(symbols) == 1 and n == "symbol")]
    sql = (f"SELECT {_select_list(spec, sql_names, exact=exact, engine=engine)} FROM {db.table(spec.key)} t "
           f"WHERE {' AND '.join(_conditions(q, spec, symbols, rng, extra))} "
           f"ORDER BY {', '.join(f't.{quote_ident(n)}' for n in order)}")
    return q, sql


def _read_range(db: Database, spec: TableSpec, symbols: list[str], rng: TimeRange, *, names: list[str],
                exact: bool, extra: Sequence[tuple[str, Any]], what: str) -> pa.Table:
    schema = _schema(spec, names, exact=exact)
    if not symbols or any(value == [] for _, value in extra):
        return schema.empty_table()
    # A single-symbol read leaves the constant symbol out of the query (~10% faster on
    # 1M rows here) and fills it in on the client.
    drop_symbol = len(symbols) == 1 and "symbol" in names and len(names) > 1
    if _is_small_range(spec, symbols, rng):
        q, sql = _range_query(db, spec, symbols, rng, names=names, exact=exact, extra=extra,
                              drop_symbol=drop_symbol, engine="adbc")
        table = read_adbc(db, q, sql, what=what, table=spec.key)
    else:
        q, sql = _range_query(db, spec, symbols, rng, names=names, exact=exact, extra=extra, drop_symbol=drop_symbol)
        table = _decimal_text_to_float(read_cx(db, q, sql, what=what, table=spec.key), spec)
    return conform(table, schema, constants={"symbol": symbols[0]} if drop_symbol else None)


# Range reads that can return at most this many one-minute bars (symbols x minutes in the
# range) run on the pool's warm ADBC connection instead of a new connectorx connection:
# 375 bars in 1-2 ms instead of 9-10 ms; about even at ~14k rows; connectorx wins from
# there (200k rows: 236 vs 310 ms).
SMALL_RANGE_ROWS = 20_000


def _is_small_range(spec: TableSpec, symbols: list[str], rng: TimeRange) -> bool:
    """True when the range holds few rows for sure, judged from the table's key: a table
    keyed by (symbol[, timeframe], time) holds one row per symbol and minute for one
    timeframe of minute bars, so symbols x minutes bounds the read.

    Any other key column (option bars: one row per contract and minute) voids the bound:
    such reads always take connectorx. Several timeframes, or bars finer than a minute,
    make the bound optimistic; the cost is then only the slower engine, never a wrong result.
    """
    if set(spec.primary_key) - {"symbol", "timeframe", spec.time_column}:
        return False
    minutes = (rng.end - rng.start).total_seconds() / 60 + 1
    return len(symbols) * minutes <= SMALL_RANGE_ROWS


def _read_resampled(db: Database, spec: TableSpec, symbols: list[str], rng: TimeRange, *, names: list[str],
                    exact: bool, extra: Sequence[tuple[str, Any]], every: dt.timedelta, label: str) -> pa.Table:
    q = Query()
    conditions = _conditions(q, spec, symbols, rng, extra)
    bucket = f'date_bin({q.param(f"{int(every.total_seconds())} seconds")}::interval, t."timestamp", {_BUCKET_ORIGIN})'
    cast = "" if exact else "::float8"
    sql = (
        f'SELECT t."symbol" AS "symbol", {bucket} AS "timestamp", '
        f'(array_agg(t."open" ORDER BY t."timestamp"))[1]{cast} AS "open", '
        f'max(t."high"){cast} AS "high", min(t."low"){cast} AS "low", '
        f'(array_agg(t."close" ORDER BY t."timestamp" DESC))[1]{cast} AS "close", '
        f'sum(t."volume")::int8 AS "volume", {q.param(label)}::text AS "timeframe" '
        f"FROM {db.table(spec.key)} t WHERE {' AND '.join(conditions)} "
        f'GROUP BY t."symbol", t."timeframe", 2 ORDER BY 1, t."timeframe", 2'
    )
    table = read_cx(db, q, sql, what="get_market_data(resample=...)", table=spec.key)
    return conform(table, _schema(spec, names, exact=exact))


def _resample_every(resample: Any) -> dt.timedelta:
    every = parse_duration(resample, name="resample")
    # Weeks would need a Monday origin to match Polars; whole seconds keep date_bin exact.
    if every % dt.timedelta(seconds=1) or (isinstance(resample, str) and "w" in resample):
        raise ReadError(f"resample: {resample!r} is not supported; use whole seconds, minutes, hours or days "
                        "('30s', '5m', '1h', '1d')", table="market_data", value=resample)
    return every


def _duration_label(every: dt.timedelta) -> str:
    seconds = int(every.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _option_filters(spec: TableSpec, *, expiry: Any, strikes: Any, option_type: Any) -> list[tuple[str, Any]]:
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
                raise ReadError(f"strikes: expected numbers, got {strike!r}", table=spec.key,
                                column="strike_price", value=strike)
            value = Decimal(repr(strike)) if isinstance(strike, float) else Decimal(strike)
            if not value.is_finite():
                raise ReadError(f"strikes: {strike!r} is not a finite number", table=spec.key,
                                column="strike_price", value=strike)
            values.append(value.quantize(quantum))
        extra.append(("strike_price", values))
    if option_type is not None:
        types = symbol_list(option_type, name="option_type")
        extra.append(("option_type", types if len(types) != 1 else types[0]))
    return extra


def _stream_range(db: Database, spec: TableSpec, symbols: list[str], rng: TimeRange, *, exact: bool,
                  extra: Sequence[tuple[str, Any]], batch_rows: int, what: str) -> Iterator[pa.RecordBatch]:
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise ReadError(f"batch_rows: expected a positive integer, got {batch_rows!r}", table=spec.key,
                        value=batch_rows)
    if any(v == [] for _, v in extra):
        symbols = []
    names = list(spec.column_names)
    schema = _schema(spec, names, exact=exact)
    if not symbols:
        return iter(())
    q, sql = _range_query(db, spec, symbols, rng, names=names, exact=exact, extra=extra, drop_symbol=False)

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in stream_cx(db, q, sql, batch_rows=batch_rows, what=what, table=spec.key):
            if batch.num_rows:
                table = _decimal_text_to_float(pa.Table.from_batches([batch]), spec)
                yield conform(table, schema).combine_chunks().to_batches()[0]

    return batches()


def _regime_rows(db: Database, symbol: str, start_date: DateLike, end_date: DateLike, *, table: str,
                 timeframe: str | None) -> tuple[TableSpec, Query, str, str]:
    """The WHERE clause and series expression shared by the regime statistics."""
    spec = _regime_spec(table)
    sym = text_arg(symbol, name="symbol", allow_none=False)
    rng = parse_range(start_date, end_date, timezone=db.settings.storage_timezone,
                      start_name="start_date", end_name="end_date")
    tf = text_arg(timeframe, name="timeframe")
    has_timeframe = "timeframe" in spec.column_names
    if tf is not None and not has_timeframe:
        raise ReadError(f"{spec.key} has no timeframe column; drop timeframe={tf!r}", table=spec.key, value=tf)
    q = Query()
    conditions = [f't."symbol" = {q.param(sym)}', *rng.conditions(q, 't."timestamp"')]
    if tf is not None:
        conditions.append(f't."timeframe" = {q.param(tf)}')
    series = 't."timeframe"' if has_timeframe else "0"
    return spec, q, " AND ".join(conditions), series


def _latest_query(db: Database, spec: TableSpec, wanted: list[str] | None, *, timeframe: str | None,
                  exact: bool) -> tuple[Query, str]:
    """The latest-row query of :func:`get_latest` (index-driven; see its docstring)."""
    has_timeframe = "timeframe" in spec.column_names
    tf = timeframe
    names = list(spec.column_names)
    q = Query()
    target = db.table(spec.key)
    match = 't."symbol" = s.symbol'
    order = 'l."symbol" COLLATE "C"'
    if has_timeframe and tf is None and wanted is None:
        # Every series of the table: walk the distinct (symbol, timeframe) pairs on the
        # primary key, one index probe per pair (per symbol then per timeframe costs two
        # probes per symbol more: measured 19 ms -> 8 ms at 10M rows, 100 symbols).
        source = f"({_skip_scan_pairs(target)} SELECT symbol, timeframe FROM pairs WHERE symbol IS NOT NULL) s"
        match += ' AND t."timeframe" = s.timeframe'
        order += ', l."timeframe" COLLATE "C"'
    else:
        if wanted is None:
            source = f"({_skip_scan_symbols(target)} SELECT symbol FROM symbols WHERE symbol IS NOT NULL) s"
        else:
            source = f"unnest({q.param(wanted)}::text[]) AS s(symbol)"
        if has_timeframe and tf is None:
            # One series per (symbol, timeframe): skip-scan each listed symbol's timeframes.
            source += (" CROSS JOIN LATERAL (WITH RECURSIVE tf(timeframe) AS ("
                       f'(SELECT t."timeframe" FROM {target} t WHERE t."symbol" = s.symbol '
                       'ORDER BY t."timeframe" LIMIT 1) UNION ALL '
                       f'SELECT (SELECT t."timeframe" FROM {target} t WHERE t."symbol" = s.symbol '
                       'AND t."timeframe" > tf.timeframe ORDER BY t."timeframe" LIMIT 1) '
                       "FROM tf WHERE tf.timeframe IS NOT NULL) "
                       "SELECT timeframe FROM tf WHERE timeframe IS NOT NULL) f")
            match += ' AND t."timeframe" = f.timeframe'
            order += ', l."timeframe" COLLATE "C"'
        elif tf is not None:
            match += f' AND t."timeframe" = {q.param(tf)}'
    sql = (f"SELECT l.* FROM {source} CROSS JOIN LATERAL ("
           f"SELECT {_select_list(spec, names, exact=exact, engine='adbc', alias='t')} FROM {target} t "
           f'WHERE {match} ORDER BY t."timestamp" DESC LIMIT 1) l ORDER BY {order}')
    return q, sql


def _skip_scan_symbols(target: str) -> str:
    """``WITH RECURSIVE symbols``: the distinct symbols, one index probe each."""
    return (
        "WITH RECURSIVE symbols(symbol) AS ("
        f'(SELECT t."symbol" FROM {target} t ORDER BY t."symbol" LIMIT 1) UNION ALL '
        f'SELECT (SELECT t."symbol" FROM {target} t WHERE t."symbol" > symbols.symbol '
        'ORDER BY t."symbol" LIMIT 1) FROM symbols WHERE symbols.symbol IS NOT NULL)'
    )


def _skip_scan_pairs(target: str) -> str:
    """``WITH RECURSIVE pairs``: the distinct (symbol, timeframe) pairs, one index probe each.

    The row comparison ``(symbol, timeframe) > (...)`` is an index condition on the
    primary key's leading columns, so each step is one descent of the index.
    """
    return (
        "WITH RECURSIVE pairs(symbol, timeframe) AS ("
        f'(SELECT t."symbol", t."timeframe" FROM {target} t ORDER BY t."symbol", t."timeframe" LIMIT 1) '
        "UNION ALL SELECT n.symbol, n.timeframe FROM pairs CROSS JOIN LATERAL ("
        f'SELECT t."symbol", t."timeframe" FROM {target} t '
        'WHERE (t."symbol", t."timeframe") > (pairs.symbol, pairs.timeframe) '
        'ORDER BY t."symbol", t."timeframe" LIMIT 1) n)'
    )


def _decode_parameters(table: pa.Table, how: ParametersAs) -> pa.Table:
    """Replace the JSON text of ``parameters`` by a struct (union of keys), unless ``how="json"``."""
    if how == "json" or "parameters" not in table.column_names:
        return table
    import polars as pl

    text = pl.from_arrow(table.column("parameters").combine_chunks())
    assert isinstance(text, pl.Series)
    if table.num_rows == 0:
        decoded = pl.Series("parameters", [], dtype=pl.Struct([]))
    else:
        try:
            decoded = text.str.json_decode(infer_schema_length=None)
        except pl.exceptions.PolarsError as err:
            log.warning("optimization_results.parameters: rows do not share one JSON shape (%s); "
                        "returning the JSON text", str(err).splitlines()[0])
            return table
        if not isinstance(decoded.dtype, pl.Struct):
            log.warning("optimization_results.parameters: values are not JSON objects; returning the JSON text")
            return table
    index = table.column_names.index("parameters")
    arrow = decoded.to_arrow()
    return table.set_column(index, pa.field("parameters", arrow.type), arrow)


def _as_polars(data: Any) -> pl.DataFrame:
    import polars as pl

    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, pl.LazyFrame):
        return data.collect()
    if isinstance(data, (pa.Table, pa.RecordBatch)):
        frame = pl.from_arrow(data)
        assert isinstance(frame, pl.DataFrame)
        return frame
    module = type(data).__module__.split(".")[0]
    if module == "pandas":
        return pl.from_pandas(data)
    raise ReadError(f"bars: expected a polars/pandas frame or an Arrow table, got {type(data).__name__}")


def _naive_us(frame: pl.DataFrame, name: str, timezone: str) -> pl.Expr:
    """The column as naive Datetime("us") in the storage zone (zoned input is converted)."""
    import polars as pl

    dtype = frame.schema[name]
    col = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            col = col.dt.convert_time_zone(timezone).dt.replace_time_zone(None)
        return col.cast(pl.Datetime("us")).alias(name)
    if dtype == pl.Date:
        return col.cast(pl.Datetime("us")).alias(name)
    raise ReadError(f"bars: column {name!r} must be a datetime, not {dtype}", column=name)


def _regimes_for_asof(db: Database, spec: TableSpec, symbols: list[str], first: dt.datetime,
                      last: dt.datetime, *, tolerance: dt.timedelta | None, timeframe: str | None,
                      names: list[str]) -> pa.Table:
    """Regime rows that can be attached to bars stamped in ``[first, last]``.

    With a tolerance, the rows in ``[first - tolerance, last]``; without one, also each
    symbol's latest row before ``first`` (one index probe per symbol).
    """
    q = Query()
    target = db.table(spec.key)
    lo = first - tolerance if tolerance is not None else first
    select = _select_list(spec, names, exact=False, engine="cx")
    check_timeframes = "timeframe" in spec.column_names and timeframe is None
    if check_timeframes:
        select += ', t."timeframe" AS "__timeframe"'
    p_symbols = q.param(symbols)
    tf_cond = f' AND t."timeframe" = {q.param(timeframe)}' if timeframe is not None else ""
    p_lo, p_hi = q.param(lo), q.param(last)
    sql = (f'SELECT {select} FROM {target} t WHERE t."symbol" = ANY({p_symbols}::text[]) '
           f'AND t."timestamp" >= {p_lo} AND t."timestamp" <= {p_hi}{tf_cond}')
    if tolerance is None:
        sql = (f"({sql}) UNION ALL (SELECT l.* FROM unnest({p_symbols}::text[]) AS s(symbol) "
               f'CROSS JOIN LATERAL (SELECT {select} FROM {target} t WHERE t."symbol" = s.symbol{tf_cond} '
               f'AND t."timestamp" < {p_lo} ORDER BY t."timestamp" DESC LIMIT 1) l)')
    table = _decimal_text_to_float(read_cx(db, q, sql, what="asof_regimes", table=spec.key), spec)
    if check_timeframes:
        found = {v for v in table.column("__timeframe").unique().to_pylist() if v is not None}
        if len(found) > 1:
            raise ReadError(f"{spec.key} holds several timeframes for these symbols ({', '.join(sorted(found))}); "
                            "pass timeframe=", table=spec.key, column="timeframe")
    return table


