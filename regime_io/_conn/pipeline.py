"""Small writes over psycopg in pipeline mode: the writers' own statements, in two round trips.

A live loop saves a few rows per call (``save_rolling_market_regime``: one row per
symbol per minute). Such a call is all round trips: ADBC spends two on every statement
with parameters (Prepare, then Execute) and six on a COPY (the current schema, the
table's columns, the COPY, a BEGIN). Measured on the server's statement log, one rolling
save of two rows took about 21 round trips; a round trip costs ~0.15-0.2 ms here.

Writes of at most :data:`SMALL_BATCH_ROWS` rows therefore run the very same code of
:func:`regime_io._write.save._save_batch` (validation, sealed-tier routing, the collision
probe, the copy or the staged merge, the series catalog, the trim, the notification) on
a cursor of this module: a psycopg connection of the lookup pool in **pipeline mode**,
one explicit transaction, every statement prepared once per connection. A statement
goes out when it is executed and only a read waits, for everything sent before it: a
rolling save waits twice (the sealed-tier lookup with the collision probe sent beside
it, and the commit; the trim's count is read after the commit), where it used to wait
for each of its ~10 statements. The SQL text is the same text, built by the same
functions; only the driver carrying it differs, plus one substitution: the rows travel as one
``INSERT ... SELECT FROM unnest($1::type[], ...)`` (COPY cannot run in a pipeline),
through the same psycopg adapters COPY's rows would use. There is no second write
path to disagree with the first: ``tests/test_writing.py`` and ``tests/test_tail.py``
check that every table stores the same rows written either way.

A server refusal now surfaces at the next read or at the commit, not at the statement
that caused it; the writers therefore decide about errors around the whole transaction
(``_save_batch``: a unique violation after the probe re-runs the call staged, whatever
statement reports it). What psycopg cannot hand back as Arrow (a sealed chunk's
payload, read when a small write lands in a sealed month) raises :class:`NeedsArrow`;
the write rolls back and runs again over ADBC. Server refusals are raised as the ADBC
error of the same class with the same SQLSTATE and message layout, so the writers'
retries and error messages are unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import adbc_driver_manager
import psycopg
import pyarrow as pa

from .._sql.quote import qualified, quote_ident

if TYPE_CHECKING:
    from .database import Database

__all__ = ["OID_TYPES", "SMALL_BATCH_ROWS", "NeedsArrow", "PsycopgCursor", "ask", "fetch_table",
           "optional_sql", "optional_text", "run", "run_arrays", "small_write"]


#: Writes of at most this many rows go over psycopg (round trips dominate below it).
SMALL_BATCH_ROWS = 64


_PLACEHOLDER = re.compile(r"\$(\d+)")


# SQLSTATE class -> the ADBC error the writers expect for it.
_ADBC_CLASSES: dict[str, tuple[type[adbc_driver_manager.Error], adbc_driver_manager.AdbcStatusCode]] = {
    "23": (adbc_driver_manager.IntegrityError, adbc_driver_manager.AdbcStatusCode.INTEGRITY),
    "22": (adbc_driver_manager.DataError, adbc_driver_manager.AdbcStatusCode.INVALID_DATA),
    "42": (adbc_driver_manager.ProgrammingError, adbc_driver_manager.AdbcStatusCode.INVALID_ARGUMENT),
    "40": (adbc_driver_manager.OperationalError, adbc_driver_manager.AdbcStatusCode.IO),
    "0A": (adbc_driver_manager.NotSupportedError, adbc_driver_manager.AdbcStatusCode.NOT_IMPLEMENTED),
}


def _reraise(err: psycopg.Error) -> NoReturn:
    converted = _as_adbc(err)
    if converted is err:
        raise err
    raise converted from err


class NeedsArrow(Exception):
    """The write needs an Arrow result psycopg does not give: run it over ADBC."""


def _as_adbc(err: psycopg.Error) -> Exception:
    """A server refusal as the ADBC error of its class (connection losses stay psycopg's:
    the pool recognises those)."""
    sqlstate = err.sqlstate
    if not sqlstate or sqlstate.startswith("08"):
        return err
    cls, status = _ADBC_CLASSES.get(sqlstate[:2], (adbc_driver_manager.DatabaseError,
                                                   adbc_driver_manager.AdbcStatusCode.UNKNOWN))
    diag = err.diag
    text = f"ERROR:  {diag.message_primary or str(err)}"
    if diag.message_detail:
        text += f"\nDETAIL:  {diag.message_detail}"
    if cls is adbc_driver_manager.NotSupportedError:  # its constructor takes no status code (ADBC 1.13)
        return cls(text, sqlstate=sqlstate)
    return cls(text, status_code=status, sqlstate=sqlstate)


class PsycopgCursor:
    """The part of the ADBC cursor API the writers use, over a psycopg connection in
    pipeline mode.

    ``$n`` placeholders become psycopg's named ones; statements are prepared on first
    use (the lookup pool's ``prepare_threshold=0``). :meth:`execute` only queues a
    statement; :meth:`fetchone`/:meth:`fetchall` wait for it (and everything queued
    before it), and the commit waits for the rest. A server refusal is therefore raised
    by the next fetch or by the commit, not by :meth:`execute`: the writers decide what
    to do with an error around the whole transaction (``regime_io._write.save._save_batch``),
    never around one statement.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._cur = conn.cursor()
        self._used: list[psycopg.Cursor[Any]] = []

    def execute(self, query: str, parameters: Any = None) -> None:
        # Each statement on a psycopg cursor of its own, so a fetch reads this statement's
        # rows: psycopg attaches a pipeline's results to the cursor that sent them as they
        # arrive, and once the server had flushed an earlier statement's result,
        # ``execute(); execute(); fetchone()`` on one cursor returned the earlier result
        # (about 3 runs in 10 of a pipelined sealed write read "UPDATE 1" for a timestamp).
        self._used.append(self._cur)
        self._cur = self._conn.cursor()
        try:
            if parameters is None:
                self._cur.execute(query)  # type: ignore[arg-type]
            else:
                text = _PLACEHOLDER.sub(lambda m: f"%(p{m.group(1)})s", query.replace("%", "%%"))
                self._cur.execute(text, {f"p{i}": v for i, v in enumerate(parameters, start=1)})  # type: ignore[arg-type]
        except psycopg.Error as err:
            _reraise(err)

    def fetchone(self) -> Any:
        try:
            return self._cur.fetchone()
        except psycopg.Error as err:
            _reraise(err)

    def fetchall(self) -> list[Any]:
        try:
            return self._cur.fetchall()
        except psycopg.Error as err:
            _reraise(err)

    def fetch_arrow_table(self) -> pa.Table:
        raise NeedsArrow

    def fetch_described(self, query: str, parameters: Any = None) -> tuple[list[Any], list[Any]]:
        """Execute ``query`` and wait for its rows and column descriptions (:func:`fetch_table`)."""
        self.execute(query, parameters)
        rows = self.fetchall()
        return rows, list(self._cur.description or [])

    def adbc_ingest(self, table_name: str, data: Any, mode: str = "append", *, temporary: bool = False,
                    db_schema_name: str | None = None) -> int:
        """Append ``data`` (an Arrow table or reader) to the table, like ADBC's ingest.

        One ``INSERT ... SELECT FROM unnest(...)`` with one array parameter per column:
        COPY cannot run in pipeline mode and would cost two round trips of its own. The
        values reach the server through the same psycopg adapters as COPY's rows, and
        the columns' own types apply on the way in (an assignment cast from the array's
        element type, as COPY's input functions would).
        """
        if mode != "append":
            raise NeedsArrow
        table = data.read_all() if isinstance(data, pa.RecordBatchReader) else data
        target = qualified(db_schema_name, table_name) if db_schema_name else quote_ident(table_name)
        # Columns of NULLs only are left out: the writers' columns have no defaults, so
        # the stored rows are the same, and each parameter left out saves ~40 us of
        # adaptation (a live 1-minute regime row fills 4 of its 12 columns).
        sent = [i for i, column in enumerate(table.columns) if column.null_count < table.num_rows] or [0]
        names = ", ".join(quote_ident(table.column_names[i]) for i in sent)
        arrays = ", ".join(f"${n}::{_array_type(table.schema.field(i).type)}[]" for n, i in enumerate(sent, start=1))
        self.execute(f"INSERT INTO {target} ({names}) SELECT * FROM unnest({arrays})",
                     [table.column(i).to_pylist() for i in sent])
        return table.num_rows

    def defer(self, query: str, parameters: Any = None) -> Callable[[], list[Any]]:
        """Queue a query on a cursor of its own; the returned function waits for its rows."""
        other = PsycopgCursor(self._cur.connection)
        other.execute(query, parameters)

        def rows() -> list[Any]:
            try:
                return other.fetchall()
            finally:
                other.close()

        return rows

    def close(self) -> None:
        for cur in (*self._used, self._cur):
            cur.close()
        self._used.clear()


def _array_type(arrow: pa.DataType) -> str:
    """The PostgreSQL element type of an unnest() parameter carrying an Arrow column."""
    if pa.types.is_decimal(arrow):
        return "numeric"
    if pa.types.is_timestamp(arrow):
        return "timestamptz" if arrow.tz else "timestamp"
    for test, name in _ARRAY_TYPES:
        if test(arrow):
            return name
    raise NeedsArrow  # a type the writers never send this way: let ADBC's COPY carry it


_ARRAY_TYPES = ((pa.types.is_string, "text"), (pa.types.is_large_string, "text"), (pa.types.is_int64, "int8"),
                (pa.types.is_int32, "int4"), (pa.types.is_float64, "float8"), (pa.types.is_date32, "date"),
                (pa.types.is_boolean, "bool"))


def run(cur: Any, query: str, parameters: Any = None) -> None:
    """Execute a statement for its effect, its rows unwanted (a lock, a ``pg_notify``).

    On an ADBC cursor the rows are drained (the statement has run when this returns);
    on a :class:`PsycopgCursor` the statement is only queued: it costs no round trip of
    its own, and an error it meets is raised by the next fetch or the commit.
    """
    if isinstance(cur, PsycopgCursor):
        cur.execute(query, parameters)
        return
    cur.execute(query, parameters=parameters)
    cur.fetchall()


#: PostgreSQL type OIDs of plain result columns -> the Arrow types psycopg's Python values
#: are laid out as (the lookups, where anything else is inferred; a pipelined write's
#: reads, where anything else raises NeedsArrow and the write runs over ADBC).
OID_TYPES = {17: pa.binary(), 25: pa.string(), 1043: pa.string(), 1042: pa.string(), 1114: pa.timestamp("us"),
             1082: pa.date32(), 701: pa.float64(), 700: pa.float32(), 20: pa.int64(), 23: pa.int32(),
             21: pa.int16(), 16: pa.bool_()}


def fetch_table(cur: Any, query: str, parameters: Any = None) -> pa.Table:
    """Run a query and return its rows as an Arrow table, on either cursor.

    On a :class:`PsycopgCursor` the rows come back as Python values and are laid out as
    Arrow columns (:data:`OID_TYPES`; ``bytea`` as binary: a small write into a sealed
    month reads its chunk rows so, in the pipeline, instead of starting again over ADBC:
    14.9 -> 14.3 ms for 5 restated rows); other result types raise :class:`NeedsArrow`.
    """
    if not isinstance(cur, PsycopgCursor):
        cur.execute(query, parameters=parameters)
        return cur.fetch_arrow_table()
    rows, description = cur.fetch_described(query, parameters)
    types = [OID_TYPES.get(col.type_code) for col in description]
    if any(t is None for t in types):
        raise NeedsArrow
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in description]
    return pa.table({col.name: pa.array(values, type=t) for col, values, t in zip(description, columns, types,
                                                                                   strict=True)})


def run_arrays(cur: Any, query: str, parameters: pa.Table, types: Sequence[str]) -> None:
    """Execute ``query`` with its ``{values}`` replaced by ``SELECT * FROM unnest($1::t[],
    ...)``: the rows of ``parameters`` bound as one array per column (``types``: each
    column's PostgreSQL type, in column order). One statement, whatever the rows.

    ``parameters`` holds no NULL: ADBC 1.12 (the floor) binds a NULL array element as an
    empty string. A column that may be NULL goes as :func:`optional_text` (type ``TEXT``)
    and is read back with :func:`optional_sql`. The 10 patch updates of a restated day,
    where a ``VALUES`` list of 180 parameters was bound (18 values x 10 rows, each its own
    one-row Arrow column): 4.96 -> 3.51 ms over ADBC (the server's part 1.5 ms)."""
    if any(column.null_count for column in parameters.columns):
        raise ValueError("run_arrays: NULL in the parameters (ADBC 1.12 binds it as ''): send optional_text()")
    arrays = ", ".join(f"${c + 1}::{t}[]" for c, t in enumerate(types))
    text = query.replace("{values}", f"SELECT * FROM unnest({arrays})")
    if isinstance(cur, PsycopgCursor):
        cur.execute(text, [column.to_pylist() for column in parameters.columns])
        return
    cur.execute(text, parameters=pa.table({f"p{c}": pa.array([column.to_pylist()], pa.list_(column.type))
                                           for c, column in enumerate(parameters.columns)}))
    cur.fetchall()


def optional_text(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Text values that may be NULL as :func:`run_arrays` can send them: '' for NULL, and
    "=" before each value (a text value may be '' itself)."""
    return pa.array(["" if v is None else f"={v}" for v in values.to_pylist()], pa.string())


def optional_sql(ref: str, pg_type: str) -> str:
    """The value of an :func:`optional_text` column ``ref`` as ``pg_type`` (NULL for '')."""
    return f"(CASE WHEN {ref} <> '' THEN substr({ref}, 2)::{pg_type} END)"


def ask(cur: Any, query: str, parameters: Any = None) -> Callable[[], list[Any]]:
    """Send a query now, read its rows later: returns a function giving them.

    On the pipelined :class:`PsycopgCursor` the query travels with the statements
    queued after it, until something reads; on an ADBC cursor it runs and its rows are
    read here (an ADBC connection holds one open result at a time).
    """
    if isinstance(cur, PsycopgCursor):
        return cur.defer(query, parameters)
    cur.execute(query, parameters=parameters)
    rows = cur.fetchall()
    return lambda: rows


@contextmanager
def small_write(db: Database) -> Iterator[PsycopgCursor]:
    """A transaction on a lookup connection of the primary, in pipeline mode: commit on
    success (by the pool, so a commit cut off is reported as such), rollback on error.
    Refusals that surface at the commit are raised as their ADBC errors too."""
    try:
        with db.lookup_pool.connection(pipeline=True) as conn:
            cur = PsycopgCursor(conn)
            try:
                yield cur
            finally:
                cur.close()
    except psycopg.Error as err:
        _reraise(err)
