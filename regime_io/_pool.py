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
    >>> pool = ConnectionPool(settings)                       # doctest: +SKIP
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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as adbc
import psycopg
from adbc_driver_manager.dbapi import Connection

from ._sql import literal
from .config import Settings, settings_replace
from .errors import PoolClosedError, PoolTimeoutError, ServerError, ServerUnavailableError

__all__ = ["Connection", "ConnectionPool", "LookupConnection", "LookupPool", "is_connection_error",
           "lost_before_commit", "resolve_server"]

LookupConnection = psycopg.Connection[Any]
C = TypeVar("C", Connection, LookupConnection)
# What either driver raises; the pool classifies both alike.
DRIVER_ERRORS: tuple[type[Exception], ...] = (adbc_driver_manager.Error, psycopg.Error)

log = logging.getLogger(__name__)

# SQLSTATE classes that mean "the connection, not the data": 08 connection exceptions,
# 57P01-57P03 admin shutdown / crash shutdown / cannot connect now.
_CONNECTION_SQLSTATES = ("08", "57P01", "57P02", "57P03")
_LOST_CONNECTION = ("server closed the connection", "failed to connect", "connection to server",
                    "no connection to the server", "could not receive data", "could not send data",
                    "terminating connection", "connection refused", "broken pipe", "ssl syscall",
                    "connection timed out", "timeout expired", "connection reset",
                    # psycopg's own words for a connection it found dead or closed.
                    "the connection is lost", "the connection is closed", "consuming input failed")
# Connect failures that retrying cannot fix: credentials, names, bad options. Everything
# else (refused, timed out, "starting up", "too many connections") is retried.
_PERMANENT_CONNECT_FAILURES = ("password authentication failed", "authentication failed",
                               "does not exist", "no pg_hba.conf entry", "not permitted to log in",
                               "permission denied", "invalid connection option", "invalid sslmode",
                               "invalid integer value", "invalid port", "certificate",
                               "ssl is not enabled", "does not support ssl", "password is required",
                               "no password supplied")


_NOTHING_COMMITTED = "nothing from this call was committed"


def is_connection_error(err: BaseException) -> bool:
    """True when ``err`` is about the connection (retry-safe), not about the data."""
    if isinstance(err, ServerUnavailableError):
        return True
    if not isinstance(err, DRIVER_ERRORS):
        return False
    sqlstate = getattr(err, "sqlstate", None) or ""
    if sqlstate.startswith(_CONNECTION_SQLSTATES):
        return True
    # ADBC reports many things as status IO (even "current transaction is aborted"), so
    # look for libpq's own words for a lost or refused connection.
    text = str(err).lower()
    operational = isinstance(err, (adbc_driver_manager.OperationalError, psycopg.OperationalError))
    return operational and any(m in text for m in _LOST_CONNECTION)


def _lost_connection(err: BaseException) -> bool:
    """True when ``err``, or an error it was raised from, is a lost connection.

    Writers wrap driver errors (``raise WriteError(...) from err``); the pool still has to
    know that the connection underneath is gone.
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DRIVER_ERRORS) and is_connection_error(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def lost_before_commit(err: BaseException) -> bool:
    """True when ``err`` is the pool's report of a connection that died during a block,
    before its commit: the server has nothing of that block, so running it again is safe.
    (Not a failed connect, which the pool already retried, nor a cut-off commit.)"""
    return (isinstance(err, ServerUnavailableError) and not isinstance(err, PoolTimeoutError)
            and isinstance(err.__cause__, DRIVER_ERRORS) and _NOTHING_COMMITTED in err.message)


def resolve_server(settings: Settings) -> Settings:
    """Settings pointing at a concrete server: the configured one, or the embedded server
    (started on first use, reused afterwards)."""
    if not settings.embedded:
        return settings
    from . import _embedded as embedded

    server = embedded.start(settings.embedded_dir)
    return settings_replace(settings, host=server.socket_dir, port=server.port,
                            user=server.user, database=server.database)


class _Pool(Generic[C]):
    """Up to ``max_connections`` connections to one server; subclasses open and ping them.

    Parameters:
        settings: resolved settings (see :func:`resolve_server`).
        url: connect here instead of ``settings.url()`` (read replicas).
        name: shown in logs and errors ("primary", "replica 1").
    """

    #: Shown in logs ("a connection", "a lookup connection").
    kind = "connection"

    def __init__(self, settings: Settings, *, url: str | None = None, name: str = "primary") -> None:
        self.settings = settings
        self.name = name
        self._url = url if url is not None else settings.url(redact=False)
        self._idle: deque[tuple[C, float]] = deque()
        self._open = 0
        self._lock = threading.Condition()
        self._closed = False
        self._pid = os.getpid()
        # Idle connections returned before this moment are pinged before reuse whatever
        # their age: set when any connection of the pool is found dead (server restart).
        self._suspect_before = 0.0

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.name} {self.settings.describe()} open={self._open} "
                f"idle={len(self._idle)}>")

    # -- public -------------------------------------------------------------------------

    @contextmanager
    def connection(self) -> Iterator[C]:
        """A connection in a transaction: commit on success, roll back on error.

        Raises:
            PoolTimeoutError: every connection stayed busy for ``connection_timeout`` seconds.
            ServerUnavailableError: the server cannot be reached (after the retries), or the
                connection died during the block (nothing was committed, unless the commit
                itself was cut off: then the message says the outcome is unknown).
            ServerError: the server refuses the login (bad password, unknown database).
        """
        conn = self._acquire()
        committing = False
        try:
            yield conn
            committing = True
            conn.commit()
        except BaseException as err:
            lost = _lost_connection(err)
            healthy = not lost
            if healthy:
                try:
                    conn.rollback()
                except DRIVER_ERRORS as rollback_err:
                    healthy = False
                    log.debug("rollback failed on %s: %s", self.name, self.settings.redact(str(rollback_err)))
            if lost:
                self._mark_suspect()
            self._release(conn, healthy=healthy)
            if isinstance(err, DRIVER_ERRORS) and lost:
                outcome = ("the commit was cut off, so whether it was applied is unknown" if committing
                           else _NOTHING_COMMITTED)
                raise ServerUnavailableError(
                    f"lost the connection to the {self.name} server ({self.settings.describe()}): "
                    f"{self.settings.redact(_first_line(err))}; {outcome}"
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

    def _acquire(self) -> C:
        deadline = time.monotonic() + self.settings.connection_timeout
        conn: C | None
        while True:
            with self._lock:
                self._check_fork()
                if self._closed:
                    raise PoolClosedError(f"the {self.name} connection pool is closed")
                if self._idle:
                    conn, last_used = self._idle.pop()  # LIFO: the warmest connection
                elif self._open < self.settings.max_connections:
                    self._open += 1
                    conn, last_used = None, 0.0
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise PoolTimeoutError(
                            f"no free connection in the {self.name} pool after "
                            f"{self.settings.connection_timeout:g}s (connection_timeout): all "
                            f"{self.settings.max_connections} are in use (max_connections); release "
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
            stale = suspect or time.monotonic() - last_used > self.settings.health_check_interval
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
        attempts = 1 + self.settings.retry_attempts
        last: BaseException | None = None
        for attempt in range(1, attempts + 1):
            log.debug("connecting to the %s server (%s), attempt %d/%d",
                      self.name, self.settings.describe(), attempt, attempts)
            try:
                conn = self._open_connection()
            except DRIVER_ERRORS as err:
                message = self.settings.redact(_first_line(err))
                if any(p in message.lower() for p in _PERMANENT_CONNECT_FAILURES):
                    # Retrying cannot fix a wrong password or a missing database: fail now.
                    raise ServerError(f"cannot connect to the {self.name} server "
                                      f"({self.settings.describe()}): {message}") from None
                last = err
                log.warning("connecting to the %s server failed (attempt %d/%d): %s",
                            self.name, attempt, attempts, message)
                if attempt < attempts:
                    time.sleep(self.settings.retry_delay)
                continue
            try:
                self._prepare(conn)
            except DRIVER_ERRORS as err:
                self._close_quietly(conn)
                raise ServerError(f"cannot set up a connection to the {self.name} server "
                                  f"({self.settings.describe()}): {self.settings.redact(_first_line(err))}"
                                  ) from None
            log.debug("opened a %s to the %s server (%s)", self.kind, self.name, self.settings.describe())
            return conn
        assert last is not None
        tries = (f"{attempts} attempts, {self.settings.retry_delay:g}s apart" if attempts > 1
                 else "1 attempt (retry_attempts = 0)")
        raise ServerUnavailableError(
            f"cannot reach the {self.name} server ({self.settings.describe()}) after {tries}: "
            f"{self.settings.redact(_first_line(last))}"
        ) from None

    def _open_connection(self) -> C:
        raise NotImplementedError

    def _prepare(self, conn: C) -> None:
        cur = conn.cursor()
        try:
            # created_at defaults and now() follow the storage zone, like the stored timestamps.
            cur.execute(f"SET TIME ZONE {literal(self.settings.storage_timezone)}")
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
        >>> with ConnectionPool(settings).connection() as conn:   # doctest: +SKIP
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

    Example:
        >>> with LookupPool(settings).connection() as conn:       # doctest: +SKIP
        ...     conn.execute("SELECT 1").fetchone()
    """

    kind = "lookup connection"

    def _open_connection(self) -> LookupConnection:
        return psycopg.connect(self._url, autocommit=True, prepare_threshold=0)

    def _prepare(self, conn: LookupConnection) -> None:
        super()._prepare(conn)
        # Lookups are index-driven whatever their parameters, so one generic plan per
        # prepared statement is right; PostgreSQL's default keeps re-planning them (the
        # custom plan looks cheaper), which for a latest-row query over 13 monthly
        # partitions cost 0.5 ms of a 0.75 ms call (generic: 0.25 ms). Run-time partition
        # pruning still applies to parameters.
        conn.execute("SET plan_cache_mode = force_generic_plan")


# Connections a forked child inherited: never used, never closed (see _Pool._check_fork).
_INHERITED: list[Any] = []


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    # ADBC prefixes messages with the status ("IO: [libpq] ..."); keep the useful part.
    return " ".join(text.split("\n")[:2]).replace("\t", " ")
