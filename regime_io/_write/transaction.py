"""The write transaction: one body for batch and streamed writes, with retries."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import adbc_driver_manager
import pyarrow as pa
import pyarrow.compute as pc

from .._conn.copy import copy_into, session_table
from .._conn.driver_errors import lost_before_commit, write_error
from .._conn.partitions import ANALYZE_AFTER_ROWS, analyze_fresh_partitions
from .._conn.pipeline import SMALL_BATCH_ROWS, NeedsArrow, PsycopgCursor, ask, small_write
from .._schema.timezones import check_time_kind, record_time_kind, time_kind
from .._sql.names import qualified_table
from .._sql.quote import quote_ident
from .._tiers import catalog, changes
from .._tiers.chunk_merge import MergeCounts
from .._tiers.knowledge import versioned_merge
from .._tiers.row_groups import time_span
from .._tiers.rows import merge_sql, merged_counts, stage_name
from .._tiers.sealed_store import route_batch, route_staged
from ..errors import ServerUnavailableError, UsageError, ValidationError, WriteError
from ..tables import TableSpec, table_spec
from ..types import OnConflict, Tier
from .validate import validate

if TYPE_CHECKING:
    from .._conn.database import Database

__all__ = ["WriteResult"]

log = logging.getLogger(__name__)


WriteMethod = Literal["copy", "staged", "sealed", "empty", "disabled"]


Progress = Callable[[int, "int | None"], None]


_MAX_ATTEMPTS = 4


_RETRY_SQLSTATES = ("40P01", "40001")  # deadlock detected, serialization failure


@dataclass(frozen=True)
class WriteResult:
    """What a write did. ``inserted + updated + unchanged == rows``.

    ``unchanged`` counts rows that already existed with the same values (or were skipped
    with ``on_conflict="ignore"``).
    """

    table: str
    rows: int
    inserted: int
    updated: int
    unchanged: int
    method: WriteMethod
    seconds: float = 0.0
    trimmed: int = 0

    @property
    def written(self) -> int:
        """Rows inserted or updated."""
        return self.inserted + self.updated

    def __int__(self) -> int:
        return self.written

    @classmethod
    def disabled(cls, table: str) -> WriteResult:
        return cls(table=table_spec(table).key, rows=0, inserted=0, updated=0, unchanged=0, method="disabled")

    def __str__(self) -> str:
        trimmed = f", {self.trimmed} trimmed" if self.trimmed else ""
        rows = "1 row" if self.rows == 1 else f"{self.rows} rows"
        return (f"{self.table}: {rows} -> {self.inserted} inserted, {self.updated} updated, "
                f"{self.unchanged} unchanged{trimmed} ({self.method}, {self.seconds:.3f}s)")


@dataclass
class Merged:
    """What one attempt's merge strategy did, before the commit."""

    rows: int
    inserted: int
    updated: int
    series: list[dict[str, Any]]  # the series catalog's counts (regime_io._tiers.catalog.record_writes)
    method: WriteMethod
    trimmed: Callable[[], int] | None = None  # the rolling trim's count, read after the commit


@dataclass
class Attempt:
    """State one strategy carries from a failed attempt to the next."""

    small: bool  # pipelined psycopg (a few rows) rather than ADBC
    force_staged: bool = False  # a probed COPY met a row committed meanwhile: merge instead
    copied: bool = False  # this attempt COPYed straight in on the probe's word
    conn: Any = None  # the attempt's connection (streamed writes create partitions on it)


Strategy = Callable[[Any, Attempt], Merged]


def run(db: Database, spec: TableSpec, merge: Strategy, *, span: tuple[dt.datetime, dt.datetime] | None,
        kinds: Iterable[str | None] = (), small: bool = False, replayable: bool = True) -> WriteResult:
    """The one write transaction: every write (batch, stream, ``known_at=``) runs here.

    ``merge(cur, attempt)`` is the write's merge strategy (plain, streamed, versioned): it
    puts the rows in place inside the open transaction and says what it did. Around it,
    written once: partitions for ``span`` (in their own short transaction, so the parent's
    ACCESS EXCLUSIVE lock is not held for the write: docs/pitfalls), the time-kind check,
    the series catalog, ``NOTIFY`` for tails (delivered at commit), the retries (deadlock,
    serialization failure, a partition dropped by cleanup, a connection lost before the
    commit: each re-runs the whole call, so nothing is half-written) and, after the
    commit, statistics for partitions a bulk write filled.

    ``replayable=False`` (a stream: its chunks are consumed) turns the retries off; its
    partitions are created inside the transaction, so a failure forgets them.
    """
    started = time.perf_counter()
    if span is not None:
        try:
            db.partitions.ensure(db.pool, db.settings, spec, *span)
        except adbc_driver_manager.Error as err:
            raise write_error(err, db, spec) from err
    for kind in {k for k in kinds if k is not None}:
        # The recorded kinds are read (once per Database) on a lookup connection: before
        # the write takes one, or a pool of max_connections = 1 would wait on itself.
        check_time_kind(db, spec, aware=kind == "aware", what=f"save to {spec.key}")
    attempt = Attempt(small=small)
    retried_lost = False
    for number in range(1, _MAX_ATTEMPTS + 1):
        attempt.copied = False
        try:
            # A few rows: the same statements over psycopg, pipelined: two waits (regime_io._conn.pipeline).
            with small_write(db) if attempt.small else db.connection() as conn:
                cur: Any = conn if isinstance(conn, PsycopgCursor) else conn.cursor()
                attempt.conn = conn
                try:
                    merged = merge(cur, attempt)
                    catalog.record_writes(cur, db.settings, spec, merged.series)
                    if merged.inserted or merged.updated:
                        changes.notify(cur, db.settings, spec)  # delivered at commit (regime_io._tiers.changes)
                finally:
                    cur.close()
        except NeedsArrow:
            # The write needs what only ADBC gives (sealed chunks fetched as Arrow, a COPY):
            # run it again over ADBC.
            log.debug("%s: a small write needs ADBC; running it again there", spec.key)
            attempt.small = False
            continue
        except adbc_driver_manager.Error as err:
            if not replayable:
                db.partitions.forget()  # partitions created in this transaction were rolled back with it
                raise write_error(err, db, spec) from err
            if attempt.copied and getattr(err, "sqlstate", None) == "23505":
                # The probe found no stored row, yet a row of the batch now exists: a
                # writer committed it in between. The copy failed and the transaction
                # rolled back; run the call again staged, which merges. Raised by the
                # COPY itself, or (small writes, pipelined) by the next fetch or the commit.
                log.info("%s: rows appeared concurrently; re-running the write staged", spec.key)
                attempt.force_staged = True
                continue
            if number < _MAX_ATTEMPTS and _retryable(err, db, spec, span):
                time.sleep(0.05 * number)
                continue
            raise write_error(err, db, spec) from err
        except ServerUnavailableError as err:
            # The connection died before the commit: typically a server restart faster than
            # health_check_interval, so an idle connection was handed out unpinged. Nothing
            # was written and the pool now checks every idle connection: run the call once
            # more (if the server is really down, connecting fails after the configured retries).
            if replayable and number < _MAX_ATTEMPTS and not retried_lost and lost_before_commit(err):
                log.info("%s: the connection died before the commit; re-running the write once", spec.key)
                retried_lost = True
                continue
            if not replayable:
                db.partitions.forget()
            raise
        except BaseException:
            if not replayable:
                db.partitions.forget()
            raise
        if merged.rows >= ANALYZE_AFTER_ROWS and merged.method != "sealed":  # sealed: no row partition filled
            analyze_fresh_partitions(db.pool, db.settings, spec)  # committed: statistics for new partitions
        result = WriteResult(spec.key, merged.rows, merged.inserted, merged.updated,
                             merged.rows - merged.inserted - merged.updated, merged.method,
                             time.perf_counter() - started, merged.trimmed() if merged.trimmed else 0)
        log.debug("%s", result)
        return result
    raise WriteError(f"{spec.key}: gave up after {_MAX_ATTEMPTS} attempts (deadlocks or concurrent "
                     "partition changes); nothing was written", table=spec.key)


def save_batch(db: Database, spec: TableSpec, batch: pa.Table, *, on_conflict: OnConflict, chunk_rows: int,
               progress: Progress | None, trim: list[dict[str, str]] | None = None,
               tier: Tier = "auto") -> WriteResult:
    """A validated batch: COPY straight in when an index probe says no stored row can
    collide, else staged and merged; rows of sealed series-months merge into their chunks."""
    if batch.num_rows == 0:
        return WriteResult(spec.key, 0, 0, 0, 0, "empty")
    span = time_span(spec, batch)
    kind = time_kind(batch)

    def merge(cur: Any, attempt: Attempt) -> Merged:
        record_time_kind(cur, db, spec, kind)
        probe = not (attempt.force_staged or tier == "sealed")
        # The collision probe: on a pipelined small write it goes out before the sealed-tier
        # routing, so that both travel in one round trip, and covers the whole batch (a
        # superset of the rows left for the row tier, so "no stored row" holds for those
        # too; a row stored in between fails the copy: see run()). On ADBC each statement
        # is a round trip of its own: the probe waits for the routing and covers only the
        # rows left, or is not sent when none are (a restatement of sealed months: 1.3 ms
        # of 48 saved).
        pipelined = isinstance(cur, PsycopgCursor)
        collides = _probe(cur, db, spec, batch, span, on_conflict) if probe and pipelined else None
        # Rows of sealed series-months merge into their chunks (docs/schema.md).
        rest, sealed = route_batch(cur, db.settings, spec, batch, on_conflict=on_conflict,
                                   sealed_tier=tier == "sealed")
        if probe and not pipelined and rest.num_rows:
            collides = _probe(cur, db, spec, rest, span if rest is batch else time_span(spec, rest), on_conflict)
        inserted, updated = sealed.inserted, sealed.updated
        staged = rest.num_rows > 0 and (collides is None or collides())
        series = sealed_series(spec, sealed)
        if rest.num_rows == 0:
            method: WriteMethod = "sealed"
        elif staged:
            ins, upd, merged = stage_and_merge(cur, db, spec, [rest], on_conflict, chunk_rows,
                                                progress, rest.num_rows)
            inserted, updated, method = inserted + ins, updated + upd, "staged"
            series += merged
        else:
            attempt.copied = on_conflict != "error"
            ins, upd = _copy(cur, db, spec, rest, chunk_rows, progress)
            inserted, updated, method = inserted + ins, updated + upd, "copy"
            series += catalog.series_counts(spec, rest)
        trimmed = _trim(cur, db, spec, trim) if trim else None
        return Merged(batch.num_rows, inserted, updated, series, method, trimmed)

    return run(db, spec, merge, span=span, kinds=[kind], small=batch.num_rows <= SMALL_BATCH_ROWS)


def save_stream(db: Database, spec: TableSpec, chunks: Iterator[Any], *, on_conflict: OnConflict, chunk_rows: int,
                progress: Progress | None, options: dict[str, Any]) -> WriteResult:
    """Stream chunks into the staging table inside one transaction, then merge once.

    Each chunk is validated before it is sent; a bad chunk rolls back everything before it.
    Partitions are created after staging (the span is known only then), inside the same
    transaction, so the parent's lock is held only for the final merge.
    """

    def merge(cur: Any, attempt: Attempt) -> Merged:
        rows = 0
        span: list[dt.datetime] = []
        kinds: set[str | None] = set()

        def validated() -> Iterator[pa.Table]:
            nonlocal rows
            offset = 0
            for chunk in chunks:
                try:
                    batch = validate(spec, chunk, **options)
                except ValidationError as err:
                    if err.row is not None:  # report the row in the whole stream, not the chunk
                        err.row += offset
                        where = f" [row {err.row} of the stream]"
                        err.message, err.cli_message = err.message + where, err.cli_message + where
                        err.args = (err.message,)
                    raise
                offset += batch.num_rows
                rows += batch.num_rows
                kinds.add(time_kind(batch))
                if len(kinds - {None}) > 1:
                    raise UsageError(f"{spec.key}: the stream mixes zone-aware and naive timestamps; make them one "
                                     "kind (see docs/timezones.md)", table=spec.key, column=spec.time_column)
                record_time_kind(cur, db, spec, time_kind(batch))
                rng = time_span(spec, batch)
                if rng:
                    span[:] = [min([rng[0], *span[:1]]), max([rng[1], *span[1:]])]
                yield batch

        sealed_part: list[MergeCounts] = []

        def before_merge() -> None:
            if span:
                db.partitions.ensure(db.pool, db.settings, spec, span[0], span[1], conn=attempt.conn)
                sealed_part[:] = [route_staged(cur, db.settings, spec, stage_name(spec), span[0], span[1],
                                               on_conflict=on_conflict)]

        inserted, updated, series = stage_and_merge(cur, db, spec, validated(), on_conflict, chunk_rows,
                                                     progress, None, before_merge=before_merge)
        if sealed_part:
            series += sealed_series(spec, sealed_part[0])
            inserted, updated = inserted + sealed_part[0].inserted, updated + sealed_part[0].updated
        return Merged(rows, inserted, updated, series, "staged" if rows else "empty")

    return run(db, spec, merge, span=None, replayable=False)


# -- SQL ----------------------------------------------------------------------------------


def _probe(cur: Any, db: Database, spec: TableSpec, batch: pa.Table, span: tuple[dt.datetime, dt.datetime] | None,
           on_conflict: OnConflict) -> Callable[[], bool]:
    """Could any row of the batch collide with a stored row? One index probe decides;
    sent now, its answer read when the returned function is called."""
    if any(c.kind == "json" for c in spec.columns):
        return lambda: True  # JSONB travels as text and needs the staging cast
    if on_conflict == "error":
        return lambda: False  # COPY straight in; a collision is the error the caller asked for
    if span is None:
        return lambda: True
    where: list[str] = []
    params: list[Any] = []
    for name in spec.primary_key:
        col = spec.column(name)
        if col.kind == "text":
            values = pc.unique(batch.column(name)).to_pylist()
            params.append(json.dumps(values))
            where.append(f"{quote_ident(name)} = ANY(ARRAY(SELECT jsonb_array_elements_text(${len(params)}::jsonb)))")
    params.extend(span)
    where.append(f"{quote_ident(spec.time_column)} BETWEEN ${len(params) - 1} AND ${len(params)}")  # type: ignore[arg-type]
    rows = ask(cur, f"SELECT EXISTS (SELECT 1 FROM {qualified_table(spec, db.settings)} WHERE {' AND '.join(where)})",
               tuple(params))
    return lambda: bool(rows()[0][0])


def _chunks(batch: pa.Table, chunk_rows: int) -> Iterable[pa.Table]:
    for offset in range(0, batch.num_rows, chunk_rows):
        yield batch.slice(offset, chunk_rows)


def _copy(cur: Any, db: Database, spec: TableSpec, batch: pa.Table, chunk_rows: int,
          progress: Progress | None) -> tuple[int, int]:
    done = 0
    for chunk in _chunks(batch, chunk_rows):
        copy_into(cur, db.settings.table_name(spec.key), chunk, db_schema_name=db.settings.schema)
        done += chunk.num_rows
        if progress:
            progress(done, batch.num_rows)
    return done, 0


def stage_and_merge(cur: Any, db: Database, spec: TableSpec, batches: Iterable[pa.Table], on_conflict: OnConflict,
                     chunk_rows: int, progress: Progress | None, total: int | None,
                     before_merge: Callable[[], None] | None = None,
                     known_at: dt.datetime | None = None) -> tuple[int, int, list[dict[str, Any]]]:
    """COPY ``batches`` into the session's staging table and merge it into the table.

    Returns the inserted and updated counts and, per series that gained rows, the
    series catalog's counts (see :func:`regime_io._tiers.catalog.record_writes`).
    """
    stage = stage_name(spec)
    session_table(cur, spec, stage)
    done = 0
    for batch in batches:
        for chunk in _chunks(batch, chunk_rows):
            copy_into(cur, stage, chunk, temporary=True)
            done += chunk.num_rows
            if progress:
                progress(done, total)
    if done == 0:
        return 0, 0, []
    if before_merge:
        before_merge()
    if spec.key in db.settings.history_tables and (on_conflict == "update" or known_at is not None):
        return versioned_merge(cur, db, spec, stage, known_at, on_conflict)
    cur.execute(merge_sql(spec, db, on_conflict))
    return merged_counts(cur.fetchall())


def sealed_series(spec: TableSpec, sealed: MergeCounts) -> list[dict[str, Any]]:
    """The series catalog's counts of the rows a write merged into sealed chunks."""
    if spec.key not in catalog.SERIES_TABLES or not sealed.series:
        return []
    cols = catalog.series_columns(spec)
    where = [spec.chunk_by.index(c) for c in cols]
    out: list[dict[str, Any]] = []
    for key, (n, first, last) in sealed.series.items():
        timeframe = key[where[1]] if len(where) == 2 else ""
        out.append({"symbol": key[where[0]], "timeframe": timeframe, "first_ts": first.replace(tzinfo=None).isoformat(),
                    "last_ts": last.replace(tzinfo=None).isoformat(), "n": int(n)})
    return out


def _trim(cur: Any, db: Database, spec: TableSpec, trim: list[dict[str, str]]) -> Callable[[], int]:
    """Delete each symbol's rows older than its cutoff and subtract them from the series
    catalog, in one statement; returns a function giving the number of rows deleted.

    One statement, its count read later: a pipelined small write sends it with the commit
    instead of waiting for the counts (~0.3-0.5 ms of a rolling save's ~4). The cutoff is
    each symbol's newest row of this batch minus the window, so every symbol keeps a row
    (no empty catalog rows to drop).
    """
    target = qualified_table(spec, db.settings)
    returning, counts = catalog.removed_sql(spec)
    time = quote_ident(spec.time_column or "timestamp")
    update = catalog.subtract_sql(db.settings, spec, "x", table_key="$2", since="x.cutoff")
    rows = ask(
        cur,
        f"WITH gone AS (DELETE FROM {target} AS t "
        "USING jsonb_to_recordset($1::jsonb) AS c(symbol text, cutoff timestamp) "
        f"WHERE t.symbol = c.symbol AND t.{time} < c.cutoff RETURNING {returning}, c.cutoff), "
        f"x AS (SELECT {counts}, cutoff FROM gone GROUP BY 1, 2, 4), kept AS ({update}) "
        "SELECT COALESCE(sum(n), 0) FROM x",
        (json.dumps(trim), spec.key),
    )
    return lambda: int(rows()[0][0])


# -- errors -------------------------------------------------------------------------------


def _retryable(err: adbc_driver_manager.Error, db: Database, spec: TableSpec,
               span: tuple[dt.datetime, dt.datetime] | None) -> bool:
    sqlstate = getattr(err, "sqlstate", None) or ""
    if sqlstate in _RETRY_SQLSTATES:
        log.info("%s: %s; retrying the whole write", spec.key, "deadlock" if sqlstate == "40P01" else "serialization")
        return True
    if sqlstate == "23514" and "no partition" in str(err):
        # Another process dropped a partition our cache believed in (cleanup): rebuild it.
        db.partitions.forget()
        if span is not None:
            db.partitions.ensure(db.pool, db.settings, spec, *span)
        return True
    return False
