"""The last rows of each symbol (``last=N`` on the range readers).

The answer is the ``N`` rows of each symbol with the greatest time (ties: the rest of the
key, descending) in the reader's window, returned with the range read's schema and in
its row order. The row tier reads each symbol backwards from the end of the window and
stops after ``N`` rows (:func:`~regime_io._read.sqltext.last_query`); the sealed tier
decodes only each symbol's newest months until they hold ``N`` rows
(:func:`~regime_io._tiers.router.read_last`). So the cost follows ``N``, not the length of
the window: ``last=200`` with no ``start_date`` reads about 200 rows per symbol.

Example:
    >>> pg.get_market_data("NIFTY", end_date="2024-03-28 15:29", timeframe="1m", last=200)  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .._sql.query import Query, TimeRange
from .._tiers.router import Relation, RowRead, Scope, read_last, read_sql
from ..errors import UsageError
from ..tables import TableSpec
from .decode import as_read, reader_schema
from .sqltext import last_query, range_order

if TYPE_CHECKING:
    from .._conn.database import Database

__all__ = ["check_last", "read_last_rows"]


def check_last(spec: TableSpec, last: Any, *, resample: Any = None) -> int | None:
    """``last`` checked: None, or a positive integer (``resample`` cannot go with it)."""
    if last is None:
        return None
    if isinstance(last, bool) or not isinstance(last, int) or last < 1:
        raise UsageError(f"last: expected a positive integer (rows per symbol), got {last!r}", table=spec.key,
                         value=last)
    if resample is not None:
        raise UsageError(f"last={last!r} and resample={resample!r} cannot be combined: resample a range "
                         "(start_date, end_date) instead", table=spec.key, value=last)
    return int(last)


def read_last_rows(db: Database, spec: TableSpec, symbols: list[str], rng: TimeRange, n: int, *,
                   names: list[str], exact: bool, extra: Sequence[tuple[str, Any]], what: str,
                   as_of: dt.datetime | None = None) -> pa.Table:
    """The last ``n`` rows of each of ``symbols`` in ``rng`` over both tiers (now, or as
    known at ``as_of``: then the range's sealed rows are read whole, as for a range read
    as of an instant)."""
    schema = reader_schema(spec, names, exact=exact)
    if not symbols or any(value == [] for _, value in extra):
        return schema.empty_table()
    scope = Scope(symbols, rng, extra)
    if as_of is not None:

        def build(relation: Relation) -> tuple[Query, str]:
            return last_query(db, spec, symbols, rng, n, names=names, exact=exact, extra=extra, relation=relation)

        return as_read(read_sql(db, spec, scope, build, what=what, as_of=as_of), spec, schema, exact=exact)

    def build_rows(columns: list[str], relation: Relation | None) -> tuple[Query, str]:
        return last_query(db, spec, symbols, rng, n, names=columns, exact=exact, extra=extra, relation=relation)

    def decode(table: pa.Table, columns: list[str]) -> pa.Table:
        return as_read(table, spec, reader_schema(spec, columns, exact=exact), exact=exact)

    return read_last(db, spec, scope, n, RowRead(build_rows, decode, what=what), names=names, exact=exact,
                     order=range_order(spec))
