"""The connection hub every reader, writer and maintenance function takes as ``db``.

It owns the resolved settings (the embedded server is started on first use), the
primary connection pool, the read-replica choice and the partition cache. Users normally
meet it through :class:`regime_io.PostgreSQLIntegration`, which wraps one.

Example:
    >>> from regime_io.database import Database
    >>> from regime_io.config import load_settings
    >>> db = Database(load_settings(env={}))        # doctest: +SKIP
    >>> with db.connection() as conn: ...           # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from adbc_driver_manager.dbapi import Connection

from .._sql.names import metadata_table, qualified_table
from .._sql.query import Query
from .._sql.quote import literal
from ..config import Settings
from ..errors import PoolClosedError, PoolTimeoutError, ReadError
from ..tables import DEFAULT_PRICE_SCALE, TableKey, TableSpec, table_spec
from .engines import read_lookup
from .partitions import PartitionCache
from .pool import ConnectionPool, LookupConnection, LookupPool, resolve_server
from .replicas import Replica, ReplicaSet, choose

__all__ = ["Database"]


def _end_snapshot(conn: Connection) -> None:
    """End a :meth:`Database.snapshot_connections` transaction (read-only: ROLLBACK
    loses nothing, and also ends one a failed statement aborted), back in the pool's mode."""
    with contextlib.suppress(Exception):
        cur = conn.cursor()
        try:
            cur.execute("ROLLBACK")
        finally:
            cur.close()
    # A connection still in autocommit fails the pool's own commit/rollback and is closed.
    with contextlib.suppress(Exception):
        conn.adbc_connection.set_autocommit(False)


P = TypeVar("P", ConnectionPool, LookupPool)


class Database:
    """Settings + pool + partition cache for one server (and its read replicas)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.partitions = PartitionCache()
        # Tables whose reads met sealed chunks (or that this process sealed): their reads
        # fetch chunks first (regime_io._tiers.router); the others start with one statement.
        self.sealed_tables: set[str] = set()
        # Sealable tables none of whose chunks predates ``last_row`` (schema version 8), as
        # found by a latest-row read: their later latest-row reads skip the lookup of such
        # chunks, a second statement that cost ~0.2 ms of a 0.78 ms get_latest. This version
        # writes ``last_row`` with every chunk, so the answer stays true until
        # ``initialize_database`` upgrades an older schema (which forgets it).
        self.last_rows_complete: set[str] = set()
        self._resolved: Settings | None = None
        self._pool: ConnectionPool | None = None
        self._lookup_pool: LookupPool | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.replicas: ReplicaSet | None = None  # created on the first read when replicas are configured
        # The schema's metadata table (storage zone, price scale, per-table time kinds), read once.
        self._metadata: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"<Database {self.settings.describe()}>"

    @property
    def resolved(self) -> Settings:
        """Settings pointing at a concrete server (starts the embedded one if needed)."""
        if self._resolved is None:
            with self._lock:
                if self._resolved is None:
                    self._resolved = resolve_server(self.settings)
        return self._resolved

    @property
    def pool(self) -> ConnectionPool:
        """The primary server's pool (writers always use it)."""
        if self._pool is None:
            self._pool = self._create_once("_pool", ConnectionPool.from_settings)
        return self._pool

    @property
    def lookup_pool(self) -> LookupPool:
        """The primary server's lookup pool (psycopg, autocommit): small reads only."""
        if self._lookup_pool is None:
            self._lookup_pool = self._create_once("_lookup_pool", LookupPool.from_settings)
        return self._lookup_pool

    def _create_once(self, attribute: str, make: Callable[[Settings], P]) -> P:
        """The pool in ``attribute``, created from the resolved settings by the first
        thread to get here (the others wait and reuse it)."""
        resolved = self.resolved
        with self._lock:
            if self._closed:
                raise PoolClosedError(f"this Database ({self.settings.describe()}) was closed; create a new one")
            if getattr(self, attribute) is None:
                setattr(self, attribute, make(resolved))
            return getattr(self, attribute)  # type: ignore[no-any-return]

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A primary connection in a transaction (commit on success, rollback on error)."""
        with self.pool.connection() as conn:
            yield conn

    def table(self, name: str) -> str:
        """The quoted, schema-qualified name of a table (by key or seed config key)."""
        return qualified_table(table_spec(name), self.settings)

    def table_name(self, key: TableKey) -> str:
        return self.settings.table_name(key)

    def metadata(self) -> dict[str, str]:
        """What the schema recorded about itself at ``initialize_database`` (the storage zone,
        ``price_scale``) and on first writes (each table's time kind), read once per Database
        on the primary. A recorded value does not change, so the copy does not go stale (a
        time kind recorded later by another process is found by the write transaction's own
        check, ``regime_io._schema.timezones``), with one exception: ``price_scale`` widened
        by ``initialize_database(widen_prices=True)``, which other processes see when they
        restart (docs/schema.md). Empty when the schema has no metadata table (not
        initialised yet); that answer is not kept."""
        if self._metadata is not None:
            return self._metadata
        try:
            table = read_lookup(self, Query(), f"SELECT key, value FROM {metadata_table(self.resolved)}",
                                what="schema metadata", primary=True)
        except ReadError:  # no metadata table: not initialised, or by a regime_io older than schema version 3
            return {}
        found = {str(r["key"]): str(r["value"]) for r in table.to_pylist()}
        with self._lock:
            if self._metadata is None:
                self._metadata = found
            return self._metadata

    def remember(self, key: str, value: str) -> None:
        """Add a value just recorded in the metadata table to this Database's copy."""
        with self._lock:
            if self._metadata is not None:
                self._metadata[key] = value

    def forget_metadata(self) -> None:
        """Read the metadata again on next use (after ``initialize_database`` recorded or changed
        it), and look for chunks from before schema version 8 again (it may have upgraded)."""
        with self._lock:
            self._metadata = None
            self.last_rows_complete.clear()  # an upgrade may have found chunks from before version 8

    @property
    def price_scale(self) -> int:
        """The decimals of the schema's price columns: the ``price_scale`` recorded in the
        schema, whatever this client's configuration says (a client configured with the
        default reads a scale-6 schema exactly). Before ``initialize_database`` (or when
        disabled): the configured one."""
        metadata = self.metadata() if self.settings.enabled else {}
        if not metadata:
            return self.settings.price_scale
        # A schema initialised before price_scale existed has the seed's NUMERIC(10,2).
        return int(metadata.get("price_scale", DEFAULT_PRICE_SCALE))

    def spec(self, name: str) -> TableSpec:
        """The declaration of table ``name`` (any name :func:`~regime_io.tables.table_spec`
        takes) as this schema stores it: price columns at :attr:`price_scale`. Tables without
        prices never ask the server."""
        spec = table_spec(name)
        return table_spec(spec.key, price_scale=self.price_scale) if spec.price_columns else spec

    def replica(self, kind: str) -> Replica | None:
        """The healthy (and, with read-your-writes, caught-up) replica the next read of
        ``kind`` ("url", "connection", "lookup") uses; None: the primary."""
        if not self.settings.read_replicas:
            return None
        if self.replicas is None:
            resolved = self.resolved
            with self._lock:
                if self._closed:
                    raise PoolClosedError(f"this Database ({self.settings.describe()}) was closed; create a new one")
                if self.replicas is None:
                    self.replicas = ReplicaSet(resolved)
        return choose(self.replicas, kind, primary=self.settings, primary_lookup=self.lookup_pool)

    def read_url(self) -> str:
        """The URL connectorx reads from: a healthy replica when configured, else the primary."""
        replica = self.replica("url")
        return (self.resolved if replica is None else replica.settings).url(redact=False)

    @contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """A pooled connection for point reads: a replica's when configured, else the
        primary's, in autocommit mode for the block: a read is one statement, and the
        driver's ``BEGIN`` and ``COMMIT`` around it were two round trips (~0.3 ms of a
        1.6 ms read of one symbol-day, measured A/B). Switching the mode costs none.

        Behind a transaction pooler (``pooler = "transaction"``) the read keeps its
        transaction: the driver prepares a statement (unnamed) and runs it in two exchanges,
        and in autocommit the pooler may hand the second to another server session ("unnamed
        prepared statement does not exist", seen with two server connections and six clients)."""
        replica = self.replica("connection")
        with (self.pool if replica is None else replica.pool).connection() as conn:
            if self.settings.pooler == "transaction":
                yield conn
                return
            conn.adbc_connection.set_autocommit(True)
            try:
                yield conn
            except BaseException:
                # Keep the read's error (the pool sorts out a connection that died): a
                # connection still in autocommit fails the pool's rollback and is closed.
                with contextlib.suppress(Exception):
                    conn.adbc_connection.set_autocommit(False)
                raise
            conn.adbc_connection.set_autocommit(False)

    @contextmanager
    def snapshot_connections(self, n: int) -> Iterator[list[Connection]]:
        """Up to ``n`` pooled read connections to one server (a replica's when configured,
        else the primary's), each in a read-only ``REPEATABLE READ`` transaction on the same
        snapshot (exported by the first, imported by the others, as ``pg_dump --jobs``
        does): statements run on them at once see the same rows, as one statement would.

        The first connection is waited for as usual; the others only if free now (one
        read holding a connection while waiting for another could wait forever on a
        pool at ``max_connections``), so the list may be shorter than ``n``. The
        transactions end when the block does; the connections go back to the pool.
        """
        replica = self.replica("connection")
        pool = self.pool if replica is None else replica.pool
        with contextlib.ExitStack() as stack:
            conns = [stack.enter_context(pool.connection())]
            for _ in range(n - 1):
                try:
                    conns.append(stack.enter_context(pool.connection(wait=False)))
                except PoolTimeoutError:
                    break
            cursors = []
            for conn in conns:
                # Our own BEGIN/COMMIT in autocommit (the driver's BEGIN would come first and
                # fix the isolation level); behind a transaction pooler the explicit
                # transaction keeps one server session for its statements.
                conn.adbc_connection.set_autocommit(True)
                stack.callback(_end_snapshot, conn)
                cur = conn.cursor()
                cursors.append(cur)
                cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            if len(conns) > 1:
                cursors[0].execute("SELECT pg_export_snapshot()")
                (snapshot,) = cursors[0].fetchone() or ("",)
                for cur in cursors[1:]:
                    cur.execute(f"SET TRANSACTION SNAPSHOT {literal(str(snapshot))}")
            for cur in cursors:
                cur.close()
            yield conns

    @contextmanager
    def lookup_connection(self) -> Iterator[LookupConnection]:
        """A lookup connection (autocommit, prepared statements): a replica's when
        configured, else the primary's."""
        replica = self.replica("lookup")
        with (self.lookup_pool if replica is None else replica.lookup_pool).connection() as conn:
            yield conn

    def redact(self, text: str) -> str:
        return self.settings.redact(text)

    def close(self) -> None:
        """Release every connection (primary and replicas). The embedded server keeps running.

        Later calls raise :class:`~regime_io.errors.PoolClosedError`.
        """
        with self._lock:
            self._closed = True
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._lookup_pool is not None:
            self._lookup_pool.close()
            self._lookup_pool = None
        with self._lock:
            replicas, self.replicas = self.replicas, None
        if replicas is not None:
            replicas.close()
