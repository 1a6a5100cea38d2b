"""The live tail: new and changed rows of a table as frames, resumable from a cursor.

Mechanism (``docs/live.md``): every row carries ``change_xid``, the 64-bit id of the
transaction that last wrote it (``regime_io._tiers.changes``). A consumer keeps one server
snapshot (``pg_current_snapshot()``: the running transactions and the id horizon) as its
position. Each poll takes a newer snapshot and reads the rows whose writing transaction
is visible in the new snapshot and was not visible in the old one:

* a transaction that commits late (started earlier, took longer) was in the old
  snapshot's list of running transactions, so it is delivered when it commits;
* a rolled-back transaction's rows are never visible;
* each committed row version falls between exactly one pair of consecutive snapshots,
  so it is delivered once; a later version of the same key has a later transaction
  visible only in a later snapshot, so per key the versions arrive in commit order.

The rows of one interval can be read in several pages (``max_rows``) under newer
statement snapshots: the filter names the interval's snapshots, not the reading one, so
a row committed meanwhile is left for the next interval, and a version overwritten
meanwhile is delivered as its newer version there. Rows merged into sealed chunks are
read from ``<prefix>sealed_changes`` with the same filter.

The cursor is the position as text (``rt1.`` + base64 of JSON: the table, the old
snapshot, and within an interval the new snapshot and the last key delivered).

Example:
    >>> for batch in pg.follow("1min", timeout=60):          # doctest: +SKIP
    ...     handle(batch.frame); save_token(batch.cursor)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .._conn.driver_errors import DRIVER_ERRORS, wrap_error
from .._frames import check_return_type, convert
from .._sql.args import parse_time, symbol_list
from .._sql.names import channel, qualified_table, sealed_changes_table
from .._sql.query import LATEST, TimeRange
from .._sql.quote import quote_ident
from .._tiers import changes
from .._tiers.router import Scope, read_in_snapshot
from .._tiers.rows import as_declared, declared_select
from .._tiers.sealed_read import to_reader
from ..errors import UsageError
from ..tables import TableSpec
from ..types import DateLike, ReturnType

if TYPE_CHECKING:
    from .._conn.database import Database

__all__ = ["DEFAULT_MAX_ROWS", "DEFAULT_POLL_INTERVAL", "Tail", "TailBatch", "follow"]

log = logging.getLogger(__name__)


F = TypeVar("F")


DEFAULT_MAX_ROWS = 100_000


DEFAULT_POLL_INTERVAL = 1.0


_PREFIX = "rt1."


@dataclass(frozen=True)
class TailBatch(Generic[F]):
    """One batch of a live tail: the new or changed rows and the position after them.

    Attributes:
        frame: the rows, with the columns and dtypes of the table's range readers.
        cursor: an opaque token; ``follow(..., cursor=batch.cursor)`` resumes right after
            this batch (in another process, the next day).
        deleted: the ranges ``delete_range`` removed in this batch's interval, a frame of
            ``symbol``, ``start``, ``end`` (inclusive); empty when none. A consumer
            keeping a copy drops its rows in them *before* applying ``frame`` (a row
            written again after the delete is in ``frame``).
    """

    frame: F
    cursor: str
    deleted: Any = None

    @property
    def rows(self) -> int:
        """Rows in the batch."""
        return len(self.frame)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Position:
    table: str
    prev: str | None  # the old snapshot; None while catching up from ``since``
    since: dt.datetime | None = None
    target: str | None = None  # the new snapshot, while an interval is read in pages
    after: tuple[str, ...] | None = None  # the last (change_xid, key...) delivered in this interval
    sealed_done: bool = False

    def encode(self) -> str:
        body = {"t": self.table, "p": self.prev, "s": self.since.isoformat() if self.since else None,
                "g": self.target, "a": list(self.after) if self.after is not None else None,
                "d": self.sealed_done}
        raw = json.dumps(body, separators=(",", ":")).encode()
        return _PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: Any, spec: TableSpec) -> _Position:
        if not isinstance(token, str) or not token.startswith(_PREFIX):
            raise UsageError(f"cursor {token!r} is not a tail cursor (tokens start with {_PREFIX!r}; pass "
                             "batch.cursor of an earlier batch)", table=spec.key, value=token)
        try:
            body = token[len(_PREFIX):]
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            position = cls(table=str(data["t"]), prev=data["p"],
                           since=dt.datetime.fromisoformat(data["s"]) if data["s"] else None,
                           target=data["g"], after=tuple(data["a"]) if data["a"] is not None else None,
                           sealed_done=bool(data["d"]))
            for snap in (position.prev, position.target):
                if snap is not None:
                    _Snapshot.parse(snap)
        except (ValueError, KeyError, TypeError, binascii.Error) as err:
            raise UsageError(f"cursor {token[:40]!r}... is damaged ({err}); pass batch.cursor unchanged",
                             table=spec.key, value=token) from None
        if position.table != spec.key:
            raise UsageError(f"this cursor follows {position.table!r}, not {spec.key!r}", table=spec.key,
                             value=token)
        return position


@dataclass(frozen=True)
class _Snapshot:
    xmin: int
    xmax: int

    @classmethod
    def parse(cls, text: str) -> _Snapshot:
        xmin, xmax, _ = text.split(":")
        return cls(int(xmin), int(xmax))


class Tail(Generic[F]):
    """An iterator of :class:`TailBatch` (see :meth:`PostgreSQLIntegration.follow`).

    ``close()`` (or leaving a ``with`` block) releases its listening connection; the
    last batch's cursor stays valid. :attr:`cursor` is the position reached so far, also
    when polls found nothing new.
    """

    def __init__(self, db: Database, spec: TableSpec, position: _Position, *, symbols: list[str] | None,
                 max_rows: int, timeout: float | None, poll_interval: float, exact: bool,
                 return_type: ReturnType) -> None:
        self._db = db
        self._spec = spec
        self._position = position
        self._symbols = symbols
        self._max_rows = max_rows
        self._timeout = timeout
        self._poll_interval = poll_interval
        self._exact = exact
        self._return_type = return_type
        self._listener: Any = None
        self._listening = False
        self._closed = False
        self._last_row = time.monotonic()
        self.delivered = 0

    def __repr__(self) -> str:
        return f"<Tail {self._spec.key} delivered={self.delivered}{' closed' if self._closed else ''}>"

    @classmethod
    def ended(cls, db: Database, table: str, *, return_type: ReturnType) -> Tail[Any]:
        """A tail that delivers nothing and never touches a server (the disabled mode):
        iterating it ends at once; it is a context manager like any other."""
        spec = db.spec(table)
        tail: Tail[Any] = cls(db, spec, _Position(table=spec.key, prev=None), symbols=None, max_rows=1, timeout=0.0,
                              poll_interval=1.0, exact=False, return_type=return_type)
        tail._closed = True
        return tail

    @property
    def cursor(self) -> str:
        """The position reached: resuming from it delivers nothing already delivered."""
        return self._position.encode()

    def __iter__(self) -> Tail[F]:
        return self

    def __enter__(self) -> Tail[F]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop listening; further ``next()`` calls end the iteration."""
        self._closed = True
        self._drop_listener()

    def __next__(self) -> TailBatch[F]:
        while not self._closed:
            self._listen()
            polled = self._poll()
            if polled is not None:
                batch, deleted = polled
                self._last_row = time.monotonic()
                self.delivered += batch.num_rows
                return TailBatch(frame=convert(batch, self._return_type), cursor=self.cursor,
                                 deleted=convert(deleted, self._return_type))
            wait = self._poll_interval
            if self._timeout is not None:
                left = self._timeout - (time.monotonic() - self._last_row)
                if left <= 0:
                    break
                wait = min(wait, left)
            self._wait(wait)
        self.close()
        raise StopIteration

    # -- waking up ----------------------------------------------------------------------

    def _listen(self) -> None:
        """LISTEN on the table's channel (once); a server that refuses (a standby) is polled."""
        if self._listening:
            return
        self._listening = True
        import psycopg

        try:
            conn = psycopg.connect(self._db.resolved.url(redact=False), autocommit=True)
        except psycopg.Error as err:
            log.info("%s: cannot open a listening connection (%s); polling every %gs", self._spec.key,
                     self._db.redact(str(err).splitlines()[0] if str(err) else type(err).__name__),
                     self._poll_interval)
            return
        try:
            conn.execute(f"LISTEN {quote_ident(channel(self._db.settings, self._spec.key))}")
        except psycopg.Error as err:
            # A hot standby refuses LISTEN (notifications are not replicated): poll only.
            log.info("%s: LISTEN refused (%s); polling every %gs", self._spec.key,
                     self._db.redact(str(err).splitlines()[0]), self._poll_interval)
            conn.close()
            return
        self._listener = conn

    def _wait(self, seconds: float) -> None:
        if self._listener is None:
            time.sleep(seconds)
            return
        import psycopg

        try:
            for _ in self._listener.notifies(timeout=seconds, stop_after=1):
                break
            for _ in self._listener.notifies(timeout=0):  # drain: one poll answers them all
                pass
        except psycopg.Error:
            log.info("%s: the listening connection was lost; polling until it is back", self._spec.key)
            self._drop_listener()
            self._listening = False  # LISTEN again at the next poll
            time.sleep(seconds)

    def _drop_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):  # closing a dead connection may raise
                self._listener.close()
            self._listener = None

    # -- reading ------------------------------------------------------------------------

    def _poll(self) -> tuple[pa.Table, pa.Table] | None:
        """Read the next page (rows, deleted ranges); advance the position. None when
        nothing new arrived."""
        try:
            with self._db.pool.connection() as conn:
                cur = conn.cursor()
                try:
                    if self._position.prev is None:
                        return self._catch_up(cur)
                    return self._interval(cur)
                finally:
                    cur.close()
        except DRIVER_ERRORS as err:
            raise wrap_error(self._db, err, what="tail", table=self._spec.key) from err

    def _catch_up(self, cur: Any) -> tuple[pa.Table, pa.Table] | None:
        """Every stored row from ``since`` (both tiers, through the router), read in one
        snapshot; the position then follows the changes after that snapshot."""
        spec, pos = self._spec, self._position
        assert pos.since is not None
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        target = _snapshot(cur)
        table = read_in_snapshot(cur, self._db, spec, Scope(self._symbols, TimeRange(pos.since, LATEST,
                                                                                       end_exclusive=False)))
        self._position = _Position(table=spec.key, prev=target)
        if table.num_rows == 0:
            return None
        return self._reader(table), changes.DELETED_SCHEMA.empty_table()

    def _interval(self, cur: Any) -> tuple[pa.Table, pa.Table] | None:
        """The next page of the interval from the old snapshot to a new one.

        The first page takes the new snapshot in the same statement that reads the rows
        (the statement's own snapshot is ``pg_current_snapshot()``) and counts the
        interval's sealed-tier entries: one statement per poll when nothing was sealed.
        """
        spec, pos, prev = self._spec, self._position, self._position.prev
        assert prev is not None
        col = quote_ident(changes.CHANGE_COLUMN)
        first = pos.target is None
        old = _Snapshot.parse(prev)
        params: list[Any] = [old.xmin, prev]
        if first:
            snap, upper = "s.snap", "pg_snapshot_xmax(s.snap)::text::bigint"
        else:
            assert pos.target is not None
            params.append(pos.target)
            snap, upper = "$3::text::pg_snapshot", f"{_Snapshot.parse(pos.target).xmax}"
        where = [f"t.{col} >= $1", f"t.{col} < {upper}", f"pg_visible_in_snapshot(t.{col}::text::xid8, {snap})",
                 f"NOT pg_visible_in_snapshot(t.{col}::text::xid8, $2::text::pg_snapshot)"]
        where += self._symbol_filter(params)
        order = [col, *(quote_ident(c) for c in spec.primary_key)]
        if pos.after is not None:
            bounds = [f"${len(params) + 1}::text::bigint"]
            params.append(pos.after[0])
            for name, value in zip(spec.primary_key, pos.after[1:], strict=True):
                params.append(value)
                bounds.append(f"${len(params)}::text::{spec.column(name).pg_type}")
            where.append(f"({', '.join('t.' + o for o in order)}) > ({', '.join(bounds)})")
        params.append(self._max_rows)
        rows_sql = (f"SELECT {declared_select(spec)}, t.{col} FROM {qualified_table(spec, self._db.settings)} t "
                    f"WHERE {' AND '.join(where)} ORDER BY {', '.join('t.' + o for o in order)} "
                    f"LIMIT ${len(params)}")
        if first:
            sealed = "0::int8"
            if spec.sealable:
                params.append(spec.key)
                sealed = (f"(SELECT count(*) FROM {sealed_changes_table(self._db.settings)} c "
                          f"WHERE c.table_key = ${len(params)} AND c.{col} >= $1 "
                          f"AND c.{col} < pg_snapshot_xmax(s.snap)::text::bigint "
                          f"AND pg_visible_in_snapshot(c.{col}::text::xid8, s.snap) "
                          f"AND NOT pg_visible_in_snapshot(c.{col}::text::xid8, $2::text::pg_snapshot))")
            cur.execute(f"WITH s AS MATERIALIZED (SELECT pg_current_snapshot() AS snap) "
                        f"SELECT s.snap::text AS __snapshot, {sealed} AS __sealed, r.* FROM s "
                        f"LEFT JOIN LATERAL ({rows_sql}) r ON true", parameters=tuple(params))
            raw = cur.fetch_arrow_table()
            target = str(raw.column("__snapshot")[0].as_py())
            entries = int(raw.column("__sealed")[0].as_py() or 0)
            raw = raw.drop_columns(["__snapshot", "__sealed"])
            raw = raw.filter(pc.is_valid(raw.column(changes.CHANGE_COLUMN)))  # the LEFT JOIN's empty row
            pos = replace(pos, target=target, after=None, sealed_done=True)
        else:
            cur.execute(rows_sql, parameters=tuple(params))
            raw = cur.fetch_arrow_table()
            target, entries = str(pos.target), 0
        parts: list[pa.Table] = []
        deleted = changes.DELETED_SCHEMA.empty_table()
        if entries:
            sealed, deleted = self._sealed_changes(cur, target, prev)
            parts.append(sealed)
        if raw.num_rows >= self._max_rows:
            last = raw.slice(raw.num_rows - 1).to_pylist()[0]
            after = (str(last[changes.CHANGE_COLUMN]), *(_text(last[c]) for c in spec.primary_key))
            self._position = replace(pos, after=after)
        else:
            self._position = _Position(table=spec.key, prev=target)
        rows = as_declared(spec, raw.drop_columns([changes.CHANGE_COLUMN]))
        if rows.num_rows:
            parts.append(rows)
        if not deleted.num_rows and (not parts or not any(p.num_rows for p in parts)):
            return None
        if not parts:
            return self._reader(self._spec.arrow_schema().empty_table()), deleted
        return self._reader(pa.concat_tables(parts)), deleted

    def _sealed_changes(self, cur: Any, target: str, prev: str) -> tuple[pa.Table, pa.Table]:
        """The sealed-tier changes committed in the interval, newest version per key, and
        the ranges deleted in it (a deleted range drops the sealed changes entered before
        it in its range: the log's order, ``seq``, is commit order per key)."""
        col = quote_ident(changes.CHANGE_COLUMN)
        old, new = _Snapshot.parse(prev), _Snapshot.parse(target)
        cur.execute(f"SELECT payload FROM {sealed_changes_table(self._db.settings)} t "
                    f"WHERE table_key = $1 AND t.{col} >= $2 AND t.{col} < $3 "
                    f"AND pg_visible_in_snapshot(t.{col}::text::xid8, $4::text::pg_snapshot) "
                    f"AND NOT pg_visible_in_snapshot(t.{col}::text::xid8, $5::text::pg_snapshot) ORDER BY seq",
                    parameters=(self._spec.key, old.xmin, new.xmax, target, prev))
        payloads = cur.fetch_arrow_table().column("payload").to_pylist()
        schema = self._spec.arrow_schema()
        time_col = self._spec.time_column or "timestamp"
        rows: list[pa.Table] = []
        gone: list[pa.Table] = []
        for payload in payloads:
            entry = changes.decode(payload)
            if not changes.is_deleted_range(entry):
                rows.append(changes.entry_rows(self._spec, entry))
                continue
            entry = entry.replace_schema_metadata(None)
            gone.append(entry)
            for symbol, start, end in zip(*(entry.column(c).to_pylist() for c in ("symbol", "start", "end")),
                                          strict=True):
                rows = [_drop_range(t, time_col, symbol, start, end) for t in rows]
        deleted = pa.concat_tables(gone) if gone else changes.DELETED_SCHEMA.empty_table()
        if self._symbols is not None:
            deleted = deleted.filter(pc.is_in(deleted.column("symbol"), pa.array(self._symbols, pa.string())))
        if not rows:
            return schema.empty_table(), deleted
        frame = pl.from_arrow(pa.concat_tables(rows))
        assert isinstance(frame, pl.DataFrame)
        if self._symbols is not None:
            frame = frame.filter(pl.col("symbol").is_in(self._symbols))
        # Entries of one key are written under the chunk's row lock, so their order (seq)
        # is their commit order: keep the last.
        frame = frame.unique(subset=list(self._spec.primary_key), keep="last", maintain_order=True)
        return frame.to_arrow().cast(schema), deleted

    def _symbol_filter(self, params: list[Any]) -> list[str]:
        if self._symbols is None:
            return []
        params.append(json.dumps(self._symbols))
        return [f"t.symbol = ANY(ARRAY(SELECT jsonb_array_elements_text(${len(params)}::jsonb)))"]

    def _reader(self, table: pa.Table) -> pa.Table:
        """Declared types -> the range readers' types (decimals as float64 unless exact)."""

        return to_reader(self._spec, table, self._spec.read_schema(exact=self._exact))


def _drop_range(table: pa.Table, time_col: str, symbol: str, start: dt.datetime, end: dt.datetime) -> pa.Table:
    """``table`` without its rows of ``symbol`` in ``[start, end]``."""
    ts = table.column(time_col)
    window = pc.and_(pc.greater_equal(ts, pa.scalar(start, ts.type)), pc.less_equal(ts, pa.scalar(end, ts.type)))
    inside = pc.and_(pc.equal(table.column("symbol"), symbol), window)
    return table.filter(pc.invert(pc.fill_null(inside, False)))


def _snapshot(cur: Any) -> str:
    cur.execute("SELECT pg_current_snapshot()::text")
    row = cur.fetchone()
    assert row is not None
    return str(row[0])


def _text(value: Any) -> str:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def follow(db: Database, table: str, *, symbols: str | Sequence[str] | None = None, since: DateLike | None = None,
         cursor: str | None = None, max_rows: int = DEFAULT_MAX_ROWS, timeout: float | None = None,
         poll_interval: float = DEFAULT_POLL_INTERVAL, exact: bool = False,
         return_type: ReturnType = "polars") -> Tail[Any]:
    """Follow ``table``: see :meth:`regime_io.PostgreSQLIntegration.follow`."""
    spec = db.spec(table)
    check_return_type(return_type)
    if spec.time_column is None:
        raise UsageError(f"{spec.key} has no time column; tail follows market_data, options_data, market_regimes "
                         "and market_regimes_1min", table=spec.key, value=table)
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise UsageError(f"max_rows must be a whole number >= 1, got {max_rows!r}", value=max_rows)
    for name, value in (("timeout", timeout), ("poll_interval", poll_interval)):
        if value is None and name == "timeout":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (
                name == "poll_interval" and value == 0):
            raise UsageError(f"{name} must be a number of seconds {'>= 0' if name == 'timeout' else '> 0'}"
                             f"{' or None' if name == 'timeout' else ''}, got {value!r}", value=value)
    if since is not None and cursor is not None:
        raise UsageError("pass since= (start from a time) or cursor= (resume), not both", table=spec.key)
    if db.settings.pooler == "transaction":
        raise UsageError(f"{spec.key}: follow needs a direct connection to PostgreSQL: it LISTENs for the "
                         "writers' notifications, and behind a transaction pooler (pooler = transaction) a "
                         "LISTEN stays in one server session that the pooler lends to other clients, so they "
                         "would not arrive. Follow from a PostgreSQLIntegration configured with the server's own "
                         "host and port and pooler = none (docs/configuration.md, 'Behind PgBouncer')",
                         table=spec.key)
    if db.settings.citus:
        raise UsageError(f"{spec.key}: follow is not supported on Citus: each worker numbers its own "
                         "transactions, so the coordinator's snapshots cannot tell which rows committed "
                         "(docs/live.md)", table=spec.key)
    wanted = None if symbols is None else symbol_list(symbols, name="symbols", case=db.settings.symbol_case)
    if cursor is not None:
        position = _Position.decode(cursor, spec)
    elif since is not None:
        start, _ = parse_time(since, name="since", timezone=db.settings.storage_timezone)
        position = _Position(table=spec.key, prev=None, since=start)
    else:
        position = _Position(table=spec.key, prev=_now(db, spec))
    return Tail(db, spec, position, symbols=wanted, max_rows=max_rows, timeout=timeout,
                poll_interval=float(poll_interval), exact=exact, return_type=return_type)


def _now(db: Database, spec: TableSpec) -> str:
    """The server's snapshot now: the start of a tail "from now"."""
    try:
        with db.pool.connection() as conn:
            cur = conn.cursor()
            try:
                cur.execute("SELECT pg_current_snapshot()::text, EXISTS (SELECT 1 FROM pg_extension "
                            "WHERE extname = 'citus')")
                row = cur.fetchone()
            finally:
                cur.close()
    except DRIVER_ERRORS as err:
        raise wrap_error(db, err, what="tail", table=spec.key) from err
    assert row is not None
    if row[1]:
        raise UsageError(f"{spec.key}: follow is not supported on Citus (the server has the citus extension): "
                         "each worker numbers its own transactions (docs/live.md)", table=spec.key)
    return str(row[0])
