"""Range readers, streams, ``history()`` and ``scan()`` of :class:`~regime_io.PostgreSQLIntegration`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, overload

from .._frames import BatchStream
from .._read import history as _history
from .._read import readers as _reading
from .._read import scan as _scan
from .._read import streams as _streams
from .._read import tailrows as _tailrows
from .._read.decode import empty_frame
from ..types import DateLike, ParametersAs, ReturnType
from .base import F, FacadeBase, empty_rows, when_disabled

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl
    import pyarrow as pa


__all__ = ["RangeReaders"]



class RangeReaders(FacadeBase[F]):
    """Part of :class:`~regime_io.PostgreSQLIntegration` (see that class for the whole API)."""

    @overload
    def get_market_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                        end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                        timeframe: str | None = None, columns: Sequence[str] | None = None,
                        resample: str | dt.timedelta | None = None, calendar: str | None = None, exact: bool = False,
                        as_of: DateLike | None = None,
                        tz: str | None = None, last: int | None = None,
                        index_col: str | Sequence[str] | None = None, strict: bool = False,
                        return_type: None = None) -> F: ...

    @overload
    def get_market_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                        end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                        timeframe: str | None = None, columns: Sequence[str] | None = None,
                        resample: str | dt.timedelta | None = None, calendar: str | None = None, exact: bool = False,
                        as_of: DateLike | None = None,
                        tz: str | None = None, last: int | None = None,
                        index_col: str | Sequence[str] | None = None, strict: bool = False,
                        return_type: Literal["polars"]) -> pl.DataFrame: ...

    @overload
    def get_market_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                        end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                        timeframe: str | None = None, columns: Sequence[str] | None = None,
                        resample: str | dt.timedelta | None = None, calendar: str | None = None, exact: bool = False,
                        as_of: DateLike | None = None,
                        tz: str | None = None, last: int | None = None,
                        index_col: str | Sequence[str] | None = None, strict: bool = False,
                        return_type: Literal["pandas"]) -> pd.DataFrame: ...

    @overload
    def get_market_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                        end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                        timeframe: str | None = None, columns: Sequence[str] | None = None,
                        resample: str | dt.timedelta | None = None, calendar: str | None = None, exact: bool = False,
                        as_of: DateLike | None = None,
                        tz: str | None = None, last: int | None = None,
                        index_col: str | Sequence[str] | None = None, strict: bool = False,
                        return_type: Literal["arrow"]) -> pa.Table: ...

    @when_disabled(empty_rows("market_data"))
    def get_market_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                        end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                        timeframe: str | None = None, columns: Sequence[str] | None = None,
                        resample: str | dt.timedelta | None = None, calendar: str | None = None, exact: bool = False,
                        as_of: DateLike | None = None,
                        tz: str | None = None, last: int | None = None,
                        index_col: str | Sequence[str] | None = None, strict: bool = False,
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
            calendar: the exchange calendar whose sessions anchor intraday buckets
                (``"XNSE"``, ``"XNYS"``...; other than NSE/BSE with the ``calendars``
                extra); each date's open from its schedule. None (default): the
                ``calendars`` setting's entry for the symbol, else the ``calendar``
                setting (``"XNSE"`` unless configured). Bars outside the calendar's
                sessions warn (``CalendarMismatchWarning``) naming the calendar, the count
                and an example bar.
            exact: DECIMAL columns as exact decimals instead of Float64.
            as_of: the answer as it was known at this instant (a datetime or ISO string;
                naive: storage zone) instead of now; the table must keep history
                (``[DATABASE] history_tables``, docs/history.md).
            last: only the last ``last`` rows of each symbol at or before ``end_date``
                (and at or after ``start_date`` when given), over both tiers, in the
                same schema and order; each symbol is read backwards from ``end_date``
                and stops after ``last`` rows, so the window's length costs nothing.
                Pass ``timeframe`` to count bars of one timeframe. Not with ``resample``.
            index_col: with ``return_type="pandas"``, the column(s) that become the
                index, as ``pandas.read_sql(index_col=)`` does: ``"timestamp"`` gives a
                ``DatetimeIndex``, ``["symbol", "timestamp"]`` a ``MultiIndex``.
            strict: with ``resample``, bars outside the calendar's sessions are a
                ``UsageError`` instead of a ``CalendarMismatchWarning``.
            return_type: ``"polars"``, ``"pandas"`` or ``"arrow"``; default: the instance's.

        Returns:
            Rows ordered by symbol, timeframe and timestamp.

        Raises:
            UsageError: bad arguments (``start_date`` after ``end_date``, unknown
                column, a non-ISO date string).
            ReadError: the server refused the query.

        ``tz``: the zone of the time column for a table written zone-aware (default
        UTC); refused for tables written naive, which read back as written (docs/timezones.md).

        Example:
            >>> pg.get_market_data("NIFTY", "2024-01-02", "2024-01-02", resample="5m")  # doctest: +SKIP
            >>> pg.get_market_data("NIFTY", end_date="2024-01-02", timeframe="1m", last=200)  # doctest: +SKIP
        """

        rt = self._rt(return_type)
        return _reading.get_market_data(self.db, symbol, start_date, end_date, symbols=symbols, timeframe=timeframe,
                                        columns=columns, resample=resample, calendar=calendar, exact=exact,
                                        as_of=as_of, return_type=rt, tz=tz, last=last,
                                        index_col=index_col, strict=strict)

    @overload
    def get_options_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                         end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                         expiry: DateLike | Sequence[DateLike] | None = None,
                         strikes: float | Decimal | Sequence[float | Decimal] | None = None,
                         option_type: str | Sequence[str] | None = None, columns: Sequence[str] | None = None,
                         exact: bool = False,
                         as_of: DateLike | None = None, tz: str | None = None, last: int | None = None,
                        index_col: str | Sequence[str] | None = None,
                        return_type: None = None) -> F: ...

    @overload
    def get_options_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                         end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                         expiry: DateLike | Sequence[DateLike] | None = None,
                         strikes: float | Decimal | Sequence[float | Decimal] | None = None,
                         option_type: str | Sequence[str] | None = None, columns: Sequence[str] | None = None,
                         exact: bool = False,
                         as_of: DateLike | None = None,
                         tz: str | None = None, last: int | None = None,
                        index_col: str | Sequence[str] | None = None,
                        return_type: Literal["polars"]) -> pl.DataFrame: ...

    @overload
    def get_options_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                         end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                         expiry: DateLike | Sequence[DateLike] | None = None,
                         strikes: float | Decimal | Sequence[float | Decimal] | None = None,
                         option_type: str | Sequence[str] | None = None, columns: Sequence[str] | None = None,
                         exact: bool = False,
                         as_of: DateLike | None = None,
                         tz: str | None = None, last: int | None = None,
                        index_col: str | Sequence[str] | None = None,
                        return_type: Literal["pandas"]) -> pd.DataFrame: ...

    @overload
    def get_options_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                         end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                         expiry: DateLike | Sequence[DateLike] | None = None,
                         strikes: float | Decimal | Sequence[float | Decimal] | None = None,
                         option_type: str | Sequence[str] | None = None, columns: Sequence[str] | None = None,
                         exact: bool = False,
                         as_of: DateLike | None = None,
                         tz: str | None = None, last: int | None = None,
                        index_col: str | Sequence[str] | None = None,
                        return_type: Literal["arrow"]) -> pa.Table: ...

    @when_disabled(empty_rows("options_data"))
    def get_options_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                         end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                         expiry: DateLike | Sequence[DateLike] | None = None,
                         strikes: float | Decimal | Sequence[float | Decimal] | None = None,
                         option_type: str | Sequence[str] | None = None, columns: Sequence[str] | None = None,
                         exact: bool = False,
                         as_of: DateLike | None = None,
                         tz: str | None = None, last: int | None = None,
                        index_col: str | Sequence[str] | None = None,
                        return_type: ReturnType | None = None) -> Any:
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

        ``tz``: the zone of the time column for a table written zone-aware (default
        UTC); refused for tables written naive, which read back as written (docs/timezones.md).

        ``last``: the last ``last`` rows of each symbol at or before ``end_date``, and
        ``index_col``: the pandas index, as for :meth:`get_market_data`.

        Example:
            >>> pg.get_options_data("NIFTY", "2024-01-02", "2024-01-02", expiry="2024-01-25",
            ...                     strikes=[21500, 21600], option_type="call")   # doctest: +SKIP
        """

        rt = self._rt(return_type)
        return _reading.get_options_data(self.db, symbol, start_date, end_date, symbols=symbols, expiry=expiry,
                                         strikes=strikes, option_type=option_type, columns=columns, exact=exact,
                                         as_of=as_of, return_type=rt, tz=tz, last=last,
                                        index_col=index_col)

    @overload
    def get_market_regimes(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                           end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                           timeframe: str | None = None, columns: Sequence[str] | None = None,
                           exact: bool = False,
                           as_of: DateLike | None = None, tz: str | None = None, last: int | None = None,
                        index_col: str | Sequence[str] | None = None,
                        return_type: None = None) -> F: ...

    @overload
    def get_market_regimes(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                           end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                           timeframe: str | None = None, columns: Sequence[str] | None = None,
                           exact: bool = False,
                           as_of: DateLike | None = None,
                           tz: str | None = None, last: int | None = None,
                        index_col: str | Sequence[str] | None = None,
                        return_type: Literal["polars"]) -> pl.DataFrame: ...

    @overload
    def get_market_regimes(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                           end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                           timeframe: str | None = None, columns: Sequence[str] | None = None,
                           exact: bool = False,
                           as_of: DateLike | None = None,
                           tz: str | None = None, last: int | None = None,
                        index_col: str | Sequence[str] | None = None,
                        return_type: Literal["pandas"]) -> pd.DataFrame: ...

    @overload
    def get_market_regimes(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                           end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                           timeframe: str | None = None, columns: Sequence[str] | None = None,
                           exact: bool = False,
                           as_of: DateLike | None = None,
                           tz: str | None = None, last: int | None = None,
                        index_col: str | Sequence[str] | None = None,
                        return_type: Literal["arrow"]) -> pa.Table: ...

    @when_disabled(empty_rows("market_regimes"))
    def get_market_regimes(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                           end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                           timeframe: str | None = None, columns: Sequence[str] | None = None,
                           exact: bool = False,
                           as_of: DateLike | None = None,
                           tz: str | None = None, last: int | None = None,
                        index_col: str | Sequence[str] | None = None,
                        return_type: ReturnType | None = None) -> Any:
        """Regime classifications (``market_regimes``) in ``[start_date, end_date]``.

        Arguments as for :meth:`get_market_data`.

        ``as_of``: the answer as it was known at this instant (a datetime or ISO string;
        naive: storage zone) instead of now; the table must keep history
        (``[DATABASE] history_tables``, docs/history.md).

        ``tz``: the zone of the time column for a table written zone-aware (default
        UTC); refused for tables written naive, which read back as written (docs/timezones.md).

        ``last``: the last ``last`` rows of each symbol at or before ``end_date``, and
        ``index_col``: the pandas index, as for :meth:`get_market_data`.

        Example:
            >>> pg.get_market_regimes("NIFTY", "2024-01-01", "2024-01-31", timeframe="15m")  # doctest: +SKIP
        """

        rt = self._rt(return_type)
        return _reading.get_market_regimes(self.db, symbol, start_date, end_date, symbols=symbols,
                                           timeframe=timeframe, columns=columns, exact=exact, as_of=as_of,
                                           return_type=rt, tz=tz, last=last,
                                        index_col=index_col)

    @overload
    def get_1min_market_regimes(self, symbol: str | Sequence[str] | None = None,
                                start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                                symbols: Sequence[str] | None = None, columns: Sequence[str] | None = None,
                                exact: bool = False,
                                as_of: DateLike | None = None,
                                tz: str | None = None, last: int | None = None,
                        index_col: str | Sequence[str] | None = None,
                        return_type: None = None) -> F: ...

    @overload
    def get_1min_market_regimes(self, symbol: str | Sequence[str] | None = None,
                                start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                                symbols: Sequence[str] | None = None, columns: Sequence[str] | None = None,
                                exact: bool = False,
                                as_of: DateLike | None = None,
                                tz: str | None = None, last: int | None = None,
                        index_col: str | Sequence[str] | None = None,
                        return_type: Literal["polars"]) -> pl.DataFrame: ...

    @overload
    def get_1min_market_regimes(self, symbol: str | Sequence[str] | None = None,
                                start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                                symbols: Sequence[str] | None = None, columns: Sequence[str] | None = None,
                                exact: bool = False,
                                as_of: DateLike | None = None,
                                tz: str | None = None, last: int | None = None,
                        index_col: str | Sequence[str] | None = None,
                        return_type: Literal["pandas"]) -> pd.DataFrame: ...

    @overload
    def get_1min_market_regimes(self, symbol: str | Sequence[str] | None = None,
                                start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                                symbols: Sequence[str] | None = None, columns: Sequence[str] | None = None,
                                exact: bool = False,
                                as_of: DateLike | None = None,
                                tz: str | None = None, last: int | None = None,
                        index_col: str | Sequence[str] | None = None,
                        return_type: Literal["arrow"]) -> pa.Table: ...

    @when_disabled(empty_rows("market_regimes_1min"))
    def get_1min_market_regimes(self, symbol: str | Sequence[str] | None = None,
                                start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                                symbols: Sequence[str] | None = None, columns: Sequence[str] | None = None,
                                exact: bool = False,
                                as_of: DateLike | None = None,
                                tz: str | None = None, last: int | None = None,
                        index_col: str | Sequence[str] | None = None,
                        return_type: ReturnType | None = None) -> Any:
        """1-minute regimes (``market_regimes_1min``) in ``[start_date, end_date]`` (the seed's reader).

        Arguments as for :meth:`get_market_data`.

        ``as_of``: the answer as it was known at this instant (a datetime or ISO string;
        naive: storage zone) instead of now; the table must keep history
        (``[DATABASE] history_tables``, docs/history.md).

        ``tz``: the zone of the time column for a table written zone-aware (default
        UTC); refused for tables written naive, which read back as written (docs/timezones.md).

        ``last``: the last ``last`` rows of each symbol at or before ``end_date``, and
        ``index_col``: the pandas index, as for :meth:`get_market_data`.

        Example:
            >>> pg.get_1min_market_regimes("NIFTY", "2024-01-02", "2024-01-02")  # doctest: +SKIP
        """

        rt = self._rt(return_type)
        return _reading.get_1min_market_regimes(self.db, symbol, start_date, end_date, symbols=symbols,
                                                columns=columns, exact=exact, as_of=as_of, return_type=rt, tz=tz,
                                                last=last, index_col=index_col)

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

    @when_disabled(empty_rows("optimization_results"))
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
        return _reading.get_optimization_results(self.db, symbol, symbols=symbols, algorithm=algorithm,
                                                 timeframe=timeframe, top=top, exact=exact, parameters=parameters,
                                                 as_of=as_of, return_type=rt)

    @overload
    def iter_market_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                         end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                         timeframe: str | None = None, batch_rows: int = 250_000,
                         exact: bool = False, as_of: DateLike | None = None,
                         tz: str | None = None, return_type: None = None) -> BatchStream[F]: ...

    @overload
    def iter_market_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                         end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                         timeframe: str | None = None, batch_rows: int = 250_000,
                         exact: bool = False, as_of: DateLike | None = None,
                         tz: str | None = None, return_type: Literal["polars"]) -> BatchStream[pl.DataFrame]: ...

    @overload
    def iter_market_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                         end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                         timeframe: str | None = None, batch_rows: int = 250_000,
                         exact: bool = False, as_of: DateLike | None = None,
                         tz: str | None = None, return_type: Literal["pandas"]) -> BatchStream[pd.DataFrame]: ...

    @overload
    def iter_market_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                         end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                         timeframe: str | None = None, batch_rows: int = 250_000,
                         exact: bool = False, as_of: DateLike | None = None,
                         tz: str | None = None, return_type: Literal["arrow"]) -> BatchStream[pa.RecordBatch]: ...

    @when_disabled(lambda pg, a: _streams.empty_stream(pg.db.spec("market_data"), exact=a["exact"],
                                                       return_type=pg._rt(a.get("return_type"))))
    def iter_market_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                         end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                         timeframe: str | None = None, batch_rows: int = 250_000,
                         exact: bool = False, as_of: DateLike | None = None,
                         tz: str | None = None, return_type: ReturnType | None = None) -> BatchStream[Any]:
        """Stream bars in frames of at most ``batch_rows`` rows (bounded memory).

        Arguments as for :meth:`get_market_data`; checked when called, not at the first
        batch. Frames have :meth:`get_market_data`'s schema and row order, so they
        concatenate to its answer.

        Iterated, the stream yields one frame per batch, of the ``return_type`` asked for
        (default: the instance's): polars DataFrames, pandas DataFrames, or
        ``pyarrow.RecordBatch`` objects for ``"arrow"``.

        Whatever the ``return_type``, the stream is also an Arrow C stream
        (``__arrow_c_stream__``, schema in ``.schema`` before the first batch):
        ``pa.RecordBatchReader.from_stream(s)``, ``pl.DataFrame(s)``, DuckDB and the
        writers here (``pg.save(table, s)``) read its Arrow batches directly. One pass:
        batches read one way are not seen the other.

        ``as_of``: the answer as it was known at this instant (a datetime or ISO string;
        naive: storage zone) instead of now; the table must keep history
        (``[DATABASE] history_tables``, docs/history.md).

        ``tz``: the zone of the time column for a table written zone-aware (default
        UTC); refused for tables written naive, which read back as written (docs/timezones.md).

        Example:
            >>> for frame in pg.iter_market_data("NIFTY", "2023-01-01", "2023-12-31"):  # doctest: +SKIP
            ...     process(frame)
        """

        rt = self._rt(return_type)
        return _streams.iter_market_data(self.db, symbol, start_date, end_date, symbols=symbols,
                                         timeframe=timeframe, batch_rows=batch_rows, exact=exact, as_of=as_of, tz=tz,
                                         return_type=rt)

    @overload
    def iter_options_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                          end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                          expiry: DateLike | Sequence[DateLike] | None = None,
                          strikes: float | Decimal | Sequence[float | Decimal] | None = None,
                          option_type: str | Sequence[str] | None = None, batch_rows: int = 250_000,
                          exact: bool = False, as_of: DateLike | None = None,
                          tz: str | None = None, return_type: None = None) -> BatchStream[F]: ...

    @overload
    def iter_options_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                          end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                          expiry: DateLike | Sequence[DateLike] | None = None,
                          strikes: float | Decimal | Sequence[float | Decimal] | None = None,
                          option_type: str | Sequence[str] | None = None, batch_rows: int = 250_000,
                          exact: bool = False, as_of: DateLike | None = None,
                          tz: str | None = None, return_type: Literal["polars"]) -> BatchStream[pl.DataFrame]: ...

    @overload
    def iter_options_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                          end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                          expiry: DateLike | Sequence[DateLike] | None = None,
                          strikes: float | Decimal | Sequence[float | Decimal] | None = None,
                          option_type: str | Sequence[str] | None = None, batch_rows: int = 250_000,
                          exact: bool = False, as_of: DateLike | None = None,
                          tz: str | None = None, return_type: Literal["pandas"]) -> BatchStream[pd.DataFrame]: ...

    @overload
    def iter_options_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                          end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                          expiry: DateLike | Sequence[DateLike] | None = None,
                          strikes: float | Decimal | Sequence[float | Decimal] | None = None,
                          option_type: str | Sequence[str] | None = None, batch_rows: int = 250_000,
                          exact: bool = False, as_of: DateLike | None = None,
                          tz: str | None = None, return_type: Literal["arrow"]) -> BatchStream[pa.RecordBatch]: ...

    @when_disabled(lambda pg, a: _streams.empty_stream(pg.db.spec("options_data"), exact=a["exact"],
                                                       return_type=pg._rt(a.get("return_type"))))
    def iter_options_data(self, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                          end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                          expiry: DateLike | Sequence[DateLike] | None = None,
                          strikes: float | Decimal | Sequence[float | Decimal] | None = None,
                          option_type: str | Sequence[str] | None = None, batch_rows: int = 250_000,
                          exact: bool = False, as_of: DateLike | None = None,
                          tz: str | None = None, return_type: ReturnType | None = None) -> BatchStream[Any]:
        """Stream option bars in frames of ``return_type`` (filters as :meth:`get_options_data`).

        Frames, ``return_type`` and the Arrow C stream as :meth:`iter_market_data`.

        ``as_of``: the answer as it was known at this instant (a datetime or ISO string;
        naive: storage zone) instead of now; the table must keep history
        (``[DATABASE] history_tables``, docs/history.md).

        ``tz``: the zone of the time column for a table written zone-aware (default
        UTC); refused for tables written naive, which read back as written (docs/timezones.md).

        Example:
            >>> sum(len(f) for f in pg.iter_options_data("NIFTY", option_type="pe"))  # doctest: +SKIP
        """

        rt = self._rt(return_type)
        return _streams.iter_options_data(self.db, symbol, start_date, end_date, symbols=symbols, expiry=expiry,
                                          strikes=strikes, option_type=option_type, batch_rows=batch_rows,
                                          exact=exact, as_of=as_of, tz=tz, return_type=rt)

    @overload
    def tail(self, table: str, symbol: str | Sequence[str] | None = None, n: int = 5, *,
             symbols: Sequence[str] | None = None, end_date: DateLike | None = None, timeframe: str | None = None,
             exact: bool = False, tz: str | None = None, return_type: None = None) -> F: ...

    @overload
    def tail(self, table: str, symbol: str | Sequence[str] | None = None, n: int = 5, *,
             symbols: Sequence[str] | None = None, end_date: DateLike | None = None, timeframe: str | None = None,
             exact: bool = False, tz: str | None = None, return_type: Literal["polars"]) -> pl.DataFrame: ...

    @overload
    def tail(self, table: str, symbol: str | Sequence[str] | None = None, n: int = 5, *,
             symbols: Sequence[str] | None = None, end_date: DateLike | None = None, timeframe: str | None = None,
             exact: bool = False, tz: str | None = None, return_type: Literal["pandas"]) -> pd.DataFrame: ...

    @overload
    def tail(self, table: str, symbol: str | Sequence[str] | None = None, n: int = 5, *,
             symbols: Sequence[str] | None = None, end_date: DateLike | None = None, timeframe: str | None = None,
             exact: bool = False, tz: str | None = None, return_type: Literal["arrow"]) -> pa.Table: ...

    @when_disabled(empty_rows())
    def tail(self, table: str, symbol: str | Sequence[str] | None = None, n: int = 5, *,
             symbols: Sequence[str] | None = None, end_date: DateLike | None = None, timeframe: str | None = None,
             exact: bool = False, tz: str | None = None, return_type: ReturnType | None = None) -> Any:
        """The last ``n`` rows of each symbol of a table (as ``tail`` in pandas, polars, ArcticDB).

        The table's range reader with ``last=n`` (:meth:`get_market_data`): both tiers,
        each symbol read backwards from ``end_date`` (default: its newest row), the
        rows in the range reader's schema and order. The live follower that was called
        ``tail()`` before 0.x is :meth:`follow`.

        Parameters:
            table: ``market_data``, ``options_data``, ``market_regimes`` or
                ``market_regimes_1min`` (any name or alias :meth:`save` accepts).
            symbol: ``"NIFTY"`` or a list (or pass ``symbols=``); required.
            n: rows per symbol (default 5).
            end_date: the last instant (a date: the end of that day); default: now.
            timeframe: only this timeframe (tables that have one): count bars of one size.
            exact, tz, return_type: as for :meth:`get_market_data`.

        Raises:
            UsageError: ``n`` not a positive integer, a table without a time column, a
                ``timeframe`` for a table without one, bad arguments.

        Example:
            >>> pg.tail("bars", "NIFTY", 20, timeframe="1m")          # doctest: +SKIP
        """

        rt = self._rt(return_type)
        return _tailrows.tail(self.db, table, symbol, n, symbols=symbols, end_date=end_date, timeframe=timeframe,
                              exact=exact, tz=tz, return_type=rt)

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

    @when_disabled(lambda pg, a: _history.empty_history(pg.db.spec(a["table"]), exact=a["exact"],
                                                         return_type=pg._rt(a["return_type"])))
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

    @when_disabled(lambda pg, a: empty_frame(pg.db.spec(a["table"]), exact=a["exact"]).lazy())
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

        return _scan.scan(self.db, table, exact=exact, as_of=as_of)
