"""Reader internals: argument parsing, SQL values and the two query engines.

Three engines serve the readers (see ``docs/reading.md``):

* **connectorx** pulls ranges: it decodes PostgreSQL's binary protocol straight into
  Arrow, but opens a new connection per call and cannot bind parameters, so values are
  rendered into the SQL text by :func:`sql_value` (the only place that does this).
* **ADBC**, through the pool's warm connection, serves aggregates and option chains
  with bound parameters (``$1, $2``): a fresh connectorx connection would cost more than
  the query, and the result arrives as Arrow.
* **psycopg**, through the lookup pool (autocommit, prepared statements), serves the
  lookups whose answer is one row per series (latest rows) and the reachability check:
  one round trip where ADBC spends four.

Queries are written once with ``$n`` placeholders (:class:`Query`); ADBC binds them,
psycopg gets them as ``%(pn)s`` (:meth:`Query.pyformat`), connectorx as literals.

Example:
    >>> q = Query()
    >>> f"symbol = {q.param('NIFTY')}"
    'symbol = $1'
    >>> q.inline("SELECT 1 WHERE symbol = $1")
    "SELECT 1 WHERE symbol = E'NIFTY'"
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

import pyarrow as pa

from ._driver_errors import DRIVER_ERRORS, lost_before_commit, wrap_error
from .errors import ReadError, ServerUnavailableError, UsageError

if TYPE_CHECKING:
    from .database import Database

log = logging.getLogger(__name__)

T = TypeVar("T")


# connectorx error texts that mean "no server", not "bad query".
_PLACEHOLDER = re.compile(r"\$(\d+)")


# ---------------------------------------------------------------------------------------
# SQL values


def sql_value(value: Any) -> str:
    """Render one value as an SQL literal, for connectorx (which cannot bind parameters).

    Strings use the escape-string syntax ``E'...'`` with backslashes and quotes doubled:
    it means the same whatever ``standard_conforming_strings`` is set to, so no input can
    end the literal early. NUL bytes (which PostgreSQL text cannot hold) are refused.

    >>> sql_value("O'Neil\\\\")
    "E'O''Neil\\\\\\\\'"
    >>> sql_value(dt.datetime(2024, 1, 2, 9, 15))
    "TIMESTAMP '2024-01-02 09:15:00.000000'"
    >>> sql_value(["A", "B"])
    "ARRAY[E'A', E'B']"
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        if "\x00" in value:
            raise UsageError(f"value {value!r} contains a NUL byte", value=value)
        return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            raise ReadError(f"internal: zoned timestamp {value!r} reached SQL rendering", value=value)
        return f"TIMESTAMP '{value.isoformat(sep=' ', timespec='microseconds')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UsageError(f"value {value!r} is not a finite number", value=value)
        value = Decimal(repr(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise UsageError(f"value {value!r} is not a finite number", value=value)
        return format(value, "f")
    if isinstance(value, (list, tuple)):
        if not value:
            raise ReadError("internal: empty array reached SQL rendering")
        return "ARRAY[" + ", ".join(sql_value(v) for v in value) + "]"
    raise UsageError(f"cannot use a {type(value).__name__} ({value!r}) as an SQL value", value=value)


class Query:
    """Collects bound parameters while a query is written: ``q.param(v)`` returns ``$n``."""

    def __init__(self) -> None:
        self.params: list[Any] = []

    def param(self, value: Any) -> str:
        self.params.append(value)
        return f"${len(self.params)}"

    def inline(self, sql: str) -> str:
        """The query with every ``$n`` replaced by its value as a literal (connectorx).

        One pass over the template: text inside a substituted literal is never rescanned.
        """
        def repl(m: re.Match[str]) -> str:
            return sql_value(self.params[int(m.group(1)) - 1])

        return _PLACEHOLDER.sub(repl, sql)

    def pyformat(self, sql: str) -> tuple[str, dict[str, Any]]:
        """The query in psycopg's placeholder style: ``$n`` becomes ``%(pn)s`` (a literal
        ``%`` is doubled), with the parameters as a dict.

        >>> q = Query(); sql = f"x = {q.param(1)} AND y LIKE '%a' AND z = {q.param(2)}"
        >>> q.pyformat(sql)
        ("x = %(p1)s AND y LIKE '%%a' AND z = %(p2)s", {'p1': 1, 'p2': 2})
        """
        text = _PLACEHOLDER.sub(lambda m: f"%(p{m.group(1)})s", sql.replace("%", "%%"))
        return text, {f"p{i}": value for i, value in enumerate(self.params, start=1)}


# ---------------------------------------------------------------------------------------
# Arguments


@dataclass(frozen=True)
class TimeRange:
    """``start <= t`` and ``t <= end`` (or ``t < end`` when ``end_exclusive``)."""

    start: dt.datetime
    end: dt.datetime
    end_exclusive: bool

    def conditions(self, q: Query, column: str) -> list[str]:
        op = "<" if self.end_exclusive else "<="
        return [f"{column} >= {q.param(self.start)}", f"{column} {op} {q.param(self.end)}"]


def parse_time(value: Any, *, name: str, timezone: str) -> tuple[dt.datetime, bool]:
    """A datetime, date or ISO string as a naive timestamp in the storage zone.

    Returns ``(timestamp, was_a_date)``; a date (or a date-only string) is midnight.
    Zoned datetimes are converted to ``timezone`` (the storage zone) first.
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                return dt.datetime.combine(dt.date.fromisoformat(text), dt.time()), True
            if text.endswith(("Z", "z")):
                text = text[:-1] + "+00:00"
            value = dt.datetime.fromisoformat(text)
        except ValueError:
            raise UsageError(f"{name}: {value!r} is not an ISO 8601 date or timestamp (e.g. '2024-01-31' or "
                             "'2024-01-31 15:30'); '04/03/2024' could be 4 March or 3 April, so other layouts "
                             "are refused: pass a datetime instead", value=value) from None
    if type(value).__module__ == "numpy" and hasattr(value, "dtype") and value.dtype.kind == "M":
        if value != value:  # NaT
            raise UsageError(f"{name}: NaT is not a time", value=value)
        value = value.astype("datetime64[us]").item()  # numpy datetime64 is naive: the storage zone
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(ZoneInfo(timezone)).replace(tzinfo=None)
        # pandas.Timestamp is a datetime subclass: keep plain datetimes only.
        return dt.datetime(value.year, value.month, value.day, value.hour, value.minute,
                           value.second, value.microsecond), False
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time()), True
    raise UsageError(f"{name}: expected a datetime, date or ISO string, got {type(value).__name__} ({value!r})",
                    value=value)


# The bounds of an open side of a range: PostgreSQL's and Python's timestamps both hold them.
EARLIEST = dt.datetime(1, 1, 1)
LATEST = dt.datetime(9999, 12, 31, 23, 59, 59, 999999)


def parse_range(start: Any, end: Any, *, timezone: str, start_name: str = "start_date",
                end_name: str = "end_date") -> TimeRange:
    """``[start, end]`` inclusive; a date as ``end`` includes that whole day; None is open."""
    lo, _ = parse_time(start, name=start_name, timezone=timezone) if start is not None else (EARLIEST, False)
    if end is None:
        if lo > LATEST:
            raise UsageError(f"{start_name} {start!r} is out of range", value=start)
        return TimeRange(lo, LATEST, end_exclusive=False)
    hi, end_is_date = parse_time(end, name=end_name, timezone=timezone)
    if end_is_date:
        hi = hi + dt.timedelta(days=1)
        if lo >= hi:
            raise UsageError(f"{start_name} {start!r} is after {end_name} {end!r}", value=start)
    elif lo > hi:
        raise UsageError(f"{start_name} {start!r} is after {end_name} {end!r}", value=start)
    return TimeRange(lo, hi, end_exclusive=end_is_date)


def is_aware(value: Any) -> bool:
    """True for a zone-aware bound: an aware datetime or an ISO string with an offset."""
    if isinstance(value, dt.datetime):
        return value.tzinfo is not None
    if isinstance(value, str):
        text = value.strip()
        return len(text) > 10 and (text[-1] in "Zz" or re.search(r"[+-]\d{2}:?\d{2}$", text[10:]) is not None)
    return False


def parse_date(value: Any, *, name: str) -> dt.date:
    """A date, a midnight datetime or an ISO date string."""
    if isinstance(value, dt.datetime):
        if value.time() != dt.time():
            raise UsageError(f"{name}: {value!r} has a time of day; pass a date", value=value)
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                return dt.date.fromisoformat(text)
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise UsageError(f"{name}: {value!r} is not an ISO date (e.g. '2024-01-25')", value=value) from None
        return parse_date(parsed, name=name)
    raise UsageError(f"{name}: expected a date or ISO string, got {type(value).__name__} ({value!r})", value=value)


def text_arg(value: Any, *, name: str, allow_none: bool = True) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value:
        raise UsageError(f"{name}: expected a non-empty string, got {value!r}", value=value)
    if "\x00" in value:
        raise UsageError(f"{name}: {value!r} contains a NUL byte", value=value)
    return value


def resolve_symbols(symbol: Any, symbols: Any, *, required: bool = True) -> list[str] | None:
    """The symbols a reader was asked for: ``symbol`` (one or a list) or ``symbols``.

    Returns None when neither was given and ``required`` is False (every symbol).
    """
    if symbol is not None and symbols is not None:
        raise UsageError("pass symbol or symbols, not both", value=symbols)
    if symbol is not None:
        return symbol_list(symbol, name="symbol")
    if symbols is not None:
        return symbol_list(symbols, name="symbols")
    if required:
        raise UsageError("pass symbol= (one symbol or a list) or symbols=")
    return None


def symbol_list(value: Any, *, name: str = "symbol") -> list[str]:
    """One symbol or a sequence of them, deduplicated, order kept."""
    if isinstance(value, str):
        return [text_arg(value, name=name, allow_none=False)]  # type: ignore[list-item]
    if isinstance(value, Sequence) or (hasattr(value, "__iter__") and not isinstance(value, (bytes, dict))):
        out: list[str] = []
        for item in value:
            s = text_arg(item, name=name, allow_none=False)
            assert s is not None
            if s not in out:
                out.append(s)
        return out
    raise UsageError(f"{name}: expected a symbol or a list of symbols, got {type(value).__name__} ({value!r})",
                    value=value)


_DURATION = re.compile(r"(\d+)(us|ms|s|min|m|h|d|w)")
_UNITS = {"us": dt.timedelta(microseconds=1), "ms": dt.timedelta(milliseconds=1), "s": dt.timedelta(seconds=1),
          "m": dt.timedelta(minutes=1), "min": dt.timedelta(minutes=1), "h": dt.timedelta(hours=1),
          "d": dt.timedelta(days=1), "w": dt.timedelta(weeks=1)}


def parse_duration(value: Any, *, name: str) -> dt.timedelta:
    """``"5m"``, ``"1h30m"``, ``"2d"`` (Polars spelling; ``"5min"`` also works) or a timedelta."""
    if isinstance(value, dt.timedelta):
        delta = value
    elif isinstance(value, str) and value and _DURATION.sub("", value.strip()) == "":
        delta = sum((int(n) * _UNITS[u] for n, u in _DURATION.findall(value.strip())), dt.timedelta())
    else:
        raise UsageError(f"{name}: {value!r} is not a duration; use e.g. '30s', '5m', '1h', '1d' or a timedelta",
                        value=value)
    if delta <= dt.timedelta(0):
        raise UsageError(f"{name}: {value!r} must be positive", value=value)
    return delta


# ---------------------------------------------------------------------------------------
# Engines


def reachable_read_url(db: Database) -> str:
    """The URL a connectorx read uses, checked to answer first: fail fast, with the
    configured retries, when the server is down.

    connectorx's connection pool keeps retrying for a fixed 30 s whatever the settings
    say. With replicas, choosing one already checks it on its lookup pool; otherwise (or
    when none is healthy) the primary runs ``SELECT 1`` on a lookup connection (one
    round trip), which raises ServerUnavailableError after ``retry_attempts``. It runs a
    query rather than only taking a connection: one used less than
    ``health_check_interval`` ago is handed out unpinged, and the server may have died
    since (read_lookup then runs the check once more on a fresh connection).
    """
    replica = db.replica("url")
    if replica is not None:
        return replica.settings.url(redact=False)
    read_lookup(db, Query(), "SELECT 1", what="connection check", primary=True)
    return db.resolved.url(redact=False)


def read_cx(db: Database, q: Query, sql: str, *, what: str, table: str | None = None) -> pa.Table:
    """Run a range query with connectorx; return an Arrow table."""
    import connectorx as cx

    url = reachable_read_url(db)
    text = q.inline(sql)
    log.debug("connectorx: %s", text)
    try:
        return cx.read_sql(url, text, return_type="arrow")
    except Exception as err:
        raise wrap_error(db, err, what=what, table=table) from err


def stream_cx(db: Database, q: Query, sql: str, *, batch_rows: int, what: str,
              table: str | None = None) -> Iterator[pa.RecordBatch]:
    """Stream a query with connectorx (``arrow_stream``): batches of ``batch_rows`` rows."""
    import connectorx as cx

    url = reachable_read_url(db)
    text = q.inline(sql)
    log.debug("connectorx stream (%d rows/batch): %s", batch_rows, text)
    try:
        reader = cx.read_sql(url, text, return_type="arrow_stream", batch_size=batch_rows)
    except Exception as err:
        raise wrap_error(db, err, what=what, table=table) from err
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except Exception as err:
            raise wrap_error(db, err, what=what, table=table) from err
        yield batch


def _pooled_read(db: Database, run: Callable[[], T], *, what: str, table: str | None) -> T:
    """``run()`` (a read on a pooled connection), once more if its connection had died
    unnoticed; driver errors become library errors."""
    for attempt in (1, 2):
        try:
            return run()
        except DRIVER_ERRORS as err:
            raise wrap_error(db, err, what=what, table=table) from err
        except ServerUnavailableError as err:
            # An idle connection that died unnoticed (a quick server restart): the pool now
            # checks the others; a read is always safe to run once more.
            if attempt == 2 or not lost_before_commit(err):
                raise
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

    return _pooled_read(db, run, what=what, table=table)


# PostgreSQL type OIDs of lookup results -> Arrow types (anything else: inferred).
_OID_TYPES = {25: pa.string(), 1043: pa.string(), 1042: pa.string(), 1114: pa.timestamp("us"),
              1082: pa.date32(), 701: pa.float64(), 700: pa.float32(), 20: pa.int64(), 23: pa.int32(),
              21: pa.int16(), 16: pa.bool_()}


def read_lookup(db: Database, q: Query, sql: str, *, what: str, table: str | None = None,
                primary: bool = False) -> pa.Table:
    """Run a small query on a warm lookup connection (psycopg, prepared); an Arrow table.

    For results of a few rows (one per series): the rows come back as Python values, which
    is cheap at that size and costs one round trip. Large results belong to :func:`read_adbc`.
    ``primary``: on the primary even when read replicas are configured.
    """
    return read_lookups(db, [(q, sql)], what=what, table=table, primary=primary)[0]


def read_lookups(db: Database, queries: Sequence[tuple[Query, str]], *, what: str, table: str | None = None,
                 primary: bool = False) -> list[pa.Table]:
    """:func:`read_lookup` of several independent queries in one round trip: sent
    together in pipeline mode, each in its own statement (and snapshot), in order."""
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

    out = []
    for rows, description in _pooled_read(db, run, what=what, table=table):
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in description]
        out.append(pa.table({col.name: pa.array(values, type=_OID_TYPES.get(col.type_code))
                             for col, values in zip(description, columns, strict=True)}))
    return out
