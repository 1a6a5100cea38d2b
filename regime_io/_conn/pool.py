"""Small pools of connections with retrying connects and health checks.

``with pool.connection() as conn:`` hands out a connection inside a transaction: it
commits when the block succeeds, rolls back when it raises, and returns the connection
to the pool. A connection that died (server restart, network cut) is discarded, never
handed out again; idle connections are pinged before reuse.

Two pools share that logic (:class:`_Pool`):

* :class:`ConnectionPool` holds ADBC connections: writers (bulk COPY), DDL, maintenance,
  and the readers whose results are Arrow-sized (aggregates, option chains).
* :class:`LookupPool` holds psycopg connections in autocommit mode with server-side
  prepared statements, for lookups whose answer is a handful of rows (latest rows, the
  reachability check). ADBC spends four round trips on such a query (BEGIN, Parse,
  Bind/Execute, COMMIT); a prepared psycopg query spends one, which halves the latency
  of ``get_latest`` (measured in ``docs/performance.md``).

Example:
    >>> pool = ConnectionPool.from_settings(settings)                       # doctest: +SKIP
    >>> with pool.connection() as conn:                       # doctest: +SKIP
    ...     cur = conn.cursor(); cur.execute("SELECT 1"); cur.fetchone()
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import adbc_driver_postgresql.dbapi as adbc
import psycopg
from adbc_driver_manager.dbapi import Connection

from .._sql.quote import literal
from ..config import Pooler, Settings, settings_replace
from ..errors import ConfigError, PoolClosedError, PoolTimeoutError, ServerError, ServerUnavailableError
from . import embedded
from .driver_errors import (
    _PERMANENT_CONNECT_FAILURES,
    DRIVER_ERRORS,
    NOTHING_COMMITTED,
    first_line,
    lost_connection,
)

__all__ = ["ConnectionPool", "LookupConnection", "LookupPool", "resolve_server"]

log = logging.getLogger(__name__)


LookupConnection = psycopg.Connection[Any]


C = TypeVar("C", Connection, LookupConnection)


def resolve_server(settings: Settings) -> Settings:
    """Settings pointing at a concrete server: the configured one, or the embedded server
    (started on first use, reused afterwards)."""
    if not settings.embedded:
        return settings

    server = embedded.start(settings.embedded_dir)
    return settings_replace(settings, host=server.socket_dir, port=server.port,
                            user=server.user, database=server.database)


PoolT = TypeVar("PoolT", bound="_Pool[Any]")


class _Pool(Generic[C]):
    """Up to ``max_size`` connections to one server; subclasses open and ping them.

    Configured with keywords, like psycopg_pool; :meth:`from_settings` is the one place
    that maps :class:`~regime_io.config.Settings` onto them.

    Parameters:
        conninfo: the server's URL, password included (never logged: see ``describe``).
        name: shown in logs and errors ("primary", "replica 1").
        max_size: connections open at most (``max_connections``).
        timeout: seconds to wait for a free connection (``connection_timeout``).
        health_check_interval: idle connections older than this are pinged before reuse.
        connect_attempts: tries per connect (``1 + retry_attempts``), ``retry_delay`` apart.
        time_zone: the session ``TimeZone`` (the storage zone).
        describe: how logs and errors name the server (no password).
        redact: scrubs credentials from driver messages.
        pooler: what sits in front of the server (``[CONNECTION] pooler``): behind a
            transaction pooler nothing may outlive a transaction (no prepared statements,
            no session settings); with ``"none"`` a pooler found in front is an error.
    """

    #: Shown in logs ("a connection", "a lookup connection").
    kind = "connection"

    def __init__(self, conninfo: str, *, name: str = "primary", max_size: int = 10, timeout: float = 30.0,
                 health_check_interval: float = 30.0, connect_attempts: int = 1, retry_delay: float = 1.0,
                 time_zone: str = "UTC", describe: str = "", redact: Callable[[str], str] = str,
                 pooler: Pooler = "none") -> None:
        if max_size < 1 or connect_attempts < 1 or timeout <= 0:
            raise ValueError(f"pool {name}: max_size and connect_attempts must be >= 1 and timeout > 0")
        self.name = name
        self.max_size = max_size
        self.timeout = timeout
        self.health_check_interval = health_check_interval
        self.connect_attempts = connect_attempts
        self.retry_delay = retry_delay
        self.time_zone = time_zone
        self.describe = describe
        self._redact = redact
        self.pooler = pooler
        self._url = conninfo
        self._idle: deque[tuple[C, float]] = deque()
        self._open = 0
        self._lock = threading.Condition()
        self._closed = False
        self._pid = os.getpid()
        # Idle connections returned before this moment are pinged before reuse whatever
        # their age: set when any connection of the pool is found dead (server restart).
        self._suspect_before = 0.0

    @classmethod
    def from_settings(cls: type[PoolT], settings: Settings, *, name: str = "primary") -> PoolT:
        """A pool configured from resolved settings (see :func:`resolve_server`)."""
        return cls(settings.url(redact=False), name=name, max_size=settings.max_connections,
                   timeout=settings.connection_timeout, health_check_interval=settings.health_check_interval,
                   connect_attempts=1 + settings.retry_attempts, retry_delay=settings.retry_delay,
                   time_zone=settings.storage_timezone, describe=settings.describe(), redact=settings.redact,
                   pooler=settings.pooler)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.describe} open={self._open} idle={len(self._idle)}>"

    # -- public -------------------------------------------------------------------------

    @contextmanager
    def connection(self, *, pipeline: bool = False, wait: bool = True) -> Iterator[C]:
        """A connection in a transaction: commit on success, roll back on error.

        Parameters:
            pipeline: (the lookup pool's autocommit connections) run the block as one
                explicit transaction in pipeline mode: statements go out without waiting
                for their results, a fetch waits only for what was sent before it, and
                ``COMMIT`` travels with the statements still pending, so a block whose
                results are read once costs two round trips, not one per statement
                (regime_io._conn.pipeline).
            wait: False: raise ``PoolTimeoutError`` at once when no connection is free
                (a caller already holding one must not wait for another: two such callers
                at ``max_connections`` would wait for each other).

        Raises:
            PoolTimeoutError: every connection stayed busy for ``connection_timeout`` seconds
                (at once with ``wait=False``).
            ServerUnavailableError: the server cannot be reached (after the retries), or the
                connection died during the block (nothing was committed, unless the commit
                itself was cut off: then the message says the outcome is unknown).
            ServerError: the server refuses the login (bad password, unknown database).
        """
        conn = self._acquire(self.timeout if wait else 0.0)
        committing = False
        pipe: contextlib.AbstractContextManager[Any] | None = None
        control: Any = None
        try:
            if pipeline:
                assert isinstance(conn, psycopg.Connection), "pipeline mode needs a psycopg connection"
                pipe = conn.pipeline()
                pipe.__enter__()
                # Explicit: psycopg's commit() asks libpq for the transaction status, which
                # in pipeline mode is only updated at a sync (it would still say idle).
                # One cursor for both (conn.execute makes one per call: ~25 us each).
                control = conn.cursor()
                control.execute("BEGIN")
            yield conn
            committing = True
            if pipe is not None:
                control.execute("COMMIT")
                done, pipe = pipe, None
                done.__exit__(None, None, None)  # the sync: pending statements and COMMIT, one round trip
                control.close()
            else:
                conn.commit()
        except BaseException as err:
            if pipe is not None:
                # Sync and leave pipeline mode (a failed statement aborted what followed it;
                # the sync clears that), then roll back as usual.
                with contextlib.suppress(Exception):
                    pipe.__exit__(None, None, None)
            lost = lost_connection(err)
            healthy = not lost
            if healthy:
                try:
                    conn.rollback()
                except DRIVER_ERRORS as rollback_err:
                    healthy = False
                    log.debug("rollback failed on %s: %s", self.name, self._redact(str(rollback_err)))
            if lost:
                self._mark_suspect()
            self._release(conn, healthy=healthy)
            if isinstance(err, DRIVER_ERRORS) and lost:
                outcome = ("the commit was cut off, so whether it was applied is unknown" if committing
                           else NOTHING_COMMITTED)
                raise ServerUnavailableError(
                    f"lost the connection to the {self.name} server ({self.describe}): "
                    f"{self._redact(first_line(err))}; {outcome}"
                ) from err
            raise
        else:
            self._release(conn, healthy=True)

    def close(self) -> None:
        """Close every idle connection; connections in use close when they come back."""
        with self._lock:
            self._closed = True
            while self._idle:
                conn, _ = self._idle.popleft()
                self._close_quietly(conn)
                self._open -= 1
            self._lock.notify_all()

    @property
    def open_connections(self) -> int:
        """Connections open now, idle or in use."""
        return self._open

    @property
    def idle_connections(self) -> int:
        """Connections waiting in the pool."""
        return len(self._idle)

    def _mark_suspect(self) -> None:
        with self._lock:
            self._suspect_before = time.monotonic()

    # -- internals ----------------------------------------------------------------------

    def _check_fork(self) -> None:
        # A child process must not use sockets inherited from its parent, nor close them:
        # closing sends the server a Terminate on the parent's session. Keep them alive
        # (unused) in the child instead.
        if os.getpid() != self._pid:
            _INHERITED.extend(conn for conn, _ in self._idle)
            self._idle.clear()
            self._open = 0
            self._pid = os.getpid()

    def _acquire(self, timeout: float) -> C:
        deadline = time.monotonic() + timeout
        conn: C | None
        while True:
            with self._lock:
                self._check_fork()
                if self._closed:
                    raise PoolClosedError(f"the {self.name} connection pool is closed")
                if self._idle:
                    conn, last_used = self._idle.pop()  # LIFO: the warmest connection
                elif self._open < self.max_size:
                    self._open += 1
                    conn, last_used = None, 0.0
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise PoolTimeoutError(
                            f"no free connection in the {self.name} pool after "
                            f"{timeout:g}s (connection_timeout): all "
                            f"{self.max_size} are in use (max_connections); release "
                            "connections sooner (nested 'with' blocks?) or raise max_connections"
                        )
                    self._lock.wait(remaining)
                    continue
                suspect = last_used <= self._suspect_before
            if conn is None:
                try:
                    return self._connect()
                except BaseException:
                    with self._lock:
                        self._open -= 1
                        self._lock.notify()
                    raise
            stale = suspect or time.monotonic() - last_used > self.health_check_interval
            if stale and not self._ping(conn):
                log.info("discarding a dead %s from the %s pool", self.kind, self.name)
                self._close_quietly(conn)
                with self._lock:
                    self._open -= 1
                    # Its siblings went through the same restart: check them all.
                    self._suspect_before = time.monotonic()
                    self._lock.notify()
                continue
            return conn

    def _release(self, conn: C, *, healthy: bool) -> None:
        with self._lock:
            if healthy and not self._closed and os.getpid() == self._pid:
                self._idle.append((conn, time.monotonic()))
            else:
                self._close_quietly(conn)
                self._open = max(0, self._open - 1)
            self._lock.notify()

    def _ping(self, conn: C) -> bool:
        try:
            cur = conn.cursor()
            try:
                cur.execute("SELECT 1")
                cur.fetchone()
            finally:
                cur.close()
            conn.rollback()
            return True
        except DRIVER_ERRORS:
            return False

    def _connect(self) -> C:
        attempts = self.connect_attempts
        last: BaseException | None = None
        for attempt in range(1, attempts + 1):
            log.debug("connecting to the %s server (%s), attempt %d/%d",
                      self.name, self.describe, attempt, attempts)
            try:
                conn = self._open_connection()
            except DRIVER_ERRORS as err:
                message = self._redact(first_line(err))
                if any(p in message.lower() for p in _PERMANENT_CONNECT_FAILURES):
                    # Retrying cannot fix a wrong password or a missing database: fail now.
                    raise ServerError(f"cannot connect to the {self.name} server "
                                      f"({self.describe}): {message}") from None
                last = err
                # Said at once, with what happens next: a wait for an unreachable server is
                # never silent (retry_attempts x retry_delay can be a minute).
                log.warning("connecting to the %s server (%s) failed (attempt %d/%d): %s%s",
                            self.name, self.describe, attempt, attempts, message,
                            f"; retrying in {self.retry_delay:g}s" if attempt < attempts else "; giving up")
                if attempt < attempts:
                    time.sleep(self.retry_delay)
                continue
            try:
                self._prepare(conn)
            except DRIVER_ERRORS as err:
                self._close_quietly(conn)
                raise ServerError(f"cannot set up a connection to the {self.name} server "
                                  f"({self.describe}): {self._redact(first_line(err))}"
                                  ) from None
            log.debug("opened a %s to the %s server (%s)", self.kind, self.name, self.describe)
            return conn
        assert last is not None
        tries = (f"{attempts} attempts, {self.retry_delay:g}s apart" if attempts > 1
                 else "1 attempt (retry_attempts = 0)")
        raise ServerUnavailableError(
            f"cannot reach the {self.name} server ({self.describe}) after {tries}: "
            f"{self._redact(first_line(last))}"
        ) from None

    def _open_connection(self) -> C:
        raise NotImplementedError

    def _prepare(self, conn: C) -> None:
        cur = conn.cursor()
        try:
            # created_at defaults and now() follow the storage zone, like the stored timestamps.
            cur.execute(f"SET TIME ZONE {literal(self.time_zone)}")
        finally:
            cur.close()
        conn.commit()

    @staticmethod
    def _close_quietly(conn: Any) -> None:
        # Closing a dead connection may raise; it is gone either way.
        with contextlib.suppress(Exception):
            conn.close()


class ConnectionPool(_Pool[Connection]):
    """Up to ``max_connections`` ADBC connections to one server: bulk COPY, DDL, Arrow reads.

    Example:
        >>> with ConnectionPool.from_settings(settings).connection() as conn:   # doctest: +SKIP
        ...     conn.adbc_ingest(...)
    """

    def _open_connection(self) -> Connection:
        return adbc.connect(self._url)


class LookupPool(_Pool[LookupConnection]):
    """Up to ``max_connections`` psycopg connections for small lookups.

    They run in autocommit mode (a lookup is one statement: no BEGIN/COMMIT round trips)
    and prepare every statement on first use (``prepare_threshold=0``), so a repeated
    lookup is one Bind/Execute round trip. ``commit()``/``rollback()`` in the pool's
    block are no-ops; use :class:`ConnectionPool` for anything that writes.

    Behind a transaction pooler (``pooler = "transaction"``) nothing is prepared: a
    prepared statement lives in one server session, and the pooler hands the next
    statement to whichever session is free (PgBouncer 1.18 answers "prepared statement
    _pg3_0 does not exist", or runs another client's statement of that name). Every
    connection checks that the server's process is the one the connection was given
    (``pg_backend_pid()`` against the BackendKeyData of the login, in the statement the
    connection runs anyway): a pooler gives its clients keys of its own, so one found
    while ``pooler = "none"`` is a :class:`~regime_io.errors.ConfigError` naming the setting,
    before the first prepared statement can go astray.

    Example:
        >>> with LookupPool.from_settings(settings).connection() as conn:       # doctest: +SKIP
        ...     conn.execute("SELECT 1").fetchone()
    """

    kind = "lookup connection"

    def _open_connection(self) -> LookupConnection:
        return psycopg.connect(self._url, autocommit=True,
                               prepare_threshold=None if self.pooler == "transaction" else 0)

    def _prepare(self, conn: LookupConnection) -> None:
        # One unprepared statement, the connection's first: the storage zone (as the ADBC
        # pool's SET TIME ZONE; PgBouncer carries TimeZone from session to session), the plan
        # cache mode and the pooler check. Unprepared, so it cannot meet a prepared
        # statement of the same name that another client left in a pooled server session.
        #
        # Lookups are index-driven whatever their parameters, so one generic plan per
        # prepared statement is right; PostgreSQL's default keeps re-planning them (the
        # custom plan looks cheaper), which for a latest-row query over 13 monthly
        # partitions cost 0.5 ms of a 0.75 ms call (generic: 0.25 ms). Run-time partition
        # pruning still applies to parameters. A Citus coordinator cannot plan a
        # parameterised multi-table query (the latest-row join with the series catalog)
        # generically ("could not create distributed plan"): there the server's default
        # (auto) stays, and Citus caches its own router plans. Behind a transaction pooler
        # nothing is prepared, and a session setting would stay in the server session for
        # other clients: not set.
        plan = "" if self.pooler == "transaction" else (
            ", set_config('plan_cache_mode', CASE WHEN EXISTS (SELECT 1 FROM pg_extension WHERE extname = "
            "'citus') THEN 'auto' ELSE 'force_generic_plan' END, false)")
        row = conn.execute(f"SELECT pg_backend_pid(), set_config('TimeZone', {literal(self.time_zone)}, false)"
                           f"{plan}", prepare=False).fetchone()
        announced = conn.info.backend_pid
        if self.pooler == "none" and row is not None and row[0] != announced:
            self._close_quietly(conn)
            raise ConfigError([
                f"pooler: the {self.name} server ({self.describe}) answers through a connection pooler "
                f"(the server process {row[0]} is not the {announced} the login announced); set "
                "[CONNECTION] pooler = transaction (REGIME_IO_POOLER=transaction) when it pools transactions "
                "(PgBouncer pool_mode = transaction), pooler = session when it pools sessions, or connect "
                "to PostgreSQL directly (docs/configuration.md, 'Behind PgBouncer')"])


# Connections a forked child inherited: never used, never closed (see _Pool._check_fork).
_INHERITED: list[Any] = []
