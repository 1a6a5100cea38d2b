"""Sealing: moving old periods between the row tier and the sealed tier.

``seal`` moves every calendar month that ended before the cutoff from the row
table into its chunk table (``<table>_chunks``, one compressed Arrow IPC chunk per
``chunk_by`` key and month, see :mod:`regime_io._tiers.sealed_format`); ``unseal`` puts rows
back. Each move runs in one transaction per (table, month, group of series): the
month's period lock is taken exclusive (writers of that month wait a moment, readers
never do), the rows are read, encoded, inserted as chunks and deleted, and the
transaction commits: a killed server or connection leaves the month as it was, every
row in exactly one tier. Running it again finds nothing left to move (idempotent).

Example:
    >>> report = seal(db, "90d", dry_run=True)      # doctest: +SKIP
    >>> report.rows_moved, report.bytes_after               # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import adbc_driver_manager
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .._conn.copy import copy_into
from .._conn.driver_errors import move_error
from .._frames import constant
from .._sql.args import parse_range
from .._sql.names import chunk_table, qualified_table
from .._sql.quote import quote_ident
from ..config import parse_age
from ..errors import WIDEN, RegimeIOError, SchemaError, UsageError, WriteError
from ..tables import TABLES, TableSpec
from ..types import DateLike
from . import chunk_merge
from . import row_groups as groups
from . import sealed_format as chunks
from . import sealed_guard as guard
from . import sealed_store as store
from .changes import CHANGE_COLUMN

if TYPE_CHECKING:
    from .._conn.database import Database

__all__ = ["SealReport", "SealedPeriod", "repair_sealed", "seal", "sealed_overlaps", "unseal"]

log = logging.getLogger(__name__)


Action = Literal["seal", "unseal", "repair"]


AgeLike = dt.date | dt.datetime | dt.timedelta | str


# Rows moved per transaction: a month of 5,000 symbols is not one transaction, but
# every transaction holds whole series, so each series-month is in one tier at any time.
SEAL_BATCH_ROWS = 1_000_000


# Test hook: called inside each seal transaction, before its commit.
_before_commit: Any = None


@dataclass(frozen=True)
class SealedPeriod:
    """One table-month moved (or, in a dry run, to move) between the tiers.

    Attributes:
        table: the table key.
        period: the first day of the month.
        series: how many chunks (``chunk_by`` keys) it holds.
        rows: rows moved.
        bytes_before: bytes the rows took in their tier before the move (row tier: heap
            tuples with headers, indexes not counted, estimated from the mean tuple of
            the table's first 10,000 rows to seal; sealed tier: payload bytes).
        bytes_after: the same in the tier they moved to (0 in a dry run of a seal:
            nothing was encoded).
    """

    table: str
    period: dt.date
    series: int
    rows: int
    bytes_before: int
    bytes_after: int


@dataclass(frozen=True)
class SealReport:
    """What :func:`seal` or :func:`unseal` moved, per table and month."""

    action: Action
    periods: tuple[SealedPeriod, ...] = ()
    dry_run: bool = False
    cutoff: dt.datetime | None = None

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.table for p in self.periods))

    @property
    def rows_moved(self) -> int:
        return sum(p.rows for p in self.periods)

    @property
    def bytes_before(self) -> int:
        return sum(p.bytes_before for p in self.periods)

    @property
    def bytes_after(self) -> int:
        return sum(p.bytes_after for p in self.periods)

    def __iter__(self) -> Iterator[SealedPeriod]:
        return iter(self.periods)

    def __len__(self) -> int:
        return len(self.periods)

    def to_frame(self) -> pl.DataFrame:
        """One row per table and month."""
        return pl.DataFrame([vars(p) for p in self.periods],
                            schema={"table": pl.String(), "period": pl.Date(), "series": pl.Int64(),
                                    "rows": pl.Int64(), "bytes_before": pl.Int64(), "bytes_after": pl.Int64()})

    def __repr__(self) -> str:
        verb = {"seal": "seal", "unseal": "unseal", "repair": "merge into their chunks"}[self.action]
        head = (f"<SealReport{' (dry run)' if self.dry_run else ''}: {verb} {self.rows_moved:,} rows in "
                f"{len(self.periods)} table-month(s)")
        if self.cutoff is not None:
            head += f" before {self.cutoff:%Y-%m-%d %H:%M}"
        if self.periods and not self.dry_run:
            head += f", {self.bytes_before:,} -> {self.bytes_after:,} bytes"
        return head + ">"


# ---------------------------------------------------------------------------------------
# Arguments


def _specs(db: Database, tables: Iterable[str] | str | None) -> list[TableSpec]:
    """The sealable tables named, as the schema stores them (its price scale: chunks are
    encoded and decoded in the declared types)."""
    if tables is None:
        return [db.spec(k) for k, s in TABLES.items() if s.sealable]
    names = [tables] if isinstance(tables, str) else list(tables)
    specs = []
    for name in names:
        spec = db.spec(name)
        if not spec.sealable:
            sealable = ", ".join(k for k, s in TABLES.items() if s.sealable)
            raise UsageError(f"table {spec.key!r} has no sealed tier; sealable tables: {sealable}",
                             table=spec.key, value=name)
        if spec not in specs:
            specs.append(spec)
    return specs


def _symbols(symbols: Sequence[str] | str | None) -> list[str] | None:
    if symbols is None:
        return None
    values = [symbols] if isinstance(symbols, str) else list(symbols)
    for s in values:
        if not isinstance(s, str) or not s:
            raise UsageError(f"symbols: expected non-empty strings, got {s!r}", value=s)
    return values


def _cutoff(db: Database, cur: Any, older_than: AgeLike | None) -> dt.datetime | None:
    """The instant before which whole months are sealed (naive, storage zone), or None."""
    if older_than is None:
        age = db.settings.seal_after
        if age is None:
            return None
        older_than = age
    if isinstance(older_than, dt.datetime):
        if older_than.tzinfo is not None:
            from zoneinfo import ZoneInfo

            older_than = older_than.astimezone(ZoneInfo(db.settings.storage_timezone)).replace(tzinfo=None)
        return older_than
    if isinstance(older_than, dt.date):
        return dt.datetime.combine(older_than, dt.time())
    if isinstance(older_than, (str, dt.timedelta)):
        if isinstance(older_than, str) and len(older_than.strip()) == 10 and older_than.strip()[4] == "-":
            try:
                return dt.datetime.combine(dt.date.fromisoformat(older_than.strip()), dt.time())
            except ValueError:
                pass
        try:
            age = parse_age(older_than, name="older_than")
        except ValueError as err:
            raise UsageError(str(err), value=older_than) from None
        assert age is not None
        cur.execute("SELECT LOCALTIMESTAMP")
        row = cur.fetchone()
        return row[0] - age  # type: ignore[no-any-return]
    raise UsageError(f"older_than: expected a date, datetime, timedelta or an age such as '90d', "
                     f"got {type(older_than).__name__} ({older_than!r})", value=older_than)


# ---------------------------------------------------------------------------------------
# Seal


def seal(db: Database, older_than: AgeLike | None = None, *, tables: Iterable[str] | str | None = None,
                 symbols: Sequence[str] | str | None = None, dry_run: bool = False) -> SealReport:
    """Move every calendar month that ended before the cutoff into the sealed tier.

    See :meth:`regime_io.PostgreSQLIntegration.seal` for the parameters.
    """
    specs = _specs(db, tables)
    wanted = _symbols(symbols)
    with db.connection() as conn:
        cur = conn.cursor()
        try:
            cutoff = _cutoff(db, cur, older_than)
        finally:
            cur.close()
    if cutoff is None:
        log.info("seal: seal_after = off and no older_than given; nothing to do")
        return SealReport("seal", (), dry_run=dry_run)
    # Whole months only: those that end at or before the cutoff.
    limit = chunks.period_of(cutoff)
    limit_ts = dt.datetime.combine(limit, dt.time())
    done: list[SealedPeriod] = []
    for spec in specs:
        plan = _plan(db, spec, limit_ts, wanted)
        if plan:
            _check_stored_types(db, spec)
        if not dry_run:
            guard.extend_horizon_first(db, spec, plan)
        for period in sorted(plan):
            series = plan[period]
            if dry_run:
                done.append(SealedPeriod(spec.key, period, len(series), sum(n for n, _ in series.values()),
                                         sum(b for _, b in series.values()), 0))
                continue
            rows = bytes_before = bytes_after = n_series = 0
            parts = list(_groups(series))
            for group in parts:
                # A month sealed in one transaction, every symbol, reads and deletes its rows
                # by time alone: the key filter's hash join cost 0.17 s of the DELETE and
                # 0.15 s of the SELECT of a 417,600-row month (medians of 3: 0.48 -> 0.31 s,
                # 0.83 -> 0.68 s).
                planned = sum(series[k][0] for k in group)
                moved, count, before, after = _seal_group(
                    db, spec, period, group, row_bytes=sum(series[k][1] for k in group) / planned if planned else 0.0,
                    whole_period=wanted is None and len(parts) == 1)
                rows += moved
                bytes_before += before
                bytes_after += after
                n_series += count
            if rows:
                db.sealed_tables.add(spec.key)  # this process's reads of the table fetch chunks first (router)
                done.append(SealedPeriod(spec.key, period, n_series, rows, bytes_before, bytes_after))
                log.info("sealed %s %s: %d rows of %d series, %d -> %d bytes", spec.key, period, rows, n_series,
                         bytes_before, bytes_after)
    return SealReport("seal", tuple(done), dry_run=dry_run, cutoff=limit_ts)


def _plan(db: Database, spec: TableSpec, limit: dt.datetime,
          symbols: list[str] | None) -> dict[dt.date, dict[groups.SeriesKey, tuple[int, int]]]:
    """Per month before ``limit``: each series' row count and heap bytes in the row tier.

    The bytes (the report's "before") are the count times the mean heap tuple of the first
    :data:`_SIZED_ROWS` rows: summing every row's ``pg_column_size(t.*)`` built each row as
    a composite and doubled the plan's pass (1M bars: 0.44 -> 0.20 s of a ~3 s seal)."""
    key = ", ".join(f"t.{quote_ident(c)}" for c in spec.chunk_by)
    time_col = f"t.{quote_ident(spec.time_column or 'timestamp')}"
    params: list[Any] = [limit]
    where = f"{time_col} < $1"
    if symbols is not None:
        params.append(json.dumps(symbols))
        where += " AND t.symbol IN (SELECT jsonb_array_elements_text($2::jsonb))"
    table = qualified_table(spec, db.settings)
    sql = (f"SELECT {key}, {chunks.period_sql(time_col)} AS period, count(*)::int8 FROM {table} t WHERE {where} "
           f"GROUP BY {key}, period ORDER BY period, {key}")
    # heap tuple: data + 24-byte header + 4-byte line pointer
    # (Each row as the table's own row type: a subquery's anonymous record is sized otherwise.)
    sized = (f"SELECT coalesce(avg(pg_column_size(s.r)), 0)::float8 + 28 FROM (SELECT t AS r FROM {table} t "
             f"WHERE {where} LIMIT {_SIZED_ROWS}) s")
    out: dict[dt.date, dict[groups.SeriesKey, tuple[int, int]]] = {}
    with db.connection() as conn:
        cur = conn.cursor()
        try:
            cur.execute(sql, parameters=tuple(params))
            counted = cur.fetchall()
            per_row = 0.0
            if counted:
                cur.execute(sized, parameters=tuple(params))
                row = cur.fetchone()
                per_row = float(row[0]) if row else 0.0
            n = len(spec.chunk_by)
            for found in counted:
                rows = int(found[n + 1])
                out.setdefault(found[n], {})[tuple(found[:n])] = (rows, round(rows * per_row))
        finally:
            cur.close()
    return out


# Rows whose mean heap tuple sizes the plan's series (the report's bytes before a seal).
_SIZED_ROWS = 10_000


def _groups(series: dict[groups.SeriesKey, tuple[int, int]]) -> Iterator[list[groups.SeriesKey]]:
    group: list[groups.SeriesKey] = []
    rows = 0
    for key, (n, _) in series.items():
        if group and rows + n > SEAL_BATCH_ROWS:
            yield group
            group, rows = [], 0
        group.append(key)
        rows += n
    if group:
        yield group


def _seal_group(db: Database, spec: TableSpec, period: dt.date, keys: list[groups.SeriesKey], *,
                row_bytes: float | None = None, whole_period: bool = False) -> tuple[int, int, int, int]:
    """One transaction: rows of ``keys`` in ``period`` -> chunks, rows deleted. Returns
    the rows and series moved and the bytes before and after.

    ``row_bytes``: a row's heap bytes as the plan estimated them (the report's "before" is
    the rows moved times it, a series written after the plan included); measured here
    only when not given (a second pass over the rows: 0.3 s of a
    3.4 s seal of 1M bars). ``whole_period``: ``keys`` are every series the plan found in
    ``period``; the rows of every series are moved (under the period's exclusive lock no
    writer adds any, and a series written between the plan and the lock moves too).
    """
    settings = db.settings
    try:
        with db.connection() as conn:
            cur = conn.cursor()
            try:
                store.lock_periods(cur, settings, spec, [period], exclusive=True)
                rows = store.select_rows(cur, settings, spec, period, None if whole_period else keys)
                if rows.num_rows == 0:
                    return 0, 0, 0, 0  # sealed meanwhile by another process
                before = (round(rows.num_rows * row_bytes) if row_bytes is not None
                          else _heap_bytes(cur, db, spec, period, keys))
                by_series = groups.split_by_series(spec, rows)
                existing = store.fetch_for_update(cur, settings, spec, period, list(by_series))
                tables: dict[groups.SeriesKey, pa.Table] = {}
                for key, table in by_series.items():
                    merged = chunk_merge.merge(spec, existing.get(key), table, on_conflict="update",
                                               settings_table=chunk_table(spec, settings)).rows
                    tables[key] = merged
                after = store.write_chunks(cur, settings, spec, period, tables)
                # DELETE, never TRUNCATE: TRUNCATE is not MVCC-safe, and COPY (query) TO takes
                # its snapshot before it locks the partitions it reads, so a COPY-based reader
                # older than the seal saw the month's partition empty and its chunk not yet
                # there (a month missing in a seal/unseal loop beside readers). The space comes
                # back after the commit: TRUNCATE of an emptied partition no snapshot can
                # still read, else VACUUM + REINDEX (_schema.maintenance.analyze_moved;
                # tests/test_sealing_storage.py).
                deleted = store.delete_rows(cur, settings, spec, period, None if whole_period else list(by_series))
                if deleted != rows.num_rows:
                    raise WriteError(f"{spec.key}: sealing {period:%Y-%m} read {rows.num_rows} rows but deleted "
                                     f"{deleted}; rolled back", table=spec.key)
                if _before_commit is not None:
                    _before_commit(spec.key, period)
            finally:
                cur.close()
    except adbc_driver_manager.Error as err:
        if any(text in str(err) for text in store.NON_FINITE_CAST):
            found = _non_finite_error(db, spec, period, None if whole_period else keys)
            if found is not None:
                raise found from None
        raise move_error(err, db, spec, "seal") from err
    return rows.num_rows, len(by_series), before, after


def _non_finite_error(db: Database, spec: TableSpec, period: dt.date,
                      keys: list[groups.SeriesKey] | None) -> WriteError | None:
    """The seal of ``period`` met a 'NaN' or an infinity another tool stored in a decimal
    column (chunks hold exact decimals, which have neither): the error naming the earliest
    such row, looked up after the rollback (a seal that succeeds pays nothing for it)."""
    with db.connection() as conn:
        cur = conn.cursor()
        try:
            row = store.first_non_finite(cur, db.settings, spec, period, keys)
        finally:
            cur.close()
    if row is None:
        return None
    where = ", ".join(f"{k} {row[k]}" for k in (*spec.chunk_by, spec.time_column or "timestamp"))
    return WriteError(f"{spec.key}: cannot seal {period:%Y-%m}: column {row['column']} holds {row['value']!r} "
                      f"({where}), which the sealed tier's exact decimals cannot hold (stored by another tool: "
                      "regime_io's writers refuse it); correct or delete the row, then seal again. The rows "
                      "this seal was moving stay in the row tier, unchanged", table=spec.key, column=row["column"],
                      value=row["value"])


def _check_stored_types(db: Database, spec: TableSpec) -> None:
    """Refuse to move rows of a table whose decimal columns another tool altered: the seal
    reads each as its declared ``NUMERIC(p, s)`` (exact unscaled integers), which would
    round the digits of a column widened to more decimals (1.2346 in a NUMERIC(14,4)
    sealed as 1.23) or overflow on one widened to more. One catalog lookup per table."""
    with db.connection() as conn:
        cur = conn.cursor()
        try:
            stored = store.stored_decimal_types(cur, db.settings, spec)
        finally:
            cur.close()
    altered = [(name, kind) for name, kind in stored.items() if kind.lower() != spec.column(name).pg_type.lower()]
    if altered:
        name, kind = altered[0]
        raise SchemaError(f"{spec.key}: column {name} of table {db.settings.table_name(spec.key)!r} is {kind}, but "
                          f"regime_io declares {spec.column(name).pg_type}: sealing would round or refuse its values "
                          "(was it altered by another tool?); nothing was moved. Restore the declared type, or "
                          "widen the price columns with {fix} (docs/schema.md, \"Changing the price scale\")",
                          table=spec.key, column=name, value=kind, fixes=(WIDEN,))


def _heap_bytes(cur: Any, db: Database, spec: TableSpec, period: dt.date, keys: list[groups.SeriesKey]) -> int:
    time_col = quote_ident(spec.time_column or "timestamp")
    cur.execute(f"SELECT coalesce(sum(pg_column_size(t.*) + 28), 0)::int8 FROM {qualified_table(spec, db.settings)} t "
                f"WHERE t.{time_col} >= $1 AND t.{time_col} < $2 AND {store._key_filter(spec, keys, '$3', 't')}",
                parameters=(dt.datetime.combine(period, dt.time()),
                            dt.datetime.combine(chunks.next_period(period), dt.time()),
                            store._keys_json(spec, keys)))
    row = cur.fetchone()
    return int(row[0]) if row else 0


# ---------------------------------------------------------------------------------------
# Unseal


def unseal(db: Database, start: DateLike, end: DateLike, *,
           tables: Iterable[str] | str | None = None,
           symbols: Sequence[str] | str | None = None) -> SealReport:
    """Put the sealed months overlapping ``[start, end]`` back into the row tier.

    See :meth:`regime_io.PostgreSQLIntegration.unseal`.
    """

    specs = _specs(db, tables)
    wanted = _symbols(symbols)
    try:
        rng = parse_range(start, end, timezone=db.settings.storage_timezone)
    except RegimeIOError as err:
        raise UsageError(err.message, value=err.value) from None
    first = chunks.period_of(rng.start)
    done: list[SealedPeriod] = []
    for spec in specs:
        for period, keys in _sealed(db, spec, first, rng.end, wanted, end_exclusive=rng.end_exclusive).items():
            moved, before, after = _unseal_period(db, spec, period, keys)
            if moved:
                done.append(SealedPeriod(spec.key, period, len(keys), moved, before, after))
    return SealReport("unseal", tuple(done))


def _sealed(db: Database, spec: TableSpec, first: dt.date, end: dt.datetime,
            symbols: list[str] | None, *, end_exclusive: bool = False) -> dict[dt.date, list[groups.SeriesKey]]:
    key = ", ".join(quote_ident(c) for c in spec.chunk_by)
    params: list[Any] = [first, end]
    # A date-only end ("2024-01-31") is the exclusive 2024-02-01: February is not asked for.
    where = f"period_start >= $1 AND period_start {'<' if end_exclusive else '<='} $2"
    if symbols is not None:
        params.append(json.dumps(symbols))
        where += " AND symbol IN (SELECT jsonb_array_elements_text($3::jsonb))"
    out: dict[dt.date, list[groups.SeriesKey]] = {}
    with db.connection() as conn:
        cur = conn.cursor()
        try:
            cur.execute(f"SELECT {key}, period_start FROM {chunk_table(spec, db.settings)} WHERE {where} "
                        f"ORDER BY period_start, {key}", parameters=tuple(params))
            for row in cur.fetchall():
                out.setdefault(row[-1], []).append(tuple(row[:-1]))
        finally:
            cur.close()
    return out


def _unseal_period(db: Database, spec: TableSpec, period: dt.date,
                   keys: list[groups.SeriesKey]) -> tuple[int, int, int]:

    settings = db.settings
    start = dt.datetime.combine(period, dt.time())
    db.partitions.ensure(db.pool, settings, spec, start,
                         dt.datetime.combine(chunks.next_period(period), dt.time()) - dt.timedelta(microseconds=1))
    try:
        with db.connection() as conn:
            cur = conn.cursor()
            try:
                store.lock_periods(cur, settings, spec, [period], exclusive=True)
                cur.execute("SELECT coalesce(sum(octet_length(payload)), 0)::int8 "
                            f"FROM {chunk_table(spec, settings)} t WHERE t.period_start = $1 "
                            f"AND {store._key_filter(spec, keys, '$2', 't')}",
                            parameters=(period, store._keys_json(spec, keys)))
                row = cur.fetchone()
                before = int(row[0]) if row else 0
                decoded = store.fetch_for_update(cur, settings, spec, period, keys)
                parts = [_with_key(spec, key, table) for key, table in decoded.items()]
                if not parts:
                    return 0, 0, 0
                rows = pa.concat_tables(parts)
                # Chunks out before rows in: the sealed-month guard (regime_io._tiers.sealed_guard)
                # then sees no chunk, also where it does not see this transaction's setting (Citus workers).
                store.delete_chunks(cur, settings, spec, period, list(decoded))
                # change_xid NULL: moving rows between tiers is no change for the live tail.
                copy_into(cur, settings.table_name(spec.key), rows.append_column(
                    CHANGE_COLUMN, pa.nulls(rows.num_rows, pa.int64())), db_schema_name=settings.schema)
                after = _heap_bytes(cur, db, spec, period, list(decoded))
            finally:
                cur.close()
    except adbc_driver_manager.Error as err:
        raise move_error(err, db, spec, "unseal") from err
    return rows.num_rows, before, after


def _with_key(spec: TableSpec, key: groups.SeriesKey, payload: pa.Table) -> pa.Table:
    """A decoded chunk with its chunk-key columns added, in declared column order."""

    schema = spec.arrow_schema()
    arrays = []
    for field in schema:
        if field.name in spec.chunk_by:
            arrays.append(constant(key[spec.chunk_by.index(field.name)], payload.num_rows, field.type))
        else:
            arrays.append(payload.column(field.name))
    return pa.Table.from_arrays(arrays, schema=schema)


# ---------------------------------------------------------------------------------------
# Repair: rows other tools wrote into sealed months before the guard existed


def sealed_overlaps(db: Database, spec: TableSpec) -> dict[dt.date, dict[groups.SeriesKey, int]]:
    """Per month, the sealed series that also have rows in the row tier, with those rows'
    count. Empty on a healthy schema: a sealed series-month has no rows, and the guard
    (:mod:`regime_io._tiers.sealed_guard`) refuses other tools' rows there; rows written
    before the guard existed (schema version 7), or while a seal of that month ran, show
    here. One primary-key probe of the row table per chunk."""
    if not spec.sealable:
        return {}
    settings = db.settings
    key = ", ".join(f"c.{quote_ident(c)}" for c in spec.chunk_by)
    match = " AND ".join(f"t.{quote_ident(c)} = c.{quote_ident(c)}" for c in spec.chunk_by)
    time_col = f"t.{quote_ident(spec.time_column or 'timestamp')}"
    out: dict[dt.date, dict[groups.SeriesKey, int]] = {}
    with db.connection() as conn:
        cur = conn.cursor()
        try:
            cur.execute(f"SELECT {key}, c.period_start, count(*)::int8 FROM {chunk_table(spec, settings)} c "
                        f"JOIN {qualified_table(spec, settings)} t ON {match} AND {time_col} >= c.period_start "
                        f"AND {time_col} < (c.period_start + interval '1 month') "
                        f"GROUP BY {key}, c.period_start ORDER BY c.period_start, {key}")
            n = len(spec.chunk_by)
            for row in cur.fetchall():
                out.setdefault(row[n], {})[tuple(row[:n])] = int(row[n + 1])
        finally:
            cur.close()
    return out


def repair_sealed(db: Database, *, tables: Iterable[str] | str | None = None, dry_run: bool = False) -> SealReport:
    """Merge rows found in sealed series-months into their chunks, as a seal would.

    See :meth:`regime_io.PostgreSQLIntegration.repair_sealed`.
    """
    done: list[SealedPeriod] = []
    for spec in _specs(db, tables):
        overlaps = sealed_overlaps(db, spec)
        if overlaps:
            _check_stored_types(db, spec)
        for period, series in overlaps.items():
            if dry_run:
                done.append(SealedPeriod(spec.key, period, len(series), sum(series.values()), 0, 0))
                continue
            moved, count, before, after = _seal_group(db, spec, period, list(series))
            if moved:
                log.info("repair_sealed: %s %s: %d row(s) of %d sealed series merged into their chunks",
                         spec.key, period, moved, count)
                done.append(SealedPeriod(spec.key, period, count, moved, before, after))
    return SealReport("repair", tuple(done), dry_run=dry_run)


# ---------------------------------------------------------------------------------------
# Retention


def clean_chunks(db: Database, spec: TableSpec, cutoff: dt.datetime, *, dry_run: bool,
                 removed: list[tuple[str, str, int]] | None = None) -> tuple[int, int]:
    """Drop sealed rows older than ``cutoff``: whole chunks of months that ended before it,
    and the older rows of the month that holds it (re-encoded under the period lock).
    Returns (chunks dropped, rows removed); ``removed`` collects the rows removed per
    series ``(symbol, timeframe or '', n)`` for the series catalog."""
    if not spec.sealable:
        return 0, 0
    settings = db.settings
    table = chunk_table(spec, settings)
    boundary = chunks.period_of(cutoff)
    with db.connection() as conn:
        cur = conn.cursor()
        try:
            cur.execute(f"SELECT count(*)::int8, coalesce(sum(row_count), 0)::int8 FROM {table} "
                        "WHERE period_start < $1", parameters=(boundary,))
            row = cur.fetchone()
            dropped, gone = (int(row[0]), int(row[1])) if row else (0, 0)
            if not dry_run and dropped:
                store.lock_periods(cur, settings, spec, _months_before(cur, table, boundary), exclusive=True)
                timeframe = "timeframe" if "timeframe" in spec.chunk_by else "''::text"
                cur.execute(f"WITH d AS (DELETE FROM {table} WHERE period_start < $1 RETURNING symbol, "
                            f"{timeframe} AS timeframe, row_count) SELECT symbol, timeframe, sum(row_count)::int8 "
                            "FROM d GROUP BY 1, 2", parameters=(boundary,))
                if removed is not None:
                    removed += [(r[0], r[1], int(r[2])) for r in cur.fetchall()]
            if cutoff > dt.datetime.combine(boundary, dt.time()):
                if not dry_run:
                    store.lock_periods(cur, settings, spec, [boundary], exclusive=True)
                key_cols = ", ".join(quote_ident(c) for c in spec.chunk_by)
                cur.execute(f"SELECT {key_cols} FROM {table} WHERE period_start = $1 AND first_ts < $2",
                            parameters=(boundary, cutoff))
                keys = [tuple(r) for r in cur.fetchall()]
                decoded = store.fetch_for_update(cur, settings, spec, boundary, keys)
                kept: dict[groups.SeriesKey, pa.Table] = {}
                for key, payload in decoded.items():
                    ts = payload.column(spec.time_column or "timestamp")
                    keep = payload.filter(pc.greater_equal(ts, pa.scalar(cutoff, ts.type)))
                    gone += payload.num_rows - keep.num_rows
                    if removed is not None and payload.num_rows > keep.num_rows:
                        series = dict(zip(spec.chunk_by, key, strict=True))
                        removed.append((series["symbol"], series.get("timeframe", ""),
                                        payload.num_rows - keep.num_rows))
                    kept[key] = _with_key(spec, key, keep)
                if not dry_run:
                    store.write_chunks(cur, settings, spec, boundary, kept)
        finally:
            cur.close()
    return dropped, gone


def _months_before(cur: Any, table: str, boundary: dt.date) -> list[dt.date]:
    cur.execute(f"SELECT DISTINCT period_start FROM {table} WHERE period_start < $1", parameters=(boundary,))
    return [r[0] for r in cur.fetchall()]
