"""The point-in-time join: each bar gets the latest regime stamped at or before it.

The regime rows that can match are read in one query (the range, plus each symbol's
latest row before it); the join itself is polars' ``join_asof`` on the client.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .._conn.engines import read_cx
from .._frames import check_return_type, conform, convert, to_polars
from .._schema.timezones import check_time_kind
from .._sql.args import normalise_symbol, parse_duration, symbol_arg, text_arg
from .._sql.names import catalog_table
from .._sql.query import Query, TimeRange
from .._tiers.knowledge import keeps_history
from .._tiers.router import Relation, Scope, guarded, read_sql, sealed_floor
from ..errors import Remedy, UsageError
from ..tables import TableSpec, regime_spec
from ..types import DateLike, RegimeTable, ReturnType
from .decode import decimal_text, empty_frame, reader_schema
from .history import pit_join, pit_versions
from .readers import get_market_data
from .sqltext import select_list

if TYPE_CHECKING:
    import polars as pl

    from .._conn.database import Database

__all__ = ["asof_regimes"]


def asof_regimes(db: Database, bars: Any = None, *, symbol: str | None = None, start_date: DateLike | None = None,
                 end_date: DateLike | None = None, table: RegimeTable = "1min", timeframe: str | None = None,
                 tolerance: str | dt.timedelta | None = None, point_in_time: bool = False,
                 known_lag: str | dt.timedelta | None = None, return_type: ReturnType = "polars") -> Any:
    """Attach to each bar the latest regime known at or before the bar's timestamp.

    No look-ahead: a regime stamped after a bar is never attached to it (like kdb+'s
    ``aj`` or QuestDB's ``ASOF JOIN``). With ``tolerance`` a regime older than that
    (``"5m"``, a timedelta) is not attached either.

    Parameters:
        bars: a polars/pandas frame or Arrow table with a ``timestamp`` column (and a
            ``symbol`` column, or pass ``symbol``); ``None`` reads ``market_data`` bars of
            ``symbol`` in ``[start_date, end_date]``.
        table: ``"1min"`` (``market_regimes_1min``) or ``"regimes"`` (``market_regimes``;
            ``timeframe`` picks the regime timeframe and is required when the table holds
            several for these symbols).

    With ``point_in_time=True`` each bar gets the regime as it was known at the bar's own
    timestamp (plus ``known_lag``, a publication delay such as ``"30s"``): the newest
    regime row stamped at or before the bar that was already known then, in the version
    then known (revisions written later are ignored; see docs/history.md). The regime
    table must keep history.

    Returns the bars, in their order, plus ``regime_timestamp`` (when the attached regime
    was stamped; null when none) and the regime table's columns other than symbol,
    timestamp and timeframe (a name the bars already use gets a ``_regime`` suffix).

    Example:
        >>> bars = get_market_data(db, "NIFTY", "2024-01-02", "2024-01-02", timeframe="1m")  # doctest: +SKIP
        >>> asof_regimes(db, bars, tolerance="5m")                                          # doctest: +SKIP
    """
    import polars as pl

    spec = regime_spec(table)
    tf = text_arg(timeframe, name="timeframe")
    if tf is not None and "timeframe" not in spec.column_names:
        raise UsageError(f"{spec.key} has no timeframe column; {{fix}}", table=spec.key, value=tf,
                         fixes=(Remedy(f"drop timeframe={tf!r}", "drop --timeframe"),))
    tol = parse_duration(tolerance, name="tolerance") if tolerance is not None else None
    if not isinstance(point_in_time, bool):
        raise UsageError(f"point_in_time must be True or False, got {point_in_time!r}", value=point_in_time)
    if known_lag is not None and not point_in_time:
        raise UsageError("known_lag only applies with point_in_time=True", value=known_lag)
    lag = parse_duration(known_lag, name="known_lag") if known_lag is not None else dt.timedelta(0)
    if point_in_time and not keeps_history(db.settings, spec):
        raise UsageError(f"{spec.key} keeps no history, so point_in_time=True cannot see what was known when; add "
                         "it to [DATABASE] history_tables (docs/history.md)", table=spec.key)
    tz = db.settings.storage_timezone
    check_return_type(return_type)
    if bars is None:
        if symbol is None:
            raise UsageError("asof_regimes without bars needs symbol= (bars are read from market_data)")

        frame = (get_market_data(db, symbol, start_date, end_date) if db.settings.enabled
                 else empty_frame("market_data"))
        frame = frame.with_columns(naive_us(frame, "timestamp", tz))  # bars written zone-aware read back aware
        added_symbol = False
    else:
        if start_date is not None or end_date is not None:
            raise UsageError("start_date and end_date only apply when bars is None; filter the bars instead")
        frame = to_polars(bars, what="bars")
        if frame is None:
            raise UsageError(f"bars: expected a polars/pandas frame or an Arrow table, got {type(bars).__name__}")
        if "timestamp" not in frame.columns:
            raise UsageError(f"bars have no 'timestamp' column; columns: {', '.join(frame.columns)}",
                             column="timestamp")
        check_time_kind(db, spec, aware=_is_aware(frame, "timestamp"), what="asof_regimes: bars")
        frame = frame.with_columns(naive_us(frame, "timestamp", tz))
        added_symbol = "symbol" not in frame.columns
        if added_symbol:
            if symbol is None:
                raise UsageError("bars have no 'symbol' column; pass symbol=", column="symbol")
            frame = frame.with_columns(pl.lit(symbol_arg(symbol, case=db.settings.symbol_case),
                                              dtype=pl.String).alias("symbol"))
        elif symbol is not None:
            raise UsageError("bars already have a 'symbol' column; drop symbol=", column="symbol")

    # The bars' symbols are matched as the writers store them (" nifty" finds NIFTY's
    # regimes); the bars come back with their own spelling.
    given_symbols = frame.get_column("symbol")
    if given_symbols.dtype == pl.String:
        case = db.settings.symbol_case
        spelled = given_symbols.replace_strict(
            (distinct := given_symbols.drop_nulls().unique().to_list()),
            [normalise_symbol(v, case) for v in distinct], default=None, return_dtype=pl.String)
        frame = frame.with_columns(spelled.alias("symbol"))
    value_names = [n for n in spec.column_names if n not in ("symbol", "timestamp", "timeframe")]
    schema = reader_schema(spec, ["symbol", "timestamp", *value_names], exact=False)
    symbols = [s for s in frame.get_column("symbol").unique(maintain_order=True).to_list() if s is not None]
    timestamps = frame.get_column("timestamp").drop_nulls()
    if point_in_time:
        found = _point_in_time(db, spec, frame, symbols, timestamps, schema, value_names, tol=tol, tf=tf, lag=lag,
                               added_symbol=added_symbol)
        if not added_symbol:
            found = found.set_column(found.schema.get_field_index("symbol"), "symbol", given_symbols.to_arrow())
        return convert(found, return_type)
    if symbols and len(timestamps) and db.settings.enabled:  # disabled: no regimes, no connection
        regimes = regimes_for_asof(db, spec, symbols, timestamps.min(), timestamps.max(),  # type: ignore[arg-type]
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
    joined = joined.drop("symbol") if added_symbol else joined.with_columns(given_symbols.alias("symbol"))
    return convert(joined.to_arrow(), return_type)


def _is_aware(frame: pl.DataFrame, name: str) -> bool:
    import polars as pl

    dtype = frame.schema[name]
    return isinstance(dtype, pl.Datetime) and dtype.time_zone is not None


def naive_us(frame: pl.DataFrame, name: str, timezone: str) -> pl.Expr:
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
    raise UsageError(f"bars: column {name!r} must be a datetime, not {dtype}", column=name)


def regimes_for_asof(db: Database, spec: TableSpec, symbols: list[str], first: dt.datetime,
                      last: dt.datetime, *, tolerance: dt.timedelta | None, timeframe: str | None,
                      names: list[str]) -> pa.Table:
    """Regime rows that can be attached to bars stamped in ``[first, last]``.

    With a tolerance, the rows in ``[first - tolerance, last]``; without one, also each
    symbol's latest row before ``first`` (one index probe per symbol).
    """
    lo = first - tolerance if tolerance is not None else first
    select = select_list(spec, names, exact=False, engine="cx")
    check_timeframes = "timeframe" in spec.column_names and timeframe is None
    if check_timeframes:
        select += ', t."timeframe" AS "__timeframe"'

    def build(relation: Relation) -> tuple[Query, str]:
        q = Query()
        target = relation(q)
        p_symbols = q.param(symbols)
        tf_cond = f' AND t."timeframe" = {q.param(timeframe)}' if timeframe is not None else ""
        p_lo, p_hi = q.param(lo), q.param(last)
        sql = (f'SELECT {select} FROM {target} t WHERE t."symbol" = ANY({p_symbols}::text[]) '
               f'AND t."timestamp" >= {p_lo} AND t."timestamp" <= {p_hi}{tf_cond}')
        if tolerance is None:
            # The symbols come from the series catalog, not unnest(): Citus pushes a LATERAL
            # ... LIMIT 1 down only when its outer side is a co-located table (never a
            # function or VALUES), and then runs it on the workers; a plain server runs both
            # forms alike (one index probe per symbol).
            symbols_sql = (f"SELECT DISTINCT c.symbol FROM {catalog_table(db.settings)} c "
                           f"WHERE c.table_key = {q.param(spec.key)} AND c.symbol = ANY({p_symbols}::text[])")
            sql = (f"({sql}) UNION ALL (SELECT l.* FROM ({symbols_sql}) s "
                   f'CROSS JOIN LATERAL (SELECT {select} FROM {target} t WHERE t."symbol" = s.symbol{tf_cond} '
                   f'AND t."timestamp" < {p_lo} ORDER BY t."timestamp" DESC LIMIT 1) l)')
        return q, sql

    # Sealed rows: the window, and for the latest row before it, back to the month that
    # holds each symbol's newest sealed row before the window.
    def plain_read() -> object:
        q, sql = build(lambda q: db.table(spec.key))
        return read_cx(db, q, f"{sql} LIMIT 0", what="asof_regimes", table=spec.key)

    floor = lo if tolerance is not None or not spec.sealable else guarded(
        lambda: sealed_floor(db, spec, symbols, lo), plain_read)
    scope = TimeRange(min(floor, lo), last, end_exclusive=False)
    extra = [("timeframe", timeframe)] if timeframe is not None else []
    rows = read_sql(db, spec, Scope(symbols, scope, extra), build, what="asof_regimes", engine="cx")
    table = decimal_text(rows, spec, exact=False)
    if check_timeframes:
        found = {v for v in table.column("__timeframe").unique().to_pylist() if v is not None}
        if len(found) > 1:
            raise UsageError(f"{spec.key} holds several timeframes for these symbols ({', '.join(sorted(found))}); "
                            "pass {fix}", table=spec.key, column="timeframe",
                             fixes=(Remedy.argument("timeframe"),))
    return table


def _point_in_time(db: Database, spec: TableSpec, frame: pl.DataFrame, symbols: list[str], timestamps: pl.Series,
                   schema: pa.Schema, value_names: list[str], *, tol: dt.timedelta | None, tf: str | None,
                   lag: dt.timedelta, added_symbol: bool) -> pa.Table:
    """``asof_regimes(point_in_time=True)``: the join of :func:`regime_io._tiers.knowledge.pit_join`."""
    import polars as pl

    names = list(schema.names)
    if symbols and len(timestamps) and db.settings.enabled:
        versions = pit_versions(db, spec, symbols, timestamps.min(), timestamps.max(),  # type: ignore[arg-type]
                                tolerance=tol, timeframe=tf, names=names)
    else:
        empty = pl.from_arrow(schema.empty_table())
        assert isinstance(empty, pl.DataFrame)
        versions = empty.with_columns(pl.lit(None, dtype=pl.String).alias("__timeframe"),
                                      pl.lit(None, dtype=pl.Datetime("us")).alias("__kf"),
                                      pl.lit(None, dtype=pl.Datetime("us")).alias("__kt"))
    if "timeframe" in spec.column_names and tf is None:
        found = {v for v in versions.get_column("__timeframe").unique().to_list() if v is not None}
        if len(found) > 1:
            raise UsageError(f"{spec.key} holds several timeframes for these symbols ({', '.join(sorted(found))}); "
                             "pass {fix}", table=spec.key, column="timeframe",
                             fixes=(Remedy.argument("timeframe"),))
    versions = versions.drop("__timeframe").cast({n: t for n, t in
                                                   pl.from_arrow(schema.empty_table()).schema.items()})  # type: ignore[union-attr]
    clash = set(frame.columns)
    versions = versions.rename({n: f"{n}_regime" for n in value_names if n in clash})
    left = frame.with_row_index("__row")
    joined = pit_join(left, versions, lag=lag, tolerance=tol).sort("__row").drop("__row")
    if added_symbol:
        joined = joined.drop("symbol")
    return joined.to_arrow()
