"""``[DATABASE] enabled = false``: every public method behaves as documented without a
server (one mechanism: ``regime_io/_facade/base.when_disabled``). The settings point at a
port where nothing listens, so any attempt to connect would fail the test."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import polars as pl
import pytest

from regime_io import PostgreSQLIntegration
from regime_io._read.decode import empty_frame
from regime_io.config import load_settings
from regime_io.tables import TABLES

T0 = dt.datetime(2024, 1, 2, 9, 15)
BARS = pl.DataFrame({"symbol": ["NIFTY"], "timeframe": ["1m"], "timestamp": [T0], "open": [1.0], "high": [1.0],
                     "low": [1.0], "close": [1.0], "volume": [1]})
REGIMES = pl.DataFrame({"symbol": ["NIFTY"], "timestamp": [T0], "regime": ["UP"], "confidence": [0.5]})


@pytest.fixture
def off() -> PostgreSQLIntegration[pl.DataFrame]:
    settings = load_settings(config={"database": {"enabled": "false", "host": "127.0.0.1", "port": "1"},
                                     "connection": {"retry_attempts": "1", "connection_timeout": "1"}}, env={})
    return PostgreSQLIntegration(settings=settings)


def _empty(table: str) -> Callable[[Any], None]:
    def check(frame: Any) -> None:
        assert isinstance(frame, pl.DataFrame) and frame.height == 0
        assert frame.schema == empty_frame(table).schema
    return check


def _nothing_written(result: Any) -> None:
    assert (result.rows, result.inserted, result.method) == (0, 0, "disabled")


def _tail(tail: Any) -> None:
    with tail as batches:  # a context manager and an iterator, like a live tail
        assert list(batches) == []
    assert isinstance(tail.cursor, str)


def _report(kind: str) -> Callable[[Any], None]:
    def check(report: Any) -> None:
        assert report.action == kind and len(report) == 0
    return check


CALLS: dict[str, tuple[Callable[[PostgreSQLIntegration[Any]], Any], Callable[[Any], None]]] = {
    "initialize_database": (lambda pg: pg.initialize_database(), lambda r: r == 0 or pytest.fail(str(r))),
    "save": (lambda pg: pg.save("bars", BARS), _nothing_written),
    "save_market_data": (lambda pg: pg.save_market_data(BARS), _nothing_written),
    "save_options_data": (lambda pg: pg.save_options_data(BARS), _nothing_written),
    "save_market_regime": (lambda pg: pg.save_market_regime(REGIMES), _nothing_written),
    "save_1min_market_regime": (lambda pg: pg.save_1min_market_regime(REGIMES), _nothing_written),
    "save_optimization_result": (lambda pg: pg.save_optimization_result(REGIMES), _nothing_written),
    "save_rolling_market_regime": (lambda pg: pg.save_rolling_market_regime(REGIMES), _nothing_written),
    "get_market_data": (lambda pg: pg.get_market_data("NIFTY", "2024-01-01", "2024-01-02"), _empty("market_data")),
    "get_options_data": (lambda pg: pg.get_options_data("NIFTY"), _empty("options_data")),
    "get_market_regimes": (lambda pg: pg.get_market_regimes("NIFTY"), _empty("market_regimes")),
    "get_1min_market_regimes": (lambda pg: pg.get_1min_market_regimes("NIFTY"), _empty("market_regimes_1min")),
    "get_optimization_results": (lambda pg: pg.get_optimization_results("NIFTY"), _empty("optimization_results")),
    "get_latest": (lambda pg: pg.get_latest("bars", "NIFTY"), _empty("market_data")),
    "get_latest_1min_market_regime": (lambda pg: pg.get_latest_1min_market_regime("NIFTY"),
                                      _empty("market_regimes_1min")),
    "get_option_chain": (lambda pg: pg.get_option_chain("NIFTY", "2024-01-02"), _empty("options_data")),
    "get_market_regime_distribution": (lambda pg: pg.get_market_regime_distribution("NIFTY"),
                                       lambda f: f.height == 0 or pytest.fail(str(f))),
    "get_regime_transitions": (lambda pg: pg.get_regime_transitions("NIFTY"),
                               lambda f: f.height == 0 or pytest.fail(str(f))),
    "asof_regimes": (lambda pg: pg.asof_regimes(pl.DataFrame({"symbol": ["NIFTY"], "timestamp": [T0]})),
                     lambda f: f["regime"].to_list() == [None] or pytest.fail(str(f))),
    "iter_market_data": (lambda pg: pg.iter_market_data("NIFTY"), lambda it: list(it) == [] or pytest.fail("rows")),
    "iter_options_data": (lambda pg: pg.iter_options_data("NIFTY"), lambda it: list(it) == [] or pytest.fail("rows")),
    "follow": (lambda pg: pg.follow("1min"), _tail),
    "tail": (lambda pg: pg.tail("bars", "NIFTY", 3), _empty("market_data")),
    "history": (lambda pg: pg.history("1min", "NIFTY"),
                lambda f: (f.height == 0 and f.columns[-2:] == ["known_from", "known_to"]) or pytest.fail(str(f))),
    "scan": (lambda pg: pg.scan("bars"),
             lambda lf: lf.collect().schema == empty_frame("market_data").schema or pytest.fail("schema")),
    "catalog": (lambda pg: pg.catalog(), lambda f: f.height == 0 or pytest.fail(str(f))),
    "refresh_catalog": (lambda pg: pg.refresh_catalog(), lambda r: r == {} or pytest.fail(str(r))),
    "quality_report": (lambda pg: pg.quality_report("bars", "NIFTY", "2024-01-01", "2024-01-02"),
                       lambda f: f.height == 0 or pytest.fail(str(f))),
    "cleanup_old_data": (lambda pg: pg.cleanup_old_data(30), lambda r: r.rows_removed == 0 or pytest.fail(str(r))),
    "list_partitions": (lambda pg: pg.list_partitions(),
                        lambda f: (f.height == 0 and "partition" in f.columns) or pytest.fail(str(f))),
    "seal": (lambda pg: pg.seal(), _report("seal")),
    "unseal": (lambda pg: pg.unseal("2024-01-01", "2024-02-01"), _report("unseal")),
    "repair_sealed": (lambda pg: pg.repair_sealed(), _report("repair")),
    "sql": (lambda pg: pg.sql("SELECT count(*) FROM bars"), lambda f: f.height == 0 or pytest.fail(str(f))),
    "delete_range": (lambda pg: pg.delete_range("bars", "NIFTY", "2024-01-01", "2024-01-02"),
                     lambda n: n == 0 or pytest.fail(str(n))),
    "close": (lambda pg: pg.close(), lambda r: r is None or pytest.fail(str(r))),
}


def test_every_public_method_has_a_disabled_case() -> None:
    public = {name for klass in PostgreSQLIntegration.__mro__ if klass.__module__.startswith("regime_io")
              for name, value in vars(klass).items() if callable(value) and not name.startswith("_")}
    assert public == set(CALLS), f"add the disabled behaviour of {sorted(public - set(CALLS))} to CALLS"


@pytest.mark.parametrize("method", sorted(CALLS))
def test_a_disabled_call_touches_no_server(off: PostgreSQLIntegration[Any], method: str,
                                          caplog: pytest.LogCaptureFixture) -> None:
    call, check = CALLS[method]
    with caplog.at_level(logging.WARNING, logger="regime_io"):
        check(call(off))
    assert off.db._pool is None and off.db._lookup_pool is None  # nothing connected
    if method != "close":
        assert "enabled = false" in caplog.text  # said once per instance


def test_the_warning_is_said_once_per_instance(off: PostgreSQLIntegration[Any],
                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="regime_io"):
        off.get_market_data("NIFTY")
        off.save_market_data(BARS)
    assert caplog.text.count("enabled = false") == 1


def test_misuse_is_still_refused(off: PostgreSQLIntegration[Any]) -> None:
    with pytest.raises(TypeError):
        off.get_market_data("NIFTY", nonsense=1)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="return_type"):
        off.get_market_data("NIFTY", return_type="excel")  # type: ignore[call-overload]
    assert set(TABLES) >= {"market_data"}
