"""``PostgreSQLIntegration``: the seed's class, as a thin facade over the library.

Every method delegates to one function of a concern module (``writing``, ``reading``,
``maintenance``) with this object's :class:`~regime_io.database.Database` as ``db``.

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
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from .config import Settings, load_settings
from .database import Database

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from ._writing import WriteResult

__all__ = ["PostgreSQLIntegration"]

log = logging.getLogger(__name__)

ReturnType = Literal["polars", "pandas", "arrow"]
OnConflict = Literal["update", "ignore", "error"]
OnDuplicate = Literal["error", "keep_last"]
ExtraColumns = Literal["error", "ignore"]
DateLike = dt.datetime | dt.date | str


class PostgreSQLIntegration:
    """Store and read market history in PostgreSQL as columnar frames.

    Parameters:
        config_file: the seed's INI file (``config/database_config.ini``).
        config: the seed's configuration dict (same sections, lower-case).
        settings: ready-made :class:`~regime_io.config.Settings` (takes precedence).

    With no arguments (and no ``REGIME_IO_*`` environment) it uses the embedded server.
    Nothing connects until the first call that needs the server.
    """

    def __init__(
        self,
        config_file: str | os.PathLike[str] | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings if settings is not None else load_settings(config_file, config)
        self.db = Database(self.settings)
        self._warned_disabled = False

    def __repr__(self) -> str:
        state = "disabled" if not self.settings.enabled else self.settings.describe()
        return f"<PostgreSQLIntegration {state}>"

    def __enter__(self) -> PostgreSQLIntegration:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def _disabled(self, what: str) -> bool:
        """True (after logging once) when ``enabled = false``: writes become no-ops."""
        if self.settings.enabled:
            return False
        if not self._warned_disabled:
            log.warning("database disabled in configuration (enabled = false): %s skipped", what)
            self._warned_disabled = True
        return True

    # -- lifecycle ----------------------------------------------------------------------

    def initialize_database(self) -> int:
        """Create the schema and tables if missing (idempotent). Returns the schema version."""
        if self._disabled("initialize_database"):
            return 0
        from ._schema import initialize_database

        return initialize_database(self.db.pool, self.db.resolved)

    def close(self) -> None:
        """Release every pooled connection. The embedded server keeps running."""
        self.db.close()

    # -- writers ------------------------------------------------------------------------

    def save(self, table: str, data: Any, *, on_conflict: OnConflict = "update",
             on_duplicate: OnDuplicate = "error", extra_columns: ExtraColumns = "error",
             strict: bool = False, chunk_rows: int | None = None,
             progress: Callable[[int, int | None], None] | None = None) -> WriteResult:
        """Validate ``data`` against ``table`` and upsert it in one transaction.

        See :func:`regime_io._writing.save` for the options.
        """
        from ._writing import WriteResult, save

        if self._disabled(f"save to {table}"):
            return WriteResult.disabled(table)
        return save(self.db, table, data, on_conflict=on_conflict, on_duplicate=on_duplicate,
                    extra_columns=extra_columns, strict=strict, chunk_rows=chunk_rows, progress=progress)

    def save_market_data(self, data: Any, **options: Any) -> WriteResult:
        """Save OHLCV bars (``market_data``). Options as for :meth:`save`."""
        return self.save("market_data", data, **options)

    def save_options_data(self, data: Any, **options: Any) -> WriteResult:
        """Save option bars with greeks (``options_data``). Options as for :meth:`save`."""
        return self.save("options_data", data, **options)

    def save_market_regime(self, data: Any, **options: Any) -> WriteResult:
        """Save regime classifications (``market_regimes``). Options as for :meth:`save`."""
        return self.save("market_regimes", data, **options)

    def save_1min_market_regime(self, data: Any, **options: Any) -> WriteResult:
        """Save 1-minute regimes (``market_regimes_1min``). Options as for :meth:`save`."""
        return self.save("market_regimes_1min", data, **options)

    def save_optimization_result(self, data: Any, **options: Any) -> WriteResult:
        """Save optimisation results: a frame, one dict or a list of dicts."""
        return self.save("optimization_results", data, **options)

    def save_rolling_market_regime(self, data: Any, *, window_minutes: int | None = None) -> WriteResult:
        """Upsert the latest 1-minute regimes from a live loop (a few rows per call), and trim
        rows older than the rolling window (``window_minutes`` or ``rolling_window_minutes``)."""
        from ._writing import WriteResult, save_rolling_market_regime

        if self._disabled("save_rolling_market_regime"):
            return WriteResult.disabled("market_regimes_1min")
        return save_rolling_market_regime(self.db, data, window_minutes=window_minutes)

    # -- readers ------------------------------------------------------------------------

    def _empty_if_disabled(self, table: str, return_type: ReturnType) -> Any:
        from ._reading import empty_frame

        return empty_frame(table, return_type=return_type)

    def get_market_data(self, symbol: str | Sequence[str], start: DateLike, end: DateLike, *,
                        timeframe: str | None = None, columns: Sequence[str] | None = None,
                        resample: str | None = None, exact: bool = False,
                        return_type: ReturnType = "polars") -> Any:
        """OHLCV bars for one or more symbols in ``[start, end]`` (inclusive)."""
        from . import _reading as reading

        if not self.enabled:
            return self._empty_if_disabled("market_data", return_type)
        return reading.get_market_data(self.db, symbol, start, end, timeframe=timeframe, columns=columns,
                                       resample=resample, exact=exact, return_type=return_type)

    def get_options_data(self, symbol: str, start: DateLike, end: DateLike, *,
                         expiry: DateLike | Sequence[DateLike] | None = None,
                         strikes: Sequence[float] | None = None, option_type: str | None = None,
                         columns: Sequence[str] | None = None, exact: bool = False,
                         return_type: ReturnType = "polars") -> Any:
        """Option bars for a symbol in ``[start, end]``, optionally by expiry, strike and type."""
        from . import _reading as reading

        if not self.enabled:
            return self._empty_if_disabled("options_data", return_type)
        return reading.get_options_data(self.db, symbol, start, end, expiry=expiry, strikes=strikes,
                                        option_type=option_type, columns=columns, exact=exact,
                                        return_type=return_type)

    def get_market_regimes(self, symbol: str, start: DateLike, end: DateLike, *,
                           timeframe: str | None = None, exact: bool = False,
                           return_type: ReturnType = "polars") -> Any:
        """Regime classifications for a symbol in ``[start, end]``."""
        from . import _reading as reading

        if not self.enabled:
            return self._empty_if_disabled("market_regimes", return_type)
        return reading.get_market_regimes(self.db, symbol, start, end, timeframe=timeframe, exact=exact,
                                          return_type=return_type)

    def get_1min_market_regimes(self, symbol: str, start_date: DateLike, end_date: DateLike, *,
                                exact: bool = False, return_type: ReturnType = "polars") -> Any:
        """1-minute regimes for a symbol in ``[start_date, end_date]`` (the seed's reader)."""
        from . import _reading as reading

        if not self.enabled:
            return self._empty_if_disabled("market_regimes_1min", return_type)
        return reading.get_1min_market_regimes(self.db, symbol, start_date, end_date, exact=exact,
                                               return_type=return_type)

    def get_optimization_results(self, symbol: str | None = None, *, algorithm: str | None = None,
                                 timeframe: str | None = None, top: int | None = None,
                                 return_type: ReturnType = "polars") -> Any:
        """Optimisation results, best fitness first; ``parameters`` decoded."""
        from . import _reading as reading

        if not self.enabled:
            return self._empty_if_disabled("optimization_results", return_type)
        return reading.get_optimization_results(self.db, symbol, algorithm=algorithm, timeframe=timeframe,
                                                top=top, return_type=return_type)

    def get_latest_1min_market_regime(self, symbol: str | None = None, *,
                                      symbols: Sequence[str] | None = None,
                                      return_type: ReturnType = "polars") -> Any:
        """The latest 1-minute regime of ``symbol`` (one row), or of ``symbols`` (one row each;
        every symbol present when both are None)."""
        return self.get_latest("market_regimes_1min", symbol, symbols=symbols, return_type=return_type)

    def get_latest(self, table: str, symbol: str | None = None, *, symbols: Sequence[str] | None = None,
                   timeframe: str | None = None, exact: bool = False, return_type: ReturnType = "polars") -> Any:
        """Latest row per symbol of ``market_data``, ``market_regimes`` or ``market_regimes_1min``."""
        from . import _reading as reading

        if not self.enabled:
            return self._empty_if_disabled(table, return_type)
        return reading.get_latest(self.db, table, symbol, symbols=symbols, timeframe=timeframe, exact=exact,
                                  return_type=return_type)

    def get_market_regime_distribution(self, symbol: str, start_date: DateLike, end_date: DateLike, *,
                                       table: Literal["1min", "regimes"] = "1min",
                                       timeframe: str | None = None,
                                       max_gap: str | dt.timedelta | None = None,
                                       return_type: ReturnType = "polars") -> Any:
        """Per regime: rows, share of rows and time-weighted share, computed in SQL.

        Gaps longer than ``max_gap`` (default 10x the median gap) count as breaks."""
        from . import _reading as reading

        if not self.enabled:
            return reading.empty_distribution(return_type=return_type)
        return reading.get_market_regime_distribution(self.db, symbol, start_date, end_date, table=table,
                                                      timeframe=timeframe, max_gap=max_gap,
                                                      return_type=return_type)

    def get_regime_transitions(self, symbol: str, start_date: DateLike, end_date: DateLike, *,
                               table: Literal["1min", "regimes"] = "1min", timeframe: str | None = None,
                               return_type: ReturnType = "polars") -> Any:
        """Transition matrix (from, to, count, probability) and mean run length per regime."""
        from . import _reading as reading

        if not self.enabled:
            return reading.empty_transitions(return_type=return_type)
        return reading.get_regime_transitions(self.db, symbol, start_date, end_date, table=table,
                                              timeframe=timeframe, return_type=return_type)

    def asof_regimes(self, bars: Any = None, *, symbol: str | None = None, start: DateLike | None = None,
                     end: DateLike | None = None, table: Literal["1min", "regimes"] = "1min",
                     timeframe: str | None = None, tolerance: str | dt.timedelta | None = None) -> pl.DataFrame:
        """Attach to each bar the latest regime known at or before its timestamp (no look-ahead)."""
        from . import _reading as reading

        return reading.asof_regimes(self.db, bars, symbol=symbol, start=start, end=end, table=table,
                                    timeframe=timeframe, tolerance=tolerance)

    def get_option_chain(self, symbol: str, at: DateLike, *, expiry: DateLike | None = None,
                         exact: bool = False, return_type: ReturnType = "polars") -> Any:
        """Per (expiry, strike, type): the latest option row at or before ``at``."""
        from . import _reading as reading

        if not self.enabled:
            return self._empty_if_disabled("options_data", return_type)
        return reading.get_option_chain(self.db, symbol, at, expiry=expiry, exact=exact, return_type=return_type)

    def iter_market_data(self, symbol: str | Sequence[str], start: DateLike, end: DateLike, *,
                         timeframe: str | None = None, batch_rows: int = 250_000,
                         exact: bool = False) -> Iterator[pa.RecordBatch]:
        """Stream bars as Arrow record batches with bounded memory (none when disabled)."""
        from . import _reading as reading

        if not self.enabled:
            return iter(())
        return reading.iter_market_data(self.db, symbol, start, end, timeframe=timeframe,
                                        batch_rows=batch_rows, exact=exact)

    def iter_options_data(self, symbol: str, start: DateLike, end: DateLike, *,
                          expiry: DateLike | Sequence[DateLike] | None = None,
                          strikes: Sequence[float] | None = None, option_type: str | None = None,
                          batch_rows: int = 250_000, exact: bool = False) -> Iterator[pa.RecordBatch]:
        """Stream option bars as Arrow record batches with bounded memory (none when disabled)."""
        from . import _reading as reading

        if not self.enabled:
            return iter(())
        return reading.iter_options_data(self.db, symbol, start, end, expiry=expiry, strikes=strikes,
                                         option_type=option_type, batch_rows=batch_rows, exact=exact)

    # -- maintenance --------------------------------------------------------------------

    def cleanup_old_data(self, days_to_keep: int = 30, *, tables: Iterable[str] | None = None,
                         dry_run: bool = False) -> Any:
        """Remove rows older than ``days_to_keep`` days: whole partitions are dropped and only
        the boundary partition is deleted from. Returns per-table counts."""
        from . import _maintenance as maintenance

        if self._disabled("cleanup_old_data"):
            return maintenance.CleanupReport.empty(dry_run=dry_run)
        return maintenance.cleanup_old_data(self.db, days_to_keep, tables=tables, dry_run=dry_run)

    def list_partitions(self, table: str | None = None) -> pl.DataFrame:
        """Partitions with their bounds, row estimates and sizes."""
        from . import _maintenance as maintenance

        return maintenance.list_partitions(self.db, table)
