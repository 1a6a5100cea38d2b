"""Maintenance: retention (``cleanup_old_data``) and partition listing.

Retention works partition by partition. For each time-series table the cutoff is the
server's clock in the storage time zone minus the table's retention (``[RETENTION]``
in the configuration, else ``days_to_keep``). Then:

* every partition whose upper bound is at or before the cutoff is detached and dropped
  whole: no row-by-row delete, no bloat, no long lock;
* only the boundary partition (the one holding the cutoff) is deleted from, row by row;
* ``optimization_results`` (not partitioned) loses the rows whose ``created_at`` is older
  than the cutoff: a result is as old as the run that produced it, not as old as the
  market period it describes (a backtest of 2019 run yesterday is fresh).

Partitions are detached with ``ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY``
(PostgreSQL 14+), which takes only a SHARE UPDATE EXCLUSIVE lock on the parent: readers
and writers go on while it runs. It cannot run inside a transaction block, so cleanup
runs its statements on a pooled primary connection switched to autocommit for the
duration. When the concurrent form is not allowed (the table has a DEFAULT partition, or
Citus distributes it) the plain ``DETACH PARTITION`` is used under a ``lock_timeout``:
it holds ACCESS EXCLUSIVE on the parent only for the catalog update. The detached
table is counted, then dropped: a dropped partition's row count is exact. See
``docs/maintenance.md``.

Example:
    >>> from regime_io._schema.maintenance import cleanup_old_data     # doctest: +SKIP
    >>> report = cleanup_old_data(db, 90, dry_run=True)         # doctest: +SKIP
    >>> report.rows_removed, report.partitions_dropped         # doctest: +SKIP
    (1_234_567, 3)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import adbc_driver_manager
import polars as pl
import psycopg
from adbc_driver_manager.dbapi import Connection

from .._conn.driver_errors import is_connection_error, maintenance_error
from .._sql.names import chunk_table
from .._sql.quote import literal, qualified, quote_ident
from .._tiers import catalog, changes
from .._tiers import sealed_format as chunks
from .._tiers.knowledge import clean_history
from .._tiers.sealing import SealReport, clean_chunks
from ..errors import INITIALIZE, RegimeIOError, SchemaError, UsageError, ValidationError
from ..tables import TABLES, TableSpec, table_spec

if TYPE_CHECKING:
    from .._conn.database import Database

__all__ = ["CleanupReport", "TableCleanup", "cleanup_old_data", "list_partitions"]

log = logging.getLogger(__name__)


# Session advisory lock namespace for cleanup ("RCLN"): two cleanups of one schema never
# detach the same partition at once.
_CLEANUP_LOCK = 0x5243_4C4E


# How long the blocking (non-concurrent) detach may wait for its ACCESS EXCLUSIVE lock
# before giving up; waiting longer would queue every reader of the table behind it.
BLOCKING_LOCK_TIMEOUT = "5s"


_BOUND = re.compile(r"FOR VALUES FROM \((?P<lo>[^)]*)\) TO \((?P<hi>[^)]*)\)")


PARTITION_SCHEMA = pl.Schema({
    "table": pl.String(),
    "partition": pl.String(),
    "from": pl.Datetime("us"),
    "to": pl.Datetime("us"),
    "estimated_rows": pl.Int64(),
    "sealed_rows": pl.Int64(),
    "total_bytes": pl.Int64(),
})


# ---------------------------------------------------------------------------------------
# Reports


@dataclass(frozen=True)
class TableCleanup:
    """What cleanup removed (or, in a dry run, would remove) from one table.

    Attributes:
        table: the table key (``"market_data"``...).
        name: the physical table name.
        column: the column compared with the cutoff (``timestamp`` or ``created_at``).
        cutoff: rows with ``column < cutoff`` are removed (naive, storage time zone).
        dropped: names of the partitions dropped whole.
        rows_dropped: rows that were in those partitions.
        rows_deleted: rows deleted one by one (boundary partition, unpartitioned table).
        chunks_dropped: sealed chunks (series-months) dropped whole.
        sealed_rows_removed: sealed rows removed (dropped chunks, and the older rows of
            the month holding the cutoff, whose chunks are re-encoded).
        versions_removed: superseded versions removed from the table's history: those
            of rows older than the cutoff, and those superseded more than
            ``[RETENTION] history_days`` ago (docs/history.md). Not in ``rows_removed``.
    """

    table: str
    name: str
    column: str
    cutoff: dt.datetime
    dropped: tuple[str, ...] = ()
    rows_dropped: int = 0
    rows_deleted: int = 0
    chunks_dropped: int = 0
    sealed_rows_removed: int = 0
    versions_removed: int = 0

    @property
    def partitions_dropped(self) -> int:
        return len(self.dropped)

    @property
    def rows_removed(self) -> int:
        return self.rows_dropped + self.rows_deleted + self.sealed_rows_removed


@dataclass(frozen=True)
class CleanupReport:
    """Per-table counts of what :func:`cleanup_old_data` removed.

    Example:
        >>> report = CleanupReport.empty(dry_run=True)
        >>> report.rows_removed, report.partitions_dropped, report.dry_run
        (0, 0, True)
    """

    tables: tuple[TableCleanup, ...] = ()
    dry_run: bool = False

    @classmethod
    def empty(cls, *, dry_run: bool = False) -> CleanupReport:
        """A report of nothing removed (the database is disabled in the configuration)."""
        return cls((), dry_run=dry_run)

    @property
    def rows_removed(self) -> int:
        return sum(t.rows_removed for t in self.tables)

    @property
    def partitions_dropped(self) -> int:
        return sum(t.partitions_dropped for t in self.tables)

    def __getitem__(self, table: str) -> TableCleanup:
        key = table_spec(table).key
        for entry in self.tables:
            if entry.table == key:
                return entry
        raise KeyError(table)

    def __iter__(self) -> Iterator[TableCleanup]:
        return iter(self.tables)

    def __len__(self) -> int:
        return len(self.tables)

    def to_frame(self) -> pl.DataFrame:
        """One row per table: cutoff, partitions dropped and rows removed, per tier: the row
        table's (``rows_dropped`` with its partitions, ``rows_deleted`` one by one), the
        sealed chunks' (``sealed_rows_removed``), and both (``rows_removed``)."""
        return pl.DataFrame(
            {
                "table": [t.table for t in self.tables],
                "column": [t.column for t in self.tables],
                "cutoff": [t.cutoff for t in self.tables],
                "partitions_dropped": [t.partitions_dropped for t in self.tables],
                "rows_dropped": [t.rows_dropped for t in self.tables],
                "rows_deleted": [t.rows_deleted for t in self.tables],
                "sealed_rows_removed": [t.sealed_rows_removed for t in self.tables],
                "rows_removed": [t.rows_removed for t in self.tables],
            },
            schema={"table": pl.String(), "column": pl.String(), "cutoff": pl.Datetime("us"),
                    "partitions_dropped": pl.Int64(), "rows_dropped": pl.Int64(), "rows_deleted": pl.Int64(),
                    "sealed_rows_removed": pl.Int64(), "rows_removed": pl.Int64()},
        )

    def __repr__(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        head = (f"<CleanupReport{' (dry run)' if self.dry_run else ''}: {verb} {self.rows_removed:,} rows, "
                f"{self.partitions_dropped} partition(s)")
        if not self.tables:
            return head + ">"
        lines = [head + ":"]
        for t in self.tables:
            lines.append(
                f"  {t.table:<21} {t.column:>10} < {t.cutoff:%Y-%m-%d %H:%M:%S}  {t.rows_removed:>12,} rows: "
                f"{t.rows_dropped:,} in {t.partitions_dropped} dropped partition(s) + {t.rows_deleted:,} deleted"
                f" + {t.sealed_rows_removed:,} sealed"
            )
        return "\n".join(lines) + ">"


# ---------------------------------------------------------------------------------------
# Catalog


@dataclass(frozen=True)
class _Partition:
    schema: str
    name: str
    lower: dt.datetime | None  # None: MINVALUE (or the DEFAULT partition)
    upper: dt.datetime | None  # None: MAXVALUE (or the DEFAULT partition)
    is_default: bool
    detach_pending: bool
    estimated_rows: int | None
    total_bytes: int

    @property
    def qualified(self) -> str:
        return qualified(self.schema, self.name)


def _parse_bound(text: str) -> dt.datetime | None:
    text = text.strip()
    if text.upper() in ("MINVALUE", "MAXVALUE"):
        return None
    value = text.strip("'")
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise SchemaError(f"cannot read the partition bound {text!r}; expected a timestamp") from None


def _partitions(cur: Any, schema: str, table: str) -> list[_Partition]:
    """Partitions of ``schema.table`` from the catalog, oldest first."""
    cur.execute(
        "SELECT cn.nspname, c.relname, pg_get_expr(c.relpartbound, c.oid), i.inhdetachpending, "
        "c.reltuples::bigint, pg_total_relation_size(c.oid) "
        "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_namespace cn ON cn.oid = c.relnamespace "
        "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
        "WHERE n.nspname = $1 AND p.relname = $2",
        parameters=(schema, table),
    )
    out = []
    for nsp, name, bound, pending, reltuples, size in cur.fetchall():
        bound = bound or ""
        match = _BOUND.search(bound)
        is_default = bound.strip().upper() == "DEFAULT"
        if not match and not is_default:
            raise SchemaError(f"{table}: cannot read the bounds of partition {name!r}: {bound!r}", table=table)
        lower = _parse_bound(match["lo"]) if match else None
        upper = _parse_bound(match["hi"]) if match else None
        # reltuples is -1 until the partition is first vacuumed or analysed (PostgreSQL 14+).
        estimate = int(reltuples) if reltuples is not None and reltuples >= 0 else None
        out.append(_Partition(nsp, name, lower, upper, is_default, bool(pending), estimate, int(size or 0)))
    out.sort(key=lambda p: (p.is_default, p.lower or dt.datetime.min, p.name))
    return out


def _relation(cur: Any, schema: str, table: str) -> str | None:
    """``'p'`` (partitioned), ``'r'`` (plain table) or None when the table does not exist."""
    cur.execute(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = $2",
        parameters=(schema, table),
    )
    row = cur.fetchone()
    return str(row[0]) if row else None


def _is_distributed(cur: Any, schema: str, table: str) -> bool:
    """True when Citus distributes the table (its partitions cannot be detached concurrently)."""
    cur.execute("SELECT to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL")
    row = cur.fetchone()
    if not row or not row[0]:
        return False
    cur.execute(
        "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = to_regclass($1)",
        parameters=(qualified(schema, table),),
    )
    row = cur.fetchone()
    return bool(row and row[0])


def _selected(db: Database, tables: Iterable[str] | str | None) -> list[TableSpec]:
    """The tables named, as the schema stores them (cleanup rewrites sealed chunks in their types)."""
    if tables is None:
        return [db.spec(key) for key in TABLES]
    if isinstance(tables, str):
        tables = [tables]
    specs: list[TableSpec] = []
    for name in tables:
        spec = db.spec(name)  # raises UsageError listing the allowed names
        if spec not in specs:
            specs.append(spec)
    return specs


# ---------------------------------------------------------------------------------------
# Public functions


def list_partitions(db: Database, table: str | None = None) -> pl.DataFrame:
    """The partitions of the time-series tables, oldest first, with bounds and sizes.

    Parameters:
        db: the database.
        table: one table (key or seed config key); all partitioned tables when None.

    Returns:
        A frame with ``table`` (key), ``partition``, ``from`` and ``to`` (the range
        ``[from, to)``; null for MINVALUE/MAXVALUE and the DEFAULT partition),
        ``estimated_rows`` (the planner's estimate, null before the first ANALYZE) and
        ``total_bytes`` (heap, indexes and TOAST). Tables not created yet are skipped.

    Raises:
        SchemaError: unknown table name, or the named table does not exist.

    Example:
        >>> list_partitions(db, "market_data")                     # doctest: +SKIP
        shape: (3, 6) ...
    """
    specs = _selected(db, None if table is None else [table])
    settings = db.settings
    rows: list[dict[str, Any]] = []
    with db.connection() as conn:
        cur = conn.cursor()
        try:
            for spec in specs:
                name = settings.table_name(spec.key)
                kind = _relation(cur, settings.schema, name)
                if kind is None:
                    if table is not None:
                        raise SchemaError(f"table {spec.key!r} ({name}) does not exist in schema "
                                          f"{settings.schema!r}; {{fix}}", table=spec.key, fixes=(INITIALIZE,))
                    continue
                months = _sealed_months(cur, db, spec)
                for part in _partitions(cur, settings.schema, name):
                    rows.append({"table": spec.key, "partition": part.name, "from": part.lower, "to": part.upper,
                                 "estimated_rows": part.estimated_rows,
                                 "sealed_rows": _sealed_in(months, part) if spec.sealable else None,
                                 "total_bytes": part.total_bytes})
        finally:
            cur.close()
    return pl.DataFrame(rows, schema=PARTITION_SCHEMA)


def _sealed_months(cur: Any, db: Database, spec: TableSpec) -> dict[dt.date, int]:
    """Sealed rows per month of a sealable table (one row per chunk summed: cheap)."""
    if not spec.sealable:
        return {}
    cur.execute(f"SELECT period_start, sum(row_count)::int8 FROM {chunk_table(spec, db.settings)} GROUP BY 1")
    return {r[0]: int(r[1]) for r in cur.fetchall()}


def _sealed_in(months: dict[dt.date, int], part: _Partition) -> int | None:
    """Sealed rows of the months a partition covers; None for a partition shorter than a
    month that holds sealed rows (chunks are monthly: its share is unknown)."""
    if part.lower is None or part.upper is None:
        return None
    total, partial = 0, False
    for month, n in months.items():
        start = dt.datetime.combine(month, dt.time())
        end = dt.datetime.combine(chunks.next_period(month), dt.time())
        if start >= part.lower and end <= part.upper:
            total += n
        elif start < part.upper and end > part.lower:
            partial = True
    return None if partial else total


def analyze_moved(db: Database, report: SealReport) -> list[str]:
    """``VACUUM (ANALYZE)`` the partitions of the months a seal, unseal or repair moved
    (``TRUNCATE`` + ``ANALYZE`` those it emptied, when no reader can tell: see
    :func:`_truncate_if_unseen`).

    ANALYZE: their row estimates (``list_partitions``, ``doctor --estimate``) are not the
    stale counts of rows that left (or came back). VACUUM: a sealed month leaves its rows
    dead in the row partition, and a read of that month's row tier (every read of it
    checks the rows too) walked them all: 3.4 ms for a one-symbol month of 44,640 dead
    rows here, 0.1 ms after the VACUUM; the seal of 500k bars pays ~0.2 s for it. After
    the move committed, in autocommit (VACUUM cannot run in a transaction) on a lookup
    connection; a partition whose lock is held elsewhere past 2 s is skipped with a
    warning (the others are still done), any other failure is logged; autovacuum does
    what was left. Not on Citus (the coordinator's partitions hold no rows). Returns the
    partitions done."""
    if db.settings.citus or not report.periods or report.dry_run:
        return []
    done: list[str] = []
    try:
        with db.connection() as conn:
            cur = conn.cursor()
            try:
                targets: list[tuple[str, str]] = []
                for key in report.tables:
                    spec = TABLES[key]  # type: ignore[index]
                    months = [p.period for p in report.periods if p.table == key]
                    for part in _partitions(cur, db.settings.schema, db.settings.table_name(spec.key)):
                        if part.lower is None or part.upper is None:
                            continue
                        if any(dt.datetime.combine(m, dt.time()) < part.upper and
                               dt.datetime.combine(chunks.next_period(m), dt.time()) > part.lower for m in months):
                            targets.append((part.qualified, part.name))
            finally:
                cur.close()
        with db.lookup_pool.connection() as lookup:
            # An emptied partition no older snapshot can read is truncated (heap and indexes
            # back at once, no VACUUM over its dead rows); the others are vacuumed.
            emptied = {name for qualified, name in targets if _truncate_if_unseen(lookup, qualified)}
            done.extend(name for _, name in targets if name in emptied)
            targets = [(qualified, name) for qualified, name in targets if name not in emptied]
            if db.settings.pooler == "transaction":
                # A session's lock_timeout would stay in a server session the pooler lends to
                # other clients (and VACUUM runs in no transaction, so no SET LOCAL): skip a
                # partition whose lock is taken instead of waiting for it.
                for qualified, name in targets:
                    lookup.execute(f"VACUUM (ANALYZE, SKIP_LOCKED) {qualified}")
                    done.append(name)
            else:
                # An autovacuum worker holds the lock VACUUM needs while it works on a partition
                # (a busy table has one at work often: the benchmark's seal met one each time
                # after a restatement, and a 200 ms wait skipped every partition). A waiter past
                # deadlock_timeout (1 s by default) cancels such a worker, so wait up to 2 s; a
                # lock held elsewhere that long skips that partition only.
                lookup.execute("SET lock_timeout = '2s'")
                try:
                    for qualified, name in targets:
                        if _locked_out(lookup, f"VACUUM (ANALYZE) {qualified}", name):
                            continue
                        done.append(name)
                finally:
                    lookup.execute("RESET lock_timeout")
            for qualified, name in targets:
                if name in done:  # a partition VACUUM skipped still holds its dead rows
                    _reindex_if_empty(lookup, qualified, name)
    except (RegimeIOError, adbc_driver_manager.Error, psycopg.Error) as err:
        log.warning("could not vacuum the partitions of the months moved (autovacuum will): %s",
                    db.redact(str(err).splitlines()[0]))
        return done
    return done


# The seal's DELETE leaves a partition's rows dead, and VACUUM must scan them all to give
# the heap back (it did not, silently, in 5 of ~60 benchmark seals: below). When no
# snapshot that could still see them exists, TRUNCATE is the same answer to every reader
# and gives heap and indexes back at once. Waiting at most this long for the partition's
# lock: VACUUM (which waits 2 s) follows when it is busy.
_TRUNCATE_WAIT = "200ms"


def _truncate_if_unseen(conn: Any, qualified: str) -> bool:
    """TRUNCATE a partition the move emptied, if no reader can tell: under its ACCESS
    EXCLUSIVE lock (nobody writes or reads it meanwhile), it holds no row, no other session
    of this database holds a snapshot as old as this transaction's oldest running xid (so
    every snapshot that exists was taken after the move's DELETE committed, and sees the
    partition empty either way; a session whose snapshot this role may not see counts as
    one), and no standby is attached (its queries' snapshots are not seen here). TRUNCATE
    is not MVCC-safe (a reader with an older snapshot saw a sealed month vanish, see
    ``regime_io._tiers.sealing``); these conditions are what make it safe. False when it
    did not (then VACUUM and REINDEX do the work)."""
    try:
        with conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = '{_TRUNCATE_WAIT}'")
            conn.execute(f"LOCK TABLE {qualified} IN ACCESS EXCLUSIVE MODE")
            row = conn.execute(
                f"SELECT NOT EXISTS (SELECT 1 FROM {qualified}) "
                "AND NOT EXISTS (SELECT 1 FROM pg_stat_replication) "
                "AND NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                "AND datname = current_database() AND (query = '<insufficient privilege>' OR (backend_xmin IS NOT NULL "
                "AND age(backend_xmin) >= age(pg_snapshot_xmin(pg_current_snapshot())::text::xid))))").fetchone()
            if row is None or not row[0]:
                return False
            conn.execute(f"TRUNCATE {qualified}")
            conn.execute(f"ANALYZE {qualified}")  # its row estimate: 0, not the rows that left
    except psycopg.errors.LockNotAvailable:
        return False
    return True


def _reindex_if_empty(conn: Any, qualified: str, name: str) -> None:
    """Rebuild the indexes of a partition the move emptied: VACUUM gives its heap back
    (trailing empty pages) but not its index pages, which were most of what a sealed
    month left behind (1M one-minute bars: 71 bytes/bar after seal + VACUUM, 17.7 after
    the REINDEX, issue 23). A non-concurrent REINDEX blocks the partition's writers and
    its index scans for the few ms an empty rebuild takes, keeps every row an older
    snapshot may still see (it builds from all tuples not dead to everyone), and gives up
    after 2 s of waiting for a lock, as the VACUUM before it (the space then comes back at
    the next REINDEX)."""
    row = conn.execute(f"SELECT EXISTS (SELECT 1 FROM {qualified})").fetchone()
    if row is None or row[0]:
        return
    _warn_if_heap_kept(conn, qualified, name)
    try:
        with conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '2s'")
            conn.execute(f"REINDEX TABLE {qualified}")
    except psycopg.errors.LockNotAvailable:
        log.warning("%s: not reindexed (a lock held elsewhere for 2 s); its index pages come back at the next "
                    "REINDEX", name)


# VACUUM gives an emptied heap back by truncating it, and says nothing when it cannot. In
# 5 of ~60 benchmark seals of 1M bars (2026-12-05) one partition kept 11-55 MB of heap,
# every step reporting done; neither two more VACUUMs straight after nor two after
# pauses of 0.5 and 1.5 s gave it back, and no other transaction held a snapshot then
# (cause not found; docs/performance.md, issue 23). Partitions nobody can still read are
# truncated instead (_truncate_if_unseen); where VACUUM did the work, a heap still kept is
# said, with the oldest snapshot's holder when there is one.
def _warn_if_heap_kept(conn: Any, qualified: str, name: str) -> None:
    row = conn.execute(f"SELECT pg_relation_size({literal(qualified)}::regclass)").fetchone()
    size = int(row[0]) if row else 0
    if not size:
        return
    oldest = conn.execute("SELECT pid, backend_type, xact_start FROM pg_stat_activity "
                          "WHERE backend_xmin IS NOT NULL AND pid <> pg_backend_pid() "
                          "ORDER BY age(backend_xmin) DESC LIMIT 1").fetchone()
    holder = (f"; the oldest snapshot is held by pid {oldest[0]} ({oldest[1]}, in a transaction since {oldest[2]})"
              if oldest else "")
    log.warning("%s: emptied by the move, but VACUUM left %d bytes of its heap (a transaction older than the move "
                "may still see its rows%s); a later VACUUM gives them back", name, size, holder)


def _locked_out(conn: Any, statement: str, name: str) -> bool:
    """Run ``statement``; True (and a warning naming the partition) when it gave up waiting
    for a lock, so the other partitions still get theirs."""
    try:
        conn.execute(statement)
    except psycopg.errors.LockNotAvailable:
        log.warning("%s: not vacuumed (a lock held elsewhere for 2 s); autovacuum will", name)
        return True
    return False


def cleanup_old_data(
    db: Database,
    days_to_keep: int = 30,
    *,
    tables: str | Iterable[str] | None = None,
    dry_run: bool = False,
) -> CleanupReport:
    """Remove rows older than the retention period, whole partitions first.

    Parameters:
        db: the database.
        days_to_keep: retention in days for tables without their own ``[RETENTION]``
            entry (a configured per-table retention wins over this argument).
        tables: table keys or seed config keys; every table when None.
        dry_run: count what would be removed, change nothing.

    Returns:
        A :class:`CleanupReport` with, per table, the cutoff, the partitions dropped and
        the rows removed (exact counts, dry run or not).

    Raises:
        ValidationError: ``days_to_keep`` is not a whole number >= 0.
        SchemaError: an unknown table, or a table named in ``tables`` does not exist.
        WriteError: the server refused a statement; tables listed before the failing one
            are already cleaned, the failing table may be partly cleaned.

    Safe while writers are active: inserts of recent rows never wait for cleanup, and
    reads of recent data are not blocked (see the module docstring for the locks).

    Example:
        >>> cleanup_old_data(db, 30, tables=["market_regimes_1min"], dry_run=True)  # doctest: +SKIP
        <CleanupReport (dry run): would remove 5,625 rows, 1 partition(s): ...>
    """
    if isinstance(days_to_keep, bool) or not isinstance(days_to_keep, int) or days_to_keep < 0:
        raise ValidationError(f"days_to_keep must be a whole number of days >= 0, got {days_to_keep!r}",
                              value=days_to_keep)
    specs = _selected(db, tables)
    settings = db.settings
    if settings.pooler == "transaction" and not dry_run:
        # Its lock is a session's (statements in autocommit: DETACH ... CONCURRENTLY cannot run
        # in a transaction), and a transaction pooler may run the unlock in another session.
        raise UsageError("cleanup_old_data needs a direct connection to PostgreSQL: it holds a session "
                         "lock across autocommit statements, which a transaction pooler (pooler = transaction) "
                         "would scatter over server sessions. Run it from a PostgreSQLIntegration configured "
                         "with the server's own host and port and pooler = none (docs/configuration.md, "
                         "'Behind PgBouncer'); dry_run=True works here")
    results: list[TableCleanup] = []
    with _autocommit(db) as conn:
        cur = conn.cursor()
        try:
            now = _server_now(cur)
            if not dry_run:
                cur.execute("SELECT pg_advisory_lock($1::int4, hashtext($2::text))",
                            parameters=(_CLEANUP_LOCK, settings.schema + "." + settings.table_prefix))
                cur.fetchall()
            try:
                for spec in specs:
                    days = settings.retention_days.get(spec.key, days_to_keep)
                    cutoff = _cutoff(now, days)
                    name = settings.table_name(spec.key)
                    kind = _relation(cur, settings.schema, name)
                    if kind is None:
                        if tables is not None:
                            raise SchemaError(f"table {spec.key!r} ({name}) does not exist in schema "
                                              f"{settings.schema!r}; {{fix}}",
                                              table=spec.key, fixes=(INITIALIZE,))
                        log.debug("cleanup: %s does not exist, skipped", name)
                        continue
                    try:
                        removed: list[tuple[str, str, int]] = []  # per series, both tiers
                        entry = _clean_table(cur, db, spec, kind, cutoff, dry_run=dry_run, removed=removed)
                        if spec.sealable:  # the sealed tier past the cutoff goes too
                            chunks_dropped, sealed_removed = clean_chunks(db, spec, cutoff, dry_run=dry_run,
                                                                          removed=removed)
                            entry = dataclasses.replace(entry, chunks_dropped=chunks_dropped,
                                                        sealed_rows_removed=sealed_removed)
                        if removed and not dry_run and spec.key in catalog.SERIES_TABLES:
                            # After both tiers: the new first timestamps are probed in what is left.
                            catalog.record_deletes(cur, settings, spec, removed)
                        if spec.key in settings.history_tables:  # superseded versions (_history)
                            entry = dataclasses.replace(entry, versions_removed=clean_history(
                                cur, settings, spec, cutoff, dry_run=dry_run))
                        if spec.sealable and not dry_run:  # the live tail's record of sealed-tier writes
                            changes.prune_sealed_changes(cur, settings, spec, cutoff)
                        results.append(entry)
                    except adbc_driver_manager.Error as err:
                        if is_connection_error(err):
                            raise  # the pool reports it as ServerUnavailableError
                        raise maintenance_error(err, db, spec, what="cleanup") from err
            finally:
                if not dry_run:
                    cur.execute("SELECT pg_advisory_unlock($1::int4, hashtext($2::text))",
                                parameters=(_CLEANUP_LOCK, settings.schema + "." + settings.table_prefix))
                    cur.fetchall()
        finally:
            cur.close()
            if any(r.dropped for r in results) and not dry_run:
                # This process's writers must not trust their cache of existing partitions.
                db.partitions.forget()
    report = CleanupReport(tuple(results), dry_run=dry_run)
    log.info("cleanup%s: %s rows and %d partition(s) %s", " (dry run)" if dry_run else "",
             f"{report.rows_removed:,}", report.partitions_dropped, "to remove" if dry_run else "removed")
    return report


# ---------------------------------------------------------------------------------------
# Internals


@contextmanager
def _autocommit(db: Database) -> Iterator[Connection]:
    """A pooled primary connection in autocommit mode: every statement commits on its own,
    which ``DETACH PARTITION ... CONCURRENTLY`` requires and which keeps each lock short."""
    with db.connection() as conn:
        if db.settings.pooler == "transaction":
            # Only a dry run gets here (cleanup_old_data): one transaction, so the pooler
            # keeps each statement's two exchanges (prepare, execute) in one server session.
            yield conn
            return
        conn.adbc_connection.set_autocommit(True)
        try:
            yield conn
        finally:
            conn.adbc_connection.set_autocommit(False)


def _server_now(cur: Any) -> dt.datetime:
    # Pooled connections run in the storage time zone, so this is "now" as stored timestamps
    # spell it; the server's clock is the one every client shares.
    cur.execute("SELECT LOCALTIMESTAMP")
    row = cur.fetchone()
    return row[0]  # type: ignore[no-any-return]


def _cutoff(now: dt.datetime, days: int) -> dt.datetime:
    try:
        return now - dt.timedelta(days=days)
    except OverflowError:  # a retention longer than the calendar: nothing is that old
        return dt.datetime.min


def _count(cur: Any, sql: str, parameters: tuple[Any, ...] | None = None) -> int:
    cur.execute(sql, parameters=parameters)
    row = cur.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _clean_table(cur: Any, db: Database, spec: TableSpec, kind: str, cutoff: dt.datetime, *,
                 dry_run: bool, removed: list[tuple[str, str, int]] | None = None) -> TableCleanup:
    """Clean one table's row tier; ``removed`` collects the rows removed per series
    ``(symbol, timeframe or '', n)`` for the series catalog."""
    settings = db.settings
    name = settings.table_name(spec.key)
    parent = qualified(settings.schema, name)
    column = spec.time_column or "created_at"
    where = f"{quote_ident(column)} < $1"
    if kind != "p":
        # Unpartitioned: optimisation results (by created_at), or a table created before
        # partitioning by an older version of the schema.
        if dry_run:
            deleted = _count(cur, f"SELECT count(*) FROM {parent} WHERE {where}", (cutoff,))
        else:
            deleted = _count(cur, f"WITH d AS (DELETE FROM {parent} WHERE {where} RETURNING 1) "
                                  "SELECT count(*) FROM d", (cutoff,))
        return TableCleanup(spec.key, name, column, cutoff, rows_deleted=deleted)

    parts = _partitions(cur, settings.schema, name)
    old = [p for p in parts if not p.is_default and p.upper is not None and p.upper <= cutoff]
    boundary = [p for p in parts if p not in old and (p.is_default or p.lower is None or p.lower < cutoff)]
    concurrent = not any(p.is_default for p in parts) and not _is_distributed(cur, settings.schema, name)

    dropped: list[str] = []
    rows_dropped = 0
    # Rows removed per series, for the series catalog (counted by the statements that
    # count anyway: a GROUP BY instead of a count(*)).
    removed = [] if removed is None else removed
    returning, per_series = catalog.removed_sql(spec)
    for part in old:
        if dry_run:
            rows_dropped += _count(cur, f"SELECT count(*) FROM {part.qualified}")
            dropped.append(part.name)
            continue
        _detach(cur, parent, part, concurrent=concurrent)
        # Detached, the table takes no new rows: this count is what the drop removes.
        counts = _grouped(cur, f"SELECT {per_series} FROM {part.qualified} t GROUP BY 1, 2")
        rows_dropped += sum(n for _, _, n in counts)
        removed += counts
        cur.execute(f"DROP TABLE {part.qualified}")
        dropped.append(part.name)
        log.info("cleanup: dropped partition %s of %s", part.name, name)

    deleted = 0
    for part in boundary:
        if dry_run:
            deleted += _count(cur, f"SELECT count(*) FROM {part.qualified} WHERE {where}", (cutoff,))
        else:
            counts = _grouped(cur, f"WITH d AS (DELETE FROM {part.qualified} t WHERE {where} RETURNING {returning}) "
                                   f"SELECT {per_series} FROM d GROUP BY 1, 2", (cutoff,))
            deleted += sum(n for _, _, n in counts)
            removed += counts
    return TableCleanup(spec.key, name, column, cutoff, dropped=tuple(dropped), rows_dropped=rows_dropped,
                        rows_deleted=deleted)


def _grouped(cur: Any, sql: str, parameters: tuple[Any, ...] | None = None) -> list[tuple[str, str, int]]:
    cur.execute(sql, parameters=parameters)
    return [(r[0], r[1], int(r[2])) for r in cur.fetchall()]


def _detach(cur: Any, parent: str, part: _Partition, *, concurrent: bool) -> None:
    """Detach one partition, concurrently when allowed, else under a short lock timeout."""
    if part.detach_pending:
        # A concurrent detach was interrupted (cancelled, connection lost) after its first
        # transaction: finish it instead of starting over.
        cur.execute(f"ALTER TABLE {parent} DETACH PARTITION {part.qualified} FINALIZE")
        return
    if concurrent:
        cur.execute(f"ALTER TABLE {parent} DETACH PARTITION {part.qualified} CONCURRENTLY")
        return
    cur.execute(f"SET lock_timeout = {literal(BLOCKING_LOCK_TIMEOUT)}")
    try:
        cur.execute(f"ALTER TABLE {parent} DETACH PARTITION {part.qualified}")
    finally:
        cur.execute("RESET lock_timeout")
