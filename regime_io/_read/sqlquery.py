"""SQL over both tiers: ``PostgreSQLIntegration.sql()`` and ``regime-io sql``.

The query runs in polars' SQL engine over the lazy scans of :mod:`regime_io._read.scan`
(rows and sealed chunks, in the eager readers' columns and dtypes). polars plans the
query lazily, so its ``WHERE`` tests on ``symbol``, ``timeframe`` and ``timestamp``
(and the other pushable columns) reach each scan, which sends them to the server and
prunes the sealed chunks by series and month; the rest (joins, ``GROUP BY``, window
functions) runs in polars on the rows that come back.

Why polars SQL: it is already a dependency, its dialect is close to PostgreSQL's for
the queries this is for (aggregates, ``GROUP BY``, joins of bars with regimes, window
functions, CTEs), and it runs on the same lazy frames as ``scan()``, so projection and
filter pushdown come for free; DuckDB would add a dependency and a second copy of every
batch. What it does not accept (PostgreSQL-only functions and casts) is a ``UsageError``
with polars' message. See docs/reading.md, "SQL over both tiers".

Tables are named by their keys (``market_data``), aliases (``bars``, ``options``,
``regimes``, ``"1min"``, ``results``), seed config keys and configured physical names
(``mr_market_data``); only the names the query mentions are scanned.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa

from ..errors import RegimeIOError, UsageError
from ..tables import TABLE_ALIASES, TABLES, TableKey
from .readers import get_optimization_results
from .scan import scan

if TYPE_CHECKING:
    from .._conn.database import Database

__all__ = ["EMPTY", "run_sql", "table_names"]


# The answer of a disabled integration (``enabled = false``).
EMPTY = pa.table({})


def table_names(db: Database) -> dict[str, TableKey]:
    """Every name a query may use for each table: key, alias, seed key, physical name."""
    names: dict[str, TableKey] = {}
    for key, spec in TABLES.items():
        names[key] = key
        names[spec.config_key] = key
        names[db.settings.table_name(key)] = key
    names.update(TABLE_ALIASES)
    return names


def _mentioned(query: str, name: str) -> bool:
    # A bare identifier (not part of a longer one) or a double-quoted one.
    return bool(re.search(rf'(?<![\w."]){re.escape(name)}(?![\w"])', query, flags=re.IGNORECASE)
                or f'"{name}"' in query)


def run_sql(db: Database, query: str, *, exact: bool = False) -> pl.DataFrame:
    """Run ``query`` (polars SQL) over the tables it names, both tiers; a polars frame."""
    if not isinstance(query, str) or not query.strip():
        raise UsageError(f"sql: expected a non-empty SELECT statement, got {query!r}", value=query)
    context = pl.SQLContext()
    used = False
    for name, key in table_names(db).items():
        if not _mentioned(query, name):
            continue
        used = True
        if TABLES[key].time_column:
            frame = scan(db, key, exact=exact)
        else:  # optimization_results: small, read whole
            frame = get_optimization_results(db, exact=exact, parameters="json").lazy()
        context.register(name, frame)
    if not used:
        names = ", ".join(sorted(table_names(db)))
        raise UsageError(f"sql: the query names none of the tables; use one of: {names}", value=query)
    try:
        return context.execute(query, eager=False).collect()
    except RegimeIOError:
        raise
    except (pl.exceptions.SQLInterfaceError, pl.exceptions.SQLSyntaxError, pl.exceptions.ColumnNotFoundError,
            pl.exceptions.InvalidOperationError, pl.exceptions.SchemaError) as err:
        raise UsageError(f"sql: {str(err).strip().splitlines()[0]} (queries run in polars SQL over both tiers; "
                         "see docs/reading.md)", value=query) from None
