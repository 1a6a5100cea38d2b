"""Scale-out: distributing the tables with Citus when the extension is present.

The DDL is Citus-compatible by construction: every primary key includes ``symbol`` (the
distribution column), there are no foreign keys, and the time-series tables are range
partitioned on ``timestamp``, which Citus keeps when it distributes a partitioned table
(new partitions created on write are distributed automatically). With ``citus = true``
in ``[DATABASE]``, :func:`regime_io._schema.initialize_database` runs :func:`citus_plan`:

* the four time-series tables and ``optimization_results`` become distributed tables,
  hashed on ``symbol`` and co-located with ``market_data``: all rows of one symbol, in
  every table, live on the same worker, so per-symbol reads and joins (bars with their
  regimes) run on one node;
* the small ``schema_version`` table becomes a reference table (a copy on every node).

On a server without the extension nothing happens but a warning: tables stay local.
See ``docs/scaling.md``.

Example:
    >>> from regime_io.config import Settings
    >>> for statement in citus_plan(Settings())[:2]:
    ...     print(statement)
    SELECT create_reference_table('"public"."mr_schema_version"')
    SELECT create_distributed_table('"public"."mr_market_data"', 'symbol')
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from ._sql import literal, qualified
from .config import Settings
from .tables import TABLES, TableKey

__all__ = ["DISTRIBUTION_COLUMN", "citus_plan", "distribute_tables"]

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
        ``SELECT create_reference_table(...)`` for ``schema_version``, then one
        ``SELECT create_distributed_table(...)`` per table, by ``symbol``, co-located
        with ``market_data``.

    Example:
        >>> from regime_io.config import Settings
        >>> print(citus_plan(Settings(), distributed={"mr_market_data", "mr_schema_version"})[0])
        SELECT create_distributed_table('"public"."mr_options_data"', 'symbol', colocate_with => '"public"."mr_market_data"')
    """  # noqa: E501
    schema = settings.schema
    done = set(distributed)
    statements = []
    version = f"{settings.table_prefix}schema_version"
    if version not in done:
        statements.append(f"SELECT create_reference_table({literal(qualified(schema, version))})")
    anchor = qualified(schema, settings.table_name(_ANCHOR))
    # The anchor first: the others join its co-location group.
    keys: list[TableKey] = [_ANCHOR, *(k for k in TABLES if k != _ANCHOR)]
    for key in keys:
        spec = TABLES[key]
        assert DISTRIBUTION_COLUMN in spec.primary_key, key  # guarded by tests/test_scaling.py
        name = settings.table_name(key)
        if name in done:
            continue
        table = qualified(schema, name)
        colocate = "" if key == _ANCHOR else f", colocate_with => {literal(anchor)}"
        statements.append(
            f"SELECT create_distributed_table({literal(table)}, {literal(DISTRIBUTION_COLUMN)}{colocate})"
        )
    return statements


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
    transaction of :func:`~regime_io._schema.initialize_database`), skipping tables that
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
