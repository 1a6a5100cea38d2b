"""Documented defaults, checked where they act.

* ``rolling_window_minutes`` (``[RETENTION]``, docs/maintenance.md, docs/writing.md): the
  default window of ``save_rolling_market_regime()``; none by default (nothing trimmed),
  the argument wins over the setting.
* ``seal_after`` (``[DATABASE]``, docs/configuration.md): ``60 days`` by default, ages such
  as ``90d`` and ``8w``, ``off``; ``seal()`` with no cutoff seals the calendar
  months that ended more than ``seal_after`` before the server's clock, and nothing when off.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest

from regime_io import PostgreSQLIntegration
from regime_io.config import Settings, load_settings, settings_replace

T0 = dt.datetime(2024, 1, 2, 9, 15)


def _minutes(n: int, start: dt.datetime = T0) -> pl.DataFrame:
    return pl.DataFrame({"symbol": ["A"] * n, "timestamp": [start + dt.timedelta(minutes=i) for i in range(n)],
                         "regime": ["bull"] * n, "confidence": [50.0] * n})


def _stored_minutes(pg: PostgreSQLIntegration) -> list[int]:
    stamps = pg.get_1min_market_regimes("A")["timestamp"].to_list()
    return [int((t - T0).total_seconds() // 60) for t in stamps]


# -- rolling_window_minutes ----------------------------------------------------------------


def test_rolling_window_minutes_setting(pg: PostgreSQLIntegration) -> None:
    assert Settings().rolling_window_minutes is None
    assert load_settings(config={"retention": {"rolling_window_minutes": "10"}}, env={}).rolling_window_minutes == 10
    newest = _minutes(1, T0 + dt.timedelta(minutes=30))
    # Default (none): the rolling save upserts and trims nothing.
    pg.save_1min_market_regime(_minutes(30))
    assert pg.settings.rolling_window_minutes is None
    assert pg.save_rolling_market_regime(newest).trimmed == 0
    assert _stored_minutes(pg) == list(range(31))
    # The setting: rows older than the newest minus 10 minutes go, in the same call.
    windowed = settings_replace(pg.settings, rolling_window_minutes=10)
    with PostgreSQLIntegration(settings=windowed) as rolling:
        assert rolling.save_rolling_market_regime(newest).trimmed == 20
        assert _stored_minutes(pg) == list(range(20, 31))
        # The argument wins over the setting.
        assert rolling.save_rolling_market_regime(newest, window_minutes=5).trimmed == 5
        assert _stored_minutes(pg) == list(range(25, 31))


# -- seal_after and seal() without a cutoff -----------------------------------------


@pytest.mark.parametrize(("text", "age"), [
    ("60 days", dt.timedelta(days=60)), ("90d", dt.timedelta(days=90)), ("8w", dt.timedelta(weeks=8)),
    ("off", None), ("OFF", None),
])
def test_seal_after_values(text: str, age: dt.timedelta | None) -> None:
    assert load_settings(config={"database": {"seal_after": text}}, env={}).seal_after == age


def test_seal_after_default_is_60_days() -> None:
    assert Settings().seal_after == dt.timedelta(days=60)
    assert load_settings(config={}, env={}).seal_after == dt.timedelta(days=60)


def _month(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _next_month(first: dt.date) -> dt.date:
    return (first + dt.timedelta(days=32)).replace(day=1)


def _sealable(months: list[dt.date], now: dt.datetime, age: dt.timedelta) -> list[dt.date]:
    """Months that ended (their next month began) at or before the start of the cutoff's month."""
    limit = _month((now - age).date())
    return [m for m in months if _next_month(m) <= limit]


def test_seal_history_without_a_cutoff_uses_seal_after(pg: PostgreSQLIntegration, sql: Any) -> None:
    (now,) = sql("SELECT LOCALTIMESTAMP")[0]  # the server's clock, as seal reads it
    months = []
    first = _month(now.date())
    for _ in range(7):  # this month and the six before it
        months.insert(0, first)
        first = _month(first - dt.timedelta(days=1))
    pg.save_market_data(pl.DataFrame({
        "symbol": ["A"] * len(months), "timestamp": [dt.datetime.combine(m, dt.time(10)) for m in months],
        "open": [1.0] * len(months), "high": [2.0] * len(months), "low": [0.5] * len(months),
        "close": [1.5] * len(months), "volume": [1] * len(months), "timeframe": ["1m"] * len(months)}))

    def sealed_months(report: Any) -> list[dt.date]:
        return sorted(p.period for p in report if p.table == "market_data")

    off = settings_replace(pg.settings, seal_after=load_settings(config={"database": {"seal_after": "off"}},
                                                                env={}).seal_after)
    with PostgreSQLIntegration(settings=off) as never:
        report = never.seal()
        assert len(report) == 0 and report.rows_moved == 0  # off: nothing, unless given an age
    by_age = pg.seal("90d")  # an explicit age wins over the setting
    assert sealed_months(by_age) == _sealable(months, now, dt.timedelta(days=90))
    assert pg.settings.seal_after == dt.timedelta(days=60)
    default = pg.seal()  # no cutoff: seal_after, 60 days
    expected = [m for m in _sealable(months, now, dt.timedelta(days=60)) if m not in sealed_months(by_age)]
    assert sealed_months(default) == expected and expected  # at least the month ended 60+ days ago
    # The current and the previous month stay rows (as the configuration page says).
    assert _month(now.date()) not in expected and months[-2] not in expected
    eight_weeks = settings_replace(pg.settings, seal_after=load_settings(
        config={"database": {"seal_after": "8w"}}, env={}).seal_after)
    with PostgreSQLIntegration(settings=eight_weeks) as weekly:
        done = sealed_months(by_age) + sealed_months(default)
        later = [m for m in _sealable(months, now, dt.timedelta(weeks=8)) if m not in done]
        assert sealed_months(weekly.seal()) == later
    assert sql(f'SELECT count(*) FROM "{pg.settings.schema}"."mr_market_data"') == [
        (len(months) - len(sealed_months(by_age)) - len(expected) - len(later),)]
