"""The server-side guard of sealed months: other tools cannot write rows into them.

A sealed series-month lives in ``<table>_chunks`` only; a row that another tool (psql,
a bulk COPY, an ETL job) INSERTs, COPYs or UPDATEs into it would sit beside the chunk
as a second version of its key. Each sealable row table therefore carries one trigger,
``<table>_sealed_guard``::

    AFTER INSERT OR UPDATE ... FOR EACH ROW
    WHEN (NEW."timestamp" < "<table>_sealed_horizon"()
          AND current_setting('regime_io.tier_checked', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION "<table>_sealed_guard"()

* ``<table>_sealed_horizon()`` is an IMMUTABLE SQL function returning a constant: the
  end of the newest month that has ever been sealed. The planner folds it into the
  trigger's condition, so a row newer than every sealed month costs one timestamp
  comparison; the guard function never runs for it. Writing a chunk of a later month
  (:func:`extend_horizon`, in the chunk write's transaction) replaces the function; the
  horizon only moves forward (unsealing leaves it: older rows are then checked, which
  is correct, only not free).
* ``regime_io.tier_checked`` is set transaction-locally by regime_io when it takes its
  period locks (:func:`regime_io._tiers.sealed_store.lock_periods`): from then on the
  transaction has decided under those locks which rows go to chunks, so its row-tier
  rows need no second check.
* the guard function looks the row's series-month up in the chunk table (one primary
  key probe) and raises SQLSTATE ``RIO01`` naming the table, the series, the month and
  the two ways out (write through regime_io, or ``regime-io unseal``).

Why row-level with a folded condition, not a statement-level trigger over a transition
table (``REFERENCING NEW TABLE``): capturing the transition table alone made a fresh
1M-bar COPY 16-24% slower (measured; the tuplestore spills past ``work_mem``), against
~2% for a row trigger whose condition is false. A BEFORE row trigger would also turn
COPY's multi-row inserts off (+15% measured). See docs/maintenance.md.

Not covered, by design: a foreign write that commits while ``seal`` is sealing
the same month (the seal reads the rows it can see); ``regime-io doctor`` finds such
rows and :func:`regime_io._tiers.sealing.repair_sealed` merges them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .._sql.names import chunk_table, guard_function, guard_trigger, horizon_function, qualified_table
from .._sql.quote import literal, quote_ident
from ..tables import TableSpec
from . import sealed_format as chunks

if TYPE_CHECKING:
    from .._conn.database import Database

__all__ = ["CHECKED_SETTING", "SEALED_SQLSTATE", "extend_horizon", "extend_horizon_first", "guard_sql", "horizon"]


# Set to 'on' (transaction-local) by regime_io once its period locks are held.
CHECKED_SETTING = "regime_io.tier_checked"


# The SQLSTATE the guard raises (class "RI": a code of regime_io's own).
SEALED_SQLSTATE = "RIO01"


_NO_HORIZON = dt.datetime(1, 1, 1)


def _horizon_body(value: dt.datetime) -> str:
    return f"SELECT {literal(value.isoformat(sep=' '))}::timestamp"


def horizon_sql(spec: TableSpec, settings: Any, value: dt.datetime) -> str:
    """CREATE OR REPLACE of the horizon function with ``value`` as its constant."""
    return (f"CREATE OR REPLACE FUNCTION {horizon_function(spec, settings)}() RETURNS timestamp "
            f"LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $rio$ {_horizon_body(value)} $rio$")


def guard_sql(spec: TableSpec, settings: Any) -> list[str]:
    """The guard's DDL for one sealable table: horizon function (created only if missing:
    running this again keeps the horizon), guard function, trigger. Idempotent."""
    if not spec.sealable:
        return []
    table = qualified_table(spec, settings)
    chunk = chunk_table(spec, settings)
    time_col = quote_ident(spec.time_column or "timestamp")
    fn = horizon_function(spec, settings)
    create_horizon = (
        f"DO $do$ BEGIN IF to_regprocedure({literal(fn + '()')}) IS NULL THEN "
        f"EXECUTE {literal(horizon_sql(spec, settings, _NO_HORIZON))}; END IF; END $do$")
    match = " AND ".join(f"c.{quote_ident(c)} = NEW.{quote_ident(c)}" for c in spec.chunk_by)
    series = " || ', ' || ".join(f"{literal(c + '=')} || coalesce(NEW.{quote_ident(c)}::text, 'NULL')"
                                 for c in spec.chunk_by)
    name = settings.table_name(spec.key)
    guard = f"""CREATE OR REPLACE FUNCTION {guard_function(spec, settings)}() RETURNS trigger
LANGUAGE plpgsql AS $rio$
DECLARE
    month date := {chunks.period_sql('NEW.' + time_col)};
BEGIN
    IF EXISTS (SELECT 1 FROM {chunk} c WHERE {match} AND c.period_start = month) THEN
        RAISE EXCEPTION USING
            ERRCODE = {literal(SEALED_SQLSTATE)},
            MESSAGE = format('%s: series (%s), month %s is sealed (its rows are in %s); a row written here '
                             'would be a second version beside the sealed one',
                             {literal(name)}, {series}, to_char(month, 'YYYY-MM'), {literal(name + '_chunks')}),
            HINT = format('write it through regime_io (save() merges into sealed months), or move the month '
                          'back to the row table first: regime-io unseal %s %s --table %s --symbol %s',
                          month, (month + interval '1 month' - interval '1 day')::date, {literal(spec.key)},
                          NEW.symbol);
    END IF;
    RETURN NULL;
END
$rio$"""
    trigger = guard_trigger(spec, settings)
    create_trigger = (
        f"DO $do$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = {literal(table)}::regclass "
        f"AND tgname = {literal(trigger)}) THEN EXECUTE "
        + literal(f"CREATE TRIGGER {quote_ident(trigger)} AFTER INSERT OR UPDATE ON {table} FOR EACH ROW "
                  f"WHEN (NEW.{time_col} < {fn}() AND current_setting({literal(CHECKED_SETTING)}, true) "
                  f"IS DISTINCT FROM 'on') EXECUTE FUNCTION {guard_function(spec, settings)}()")
        + "; END IF; END $do$")
    return [create_horizon, guard, create_trigger]


def horizon(cur: Any, spec: TableSpec, settings: Any) -> dt.datetime:
    """The table's current horizon: rows before it are checked against the chunks."""
    cur.execute(f"SELECT {horizon_function(spec, settings)}()")
    row = cur.fetchone()
    return row[0]  # type: ignore[no-any-return]


def extend_horizon(cur: Any, spec: TableSpec, settings: Any, period: dt.date) -> bool:
    """Move the horizon to the end of ``period`` if it is not there yet (inside the
    transaction that writes the chunk). Returns True when it moved."""
    end = dt.datetime.combine(chunks.next_period(period), dt.time())
    if horizon(cur, spec, settings) >= end:
        return False
    # Two transactions replacing one function fail ("tuple concurrently updated"): one at a time.
    cur.execute("SELECT pg_advisory_xact_lock(hashtext($1))",
                parameters=(f"regime_io.horizon:{horizon_function(spec, settings)}",))
    cur.fetchall()
    if horizon(cur, spec, settings) >= end:
        return False
    cur.execute(horizon_sql(spec, settings, end))
    return True


def extend_horizon_first(db: Database, spec: TableSpec, periods: Iterable[dt.date]) -> None:
    """:func:`extend_horizon` to the last of ``periods`` in its own short transaction,
    before the transaction that writes those chunks. Needed on Citus, which refuses a
    function's DDL after a parallel operation on a distributed table in one transaction;
    a horizon moved early is only conservative (rows before it are checked), never wrong."""
    last = max(periods, default=None)
    if last is None or not spec.sealable:
        return
    with db.connection() as conn:
        cur = conn.cursor()
        try:
            extend_horizon(cur, spec, db.settings, last)
        finally:
            cur.close()


def extend_to_chunks(cur: Any, spec: TableSpec, settings: Any) -> None:
    """Move the horizon past every chunk stored (initialize_database: chunks sealed before
    the guard existed)."""
    if not spec.sealable:
        return
    cur.execute(f"SELECT max(period_start) FROM {chunk_table(spec, settings)}")
    row = cur.fetchone()
    if row and row[0] is not None:
        extend_horizon(cur, spec, settings, row[0])
