"""Fast, seeded, realistic one-minute bars for benchmarks (millions of rows in seconds).

``regime_io.synthetic`` builds regime-switching histories symbol by symbol, which is
right for demos but slow for 10M rows. :class:`BarStream` vectorises the same shape of
data: NSE-style sessions (09:15-15:29, 375 bars, weekdays), prices as geometric random
walks rounded to 2 decimals and well inside DECIMAL(10,2), volumes as integers, several
symbols. Rows come time-major (every symbol of a minute, then the next minute), the way
a table grows in production, and each :meth:`BarStream.take` continues where the last
one stopped, so successive batches never share a natural key.

Example:
    >>> stream = BarStream(3, seed=1)
    >>> batch = stream.take_rows(6)
    >>> batch.height, batch["symbol"].to_list()[:3]
    (6, ['NIFTY', 'BANKNIFTY', 'FINNIFTY'])
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

__all__ = ["MINUTES_PER_DAY", "BarStream", "ConsecutiveBars", "symbol_names"]

MINUTES_PER_DAY = 375
SESSION_START_MINUTES = 9 * 60 + 15
_KNOWN = ["NIFTY", "BANKNIFTY", "FINNIFTY", "RELIANCE", "TCS", "INFY", "HDFCBANK", "SBIN", "ICICIBANK", "ITC"]
_KNOWN_PRICE = [21500.0, 47000.0, 21000.0, 2600.0, 3800.0, 1550.0, 1650.0, 620.0, 1000.0, 450.0]


def symbol_names(n: int) -> list[str]:
    """``n`` symbol names: well-known NSE names first, then ``STOCK011``, ``STOCK012``..."""
    return [_KNOWN[i] if i < len(_KNOWN) else f"STOCK{i + 1:03d}" for i in range(n)]


class BarStream:
    """An endless, deterministic stream of one-minute bars for ``n_symbols`` symbols."""

    def __init__(self, n_symbols: int, *, seed: int = 7, start: dt.date = dt.date(2022, 1, 3),
                 timeframe: str = "1m") -> None:
        if n_symbols < 1:
            raise ValueError(f"n_symbols must be >= 1, got {n_symbols}")
        self.symbols = symbol_names(n_symbols)
        self.timeframe = timeframe
        self.start = np.datetime64(start, "D")
        self.rng = np.random.default_rng(seed)
        known = np.array(_KNOWN_PRICE[: min(n_symbols, len(_KNOWN_PRICE))])
        others = np.round(np.exp(self.rng.uniform(np.log(50), np.log(5000), max(0, n_symbols - len(known)))), 2)
        self.price = np.concatenate([known, others])
        # Per-symbol volatility per minute: index-like 0.04%, single stocks up to 0.1%.
        self.vol = self.rng.uniform(0.0004, 0.001, n_symbols)
        self.minute = 0  # global session-minute index of the next bar

    @property
    def n_symbols(self) -> int:
        return len(self.symbols)

    def timestamps(self, first_minute: int, minutes: int) -> np.ndarray:
        """datetime64[us] of session minutes ``first_minute .. first_minute + minutes - 1``."""
        index = np.arange(first_minute, first_minute + minutes, dtype=np.int64)
        days = np.busday_offset(self.start, index // MINUTES_PER_DAY, roll="forward")
        offset = (SESSION_START_MINUTES + index % MINUTES_PER_DAY).astype("timedelta64[m]")
        return days.astype("datetime64[us]") + offset.astype("timedelta64[us]")

    def day_bounds(self, day: int) -> tuple[dt.datetime, dt.datetime]:
        """First and last bar time of session day ``day`` (0-based)."""
        ts = self.timestamps(day * MINUTES_PER_DAY, MINUTES_PER_DAY)
        return ts[0].astype(dt.datetime), ts[-1].astype(dt.datetime)

    def span(self) -> tuple[dt.datetime, dt.datetime]:
        """First and last bar time produced so far."""
        first = self.timestamps(0, 1)[0]
        last = self.timestamps(max(self.minute - 1, 0), 1)[0]
        return first.astype(dt.datetime), last.astype(dt.datetime)

    def take(self, minutes: int) -> pl.DataFrame:
        """The next ``minutes`` minutes of bars: ``minutes * n_symbols`` rows, time-major."""
        n, s = minutes, self.n_symbols
        returns = self.rng.standard_normal((n, s)) * self.vol
        close = self.price * np.exp(np.cumsum(returns, axis=0))
        open_ = np.vstack([self.price[None, :], close[:-1]])
        spread = np.abs(self.rng.standard_normal((n, s))) * close * 0.0004
        open_, close = np.round(open_, 2), np.round(close, 2)
        # Rounded after open/close so that low <= open, close <= high holds exactly.
        high = np.round(np.maximum(open_, close) + spread, 2)
        low = np.maximum(np.round(np.minimum(open_, close) - spread, 2), 0.01)
        volume = self.rng.integers(1_000, 50_000, (n, s), dtype=np.int64)
        self.price = close[-1].copy()
        ts = np.repeat(self.timestamps(self.minute, n), s)
        self.minute += n
        symbol_index = np.tile(np.arange(s, dtype=np.uint32), n)
        symbols = pl.Series("symbol", self.symbols, dtype=pl.String).gather(symbol_index)
        return pl.DataFrame({
            "symbol": symbols,
            "timestamp": ts,
            "open": open_.ravel(),
            "high": high.ravel(),
            "low": low.ravel(),
            "close": close.ravel(),
            "volume": volume.ravel(),
        }).with_columns(pl.lit(self.timeframe, dtype=pl.String).alias("timeframe"))

    def take_rows(self, rows: int) -> pl.DataFrame:
        """At least ``rows`` rows, rounded up to whole minutes (so batches never share a minute)."""
        return self.take(max(1, -(-rows // self.n_symbols)))


class ConsecutiveBars(BarStream):
    """Bars on every calendar minute from ``start`` (00:00), weekends and nights included:
    issue 12's shape (10 symbols x 100,000 consecutive minutes from 2024-01-01, so
    February 2024 holds 41,760 bars per symbol and a day 1,440).

    >>> ConsecutiveBars(2).take(3)["timestamp"].dt.minute().to_list()
    [0, 0, 1, 1, 2, 2]
    """

    def timestamps(self, first_minute: int, minutes: int) -> np.ndarray:
        index = np.arange(first_minute, first_minute + minutes, dtype=np.int64)
        return self.start.astype("datetime64[us]") + index.astype("timedelta64[m]").astype("timedelta64[us]")

    def day_bounds(self, day: int) -> tuple[dt.datetime, dt.datetime]:
        first = self.timestamps(day * 1440, 1440)
        return first[0].astype(dt.datetime), first[-1].astype(dt.datetime)
