"""Realistic synthetic trading history with a fixed seed, for the demo, notebooks, tests and benchmarks.

Prices follow a regime-switching random walk (trending up, trending down, sideways,
high volatility), so regime statistics and regime-filtered strategies have something
real to find. Sessions are Indian-market days: 09:15-15:29, 375 one-minute bars, weekdays.

Example:
    >>> from regime_io import synthetic
    >>> bars = synthetic.market_bars(["NIFTY"], days=1, seed=1)
    >>> bars.height, bars.columns[:3]
    (375, ['symbol', 'timestamp', 'open'])
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import polars as pl

__all__ = ["REGIMES", "market_bars", "minute_regimes", "optimization_results", "options_chain", "regimes"]

# Regime name -> (drift per minute, volatility per minute), in relative terms.
REGIMES: dict[str, tuple[float, float]] = {
    "Strong_Bullish": (0.00012, 0.0006),
    "Bearish": (-0.00010, 0.0007),
    "Sideways": (0.0, 0.0003),
    "High_Volatility": (0.0, 0.0015),
}
_NAMES = list(REGIMES)
SESSION_START = dt.time(9, 15)
MINUTES_PER_DAY = 375
_BASE_PRICE = {"NIFTY": 21500.0, "BANKNIFTY": 47000.0, "FINNIFTY": 21000.0, "RELIANCE": 2600.0,
               "TCS": 3800.0, "INFY": 1550.0, "HDFCBANK": 1650.0, "SBIN": 620.0}


def session_minutes(days: int, *, start: dt.date = dt.date(2024, 1, 1)) -> np.ndarray:
    """Timestamps (datetime64[us]) of every 1-minute bar of ``days`` weekdays from ``start``."""
    out: list[dt.date] = []
    day = start
    while len(out) < days:
        if day.weekday() < 5:
            out.append(day)
        day += dt.timedelta(days=1)
    base = np.array([np.datetime64(dt.datetime.combine(d, SESSION_START), "us") for d in out])
    minutes = np.arange(MINUTES_PER_DAY).astype("timedelta64[m]").astype("timedelta64[us]")
    return (base[:, None] + minutes[None, :]).ravel()


def _regime_path(n: int, rng: np.random.Generator, mean_run: int = 45) -> np.ndarray:
    """Regime index per minute: runs of geometric length, like real regime persistence."""
    path = np.empty(n, dtype=np.int64)
    i = 0
    current = int(rng.integers(len(_NAMES)))
    while i < n:
        run = int(rng.geometric(1.0 / mean_run))
        path[i:i + run] = current
        i += run
        current = int((current + rng.integers(1, len(_NAMES))) % len(_NAMES))
    return path


def _symbol_path(symbol: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    regime = _regime_path(n, rng)
    drift = np.array([REGIMES[_NAMES[r]][0] for r in range(len(_NAMES))])[regime]
    vol = np.array([REGIMES[_NAMES[r]][1] for r in range(len(_NAMES))])[regime]
    returns = drift + vol * rng.standard_normal(n)
    close = _BASE_PRICE.get(symbol, 1000.0) * np.exp(np.cumsum(returns))
    return close, regime


def market_bars(symbols: Sequence[str], *, days: int = 20, seed: int = 7,
                start: dt.date = dt.date(2024, 1, 1)) -> pl.DataFrame:
    """One-minute OHLCV bars (``market_data`` columns) for each symbol."""
    frames = []
    ts = session_minutes(days, start=start)
    for k, symbol in enumerate(symbols):
        rng = np.random.default_rng(seed + 1000 * k)
        close, _ = _symbol_path(symbol, len(ts), rng)
        open_ = np.concatenate([[close[0]], close[:-1]])
        spread = np.abs(rng.standard_normal(len(ts))) * close * 0.0004
        frames.append(pl.DataFrame({
            "symbol": symbol,
            "timestamp": ts,
            "open": np.round(open_, 2),
            "high": np.round(np.maximum(open_, close) + spread, 2),
            "low": np.round(np.minimum(open_, close) - spread, 2),
            "close": np.round(close, 2),
            "volume": rng.integers(1_000, 50_000, len(ts)),
            "timeframe": "1m",
        }))
    return pl.concat(frames)


def minute_regimes(symbols: Sequence[str], *, days: int = 20, seed: int = 7,
                   start: dt.date = dt.date(2024, 1, 1)) -> pl.DataFrame:
    """1-minute regimes (``market_regimes_1min`` columns), consistent with :func:`market_bars`
    for the same seed (the regime that generated each bar)."""
    frames = []
    ts = session_minutes(days, start=start)
    for k, symbol in enumerate(symbols):
        rng = np.random.default_rng(seed + 1000 * k)
        _, regime = _symbol_path(symbol, len(ts), rng)
        extra = np.random.default_rng(seed + 1000 * k + 1)
        n = len(ts)
        direction = np.array([REGIMES[_NAMES[r]][0] for r in range(len(_NAMES))])[regime] * 5000
        frames.append(pl.DataFrame({
            "symbol": symbol,
            "timestamp": ts,
            "regime": np.array(_NAMES)[regime],
            "confidence": np.round(extra.uniform(55, 99, n), 2),
            "directional_component": np.round(direction + extra.normal(0, 0.1, n), 4),
            "volatility_component": np.round(extra.uniform(0, 1, n), 4),
            "directional_confidence": np.round(extra.uniform(40, 99, n), 2),
            "volatility_confidence": np.round(extra.uniform(40, 99, n), 2),
            "greek_sentiment": np.where(direction >= 0, "positive", "negative"),
            "trending_oi_pa": extra.choice(["long_build_up", "short_build_up", "long_unwinding", "short_covering"], n),
            "ema_signal": np.round(extra.normal(0, 1, n), 4),
            "vwap_signal": np.round(extra.normal(0, 1, n), 4),
        }))
    return pl.concat(frames)


def regimes(symbols: Sequence[str], *, days: int = 20, seed: int = 7, timeframe: str = "15m",
            start: dt.date = dt.date(2024, 1, 1)) -> pl.DataFrame:
    """Coarser regime classifications (``market_regimes`` columns) sampled every ``timeframe``."""
    step = int(timeframe.rstrip("m"))
    one = minute_regimes(symbols, days=days, seed=seed, start=start)
    picked = one.filter(pl.col("timestamp").dt.minute() % step == 0)
    rng = np.random.default_rng(seed)
    n = picked.height
    return picked.select(
        "symbol", "timestamp", pl.lit(timeframe).alias("timeframe"), "regime", "confidence",
        pl.Series("dte_value", np.round(rng.uniform(0, 30, n), 4)),
        pl.Series("atr_value", np.round(rng.uniform(5, 80, n), 4)),
        pl.Series("ema_value", np.round(rng.normal(0, 1, n), 4)),
        pl.Series("volume_value", np.round(rng.uniform(0, 1, n), 4)),
        pl.Series("vwap_value", np.round(rng.normal(0, 1, n), 4)),
        pl.Series("greek_sentiment", np.round(rng.normal(0, 1, n), 4)),
        pl.Series("iv_value", np.round(rng.uniform(0.08, 0.4, n), 4)),
        pl.Series("premium_value", np.round(rng.uniform(10, 400, n), 4)),
        pl.Series("oi_trend_value", np.round(rng.normal(0, 1, n), 4)),
    )


def options_chain(symbol: str = "NIFTY", *, days: int = 5, strikes: int = 10, step: float = 50.0,
                  every_minutes: int = 15, seed: int = 7, start: dt.date = dt.date(2024, 1, 1)) -> pl.DataFrame:
    """Option bars with greeks (``options_data`` columns) around the money, two weekly expiries."""
    bars = market_bars([symbol], days=days, seed=seed, start=start)
    bars = bars.filter(pl.col("timestamp").dt.minute() % every_minutes == 0)
    rng = np.random.default_rng(seed + 99)
    spot0 = float(bars["close"][0])
    atm = round(spot0 / step) * step
    strike_list = [atm + step * (i - strikes // 2) for i in range(strikes)]
    first_day = bars["timestamp"][0].date()
    thursday = first_day + dt.timedelta(days=(3 - first_day.weekday()) % 7 + 7)
    expiries = [thursday, thursday + dt.timedelta(days=7)]
    rows = []
    ts = bars["timestamp"].to_numpy()
    spot = bars["close"].to_numpy()
    for expiry in expiries:
        dte = np.maximum((np.datetime64(expiry, "us") - ts) / np.timedelta64(1, "D"), 0.1)
        for strike in strike_list:
            for kind in ("CE", "PE"):
                moneyness = (spot - strike) / spot * (1 if kind == "CE" else -1)
                iv = 0.12 + 0.3 * np.abs(moneyness) + rng.normal(0, 0.005, len(ts))
                time_value = spot * iv * np.sqrt(dte / 365) * 0.4
                price = np.maximum(moneyness * spot, 0) + time_value
                delta = 1 / (1 + np.exp(-moneyness * 40)) * (1 if kind == "CE" else -1)
                noise = np.abs(rng.normal(0, 0.01, len(ts))) * price
                rows.append(pl.DataFrame({
                    "symbol": symbol, "expiry_date": expiry, "strike_price": strike, "option_type": kind,
                    "timestamp": ts,
                    "open": np.round(price, 2), "high": np.round(price + noise, 2),
                    "low": np.round(np.maximum(price - noise, 0.05), 2), "close": np.round(price, 2),
                    "volume": rng.integers(0, 100_000, len(ts)),
                    "open_interest": rng.integers(1_000, 5_000_000, len(ts)),
                    "implied_volatility": np.round(iv, 4), "delta": np.round(delta, 4),
                    "gamma": np.round(np.abs(rng.normal(0.001, 0.0005, len(ts))), 4),
                    "theta": np.round(-time_value / dte / 10, 4),
                    "vega": np.round(spot * np.sqrt(dte / 365) * 0.004, 4),
                }))
    return pl.concat(rows)


def optimization_results(symbols: Sequence[str], *, runs: int = 5, seed: int = 7) -> list[dict[str, object]]:
    """Optimisation results as the pipeline hands them over: one dict per run."""
    rng = np.random.default_rng(seed)
    out: list[dict[str, object]] = []
    for symbol in symbols:
        for run in range(runs):
            algorithm = ["genetic", "bayesian", "grid_search"][run % 3]
            out.append({
                "symbol": symbol, "algorithm": algorithm,
                "parameters": {"ema_fast": int(rng.integers(5, 15)), "ema_slow": int(rng.integers(20, 60)),
                               "atr_period": int(rng.integers(7, 21)),
                               "regime_filter": ["Strong_Bullish", "Sideways"][run % 2]},
                "fitness_value": round(float(rng.uniform(0.2, 2.5)), 4),
                "start_date": dt.datetime(2024, 1, 1), "end_date": dt.datetime(2024, 1, 31),
                "timeframe": "1m",
            })
    return out
