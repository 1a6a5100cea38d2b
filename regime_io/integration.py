"""``PostgreSQLIntegration``: the one public layer of regime_io.

Every method here carries the documented, typed signature; it checks nothing itself and
forwards to one private engine function (``_writing``, ``_reading``, ``_asof``,
``_maintenance``) with this object's :class:`~regime_io.database.Database` as ``db``.
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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from ._conn.database import Database
from ._frames import check_return_type, convert
from ._read import asof as _asof
from ._read import history as _history
from ._read import quality as _quality
from ._read import readers as _reading
from ._read import scan as _scan
from ._read import tail as _tail
from ._read.decode import empty_distribution, empty_frame, empty_transitions
from ._schema import maintenance as _maintenance
from ._schema.ddl import initialize_database
from ._tiers import catalog as _catalog
from ._tiers import sealing as _sealing
from ._write.save import save, save_rolling_market_regime
from ._write.transaction import WriteResult
from .config import Settings, load_settings
from .types import DateLike, ExtraColumns, OnConflict, OnDuplicate, ParametersAs, RegimeTable, ReturnType, Tier

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

F = TypeVar("F")
Progress = Callable[[int, "int | None"], None]


class PostgreSQLIntegration(Generic[F]):
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

    @property
    def enabled(self) -> bool:
        """False when the configuration says ``enabled = false``: writes are no-ops, reads empty."""
        return self.settings.enabled

    def _disabled(self, what: str) -> bool:
        """True (after logging once) when ``enabled = false``."""
        if self.settings.enabled:
            return False
        if not self._warned_disabled:
            log.warning("database disabled in configuration (enabled = false): %s skipped", what)
            self._warned_disabled = True
        return True

    def _rt(self, return_type: ReturnType | None) -> ReturnType:
        if return_type is None:
            return self.return_type
        check_return_type(return_type)
        return return_type

    # -- lifecycle ----------------------------------------------------------------------

    def initialize_database(self) -> int:
        """Create the schema, the tables and their indexes if missing (idempotent).

        Returns:
            The schema version.

        Example:
            >>> pg.initialize_database()   # doctest: +SKIP
            3
        """
        if self._disabled("initialize_database"):
            return 0

        return initialize_database(self.db.pool, self.db.resolved)

    def close(self) -> None:
        """Release every pooled connection. The embedded server keeps running.

        Later calls raise :class:`~regime_io.errors.PoolClosedError`.
        """
        self.db.close()

    # -- writers ------------------------------------------------------------------------

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
                or an iterator of such frames (streamed in chunks, one transaction).
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

        if self._disabled(f"save to {table}"):
            return WriteResult.disabled(table)
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

        if self._disabled("save_rolling_market_regime"):
            return WriteResult.disabled("market_regimes_1min")
        return save_rolling_market_regime(self.db, data, window_minutes=window_minutes, date_format=date_format)

    # -- range readers --------------------------------------------------------------------

    @overload
    def get_market_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                        end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                        timeframe: str | None = None, columns: Sequence[str] | None = None,
                        resample: str | dt.timedelta | None = None, calendar: str = "XNSE", exact: bool = False,
                        as_of: DateLike | None = None,
                        return_type: None = None) -> F: ...
    @overload
    def get_market_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                        end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                        timeframe: str | None = None, columns: Sequence[str] | None = None,
                        resample: str | dt.timedelta | None = None, calendar: str = "XNSE", exact: bool = False,
                        as_of: DateLike | None = None,
                        return_type: Literal["polars"]) -> pl.DataFrame: ...
    @overload
    def get_market_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                        end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                        timeframe: str | None = None, columns: Sequence[str] | None = None,
                        resample: str | dt.timedelta | None = None, calendar: str = "XNSE", exact: bool = False,
                        as_of: DateLike | None = None,
                        return_type: Literal["pandas"]) -> pd.DataFrame: ...
    @overload
    def get_market_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                        end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                        timeframe: str | None = None, columns: Sequence[str] | None = None,
                        resample: str | dt.timedelta | None = None, calendar: str = "XNSE", exact: bool = False,
                        as_of: DateLike | None = None,
                        return_type: Literal["arrow"]) -> pa.Table: ...

    def get_market_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                        end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                        timeframe: str | None = None, columns: Sequence[str] | None = None,
                        resample: str | dt.timedelta | None = None, calendar: str = "XNSE", exact: bool = False,
                        as_of: DateLike | None = None,
                        return_type: ReturnType | None = None) -> Any:
        """OHLCV bars of one or more symbols in ``[start_date, end_date]`` (inclusive).

        Parameters:
            symbol: ``"NIFTY"`` or ``["NIFTY", "BANKNIFTY"]`` (or pass ``symbols=``).
            start_date, end_date: datetimes, dates, ISO 8601 strings or numpy/pandas
                timestamps; a date as ``end_date`` includes that whole day; None leaves
                that side open. Zone-aware bounds are converted to the storage zone.
            symbols: the symbols, as an alternative to ``symbol``.
            timeframe: only bars of this timeframe (``"1m"``; aliases such as ``"1min"``,
                ``"1T"`` mean the same).
            columns: a subset of the table's columns, returned in the order given.
            resample: aggregate server-side into buckets of this size (``"5m"``,
                ``"1h"``, ``"1d"``, ``"1w"``, ``"1mo"``; pandas' ``"5T"``, ``"1H"``,
                ``"1D"``): first open, max high, min low, last close, summed volume.
                Buckets are labelled by their start (left edge). Intraday buckets start
                at the session open (09:15, 10:15... for ``"1h"`` on NSE) and never span
                two sessions; days are dates, weeks start on Monday, months on the 1st.
            calendar: the exchange calendar whose session open anchors intraday
                buckets (``"XNSE"``; others, e.g. ``"XNYS"``, with the ``calendars``
                extra).
            exact: DECIMAL columns as exact decimals instead of Float64.
            as_of: the answer as it was known at this instant (a datetime or ISO string;
                naive: storage zone) instead of now; the table must keep history
                (``[DATABASE] history_tables``, docs/history.md).
            return_type: ``"polars"``, ``"pandas"`` or ``"arrow"``; default: the instance's.

        Returns:
            Rows ordered by symbol, timeframe and timestamp.

        Raises:
            UsageError: bad arguments (``start_date`` after ``end_date``, unknown
                column, a non-ISO date string).
            ReadError: the server refused the query.

        Example:
            >>> pg.get_market_data("NIFTY", "2024-01-02", "2024-01-02", resample="5m")  # doctest: +SKIP
        """

        rt = self._rt(return_type)
        if not self.enabled:
            return _reading.empty_frame("market_data", return_type=rt, exact=exact, columns=columns)
        return _reading.get_market_data(self.db, symbol, start_date, end_date, symbols=symbols, timeframe=timeframe,
                                        columns=columns, resample=resample, calendar=calendar, exact=exact,
                                        as_of=as_of, return_type=rt)

    @overload
    def get_options_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                         end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                         expiry: DateLike | Sequence[DateLike] | None = None,
                         strikes: float | Decimal | Sequence[float | Decimal] | None = None,
                         option_type: str | Sequence[str] | None = None, columns: Sequence[str] | None = None,
                         exact: bool = False,
                         as_of: DateLike | None = None, return_type: None = None) -> F: ...
    @overload
    def get_options_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                         end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                         expiry: DateLike | Sequence[DateLike] | None = None,
                         strikes: float | Decimal | Sequence[float | Decimal] | None = None,
                         option_type: str | Sequence[str] | None = None, columns: Sequence[str] | None = None,
                         exact: bool = False,
                         as_of: DateLike | None = None, return_type: Literal["polars"]) -> pl.DataFrame: ...
    @overload
    def get_options_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                         end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                         expiry: DateLike | Sequence[DateLike] | None = None,
                         strikes: float | Decimal | Sequence[float | Decimal] | None = None,
                         option_type: str | Sequence[str] | None = None, columns: Sequence[str] | None = None,
                         exact: bool = False,
                         as_of: DateLike | None = None, return_type: Literal["pandas"]) -> pd.DataFrame: ...
    @overload
    def get_options_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                         end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                         expiry: DateLike | Sequence[DateLike] | None = None,
                         strikes: float | Decimal | Sequence[float | Decimal] | None = None,
                         option_type: str | Sequence[str] | None = None, columns: Sequence[str] | None = None,
                         exact: bool = False,
                         as_of: DateLike | None = None, return_type: Literal["arrow"]) -> pa.Table: ...

    def get_options_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                         end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                         expiry: DateLike | Sequence[DateLike] | None = None,
                         strikes: float | Decimal | Sequence[float | Decimal] | None = None,
                         option_type: str | Sequence[str] | None = None, columns: Sequence[str] | None = None,
                         exact: bool = False,
                         as_of: DateLike | None = None, return_type: ReturnType | None = None) -> Any:
        """Option bars in ``[start_date, end_date]``, optionally by expiry, strike and type.

        Parameters:
            symbol, start_date, end_date, symbols, columns, exact, return_type: as for
                :meth:`get_market_data`.
            expiry: one expiry date or several.
            strikes: one strike or several, compared at the column's scale (2 decimals).
            option_type: ``"CE"``/``"PE"`` or any spelling the writers accept
                (``"ce"``, ``"call"``, ``"P"``...), or several.

        Returns:
            Rows ordered by symbol, timestamp, expiry, strike and type.

        ``as_of``: the answer as it was known at this instant (a datetime or ISO string;
        naive: storage zone) instead of now; the table must keep history
        (``[DATABASE] history_tables``, docs/history.md).

        Example:
            >>> pg.get_options_data("NIFTY", "2024-01-02", "2024-01-02", expiry="2024-01-25",
            ...                     strikes=[21500, 21600], option_type="call")   # doctest: +SKIP
        """

        rt = self._rt(return_type)
        if not self.enabled:
            return _reading.empty_frame("options_data", return_type=rt, exact=exact, columns=columns)
        return _reading.get_options_data(self.db, symbol, start_date, end_date, symbols=symbols, expiry=expiry,
                                         strikes=strikes, option_type=option_type, columns=columns, exact=exact,
                                         as_of=as_of, return_type=rt)

    @overload
    def get_market_regimes(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                           end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                           timeframe: str | None = None, columns: Sequence[str] | None = None,
                           exact: bool = False,
                           as_of: DateLike | None = None, return_type: None = None) -> F: ...
    @overload
    def get_market_regimes(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                           end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                           timeframe: str | None = None, columns: Sequence[str] | None = None,
                           exact: bool = False,
                           as_of: DateLike | None = None, return_type: Literal["polars"]) -> pl.DataFrame: ...
    @overload
    def get_market_regimes(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                           end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                           timeframe: str | None = None, columns: Sequence[str] | None = None,
                           exact: bool = False,
                           as_of: DateLike | None = None, return_type: Literal["pandas"]) -> pd.DataFrame: ...
    @overload
    def get_market_regimes(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                           end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                           timeframe: str | None = None, columns: Sequence[str] | None = None,
                           exact: bool = False,
                           as_of: DateLike | None = None, return_type: Literal["arrow"]) -> pa.Table: ...

    def get_market_regimes(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                           end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                           timeframe: str | None = None, columns: Sequence[str] | None = None,
                           exact: bool = False,
                           as_of: DateLike | None = None, return_type: ReturnType | None = None) -> Any:
        """Regime classifications (``market_regimes``) in ``[start_date, end_date]``.

        Arguments as for :meth:`get_market_data`.

        ``as_of``: the answer as it was known at this instant (a datetime or ISO string;
        naive: storage zone) instead of now; the table must keep history
        (``[DATABASE] history_tables``, docs/history.md).

        Example:
            >>> pg.get_market_regimes("NIFTY", "2024-01-01", "2024-01-31", timeframe="15m")  # doctest: +SKIP
        """

        rt = self._rt(return_type)
        if not self.enabled:
            return _reading.empty_frame("market_regimes", return_type=rt, exact=exact, columns=columns)
        return _reading.get_market_regimes(self.db, symbol, start_date, end_date, symbols=symbols,
                                           timeframe=timeframe, columns=columns, exact=exact, as_of=as_of,
                                           return_type=rt)

    @overload
    def get_1min_market_regimes(self, symbol: str | Sequence[str] | None = None,
                                start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                                symbols: Sequence[str] | None = None, columns: Sequence[str] | None = None,
                                exact: bool = False,
                                as_of: DateLike | None = None, return_type: None = None) -> F: ...
    @overload
    def get_1min_market_regimes(self, symbol: str | Sequence[str] | None = None,
                                start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                                symbols: Sequence[str] | None = None, columns: Sequence[str] | None = None,
                                exact: bool = False,
                                as_of: DateLike | None = None, return_type: Literal["polars"]) -> pl.DataFrame: ...
    @overload
    def get_1min_market_regimes(self, symbol: str | Sequence[str] | None = None,
                                start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                                symbols: Sequence[str] | None = None, columns: Sequence[str] | None = None,
                                exact: bool = False,
                                as_of: DateLike | None = None, return_type: Literal["pandas"]) -> pd.DataFrame: ...
    @overload
    def get_1min_market_regimes(self, symbol: str | Sequence[str] | None = None,
                                start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                                symbols: Sequence[str] | None = None, columns: Sequence[str] | None = None,
                                exact: bool = False,
                                as_of: DateLike | None = None, return_type: Literal["arrow"]) -> pa.Table: ...

    def get_1min_market_regimes(self, symbol: str | Sequence[str] | None = None,
                                start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                                symbols: Sequence[str] | None = None, columns: Sequence[str] | None = None,
                                exact: bool = False,
                                as_of: DateLike | None = None, return_type: ReturnType | None = None) -> Any:
        """1-minute regimes (``market_regimes_1min``) in ``[start_date, end_date]`` (the seed's reader).

        Arguments as for :meth:`get_market_data`.

        ``as_of``: the answer as it was known at this instant (a datetime or ISO string;
        naive: storage zone) instead of now; the table must keep history
        (``[DATABASE] history_tables``, docs/history.md).

        Example:
            >>> pg.get_1min_market_regimes("NIFTY", "2024-01-02", "2024-01-02")  # doctest: +SKIP
        """

        rt = self._rt(return_type)
        if not self.enabled:
            return _reading.empty_frame("market_regimes_1min", return_type=rt, exact=exact, columns=columns)
        return _reading.get_1min_market_regimes(self.db, symbol, start_date, end_date, symbols=symbols,
                                                columns=columns, exact=exact, as_of=as_of, return_type=rt)

    @overload
    def get_optimization_results(self, symbol: str | Sequence[str] | None = None, *,
                                 symbols: Sequence[str] | None = None, algorithm: str | None = None,
                                 timeframe: str | None = None, top: int | None = None, exact: bool = False,
                                 parameters: ParametersAs = "struct",
                                 as_of: DateLike | None = None,
                                 return_type: None = None) -> F: ...
    @overload
    def get_optimization_results(self, symbol: str | Sequence[str] | None = None, *,
                                 symbols: Sequence[str] | None = None, algorithm: str | None = None,
                                 timeframe: str | None = None, top: int | None = None, exact: bool = False,
                                 parameters: ParametersAs = "struct",
                                 as_of: DateLike | None = None,
                                 return_type: Literal["polars"]) -> pl.DataFrame: ...
    @overload
    def get_optimization_results(self, symbol: str | Sequence[str] | None = None, *,
                                 symbols: Sequence[str] | None = None, algorithm: str | None = None,
                                 timeframe: str | None = None, top: int | None = None, exact: bool = False,
                                 parameters: ParametersAs = "struct",
                                 as_of: DateLike | None = None,
                                 return_type: Literal["pandas"]) -> pd.DataFrame: ...
    @overload
    def get_optimization_results(self, symbol: str | Sequence[str] | None = None, *,
                                 symbols: Sequence[str] | None = None, algorithm: str | None = None,
                                 timeframe: str | None = None, top: int | None = None, exact: bool = False,
                                 parameters: ParametersAs = "struct",
                                 as_of: DateLike | None = None,
                                 return_type: Literal["arrow"]) -> pa.Table: ...

    def get_optimization_results(self, symbol: str | Sequence[str] | None = None, *,
                                 symbols: Sequence[str] | None = None, algorithm: str | None = None,
                                 timeframe: str | None = None, top: int | None = None, exact: bool = False,
                                 parameters: ParametersAs = "struct",
                                 as_of: DateLike | None = None,
                                 return_type: ReturnType | None = None) -> Any:
        """Optimisation results, best ``fitness_value`` first (ties: oldest first).

        Parameters:
            symbol, symbols: only these symbols (every symbol when both are None).
            algorithm, timeframe: only these.
            top: at most this many rows.
            exact: ``fitness_value`` as an exact decimal.
            parameters: ``"struct"`` decodes the JSONB into a struct column (the union
                of the rows' keys); ``"json"`` keeps the JSON text.
            as_of: the answer as it was known at this instant (a datetime or ISO string;
                naive: storage zone) instead of now; the table must keep history
                (``[DATABASE] history_tables``, docs/history.md).
            return_type: as for :meth:`get_market_data`.

        Example:
            >>> pg.get_optimization_results("NIFTY", algorithm="bayesian", top=5)  # doctest: +SKIP
        """

        rt = self._rt(return_type)
        if not self.enabled:
            return _reading.empty_frame("optimization_results", return_type=rt, exact=exact)
        return _reading.get_optimization_results(self.db, symbol, symbols=symbols, algorithm=algorithm,
                                                 timeframe=timeframe, top=top, exact=exact, parameters=parameters,
                                                 as_of=as_of, return_type=rt)

    # -- latest rows, option chains ---------------------------------------------------------

    @overload
    def get_latest(self, table: str, symbol: str | Sequence[str] | None = None, *,
                   symbols: Sequence[str] | None = None, timeframe: str | None = None, exact: bool = False,
                   as_of: DateLike | None = None,
                   return_type: None = None) -> F: ...
    @overload
    def get_latest(self, table: str, symbol: str | Sequence[str] | None = None, *,
                   symbols: Sequence[str] | None = None, timeframe: str | None = None, exact: bool = False,
                   as_of: DateLike | None = None,
                   return_type: Literal["polars"]) -> pl.DataFrame: ...
    @overload
    def get_latest(self, table: str, symbol: str | Sequence[str] | None = None, *,
                   symbols: Sequence[str] | None = None, timeframe: str | None = None, exact: bool = False,
                   as_of: DateLike | None = None,
                   return_type: Literal["pandas"]) -> pd.DataFrame: ...
    @overload
    def get_latest(self, table: str, symbol: str | Sequence[str] | None = None, *,
                   symbols: Sequence[str] | None = None, timeframe: str | None = None, exact: bool = False,
                   as_of: DateLike | None = None,
                   return_type: Literal["arrow"]) -> pa.Table: ...

    def get_latest(self, table: str, symbol: str | Sequence[str] | None = None, *,
                   symbols: Sequence[str] | None = None, timeframe: str | None = None, exact: bool = False,
                   as_of: DateLike | None = None,
                   return_type: ReturnType | None = None) -> Any:
        """The latest row of each series of a bar or regime table.

        ``table``: ``market_data``, ``market_regimes`` or ``market_regimes_1min`` (any
        name or alias :meth:`save` accepts, e.g. ``"bars"``).

        A series is a symbol, or a (symbol, timeframe) pair in the tables that have a
        timeframe, unless ``timeframe`` picks one. ``symbol``/``symbols`` limit it to
        those symbols; neither means every symbol stored. Symbols without rows are
        absent. Rows are ordered by symbol (and timeframe). Index-driven: never a scan
        of the whole table.

        ``as_of``: the answer as it was known at this instant (a datetime or ISO string;
        naive: storage zone) instead of now; the table must keep history
        (``[DATABASE] history_tables``, docs/history.md).

        Example:
            >>> pg.get_latest("bars", symbols=["NIFTY", "BANKNIFTY"], timeframe="1m")  # doctest: +SKIP
        """

        rt = self._rt(return_type)
        if not self.enabled:
            return _reading.empty_frame(table, return_type=rt, exact=exact)
        return _reading.get_latest(self.db, table, symbol, symbols=symbols, timeframe=timeframe, exact=exact,
                                   as_of=as_of, return_type=rt)

    @overload
    def get_latest_1min_market_regime(self, symbol: str | Sequence[str] | None = None, *,
                                      symbols: Sequence[str] | None = None, exact: bool = False,
                                      as_of: DateLike | None = None,
                                      return_type: None = None) -> F: ...
    @overload
    def get_latest_1min_market_regime(self, symbol: str | Sequence[str] | None = None, *,
                                      symbols: Sequence[str] | None = None, exact: bool = False,
                                      as_of: DateLike | None = None,
                                      return_type: Literal["polars"]) -> pl.DataFrame: ...
    @overload
    def get_latest_1min_market_regime(self, symbol: str | Sequence[str] | None = None, *,
                                      symbols: Sequence[str] | None = None, exact: bool = False,
                                      as_of: DateLike | None = None,
                                      return_type: Literal["pandas"]) -> pd.DataFrame: ...
    @overload
    def get_latest_1min_market_regime(self, symbol: str | Sequence[str] | None = None, *,
                                      symbols: Sequence[str] | None = None, exact: bool = False,
                                      as_of: DateLike | None = None,
                                      return_type: Literal["arrow"]) -> pa.Table: ...

    def get_latest_1min_market_regime(self, symbol: str | Sequence[str] | None = None, *,
                                      symbols: Sequence[str] | None = None, exact: bool = False,
                                      as_of: DateLike | None = None,
                                      return_type: ReturnType | None = None) -> Any:
        """The latest 1-minute regime per symbol: :meth:`get_latest` of ``market_regimes_1min``.

        ``as_of``: the answer as it was known at this instant (a datetime or ISO string;
        naive: storage zone) instead of now; the table must keep history
        (``[DATABASE] history_tables``, docs/history.md).

        Example:
            >>> pg.get_latest_1min_market_regime("NIFTY")   # doctest: +SKIP
        """

        rt = self._rt(return_type)
        if not self.enabled:
            return _reading.empty_frame("market_regimes_1min", return_type=rt, exact=exact)
        return _reading.get_latest(self.db, "market_regimes_1min", symbol, symbols=symbols, timeframe=None,
                                   exact=exact, as_of=as_of, return_type=rt)

    @overload
    def get_option_chain(self, symbol: str, at: DateLike, *, expiry: DateLike | None = None, exact: bool = False,
                         as_of: DateLike | None = None,
                         return_type: None = None) -> F: ...
    @overload
    def get_option_chain(self, symbol: str, at: DateLike, *, expiry: DateLike | None = None, exact: bool = False,
                         as_of: DateLike | None = None,
                         return_type: Literal["polars"]) -> pl.DataFrame: ...
    @overload
    def get_option_chain(self, symbol: str, at: DateLike, *, expiry: DateLike | None = None, exact: bool = False,
                         as_of: DateLike | None = None,
                         return_type: Literal["pandas"]) -> pd.DataFrame: ...
    @overload
    def get_option_chain(self, symbol: str, at: DateLike, *, expiry: DateLike | None = None, exact: bool = False,
                         as_of: DateLike | None = None,
                         return_type: Literal["arrow"]) -> pa.Table: ...

    def get_option_chain(self, symbol: str, at: DateLike, *, expiry: DateLike | None = None, exact: bool = False,
                         as_of: DateLike | None = None,
                         return_type: ReturnType | None = None) -> Any:
        """The option chain of ``symbol`` as it stood at ``at``.

        For each (expiry, strike, type) not expired at ``at``, its latest row at or
        before ``at``; a date as ``at`` means the end of that day. Ordered by expiry,
        strike and type.

        ``as_of``: the answer as it was known at this instant (a datetime or ISO string;
        naive: storage zone) instead of now; the table must keep history
        (``[DATABASE] history_tables``, docs/history.md).

        Example:
            >>> pg.get_option_chain("NIFTY", "2024-01-02 10:30", expiry="2024-01-25")  # doctest: +SKIP
        """

        rt = self._rt(return_type)
        if not self.enabled:
            return _reading.empty_frame("options_data", return_type=rt, exact=exact)
        return _reading.get_option_chain(self.db, symbol, at, expiry=expiry, exact=exact, as_of=as_of, return_type=rt)

    # -- regime statistics ------------------------------------------------------------------

    @overload
    def get_market_regime_distribution(self, symbol: str, start_date: DateLike | None = None,
                                       end_date: DateLike | None = None, *, table: RegimeTable = "1min",
                                       timeframe: str | None = None, max_gap: str | dt.timedelta | None = None,
                                       as_of: DateLike | None = None,
                                       return_type: None = None) -> F: ...
    @overload
    def get_market_regime_distribution(self, symbol: str, start_date: DateLike | None = None,
                                       end_date: DateLike | None = None, *, table: RegimeTable = "1min",
                                       timeframe: str | None = None, max_gap: str | dt.timedelta | None = None,
                                       as_of: DateLike | None = None,
                                       return_type: Literal["polars"]) -> pl.DataFrame: ...
    @overload
    def get_market_regime_distribution(self, symbol: str, start_date: DateLike | None = None,
                                       end_date: DateLike | None = None, *, table: RegimeTable = "1min",
                                       timeframe: str | None = None, max_gap: str | dt.timedelta | None = None,
                                       as_of: DateLike | None = None,
                                       return_type: Literal["pandas"]) -> pd.DataFrame: ...
    @overload
    def get_market_regime_distribution(self, symbol: str, start_date: DateLike | None = None,
                                       end_date: DateLike | None = None, *, table: RegimeTable = "1min",
                                       timeframe: str | None = None, max_gap: str | dt.timedelta | None = None,
                                       as_of: DateLike | None = None,
                                       return_type: Literal["arrow"]) -> pa.Table: ...

    def get_market_regime_distribution(self, symbol: str, start_date: DateLike | None = None,
                                       end_date: DateLike | None = None, *, table: RegimeTable = "1min",
                                       timeframe: str | None = None, max_gap: str | dt.timedelta | None = None,
                                       as_of: DateLike | None = None,
                                       return_type: ReturnType | None = None) -> Any:
        """How a symbol's time divides among regimes, computed in SQL.

        Per regime: ``count`` of rows, ``share`` of rows, ``seconds`` and the
        time-weighted ``time_share``, ordered by count (descending), then regime.

        Each row weighs the time until the next row of its series; a gap longer than
        ``max_gap`` (default 10x the median gap) is a break and weighs one median gap.
        ``table="1min"`` reads ``market_regimes_1min``, ``"regimes"`` ``market_regimes``.

        ``as_of``: the answer as it was known at this instant (a datetime or ISO string;
        naive: storage zone) instead of now; the table must keep history
        (``[DATABASE] history_tables``, docs/history.md).

        Example:
            >>> pg.get_market_regime_distribution("NIFTY", "2024-01-01", "2024-01-31")  # doctest: +SKIP
        """

        rt = self._rt(return_type)
        if not self.enabled:
            return empty_distribution(return_type=rt)
        return _reading.get_market_regime_distribution(self.db, symbol, start_date, end_date, table=table,
                                                       timeframe=timeframe, max_gap=max_gap, as_of=as_of,
                                                       return_type=rt)

    @overload
    def get_regime_transitions(self, symbol: str, start_date: DateLike | None = None,
                               end_date: DateLike | None = None, *, table: RegimeTable = "1min",
                               timeframe: str | None = None,
                               as_of: DateLike | None = None, return_type: None = None) -> F: ...
    @overload
    def get_regime_transitions(self, symbol: str, start_date: DateLike | None = None,
                               end_date: DateLike | None = None, *, table: RegimeTable = "1min",
                               timeframe: str | None = None,
                               as_of: DateLike | None = None, return_type: Literal["polars"]) -> pl.DataFrame: ...
    @overload
    def get_regime_transitions(self, symbol: str, start_date: DateLike | None = None,
                               end_date: DateLike | None = None, *, table: RegimeTable = "1min",
                               timeframe: str | None = None,
                               as_of: DateLike | None = None, return_type: Literal["pandas"]) -> pd.DataFrame: ...
    @overload
    def get_regime_transitions(self, symbol: str, start_date: DateLike | None = None,
                               end_date: DateLike | None = None, *, table: RegimeTable = "1min",
                               timeframe: str | None = None,
                               as_of: DateLike | None = None, return_type: Literal["arrow"]) -> pa.Table: ...

    def get_regime_transitions(self, symbol: str, start_date: DateLike | None = None,
                               end_date: DateLike | None = None, *, table: RegimeTable = "1min",
                               timeframe: str | None = None,
                               as_of: DateLike | None = None, return_type: ReturnType | None = None) -> Any:
        """The regime transition matrix, as rows.

        Columns ``from_regime``, ``to_regime``, ``count``, ``probability`` and the
        ``mean_run_length`` of ``from_regime``.

        ``as_of``: the answer as it was known at this instant (a datetime or ISO string;
        naive: storage zone) instead of now; the table must keep history
        (``[DATABASE] history_tables``, docs/history.md).

        Example:
            >>> pg.get_regime_transitions("NIFTY", "2024-01-01", "2024-01-31")  # doctest: +SKIP
        """

        rt = self._rt(return_type)
        if not self.enabled:
            return empty_transitions(return_type=rt)
        return _reading.get_regime_transitions(self.db, symbol, start_date, end_date, table=table,
                                               timeframe=timeframe, as_of=as_of, return_type=rt)

    @overload
    def asof_regimes(self, bars: Any = None, *, symbol: str | None = None, start_date: DateLike | None = None,
                     end_date: DateLike | None = None, table: RegimeTable = "1min", timeframe: str | None = None,
                     tolerance: str | dt.timedelta | None = None,
                     point_in_time: bool = False, known_lag: str | dt.timedelta | None = None,
                     return_type: None = None) -> F: ...
    @overload
    def asof_regimes(self, bars: Any = None, *, symbol: str | None = None, start_date: DateLike | None = None,
                     end_date: DateLike | None = None, table: RegimeTable = "1min", timeframe: str | None = None,
                     tolerance: str | dt.timedelta | None = None,
                     point_in_time: bool = False, known_lag: str | dt.timedelta | None = None,
                     return_type: Literal["polars"]) -> pl.DataFrame: ...
    @overload
    def asof_regimes(self, bars: Any = None, *, symbol: str | None = None, start_date: DateLike | None = None,
                     end_date: DateLike | None = None, table: RegimeTable = "1min", timeframe: str | None = None,
                     tolerance: str | dt.timedelta | None = None,
                     point_in_time: bool = False, known_lag: str | dt.timedelta | None = None,
                     return_type: Literal["pandas"]) -> pd.DataFrame: ...
    @overload
    def asof_regimes(self, bars: Any = None, *, symbol: str | None = None, start_date: DateLike | None = None,
                     end_date: DateLike | None = None, table: RegimeTable = "1min", timeframe: str | None = None,
                     tolerance: str | dt.timedelta | None = None,
                     point_in_time: bool = False, known_lag: str | dt.timedelta | None = None,
                     return_type: Literal["arrow"]) -> pa.Table: ...

    def asof_regimes(self, bars: Any = None, *, symbol: str | None = None, start_date: DateLike | None = None,
                     end_date: DateLike | None = None, table: RegimeTable = "1min", timeframe: str | None = None,
                     tolerance: str | dt.timedelta | None = None,
                     point_in_time: bool = False, known_lag: str | dt.timedelta | None = None,
                     return_type: ReturnType | None = None) -> Any:
        """Attach to each bar the latest regime stamped at or before the bar (no look-ahead).

        Parameters:
            bars: a polars/pandas frame (a ``DatetimeIndex`` or ``MultiIndex`` of
                ``symbol`` and ``timestamp`` counts as columns) or Arrow table with a
                ``timestamp`` column (and ``symbol``, or pass ``symbol=``); None reads
                the ``market_data`` bars of ``symbol`` in ``[start_date, end_date]``.
            table: ``"1min"`` or ``"regimes"`` (``timeframe`` picks the regime timeframe).
            tolerance: a regime older than this (``"5m"``) is not attached.
            point_in_time: each bar gets the regime as it was known at the bar's own
                timestamp: the newest regime row stamped at or before the bar that was
                already known then, in the version then known, so regimes revised later
                (a model change, a corrected feed) never leak into a backtest. Needs a
                regime table that keeps history (docs/history.md). Default False: today's
                version of the newest row stamped at or before the bar.
            known_lag: with ``point_in_time``, a publication delay added to each bar's
                timestamp (``"30s"``, a timedelta): a regime counts as known when it was
                written within this long after the bar.
            return_type: as for :meth:`get_market_data`.

        Zone-aware bar timestamps are converted to the storage zone; the time zone rule
        in ``docs/timezones.md`` refuses bars whose kind (aware/naive) disagrees with how
        the regimes were written, instead of attaching the wrong day's regime.

        Returns:
            The bars in their order, plus ``regime_timestamp`` and the regime columns.

        Example:
            >>> pg.asof_regimes(bars, tolerance="5m")   # doctest: +SKIP
        """

        return _asof.asof_regimes(self.db, bars, symbol=symbol, start_date=start_date, end_date=end_date,
                                  table=table, timeframe=timeframe, tolerance=tolerance,
                                  point_in_time=point_in_time, known_lag=known_lag,
                                  return_type=self._rt(return_type))

    # -- streams ----------------------------------------------------------------------------

    def iter_market_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                         end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                         timeframe: str | None = None, batch_rows: int = 250_000,
                         exact: bool = False, as_of: DateLike | None = None) -> Iterator[pa.RecordBatch]:
        """Stream bars as Arrow record batches of at most ``batch_rows`` rows (bounded memory).

        Arguments as for :meth:`get_market_data`; checked when called, not at the first
        batch. Batches have :meth:`get_market_data`'s schema and row order.

        ``as_of``: the answer as it was known at this instant (a datetime or ISO string;
        naive: storage zone) instead of now; the table must keep history
        (``[DATABASE] history_tables``, docs/history.md).

        Example:
            >>> for batch in pg.iter_market_data("NIFTY", "2023-01-01", "2023-12-31"):  # doctest: +SKIP
            ...     process(batch)
        """

        if not self.enabled:
            return iter(())
        return _reading.iter_market_data(self.db, symbol, start_date, end_date, symbols=symbols,
                                         timeframe=timeframe, batch_rows=batch_rows, exact=exact, as_of=as_of)

    def iter_options_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                          end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                          expiry: DateLike | Sequence[DateLike] | None = None,
                          strikes: float | Decimal | Sequence[float | Decimal] | None = None,
                          option_type: str | Sequence[str] | None = None, batch_rows: int = 250_000,
                          exact: bool = False, as_of: DateLike | None = None) -> Iterator[pa.RecordBatch]:
        """Stream option bars as Arrow record batches (filters as :meth:`get_options_data`).

        ``as_of``: the answer as it was known at this instant (a datetime or ISO string;
        naive: storage zone) instead of now; the table must keep history
        (``[DATABASE] history_tables``, docs/history.md).

        Example:
            >>> sum(b.num_rows for b in pg.iter_options_data("NIFTY", option_type="pe"))  # doctest: +SKIP
        """

        if not self.enabled:
            return iter(())
        return _reading.iter_options_data(self.db, symbol, start_date, end_date, symbols=symbols, expiry=expiry,
                                          strikes=strikes, option_type=option_type, batch_rows=batch_rows,
                                          exact=exact, as_of=as_of)

    # -- live tail --------------------------------------------------------------------------

    @overload
    def tail(self, table: str, *, symbols: str | Sequence[str] | None = None, since: DateLike | None = None,
             cursor: str | None = None, max_rows: int = 100_000, timeout: float | None = None,
             poll_interval: float = 1.0, exact: bool = False, return_type: None = None) -> Tail[F]: ...
    @overload
    def tail(self, table: str, *, symbols: str | Sequence[str] | None = None, since: DateLike | None = None,
             cursor: str | None = None, max_rows: int = 100_000, timeout: float | None = None,
             poll_interval: float = 1.0, exact: bool = False,
             return_type: Literal["polars"]) -> Tail[pl.DataFrame]: ...
    @overload
    def tail(self, table: str, *, symbols: str | Sequence[str] | None = None, since: DateLike | None = None,
             cursor: str | None = None, max_rows: int = 100_000, timeout: float | None = None,
             poll_interval: float = 1.0, exact: bool = False,
             return_type: Literal["pandas"]) -> Tail[pd.DataFrame]: ...
    @overload
    def tail(self, table: str, *, symbols: str | Sequence[str] | None = None, since: DateLike | None = None,
             cursor: str | None = None, max_rows: int = 100_000, timeout: float | None = None,
             poll_interval: float = 1.0, exact: bool = False,
             return_type: Literal["arrow"]) -> Tail[pa.Table]: ...

    def tail(self, table: str, *, symbols: str | Sequence[str] | None = None, since: DateLike | None = None,
             cursor: str | None = None, max_rows: int = 100_000, timeout: float | None = None,
             poll_interval: float = 1.0, exact: bool = False, return_type: ReturnType | None = None) -> Any:
        """Follow a time-series table: its new and changed rows as frames, as they commit.

        Every committed insert and update is delivered once, per key in commit order,
        including transactions that commit late; rolled-back writes never are (mechanism
        and costs: ``docs/live.md``). Deletes (retention, rolling trims) are not delivered.
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
            A :class:`~regime_io._tail.Tail`: an iterator (and context manager) of batches
            with ``.frame`` (the range readers' columns and dtypes) and ``.cursor`` (an
            opaque string token).

        Raises:
            UsageError: a bad argument, a damaged cursor or one of another table, both
                ``since`` and ``cursor``, a table without a time column, a Citus cluster.
            ReadError: the server refused a query.
            ServerUnavailableError: the server went away; resume from the last cursor.

        Example:
            >>> for batch in pg.tail("1min", symbols=["NIFTY"], timeout=300):  # doctest: +SKIP
            ...     act_on(batch.frame)
            ...     store_token(batch.cursor)
        """

        rt = self._rt(return_type)
        if not self.enabled:
            return iter(())
        return _tail.tail(self.db, table, symbols=symbols, since=since, cursor=cursor, max_rows=max_rows,
                          timeout=timeout, poll_interval=poll_interval, exact=exact, return_type=rt)

    @overload
    def history(self, table: str, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None, exact: bool = False,
                return_type: None = None) -> F: ...
    @overload
    def history(self, table: str, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None, exact: bool = False,
                return_type: Literal["polars"]) -> pl.DataFrame: ...
    @overload
    def history(self, table: str, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None, exact: bool = False,
                return_type: Literal["pandas"]) -> pd.DataFrame: ...
    @overload
    def history(self, table: str, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None, exact: bool = False,
                return_type: Literal["arrow"]) -> pa.Table: ...

    def history(self, table: str, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None, exact: bool = False,
                return_type: ReturnType | None = None) -> Any:
        """Every version of a table's rows, each with the interval during which it was known.

        Tables that keep history (``[DATABASE] history_tables``) keep the previous values
        of a row each time an upsert changes it; this returns them with the current ones.

        Parameters:
            table: a table key or alias (as for :meth:`save`) that keeps history.
            symbol: ``"NIFTY"`` or a list (or pass ``symbols=``).
            start_date, end_date: the rows' own time range (``[start, end]``, as for the
                range readers); ignored by ``optimization_results``.
            symbols: the symbols, as an alternative to ``symbol``.
            exact: DECIMAL columns as exact decimals instead of Float64.
            return_type: ``"polars"``, ``"pandas"`` or ``"arrow"``; default: the instance's.

        Returns:
            The table's columns plus ``known_from`` and ``known_to`` (UTC): the version was
            the known value from ``known_from`` (inclusive) to ``known_to`` (exclusive).
            ``known_to`` is null for the current version; ``known_from`` is null for a
            version known since before its period was sealed. Ordered by the natural key,
            then ``known_from``.

        Raises:
            UsageError: the table keeps no history, or bad arguments.
            ReadError: the server refused the query.

        Example:
            >>> pg.history("1min", "NIFTY", "2024-01-02", "2024-01-02")   # doctest: +SKIP
        """

        rt = self._rt(return_type)
        return _history.history(self.db, table, symbol, start_date, end_date, symbols=symbols, exact=exact,
                                return_type=rt)

    def scan(self, table: str, *, exact: bool = False, as_of: DateLike | None = None) -> pl.LazyFrame:
        """A time-series table as a lazy polars frame whose filters, columns and ``head`` reach the server.

        Nothing is read until the frame is collected. Then the columns the query needs
        become the SELECT list; top-level ``&``-ed tests of ``symbol``, ``timeframe``,
        ``timestamp``, ``expiry_date``, ``strike_price``, ``option_type`` and ``regime``
        against constants (``==``, ``is_in``, ``<``, ``<=``, ``>``, ``>=``,
        ``is_between``; text columns: ``==`` and ``is_in`` only) become the SQL WHERE
        clause and prune the sealed chunks; ``head(n)`` with no filter before it becomes
        ``LIMIT n``. polars then applies the whole predicate to every batch, so any
        other expression still gives exactly the right rows. ``timeframe`` and
        ``option_type`` literals are read as the writers store them (``"1min"`` is
        ``"1m"``, ``"call"`` is ``"CE"``). Batches stream with bounded memory.

        Parameters:
            table: ``market_data``, ``options_data``, ``market_regimes`` or
                ``market_regimes_1min`` (any name or alias :meth:`save` accepts).
            exact: DECIMAL columns as exact decimals instead of Float64.
            as_of: the rows as they were known at this instant (a datetime or ISO string;
                naive: storage zone) instead of now; the table must keep history
                (``[DATABASE] history_tables``, docs/history.md). Read symbol by symbol.

        Returns:
            A ``polars.LazyFrame`` with the eager readers' columns and dtypes; collected,
            its rows come in their order (symbol, then the table's key).

        Raises:
            UsageError: an unknown table or one without a time column; when collected,
                a ``timeframe``/``option_type`` value those columns cannot hold.
            ReadError: when collected, the server refused the query.

        Example:
            >>> lf = pg.scan("bars")                                      # doctest: +SKIP
            >>> lf.filter((pl.col("symbol") == "NIFTY") & (pl.col("timestamp") >= dt.datetime(2024, 1, 2)))
            ...   .select("timestamp", "close").head(10).collect()       # doctest: +SKIP
        """

        if not self.enabled:
            import polars as pl_

            return pl_.LazyFrame(empty_frame(table, return_type="polars", exact=exact))
        return _scan.scan(self.db, table, exact=exact, as_of=as_of)

    # -- catalog ----------------------------------------------------------------------------

    @overload
    def catalog(self, table: str | Sequence[str] | None = None, *, return_type: None = None) -> F: ...
    @overload
    def catalog(self, table: str | Sequence[str] | None = None, *,
                return_type: Literal["polars"]) -> pl.DataFrame: ...
    @overload
    def catalog(self, table: str | Sequence[str] | None = None, *,
                return_type: Literal["pandas"]) -> pd.DataFrame: ...
    @overload
    def catalog(self, table: str | Sequence[str] | None = None, *, return_type: Literal["arrow"]) -> pa.Table: ...

    def catalog(self, table: str | Sequence[str] | None = None, *, return_type: ReturnType | None = None) -> Any:
        """What is stored: one row per series with its first and last timestamp and row count.

        A series is a symbol, or a (symbol, timeframe) pair in the tables that have a
        timeframe. The answer comes from the series catalog (the ``<prefix>series``
        table) that the writers keep in their own transactions, so its cost does not
        grow with the number of rows stored. Rows written or deleted by other tools are
        counted after :meth:`refresh_catalog`.

        Parameters:
            table: one table name or alias (``"bars"``, ``"1min"``...), a list of them,
                or None for every time-series table (``market_data``, ``options_data``,
                ``market_regimes``, ``market_regimes_1min``).
            return_type: ``"polars"``, ``"pandas"`` or ``"arrow"``; the instance's
                default when None.

        Returns:
            A frame with ``table`` (the table key), ``symbol``, ``timeframe`` (null for
            tables without one), ``first_timestamp``, ``last_timestamp`` (naive, in the
            storage zone, as stored) and ``row_count``, ordered by table, symbol and
            timeframe (byte order).

        Raises:
            UsageError: an unknown table, or one without a time column
                (``optimization_results``).
            ReadError: the server refused the query (e.g. ``initialize_database()``
                was never called).

        Example:
            >>> pg.catalog("bars")   # doctest: +SKIP
            shape: (2, 6) ...
        """

        rt = self._rt(return_type)
        if not self.enabled:
            return convert(_catalog.CATALOG_SCHEMA.empty_table(), rt)
        return convert(_catalog.read_catalog(self.db, table), rt)

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

        if self._disabled("refresh_catalog"):
            return {}
        return _catalog.refresh(self.db, table)

    # -- data quality -----------------------------------------------------------------------

    @overload
    def quality_report(self, table: str, symbols: str | Sequence[str] | None = None,
                       start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                       calendar: str = "XNSE", return_type: None = None) -> F: ...
    @overload
    def quality_report(self, table: str, symbols: str | Sequence[str] | None = None,
                       start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                       calendar: str = "XNSE", return_type: Literal["polars"]) -> pl.DataFrame: ...
    @overload
    def quality_report(self, table: str, symbols: str | Sequence[str] | None = None,
                       start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                       calendar: str = "XNSE", return_type: Literal["pandas"]) -> pd.DataFrame: ...
    @overload
    def quality_report(self, table: str, symbols: str | Sequence[str] | None = None,
                       start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                       calendar: str = "XNSE", return_type: Literal["arrow"]) -> pa.Table: ...

    def quality_report(self, table: str, symbols: str | Sequence[str] | None = None,
                       start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                       calendar: str = "XNSE", return_type: ReturnType | None = None) -> Any:
        """What is missing and what looks wrong, per symbol and exchange session.

        One row per symbol and session of ``calendar`` in the range (holidays have no
        session). Minutes are counted on the one-minute rows (``timeframe == "1m"`` in
        the tables that have a timeframe), over both tiers. Stored times are read as
        resampling reads them: a naive table holds the exchange's wall clock.

        Parameters:
            table: a time-series table name or alias (``"bars"``, ``"options"``,
                ``"regimes"``, ``"1min"``).
            symbols: one symbol or a list; None: every symbol in the series catalog.
            start_date, end_date: the range as for :meth:`get_market_data`; None: the
                catalogued first/last timestamp of the symbols.
            calendar: the exchange calendar (``"XNSE"``, ``"XNYS"``...): needs the
                ``calendars`` extra (``pip install 'regime-io[calendars]'``).
            return_type: ``"polars"``, ``"pandas"`` or ``"arrow"``; default: the instance's.

        Returns:
            Columns ``symbol``, ``session``, ``session_open``, ``session_close``,
            ``expected_minutes``, ``present_minutes``, ``missing_minutes``, ``coverage``
            (present / expected), ``first_missing``; for bar tables also
            ``duplicate_bars`` (a minute stored under several timeframes with the same
            OHLCV), ``ohlc_violations`` (``low > high``, open/close outside the range),
            ``zero_volume_runs`` (5+ zero-volume bars in a row) and
            ``longest_zero_volume_run``, ``stale_runs`` (5+ bars with no price movement)
            and ``jumps`` (returns beyond 8 robust standard deviations); null for tables
            without OHLCV. Ordered by symbol and session.

        Raises:
            UsageError: an unknown table or calendar, a table without a time column,
                bad dates, or the ``calendars`` extra missing.
            ReadError: the server refused a query.

        Example:
            >>> report = pg.quality_report("bars", ["NIFTY"], "2024-01-01", "2024-01-31")  # doctest: +SKIP
            >>> report.filter(pl.col("missing_minutes") > 0)                               # doctest: +SKIP
        """

        rt = self._rt(return_type)
        if not self.enabled:
            return convert(_quality.QUALITY_SCHEMA.empty_table(), rt)
        return _quality.quality_report(self.db, table, symbols, start_date, end_date, calendar=calendar,
                                       return_type=rt)

    # -- maintenance ------------------------------------------------------------------------

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

        if self._disabled("cleanup_old_data"):
            return _maintenance.CleanupReport.empty(dry_run=dry_run)
        return _maintenance.cleanup_old_data(self.db, days_to_keep, tables=tables, dry_run=dry_run)

    def list_partitions(self, table: str | None = None) -> pl.DataFrame:
        """Partitions with their bounds, row estimates and sizes (any table name or alias).

        Example:
            >>> pg.list_partitions("bars")   # doctest: +SKIP
        """

        return _maintenance.list_partitions(self.db, table)

    def seal_history(self, older_than: dt.date | dt.datetime | dt.timedelta | str | None = None, *,
                     tables: str | Iterable[str] | None = None, symbols: str | Sequence[str] | None = None,
                     dry_run: bool = False) -> SealReport:
        """Move old history into the columnar (sealed) tier: whole calendar months.

        Every month that ended before the cutoff moves, per table and series, from the
        row table into ``<table>_chunks`` (one zstd Arrow IPC chunk per series and month,
        ~16 bytes per one-minute bar instead of ~185). Readers return the same frames
        either way; writes into sealed months merge into their chunks. Each month moves
        in its own transactions (whole series at a time, at most ~1M rows each): a row is
        always in exactly one tier, even if the server dies mid-way, and sealing again
        moves nothing. See ``docs/schema.md``, "Two tiers".

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
            >>> pg.seal_history("90d", tables=["bars"])   # doctest: +SKIP
            <SealReport: seal 1,000,000 rows in 30 table-month(s) ...>
        """

        if self._disabled("seal_history"):
            return _sealing.SealReport("seal", (), dry_run=dry_run)
        return _sealing.seal_history(self.db, older_than, tables=tables, symbols=symbols, dry_run=dry_run)

    def unseal_history(self, start: DateLike, end: DateLike, *, tables: str | Iterable[str] | None = None,
                       symbols: str | Sequence[str] | None = None) -> SealReport:
        """Put sealed months overlapping ``[start, end]`` back into the row tables.

        For SQL tools that read the row tables directly. Whole months come back (a chunk
        is one series-month), each in one transaction; a later :meth:`seal_history`
        seals them again if they are older than its cutoff.

        Parameters:
            start, end: the range (dates, datetimes or ISO strings; a date as ``end``
                includes that day).
            tables: table names or aliases; every time-series table when None.
            symbols: only these symbols' series.

        Returns:
            A :class:`SealReport` of the months put back.

        Example:
            >>> pg.unseal_history("2024-01-01", "2024-03-31", symbols=["NIFTY"])   # doctest: +SKIP
        """

        if self._disabled("unseal_history"):
            return _sealing.SealReport("unseal", ())
        return _sealing.unseal_history(self.db, start, end, tables=tables, symbols=symbols)
