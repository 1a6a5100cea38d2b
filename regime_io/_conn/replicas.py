"""Read replicas: readers use one when configured, writers always use the primary.

Configure streaming replicas (``[CONNECTION] read_replicas``, URLs separated by commas)
and readers (connectorx range reads through :meth:`Database.read_url`, point reads
through :meth:`Database.read_connection`) go to them; writers, DDL and maintenance
always use the primary (:meth:`Database.connection`).

* **Choice:** round-robin over the healthy replicas: every read starts at the next
  replica, so several replicas share the read load.
* **Health:** each read checks its replica with one short query on a pooled connection.
  A replica that cannot be reached is skipped for :data:`RECHECK_AFTER` seconds, then
  probed again quietly; while every replica is down, reads go to the primary. The
  warning is logged once per outage, and an info line when the replica is back.
* **Read-your-writes** (``read_your_writes = true``): before reading from a replica the
  reader asks the primary for its current WAL position (``pg_current_wal_lsn()``) and
  waits until the replica has replayed it (``pg_last_wal_replay_lsn()``), at most
  :data:`READ_YOUR_WRITES_TIMEOUT` seconds; then everything committed before the read
  began (by this process or any other) is visible. A replica that lags longer is skipped
  and, if none catches up, the read goes to the primary.

A replica URL may leave out the user, password and database: they are the primary's
(physical replicas share the primary's roles). Replica pools never retry a failed
connect: the primary is the fallback.

Example:
    >>> settings = load_settings(config={"connection": {                 # doctest: +SKIP
    ...     "read_replicas": "postgresql://replica1:5432,postgresql://replica2:5432"}})
    >>> db = Database(settings)                                          # doctest: +SKIP
    >>> cx.read_sql(db.read_url(), "SELECT ...")                         # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as adbc

from ..config import LIBPQ_OPTIONS, Collector, Secret, Settings, parse_dsn, settings_replace
from ..errors import ConfigError, PoolTimeoutError, ServerError
from .pool import ConnectionPool, LookupConnection, LookupPool

__all__ = ["READ_YOUR_WRITES_TIMEOUT", "RECHECK_AFTER", "Replica", "ReplicaSet", "choose", "replica_settings"]

log = logging.getLogger(__name__)


# Seconds a read-your-writes read waits for a replica to replay the primary's position.
READ_YOUR_WRITES_TIMEOUT = 2.0


# Seconds an unreachable replica is skipped before it is probed again.
RECHECK_AFTER = 5.0


_POLL_INTERVAL = 0.005


def replica_settings(primary: Settings, dsn: str) -> Settings:
    """The settings of one replica: its DSN over the (resolved) primary's settings.

    >>> from regime_io.config import Settings
    >>> s = replica_settings(Settings(host="db1", user="quant"), "postgresql://db2:5433")
    >>> s.host, s.port, s.user, s.retry_attempts
    ('db2', 5433, 'quant', 0)
    """
    col = Collector()
    parsed = parse_dsn(dsn, col)
    if col.problems:
        raise ConfigError([p.replace("dsn:", "read_replicas:", 1) for p in col.problems])
    changes: dict[str, Any] = {"retry_attempts": 0}
    for key in ("host", "user", "database"):
        if key in parsed:
            changes[key] = str(parsed[key])
    if "port" in parsed:
        changes["port"] = int(parsed["port"])
    if "password" in parsed:
        changes["password"] = Secret(str(parsed["password"]))
    if "connect_timeout" in parsed:
        changes["connection_timeout"] = float(parsed["connect_timeout"])
    options = {k: str(v) for k, v in parsed.items() if k in LIBPQ_OPTIONS}
    if options:
        changes["libpq_options"] = {**primary.libpq_options, **options}
    return settings_replace(primary, **changes)


@dataclass
class Replica:
    name: str
    settings: Settings
    pool: ConnectionPool
    lookup_pool: LookupPool
    down_since: float | None = None  # monotonic time of the first failure of this outage
    retry_at: float = 0.0
    lagging: bool = False


class ReplicaSet:
    """The configured replicas of one :class:`Database`, their pools and health."""

    def __init__(self, primary: Settings) -> None:
        self.replicas = []
        for i, dsn in enumerate(primary.read_replicas, start=1):
            settings = replica_settings(primary, dsn.get())
            name = f"replica {i}"
            self.replicas.append(Replica(name, settings, ConnectionPool.from_settings(settings, name=name),
                                          LookupPool.from_settings(settings, name=name)))
        # One rotation per kind of read: a reader that takes a point-read connection and then
        # a connectorx URL for the same call still spreads its URLs over every replica.
        self._counters = {"url": itertools.count(), "connection": itertools.count(), "lookup": itertools.count()}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        states = ", ".join(f"{r.name} ({r.settings.describe()}): {'down' if r.down_since else 'up'}"
                           for r in self.replicas)
        return f"<ReplicaSet {states}>"

    def rotation(self, kind: str = "url") -> list[Replica]:
        """The replicas to try for the next read, round-robin, skipping recent failures."""
        with self._lock:
            start = next(self._counters[kind]) % len(self.replicas)
        ordered = self.replicas[start:] + self.replicas[:start]
        now = time.monotonic()
        return [r for r in ordered if r.down_since is None or now >= r.retry_at]

    def mark_down(self, replica: Replica, err: BaseException) -> None:
        with self._lock:
            first = replica.down_since is None
            if first:
                replica.down_since = time.monotonic()
            replica.retry_at = time.monotonic() + RECHECK_AFTER
        if first:
            log.warning("%s (%s) is unreachable, reading from the primary until it is back: %s",
                        replica.name, replica.settings.describe(), replica.settings.redact(str(err)))
        else:
            log.debug("%s is still unreachable: %s", replica.name, replica.settings.redact(str(err)))

    def mark_up(self, replica: Replica) -> None:
        with self._lock:
            since, replica.down_since = replica.down_since, None
        if since is not None:
            log.info("%s (%s) is back after %.1fs; reads use it again", replica.name,
                     replica.settings.describe(), time.monotonic() - since)

    def close(self) -> None:
        for replica in self.replicas:
            replica.pool.close()
            replica.lookup_pool.close()


def _reachable(replica: Replica) -> bool:
    """Open and close one connection outside the pool: a quiet probe of a replica that was
    down (the pool would log a warning for every failed attempt)."""
    try:
        conn = adbc.connect(replica.settings.url(redact=False))
    except adbc_driver_manager.Error as err:
        log.debug("%s still unreachable: %s", replica.name, replica.settings.redact(str(err)))
        return False
    conn.close()
    return True


def _primary_lsn(primary_lookup: LookupPool) -> str:
    with primary_lookup.connection() as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return str(row[0])


def _caught_up(conn: LookupConnection, lsn: str | None) -> bool:
    """True when the replica answers and (with ``lsn``) has replayed up to ``lsn``.

    ``conn`` is in autocommit mode: no transaction stays open while waiting, which matters
    because a standby snapshot holds back the very replay being waited for (a recovery
    conflict; replay waits max_standby_streaming_delay, 30 s by default).
    """
    if lsn is None:
        conn.execute("SELECT true").fetchone()
        return True
    deadline = time.monotonic() + READ_YOUR_WRITES_TIMEOUT
    while True:
        # NULL when the server is not in recovery (not a replica): never "caught up".
        row = conn.execute("SELECT coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false)", (lsn,)).fetchone()
        if row and row[0]:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_INTERVAL)


def choose(replicas: ReplicaSet, kind: str, *, primary: Settings, primary_lookup: LookupPool) -> Replica | None:
    """The replica the next read of ``kind`` ("url", "connection", "lookup") uses, checked
    to answer (and caught up, with read-your-writes); None for the primary.

    It knows nothing of :class:`~regime_io.database.Database` (which calls it): the
    primary's lookup pool is handed in for the read-your-writes position.
    """
    lsn = _primary_lsn(primary_lookup) if primary.read_your_writes else None
    for replica in replicas.rotation(kind):
        if replica.down_since is not None and not _reachable(replica):
            replicas.mark_down(replica, ServerError("connection refused"))
            continue
        try:
            with replica.lookup_pool.connection() as conn:
                ok = _caught_up(conn, lsn)
        except PoolTimeoutError:
            # Busy, not down: every connection to it is in use. Try the next one.
            log.debug("%s: no free connection, trying the next replica", replica.name)
            continue
        except ServerError as err:
            replicas.mark_down(replica, err)
            continue
        replicas.mark_up(replica)
        if ok:
            if replica.lagging:
                replica.lagging = False
                log.info("%s has caught up; read-your-writes reads use it again", replica.name)
            return replica
        if not replica.lagging:
            replica.lagging = True
            log.warning("%s did not replay the primary's position %s within %gs; reading from the primary "
                        "(read_your_writes)", replica.name, lsn, READ_YOUR_WRITES_TIMEOUT)
    return None
