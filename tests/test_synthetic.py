"""Synthetic data looks like real NSE data: its calendar, its session, its option prices."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from regime_io import synthetic

JANUARY_2024_HOLIDAYS = [dt.date(2024, 1, 22), dt.date(2024, 1, 26)]


@pytest.fixture(scope="module")
def chain() -> pl.DataFrame:
    return synthetic.options_chain("NIFTY", days=22)


def test_bars_follow_the_nse_calendar() -> None:
    bars = synthetic.market_bars(["NIFTY"], days=22)
    days = bars["timestamp"].dt.date().unique().sort().to_list()
    assert len(days) == 22
    assert not set(JANUARY_2024_HOLIDAYS) & set(days)
    assert all(d.weekday() < 5 for d in days)
    # Every other weekday of January 2024 trades, and the 22nd session is 1 February.
    january = [dt.date(2024, 1, d) for d in range(1, 32)]
    assert days[:21] == [d for d in january if d.weekday() < 5 and d not in JANUARY_2024_HOLIDAYS]
    assert days[-1] == dt.date(2024, 2, 1)
    regimes = synthetic.minute_regimes(["NIFTY"], days=22)
    assert regimes["timestamp"].to_list() == bars["timestamp"].to_list()


def test_each_session_is_0915_to_1529_every_minute() -> None:
    bars = synthetic.market_bars(["INFY"], days=3)
    per_day = bars.group_by(pl.col("timestamp").dt.date()).agg(
        pl.len(), pl.col("timestamp").min().alias("first"), pl.col("timestamp").max().alias("last"))
    assert per_day["len"].to_list() == [375] * 3
    assert {t.time() for t in per_day["first"]} == {dt.time(9, 15)}
    assert {t.time() for t in per_day["last"]} == {dt.time(15, 29)}


def test_holidays_of_other_years_and_expiries() -> None:
    assert not synthetic.is_session(dt.date(2024, 3, 29))  # Good Friday
    assert not synthetic.is_session(dt.date(2024, 1, 27))  # Saturday
    assert synthetic.is_session(dt.date(2024, 1, 25))
    # Thursday 11 April 2024 (Id-ul-Fitr) is a holiday: that week's expiry is Wednesday.
    assert synthetic.weekly_expiry(dt.date(2024, 4, 8)) == dt.date(2024, 4, 10)
    assert synthetic.weekly_expiry(dt.date(2024, 4, 11)) == dt.date(2024, 4, 18)
    days = synthetic.session_days(60, start=dt.date(2024, 3, 1))
    assert not set(days) & synthetic.NSE_HOLIDAYS


def test_black_scholes_matches_a_textbook_value_and_put_call_parity() -> None:
    # Hull, Options, Futures and Other Derivatives: S=42, K=40, r=10%, sigma=20%, T=0.5.
    call = synthetic.black_scholes(42.0, 40.0, 0.5, 0.2, True, rate=0.1)
    put = synthetic.black_scholes(42.0, 40.0, 0.5, 0.2, False, rate=0.1)
    assert float(call.price) == pytest.approx(4.76, abs=0.005)
    assert float(put.price) == pytest.approx(0.81, abs=0.005)
    assert float(call.price - put.price) == pytest.approx(42 - 40 * np.exp(-0.05), abs=1e-9)
    assert float(call.delta - put.delta) == pytest.approx(1.0)


def test_option_prices_are_consistent_with_the_stored_iv(chain: pl.DataFrame) -> None:
    """Re-deriving the IV from each stored close gives the stored IV back."""
    # Where a volatility point moves the price by less than a rupee (a few ticks from
    # expiry, deep in or out of the money) the 0.05 tick hides the IV: those rows are
    # checked by price below, not by IV.
    priced = chain.filter(pl.col("vega") >= 1)
    assert priced.height > 0.8 * chain.height
    close_time = (pl.col("expiry_date").cast(pl.Datetime("us")) + pl.duration(hours=15, minutes=30))
    years = priced.select(((close_time - pl.col("timestamp")).dt.total_seconds() / (365 * 86400))
                          .alias("t"))["t"].to_numpy()
    spot = priced.join(synthetic.market_bars(["NIFTY"], days=22).select("timestamp", spot="close"),
                       on="timestamp", how="left")["spot"].to_numpy()
    call = (priced["option_type"] == "CE").to_numpy()
    strike = priced["strike_price"].to_numpy()
    iv = synthetic.implied_volatility(priced["close"].to_numpy(), spot, strike, years, call)
    assert np.abs(iv - priced["implied_volatility"].to_numpy()).max() < 0.005
    assert np.abs(iv - priced["implied_volatility"].to_numpy()).mean() < 0.0002


def test_prices_and_greeks_are_black_scholes_at_the_stored_iv(chain: pl.DataFrame) -> None:
    close_time = (pl.col("expiry_date").cast(pl.Datetime("us")) + pl.duration(hours=15, minutes=30))
    rows = chain.join(synthetic.market_bars(["NIFTY"], days=22).select("timestamp", spot="close"),
                      on="timestamp", how="left").with_columns(
        ((close_time - pl.col("timestamp")).dt.total_seconds() / (365 * 86400)).alias("years"))
    call = (rows["option_type"] == "CE").to_numpy()
    model = synthetic.black_scholes(rows["spot"].to_numpy(), rows["strike_price"].to_numpy(),
                                    rows["years"].to_numpy(), rows["implied_volatility"].to_numpy(), call)
    # The close is the model price rounded to the 0.05 tick (0.05 at least).
    assert np.abs(np.maximum(model.price, 0.05) - rows["close"].to_numpy()).max() <= 0.025 + 1e-9
    assert np.abs(model.delta - rows["delta"].to_numpy()).max() <= 5e-5 + 1e-12
    assert np.abs(model.gamma - rows["gamma"].to_numpy()).max() <= 5e-5 + 1e-12  # stored with 4 decimals
    assert np.abs(model.vega - rows["vega"].to_numpy()).max() <= 5e-5 + 1e-12
    calls = rows.filter(pl.col("option_type") == "CE")
    assert calls["delta"].is_between(0, 1).all() and (rows["gamma"] >= 0).all() and (rows["vega"] >= 0).all()


def test_the_chain_is_centred_on_spot_with_sane_bars(chain: pl.DataFrame) -> None:
    spot = synthetic.market_bars(["NIFTY"], days=22).select("timestamp", spot="close")
    centre = (chain.group_by("timestamp").agg(pl.col("strike_price").mean().alias("centre"))
              .join(spot, on="timestamp"))
    # 10 strikes 50 apart around the ATM strike: the mean is ATM - 25, within 50 of spot.
    assert ((centre["centre"] + 25 - centre["spot"]).abs() <= 25 + 1e-9).all()
    assert (chain["low"] <= chain["close"]).all() and (chain["close"] <= chain["high"]).all()
    assert (chain["low"] <= chain["open"]).all() and (chain["open"] <= chain["high"]).all()
    assert (chain["expiry_date"].cast(pl.Datetime("us")) >= chain["timestamp"].dt.truncate("1d")).all()
    assert chain.select(pl.col("expiry_date").n_unique()).item() >= 4
    assert chain.filter(pl.col("expiry_date").is_in(JANUARY_2024_HOLIDAYS)).height == 0


def test_the_holiday_list_agrees_with_an_exchange_calendar() -> None:
    """The built-in 2024-25 list against pandas-market-calendars' XNSE (a test dependency).
    The only differences are the Diwali days, when NSE trades a one-hour evening muhurat
    session and no regular 09:15-15:30 session: synthetic data has no session then."""
    pmc = pytest.importorskip("pandas_market_calendars")
    sessions = {d.date() for d in pmc.get_calendar("XNSE").valid_days("2024-01-01", "2025-12-31")}
    ours = {d for d in (dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(731)) if synthetic.is_session(d)}
    assert sessions - ours == {dt.date(2024, 11, 1), dt.date(2025, 10, 21)}
    assert ours - sessions == set()


@pytest.mark.parametrize("module", ["synthetic", "files", "demo", "server"])
def test_docstring_examples_run(module: str) -> None:
    """The examples in these modules' docstrings are true (the ones that need a server are
    marked +SKIP and run elsewhere: the CLI and README tests)."""
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"regime_io.{module}"), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
