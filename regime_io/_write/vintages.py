"""Knowledge-time writes (``known_at=``): validation and the versioned merge of each vintage."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from .._conn.copy import copy_into
from .._conn.engines import pooled_read
from .._frames import to_polars
from .._schema.timezones import record_time_kind, time_kind
from .._sql.quote import quote_ident
from .._tiers.knowledge import ROW_KNOWN_AT, keeps_history, known_at_instant, versioned_merge
from .._tiers.row_groups import period_range, time_span
from .._tiers.sealed_store import existing_chunks, route_batch
from ..errors import UsageError
from ..tables import TableSpec
from ..types import OnConflict, Tier
from .transaction import Attempt, Merged, WriteResult, run, sealed_series, stage_and_merge
from .validate import validate

if TYPE_CHECKING:
    from .._conn.database import Database


# ---------------------------------------------------------------------------------------
# known_at: vintages


def vintages(db: Database, spec: TableSpec, data: Any, known_at: Any, options: dict[str, Any], *,
             stream: bool) -> list[tuple[dt.datetime | None, pa.Table]] | None:
    """The validated batches of a write with ``known_at``, each with its knowledge time,
    in knowledge order: one for a timestamp, one per distinct value for a column name."""
    import polars as pl

    if not keeps_history(db.settings, spec):
        known_at_instant(db, spec, known_at)  # raises the UsageError
    if stream:
        raise UsageError(f"{spec.key}: known_at= takes one frame, not a stream of chunks", table=spec.key,
                         value=known_at)
    frame = to_polars(data, what=spec.key) if isinstance(known_at, str) else None
    if frame is not None and isinstance(known_at, str) and known_at in frame.columns:
        column = frame.schema[known_at]
        if not isinstance(column, pl.Datetime):
            raise UsageError(f"{spec.key}: known_at column {known_at!r} must hold datetimes, not {column}",
                             table=spec.key, column=known_at)
        if frame[known_at].null_count():
            raise UsageError(f"{spec.key}: known_at column {known_at!r} has nulls; every row needs its "
                             "knowledge time", table=spec.key, column=known_at)
        zone = db.settings.storage_timezone
        stamps = frame[known_at]
        if getattr(stamps.dtype, "time_zone", None) is None:
            stamps = stamps.dt.replace_time_zone(zone)
        frame = frame.with_columns(stamps.dt.convert_time_zone("UTC").alias(known_at))
        out: list[tuple[dt.datetime | None, pa.Table]] = []
        if _has_chunks(db, spec, frame):
            # Sealed periods merge chunk by chunk with one knowledge time: one vintage per value.
            for (value,), part in sorted(frame.partition_by(known_at, as_dict=True, maintain_order=True).items(),
                                         key=lambda kv: kv[0][0]):
                out.append((value, validate(spec, part.drop(known_at), **options)))
            return out
        # One merge per rank: every key's first version, then every key's second..., each
        # row with its own knowledge time (a live archive has one version per key: one merge).
        keys = [c for c in spec.primary_key if c in frame.columns]
        ranked = frame.with_columns(pl.col(known_at).rank("ordinal").over(keys).alias("__rank"))
        for (_,), part in sorted(ranked.partition_by("__rank", as_dict=True, maintain_order=True).items(),
                                 key=lambda kv: kv[0][0]):
            batch = validate(spec, part.drop(known_at, "__rank"), **options)
            if batch.num_rows != part.height:
                raise UsageError(f"{spec.key}: with known_at={known_at!r}, write rows whose keys are spelled "
                                 "the same way (the vintages of one row are ranked by key)", table=spec.key)
            stamps_us = part[known_at].dt.cast_time_unit("us").to_arrow()
            out.append((None, batch.append_column(ROW_KNOWN_AT, stamps_us)))
        return out
    try:
        when = known_at_instant(db, spec, known_at)
    except UsageError:
        if isinstance(known_at, str):
            raise UsageError(f"{spec.key}: known_at={known_at!r} is neither a column of the data nor a timestamp",
                             table=spec.key, value=known_at) from None
        raise
    assert when is not None
    return [(when, validate(spec, data, **options))]


def _has_chunks(db: Database, spec: TableSpec, frame: Any) -> bool:
    """Whether sealed chunks exist for the symbols and periods of ``frame`` (raw input)."""
    import polars as pl

    if not spec.sealable or spec.time_column not in frame.columns or "symbol" not in frame.columns:
        return False
    times = frame[spec.time_column]
    if not isinstance(times.dtype, pl.Datetime) or times.null_count() == len(times):
        return True  # unparsed times: take the exact (slower) path
    symbols = [str(v) for v in frame["symbol"].drop_nulls().unique().to_list()]
    periods = period_range(times.min().date(), times.max().date())  # type: ignore[union-attr]

    def run() -> bool:
        with db.connection() as conn:
            cur = conn.cursor()
            try:
                return bool(existing_chunks(cur, db.settings, spec, symbols, periods))
            finally:
                cur.close()

    # A read before the write transaction: run again if its pooled connection had died.
    return pooled_read(db, run, what=f"{spec.key} sealed chunks", table=spec.key)


def save_vintages(db: Database, spec: TableSpec, batches: list[tuple[dt.datetime | None, pa.Table]], *,
                  on_conflict: OnConflict, chunk_rows: int, tier: Tier) -> WriteResult:
    """Write ``batches`` in one transaction, each merged (staged) with its knowledge time
    (``None``: each row's own, in its ``__known_at`` column). The versioned merge strategy
    of the one write transaction (:func:`regime_io._write.transaction.run`): retries,
    partitions, the catalog and ``NOTIFY`` come from there, as for every write."""
    rows = sum(b.num_rows for _, b in batches)
    if rows == 0:
        return WriteResult(spec.key, 0, 0, 0, 0, "empty")
    spans = [r for r in (time_span(spec, b) for _, b in batches) if r is not None]
    span = (min(s[0] for s in spans), max(s[1] for s in spans)) if spans else None

    def merge(cur: Any, attempt: Attempt) -> Merged:
        inserted = updated = 0
        series: list[dict[str, Any]] = []
        to_rows = False  # whether any row went to the row tier (else the write was all chunks)
        for when, batch in batches:
            if batch.num_rows == 0:
                continue
            record_time_kind(cur, db, spec, time_kind(batch))
            per_row = when is None
            data = batch.drop_columns([ROW_KNOWN_AT]) if per_row else batch
            # Per-row vintages were checked to touch no sealed chunk; routing still takes
            # the period locks (a period sealed since then gets the group's latest time).
            at = pc.max(batch.column(ROW_KNOWN_AT)).as_py() if per_row else when
            rest, sealed = route_batch(cur, db.settings, spec, data, on_conflict=on_conflict,
                                       sealed_tier=tier == "sealed", known_at=at)
            inserted, updated = inserted + sealed.inserted, updated + sealed.updated
            series += sealed_series(spec, sealed)
            to_rows = to_rows or rest.num_rows > 0
            if rest.num_rows and per_row:
                ins, upd, merged = _merge_per_row(cur, db, spec, batch, rest, on_conflict)
            elif rest.num_rows:
                ins, upd, merged = stage_and_merge(cur, db, spec, [rest], on_conflict, chunk_rows, None,
                                                    rest.num_rows, known_at=when)
            else:
                continue
            inserted, updated = inserted + ins, updated + upd
            series += merged
        return Merged(rows, inserted, updated, series, "staged" if to_rows else "sealed")

    return run(db, spec, merge, span=span, kinds=[time_kind(b) for _, b in batches])


def _merge_per_row(cur: Any, db: Database, spec: TableSpec, batch: pa.Table, rest: pa.Table,
                   on_conflict: Any) -> tuple[int, int, list[dict[str, Any]]]:
    """Stage ``batch`` (with its ``__known_at`` column) and merge it, each row with its own
    knowledge time. ``rest`` is what routing left for the row tier (all of it, normally)."""

    if rest.num_rows != batch.num_rows:  # a period was sealed meanwhile: keep the rows routing left
        keys = {tuple(r.values()) for r in rest.select(list(spec.primary_key)).to_pylist()}
        mask = pa.array([tuple(r.values()) in keys for r in batch.select(list(spec.primary_key)).to_pylist()])
        batch = batch.filter(mask)
    stage = f"_rio_vstage_{spec.key}"
    columns = ", ".join(f"{quote_ident(c.name)} {c.wire_pg_type}" for c in spec.columns)
    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {quote_ident(stage)} ({columns}, "
                f"{quote_ident(ROW_KNOWN_AT)} TIMESTAMPTZ) ON COMMIT DELETE ROWS")
    cur.execute(f"TRUNCATE {quote_ident(stage)}")
    copy_into(cur, stage, batch, temporary=True)
    return versioned_merge(cur, db, spec, stage, None, on_conflict, per_row=True)
