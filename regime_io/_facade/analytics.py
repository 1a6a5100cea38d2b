"""Latest rows, option chains, regime statistics, as-of joins, data quality and the catalog
of :class:`~regime_io.PostgreSQLIntegration`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

from .._frames import convert
from .._read import asof as _asof
from .._read import quality as _quality
from .._read import readers as _reading
from .._read.decode import empty_distribution, empty_transitions
from .._tiers import catalog as _catalog
from ..types import BarLabel, DateLike, RegimeTable, ReturnType
from .base import F, FacadeBase, empty_rows, when_disabled

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl
    import pyarrow as pa


__all__ = ["Analytics"]



class Analytics(FacadeBase[F]):
    """Part of :class:`~regime_io.PostgreSQLIntegration` (see that class for the whole API)."""

    @overload
    def get_latest(self, table: str, symbol: str | Sequence[str] | None = None, *,
                   symbols: Sequence[str] | None = None, timeframe: str | None = None, exact: bool = False,
                   as_of: DateLike | None = None,
                   tz: str | None = None, return_type: None = None) -> F: ...

    @overload
    def get_latest(self, table: str, symbol: str | Sequence[str] | None = None, *,
                   symbols: Sequence[str] | None = None, timeframe: str | None = None, exact: bool = False,
                   as_of: DateLike | None = None,
                   tz: str | None = None, return_type: Literal["polars"]) -> pl.DataFrame: ...

    @overload
    def get_latest(self, table: str, symbol: str | Sequence[str] | None = None, *,
                   symbols: Sequence[str] | None = None, timeframe: str | None = None, exact: bool = False,
                   as_of: DateLike | None = None,
                   tz: str | None = None, return_type: Literal["pandas"]) -> pd.DataFrame: ...

    @overload
    def get_latest(self, table: str, symbol: str | Sequence[str] | None = None, *,
                   symbols: Sequence[str] | None = None, timeframe: str | None = None, exact: bool = False,
                   as_of: DateLike | None = None,
                   tz: str | None = None, return_type: Literal["arrow"]) -> pa.Table: ...

    @when_disabled(empty_rows())
    def get_latest(self, table: str, symbol: str | Sequence[str] | None = None, *,
                   symbols: Sequence[str] | None = None, timeframe: str | None = None, exact: bool = False,
                   as_of: DateLike | None = None,
                   tz: str | None = None, return_type: ReturnType | None = None) -> Any:
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

        ``tz``: the zone of the time column for a table written zone-aware (default
        UTC); refused for tables written naive, which read back as written (docs/timezones.md).

        Example:
            >>> pg.get_latest("bars", symbols=["NIFTY", "BANKNIFTY"], timeframe="1m")  # doctest: +SKIP
        """

        rt = self._rt(return_type)
        return _reading.get_latest(self.db, table, symbol, symbols=symbols, timeframe=timeframe, exact=exact,
                                   as_of=as_of, return_type=rt, tz=tz)

    @overload
    def get_latest_1min_market_regime(self, symbol: str | Sequence[str] | None = None, *,
                                      symbols: Sequence[str] | None = None, exact: bool = False,
                                      as_of: DateLike | None = None,
                                      tz: str | None = None, return_type: None = None) -> F: ...

    @overload
    def get_latest_1min_market_regime(self, symbol: str | Sequence[str] | None = None, *,
                                      symbols: Sequence[str] | None = None, exact: bool = False,
                                      as_of: DateLike | None = None,
                                      tz: str | None = None, return_type: Literal["polars"]) -> pl.DataFrame: ...

    @overload
    def get_latest_1min_market_regime(self, symbol: str | Sequence[str] | None = None, *,
                                      symbols: Sequence[str] | None = None, exact: bool = False,
                                      as_of: DateLike | None = None,
                                      tz: str | None = None, return_type: Literal["pandas"]) -> pd.DataFrame: ...

    @overload
    def get_latest_1min_market_regime(self, symbol: str | Sequence[str] | None = None, *,
                                      symbols: Sequence[str] | None = None, exact: bool = False,
                                      as_of: DateLike | None = None,
                                      tz: str | None = None, return_type: Literal["arrow"]) -> pa.Table: ...

    @when_disabled(empty_rows("market_regimes_1min"))
    def get_latest_1min_market_regime(self, symbol: str | Sequence[str] | None = None, *,
                                      symbols: Sequence[str] | None = None, exact: bool = False,
                                      as_of: DateLike | None = None,
                                      tz: str | None = None, return_type: ReturnType | None = None) -> Any:
        """The latest 1-minute regime per symbol: :meth:`get_latest` of ``market_regimes_1min``.

        ``as_of``: the answer as it was known at this instant (a datetime or ISO string;
        naive: storage zone) instead of now; the table must keep history
        (``[DATABASE] history_tables``, docs/history.md).

        ``tz``: the zone of the time column for a table written zone-aware (default
        UTC); refused for tables written naive, which read back as written (docs/timezones.md).

        Example:
            >>> pg.get_latest_1min_market_regime("NIFTY")   # doctest: +SKIP
        """

        rt = self._rt(return_type)
        return _reading.get_latest(self.db, "market_regimes_1min", symbol, symbols=symbols, timeframe=None,
                                   exact=exact, as_of=as_of, return_type=rt, tz=tz)

    @overload
    def get_option_chain(self, symbol: str, at: DateLike, *, expiry: DateLike | None = None, exact: bool = False,
                         as_of: DateLike | None = None,
                         tz: str | None = None, return_type: None = None) -> F: ...

    @overload
    def get_option_chain(self, symbol: str, at: DateLike, *, expiry: DateLike | None = None, exact: bool = False,
                         as_of: DateLike | None = None,
                         tz: str | None = None, return_type: Literal["polars"]) -> pl.DataFrame: ...

    @overload
    def get_option_chain(self, symbol: str, at: DateLike, *, expiry: DateLike | None = None, exact: bool = False,
                         as_of: DateLike | None = None,
                         tz: str | None = None, return_type: Literal["pandas"]) -> pd.DataFrame: ...

    @overload
    def get_option_chain(self, symbol: str, at: DateLike, *, expiry: DateLike | None = None, exact: bool = False,
                         as_of: DateLike | None = None,
                         tz: str | None = None, return_type: Literal["arrow"]) -> pa.Table: ...

    @when_disabled(empty_rows("options_data"))
    def get_option_chain(self, symbol: str, at: DateLike, *, expiry: DateLike | None = None, exact: bool = False,
                         as_of: DateLike | None = None,
                         tz: str | None = None, return_type: ReturnType | None = None) -> Any:
        """The option chain of ``symbol`` as it stood at ``at``.

        For each (expiry, strike, type) not expired at ``at``, its latest row at or
        before ``at``; a date as ``at`` means the end of that day. Ordered by expiry,
        strike and type.

        ``as_of``: the answer as it was known at this instant (a datetime or ISO string;
        naive: storage zone) instead of now; the table must keep history
        (``[DATABASE] history_tables``, docs/history.md).

        ``tz``: the zone of the time column for a table written zone-aware (default
        UTC); refused for tables written naive, which read back as written (docs/timezones.md).

        Example:
            >>> pg.get_option_chain("NIFTY", "2024-01-02 10:30", expiry="2024-01-25")  # doctest: +SKIP
        """

        rt = self._rt(return_type)
        return _reading.get_option_chain(self.db, symbol, at, expiry=expiry, exact=exact, as_of=as_of,
                                         return_type=rt, tz=tz)

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

    @when_disabled(lambda pg, a: empty_distribution(return_type=pg._rt(a["return_type"])))
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

    @when_disabled(lambda pg, a: empty_transitions(return_type=pg._rt(a["return_type"])))
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

    @when_disabled(None)  # bars given: they come back with no regimes attached; none: empty
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

    @when_disabled(lambda pg, a: convert(_catalog.CATALOG_SCHEMA.empty_table(), pg._rt(a["return_type"])))
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
            storage zone, as stored), ``row_count`` (both tiers) and its split:
            ``rows`` in the row table, ``sealed`` in sealed chunks (as ``regime-io
            doctor`` counts them); ordered by table, symbol and timeframe (byte order).

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
        return convert(_catalog.read_catalog(self.db, table), rt)

    @overload
    def quality_report(self, table: str, symbols: str | Sequence[str] | None = None,
                       start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                       calendar: str | None = None, bar_label: BarLabel = "start", strict: bool = False,
                       return_type: None = None) -> F: ...

    @overload
    def quality_report(self, table: str, symbols: str | Sequence[str] | None = None,
                       start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                       calendar: str | None = None, bar_label: BarLabel = "start", strict: bool = False,
                       return_type: Literal["polars"]) -> pl.DataFrame: ...

    @overload
    def quality_report(self, table: str, symbols: str | Sequence[str] | None = None,
                       start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                       calendar: str | None = None, bar_label: BarLabel = "start", strict: bool = False,
                       return_type: Literal["pandas"]) -> pd.DataFrame: ...

    @overload
    def quality_report(self, table: str, symbols: str | Sequence[str] | None = None,
                       start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                       calendar: str | None = None, bar_label: BarLabel = "start", strict: bool = False,
                       return_type: Literal["arrow"]) -> pa.Table: ...

    @when_disabled(lambda pg, a: convert(_quality.QUALITY_SCHEMA.empty_table(), pg._rt(a["return_type"])))
    def quality_report(self, table: str, symbols: str | Sequence[str] | None = None,
                       start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                       calendar: str | None = None, bar_label: BarLabel = "start", strict: bool = False,
                       return_type: ReturnType | None = None) -> Any:
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
                ``calendars`` extra (``pip install 'regime-io[calendars]'``). Sessions are
                each date's schedule (early closes, historical hours). None (default): the
                ``calendars`` setting's entry for the symbol, else the ``calendar``
                setting (``"XNSE"`` unless configured). Bars outside every session warn
                (``CalendarMismatchWarning``) naming the calendar, the count and an example.
            bar_label: ``"start"`` (default: 09:30 is the bar 09:30-09:31) or ``"end"``
                (the vendor stamps it 09:31).
            strict: bars outside the calendar's sessions are a ``UsageError`` instead of
                a warning.
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
        return _quality.quality_report(self.db, table, symbols, start_date, end_date, calendar=calendar,
                                       bar_label=bar_label, strict=strict, return_type=rt)
