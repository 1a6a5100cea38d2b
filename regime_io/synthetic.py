"""Realistic synthetic trading history with a fixed seed, for the demo, notebooks, tests and benchmarks.

Prices follow a regime-switching random walk (trending up, trending down, sideways,
high volatility), so regime statistics and regime-filtered strategies have something
real to find. Sessions follow the NSE calendar: 09:15-15:29, 375 one-minute bars, on
weekdays that are not NSE trading holidays (:data:`NSE_HOLIDAYS`, the exchange's
published lists for 2024 and 2025; other years skip weekends only). Option chains are
centred on spot and priced with Black-Scholes from the implied volatility they store,
with greeks from the same model (:func:`black_scholes`).

Example:
    >>> from regime_io import synthetic
    >>> bars = synthetic.market_bars(["NIFTY"], days=1, seed=1)
    >>> bars.height, bars.columns[:3]
    (375, ['symbol', 'timestamp', 'open'])
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

__all__ = ["NSE_HOLIDAYS", "REGIMES", "Greeks", "black_scholes", "implied_volatility", "is_session", "market_bars",
           "minute_regimes", "optimization_results", "options_chain", "regimes", "session_days",
           "session_minutes", "weekly_expiry"]

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


# NSE trading holidays (equity and equity derivatives segments), from the exchange's
# circulars for 2024 and 2025. Weekends are closed anyway and are not listed.
NSE_HOLIDAYS: frozenset[dt.date] = frozenset(dt.date.fromisoformat(d) for d in (
    # 2024
    "2024-01-22",  # special holiday (Ram Lalla Pran Pratishtha)
    "2024-01-26",  # Republic Day
    "2024-03-08",  # Mahashivratri
    "2024-03-25",  # Holi
    "2024-03-29",  # Good Friday
    "2024-04-11",  # Id-ul-Fitr
    "2024-04-17",  # Ram Navami
    "2024-05-01",  # Maharashtra Day
    "2024-05-20",  # general election in Mumbai
    "2024-06-17",  # Bakri Id
    "2024-07-17",  # Moharram
    "2024-08-15",  # Independence Day
    "2024-10-02",  # Mahatma Gandhi Jayanti
    "2024-11-01",  # Diwali Laxmi Pujan (only the evening muhurat session trades)
    "2024-11-15",  # Gurunanak Jayanti
    "2024-11-20",  # Maharashtra assembly election
    "2024-12-25",  # Christmas
    # 2025
    "2025-02-26",  # Mahashivratri
    "2025-03-14",  # Holi
    "2025-03-31",  # Id-ul-Fitr
    "2025-04-10",  # Shri Mahavir Jayanti
    "2025-04-14",  # Dr. Baba Saheb Ambedkar Jayanti
    "2025-04-18",  # Good Friday
    "2025-05-01",  # Maharashtra Day
    "2025-08-15",  # Independence Day
    "2025-08-27",  # Ganesh Chaturthi
    "2025-10-02",  # Mahatma Gandhi Jayanti / Dussehra
    "2025-10-21",  # Diwali Laxmi Pujan
    "2025-10-22",  # Balipratipada
    "2025-11-05",  # Prakash Gurpurb Sri Guru Nanak Dev
    "2025-12-25",  # Christmas
))


def is_session(day: dt.date) -> bool:
    """True when NSE trades on ``day``: a weekday that is not in :data:`NSE_HOLIDAYS`.

    >>> is_session(dt.date(2024, 1, 26)), is_session(dt.date(2024, 1, 25))
    (False, True)
    """
    return day.weekday() < 5 and day not in NSE_HOLIDAYS


def session_days(days: int, *, start: dt.date = dt.date(2024, 1, 1)) -> list[dt.date]:
    """The first ``days`` NSE sessions on or after ``start``.

    >>> [d.day for d in session_days(18)][-3:]   # 22 and 26 January 2024 are holidays
    [23, 24, 25]
    """
    out: list[dt.date] = []
    day = start
    while len(out) < days:
        if is_session(day):
            out.append(day)
        day += dt.timedelta(days=1)
    return out


def session_minutes(days: int, *, start: dt.date = dt.date(2024, 1, 1)) -> np.ndarray:
    """Timestamps (datetime64[us]) of every 1-minute bar of the first ``days`` NSE sessions
    on or after ``start`` (09:15 to 15:29, exchange-local time, naive)."""
    base = np.array([np.datetime64(dt.datetime.combine(d, SESSION_START), "us")
                     for d in session_days(days, start=start)])
    minutes = np.arange(MINUTES_PER_DAY).astype("timedelta64[m]").astype("timedelta64[us]")
    return (base[:, None] + minutes[None, :]).ravel()


def weekly_expiry(day: dt.date) -> dt.date:
    """The weekly index-option expiry on or after ``day``: Thursday (NIFTY in 2024), or
    the session before it when that Thursday is a holiday.

    >>> weekly_expiry(dt.date(2024, 3, 26))   # Thursday 28 March trades
    datetime.date(2024, 3, 28)
    """
    thursday = day + dt.timedelta(days=(3 - day.weekday()) % 7)
    expiry = thursday
    while not is_session(expiry):
        expiry -= dt.timedelta(days=1)
    if expiry < day:  # this week's expiry moved before ``day``: next week's
        return weekly_expiry(thursday + dt.timedelta(days=1))
    return expiry


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


RISK_FREE_RATE = 0.07  # Indian risk-free rate (91-day T-bill, 2024), continuously compounded
_SQRT2 = math.sqrt(2.0)


def _erf(x: np.ndarray) -> np.ndarray:
    """erf, vectorised (numpy has none): Abramowitz and Stegun 7.1.26, absolute error below
    1.5e-7, i.e. under 0.01 rupee on an index option (a month of chain: 0.3 s, not 3 s)."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(np.asarray(x, dtype=np.float64) / _SQRT2))


def _norm_pdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * np.square(x)) / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class Greeks:
    """Black-Scholes price and greeks (arrays, one value per option).

    ``theta`` is per calendar day, ``vega`` per volatility point (1%), as NSE option
    chains show them.
    """

    price: np.ndarray
    delta: np.ndarray
    gamma: np.ndarray
    theta: np.ndarray
    vega: np.ndarray


def black_scholes(spot: np.ndarray | float, strike: np.ndarray | float, years: np.ndarray | float,
                  iv: np.ndarray | float, call: np.ndarray | bool, *, rate: float = RISK_FREE_RATE) -> Greeks:
    """European option price and greeks under Black-Scholes (no dividends).

    Parameters:
        spot, strike: underlying price and strike.
        years: time to expiry in years (> 0).
        iv: implied volatility as a fraction (0.14 for 14%).
        call: True for a call (CE), False for a put (PE).
        rate: risk-free rate, continuously compounded.

    >>> g = black_scholes(100.0, 100.0, 1.0, 0.2, True, rate=0.0)
    >>> round(float(g.price), 4), round(float(g.delta), 4)
    (7.9656, 0.5398)
    """
    s, k, t, v = (np.asarray(x, dtype=np.float64) for x in (spot, strike, years, iv))
    is_call = np.asarray(call, dtype=bool)
    root = np.sqrt(t)
    d1 = (np.log(s / k) + (rate + 0.5 * v * v) * t) / (v * root)
    d2 = d1 - v * root
    discount = np.exp(-rate * t)
    call_price = s * _norm_cdf(d1) - k * discount * _norm_cdf(d2)
    put_price = k * discount * _norm_cdf(-d2) - s * _norm_cdf(-d1)
    pdf = _norm_pdf(d1)
    call_theta = -s * pdf * v / (2 * root) - rate * k * discount * _norm_cdf(d2)
    put_theta = -s * pdf * v / (2 * root) + rate * k * discount * _norm_cdf(-d2)
    return Greeks(
        price=np.where(is_call, call_price, put_price),
        delta=np.where(is_call, _norm_cdf(d1), _norm_cdf(d1) - 1.0),
        gamma=pdf / (s * v * root),
        theta=np.where(is_call, call_theta, put_theta) / 365.0,
        vega=s * pdf * root / 100.0,
    )


def implied_volatility(price: np.ndarray | float, spot: np.ndarray | float, strike: np.ndarray | float,
                       years: np.ndarray | float, call: np.ndarray | bool, *, rate: float = RISK_FREE_RATE,
                       low: float = 0.001, high: float = 5.0, iterations: int = 60) -> np.ndarray:
    """The volatility at which :func:`black_scholes` gives ``price`` (bisection, vectorised).

    >>> round(float(implied_volatility(7.9656, 100.0, 100.0, 1.0, True, rate=0.0)), 4)
    0.2
    """
    target = np.asarray(price, dtype=np.float64)
    lo = np.full(np.broadcast(target, np.asarray(spot)).shape, low)
    hi = np.full_like(lo, high)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        too_high = black_scholes(spot, strike, years, mid, call, rate=rate).price > target
        hi = np.where(too_high, mid, hi)
        lo = np.where(too_high, lo, mid)
    return 0.5 * (lo + hi)


def options_chain(symbol: str = "NIFTY", *, days: int = 5, strikes: int = 10, step: float = 50.0,
                  every_minutes: int = 15, seed: int = 7, start: dt.date = dt.date(2024, 1, 1)) -> pl.DataFrame:
    """Option bars with greeks (``options_data`` columns): ``strikes`` strikes ``step`` apart
    centred on spot at each bar, calls and puts, for the current and the next weekly expiry.

    Implied volatility follows a smile (higher away from the money) with a little noise;
    ``close`` is the Black-Scholes price at the stored (rounded) ``implied_volatility``
    and the greeks come from the same model, so re-deriving the IV from ``close`` gives
    the stored IV back (up to the 0.05 tick and the 4-decimal storage).
    """
    bars = market_bars([symbol], days=days, seed=seed, start=start)
    bars = bars.filter(pl.col("timestamp").dt.minute() % every_minutes == 0)
    rng = np.random.default_rng(seed + 99)
    ts = bars["timestamp"].to_numpy()
    spot = bars["close"].to_numpy()
    n = len(ts)
    atm = np.round(spot / step) * step
    offsets = step * (np.arange(strikes) - strikes // 2)
    day = ts.astype("datetime64[D]")
    frames = []
    for which in (0, 1):  # the current weekly expiry and the next one
        expiry_of_day = {d: weekly_expiry(d.astype(dt.date)) for d in np.unique(day)}
        if which:
            expiry_of_day = {d: weekly_expiry(e + dt.timedelta(days=1)) for d, e in expiry_of_day.items()}
        expiry = np.array([expiry_of_day[d] for d in day], dtype="datetime64[D]")
        close_time = expiry.astype("datetime64[us]") + np.timedelta64(15 * 60 + 30, "m")
        years = np.maximum((close_time - ts) / np.timedelta64(1, "D"), 1 / 1440) / 365.0
        for offset in offsets:
            strike = atm + offset
            for kind in ("CE", "PE"):
                moneyness = np.log(strike / spot)
                iv = np.round(0.13 + 0.8 * moneyness ** 2 - 0.05 * moneyness + rng.normal(0, 0.004, n), 4)
                model = black_scholes(spot, strike, years, iv, kind == "CE")
                price = np.round(np.maximum(model.price, 0.05) * 20) / 20  # NSE tick: 0.05
                swing = np.round(np.abs(rng.normal(0, 0.01, n)) * price * 20) / 20
                frames.append(pl.DataFrame({
                    "symbol": symbol, "expiry_date": pl.Series(expiry).cast(pl.Date), "strike_price": strike,
                    "option_type": kind, "timestamp": ts,
                    "open": np.round(np.maximum(price + rng.normal(0, 0.004, n) * price, 0.05), 2),
                    "high": np.round(price + swing, 2), "low": np.round(np.maximum(price - swing, 0.05), 2),
                    "close": np.round(price, 2),
                    "volume": rng.integers(0, 100_000, n) * 50,  # NIFTY lot: 50
                    "open_interest": rng.integers(1_000, 100_000, n) * 50,
                    "implied_volatility": iv, "delta": np.round(model.delta, 4),
                    # 4 decimals: what the seed's NUMERIC(10,4) greek columns store, so saving
                    # the chain loses nothing (and raises no DataQualityWarning).
                    "gamma": np.round(model.gamma, 4), "theta": np.round(model.theta, 4),
                    "vega": np.round(model.vega, 4),
                }))
    return pl.concat(frames).with_columns(
        pl.max_horizontal("high", "open", "close").alias("high"), pl.min_horizontal("low", "open", "close")
        .alias("low")).sort("timestamp", "expiry_date", "strike_price", "option_type")


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
