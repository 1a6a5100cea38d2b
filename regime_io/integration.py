"""``PostgreSQLIntegration``: the one public layer of regime_io.

Every method here carries the documented, typed signature; it checks nothing itself and
forwards to one private engine function (``_write.save``, ``_read.readers``, ``_read.asof``,
``_schema.maintenance``) with this object's :class:`~regime_io.database.Database` as ``db``.
``tests/test_facade.py`` checks that each method and its engine agree on every
parameter, default and annotation, so the two cannot drift apart.

Readers return the instance's ``return_type`` (``PostgreSQLIntegration(return_type=
"pandas")``, like ArcticDB's ``output_format``) unless a call overrides it; the
overloads tell editors and type checkers which frame comes back.

Example:
    >>> from regime_io import PostgreSQLIntegration
    >>> with PostgreSQLIntegration() as pg:              # doctest: +SKIP
    ...     pg.initialize_database()
    ...     pg.save_1min_market_regime(frame)
    ...     pg.get_latest_1min_market_regime("NIFTY")
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, overload

from ._conn.database import Database
from ._facade.analytics import Analytics
from ._facade.base import F, when_disabled
from ._facade.edits import Edits
from ._facade.ranges import RangeReaders
from ._frames import check_return_type, convert
from ._read import sqlquery as _sqlquery
from ._read import tail as _tail
from ._schema import maintenance as _maintenance
from ._schema.ddl import initialize_database
from ._tiers import catalog as _catalog
from ._tiers import sealing as _sealing
from ._write.save import save, save_rolling_market_regime
from ._write.transaction import WriteResult
from .config import Settings, load_settings
from .types import DateLike, ExtraColumns, OnConflict, OnDuplicate, ReturnType, Tier

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl
    import pyarrow as pa

    from ._read.tail import Tail
    from ._schema.maintenance import CleanupReport
    from ._tiers.sealing import SealReport
    from ._write.transaction import WriteResult

__all__ = ["PostgreSQLIntegration"]

log = logging.getLogger(__name__)

Progress = Callable[[int, "int | None"], None]

class PostgreSQLIntegration(RangeReaders[F], Analytics[F], Edits[F]):
    """Store and read market history in PostgreSQL as columnar frames.

    Parameters:
        config_file: the seed's INI file (``config/database_config.ini``).
        config: the seed's configuration dict (same sections, lower-case).
        settings: ready-made :class:`~regime_io.config.Settings` (takes precedence).
        return_type: what readers return unless a call says otherwise: ``"polars"``
            (default), ``"pandas"`` or ``"arrow"``.

    With no arguments (and no ``REGIME_IO_*`` environment) it uses the embedded server.
    Nothing connects until the first call that needs the server.

    Example:
        >>> pg = PostgreSQLIntegration(return_type="pandas")   # doctest: +SKIP
        >>> pg.get_market_data("NIFTY", "2024-01-02", "2024-01-31")  # a pandas DataFrame  # doctest: +SKIP
    """

    @overload
    def __init__(self: PostgreSQLIntegration[pl.DataFrame], config_file: str | os.PathLike[str] | None = None,
                 config: Mapping[str, Any] | None = None, *, settings: Settings | None = None,
                 return_type: Literal["polars"] = "polars") -> None: ...
    @overload
    def __init__(self: PostgreSQLIntegration[pd.DataFrame], config_file: str | os.PathLike[str] | None = None,
                 config: Mapping[str, Any] | None = None, *, settings: Settings | None = None,
                 return_type: Literal["pandas"]) -> None: ...
    @overload
    def __init__(self: PostgreSQLIntegration[pa.Table], config_file: str | os.PathLike[str] | None = None,
                 config: Mapping[str, Any] | None = None, *, settings: Settings | None = None,
                 return_type: Literal["arrow"]) -> None: ...

    def __init__(
        self,
        config_file: str | os.PathLike[str] | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        settings: Settings | None = None,
        return_type: ReturnType = "polars",
    ) -> None:
        check_return_type(return_type)
        self.settings = settings if settings is not None else load_settings(config_file, config)
        self.db = Database(self.settings)
        self.return_type: ReturnType = return_type
        self._warned_disabled = False

    def __repr__(self) -> str:
        state = "disabled" if not self.settings.enabled else self.settings.describe()
        return f"<PostgreSQLIntegration {state}>"

    def __enter__(self) -> PostgreSQLIntegration[F]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- lifecycle ----------------------------------------------------------------------

    @when_disabled(lambda pg, a: 0)
    def initialize_database(self, *, widen_prices: bool = False) -> int:
        """Create the schema, the tables and their indexes if missing (idempotent).

        The price columns get ``price_scale`` decimals (``[DATABASE] price_scale``, default
        2), recorded in the schema; every reader and writer then uses the schema's scale.
        A schema that stores another scale is refused with a :class:`SchemaError` naming
        both, unless ``widen_prices=True`` and the configured scale is larger: the stored
        price columns are then widened (a rewrite of the price tables under an exclusive
        lock, docs/schema.md). Other processes keep the scale they read until restarted.

        Returns:
            The schema version.

        Raises:
            SchemaError: the schema stores another ``price_scale``.

        Example:
            >>> pg.initialize_database()   # doctest: +SKIP
            3
        """
        try:
            return initialize_database(self.db.pool, self.db.resolved, widen_prices=widen_prices)
        finally:
            self.db.forget_metadata()  # the price scale was just recorded (or widened), the schema upgraded

    def close(self) -> None:
        """Release every pooled connection. The embedded server keeps running.

        Later calls raise :class:`~regime_io.errors.PoolClosedError`.
        """
        self.db.close()

    # -- writers ------------------------------------------------------------------------

    @when_disabled(lambda pg, a: WriteResult.disabled(a['table']))
    def save(self, table: str, data: Any, *, on_conflict: OnConflict = "update",
             on_duplicate: OnDuplicate = "error", extra_columns: ExtraColumns = "error",
             strict: bool = False, date_format: str | None = None, chunk_rows: int | None = None,
             progress: Progress | None = None, tier: Tier = "auto",
             known_at: dt.datetime | str | None = None) -> WriteResult:
        """Validate ``data`` against ``table`` and upsert it in one transaction.

        Parameters:
            table: a table key (``market_data``, ``options_data``, ``market_regimes``,
                ``market_regimes_1min``, ``optimization_results``), the seed's
                ``[TABLES]`` key or a short alias (``bars``, ``options``, ``regimes``,
                ``1min``, ``results``).
            data: a polars/pandas DataFrame (a named ``DatetimeIndex``, or a
                ``MultiIndex`` of ``symbol`` and ``timestamp``, counts as columns), a
                polars LazyFrame, an Arrow Table/RecordBatch, a dict or list of dicts,
                or an iterator of such frames (streamed in chunks, one transaction);
                or any Arrow stream, read batch by batch in one transaction: an object
                with ``__arrow_c_stream__`` (a ``RecordBatchReader``, a DuckDB
                relation, what ``iter_market_data`` returns), a pyarrow dataset or scanner.
            on_conflict: rows whose natural key exists: ``"update"`` them (default),
                ``"ignore"`` them, or refuse the write (``"error"``).
            on_duplicate: duplicate keys inside the batch: ``"error"`` (default) or
                ``"keep_last"``.
            extra_columns: input columns the table lacks: ``"error"`` (default) or
                ``"ignore"``.
            strict: data-quality warnings (``low > high``, greeks rounded away) become
                errors.
            date_format: a ``strftime`` layout for timestamp/date strings that are not
                ISO 8601 (``"%d/%m/%Y %H:%M"``); without it only ISO 8601 is accepted,
                because ``04/03/2024`` could be 4 March or 3 April.
            chunk_rows: rows per COPY chunk (progress granularity), default 250,000.
            progress: called as ``progress(rows_done, rows_total_or_None)`` after each chunk.
            tier: ``"auto"`` (default): rows go to the row tier, except rows of sealed
                series-months, which merge into their chunks in the same transaction;
                ``"sealed"``: every row is encoded straight into chunks, the fast path for
                backfilling history (one frame, time-series tables only; rows already
                stored for those series-months move into the chunks too).
            known_at: the knowledge time of the write, for tables that keep history
                (``[DATABASE] history_tables``; see docs/history.md): a datetime (naive:
                storage zone) to backfill a vintage computed in the past, or the name of
                a datetime column of ``data`` (the rows are merged vintage by vintage in
                the order of that column, in one transaction; the column is not stored).
                Default: the server's clock at the merge. Vintages of a row must be
                written in knowledge order (an earlier ``known_at`` than the stored
                version's is a ``WriteError``).

        Returns:
            A :class:`WriteResult`: inserted / updated / unchanged counts.

        Raises:
            UsageError: an unknown table or option.
            ValidationError: the data does not fit (names table, column, first bad row
                and value); nothing was sent.
            WriteError: the server refused the write; nothing was written.
            ServerUnavailableError: the connection was lost; nothing was written, retry is safe.

        Example:
            >>> pg.save("bars", frame, on_conflict="ignore")   # doctest: +SKIP
        """

        return save(self.db, table, data, on_conflict=on_conflict, on_duplicate=on_duplicate,
                    extra_columns=extra_columns, strict=strict, date_format=date_format,
                    chunk_rows=chunk_rows, progress=progress, tier=tier, known_at=known_at)

    def save_market_data(self, data: Any, *, on_conflict: OnConflict = "update",
                         on_duplicate: OnDuplicate = "error", extra_columns: ExtraColumns = "error",
                         strict: bool = False, date_format: str | None = None, chunk_rows: int | None = None,
                         progress: Progress | None = None, tier: Tier = "auto",
                         known_at: dt.datetime | str | None = None) -> WriteResult:
        """Save OHLCV bars (``market_data``); options as for :meth:`save`.

        Example:
            >>> pg.save_market_data(bars)   # doctest: +SKIP
        """
        return self.save("market_data", data, on_conflict=on_conflict, on_duplicate=on_duplicate,
                         extra_columns=extra_columns, strict=strict, date_format=date_format,
                         chunk_rows=chunk_rows, progress=progress, tier=tier, known_at=known_at)

    def save_options_data(self, data: Any, *, on_conflict: OnConflict = "update",
                          on_duplicate: OnDuplicate = "error", extra_columns: ExtraColumns = "error",
                          strict: bool = False, date_format: str | None = None, chunk_rows: int | None = None,
                          progress: Progress | None = None, tier: Tier = "auto",
                         known_at: dt.datetime | str | None = None) -> WriteResult:
        """Save option bars with greeks (``options_data``); options as for :meth:`save`.

        ``option_type`` accepts CE/PE, C/P, CALL/PUT in any case and is stored as CE/PE.
        """
        return self.save("options_data", data, on_conflict=on_conflict, on_duplicate=on_duplicate,
                         extra_columns=extra_columns, strict=strict, date_format=date_format,
                         chunk_rows=chunk_rows, progress=progress, tier=tier, known_at=known_at)

    def save_market_regime(self, data: Any, *, on_conflict: OnConflict = "update",
                           on_duplicate: OnDuplicate = "error", extra_columns: ExtraColumns = "error",
                           strict: bool = False, date_format: str | None = None, chunk_rows: int | None = None,
                           progress: Progress | None = None, tier: Tier = "auto",
                         known_at: dt.datetime | str | None = None) -> WriteResult:
        """Save regime classifications (``market_regimes``); options as for :meth:`save`."""
        return self.save("market_regimes", data, on_conflict=on_conflict, on_duplicate=on_duplicate,
                         extra_columns=extra_columns, strict=strict, date_format=date_format,
                         chunk_rows=chunk_rows, progress=progress, tier=tier, known_at=known_at)

    def save_1min_market_regime(self, data: Any, *, on_conflict: OnConflict = "update",
                                on_duplicate: OnDuplicate = "error", extra_columns: ExtraColumns = "error",
                                strict: bool = False, date_format: str | None = None,
                                chunk_rows: int | None = None, progress: Progress | None = None,
                                tier: Tier = "auto", known_at: dt.datetime | str | None = None) -> WriteResult:
        """Save 1-minute regimes (``market_regimes_1min``); options as for :meth:`save`."""
        return self.save("market_regimes_1min", data, on_conflict=on_conflict, on_duplicate=on_duplicate,
                         extra_columns=extra_columns, strict=strict, date_format=date_format,
                         chunk_rows=chunk_rows, progress=progress, tier=tier, known_at=known_at)

    def save_optimization_result(self, data: Any, *, on_conflict: OnConflict = "update",
                                 on_duplicate: OnDuplicate = "error", extra_columns: ExtraColumns = "error",
                                 strict: bool = False, date_format: str | None = None,
                                 chunk_rows: int | None = None, progress: Progress | None = None,
                                 known_at: dt.datetime | str | None = None) -> WriteResult:
        """Save optimisation results (a frame, one dict or a list of dicts); options as for :meth:`save`.

        ``run_id`` is a content hash unless given, so a retried save is a no-op.
        """
        return self.save("optimization_results", data, on_conflict=on_conflict, on_duplicate=on_duplicate,
                         extra_columns=extra_columns, strict=strict, date_format=date_format,
                         chunk_rows=chunk_rows, progress=progress, known_at=known_at)

    @when_disabled(lambda pg, a: WriteResult.disabled('market_regimes_1min'))
    def save_rolling_market_regime(self, data: Any, *, window_minutes: int | None = None,
                                   date_format: str | None = None) -> WriteResult:
        """Upsert the newest 1-minute regimes from a live loop and trim the rolling window.

        Built for one or a few rows per symbol per minute. Duplicate keys keep the last
        row. With a window (``window_minutes`` or the ``rolling_window_minutes``
        setting), rows of the batch's symbols older than the symbol's newest timestamp
        minus the window are deleted in the same transaction; the result's ``trimmed``
        (also in its printed form) says how many.

        Example:
            >>> pg.save_rolling_market_regime(latest_rows, window_minutes=375)   # doctest: +SKIP
        """

        return save_rolling_market_regime(self.db, data, window_minutes=window_minutes, date_format=date_format)

    # -- range readers --------------------------------------------------------------------

    # -- latest rows, option chains ---------------------------------------------------------

    # -- regime statistics ------------------------------------------------------------------

    # -- streams ----------------------------------------------------------------------------

    # -- live follower ----------------------------------------------------------------------

    @overload
    def follow(self, table: str, *, symbols: str | Sequence[str] | None = None, since: DateLike | None = None,
               cursor: str | None = None, max_rows: int = 100_000, timeout: float | None = None,
               poll_interval: float = 1.0, exact: bool = False, return_type: None = None) -> Tail[F]: ...
    @overload
    def follow(self, table: str, *, symbols: str | Sequence[str] | None = None, since: DateLike | None = None,
               cursor: str | None = None, max_rows: int = 100_000, timeout: float | None = None,
               poll_interval: float = 1.0, exact: bool = False,
               return_type: Literal["polars"]) -> Tail[pl.DataFrame]: ...
    @overload
    def follow(self, table: str, *, symbols: str | Sequence[str] | None = None, since: DateLike | None = None,
               cursor: str | None = None, max_rows: int = 100_000, timeout: float | None = None,
               poll_interval: float = 1.0, exact: bool = False,
               return_type: Literal["pandas"]) -> Tail[pd.DataFrame]: ...
    @overload
    def follow(self, table: str, *, symbols: str | Sequence[str] | None = None, since: DateLike | None = None,
               cursor: str | None = None, max_rows: int = 100_000, timeout: float | None = None,
               poll_interval: float = 1.0, exact: bool = False,
               return_type: Literal["arrow"]) -> Tail[pa.Table]: ...

    @when_disabled(lambda pg, a: _tail.Tail.ended(pg.db, a["table"], return_type=pg._rt(a["return_type"])))
    def follow(self, table: str, *, symbols: str | Sequence[str] | None = None, since: DateLike | None = None,
               cursor: str | None = None, max_rows: int = 100_000, timeout: float | None = None,
               poll_interval: float = 1.0, exact: bool = False, return_type: ReturnType | None = None) -> Any:
        """Follow a time-series table: its new and changed rows as frames, as they commit.

        Every committed insert and update is delivered once, per key in commit order,
        including transactions that commit late; rolled-back writes never are (mechanism
        and costs: ``docs/live.md``). Ranges removed by :meth:`delete_range` arrive in
        ``batch.deleted``; other deletes (retention, rolling trims) are not delivered.
        (Renamed from ``tail()`` in 0.x: :meth:`tail` now returns the last rows.)
        Writers notify at commit, so a batch arrives within milliseconds; the table is also
        polled every ``poll_interval`` seconds, for rows written by other tools.

        Parameters:
            table: ``market_data``, ``options_data``, ``market_regimes`` or
                ``market_regimes_1min`` (any name or alias :meth:`save` accepts).
            symbols: only these symbols (one or a list); None: every symbol.
            since: first deliver every stored row with a timestamp at or after this time
                (both tiers, one consistent read, one batch), then follow the changes.
            cursor: resume right after the batch whose ``.cursor`` this is (any process,
                any day). Neither ``since`` nor ``cursor``: follow from now (the moment of
                this call).
            max_rows: at most this many rows per batch (a large write arrives in pages).
            timeout: end the iteration after this many seconds without a new row;
                None: run until ``close()``.
            poll_interval: seconds between polls when no notification arrives.
            exact: DECIMAL columns as exact decimals instead of Float64.
            return_type: ``"polars"``, ``"pandas"`` or ``"arrow"``; default: the instance's.

        Returns:
            A :class:`~regime_io._read.tail.Tail`: an iterator (and context manager) of batches
            with ``.frame`` (the range readers' columns and dtypes) and ``.cursor`` (an
            opaque string token).

        Raises:
            UsageError: a bad argument, a damaged cursor or one of another table, both
                ``since`` and ``cursor``, a table without a time column, a Citus cluster.
            ReadError: the server refused a query.
            ServerUnavailableError: the server went away; resume from the last cursor.

        Example:
            >>> for batch in pg.follow("1min", symbols=["NIFTY"], timeout=300):  # doctest: +SKIP
            ...     act_on(batch.frame)
            ...     store_token(batch.cursor)
        """

        rt = self._rt(return_type)
        return _tail.follow(self.db, table, symbols=symbols, since=since, cursor=cursor, max_rows=max_rows,
                            timeout=timeout, poll_interval=poll_interval, exact=exact, return_type=rt)

    # -- catalog ----------------------------------------------------------------------------

    @overload
    def sql(self, query: str, *, exact: bool = False, return_type: None = None) -> F: ...
    @overload
    def sql(self, query: str, *, exact: bool = False, return_type: Literal["polars"]) -> pl.DataFrame: ...
    @overload
    def sql(self, query: str, *, exact: bool = False, return_type: Literal["pandas"]) -> pd.DataFrame: ...
    @overload
    def sql(self, query: str, *, exact: bool = False, return_type: Literal["arrow"]) -> pa.Table: ...

    @when_disabled(lambda pg, a: convert(_sqlquery.EMPTY, pg._rt(a["return_type"])))
    def sql(self, query: str, *, exact: bool = False, return_type: ReturnType | None = None) -> Any:
        """Run a SQL query over the tables, sealed months included.

        The query runs in polars' SQL engine over :meth:`scan` of each table it names,
        so it sees both tiers (rows and sealed chunks) and its ``WHERE`` tests on
        ``symbol``, ``timeframe``, ``timestamp`` (and the other columns ``scan`` pushes)
        reach the server and prune the sealed chunks. Aggregates, ``GROUP BY``, joins
        (bars with regimes), window functions and CTEs work; PostgreSQL-only functions
        do not. Plain SQL tools (psql, Grafana) read the row tables only: see
        ``docs/reading.md``, "SQL over both tiers".

        Parameters:
            query: a SELECT statement naming tables by key (``market_data``), alias
                (``bars``, ``options``, ``regimes``, ``"1min"``, ``results``), seed
                config key or configured name (``mr_market_data``).
            exact: DECIMAL columns as exact decimals instead of Float64.
            return_type: ``"polars"``, ``"pandas"`` or ``"arrow"``; the instance's
                default when None.

        Returns:
            The query's result.

        Raises:
            UsageError: the query names no table, or polars SQL refuses it.
            ReadError: the server refused a read.

        Example:
            >>> pg.sql("SELECT symbol, count(*) AS n FROM bars WHERE timestamp < '2024-02-01' "
            ...        "GROUP BY symbol")   # doctest: +SKIP
        """

        return convert(_sqlquery.run_sql(self.db, query, exact=exact).to_arrow(), self._rt(return_type))

    @when_disabled(lambda pg, a: {})
    def refresh_catalog(self, table: str | Sequence[str] | None = None) -> dict[str, int]:
        """Rebuild the series catalog from the rows stored, for rows written or deleted by other tools.

        regime_io's writers, rolling trims and :meth:`cleanup_old_data` keep the catalog
        exact on their own; call this after loading or deleting rows with other tools
        (``psql``, ``COPY``, an ETL job). It reads every row of the tables refreshed (one
        ``GROUP BY`` per table, row tier and sealed chunks), in one transaction.

        Parameters:
            table: one table name or alias, a list of them, or None for every
                time-series table.

        Returns:
            The number of series now catalogued, per table key.

        Raises:
            UsageError: an unknown table, or one without a time column.
            WriteError: the server refused the statements; the catalog is unchanged.

        Example:
            >>> pg.refresh_catalog("bars")   # doctest: +SKIP
            {'market_data': 200}
        """

        return _catalog.refresh(self.db, table)

    # -- data quality -----------------------------------------------------------------------

    # -- maintenance ------------------------------------------------------------------------

    @when_disabled(lambda pg, a: _maintenance.CleanupReport.empty(dry_run=a['dry_run']))
    def cleanup_old_data(self, days_to_keep: int = 30, *, tables: str | Iterable[str] | None = None,
                         dry_run: bool = False) -> CleanupReport:
        """Remove rows older than ``days_to_keep`` days, whole partitions first.

        Parameters:
            days_to_keep: retention in days for tables without their own ``[RETENTION]``
                entry (a configured per-table retention wins).
            tables: table names or aliases; every table when None.
            dry_run: count what would be removed, change nothing.

        Returns:
            A :class:`CleanupReport`: per table the cutoff, partitions dropped and rows removed.

        Example:
            >>> pg.cleanup_old_data(90, dry_run=True)   # doctest: +SKIP
        """

        return _maintenance.cleanup_old_data(self.db, days_to_keep, tables=tables, dry_run=dry_run)

    @when_disabled(lambda pg, a: _maintenance.PARTITION_SCHEMA.to_frame())
    def list_partitions(self, table: str | None = None) -> pl.DataFrame:
        """Partitions with their bounds, row estimates and sizes (any table name or alias).

        Example:
            >>> pg.list_partitions("bars")   # doctest: +SKIP
        """

        return _maintenance.list_partitions(self.db, table)

    @when_disabled(lambda pg, a: _sealing.SealReport('seal', (), dry_run=a['dry_run']))
    def seal(self, older_than: dt.date | dt.datetime | dt.timedelta | str | None = None, *,
                     tables: str | Iterable[str] | None = None, symbols: str | Sequence[str] | None = None,
                     dry_run: bool = False) -> SealReport:
        """Move old history into the sealed tier: whole calendar months.

        Every month that ended before the cutoff moves, per table and series, from the
        row table into ``<table>_chunks`` (one compact Arrow IPC chunk per series and
        month, ~14 bytes per one-minute bar instead of ~185). Readers return the same frames
        either way; writes into sealed months merge into their chunks. Each month moves
        in its own transactions (whole series at a time, at most ~1M rows each): a row is
        always in exactly one tier, even if the server dies mid-way, and sealing again
        moves nothing. The row partitions emptied are truncated once no open transaction
        can still read their rows (else vacuumed and reindexed): the space is back when
        this returns. See ``docs/schema.md``, "Two tiers".

        Parameters:
            older_than: the cutoff: a date or datetime, a timedelta or an age such as
                ``"90d"``, ``"60 days"``, ``"8w"`` (before the server's clock). None: the
                ``seal_after`` setting (default 60 days; ``off`` seals nothing).
            tables: table names or aliases; every time-series table when None.
            symbols: only these symbols' series.
            dry_run: report what would move (rows, row-tier bytes), change nothing.

        Returns:
            A :class:`SealReport`: tables, months, rows moved, bytes before and after.

        Raises:
            UsageError: a bad ``older_than``, or a table without a sealed tier.
            WriteError: the server refused a statement; the month being moved was rolled back.

        Example:
            >>> pg.seal("90d", tables=["bars"])   # doctest: +SKIP
            <SealReport: seal 1,000,000 rows in 30 table-month(s) ...>
        """

        report = _sealing.seal(self.db, older_than, tables=tables, symbols=symbols, dry_run=dry_run)
        _maintenance.analyze_moved(self.db, report)  # no stale row estimates for the months that left
        return report

    @when_disabled(lambda pg, a: _sealing.SealReport('unseal', ()))
    def unseal(self, start: DateLike, end: DateLike, *, tables: str | Iterable[str] | None = None,
                       symbols: str | Sequence[str] | None = None) -> SealReport:
        """Put sealed months overlapping ``[start, end]`` back into the row tables.

        For SQL tools that read the row tables directly. Whole months come back (a chunk
        is one series-month), each in one transaction; a later :meth:`seal`
        seals them again if they are older than its cutoff.

        Parameters:
            start, end: the range (dates, datetimes or ISO strings; a date as ``end``
                includes that day).
            tables: table names or aliases; every time-series table when None.
            symbols: only these symbols' series.

        Returns:
            A :class:`SealReport` of the months put back.

        Example:
            >>> pg.unseal("2024-01-01", "2024-03-31", symbols=["NIFTY"])   # doctest: +SKIP
        """

        report = _sealing.unseal(self.db, start, end, tables=tables, symbols=symbols)
        _maintenance.analyze_moved(self.db, report)
        return report

    @when_disabled(lambda pg, a: _sealing.SealReport('repair', (), dry_run=a['dry_run']))
    def repair_sealed(self, *, tables: str | Iterable[str] | None = None, dry_run: bool = False) -> SealReport:
        """Merge rows that sit in sealed series-months into their chunks (one version per key).

        A sealed series-month keeps its rows in ``<table>_chunks`` only. Since schema
        version 7 a trigger refuses other tools' INSERT, COPY and UPDATE there, but rows
        written before it existed (or committed while a seal of that month ran) stay
        beside the chunk, and a key can then have two versions. ``regime-io doctor``
        reports them; this merges them as a seal does (the row-table version of a key
        replaces the sealed one: it was written later), deletes them from the row table,
        one transaction per table-month, then rebuilds the series catalog of the tables
        touched. See ``docs/maintenance.md``, "Writes by other tools into sealed months".

        Parameters:
            tables: table names or aliases; every time-series table when None.
            dry_run: report what would be merged, change nothing.

        Returns:
            A :class:`SealReport` (action ``"repair"``): per table and month, the series
            and rows merged.

        Raises:
            UsageError: a table without a sealed tier.
            WriteError: the server refused a statement; that month was rolled back.

        Example:
            >>> pg.repair_sealed(dry_run=True)   # doctest: +SKIP
            <SealReport (dry run): merge into their chunks 1 rows in 1 table-month(s)>
        """

        report = _sealing.repair_sealed(self.db, tables=tables, dry_run=dry_run)
        if report.periods and not dry_run:
            _catalog.refresh(self.db, list(report.tables))
            _maintenance.analyze_moved(self.db, report)
        return report
