"""Property test: every reader returns the same frame whether the data is rows, chunks or both.

Random data (nulls included, options too), random seal boundaries and symbol subsets; the
unsealed answers are the reference, compared with ``assert_frame_equal`` (rows, order,
dtypes, float and exact decimal values, nulls).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration
from regime_io._sql.names import catalog_table
from tests._reading_data import bars, options, regimes, regimes_1min

START = dt.datetime(2024, 1, 29, 9, 15)


def _write(pg: PostgreSQLIntegration, sql: Any, seed: int, n: int) -> None:
    for key in ("market_data", "options_data", "market_regimes", "market_regimes_1min"):
        sql(f"TRUNCATE {pg.db.table(key)}")
        sql(f'TRUNCATE {pg.db.table(key)[:-1]}_chunks"')
    sql(f"TRUNCATE {catalog_table(pg.settings)}")  # the series catalog the writers keep
    step = dt.timedelta(hours=7)  # n rows span several months
    pg.save_market_data(bars(["NIFTY", "BANKNIFTY", "M&M"], ["1m", "5m"], START, n, step=step, seed=seed))
    pg.save_options_data(options("NIFTY", [dt.date(2024, 2, 29), dt.date(2024, 4, 25)], [21500.0, 21600.0],
                                 START, n // 4 + 1, step=step * 3, seed=seed))
    pg.save_market_regime(regimes(["NIFTY", "BANKNIFTY"], ["5m", "15m"], START, n, step=step, seed=seed))
    pg.save_1min_market_regime(regimes_1min(["NIFTY", "BANKNIFTY"], START, n, step=step, seed=seed))


def _answers(pg: PostgreSQLIntegration, lo: dt.datetime, hi: dt.datetime) -> dict[str, Any]:
    both = ["NIFTY", "BANKNIFTY", "M&M"]
    out: dict[str, Any] = {
        "bars": pg.get_market_data(both, lo, hi),
        "bars_exact": pg.get_market_data(both, lo, hi, exact=True),
        "bars_cols": pg.get_market_data(both, lo, hi, timeframe="5m", columns=["close", "timestamp"]),
        "bars_one": pg.get_market_data("NIFTY", lo, hi, timeframe="1m"),
        "bars_stream": _stream(pg.iter_market_data(both, lo, hi, batch_rows=7, return_type="arrow"),
                               pg.get_market_data(both, lo, hi).clear()),
        "resample": pg.get_market_data(both, lo, hi, resample="1d"),
        "resample_exact": pg.get_market_data("NIFTY", lo, hi, resample="6h", exact=True),
        "options": pg.get_options_data("NIFTY", lo, hi, exact=True),
        "options_float": pg.get_options_data("NIFTY", lo, hi, strikes=[21600], option_type="PE"),
        "options_stream": _stream(pg.iter_options_data("NIFTY", lo, hi, batch_rows=50, return_type="arrow"),
                                  pg.get_options_data("NIFTY", lo, hi).clear()),
        "chain": pg.get_option_chain("NIFTY", hi, exact=True),
        "regimes": pg.get_market_regimes("NIFTY", lo, hi, exact=True),
        "regimes_1min": pg.get_1min_market_regimes("BANKNIFTY", lo, hi),
        "latest": pg.get_latest("market_data"),
        "latest_1min": pg.get_latest("market_regimes_1min", symbols=["NIFTY", "BANKNIFTY"], exact=True),
        "distribution": pg.get_market_regime_distribution("NIFTY", lo, hi),
        "transitions": pg.get_regime_transitions("NIFTY", lo, hi, table="regimes", timeframe="5m"),
        "asof": pg.asof_regimes(pg.get_market_data("NIFTY", lo, hi, timeframe="1m")),
    }
    return out


def _stream(batches: Any, empty: pl.DataFrame) -> pl.DataFrame:
    frames = []
    for batch in batches:
        assert batch.num_rows > 0
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        frames.append(frame)
    return pl.concat(frames) if frames else empty


def _same(want: dict[str, Any], got: dict[str, Any]) -> None:
    for name, expected in want.items():
        try:
            assert_frame_equal(got[name], expected, check_exact=True)
        except AssertionError as err:
            raise AssertionError(f"{name}: {err}") from None


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.generate])
@given(seed=st.integers(0, 10_000), n=st.integers(20, 400), seal_month=st.integers(1, 8),
       symbols=st.sampled_from([None, ["NIFTY"], ["BANKNIFTY", "M&M"]]),
       window=st.tuples(st.integers(0, 200), st.integers(0, 200)))
@example(seed=0, n=20, seal_month=2, symbols=None, window=(0, 0))
@example(seed=1, n=300, seal_month=8, symbols=["BANKNIFTY", "M&M"], window=(0, 200))
@pytest.mark.slow
def test_every_reader_answers_the_same_over_rows_chunks_or_both(pg: PostgreSQLIntegration, sql, seed: int, n: int,
                                                                seal_month: int, symbols: list[str] | None,
                                                                window: tuple[int, int]) -> None:
    _write(pg, sql, seed, n)
    lo = START + dt.timedelta(days=min(window))
    hi = START + dt.timedelta(days=max(window), hours=5)
    want = _answers(pg, lo, hi)
    report = pg.seal(dt.date(2024, seal_month, 1) if seal_month < 8 else dt.date(2030, 1, 1), symbols=symbols)
    if seal_month > 2:
        assert report.rows_moved > 0
    _same(want, _answers(pg, lo, hi))
    # Back to rows: the same again, and nothing left in chunks.
    pg.unseal("2020-01-01", "2030-12-31")
    _same(want, _answers(pg, lo, hi))
