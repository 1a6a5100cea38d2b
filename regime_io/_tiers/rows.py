"""The row tier: its merge (staged rows into the table with the chosen conflict rule) and
reading its rows in their declared types."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .._sql.names import qualified_table
from .._sql.quote import quote_ident
from ..tables import TableSpec
from ..types import OnConflict
from . import catalog, changes

if TYPE_CHECKING:
    from .._conn.database import Database


def declared_select(spec: TableSpec) -> str:
    """The declared columns of ``t``; decimals and JSON as text (ADBC has no exact
    NUMERIC -> decimal128): :func:`as_declared` casts them back."""
    return ", ".join(f"t.{quote_ident(c.name)}::text AS {quote_ident(c.name)}" if c.kind in ("decimal", "json")
                     else f"t.{quote_ident(c.name)}" for c in spec.columns)


def as_declared(spec: TableSpec, raw: pa.Table) -> pa.Table:
    """A :func:`declared_select` answer in the declared Arrow types."""
    schema = spec.arrow_schema()
    return pa.Table.from_arrays([raw.column(f.name).cast(f.type) for f in schema], schema=schema)


def stage_name(spec: TableSpec) -> str:
    """The session staging table of ``spec``'s merges."""
    return f"_rio_stage_{spec.key}"


def merged_counts(rows: list[Any]) -> tuple[int, int, list[dict[str, Any]]]:
    """Inserted and updated counts and the catalog's per-series rows of a merge's result."""
    inserted = sum(int(r[0]) for r in rows)
    updated = sum(int(r[1]) for r in rows)
    series = [{"symbol": r[2], "timeframe": r[3], "first_ts": r[4].isoformat(), "last_ts": r[5].isoformat(),
               "n": int(r[0])} for r in rows if len(r) > 2 and r[0]]
    return inserted, updated, series


def merge_sql(spec: TableSpec, db: Database, on_conflict: OnConflict, *, known_from: str | None = None,
               known_from_update: str | None = None, stage: str | None = None) -> str:
    """The staged merge; ``known_from``/``known_from_update``: SQL giving inserted /
    updated rows their knowledge start (history tables, regime_io._tiers.knowledge)."""
    target = qualified_table(spec, db.settings)
    names = [quote_ident(c.name) for c in spec.columns] + (["known_from"] if known_from else [])
    select = ", ".join(f"{quote_ident(c.name)}::{c.pg_type}" if c.kind == "json" else quote_ident(c.name)
                       for c in spec.columns) + (f", {known_from}" if known_from else "")
    key = ", ".join(quote_ident(c) for c in spec.primary_key)
    if on_conflict == "update":
        values = [quote_ident(c) for c in spec.value_columns]
        conflict = (
            f" ON CONFLICT ({key}) DO UPDATE SET " + ", ".join(f"{v} = EXCLUDED.{v}" for v in values)
            # The live tail's change stamp: EXCLUDED carries the column default, this transaction's id.
            + f", {changes.CHANGE_COLUMN} = EXCLUDED.{changes.CHANGE_COLUMN}"
            + (f", known_from = {known_from_update}" if known_from_update else "")
            + f" WHERE ({', '.join('t.' + v for v in values)}) IS DISTINCT FROM "
            f"({', '.join('EXCLUDED.' + v for v in values)})"
        )
    elif on_conflict == "ignore":
        conflict = f" ON CONFLICT ({key}) DO NOTHING"
    else:
        conflict = ""
    # created_at is set to this transaction's start time on insert and never updated, so it
    # tells inserted rows from updated ones. Both sides of the comparison are evaluated in
    # this session: on Citus the RETURNING list and a column default run on the workers,
    # whose transactions started at other times (and RETURNING xmax is refused on
    # partitioned tables and meaningless on distributed ones).
    # Tables in the series catalog: one result row per series, with the first and last
    # timestamp of its inserted rows; other tables: one row of totals.
    returning, per_series = "t.created_at", ""
    if spec.key in catalog.SERIES_TABLES:
        time = quote_ident(spec.time_column or "timestamp")
        cols = catalog.series_columns(spec)
        returning += ", " + ", ".join(f"t.{quote_ident(c)}" for c in (*cols, spec.time_column or "timestamp"))
        timeframe = quote_ident("timeframe") if len(cols) == 2 else "''::text"
        inserted = "WHERE created_at = LOCALTIMESTAMP"
        per_series = (f", symbol, {timeframe}, min({time}) FILTER ({inserted}), max({time}) FILTER ({inserted})"
                      " FROM merged GROUP BY symbol, 4")
    return (
        f"WITH merged AS (INSERT INTO {target} AS t ({', '.join(names)}, created_at) "
        f"SELECT {select}, LOCALTIMESTAMP FROM {quote_ident(stage or stage_name(spec))} ORDER BY {key}{conflict} "
        f"RETURNING {returning}) "
        "SELECT count(*) FILTER (WHERE created_at = LOCALTIMESTAMP), "
        "count(*) FILTER (WHERE created_at IS DISTINCT FROM LOCALTIMESTAMP)"
        + (per_series or " FROM merged")
    )
