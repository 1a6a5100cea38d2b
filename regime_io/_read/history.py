"""Knowledge-time readers: ``history()``, the latest row as of an instant, point-in-time versions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from .._conn.engines import read_lookup
from .._frames import check_return_type, convert
from .._sql.args import parse_range, resolve_symbols
from .._sql.names import catalog_table, history_table
from .._sql.query import EARLIEST, LATEST, Query, TimeRange
from .._sql.quote import quote_ident
from .._tiers.knowledge import ABSENT, KNOWN_FROM, KNOWN_TO, keeps_history, stored_known_from
from .._tiers.router import Relation, Scope, read_sql, read_with_sealed, sealed_floor
from .._tiers.sealed_read import to_reader
from ..errors import UsageError
from ..tables import TableSpec
from ..types import DateLike, ReturnType
from .decode import as_read, reader_schema
from .sqltext import catalog_series, range_order, select_list, symbol_condition

if TYPE_CHECKING:
    from .._conn.database import Database


def history_rows(db: Database, spec: TableSpec, symbols: list[str], rng: TimeRange | None,
                 exact: bool) -> pa.Table:
    """Every version of the rows of ``symbols`` in ``rng``: the superseded ones and the
    current one, each with ``known_from`` and ``known_to`` (null: still current), ordered
    by the natural key, then ``known_from``."""

    names = list(spec.column_names)
    select = select_list(spec, names, exact=exact, engine="adbc", alias="v")
    cols = ", ".join(quote_ident(c.name) for c in spec.columns)
    order = ", ".join(f"v.{quote_ident(c)}" for c in range_order(spec))

    def build(relation: Relation) -> tuple[Query, str]:
        q = Query()
        target = relation(q)
        zone = f"{q.param(db.settings.storage_timezone)}::text"
        conds = [symbol_condition(q, symbols).replace("t.", "v.")]
        if rng is not None and spec.time_column:
            conds += rng.conditions(q, f"v.{quote_ident(spec.time_column)}")
        sql = (f"SELECT {select}, v.{KNOWN_FROM}, v.{KNOWN_TO}, v.{ABSENT} FROM ("
               f"SELECT {cols}, {stored_known_from('r', zone)} AS {KNOWN_FROM}, NULL::timestamptz AS {KNOWN_TO}, "
               f"false AS {ABSENT} FROM {target} r UNION ALL "
               f"SELECT {cols}, {KNOWN_FROM}, {KNOWN_TO}, {ABSENT} FROM {history_table(spec, db.settings)}) v "
               f"WHERE {' AND '.join(conds)} ORDER BY {order}, v.{KNOWN_FROM}")
        return q, sql

    # Without a range, every month: current versions sealed long ago are versions too.
    window = rng if rng is not None else TimeRange(EARLIEST, LATEST, end_exclusive=False)
    table, sealed = read_with_sealed(db, spec, Scope(symbols, window), build, what="history")
    schema = reader_schema(spec, names, exact=exact)
    utc = pa.timestamp("us", tz="UTC")
    full = pa.schema([*schema, pa.field(KNOWN_FROM, utc), pa.field(KNOWN_TO, utc)])
    table = as_read(_infinite_to_null(table), spec, pa.schema([*full, pa.field(ABSENT, pa.bool_())]), exact=exact)
    if sealed.num_rows:
        table = _with_sealed_current(db, spec, table, sealed, schema)
    # "No value yet" records (rows added to sealed chunks) only date the next version.
    return table.filter(pc.invert(table.column(ABSENT))).drop_columns([ABSENT]).cast(full)


def _infinite_to_null(table: pa.Table) -> pa.Table:
    """``-infinity`` knowledge starts come back as the type's minimum: show them as null."""
    for name in (KNOWN_FROM, KNOWN_TO):
        if name in table.column_names:
            col = table.column(name)
            if pa.types.is_timestamp(col.type):
                low = pa.scalar(dt.datetime(1, 1, 2, tzinfo=dt.timezone.utc), col.type)
                masked = pc.if_else(pc.less(col, low), pa.scalar(None, col.type), col)
                table = table.set_column(table.column_names.index(name), name, masked)
    return table


def _with_sealed_current(db: Database, spec: TableSpec, table: pa.Table, sealed: pa.Table,
                         schema: pa.Schema) -> pa.Table:
    """Add the current versions held in sealed chunks (known since the key's last
    superseded version ended, null when it never changed)."""
    import polars as pl

    current = pl.from_arrow(to_reader(spec, sealed, schema))
    have = pl.from_arrow(table)
    assert isinstance(current, pl.DataFrame) and isinstance(have, pl.DataFrame)
    key = list(spec.primary_key)
    starts = (have.filter(pl.col(KNOWN_TO).is_not_null()).group_by(key)
              .agg(pl.col(KNOWN_TO).max().alias(KNOWN_FROM)))
    current = current.join(starts, on=key, how="left").with_columns(
        pl.lit(None, dtype=have.schema[KNOWN_TO]).alias(KNOWN_TO), pl.lit(False).alias(ABSENT))
    both = pl.concat([have, current.select(have.columns)], how="vertical")
    both = both.sort([*key, KNOWN_FROM], nulls_last=False)
    return both.to_arrow().cast(table.schema)


def latest_as_of(db: Database, spec: TableSpec, wanted: list[str] | None, timeframe: str | None, *, exact: bool,
                 as_of: dt.datetime) -> pa.Table:
    """``get_latest`` as of ``as_of``: per series of the catalog, its newest row as then
    known (one ``ORDER BY timestamp DESC LIMIT 1`` over the table as of ``as_of``)."""


    def build(relation: Relation) -> tuple[Query, str]:
        q = Query()
        target = relation(q)
        c = catalog_series(q, spec, wanted, timeframe=timeframe)
        return q, (f"SELECT l.* FROM (SELECT DISTINCT {c.columns} FROM {catalog_table(db.settings)} s "
                   f"WHERE {c.where}) s CROSS JOIN LATERAL (SELECT "
                   f"{select_list(spec, list(spec.column_names), exact=exact, engine='adbc', alias='t')} "
                   f"FROM {target} t WHERE {c.match} ORDER BY t.{c.time} DESC LIMIT 1) l ORDER BY {c.order}")

    symbols = wanted
    if symbols is None:
        qs = Query()
        found = read_lookup(db, qs, f"SELECT DISTINCT symbol FROM {catalog_table(db.settings)} "
                            f"WHERE table_key = {qs.param(spec.key)}", what="get_latest", table=spec.key)
        symbols = [str(v) for v in found.column("symbol").to_pylist()]
    extra = [("timeframe", timeframe)] if timeframe is not None else []
    everything = TimeRange(EARLIEST, LATEST, end_exclusive=False)
    return read_sql(db, spec, Scope(symbols, everything, extra), build, what="get_latest", as_of=as_of)


# ---------------------------------------------------------------------------------------
# The public reader of versions


def history(db: Database, table: str, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
            end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None, exact: bool = False,
            return_type: ReturnType = "polars") -> Any:
    """Every version of the rows of ``symbol`` in ``[start_date, end_date]``, each with
    the interval ``[known_from, known_to)`` during which it was the known value.

    The current version has ``known_to`` null; a version known since before it was
    sealed (chunks keep no per-row insertion time) has ``known_from`` null. Rows are
    ordered by the natural key, then ``known_from``. Knowledge times are UTC.

    Example:
        >>> history(db, "market_regimes_1min", "NIFTY", "2024-01-02", "2024-01-02")  # doctest: +SKIP
    """

    check_return_type(return_type)
    spec = db.spec(table)
    if not keeps_history(db.settings, spec):
        raise UsageError(f"{spec.key} keeps no history; add it to [DATABASE] history_tables (docs/history.md)",
                         table=spec.key, value=table)
    wanted = resolve_symbols(symbol, symbols, case=db.settings.symbol_case)
    assert wanted is not None
    rng = parse_range(start_date, end_date, timezone=db.settings.storage_timezone) if spec.time_column else None
    if not wanted:
        return empty_history(spec, exact=exact, return_type=return_type)
    return convert(history_rows(db, spec, wanted, rng, exact), return_type)


def empty_history(spec: TableSpec, *, exact: bool = False, return_type: ReturnType = "polars") -> Any:
    """:func:`history`'s answer with no versions: its columns and types, no rows."""
    utc = pa.timestamp("us", tz="UTC")
    schema = pa.schema([*reader_schema(spec, list(spec.column_names), exact=exact),
                        pa.field(KNOWN_FROM, utc), pa.field(KNOWN_TO, utc)])
    return convert(schema.empty_table(), return_type)


# ---------------------------------------------------------------------------------------
# The point-in-time as-of join


def pit_versions(db: Database, spec: TableSpec, symbols: list[str], first: dt.datetime, last: dt.datetime, *,
                 tolerance: dt.timedelta | None, timeframe: str | None, names: list[str]) -> Any:
    """Every version of the regime rows that bars stamped in ``[first, last]`` may get, as a
    polars frame: ``names`` plus ``__kf``/``__kt`` (knowledge interval, naive storage-zone
    times; null: unbounded) and ``__timeframe``. The window starts at ``first - tolerance``,
    or without a tolerance at the oldest of each symbol's newest row before ``first``."""
    import polars as pl

    zone = db.settings.storage_timezone
    target = db.table(spec.key)
    tf_cond = ' AND t."timeframe" = $3' if timeframe is not None else ""
    lo = first - tolerance if tolerance is not None else first
    if tolerance is None:
        q = Query()
        p_sym, p_first = q.param(symbols), q.param(first)
        if timeframe is not None:
            q.param(timeframe)
        sql = (f"SELECT min(l.ts) AS lo FROM (SELECT DISTINCT c.symbol FROM {catalog_table(db.settings)} c "
               f"WHERE c.table_key = {q.param(spec.key)} AND c.symbol = ANY({p_sym}::text[])) s "
               f'CROSS JOIN LATERAL (SELECT t."timestamp" AS ts FROM {target} t WHERE t."symbol" = s.symbol{tf_cond} '
               f'AND t."timestamp" < {p_first} ORDER BY t."timestamp" DESC LIMIT 1) l')
        found = read_lookup(db, q, sql, what="asof_regimes", table=spec.key).column("lo").to_pylist()
        if found and found[0] is not None:
            lo = min(lo, found[0])
        if spec.sealable:
            lo = min(lo, sealed_floor(db, spec, symbols, first))
    select = select_list(spec, names, exact=False, engine="adbc", alias="v")
    cols = ", ".join(quote_ident(c.name) for c in spec.columns)
    has_tf = "timeframe" in spec.column_names
    tf_col = 'v."timeframe"' if has_tf else "NULL::text"
    schema = reader_schema(spec, names, exact=False)
    extra_fields = [pa.field("__timeframe", pa.string()), pa.field("__kf", pa.timestamp("us")),
                    pa.field("__kt", pa.timestamp("us")), pa.field("__absent", pa.bool_())]
    full = pa.schema([*schema, *extra_fields])

    def build(relation: Relation) -> tuple[Query, str]:
        q = Query()
        rows_part = relation(q)
        z = f"{q.param(zone)}::text"
        conds = [f'v."symbol" = ANY({q.param(symbols)}::text[])', f'v."timestamp" >= {q.param(lo)}',
                 f'v."timestamp" <= {q.param(last)}']
        if timeframe is not None:
            conds.append(f'v."timeframe" = {q.param(timeframe)}')
        sql = (f"SELECT {select}, {tf_col} AS __timeframe, "
               f"CASE WHEN isfinite(v.kf) THEN v.kf AT TIME ZONE {z} END AS __kf, "
               f"CASE WHEN isfinite(v.kt) THEN v.kt AT TIME ZONE {z} END AS __kt, v.{ABSENT} AS __absent FROM ("
               f"SELECT {cols}, {stored_known_from('r', z)} AS kf, NULL::timestamptz AS kt, false AS {ABSENT} "
               f"FROM {rows_part} r UNION ALL SELECT {cols}, {KNOWN_FROM}, {KNOWN_TO}, {ABSENT} "
               f"FROM {history_table(spec, db.settings)}) v WHERE {' AND '.join(conds)}")
        return q, sql

    extra = [("timeframe", timeframe)] if timeframe is not None else []
    found_rows, sealed = read_with_sealed(db, spec, Scope(symbols, TimeRange(lo, last, end_exclusive=False), extra),
                                          build, what="asof_regimes")
    rows = as_read(found_rows, spec, full, exact=False)
    frame = pl.from_arrow(rows)
    assert isinstance(frame, pl.DataFrame)
    if sealed.num_rows:
        wide = pa.schema([*schema, *([spec.read_schema(exact=False).field("timeframe")] if has_tf else [])])
        current = pl.from_arrow(to_reader(spec, sealed, wide))
        assert isinstance(current, pl.DataFrame)
        key = ["symbol", "timestamp", *(["__timeframe"] if has_tf else [])]
        if has_tf:
            current = current.rename({"timeframe": "__timeframe"})
        else:
            current = current.with_columns(pl.lit(None, dtype=pl.String).alias("__timeframe"))
        starts = (frame.filter(pl.col("__kt").is_not_null()).group_by(key)
                  .agg(pl.col("__kt").max().alias("__kf")))
        current = current.join(starts, on=key, how="left").with_columns(
            pl.lit(None, dtype=pl.Datetime("us")).alias("__kt"), pl.lit(False).alias("__absent"))
        frame = pl.concat([frame, current.select(frame.columns)])
    return frame.filter(~pl.col("__absent")).drop("__absent")


def pit_join(left: Any, versions: Any, *, lag: dt.timedelta, tolerance: dt.timedelta | None) -> Any:
    """Each bar of ``left`` (``symbol``, ``timestamp``) with the newest regime row stamped at
    or before it whose version was known at the bar's time plus ``lag``, in that version.

    A regime row is usable by a bar at ``b`` once ``b >= its timestamp`` and ``b + lag >=
    the start of its first version``: both hold from ``max(timestamp, first start - lag)``
    on, so the newest usable row is a running maximum over rows ordered by that instant
    (one as-of join); its version known at ``b + lag`` is then one per chain."""
    import polars as pl

    kf, kt = pl.col("__kf"), pl.col("__kt")
    keys = (versions.group_by("symbol", "timestamp")
            .agg(pl.when(kf.is_null().any()).then(None).otherwise(kf.min()).alias("__first")))
    keys = keys.with_columns(pl.when(pl.col("__first").is_null()).then(pl.col("timestamp"))
                             .otherwise(pl.max_horizontal(pl.col("timestamp"), pl.col("__first") - lag))
                             .alias("__usable"))
    keys = keys.sort("symbol", "__usable").with_columns(pl.col("timestamp").cum_max().over("symbol").alias("__best"))
    keys = keys.select("symbol", "__usable", "__best").sort("__usable")
    bars = left.sort("timestamp", maintain_order=True)
    picked = bars.join_asof(keys, left_on="timestamp", right_on="__usable", by="symbol", strategy="backward",
                            check_sortedness=False)
    if tolerance is not None:
        picked = picked.with_columns(pl.when(pl.col("timestamp") - pl.col("__best") <= tolerance)
                                     .then(pl.col("__best")).alias("__best"))
    known = pl.col("timestamp") + lag
    chosen = picked.join(versions.rename({"timestamp": "regime_timestamp"}), left_on=["symbol", "__best"],
                         right_on=["symbol", "regime_timestamp"], how="left", coalesce=False)
    chosen = chosen.filter(pl.col("__best").is_null()
                           | ((kf.is_null() | (kf <= known)) & (kt.is_null() | (known < kt))))
    return chosen.drop("__usable", "__best", "__kf", "__kt", *(["symbol_right"] if "symbol_right" in chosen.columns
                                                                else []))
