"""The writers' side of the live tail: change stamps, sealed-change entries, notifications.

Every row of a regime_io table carries ``change_xid`` (BIGINT), the 64-bit id of the
transaction that last inserted or changed it: a column default
(``pg_current_xact_id()``) for inserts, COPY included, and an explicit assignment in the
upsert's ``DO UPDATE SET``. A consumer compares these ids with two snapshots of the
server (``pg_current_snapshot()``): the rows whose transaction is visible in the newer
snapshot and not in the older one are exactly the rows committed in between, whatever
order the transactions started or committed in (``regime_io._read.tail``, ``docs/live.md``).

The column is indexed with BRIN (a few pages per partition, block-range min/max): rows
are appended in roughly increasing transaction order, so "ids at or above this one"
prunes everything but the newest block ranges. A B-tree on the column made a fresh
500k-row COPY 60% slower in a quick measurement; BRIN costs nothing measurable.

Rows merged into sealed chunks have no row of their own to stamp: the write also stores
the new values of the rows it inserted or changed, as one zstd Arrow IPC payload, in
``<prefix>sealed_changes`` (stamped the same way), and consumers read them from there.
A chunk the write created whole (a backfill) is stored there as its own payload bytes
instead (:func:`record_new_chunks`): its rows are every row of it, already encoded.
A range delete (``delete_range``) stores its range there too, as an entry whose payload
is marked as a deleted range (:func:`record_deleted_range`): deleted rows leave no row.

Writers send ``pg_notify(channel, table)`` in the write transaction: PostgreSQL delivers
it at commit (never for a rolled-back transaction), so a consumer woken by it finds the
rows visible. Payloads are only the table key (NOTIFY payloads are capped at 8,000 bytes).

Example:
    >>> from regime_io.config import Settings
    >>> channel(Settings(), "market_regimes_1min")
    'regime_io:public.mr_market_regimes_1min'
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.ipc as ipc

from .._conn.pipeline import run
from .._frames import conform
from .._sql.names import channel, sealed_changes_table
from .._sql.quote import literal, qualified, quote_ident
from ..tables import TABLES, TableSpec
from . import sealed_format as chunks

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "CHANGE_COLUMN", "DELETED_SCHEMA", "XID_DEFAULT", "changed_rows", "decode", "encode", "encode_new_chunks",
    "entry_rows", "is_deleted_range", "live_sql", "notify", "notify_sql", "prune_sealed_changes",
    "record_deleted_range", "record_new_chunks", "record_sealed_changes", "sealed_changes_entry",
]

log = logging.getLogger(__name__)


#: The column every table carries: the id of the transaction that last wrote the row.
CHANGE_COLUMN = "change_xid"


#: This transaction's 64-bit id as a BIGINT (BRIN has no operator class for xid8).
XID_DEFAULT = "(pg_current_xact_id()::text::bigint)"


def notify_sql() -> str:
    """``SELECT pg_notify($1, $2)`` (channel, table key): delivered when the write commits."""
    return "SELECT pg_notify($1, $2)"


def live_sql(settings: Settings) -> list[str]:
    """DDL of the live tail: the change column and its BRIN index on every table (added to
    tables created before it, without a rewrite: existing rows keep NULL, "never changed
    since the tail existed"), and the sealed-change table."""
    out: list[str] = []
    for spec in TABLES.values():
        table = qualified(settings.schema, settings.table_name(spec.key))
        # Guarded: ALTER TABLE takes an ACCESS EXCLUSIVE lock even when it changes nothing.
        out.append(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = "
            f"{literal(table)}::regclass AND attname = {literal(CHANGE_COLUMN)} AND NOT attisdropped) THEN "
            f"ALTER TABLE {table} ADD COLUMN {quote_ident(CHANGE_COLUMN)} BIGINT; "
            f"ALTER TABLE {table} ALTER COLUMN {quote_ident(CHANGE_COLUMN)} SET DEFAULT {XID_DEFAULT}; "
            "END IF; END $$"
        )
        index = f"{settings.table_name(spec.key)}_{CHANGE_COLUMN}_brin"[:63]
        out.append(f"CREATE INDEX IF NOT EXISTS {quote_ident(index)} ON {table} USING brin "
                   f"({quote_ident(CHANGE_COLUMN)}) WITH (autosummarize = on)")
    out.append(
        f"CREATE TABLE IF NOT EXISTS {sealed_changes_table(settings)} (\n"
        "    seq BIGSERIAL PRIMARY KEY,\n"
        "    table_key VARCHAR(32) NOT NULL,\n"
        f"    {CHANGE_COLUMN} BIGINT NOT NULL DEFAULT {XID_DEFAULT},\n"
        "    row_count INTEGER NOT NULL,\n"
        "    created_at TIMESTAMP NOT NULL DEFAULT LOCALTIMESTAMP,\n"
        "    payload BYTEA NOT NULL\n)"
    )
    # Schema version 8: the payload is zstd already, but its Arrow schema message is
    # compressible, so TOAST's pglz did not give up in its first kB and ran over the whole
    # value before storing it uncompressed: 0.3 s of a 1.3 s backfill of 1M bars (19 MB).
    changes = sealed_changes_table(settings)
    out.append(f"DO $$ BEGIN IF (SELECT attstorage FROM pg_attribute WHERE attrelid = {literal(changes)}::regclass "
               f"AND attname = 'payload') <> 'e' THEN "
               f"ALTER TABLE {changes} ALTER COLUMN payload SET STORAGE EXTERNAL; END IF; END $$")
    index = f"{settings.table_prefix}sealed_changes_xid_idx"[:63]
    out.append(f"CREATE INDEX IF NOT EXISTS {quote_ident(index)} ON {sealed_changes_table(settings)} "
               f"(table_key, {quote_ident(CHANGE_COLUMN)})")
    return out


# -- sealed chunks -------------------------------------------------------------------------


def changed_rows(spec: TableSpec, rows: pa.Table, key: tuple[Any, ...]) -> pa.Table:
    """The rows a merge into one chunk added or changed (payload columns, from the merge's
    own difference: it cannot disagree with what was stored), with the chunk key's columns
    added: what a consumer of the tail must receive."""
    return conform(rows, spec.arrow_schema(), constants=dict(zip(spec.chunk_by, key, strict=True)))


# zstd at its default level (1). Level -1 encoded a restated day of 10 symbols 1.6 -> 1.05
# ms, but a 1M-row backfill's entries grew 12% (19.3 -> 21.6 MB) and the backfill took
# ~5-10% longer for the bytes written: not taken.
def encode(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema, options=ipc.IpcWriteOptions(compression="zstd")) as writer:
        # One record batch: zstd starts afresh per batch, and a restated day of 10 symbols
        # (10 batches of 1,440 rows) took 2.7 ms so, against 1.0 ms as one (11% smaller).
        writer.write_table(table.combine_chunks())
    return sink.getvalue()


def decode(payload: Any) -> pa.Table:
    return ipc.open_stream(pa.py_buffer(payload)).read_all()


def sealed_changes_entry(tables: list[pa.Table]) -> tuple[int, bytes] | None:
    """The change-log entry of the rows a write inserted into or changed in sealed chunks:
    their count and payload (None: no row). Pure, so a writer may encode it on a thread
    while its statements run (:func:`record_sealed_changes`)."""
    rows = [t for t in tables if t.num_rows]
    if not rows:
        return None
    table = pa.concat_tables(rows)
    return table.num_rows, encode(table)


def record_sealed_changes(cur: Any, settings: Settings, spec: TableSpec, entry: tuple[int, bytes] | None) -> None:
    """Store a :func:`sealed_changes_entry` (one entry, in the write's transaction; stamped
    with its transaction id by the column default)."""
    if entry is None:
        return
    count, payload = entry
    _insert_entry(cur, settings, spec, count, payload)
    log.debug("%s: %d sealed-tier changes recorded for the live tail", spec.key, count)


def _insert_entry(cur: Any, settings: Settings, spec: TableSpec, rows: int, payload: bytes) -> None:
    """One change-log entry (rows, new chunks or a deleted range), in the write's
    transaction; stamped with its transaction id by the column default."""
    cur.execute(f"INSERT INTO {sealed_changes_table(settings)} (table_key, row_count, payload) "
                "VALUES ($1, $2, $3)", parameters=(spec.key, rows, payload))


# Schema metadata marking a change-log entry that records a deleted range, or whole new
# chunks (their payloads), not rows.
_KIND, _DELETED, _CHUNKS = b"regime_io.change", b"deleted", b"chunks"


def record_new_chunks(cur: Any, settings: Settings, spec: TableSpec,
                      written: Sequence[tuple[tuple[Any, ...], int, bytes]]) -> None:
    """Store the rows of chunks a write created whole: ``written`` holds each one's key,
    row count and payload as stored (every row of it is new). One entry of the payloads
    themselves, where rows re-encoded as zstd IPC took 19.3 MB and ~0.1 s to encode for
    a 1M-bar backfill (the payloads: 12.8 MB, encoded already)."""
    if not written:
        return
    rows = sum(n for _, n, _ in written)
    _insert_entry(cur, settings, spec, rows, encode_new_chunks(spec, written))
    log.debug("%s: %d rows of %d new sealed chunks recorded for the live tail", spec.key, rows, len(written))


def encode_new_chunks(spec: TableSpec, written: Sequence[tuple[tuple[Any, ...], int, bytes]]) -> bytes:
    """The payload of :func:`record_new_chunks`' entry: an Arrow IPC stream of one row per
    chunk (its key, fingerprint, codec and payload), uncompressed (the payloads are)."""
    keys = list(zip(*(key for key, _, _ in written), strict=True))
    columns = {c: pa.array(values, spec.column(c).arrow_type) for c, values in zip(spec.chunk_by, keys, strict=True)}
    columns["fingerprint"] = pa.array([chunks.fingerprint(spec)] * len(written), pa.string())
    columns["codec"] = pa.array([chunks.CODEC] * len(written), pa.string())
    columns["payload"] = pa.array([payload for _, _, payload in written], pa.large_binary())
    table = pa.table(columns).replace_schema_metadata({_KIND: _CHUNKS})
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def entry_rows(spec: TableSpec, entry: pa.Table) -> pa.Table:
    """The rows of a decoded change-log entry of rows (:func:`record_sealed_changes`) or of
    new chunks (:func:`record_new_chunks`), in ``spec``'s Arrow schema."""
    if (entry.schema.metadata or {}).get(_KIND) != _CHUNKS:
        return entry.cast(spec.arrow_schema())
    parts: list[pa.Table] = []
    payloads = entry.column("payload")
    for i, row in enumerate(entry.drop_columns(["payload"]).to_pylist()):
        rows = chunks.decode(spec, payloads[i].as_buffer(), row["fingerprint"], codec=row["codec"])
        parts.append(changed_rows(spec, rows, tuple(row[c] for c in spec.chunk_by)))
    return pa.concat_tables(parts) if parts else spec.arrow_schema().empty_table()


#: The Arrow schema of deleted ranges (an entry's payload, ``TailBatch.deleted``).
DELETED_SCHEMA = pa.schema([pa.field("symbol", pa.string()), pa.field("start", pa.timestamp("us")),
                            pa.field("end", pa.timestamp("us"))])


def record_deleted_range(cur: Any, settings: Settings, spec: TableSpec, symbols: list[str], span: Any,
                         rows: int) -> None:
    """Record that the rows of ``symbols`` in ``span`` (a TimeRange, ``end`` inclusive)
    were deleted: one change-log entry in the write's transaction, delivered by the live
    tail as ``TailBatch.deleted`` (the rows themselves are gone: a range is what a
    consumer needs to drop its copies)."""
    n = len(symbols)
    table = pa.table({"symbol": pa.array(sorted(symbols), pa.string()),
                      "start": pa.array([span.start] * n, pa.timestamp("us")),
                      "end": pa.array([span.end] * n, pa.timestamp("us"))}, schema=DELETED_SCHEMA)
    table = table.replace_schema_metadata({_KIND: _DELETED})
    _insert_entry(cur, settings, spec, rows, encode(table))


def is_deleted_range(table: pa.Table) -> bool:
    """True for a decoded change-log entry of :func:`record_deleted_range`."""
    return (table.schema.metadata or {}).get(_KIND) == _DELETED


def notify(cur: Any, settings: Settings, spec: TableSpec) -> None:
    """Queue this table's notification; PostgreSQL sends it when the transaction commits."""
    run(cur, notify_sql(), (channel(settings, spec.key), spec.key))


def prune_sealed_changes(cur: Any, settings: Settings, spec: TableSpec, cutoff: Any) -> int:
    """Delete ``spec``'s sealed-change entries recorded before ``cutoff`` (``cleanup_old_data``:
    the same retention as the rows). Returns the entries removed."""
    table = sealed_changes_table(settings)
    cur.execute(f"SELECT to_regclass({literal(table)}) IS NOT NULL")
    row = cur.fetchone()
    if not (row and row[0]):
        return 0  # a schema initialised before the live tail
    cur.execute(f"WITH gone AS (DELETE FROM {table} WHERE table_key = $1 AND created_at < $2 RETURNING 1) "
                "SELECT count(*) FROM gone", parameters=(spec.key, cutoff))
    row = cur.fetchone()
    return int(row[0]) if row else 0
