"""The three read drivers behind one call each: connectorx, ADBC and pooled psycopg lookups."""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

from .._sql.query import Query
from ..config import Settings
from ..errors import ServerUnavailableError
from .driver_errors import DRIVER_ERRORS, lost_before_commit, wrap_error
from .pipeline import OID_TYPES

if TYPE_CHECKING:
    from .database import Database

log = logging.getLogger(__name__)


T = TypeVar("T")


# ---------------------------------------------------------------------------------------
# Engines


# What connectorx (0.4: rust-postgres 0.19 with its own OpenSSL set-up,
# sources/postgres/connection.rs) does as libpq does. Its sslmode is one of disable,
# prefer, require ("allow", "verify-ca" and "verify-full" fail: "invalid value for option
# 'sslmode'"); require verifies the server against sslrootcert when one is given (libpq's
# require does the same) and never checks the host name; sslcrl and sslpassword are
# unknown options. It reads neither .pgpass, the PG* environment nor ~/.postgresql/.
_CX_SSLMODES = ("disable", "prefer", "require")
_CX_OPTIONS = frozenset({"sslmode", "sslrootcert", "application_name", "target_session_attrs"})
# libpq settings taken from the environment when the URL does not name them.
_LIBPQ_ENV = ("PGSSLMODE", "PGREQUIRESSL", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY", "PGSSLCRL", "PGSSLCRLDIR",
              "PGSSLCERTMODE", "PGSSLNEGOTIATION", "PGSSLMINPROTOCOLVERSION", "PGSSLMAXPROTOCOLVERSION",
              "PGGSSENCMODE", "PGCHANNELBINDING", "PGTARGETSESSIONATTRS", "PGOPTIONS", "PGSERVICE")
_told: set[str] = set()  # reasons already logged (once per process each)


def cx_refusal(settings: Settings) -> str | None:
    """Why connectorx cannot open this connection as libpq would (None: it can).

    The one place that decides which reads connectorx serves: a connection setting it
    would ignore or refuse (TLS verification, client certificates, a password from
    .pgpass or the environment, a session requirement) moves its reads to ADBC and
    psycopg, which are libpq, so no read connects with weaker TLS or other credentials
    than the writers do.
    """
    if settings.pooler == "transaction":
        # connectorx prepares named statements ("s8") and runs them in later exchanges, which
        # a transaction pooler sends to other server sessions: PgBouncer 1.18 answers
        # "prepared statement s8 does not exist", or a stream hangs (its CloseComplete comes
        # back after PgBouncer has let the session go: "got packet '3' from server when not linked").
        return "pooler = transaction"
    options = settings.libpq_options
    mode = options.get("sslmode", "prefer")
    if mode not in _CX_SSLMODES:
        return f"sslmode={mode}"
    other = sorted(set(options) - _CX_OPTIONS)
    if other:
        return ", ".join(other)
    if options.get("target_session_attrs", "any") != "any":
        return f"target_session_attrs={options['target_session_attrs']}"
    env = [name for name in _LIBPQ_ENV if os.environ.get(name)]
    if env:
        return f"{', '.join(env)} in the environment"
    if not settings.password:
        if os.environ.get("PGPASSWORD"):
            return "the password in PGPASSWORD"
        passfile = Path(os.environ.get("PGPASSFILE") or Path.home() / ".pgpass")
        if passfile.is_file():
            return f"the password file {passfile}"
    if mode != "disable":
        defaults = Path.home() / ".postgresql"
        if (defaults / "postgresql.crt").is_file():
            return f"the client certificate {defaults / 'postgresql.crt'}"
        if mode == "require" and "sslrootcert" not in options and (defaults / "root.crt").is_file():
            return f"the root certificate {defaults / 'root.crt'} (libpq verifies the server with it)"
    return None


def _cx_settings(db: Database) -> Settings | None:
    """The settings a connectorx read connects with (a healthy replica's when configured,
    checked to answer first: fail fast, with the configured retries, when the server is
    down), or None: connectorx cannot honour them (:func:`cx_refusal`), the read goes
    to ADBC.

    connectorx's connection pool keeps retrying for a fixed 30 s whatever the settings
    say. With replicas, choosing one already checks it on its lookup pool; otherwise (or
    when none is healthy) the primary runs ``SELECT 1`` on a lookup connection (one
    round trip), which raises ServerUnavailableError after ``retry_attempts``. It runs a
    query rather than only taking a connection: one used less than
    ``health_check_interval`` ago is handed out unpinged, and the server may have died
    since (read_lookup then runs the check once more on a fresh connection).
    """
    replica = db.replica("url")
    settings = db.resolved if replica is None else replica.settings
    why = cx_refusal(settings)
    if why is not None:
        if why not in _told:
            _told.add(why)
            log.info("connectorx cannot honour %s: its reads (resampling, as-of joins, streams) go to ADBC", why)
        return None
    if replica is None:
        read_lookup(db, Query(), "SELECT 1", what="connection check", primary=True)
    return settings


def read_cx(db: Database, q: Query, sql: str, *, what: str, table: str | None = None) -> pa.Table:
    """Run a range query with connectorx; return an Arrow table. On ADBC when connectorx
    cannot honour the connection's settings (:func:`cx_refusal`)."""
    import connectorx as cx

    settings = _cx_settings(db)
    text = q.inline(sql)
    if settings is None:
        return read_adbc(db, Query(), text, what=what, table=table)
    log.debug("connectorx: %s", text)
    try:
        return cx.read_sql(settings.url(redact=False), text, return_type="arrow")
    except Exception as err:
        raise wrap_error(db, err, what=what, table=table) from err


def stream_cx(db: Database, q: Query, sql: str, *, batch_rows: int, what: str,
              table: str | None = None) -> Iterator[pa.RecordBatch]:
    """Stream a query with connectorx (``arrow_stream``): batches of ``batch_rows`` rows.
    Over ADBC (:func:`stream_adbc`) when connectorx cannot honour the connection's settings."""
    import connectorx as cx

    settings = _cx_settings(db)
    if settings is None:
        yield from stream_adbc(db, q, sql, batch_rows=batch_rows, what=what, table=table)
        return
    text = q.inline(sql)
    log.debug("connectorx stream (%d rows/batch): %s", batch_rows, text)
    try:
        reader = cx.read_sql(settings.url(redact=False), text, return_type="arrow_stream", batch_size=batch_rows)
    except Exception as err:
        raise wrap_error(db, err, what=what, table=table) from err
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as err:
            # A connection reset mid-stream surfaces as pyo3's PanicException ("cx writer
            # failed"), a BaseException: still a driver failure, mapped like the others.
            raise wrap_error(db, err, what=what, table=table) from err
        yield batch


def stream_adbc(db: Database, q: Query, sql: str, *, batch_rows: int, what: str,
                table: str | None = None) -> Iterator[pa.RecordBatch]:
    """Stream a query over the pool's warm ADBC connection, in batches of at most ``batch_rows``.

    Values are inlined (as for connectorx), so the driver reads the result with ``COPY
    (query) TO STDOUT (FORMAT binary)`` as it arrives instead of holding it in libpq; the
    connection is held until the stream ends or is closed. The same driver and settings
    (TLS, ``.pgpass``, the pool's limits) as every other ADBC read.
    """
    text = q.inline(sql)
    log.debug("adbc stream (%d rows/batch): %s", batch_rows, text)
    with db.read_connection() as conn:
        cur = conn.cursor()
        try:
            try:
                cur.execute(text)
                reader = cur.fetch_record_batch()
            except (*DRIVER_ERRORS, pa.ArrowException, OSError) as err:
                raise wrap_error(db, err, what=what, table=table) from err
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except (*DRIVER_ERRORS, pa.ArrowException, OSError) as err:
                    raise wrap_error(db, err, what=what, table=table) from err
                for offset in range(0, batch.num_rows, batch_rows):
                    yield batch.slice(offset, batch_rows)
        finally:
            cur.close()


def pooled_read(db: Database, run: Callable[[], T], *, what: str, table: str | None) -> T:
    """``run()`` (a read on a pooled connection), once more if its connection had died
    unnoticed; driver errors become library errors."""
    for attempt in (1, 2):
        try:
            return run()
        except (*DRIVER_ERRORS, pa.ArrowException, OSError) as err:
            # ADBC reads through COPY report server errors as Arrow I/O errors (OSError).
            raise wrap_error(db, err, what=what, table=table) from err
        except ServerUnavailableError as err:
            # An idle connection that died unnoticed (a quick server restart): the pool now
            # checks the others; a read is always safe to run once more.
            if attempt == 2 or not lost_before_commit(err):
                raise
            log.info("%s: its connection had died; running the read once more", what)
    raise AssertionError("unreachable")


def read_adbc(db: Database, q: Query, sql: str, *, what: str, table: str | None = None) -> pa.Table:
    """Run a point query on the pool's warm connection with bound parameters."""
    log.debug("adbc: %s %r", sql, q.params)

    def run() -> pa.Table:
        with db.read_connection() as conn:
            cur = conn.cursor()
            try:
                cur.execute(sql, parameters=tuple(q.params) if q.params else None)
                return cur.fetch_arrow_table()
            finally:
                cur.close()

    return pooled_read(db, run, what=what, table=table)



# Statements a large read runs at once (one snapshot, one connection each). Two: on the
# 2-core machine of docs/performance.md, every bar of the benchmark table (1M rows, 10
# symbols) took 0.76 s as one statement and 0.54 s as two of five symbols each; the
# server's formatting of the rows (one core per statement) is most of that time.
TOGETHER = 2


def together(db: Database) -> int:
    """How many statements one read may run at once: :data:`TOGETHER`; 1 on Citus (the
    coordinator already spreads a statement over the workers' shards, and an exported
    snapshot does not reach the transactions it opens on them) and behind a transaction
    pooler (the driver sends the ``BEGIN`` that opens the shared snapshot in two exchanges,
    which the pooler may hand to two server sessions)."""
    return 1 if db.settings.citus or db.settings.pooler == "transaction" else TOGETHER


def read_adbc_together(db: Database, statements: Sequence[tuple[Query, str]], *, what: str,
                       table: str | None = None) -> list[pa.Table]:
    """The answers of several statements of one read, run at once on pooled connections
    that share one snapshot (:meth:`~regime_io._conn.database.Database.snapshot_connections`):
    together they see the rows one statement would. The caller's thread runs the first,
    worker threads the others (the driver fetches without the GIL); with fewer connections
    free than statements, a connection runs the rest one after the other, still in the
    same snapshot. Values are inlined, as for any large read (the driver then streams the
    result through ``COPY``)."""
    texts = [q.inline(sql) for q, sql in statements]
    for text in texts:
        log.debug("adbc (together): %s", text)

    def fetch(conn: Any, mine: Sequence[str]) -> list[pa.Table]:
        out = []
        for text in mine:
            cur = conn.cursor()
            try:
                cur.execute(text)
                out.append(cur.fetch_arrow_table())
            finally:
                cur.close()
        return out

    def run() -> list[pa.Table]:
        with db.snapshot_connections(len(texts)) as conns:
            shares = [texts[i::len(conns)] for i in range(len(conns))]
            others = [_fetchers().submit(fetch, conn, share) for conn, share in zip(conns[1:], shares[1:],
                                                                                     strict=True)]
            try:
                got = [fetch(conns[0], shares[0])]
            finally:
                wait(others)  # the connections go back to the pool only when idle
            got += [f.result() for f in others]
        # share i holds statements i, i + len(conns), ...: back in the statements' order
        return [got[i % len(got)][i // len(got)] for i in range(len(texts))]

    return pooled_read(db, run, what=what, table=table)


def read_lookup(db: Database, q: Query, sql: str, *, what: str, table: str | None = None,
                primary: bool = False) -> pa.Table:
    """Run a small query on a warm lookup connection (psycopg, prepared); an Arrow table.

    For results of a few rows (one per series): the rows come back as Python values, which
    is cheap at that size and costs one round trip. Large results belong to :func:`read_adbc`.
    ``primary``: on the primary even when read replicas are configured.
    """
    return read_lookups(db, [(q, sql)], what=what, table=table, primary=primary)[0]


def lookup_records(db: Database, q: Query, sql: str, *, what: str, table: str | None = None) -> list[dict[str, Any]]:
    """:func:`read_lookup`'s rows as dicts of Python values instead of an Arrow table: for
    a few rows carrying large ``bytea`` values (sealed payloads), which a table would first
    copy into one Arrow buffer (17 MB for 1M bars: ~5 ms) before each is decoded anyway."""
    (rows, description), = _lookups(db, [(q, sql)], what=what, table=table, primary=False)
    names = [col.name for col in description]
    return [dict(zip(names, row, strict=True)) for row in rows]


def stream_records(db: Database, q: Query, sql: str, *, what: str,
                   table: str | None = None) -> Iterator[dict[str, Any]]:
    """:func:`lookup_records`' rows as they arrive, for results of many large rows (the
    sealed chunks of a wide read): a worker thread receives them (psycopg waits on the
    socket without the GIL) while the caller decodes the ones already here. Every bar of
    the benchmark (30 chunks, 17 MB): fetch 9.6 ms and decode 31 ms took 41.4 ms one after
    the other, 36.5 ms overlapped.

    Errors are raised in the caller as :func:`lookup_records` raises them; a connection
    that had died unnoticed is retried once, as there, if no row has arrived yet. The
    caller should consume the iterator: leaving it early waits for the worker to finish
    receiving.
    """
    text, params = q.pyformat(sql)
    log.debug("lookup (streamed): %s %r", sql, q.params)
    arrived: queue.SimpleQueue[Any] = queue.SimpleQueue()
    sent = [0]

    def receive() -> None:
        with db.lookup_connection() as conn, conn.cursor(binary=True) as cur:
            names: list[str] | None = None
            for row in cur.stream(text, params):
                if names is None:
                    names = [col.name for col in cur.description or []]
                arrived.put(dict(zip(names, row, strict=True)))
                sent[0] += 1
            # libpq (18, psycopg 3.3) keeps single-row mode for the next query sent in
            # pipeline mode, after a pipeline had run on the connection before this stream:
            # the next batch of lookups failed with "unexpected result status from query:
            # SINGLE_TUPLE". A statement sent outside a pipeline resets it (while the caller
            # is still decoding, so it costs no time).
            cur.execute("SELECT 1")

    def work() -> None:
        try:
            for attempt in (1, 2):
                try:
                    receive()
                    break
                except ServerUnavailableError as err:
                    if attempt == 2 or sent[0] or not lost_before_commit(err):
                        raise
                    log.info("%s: its connection had died; running the read once more", what)
        except BaseException as err:  # handed to the caller, which raises it
            arrived.put(_Failed(err))
        finally:
            arrived.put(_END)

    worker = _fetchers().submit(work)
    try:
        while (item := arrived.get()) is not _END:
            if isinstance(item, _Failed):
                err = item.error
                if isinstance(err, (*DRIVER_ERRORS, OSError)):
                    raise wrap_error(db, err, what=what, table=table) from err
                raise err
            yield item
    finally:
        worker.result()


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_END = object()
_FETCHERS: list[ThreadPoolExecutor] = []
_FETCHERS_LOCK = threading.Lock()


def _fetchers() -> ThreadPoolExecutor:
    """The worker threads of :func:`stream_records`, started once (a thread started per read
    cost ~0.1 ms)."""
    with _FETCHERS_LOCK:
        if not _FETCHERS:
            _FETCHERS.append(ThreadPoolExecutor(max_workers=4, thread_name_prefix="regime_io-fetch"))
        return _FETCHERS[0]


def read_lookups(db: Database, queries: Sequence[tuple[Query, str]], *, what: str, table: str | None = None,
                 primary: bool = False) -> list[pa.Table]:
    """:func:`read_lookup` of several independent queries in one round trip: sent
    together in pipeline mode, each in its own statement (and snapshot), in order."""
    out = []
    for rows, description in _lookups(db, queries, what=what, table=table, primary=primary):
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in description]
        out.append(pa.table({col.name: pa.array(values, type=OID_TYPES.get(col.type_code))
                             for col, values in zip(description, columns, strict=True)}))
    return out


def _lookups(db: Database, queries: Sequence[tuple[Query, str]], *, what: str, table: str | None,
             primary: bool) -> list[tuple[list[Any], list[Any]]]:
    """The rows and column descriptions of each query, sent as :func:`read_lookups` sends them."""
    texts = [q.pyformat(sql) for q, sql in queries]
    for q, sql in queries:
        log.debug("lookup: %s %r", sql, q.params)

    def run() -> list[tuple[list[Any], list[Any]]]:
        connection = db.lookup_pool.connection() if primary else db.lookup_connection()
        with connection as conn:
            if len(texts) == 1:
                with conn.cursor(binary=True) as cur:
                    cur.execute(*texts[0])
                    return [(cur.fetchall(), list(cur.description or []))]
            with conn.pipeline():
                cursors = [conn.cursor(binary=True) for _ in texts]
                try:
                    for cur, (text, params) in zip(cursors, texts, strict=True):
                        cur.execute(text, params)
                    return [(cur.fetchall(), list(cur.description or [])) for cur in cursors]
                finally:
                    for cur in cursors:
                        cur.close()

    return pooled_read(db, run, what=what, table=table)
