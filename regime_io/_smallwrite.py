"""Small writes over psycopg: the writers' own statements, in half the round trips.

A live loop saves a few rows per call (``save_rolling_market_regime``: one row per
symbol per minute). Such a call is all round trips: ADBC spends two on every statement
with parameters (Prepare, then Execute) and six on a COPY (the current schema, the
table's columns, the COPY, a BEGIN). Measured on the server's statement log, one rolling
save of two rows took about 21 round trips.

Writes of at most :data:`SMALL_BATCH_ROWS` rows therefore run the very same code of
:func:`regime_io._writing._save_batch` (validation, sealed-tier routing, the collision
probe, COPY or the staged merge, the series catalog, the trim, the notification) on a
cursor of this module: a psycopg connection of the lookup pool, with every statement
prepared once per connection (one round trip each afterwards) and COPY over psycopg's
COPY protocol (two). The SQL text is the same text, built by the same functions; only
the driver carrying it differs. There is no second write path to disagree with the
first; ``tests/test_tail.py`` checks that a small and a large write of the same rows
store identical values.

What psycopg cannot hand back as Arrow (a sealed chunk's payload, read when a small
write lands in a sealed month) raises :class:`NeedsArrow`; the write rolls back and
runs again over ADBC. Server refusals are raised as the ADBC error of the same class
with the same SQLSTATE and message layout, so the writers' retries and error messages
are unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import adbc_driver_manager
import psycopg
import pyarrow as pa

from ._sql import qualified, quote_ident

if TYPE_CHECKING:
    from .database import Database

__all__ = ["SMALL_BATCH_ROWS", "NeedsArrow", "PsycopgCursor", "small_write"]

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
    """The part of the ADBC cursor API the writers use, over a psycopg connection.

    ``$n`` placeholders become psycopg's named ones; statements are prepared on first
    use (the lookup pool's ``prepare_threshold=0``).
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._cur = conn.cursor()

    def execute(self, query: str, parameters: Any = None) -> None:
        try:
            if parameters is None:
                self._cur.execute(query)  # type: ignore[arg-type]
            else:
                text = _PLACEHOLDER.sub(lambda m: f"%(p{m.group(1)})s", query.replace("%", "%%"))
                self._cur.execute(text, {f"p{i}": v for i, v in enumerate(parameters, start=1)})  # type: ignore[arg-type]
        except psycopg.Error as err:
            raise _as_adbc(err) from err

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    def fetch_arrow_table(self) -> pa.Table:
        raise NeedsArrow

    def adbc_ingest(self, table_name: str, data: Any, mode: str = "append", *, temporary: bool = False,
                    db_schema_name: str | None = None) -> int:
        """COPY ``data`` (an Arrow table or reader) into the table, like ADBC's ingest."""
        if mode != "append":
            raise NeedsArrow
        table = data.read_all() if isinstance(data, pa.RecordBatchReader) else data
        target = qualified(db_schema_name, table_name) if db_schema_name else quote_ident(table_name)
        names = ", ".join(quote_ident(n) for n in table.column_names)
        columns = [c.to_pylist() for c in table.columns]
        try:
            with self._cur.copy(f"COPY {target} ({names}) FROM STDIN") as copy:  # type: ignore[arg-type]
                for row in zip(*columns, strict=True):
                    copy.write_row(row)
        except psycopg.Error as err:
            raise _as_adbc(err) from err
        return table.num_rows

    def close(self) -> None:
        self._cur.close()


@contextmanager
def small_write(db: Database) -> Iterator[PsycopgCursor]:
    """A transaction on a lookup connection of the primary: commit on success (by the
    pool, so a commit cut off is reported as such), rollback on error."""
    with db.lookup_pool.connection() as conn:
        conn.execute("BEGIN")
        cur = PsycopgCursor(conn)
        try:
            yield cur
        finally:
            cur.close()
