"""Partition creation and bookkeeping for the time-partitioned row tables."""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import zoneinfo
from typing import Any

from .._sql.names import ddl_lock_key, qualified_table
from .._sql.quote import literal, qualified, quote_ident
from ..config import PartitionInterval, Settings
from ..errors import RegimeIOError, ValidationError
from ..tables import TableSpec
from .driver_errors import DRIVER_ERRORS, first_line
from .pool import ConnectionPool

__all__ = ["ANALYZE_AFTER_ROWS", "PartitionCache", "analyze_fresh_partitions"]

log = logging.getLogger(__name__)


# One write may create at most this many partitions: more usually means garbage timestamps
# (seconds read as microseconds, 1970 epochs) rather than a real history.
MAX_NEW_PARTITIONS = 2000


# ---------------------------------------------------------------------------------------
# Partitions


def bucket_start(value: dt.datetime | dt.date, interval: PartitionInterval) -> dt.date:
    """The first day of the partition holding ``value``."""
    day = value.date() if isinstance(value, dt.datetime) else value
    if interval == "day":
        return day
    if interval == "week":
        return day - dt.timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day.replace(month=1, day=1)


def next_bucket(start: dt.date, interval: PartitionInterval) -> dt.date:
    if interval == "day":
        return start + dt.timedelta(days=1)
    if interval == "week":
        return start + dt.timedelta(days=7)
    if interval == "month":
        return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return start.replace(year=start.year + 1)


def partition_name(settings: Settings, spec: TableSpec, start: dt.date, interval: PartitionInterval) -> str:
    """``<table>_p2024_01`` (month), ``_p2024`` (year), ``_p2024_01_15`` (day, week)."""
    suffix = {"year": "%Y", "month": "%Y_%m"}.get(interval, "%Y_%m_%d")
    return f"{settings.table_name(spec.key)}_p{start.strftime(suffix)}"


def buckets(ts_min: dt.datetime | dt.date, ts_max: dt.datetime | dt.date,
            interval: PartitionInterval) -> list[dt.date]:
    """Start dates of every partition between two timestamps, inclusive."""
    out = []
    start = bucket_start(ts_min, interval)
    last = bucket_start(ts_max, interval)
    while start <= last:
        out.append(start)
        start = next_bucket(start, interval)
    return out


def upcoming_bucket(settings: Settings, last: dt.date) -> list[dt.date]:
    """``[next partition]`` when a write reaches the current partition (by the clock, in
    the storage zone), else ``[]``: live writers create next month's partition during this
    month, so the first bars after the boundary find it and no writer takes the parent's
    ACCESS EXCLUSIVE lock at the busiest moment. Backfills of past data create nothing extra.
    """
    today = dt.datetime.now(zoneinfo.ZoneInfo(settings.storage_timezone)).date()
    current = bucket_start(today, settings.partition_interval)
    return [next_bucket(current, settings.partition_interval)] if last == current else []


#: A write of at least this many rows gives never-analysed partitions planner statistics
#: (:func:`analyze_fresh_partitions`); below it the planner's default guesses cost little.
ANALYZE_AFTER_ROWS = 10_000


# What a failed ANALYZE may raise (the pool reports a lost connection as RegimeIOError).
_ANALYZE_ERRORS: tuple[type[Exception], ...] = (RegimeIOError, *DRIVER_ERRORS)


def analyze_fresh_partitions(pool: ConnectionPool, settings: Settings, spec: TableSpec) -> list[str]:
    """``ANALYZE`` the key columns of ``spec``'s partitions that were never analysed;
    returns their names.

    Until autovacuum's next pass (it never analyses a partitioned parent) a freshly
    loaded partition has no statistics, and the planner's defaults chose bad plans: a
    10-symbol range read right after a 1M-bar save sorted the rows on disk (5.1 s against
    0.86 s analysed, docs/performance.md), and the rolling trim's DELETE for 500 symbols
    scanned all 187,500 rows of the window (45 ms against 13 ms). Those plans need the
    key columns only, and analysing only them cost 0.11 s after a 2.35 s save of 450,000
    bars (all columns: 0.34 s). Called after the write committed: a failure (a concurrent
    ANALYZE or VACUUM holding the lock past ``lock_timeout``, a lost connection) is
    logged, never raised; autovacuum will do it later. Not on Citus: the coordinator's
    partitions hold no rows, so they would look fresh after every write; the workers'
    autovacuum analyses the shards.
    """
    if not spec.partitioned or settings.citus:
        return []
    columns = ", ".join(quote_ident(c) for c in spec.primary_key)
    names: list[str] = []
    try:
        with pool.connection() as conn:
            cur = conn.cursor()
            try:
                cur.execute("SELECT format('%I.%I', n.nspname, c.relname) FROM pg_inherits i "
                            "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE i.inhparent = $1::regclass AND c.reltuples < 0 ORDER BY 1",
                            parameters=(qualified_table(spec, settings),))
                names = [str(r[0]) for r in cur.fetchall()]
                if names:
                    cur.execute("SET LOCAL lock_timeout = '200ms'")
                for name in names:
                    cur.execute(f"ANALYZE {name} ({columns})")
            finally:
                cur.close()
    except _ANALYZE_ERRORS as err:
        log.warning("%s: could not analyse its new partitions (autovacuum will): %s", spec.key,
                    settings.redact(first_line(err)))
        return []
    if names:
        log.info("analysed %d new partition(s) of %s (key columns)", len(names), settings.table_name(spec.key))
    return names


class PartitionCache:
    """Remembers which partitions exist, so a warm write pays no catalog round trip.

    The cache may go stale (another process drops a partition in cleanup); writers
    then see "no partition found", call :meth:`forget` and retry once.
    """

    def __init__(self) -> None:
        self._known: set[tuple[str, dt.date]] = set()
        self._lock = threading.Lock()

    def forget(self) -> None:
        with self._lock:
            self._known.clear()

    def ensure(self, pool: ConnectionPool, settings: Settings, spec: TableSpec,
               ts_min: dt.datetime | dt.date, ts_max: dt.datetime | dt.date, *, conn: Any = None) -> int:
        """Create the partitions covering ``[ts_min, ts_max]`` that do not exist yet.

        Runs in its own short transaction, or inside ``conn``'s transaction when given
        (streamed writes, which learn their time span only after staging). Returns how
        many partitions were created.
        """
        if not spec.partitioned:
            return 0
        interval = settings.partition_interval
        name = settings.table_name(spec.key)
        wanted = buckets(ts_min, ts_max, interval)
        wanted += upcoming_bucket(settings, wanted[-1])
        with self._lock:
            missing = [b for b in wanted if (name, b) not in self._known]
        if not missing:
            return 0
        if len(missing) > MAX_NEW_PARTITIONS:
            raise ValidationError(
                f"{spec.key}: timestamps span {len(missing)} {interval} partitions "
                f"({ts_min} .. {ts_max}); more than {MAX_NEW_PARTITIONS} in one write usually means "
                "wrong timestamps (epoch units?) — check them or use a coarser partition_interval",
                table=spec.key, column=spec.time_column,
            )
        if conn is not None:
            created = self._create(conn, settings, spec, missing)
        else:
            with pool.connection() as own:
                created = self._create(own, settings, spec, missing)
        with self._lock:
            self._known.update((name, b) for b in wanted)
        if created:
            log.info("created %d partition(s) of %s", created, name)
        return created

    def _create(self, conn: Any, settings: Settings, spec: TableSpec, missing: list[dt.date]) -> int:
        interval = settings.partition_interval
        parent = qualified_table(spec, settings)
        created = 0
        cur = conn.cursor()
        try:
            cur.execute(f"SELECT pg_advisory_xact_lock({ddl_lock_key(settings)})")
            cur.fetchall()
            existing = self._existing(cur, settings, spec)
            for start in missing:
                end = next_bucket(start, interval)
                # Partitions made under another partition_interval may cover part of this
                # bucket: create only the uncovered gaps, so changing the interval later works.
                for lo, hi in _gaps(start, end, existing):
                    part = (partition_name(settings, spec, start, interval) if (lo, hi) == (start, end)
                            else f"{settings.table_name(spec.key)}_p{lo.strftime('%Y_%m_%d')}")
                    # CREATE + ATTACH, not CREATE ... PARTITION OF: ATTACH takes only SHARE UPDATE
                    # EXCLUSIVE on the parent, so readers never wait for it. A reader waiting on
                    # the parent can hang the whole process: connectorx streams hold the GIL
                    # while they wait, and this thread needs the GIL to commit.
                    cur.execute(f"CREATE TABLE {qualified(settings.schema, part)} "
                                f"(LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
                    cur.execute(
                        f"ALTER TABLE {parent} ATTACH PARTITION {qualified(settings.schema, part)} "
                        f"FOR VALUES FROM ({literal(lo.isoformat())}) TO ({literal(hi.isoformat())})"
                    )
                    existing.append((lo, hi))
                    created += 1
        finally:
            cur.close()
        return created

    @staticmethod
    def _existing(cur: Any, settings: Settings, spec: TableSpec) -> list[tuple[dt.date, dt.date]]:
        """The ``[from, to)`` ranges of the table's partitions (the DEFAULT partition has none)."""
        cur.execute(
            "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
            f"WHERE n.nspname = {literal(settings.schema)} AND p.relname = {literal(settings.table_name(spec.key))}"
        )
        ranges = []
        for (bound,) in cur.fetchall():
            match = _BOUNDS.search(bound or "")
            if match:
                ranges.append((_bound_date(match.group(1), dt.date.min), _bound_date(match.group(2), dt.date.max)))
        return ranges


_BOUNDS = re.compile(r"FROM \((.+?)\) TO \((.+?)\)")


def _bound_date(text: str, unbounded: dt.date) -> dt.date:
    text = text.strip().strip("'")
    if text.upper() in ("MINVALUE", "MAXVALUE"):
        return unbounded
    value = dt.datetime.fromisoformat(text)
    # A bound that is not midnight belongs to the day it falls in; partitions we create
    # always start at midnight, so rounding up keeps the gaps non-overlapping.
    return value.date() + (dt.timedelta(days=1) if value.time() != dt.time(0) else dt.timedelta(0))


def _gaps(start: dt.date, end: dt.date, taken: list[tuple[dt.date, dt.date]]) -> list[tuple[dt.date, dt.date]]:
    """``[start, end)`` minus every range in ``taken``, as sorted half-open ranges."""
    gaps = [(start, end)]
    for lo, hi in taken:
        next_gaps = []
        for a, b in gaps:
            if hi <= a or lo >= b:  # no overlap
                next_gaps.append((a, b))
                continue
            if a < lo:
                next_gaps.append((a, lo))
            if hi < b:
                next_gaps.append((hi, b))
        gaps = next_gaps
    return sorted(gaps)
