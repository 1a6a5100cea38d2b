"""SQL text of the readers: select lists, WHERE conditions, range and latest-row queries.

Values are never formatted into SQL: every builder takes a :class:`~regime_io._sql.query.Query`
and binds values with ``q.param(value)``; identifiers come from the table declarations
and are quoted by :func:`~regime_io._sql.quote.quote_ident`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .._sql.names import catalog_table
from .._sql.query import Query, TimeRange
from .._sql.quote import quote_ident
from .._tiers.catalog import series_columns
from .._tiers.router import Relation
from ..tables import TableSpec

if TYPE_CHECKING:
    from .._conn.database import Database

__all__ = [
    "CatalogSeries", "catalog_series", "filter_conditions", "last_query", "latest_query", "range_order", "range_query",
    "select_list", "symbol_left_out", "where_conditions",
]


def range_order(spec: TableSpec) -> tuple[str, ...]:
    """Row order of range reads: the natural key (time last), except option bars, which
    come time first after the symbol, as a backtest replays them."""
    if spec.key == "options_data":
        time_col = spec.time_column or "timestamp"
        rest = tuple(c for c in spec.primary_key if c not in ("symbol", time_col))
        return ("symbol", time_col, *rest)
    return spec.primary_key


def select_list(spec: TableSpec, names: Sequence[str], *, exact: bool, engine: Literal["cx", "adbc"],
                 alias: str = "t") -> str:
    """SELECT expressions giving each column its reader type (or one the client casts).

    ``engine="cx"`` (connectorx, and the range readers on ADBC): DECIMAL as text, which
    :func:`decimal_text` parses into the same float64 the server's ``::float8`` gives
    (that cast formats the same text and parses it, on the server's one core);
    ``engine="adbc"`` (small lookups): ``::float8``. Exact reads get NUMERIC from
    connectorx (decimal128(38,10), rescaled on the client) and text from ADBC (which has
    no Arrow decimal for NUMERIC), parsed as decimals.
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


def symbol_condition(q: Query, symbols: list[str]) -> str:
    if len(symbols) == 1:
        return f't."symbol" = {q.param(symbols[0])}'
    return f't."symbol" = ANY({q.param(symbols)}::text[])'


def where_conditions(q: Query, spec: TableSpec, symbols: list[str], rng: TimeRange,
                extra: Sequence[tuple[str, Any]]) -> list[str]:
    return [symbol_condition(q, symbols), *filter_conditions(q, spec, rng, extra)]


def filter_conditions(q: Query, spec: TableSpec, rng: TimeRange, extra: Sequence[tuple[str, Any]]) -> list[str]:
    """The window and the equality filters of a read (alias ``t``), without the symbol."""
    conditions = rng.conditions(q, 't."timestamp"')
    for name, value in extra:
        ref = f"t.{quote_ident(name)}"
        column = spec.column(name)
        if isinstance(value, list):
            cast = {"date": "date", "decimal": "numeric"}.get(column.kind, "text")
            conditions.append(f"{ref} = ANY({q.param(value)}::{cast}[])")
        else:
            conditions.append(f"{ref} = {q.param(value)}")
    return conditions


def symbol_left_out(symbols: Sequence[str] | None, names: Sequence[str]) -> dict[str, str] | None:
    """The symbol column a one-symbol row query leaves out, for ``conform`` to fill in
    (``{"symbol": its value}``), or None: the constant column made the server send ~10%
    more for 1M rows, and a one-symbol row-tier month scanned in ~36 ms with it, ~32
    without. Only when other columns are asked too (a query selects something)."""
    if symbols is not None and len(symbols) == 1 and "symbol" in names and len(names) > 1:
        return {"symbol": symbols[0]}
    return None


def range_query(db: Database, spec: TableSpec, symbols: list[str], rng: TimeRange, *, names: list[str],
                exact: bool, extra: Sequence[tuple[str, Any]], drop_symbol: bool,
                engine: Literal["cx", "adbc"] = "cx",
                relation: Callable[[Query], str] | None = None) -> tuple[Query, str]:
    """The range read's query over ``relation`` (from the tier router; default: the table)."""
    q = Query()
    sql_names = [n for n in names if not (drop_symbol and n == "symbol")]
    order = [n for n in range_order(spec) if not (len(symbols) == 1 and n == "symbol")]
    target = relation(q) if relation is not None else db.table(spec.key)
    sql = (f"SELECT {select_list(spec, sql_names, exact=exact, engine=engine)} FROM {target} t "
           f"WHERE {' AND '.join(where_conditions(q, spec, symbols, rng, extra))} "
           f"ORDER BY {', '.join(f't.{quote_ident(n)}' for n in order)}")
    return q, sql


def last_query(db: Database, spec: TableSpec, symbols: list[str], rng: TimeRange, n: int, *, names: list[str],
               exact: bool, extra: Sequence[tuple[str, Any]],
               relation: Callable[[Query], str] | None = None) -> tuple[Query, str]:
    """The last ``n`` rows of each symbol in the window (greatest time first, ties by the
    rest of the key), returned in :func:`range_order`.

    Each symbol's rows come from its own ``ORDER BY time DESC LIMIT n`` (an index scan
    backwards from the end of the window that stops after ``n`` rows). On a plain server
    the symbols are a ``LATERAL`` join over their list, so the relation (and its guard)
    appears once; Citus refuses ``LIMIT`` in such a lateral subquery (docs/scaling.md), so
    there each symbol is its own subquery with ``symbol = $k``, routed to one shard.
    """
    q = Query()
    time_col = spec.time_column or "timestamp"
    order = range_order(spec)
    inner = [*names, *(c for c in order if c not in names)]
    newest = ", ".join(f"t.{quote_ident(c)} DESC" for c in
                       (time_col, *(c for c in spec.primary_key if c not in ("symbol", time_col))))

    def target() -> str:  # each occurrence binds its own values
        return relation(q) if relation is not None else db.table(spec.key)

    select = select_list(spec, inner, exact=exact, engine="adbc")
    outer = ", ".join(f"l.{quote_ident(c)}" for c in names)
    by = ", ".join(f"l.{quote_ident(c)}" for c in order)
    if db.settings.citus:
        parts = []
        for symbol in symbols:
            conditions = [f't."symbol" = {q.param(symbol)}', *filter_conditions(q, spec, rng, extra)]
            parts.append(f"(SELECT {select} FROM {target()} t WHERE {' AND '.join(conditions)} "
                         f"ORDER BY {newest} LIMIT {q.param(n)})")
        return q, f"SELECT {outer} FROM ({' UNION ALL '.join(parts)}) l ORDER BY {by}"
    symbol_list = q.param(symbols)
    relation_sql = target()
    conditions = ['t."symbol" = s.sym', *filter_conditions(q, spec, rng, extra)]
    return q, (f"SELECT {outer} FROM unnest({symbol_list}::text[]) AS s(sym) CROSS JOIN LATERAL "
               f"(SELECT {select} FROM {relation_sql} t WHERE {' AND '.join(conditions)} ORDER BY {newest} "
               f"LIMIT {q.param(n)}) l ORDER BY {by}")


def latest_query(db: Database, spec: TableSpec, wanted: list[str] | None, *, timeframe: str | None,
                 exact: bool, relations: Sequence[tuple[Relation, str]] = ()) -> tuple[Query, str]:
    """The latest-row query of :func:`get_latest`: the series catalog joined to the table
    (and to each of ``relations``: the router's other tiers, as rows with the declared
    columns, each with a further join condition or ``""``) on the exact key
    ``(symbol[, timeframe], timestamp = last_ts)``.

    One primary-key probe per series (run-time partition pruning picks the partition of
    ``last_ts``), whatever the length of the history or the number of partitions. On Citus
    the catalog is co-located with the data, so the join runs on the workers: one shard
    for one symbol, every shard in parallel for all of them. One form for both engines:
    recursive skip scans and ``LATERAL (... LIMIT 1)`` over a list of symbols, which a
    plain server runs well, are refused by Citus. The joins over several relations are one
    statement (``UNION ALL``), so they see one snapshot.
    """

    q = Query()
    select = select_list(spec, list(spec.column_names), exact=exact, engine="adbc", alias="t")
    parts = []
    def row_table(_q: Query) -> str:
        return db.table(spec.key)

    tiers: list[tuple[Relation, str]] = [(row_table, ""), *relations]
    for relation, match in tiers:
        c = catalog_series(q, spec, wanted, timeframe=timeframe)
        parts.append(f"SELECT {select} FROM {catalog_table(db.settings)} s JOIN {relation(q)} t "
                     f"ON {c.match} AND t.{c.time} = s.last_ts{' AND ' + match if match else ''} WHERE {c.where}")
    order = ", ".join(f'u.{quote_ident(n)} COLLATE "C"' for n in series_columns(spec))
    return q, f"SELECT * FROM ({' UNION ALL '.join(parts)}) u ORDER BY {order}"


@dataclass(frozen=True)
class CatalogSeries:
    """SQL fragments over the series catalog (alias ``s``) and a table (alias ``t``):
    the series asked for, how a row matches its series, and the readers' series order."""

    where: str
    columns: str  # "s.symbol" or "s.symbol, s.timeframe"
    match: str
    order: str
    time: str  # the quoted time column


def catalog_series(q: Query, spec: TableSpec, wanted: list[str] | None, *, timeframe: str | None) -> CatalogSeries:
    """The catalog's series of ``spec`` (of ``wanted`` symbols, of one timeframe), shared by
    the latest-row readers (current and as of a knowledge time)."""

    by_timeframe = len(series_columns(spec)) == 2
    conditions = [f"s.table_key = {q.param(spec.key)}"]
    if wanted is not None:
        conditions.append(f"s.symbol = ANY({q.param(wanted)}::text[])")
    if timeframe is not None:
        conditions.append(f"s.timeframe = {q.param(timeframe)}")
    return CatalogSeries(
        where=" AND ".join(conditions),
        columns="s.symbol" + (", s.timeframe" if by_timeframe else ""),
        match='t."symbol" = s.symbol' + (' AND t."timeframe" = s.timeframe' if by_timeframe else ""),
        order='s.symbol COLLATE "C"' + (', s.timeframe COLLATE "C"' if by_timeframe else ""),
        time=quote_ident(spec.time_column or "timestamp"),
    )
