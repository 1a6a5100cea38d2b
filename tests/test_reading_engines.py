"""Which path a range read takes: small ranges bind their values on the warm ADBC
connection, larger ones inline them there so that the driver streams the result through
COPY (issue 12 item 6: connectorx opened a new backend per read and spent more client CPU).

Both engines return the same frames (``tests/test_reading.py`` runs every range test on
each); here the choice itself is checked, through the readers' debug log lines.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest
from _reading_data import bars, insert

from regime_io import PostgreSQLIntegration
from regime_io._read import readers as reading

T0 = dt.datetime(2024, 1, 2, 9, 15)


def _engines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage().split(":", 1)[0] for r in caplog.records
            if r.name == "regime_io._conn.engines" and r.getMessage().startswith(("adbc:", "connectorx:"))]


@pytest.fixture
def stored(pg: PostgreSQLIntegration, sql: Any) -> None:
    insert(pg, sql, "market_data", bars(["NIFTY", "BANKNIFTY"], ["1m"], T0, 375))


def test_a_one_day_read_uses_the_warm_adbc_connection(pg: PostgreSQLIntegration, stored: None,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="regime_io._conn.engines"):
        frame = pg.get_market_data("NIFTY", T0.date(), T0.date())
    assert frame.height == 375
    assert _engines(caplog) == ["adbc"]


def test_a_long_range_streams_on_adbc_with_inlined_values(pg: PostgreSQLIntegration, stored: None,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    # 2 symbols x 10 days of minutes is above SMALL_RANGE_ROWS, whatever is stored.
    days = reading.SMALL_RANGE_ROWS // (2 * 1440) + 1
    with caplog.at_level(logging.DEBUG, logger="regime_io._conn.engines"):
        frame = pg.get_market_data(["NIFTY", "BANKNIFTY"], T0.date(), T0.date() + dt.timedelta(days=days))
    assert frame.height == 750
    assert _engines(caplog)[-1] == "adbc"
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("adbc:")][-1]
    assert "$1" not in logged and logged.endswith("[]") and "'NIFTY'" in logged  # no bound parameters
