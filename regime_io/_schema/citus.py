"""Scale-out: distributing the tables with Citus when the extension is present.

The DDL is Citus-compatible by construction: every primary key includes ``symbol`` (the
distribution column), there are no foreign keys, and the time-series tables are range
partitioned on ``timestamp``, which Citus keeps when it distributes a partitioned table
(new partitions created on write are distributed automatically). With ``citus = true``
in ``[DATABASE]``, :func:`regime_io._schema.ddl.initialize_database` runs :func:`citus_plan`:

* the four time-series tables, ``optimization_results``, the sealed tier's
  ``<table>_chunks`` tables and the series catalog (``<prefix>series``) become
  distributed tables, hashed on ``symbol`` and co-located with ``market_data``: all rows
  of one symbol, in every table, live on the same worker, so per-symbol reads and joins
  (bars with their regimes, a series with its catalog row) run on one node;
* the small ``schema_version`` and ``metadata`` tables become reference tables (a copy
  on every node).

On a server without the extension nothing happens but a warning: tables stay local.
See ``docs/scaling.md``.

Example:
    >>> from regime_io.config import Settings
    >>> for statement in citus_plan(Settings())[:3]:
    ...     print(statement)
    SELECT create_reference_table('"public"."mr_schema_version"')
    SELECT create_reference_table('"public"."mr_metadata"')
    SELECT create_distributed_table('"public"."mr_market_data"', 'symbol')
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from .._sql.quote import literal, qualified
from ..config import Settings
from ..tables import TABLES, TableKey

__all__ = ["DISTRIBUTION_COLUMN", "citus_plan", "distribute_table", "distribute_tables"]

log = logging.getLogger(__name__)


DISTRIBUTION_COLUMN = "symbol"


# The table the others are co-located with (the first distributed one).
_ANCHOR: TableKey = "market_data"


def citus_plan(settings: Settings, *, distributed: Collection[str] = ()) -> list[str]:
    """The statements that distribute the tables with Citus, for review or to run by hand.

    Parameters:
        settings: the configuration (schema, prefix and table names).
        distributed: physical table names that Citus already distributes (or replicates
            as reference tables); they are left out, so the plan is idempotent.

    Returns:
        ``SELECT create_reference_table(...)`` for ``schema_version`` and ``metadata``,
        then one ``SELECT create_distributed_table(...)`` per table (the data tables,
        their ``_chunks`` tables, the series catalog), by ``symbol``, co-located with
        ``market_data``.

    Example:
        >>> from regime_io.config import Settings
        >>> done = {"mr_market_data", "mr_schema_version", "mr_metadata"}
        >>> print(citus_plan(Settings(), distributed=done)[0])
        SELECT create_distributed_table('"public"."mr_options_data"', 'symbol', colocate_with => '"public"."mr_market_data"')
    """  # noqa: E501
    schema = settings.schema
    done = set(distributed)
    statements = []
    for reference in (f"{settings.table_prefix}schema_version", f"{settings.table_prefix}metadata"):
        if reference not in done:
            statements.append(f"SELECT create_reference_table({literal(qualified(schema, reference))})")
    # The anchor first: the others join its co-location group.
    keys: list[TableKey] = [_ANCHOR, *(k for k in TABLES if k != _ANCHOR)]
    names = []
    for key in keys:
        assert DISTRIBUTION_COLUMN in TABLES[key].primary_key, key  # guarded by tests/test_scaling.py
        names.append(settings.table_name(key))
    names += [f"{settings.table_name(k)}_chunks" for k in keys if TABLES[k].sealable]
    names += [f"{settings.table_name(k)}_history" for k in keys]  # knowledge time (regime_io._tiers.knowledge)
    names.append(f"{settings.table_prefix}series")
    for name in names:
        if name not in done:
            statements.append(_distribute_statement(settings, name))
    return statements


def _distribute_statement(settings: Settings, name: str) -> str:
    table = qualified(settings.schema, name)
    anchor = qualified(settings.schema, settings.table_name(_ANCHOR))
    colocate = "" if table == anchor else f", colocate_with => {literal(anchor)}"
    return f"SELECT create_distributed_table({literal(table)}, {literal(DISTRIBUTION_COLUMN)}{colocate})"


def distribute_table(cur: Any, settings: Settings, name: str) -> bool:
    """Distribute one more table of the schema by ``symbol``, co-located with ``market_data``.

    For tables created after :func:`distribute_tables` ran (companion tables of new
    features): a no-op returning False without Citus, when ``citus = false``, or when the
    table is already distributed. ``name`` is the physical table name (prefix included);
    the table needs a ``symbol`` column of the data tables' type in every unique key.

    Example:
        >>> distribute_table(cur, settings, "mr_market_data_chunks")   # doctest: +SKIP
        True
    """
    if not settings.citus or not citus_installed(cur) or name in _distributed_tables(cur, settings.schema):
        return False
    statement = _distribute_statement(settings, name)
    log.info("citus: %s", statement)
    cur.execute(statement)
    cur.fetchall()
    return True


def citus_installed(cur: Any) -> bool:
    """True when the ``citus`` extension is installed in the current database."""
    cur.execute("SELECT count(*) FROM pg_extension WHERE extname = 'citus'")
    row = cur.fetchone()
    return bool(row and row[0])


def _distributed_tables(cur: Any, schema: str) -> set[str]:
    """Tables of ``schema`` that Citus already distributes or replicates."""
    cur.execute(
        "SELECT c.relname FROM pg_dist_partition d JOIN pg_class c ON c.oid = d.logicalrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
        parameters=(schema,),
    )
    return {r[0] for r in cur.fetchall()}


def distribute_tables(cur: Any, settings: Settings) -> bool:
    """Distribute the tables by ``symbol`` if the ``citus`` extension is installed.

    Runs :func:`citus_plan` on ``cur`` (a cursor on the coordinator, inside the
    transaction of :func:`~regime_io._schema.ddl.initialize_database`), skipping tables that
    are already distributed: calling it again is a no-op. Returns False, after a
    warning, on a server without Citus: the tables stay local and everything works.

    Example:
        >>> distribute_tables(cur, settings)      # doctest: +SKIP
        True
    """
    if not citus_installed(cur):
        log.warning("citus = true but the citus extension is not installed in this database; "
                    "tables stay local (CREATE EXTENSION citus on the coordinator to distribute them)")
        return False
    plan = citus_plan(settings, distributed=_distributed_tables(cur, settings.schema))
    for statement in plan:
        log.info("citus: %s", statement)
        cur.execute(statement)
        cur.fetchall()
    if not plan:
        log.debug("citus: every table is already distributed")
    return True
