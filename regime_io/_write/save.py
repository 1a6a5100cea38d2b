"""Writers: validated, atomic, idempotent bulk ingest through ADBC COPY.

One call is one transaction: it lands whole or not at all. Re-running a call with the
same rows changes nothing (upsert on the natural key). Two paths:

- **copy**: when no row of the batch can collide with a stored row (one index probe over
  the batch's symbols and time range says so), rows are COPYed straight into the table;
  plain appends never pay for staging.
- **staged**: otherwise rows are COPYed into a temporary staging table and merged with
  ``INSERT ... ON CONFLICT`` (update changed rows, or ignore, per ``on_conflict``).

If a concurrent writer inserts colliding rows between the probe and the COPY, the COPY
fails with a unique violation, the transaction rolls back and the call re-runs staged.
Deadlocks and serialisation failures are retried the same way (the whole call, from
the validated batch held in memory).

Example:
    >>> result = save(db, "market_data", bars)            # doctest: +SKIP
    >>> result.inserted, result.updated                   # doctest: +SKIP
    (375, 0)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from .._frames import as_stream
from .._tiers import catalog
from .._tiers.row_groups import periods_of
from .._tiers.sealed_guard import extend_horizon_first
from ..errors import UsageError, ValidationError
from ..types import ExtraColumns, OnConflict, OnDuplicate, Tier, check_choice
from . import vintages as _vintages
from .transaction import Progress, WriteResult, save_batch, save_stream
from .validate import validate

if TYPE_CHECKING:
    from .._conn.database import Database

__all__ = ["save", "save_rolling_market_regime"]


DEFAULT_CHUNK_ROWS = 250_000


def save(
    db: Database,
    table: str,
    data: Any,
    *,
    on_conflict: OnConflict = "update",
    on_duplicate: OnDuplicate = "error",
    extra_columns: ExtraColumns = "error",
    strict: bool = False,
    date_format: str | None = None,
    chunk_rows: int | None = None,
    progress: Progress | None = None,
    tier: Tier = "auto",
    known_at: dt.datetime | str | None = None,
) -> WriteResult:
    """Validate ``data`` against ``table`` and write it in one transaction.

    Parameters:
        table: ``market_data``, ``options_data``, ``market_regimes``, ``market_regimes_1min``
            (or the seed's ``1min_market_regimes``), ``optimization_results``.
        data: a polars/pandas DataFrame, polars LazyFrame, Arrow Table/RecordBatch, a dict or
            list of dicts, or an iterator of such frames (streamed in chunks, one transaction);
            or any Arrow stream -- an object with ``__arrow_c_stream__`` (a
            ``RecordBatchReader``, a DuckDB relation, an ``iter_*`` stream) or a pyarrow
            dataset or scanner -- read batch by batch, also in one transaction.
        on_conflict: rows whose natural key exists: ``"update"`` them (default), ``"ignore"``
            them, or raise ``WriteError`` (``"error"``).
        on_duplicate: duplicate keys inside the batch: ``"error"`` (default) or ``"keep_last"``.
        extra_columns: unknown columns: ``"error"`` (default) or ``"ignore"``.
        strict: turn data-quality warnings (``low > high``...) into errors.
        chunk_rows: rows per COPY chunk (progress granularity), default 250,000.
        progress: called as ``progress(rows_done, rows_total_or_None)`` after each chunk.
        tier: ``"auto"``: rows go to the row tier, except rows of sealed series-months,
            which are merged into their chunks; ``"sealed"``: every row is encoded straight
            into chunks (backfills of history; rows already stored for those series-months
            move into the chunks too).
        known_at: the knowledge time of this write, for tables that keep history
            (``[DATABASE] history_tables``, docs/history.md): a datetime (naive: storage
            zone) to backfill a vintage produced in the past, or the name of a datetime
            column of ``data`` (rows are written in the order of its values, one vintage
            at a time, in one transaction; the column is not stored). Default: the
            server's clock when the write merges.

    Returns:
        :class:`WriteResult` with inserted / updated / unchanged counts.

    Raises:
        ValidationError: the data does not fit; nothing was sent.
        WriteError: the server refused the write; nothing was written.
        ServerUnavailableError: the connection was lost; nothing was written, retry is safe.
        SchemaError: unknown table, or tables missing (call ``initialize_database()``).

    Example:
        >>> pg.save("market_regimes_1min", frame, on_conflict="ignore")   # doctest: +SKIP
    """
    spec = db.spec(table)
    check_choice("on_conflict", on_conflict, OnConflict)
    check_choice("on_duplicate", on_duplicate, OnDuplicate)
    check_choice("extra_columns", extra_columns, ExtraColumns)
    check_choice("tier", tier, Tier)
    if tier == "sealed" and not spec.sealable:
        raise UsageError(f"{spec.key} has no sealed tier; tier='sealed' applies to the time-series tables",
                         table=spec.key, value=tier)
    chunk_rows = chunk_rows or DEFAULT_CHUNK_ROWS
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise UsageError(f"chunk_rows must be a whole number >= 1, got {chunk_rows!r}", value=chunk_rows)
    if data is None:
        raise ValidationError(f"{spec.key}: nothing to write (data is None)", table=spec.key)
    data = as_stream(data)  # an Arrow stream (DuckDB relation, pyarrow scanner...): batches, streamed
    options = dict(storage_timezone=db.settings.storage_timezone, extra_columns=extra_columns,
                   on_duplicate=on_duplicate, strict=strict, date_format=date_format,
                   symbol_case=db.settings.symbol_case)
    if _is_chunk_stream(data):
        if tier == "sealed":
            raise UsageError(f"{spec.key}: tier='sealed' takes one frame, not a stream of chunks", table=spec.key,
                             value=tier)
        return save_stream(db, spec, iter(data), on_conflict=on_conflict, chunk_rows=chunk_rows,
                            progress=progress, options=options)
    if known_at is not None:
        vintages = _vintages.vintages(db, spec, data, known_at, options, stream=_is_chunk_stream(data))
        if vintages is not None:
            return _vintages.save_vintages(db, spec, vintages, on_conflict=on_conflict, chunk_rows=chunk_rows,
                                         tier=tier)
    batch = validate(spec, data, **options)  # type: ignore[arg-type]
    if tier == "sealed":  # new chunks: the sealed-month guard's horizon first (regime_io._tiers.sealed_guard)
        extend_horizon_first(db, spec, periods_of(spec, batch))
    return save_batch(db, spec, batch, on_conflict=on_conflict, chunk_rows=chunk_rows, progress=progress,
                       tier=tier)


def save_rolling_market_regime(db: Database, data: Any, *, window_minutes: int | None = None,
                               date_format: str | None = None) -> WriteResult:
    """Upsert the newest 1-minute regimes from a live loop and trim the rolling window.

    Built for one or a few rows per symbol per minute: on a warm pool this is one index
    probe plus one COPY (or a staged upsert when a minute is re-sent) and one commit.
    Duplicate keys keep the last row. With a window (``window_minutes`` or the
    ``rolling_window_minutes`` setting), rows of the batch's symbols older than the
    symbol's newest timestamp minus the window are deleted in the same transaction.

    Example:
        >>> pg.save_rolling_market_regime(latest_rows, window_minutes=375)   # doctest: +SKIP
    """
    spec = db.spec("market_regimes_1min")
    window = window_minutes if window_minutes is not None else db.settings.rolling_window_minutes
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise UsageError(f"window_minutes must be a whole number >= 1, got {window!r}", value=window)
    batch = validate(spec, data, storage_timezone=db.settings.storage_timezone, on_duplicate="keep_last",
                     date_format=date_format, symbol_case=db.settings.symbol_case)
    trim = None
    if window is not None and batch.num_rows:
        trim = [{"symbol": key[0], "cutoff": (last - dt.timedelta(minutes=window)).isoformat()}
                for key, _, last, _ in catalog.series_stats(spec, batch)]
    return save_batch(db, spec, batch, on_conflict="update", chunk_rows=DEFAULT_CHUNK_ROWS, progress=None,
                       trim=trim)


# ---------------------------------------------------------------------------------------


def _is_chunk_stream(data: Any) -> bool:
    if isinstance(data, Iterator):
        return True
    if isinstance(data, (list, tuple)) and data:
        return all(isinstance(x, (pl.DataFrame, pl.LazyFrame, pa.Table, pa.RecordBatch))
                   or type(x).__module__.startswith("pandas") for x in data)
    return False
