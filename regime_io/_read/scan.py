"""Lazy scans: a table as a ``polars.LazyFrame`` whose filters, columns and row limit reach the server.

:func:`scan` registers an IO source with ``polars.io.plugins.register_io_source``. When the
frame is collected, polars hands the source the columns it needs, the predicate and a row
limit; the source

* reads only those columns (and the predicate's): they become the SELECT list;
* pushes the top-level conjuncts of the predicate that test a key or time column
  (``symbol``, ``timeframe``, ``timestamp``, ``expiry_date``, ``strike_price``,
  ``option_type``, ``regime``) with ``==``, ``is_in``, ``<``, ``<=``, ``>``, ``>=`` or
  ``is_between`` against constants into the SQL WHERE clause and into the sealed
  chunks' pruning (key, period, min/max);
* applies the **whole** predicate to every batch afterwards in polars, so a predicate
  that is only partly pushed (or not at all) still gives exactly the right rows (one
  on symbol and time alone, pushed whole, is not applied twice: 0.5 ms of a 41,760-row
  month);
* turns a row limit (``head(n)``) into ``LIMIT n`` when every conjunct was pushed exactly,
  and otherwise stops reading once ``n`` rows passed the predicate.

A table written zone-aware scans zone-aware (``Datetime("us", "UTC")``, as the eager readers
return it); its filters on ``timestamp`` then compare aware datetimes and are applied by
polars (not pushed: the SQL compares the stored naive times).

A ``date`` compared with ``timestamp`` is its midnight here, unlike the eager readers' end
bound: polars' optimiser casts the literal to a datetime before the source sees it, so a
day and a midnight instant cannot be told apart. For a whole day, compare the day
(``pl.col("timestamp") < day + timedelta(days=1)``, pushed down) (docs/reading.md).

``symbol``, ``timeframe`` and ``option_type`` literals anywhere in the predicate are spelled
as the writers store them first (``"nifty"`` finds ``NIFTY`` under the default
``symbol_case``, ``"1min"`` finds ``"1m"`` rows, ``"call"`` finds ``CE``), as the eager
readers do; a value those columns cannot hold raises :class:`UsageError`.

Rows come back in the eager readers' order and schema (same dtypes; same values over the
row tier and the sealed chunks). Batches stream: one symbol over at most a month is read at
once, as the eager readers read it; a longer range with nothing sealed is one ADBC stream;
a range with sealed chunks is read one symbol (one symbol-month when the order is
time-major) at a time, each piece merged over both tiers. The first piece is read when
polars calls the source, on the thread that collects; the others as polars pulls them.

Example:
    >>> lf = scan(db, "bars")                                        # doctest: +SKIP
    >>> lf.filter(pl.col("symbol") == "NIFTY").select("timestamp", "close").head(5).collect()  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import inspect
import io
import itertools
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
from polars.io.plugins import register_io_source

from .._conn.engines import read_lookup, stream_adbc
from .._frames import VIEWS, convert
from .._sql.args import normalise_symbol, text_arg
from .._sql.names import chunk_table
from .._sql.query import EARLIEST, LATEST, Query, TimeRange
from .._sql.quote import quote_ident
from .._tiers.catalog import SERIES_TABLES, read_catalog
from .._tiers.knowledge import as_of_instant
from .._tiers.router import (
    Relation,
    RowRead,
    Scope,
    is_changed,
    read_rows,
    read_sql,
    stream_guard,
)
from .._tiers.sealed_format import next_period
from ..errors import ReadError, UsageError
from ..tables import TableSpec
from ..types import DateLike, SymbolCase
from .decode import as_read, reader_schema
from .readers import is_small_range, rows_bound, sorted_symbols
from .sqltext import range_order, select_list, symbol_left_out
from .zones import zoned

if TYPE_CHECKING:
    from .._conn.database import Database

__all__ = ["PUSHED_COLUMNS", "ScanPlan", "plan_scan", "scan"]

log = logging.getLogger(__name__)


# The columns whose tests become SQL (and chunk pruning); anything else is applied by polars.
PUSHED_COLUMNS = ("symbol", "timeframe", "timestamp", "expiry_date", "strike_price", "option_type", "regime")


# Columns stored in a canonical spelling (tables.Column.canonical; symbols by the
# symbol_case setting): literals are rewritten.
_CANONICAL = ("symbol", "timeframe", "option_type")


# Text columns: only equality and is_in are pushed (a range would depend on the collation).
_TEXT = ("symbol", "timeframe", "option_type", "regime")


_FLIP = {"Lt": "Gt", "LtEq": "GtEq", "Gt": "Lt", "GtEq": "LtEq", "Eq": "Eq"}


_ONE_MICROSECOND = dt.timedelta(microseconds=1)


# register_io_source's names for EXPLAIN (explain_name, explain_detail) are newer than the
# polars floor (1.20 and the last 1.x, 1.44, lack them: a TypeError there): passed only
# when the installed polars takes them.
_EXPLAIN = {"explain_name", "explain_detail"} <= set(inspect.signature(register_io_source).parameters)


@dataclass
class ScanPlan:
    """What a predicate pushes down: the SQL filters and the predicate polars applies after."""

    symbols: list[str] | None = None
    start: dt.datetime = EARLIEST
    end: dt.datetime = LATEST
    end_exclusive: bool = False
    equal: dict[str, list[Any]] = field(default_factory=dict)
    lower: dict[str, tuple[Any, bool]] = field(default_factory=dict)  # column -> (value, inclusive)
    upper: dict[str, tuple[Any, bool]] = field(default_factory=dict)
    pushed: list[str] = field(default_factory=list)  # the conjuncts pushed, for logs and tests
    exact: bool = True  # every conjunct pushed exactly: a row limit may become LIMIT
    empty: bool = False  # contradictory filters: no row can match
    predicate: pl.Expr | None = None  # applied by polars to every batch (canonical spellings)

    @property
    def range(self) -> TimeRange:
        return TimeRange(self.start, self.end, end_exclusive=self.end_exclusive)


# ---------------------------------------------------------------------------------------
# Predicate analysis (polars' JSON form of the expression)


def _constant(node: Any) -> tuple[bool, Any]:
    """``(True, value)`` when ``node`` is an expression without columns (a literal, a cast
    literal), evaluated by polars itself; list literals come back as Python lists."""
    text = json.dumps(node)
    if '"Column"' in text or "Literal" not in text:
        return False, None
    ok, value = _evaluated(text)
    return ok, list(value) if isinstance(value, tuple) else value


@lru_cache(maxsize=512)
def _evaluated(text: str) -> tuple[bool, Any]:
    """:func:`_constant` of one literal's JSON, remembered: polars evaluates each in ~0.1 ms,
    and a backtest scans with the same symbols and bounds again and again (a month scan
    spent 0.2 ms of its 0.3 ms of planning here). Lists are kept as tuples (immutable)."""
    try:
        expr = pl.Expr.deserialize(io.StringIO(text), format="json")
        series = pl.select(expr).to_series()
    except Exception:  # an expression we cannot evaluate is simply not pushed
        return False, None
    if series.len() != 1:
        return False, None
    inner = series.dtype.inner if isinstance(series.dtype, pl.List) else series.dtype
    if isinstance(inner, pl.Datetime) and inner.time_unit == "ns":
        return False, None  # nanoseconds would be cut to the stored microseconds: left to polars
    value = series.item()
    if isinstance(value, pl.Series):
        return True, tuple(value.to_list())
    return True, value


def _column(node: Any) -> str | None:
    return node["Column"] if isinstance(node, dict) and isinstance(node.get("Column"), str) else None


def _lit_json(value: Any) -> Any:
    return json.loads(pl.lit(value).meta.serialize(format="json"))


def _canonical(spec: TableSpec, name: str, value: Any, case: SymbolCase) -> Any:
    if not isinstance(value, str):
        return value
    if name == "symbol":
        return normalise_symbol(value, case)
    canonical = spec.column(name).canonical(value)
    if canonical is None:
        raise UsageError(f"scan: {name} {value!r} is not an accepted value; allowed: {spec.column(name).accepted}",
                         table=spec.key, column=name, value=value)
    return canonical


def _rewrite(spec: TableSpec, node: Any, case: SymbolCase) -> Any:
    """``node`` with the literals compared to ``symbol``/``timeframe``/``option_type`` in their stored spelling."""
    if isinstance(node, list):
        return [_rewrite(spec, n, case) for n in node]
    if not isinstance(node, dict):
        return node
    binary = node.get("BinaryExpr")
    if isinstance(binary, dict) and binary.get("op") in ("Eq", "NotEq", "EqValidity", "NotEqValidity"):
        for side, other in (("left", "right"), ("right", "left")):
            name = _column(binary[side])
            if name in _CANONICAL and name in spec.column_names:
                ok, value = _constant(binary[other])
                if ok and isinstance(value, str):
                    return {"BinaryExpr": {**binary, other: _lit_json(_canonical(spec, name, value, case))}}
    function = node.get("Function")
    if isinstance(function, dict) and _is_in(function):
        name = _column(function["input"][0])
        if name in _CANONICAL and name in spec.column_names:
            ok, values = _constant(function["input"][1])
            if ok and isinstance(values, list) and all(isinstance(v, str) or v is None for v in values):
                canon = [None if v is None else _canonical(spec, name, v, case) for v in values]
                replaced = json.loads(pl.col(name).is_in(canon).meta.serialize(format="json"))
                return {"Function": {**function, "input": [function["input"][0],
                                                            replaced["Function"]["input"][1]]}}
    return {key: _rewrite(spec, value, case) for key, value in node.items()}


def _is_in(function: dict[str, Any]) -> bool:
    boolean = function.get("function", {}).get("Boolean") if isinstance(function.get("function"), dict) else None
    return isinstance(boolean, dict) and "IsIn" in boolean and len(function.get("input", [])) == 2


def _is_between(function: dict[str, Any]) -> str | None:
    boolean = function.get("function", {}).get("Boolean") if isinstance(function.get("function"), dict) else None
    if isinstance(boolean, dict) and "IsBetween" in boolean and len(function.get("input", [])) == 3:
        return str(boolean["IsBetween"].get("closed", "Both"))
    return None


def _conjuncts(node: Any) -> list[Any]:
    binary = node.get("BinaryExpr") if isinstance(node, dict) else None
    if isinstance(binary, dict) and binary.get("op") in ("And", "LogicalAnd"):
        return [*_conjuncts(binary["left"]), *_conjuncts(binary["right"])]
    return [node]


def plan_scan(spec: TableSpec, predicate: pl.Expr | None, *, symbol_case: SymbolCase = "upper") -> ScanPlan:
    """What of ``predicate`` the server applies, and the predicate polars applies after.

    Literals compared to ``symbol`` are spelled as stored (``symbol_case``, the setting).

    Raises:
        UsageError: a ``timeframe``/``option_type`` literal those columns cannot hold.
    """
    plan = ScanPlan(predicate=predicate)
    if predicate is None:
        return plan
    try:
        tree = _rewrite(spec, json.loads(predicate.meta.serialize(format="json")), symbol_case)
        rewritten = pl.Expr.deserialize(io.StringIO(json.dumps(tree)), format="json")
        conjuncts = _conjuncts(tree)
    except UsageError:
        raise
    except Exception as err:
        # polars documents the JSON form as unstable across versions: a shape this parser
        # does not know pushes nothing, and polars applies the whole predicate to every row.
        log.warning("scan %s: predicate not read (%s: %s); nothing of it pushed down, polars filters the rows",
                    spec.key, type(err).__name__, err)
        plan.exact = False
        return plan
    plan.predicate = rewritten
    unread: list[str] = []
    for conjunct in conjuncts:
        pushed = replace(plan, symbols=None if plan.symbols is None else list(plan.symbols), equal=dict(plan.equal),
                         lower=dict(plan.lower), upper=dict(plan.upper), pushed=list(plan.pushed))
        try:
            exact = _push(spec, pushed, conjunct)
        except UsageError:
            raise
        except Exception as err:  # as above, for one conjunct: the others are still pushed
            unread.append(f"{type(err).__name__}: {err}")
            plan.exact = False
            continue
        plan = pushed
        if not exact:
            plan.exact = False
    if unread:
        log.warning("scan %s: %d predicate term(s) not read (%s); polars filters them", spec.key, len(unread),
                    "; ".join(unread))
    return plan


def _push(spec: TableSpec, plan: ScanPlan, node: Any) -> bool:
    """Push one conjunct into ``plan``; True when the SQL now applies it exactly."""
    if not isinstance(node, dict):
        return False
    binary = node.get("BinaryExpr")
    if isinstance(binary, dict) and binary.get("op") in _FLIP:
        op = binary["op"]
        name, other = _column(binary["left"]), binary["right"]
        if name is None:
            name, other, op = _column(binary["right"]), binary["left"], _FLIP[op]
        ok, value = _constant(other)
        if name is None or not ok or name not in PUSHED_COLUMNS or name not in spec.column_names:
            return False
        if op == "Eq":
            return _push_values(spec, plan, name, [value], f"{name} == {value!r}")
        return _push_bound(spec, plan, name, op, value)
    function = node.get("Function")
    if isinstance(function, dict):
        name = _column(function.get("input", [None])[0])
        if name is None or name not in PUSHED_COLUMNS or name not in spec.column_names:
            return False
        if _is_in(function):
            ok, values = _constant(function["input"][1])
            if not ok or not isinstance(values, list):
                return False
            return _push_values(spec, plan, name, [v for v in values if v is not None],
                                f"{name}.is_in({values!r})")
        closed = _is_between(function)
        if closed is not None:
            ok_lo, lo = _constant(function["input"][1])
            ok_hi, hi = _constant(function["input"][2])
            if not (ok_lo and ok_hi):
                return False
            exact_lo = _push_bound(spec, plan, name, "GtEq" if closed in ("Both", "Left") else "Gt", lo)
            exact_hi = _push_bound(spec, plan, name, "LtEq" if closed in ("Both", "Right") else "Lt", hi)
            return exact_lo and exact_hi
    return False


def _value(spec: TableSpec, name: str, value: Any) -> tuple[bool, Any]:
    """The value as the SQL compares it, or ``(False, None)`` when it is not pushed."""
    kind = spec.column(name).kind
    if value is None:
        return False, None
    if kind == "text":
        if not isinstance(value, str):
            return False, None
        return True, text_arg(value, name=name)
    if kind == "timestamp":
        if isinstance(value, dt.datetime):
            return (value.tzinfo is None), value
        if isinstance(value, dt.date):
            return True, dt.datetime.combine(value, dt.time())  # polars compares a date as its midnight
        return False, None
    if kind == "date":
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return True, value
        return False, None
    if kind == "decimal":
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            return False, None
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        return number.is_finite(), number
    return False, None


def _push_values(spec: TableSpec, plan: ScanPlan, name: str, values: list[Any], text: str) -> bool:
    converted = []
    for value in values:
        ok, v = _value(spec, name, value)
        if not ok:
            return False
        converted.append(v)
    plan.pushed.append(text)
    if name == "timestamp":
        if not converted:
            plan.empty = True
            return True
        _push_bound(spec, plan, name, "GtEq", min(converted), record=False)
        _push_bound(spec, plan, name, "LtEq", max(converted), record=False)
        return len(set(converted)) == 1
    unique = list(dict.fromkeys(converted))
    if name == "symbol":
        plan.symbols = unique if plan.symbols is None else [s for s in plan.symbols if s in unique]
        plan.empty = plan.empty or not plan.symbols
        return True
    current = plan.equal.get(name)
    plan.equal[name] = unique if current is None else [v for v in current if v in unique]
    plan.empty = plan.empty or not plan.equal[name]
    return True


def _push_bound(spec: TableSpec, plan: ScanPlan, name: str, op: str, value: Any, *, record: bool = True) -> bool:
    if name in _TEXT:
        return False
    ok, v = _value(spec, name, value)
    if not ok:
        return False
    if record:
        plan.pushed.append(f"{name} {op} {v!r}")
    if name == "timestamp":
        # Timestamps are microseconds: '> t' is '>= t + 1us', so the time range stays exact.
        if op in ("Gt", "GtEq"):
            start = v + _ONE_MICROSECOND if op == "Gt" else v
            plan.start = max(plan.start, start)
        else:
            exclusive = op == "Lt"
            if v < plan.end or (v == plan.end and exclusive):
                plan.end, plan.end_exclusive = v, exclusive
        if plan.start > plan.end or (plan.start == plan.end and plan.end_exclusive):
            plan.empty = True
        return True
    bounds = plan.lower if op in ("Gt", "GtEq") else plan.upper
    inclusive = op in ("GtEq", "LtEq")
    if name in bounds:
        old, _ = bounds[name]
        tighter = v > old if op in ("Gt", "GtEq") else v < old
        if not tighter and not (v == old and not inclusive):
            return True
    bounds[name] = (v, inclusive)
    return True


# ---------------------------------------------------------------------------------------
# SQL and reading


def _row_query(db: Database, spec: TableSpec, plan: ScanPlan, symbols: list[str] | None, rng: TimeRange, *,
               names: Sequence[str], exact: bool, engine: str, limit: int | None,
               relation: Relation | None = None, drop_symbol: bool = False) -> tuple[Query, str]:
    """The row tier's query for ``names`` (without the symbol with ``drop_symbol``:
    :func:`~regime_io._read.sqltext.symbol_left_out`)."""
    if drop_symbol:
        names = [n for n in names if n != "symbol"]
    q = Query()
    target = relation(q) if relation is not None else db.table(spec.key)
    conds: list[str] = []
    if symbols is not None:
        conds.append(f't."symbol" = {q.param(symbols[0])}' if len(symbols) == 1
                     else f't."symbol" = ANY({q.param(symbols)}::text[])')
    conds += rng.conditions(q, f"t.{quote_ident(spec.time_column or 'timestamp')}")
    for name, values in plan.equal.items():
        ref = f"t.{quote_ident(name)}"
        if len(values) == 1:
            conds.append(f"{ref} = {q.param(values[0])}")
        else:
            cast = {"date": "date", "decimal": "numeric"}.get(spec.column(name).kind, "text")
            conds.append(f"{ref} = ANY({q.param(values)}::{cast}[])")
    for bounds, strict, loose in ((plan.lower, ">", ">="), (plan.upper, "<", "<=")):
        for name, (value, inclusive) in bounds.items():
            conds.append(f"t.{quote_ident(name)} {loose if inclusive else strict} {q.param(value)}")
    order = [n for n in range_order(spec) if not (symbols is not None and len(symbols) == 1 and n == "symbol")]
    sql = (f"SELECT {select_list(spec, names, exact=exact, engine='adbc' if engine == 'adbc' else 'cx')} "
           f"FROM {target} t WHERE {' AND '.join(conds)} "
           f"ORDER BY {', '.join(f't.{quote_ident(n)}' for n in order)}"
           + (f" LIMIT {q.param(limit)}" if limit is not None else ""))
    return q, sql


def _sealed_extra(spec: TableSpec, plan: ScanPlan) -> list[tuple[str, Any]]:
    """The equality filters the sealed tier prunes and trims by: chunk-key columns, and
    single values of the others (a list of text values is left to polars: min/max pruning
    by a list would compare text in Python's order, not the server's collation)."""
    extra: list[tuple[str, Any]] = []
    for name, values in plan.equal.items():
        if name in spec.chunk_by or len(values) == 1 or spec.column(name).kind != "text":
            extra.append((name, values if len(values) > 1 else values[0]))
    return extra


def _row_read(db: Database, spec: TableSpec, plan: ScanPlan, symbols: list[str] | None, rng: TimeRange, *,
              exact: bool, limit: int | None) -> RowRead:
    """The row tier's part of a piece, read as the eager range readers read it: bound
    parameters for small ranges, inlined values (ADBC reads through COPY) for larger ones."""
    small = symbols is not None and is_small_range(spec, symbols, rng)

    def build(names: list[str], relation: Relation | None) -> tuple[Query, str]:
        return _row_query(db, spec, plan, symbols, rng, names=names, exact=exact,
                          engine="adbc" if exact else "cx", limit=limit, relation=relation,
                          drop_symbol=symbol_left_out(symbols, names) is not None)

    def decode(table: pa.Table, names: list[str]) -> pa.Table:
        return as_read(table, spec, reader_schema(spec, names, exact=exact), exact=exact,
                       constants=symbol_left_out(symbols, names))

    return RowRead(build, decode, what="scan", inline=not small)


def _sealed_symbols(db: Database, spec: TableSpec, rng: TimeRange) -> list[str]:
    """Symbols with a sealed chunk overlapping ``rng`` (the chunk table is one row per series-month)."""
    q = Query()
    sql = (f"SELECT DISTINCT t.symbol FROM {chunk_table(spec, db.settings)} t "
           f"WHERE t.last_ts >= {q.param(rng.start)} AND t.first_ts {'<' if rng.end_exclusive else '<='} "
           f"{q.param(rng.end)}")
    return [str(s) for s in read_lookup(db, q, sql, what="scan (sealed)", table=spec.key).column("symbol").to_pylist()]


def _all_symbols(db: Database, spec: TableSpec, sealed: list[str]) -> list[str]:
    """Every symbol of the table: the series catalog's, and those with sealed chunks."""

    listed = [str(s) for s in read_catalog(db, spec.key).column("symbol").to_pylist()]
    return sorted_symbols(db, list(dict.fromkeys([*listed, *sealed])))


def _pieces(db: Database, spec: TableSpec, plan: ScanPlan, symbols: list[str],
            rng: TimeRange) -> list[tuple[str, TimeRange]]:
    """One piece per symbol, or, when rows are time-major within a symbol (option bars; one
    timeframe), per month of the symbol's sealed span plus one piece before and one after
    it: each piece is read over both tiers and merged on its own, so memory holds a piece."""
    order = range_order(spec)
    time_major = order[1] == spec.time_column or len(plan.equal.get("timeframe", [])) == 1
    if not time_major:
        return [(symbol, rng) for symbol in symbols]
    q = Query()
    sql = (f"SELECT t.symbol, min(t.period_start) AS lo, max(t.period_start) AS hi FROM "
           f"{chunk_table(spec, db.settings)} t WHERE t.symbol = ANY({q.param(symbols)}::text[]) GROUP BY t.symbol")
    spans = {r["symbol"]: (r["lo"], r["hi"]) for r in read_lookup(db, q, sql, what="scan (sealed)",
                                                                  table=spec.key).to_pylist()}
    pieces: list[tuple[str, TimeRange]] = []
    for symbol in symbols:
        if symbol not in spans:
            pieces.append((symbol, rng))
            continue
        lo, hi = spans[symbol]
        cuts = [dt.datetime.combine(lo, dt.time())]
        while cuts[-1] <= dt.datetime.combine(hi, dt.time()):
            cuts.append(dt.datetime.combine(next_period(cuts[-1].date()), dt.time()))
        start = rng.start
        for cut in cuts:
            if cut <= start:
                continue
            if cut > rng.end or (cut == rng.end and not rng.end_exclusive):
                break
            pieces.append((symbol, TimeRange(start, cut, end_exclusive=True)))
            start = cut
        pieces.append((symbol, TimeRange(start, rng.end, end_exclusive=rng.end_exclusive)))
    return pieces


def _one_month(spec: TableSpec, symbols: list[str], rng: TimeRange) -> bool:
    """One symbol's bars over at most a month: a piece of the streamed path anyway
    (<= 44,640 one-minute bars), read at once as the eager reader reads it -- one guarded
    statement over a table never sealed, the chunks and the rows over one that was --
    without the stream's chunk lookup first (a 41,760-row month of a table never sealed:
    1.033x the eager read streamed, 1.015x at once, the source run on the calling thread,
    40 alternated rounds; a sealed month: 1 round trip instead of 2)."""
    return (len(symbols) == 1 and math.isfinite(rows_bound(spec, symbols, rng))
            and rng.end - rng.start <= dt.timedelta(days=31))


def _tables(db: Database, spec: TableSpec, plan: ScanPlan, names: list[str], *, exact: bool,
            limit: int | None, batch_rows: int, as_of: dt.datetime | None = None) -> Iterator[pa.Table]:
    """The rows of ``plan``'s SQL filters over both tiers, in the eager readers' order."""
    rng = plan.range
    symbols = plan.symbols
    extra = _sealed_extra(spec, plan)
    order = range_order(spec)
    if as_of is not None:  # symbol by symbol, the same SQL over the table as known then
        schema = reader_schema(spec, names, exact=exact)
        syms = sorted_symbols(db, symbols) if symbols is not None else _all_symbols(
            db, spec, _sealed_symbols(db, spec, rng) if spec.sealable else [])
        for symbol in syms:
            def build(relation: Relation, symbol: str = symbol) -> tuple[Query, str]:
                return _row_query(db, spec, plan, [symbol], rng, names=names, exact=exact, engine="adbc",
                                  limit=limit, relation=relation)

            table = read_sql(db, spec, Scope([symbol], rng, extra), build, what="scan", as_of=as_of)
            yield as_read(table, spec, schema, exact=exact)
        return

    def both(syms: list[str], piece: TimeRange) -> pa.Table:
        # Text as Arrow string views where the sealed tier answers alone (the source hands
        # polars frames, as get_market_data(return_type="polars") does): a sealed month's
        # conversion 0.68 -> 0.24 ms, its scan 0.91 of the time (200 alternated pairs).
        return read_rows(db, spec, Scope(syms, piece, extra), _row_read(db, spec, plan, syms, piece, exact=exact,
                                                                         limit=limit),
                         names=names, exact=exact, order=order, views=VIEWS)

    if symbols is not None and (is_small_range(spec, symbols, rng) or _one_month(spec, symbols, rng)):
        yield both(symbols, rng)
        return
    relation = stream_guard(db, spec, Scope(symbols, rng, extra))
    if relation is not None:
        # Nothing sealed in the range: one streamed statement over the row tier, on the
        # eager readers' driver; its guard fails it before the first batch if chunks appear.
        schema = reader_schema(spec, names, exact=exact)
        q, sql = _row_query(db, spec, plan, symbols, rng, names=names, exact=exact,
                            engine="adbc" if exact else "cx", limit=limit, relation=relation,
                            drop_symbol=symbol_left_out(symbols, names) is not None)
        started = False
        try:
            for batch in stream_adbc(db, q, sql, batch_rows=batch_rows, what="scan", table=spec.key):
                started = True
                if batch.num_rows:
                    yield as_read(pa.Table.from_batches([batch]), spec, schema, exact=exact,
                                  constants=symbol_left_out(symbols, names))
            return
        except ReadError as err:
            if started or not is_changed(err):
                raise
    symbols = (_all_symbols(db, spec, _sealed_symbols(db, spec, rng)) if symbols is None
               else sorted_symbols(db, symbols))
    for symbol, piece in _pieces(db, spec, plan, symbols, rng):
        yield both([symbol], piece)


def _applied_whole(plan: ScanPlan) -> bool:
    """Whether both tiers applied the whole predicate already: every conjunct pushed exactly
    and each one on the symbol or the time, which the row SQL and the sealed chunks (picked
    by symbol, trimmed to the window) both apply exactly. Bounds on other columns only
    prune chunks, so polars still filters those rows."""
    return plan.exact and not (plan.equal or plan.lower or plan.upper)


def _source(db: Database, spec: TableSpec, exact: bool, full: list[str], as_of: dt.datetime | None = None) -> Any:
    def source(with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None,
               batch_size: int | None) -> Iterator[pl.DataFrame]:
        # Polars calls the source on the thread that collects and pulls its frames on a
        # thread of its own, where the same read ran slower on 2 cores (a 41,760-row
        # row-tier month: 1.12-1.22x the eager read pulled there, 1.03-1.04x read in the
        # call; 3 x 40 alternated rounds): the first frame is read here, the rest as pulled.
        pulled = frames(with_columns, predicate, n_rows, batch_size)
        first = next(pulled, None)
        return pulled if first is None else itertools.chain([first], pulled)

    def frames(with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None,
               batch_size: int | None) -> Iterator[pl.DataFrame]:
        plan = plan_scan(spec, predicate, symbol_case=db.settings.symbol_case)
        wanted = list(with_columns) if with_columns is not None else full
        needed = set(wanted) | (set(plan.predicate.meta.root_names()) if plan.predicate is not None else set())
        names = [n for n in full if n in needed] or full[:1]
        log.debug("scan %s: columns %s, pushed %s, exact=%s, limit %s", spec.key, names, plan.pushed, plan.exact,
                  n_rows)
        if plan.empty or n_rows == 0:
            return
        remaining = n_rows
        batch_rows = batch_size or 250_000
        limit = n_rows if (n_rows is not None and plan.exact) else None
        for table in _tables(db, spec, plan, names, exact=exact, limit=limit, batch_rows=batch_rows, as_of=as_of):
            frame = convert(zoned(db, spec, table, None), "polars")  # the eager readers' conversion
            if plan.predicate is not None and not _applied_whole(plan):
                frame = frame.filter(plan.predicate)
            if frame.columns != wanted:
                frame = frame.select(wanted)
            if remaining is not None:
                frame = frame.head(remaining)
                remaining -= frame.height
            for offset in range(0, frame.height, batch_rows):
                yield frame.slice(offset, batch_rows)
            if remaining is not None and remaining <= 0:
                return

    return source


def scan(db: Database, table: str, *, exact: bool = False, as_of: DateLike | None = None) -> pl.LazyFrame:
    """A time-series table as a ``polars.LazyFrame`` with projection, predicate and limit
    pushdown (module docstring).

    Raises:
        UsageError: an unknown table, or one without a time column.
    """
    spec = db.spec(table)
    if spec.time_column is None:
        raise UsageError(f"scan reads the time-series tables; {spec.key!r} is not one; allowed: "
                         f"{', '.join(SERIES_TABLES)}", table=spec.key, value=table)
    if not isinstance(exact, bool):
        raise UsageError(f"exact: expected True or False, got {exact!r}", table=spec.key, value=exact)

    known = as_of_instant(db, spec, as_of)
    full = list(spec.column_names)
    empty = pl.from_arrow(zoned(db, spec, reader_schema(spec, full, exact=exact).empty_table(), None))
    assert isinstance(empty, pl.DataFrame)
    source = _source(db, spec, exact, full, known)
    if not _EXPLAIN:
        return register_io_source(source, schema=empty.schema)
    return register_io_source(source, schema=empty.schema, explain_name=f"regime_io {spec.key}",
                              explain_detail="pushdown: columns, key/time filters, head(n)")
