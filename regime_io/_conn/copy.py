"""The COPY primitive: Arrow batches into a table through ADBC bulk ingest, and session staging tables."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from .._sql.quote import quote_ident
from ..tables import TableSpec


def copy_into(cur: Any, table: str, chunk: pa.Table, *, db_schema_name: str | None = None,
            temporary: bool = False) -> None:
    """COPY ``chunk`` into ``table`` (one COPY statement), fed in small record batches.

    ADBC encodes each record batch it is given whole, then hands it to libpq, which blocks
    until the socket has taken all of it: with big batches the client encodes while the
    server waits, then the server parses while the client waits. Batches that fit in the
    socket buffer (~32 KB here; Unix sockets default to 208 KB) let the client encode
    batch k+1 while the server parses batch k. Measured on 2 cores, 1M bars: 2.40 s ->
    1.81 s, the time the server takes to COPY the same rows from a file.
    """
    # (nbytes walks every buffer, ~30 us: not worth it for the fewest rows a batch holds anyway)
    rows = 64 if chunk.num_rows <= 64 else max(64, _COPY_BATCH_BYTES * chunk.num_rows // max(1, chunk.nbytes))
    options: dict[str, Any] = {"db_schema_name": db_schema_name} if db_schema_name else {}
    cur.adbc_ingest(table, chunk.to_reader(max_chunksize=rows), mode="append", temporary=temporary, **options)


# Bytes of Arrow data per record batch handed to ADBC's COPY writer (see copy_into).
_COPY_BATCH_BYTES = 32 * 1024


def session_table(cur: Any, spec: TableSpec, name: str) -> None:
    """An empty session-temporary table ``name`` with ``spec``'s columns, as COPY writes
    them (JSONB as text). ON COMMIT DELETE ROWS: the table lives as long as the pooled
    session and empties at every commit, so a warm connection pays no CREATE per call."""
    columns = ", ".join(f"{quote_ident(c.name)} {c.wire_pg_type}" for c in spec.columns)
    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {quote_ident(name)} ({columns}) ON COMMIT DELETE ROWS")
    cur.execute(f"TRUNCATE {quote_ident(name)}")
