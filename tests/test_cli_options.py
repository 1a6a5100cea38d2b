"""Each command-line option reaches the library: one test per option, against the real
test server.

Each test runs the command (``--dsn`` the test server, ``--schema`` a fresh schema) and
checks the effect the option has on the data, the file written or the output. Where the
command forwards the option to a ``PostgreSQLIntegration`` method, the method is also
wrapped (it still runs) to record the keyword arguments it received, so a test fails
both when the option is dropped and when it arrives under the wrong name.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner, Result

from regime_io import PostgreSQLIntegration, server
from regime_io.cli import app
from regime_io.config import Settings
from tests._reading_data import bars, regimes

Run = Callable[..., Result]
T0 = dt.datetime(2024, 1, 2, 9, 15)


@pytest.fixture(autouse=True)
def _no_user_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("REGIME_IO_") and not name.startswith("REGIME_IO_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def cli(server: Any, settings: Settings) -> Run:
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Result:
        result = runner.invoke(app, ["--dsn", server.url(), "--schema", settings.schema, *args])
        assert result.exit_code == code, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
        assert "Traceback" not in result.output
        return result

    return run


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], list[dict[str, Any]]]:
    """``received("save")``: wraps that method of PostgreSQLIntegration (it still runs) and
    returns the list of the keyword arguments of each call, filled as the commands run."""

    def record(name: str) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        real = getattr(PostgreSQLIntegration, name)

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(dict(kwargs))
            return real(self, *args, **kwargs)

        monkeypatch.setattr(PostgreSQLIntegration, name, wrapper)
        return seen

    return record


@pytest.fixture
def pg(settings: Settings) -> Any:
    with PostgreSQLIntegration(settings=settings) as integration:
        integration.initialize_database()
        yield integration


def _closes(pg: PostgreSQLIntegration) -> list[float]:
    return pg.get_market_data("NIFTY", T0.date(), T0.date())["close"].to_list()


# ---------------------------------------------------------------------------------------
# ingest


def test_ingest_on_conflict(cli: Run, pg: PostgreSQLIntegration, received: Any, tmp_path: Path) -> None:
    first = bars(["NIFTY"], ["1m"], T0, 10)
    first.write_parquet(tmp_path / "first.parquet")
    bars(["NIFTY"], ["1m"], T0, 10, seed=9).write_parquet(tmp_path / "second.parquet")
    calls = received("save")
    cli("ingest", str(tmp_path / "first.parquet"), "-t", "bars")
    refused = cli("ingest", str(tmp_path / "second.parquet"), "-t", "bars", "--on-conflict", "error", code=1)
    assert "a row with this natural key already exists" in refused.stderr
    assert "--on-conflict error refuses it; nothing was written" in " ".join(refused.stderr.split())
    kept = cli("ingest", str(tmp_path / "second.parquet"), "-t", "bars", "--on-conflict", "ignore")
    assert "0 inserted, 0 updated" in kept.output
    assert _closes(pg) == first["close"].to_list()  # ignored: the first values stay
    cli("ingest", str(tmp_path / "second.parquet"), "-t", "bars")  # default: update
    assert _closes(pg) == bars(["NIFTY"], ["1m"], T0, 10, seed=9)["close"].to_list()
    assert [c["on_conflict"] for c in calls] == ["update", "error", "ignore", "update"]


def test_ingest_on_duplicate(cli: Run, pg: PostgreSQLIntegration, received: Any, tmp_path: Path) -> None:
    rows = bars(["NIFTY"], ["1m"], T0, 3)
    twice = pl.concat([rows, rows.head(1).with_columns(pl.col("close") + 1, pl.col("high") + 1)])
    twice.write_parquet(tmp_path / "dup.parquet")
    calls = received("save")
    refused = cli("ingest", str(tmp_path / "dup.parquet"), "-t", "bars", code=1)
    assert "--on-duplicate keep_last" in refused.stderr  # the library's advice, as the option
    assert pg.get_market_data("NIFTY", T0.date(), T0.date()).height == 0
    cli("ingest", str(tmp_path / "dup.parquet"), "-t", "bars", "--on-duplicate", "keep_last")
    assert _closes(pg) == [rows["close"][0] + 1, *rows["close"].to_list()[1:]]  # the last of the duplicates
    assert [c["on_duplicate"] for c in calls] == ["error", "keep_last"]


def test_ingest_format(cli: Run, pg: PostgreSQLIntegration, tmp_path: Path) -> None:
    rows = bars(["NIFTY"], ["1m"], T0, 4)
    rows.write_csv(tmp_path / "bars.export")  # a CSV file with a suffix that says nothing
    unknown = cli("ingest", str(tmp_path / "bars.export"), "-t", "bars", code=1)
    assert "--format" in unknown.stderr
    assert pg.get_market_data("NIFTY", T0.date(), T0.date()).height == 0
    wrong = cli("ingest", str(tmp_path / "bars.export"), "-t", "bars", "--format", "parquet", code=1)
    assert wrong.stderr.startswith("error:")  # read as Parquet: it is not
    done = cli("ingest", str(tmp_path / "bars.export"), "-t", "bars", "--format", "csv")
    assert "4 rows, 4 inserted" in done.output
    assert _closes(pg) == rows["close"].to_list()


def test_ingest_strict(cli: Run, pg: PostgreSQLIntegration, received: Any, tmp_path: Path) -> None:
    rows = bars(["NIFTY"], ["1m"], T0, 5)
    bad = rows.with_columns(pl.when(pl.int_range(pl.len()) == 2).then(pl.col("high") + 100)
                            .otherwise(pl.col("low")).alias("low"))  # row 2: low > high
    bad.write_parquet(tmp_path / "bad.parquet")
    calls = received("save")
    refused = cli("ingest", str(tmp_path / "bad.parquet"), "-t", "bars", "--strict", code=1)
    assert "low" in refused.stderr and "high" in refused.stderr
    assert pg.get_market_data("NIFTY", T0.date(), T0.date()).height == 0
    warned = cli("ingest", str(tmp_path / "bad.parquet"), "-t", "bars")  # default: stored, with a warning
    assert "5 rows, 5 inserted" in warned.output
    assert pg.get_market_data("NIFTY", T0.date(), T0.date()).height == 5
    assert [c["strict"] for c in calls] == [True, False]


# ---------------------------------------------------------------------------------------
# export


def test_export_timeframe(cli: Run, pg: PostgreSQLIntegration, tmp_path: Path) -> None:
    both = bars(["NIFTY"], ["1m", "5m"], T0, 6)
    pg.save_market_data(both)
    cli("export", "-t", "bars", "-s", "NIFTY", "--start", "2024-01-02", "--end", "2024-01-02", "--timeframe", "5m",
        "-o", str(tmp_path / "five.parquet"))
    got = pl.read_parquet(tmp_path / "five.parquet")
    assert got["timeframe"].to_list() == ["5m"] * 6
    assert got["close"].to_list() == both.filter(pl.col("timeframe") == "5m")["close"].to_list()
    cli("export", "-t", "bars", "-s", "NIFTY", "--start", "2024-01-02", "--end", "2024-01-02",
        "-o", str(tmp_path / "all.parquet"))
    assert pl.read_parquet(tmp_path / "all.parquet").height == 12  # without it: both timeframes


def test_export_format(cli: Run, pg: PostgreSQLIntegration, tmp_path: Path) -> None:
    rows = bars(["NIFTY"], ["1m"], T0, 3)
    pg.save_market_data(rows)
    out = tmp_path / "bars.out"
    unknown = cli("export", "-t", "bars", "-s", "NIFTY", "--start", "2024-01-02", "--end", "2024-01-02",
                  "-o", str(out), code=1)
    assert "--format" in unknown.stderr and not out.exists()
    cli("export", "-t", "bars", "-s", "NIFTY", "--start", "2024-01-02", "--end", "2024-01-02", "--format", "csv",
        "-o", str(out))
    as_csv = pl.read_csv(out)
    assert as_csv.columns == rows.columns and as_csv["close"].to_list() == rows["close"].to_list()
    cli("export", "-t", "bars", "-s", "NIFTY", "--start", "2024-01-02", "--end", "2024-01-02", "--format", "ipc",
        "-o", str(out))
    assert pl.read_ipc(out)["close"].to_list() == rows["close"].to_list()


# ---------------------------------------------------------------------------------------
# latest, distribution, transitions: --timeframe


def _rows(output: str) -> list[list[str]]:
    return [[c.strip() for c in line.split("│")] for line in output.splitlines() if "│" in line]


def test_latest_timeframe(cli: Run, pg: PostgreSQLIntegration, received: Any) -> None:
    pg.save_market_data(bars(["NIFTY"], ["1m"], T0, 30))  # the 1m bars end later than the 5m ones
    pg.save_market_data(bars(["NIFTY"], ["5m"], T0, 3, step=dt.timedelta(minutes=5)))
    calls = received("get_latest")
    five = _rows(cli("latest", "NIFTY", "-t", "bars", "--timeframe", "5m").output)
    assert [r[:3] for r in five] == [["NIFTY", "5m", "2024-01-02 09:25:00"]]
    every = _rows(cli("latest", "NIFTY", "-t", "bars").output)
    assert sorted(r[1] for r in every) == ["1m", "5m"]
    assert [c["timeframe"] for c in calls] == ["5m", None]


@pytest.fixture
def two_timeframes(pg: PostgreSQLIntegration) -> None:
    """Regimes of NIFTY in two timeframes that differ: 5min alternates, 15min is one regime."""
    five = regimes(["NIFTY"], ["5min"], T0, 12).with_columns(
        pl.Series("regime", ["bullish_trending", "sideways"] * 6))
    fifteen = regimes(["NIFTY"], ["15min"], T0, 4, step=dt.timedelta(minutes=15)).with_columns(
        pl.lit("bearish_trending").alias("regime"))
    pg.save_market_regime(pl.concat([five, fifteen]))


def test_distribution_timeframe(cli: Run, two_timeframes: None, received: Any) -> None:
    calls = received("get_market_regime_distribution")
    args = ("distribution", "NIFTY", "--start", "2024-01-02", "--end", "2024-01-02", "-t", "regimes")
    fifteen = _rows(cli(*args, "--timeframe", "15min").output)
    assert [(r[0], r[1]) for r in fifteen] == [("bearish_trending", "4")]
    five = _rows(cli(*args, "--timeframe", "5min").output)
    assert sorted((r[0], r[1]) for r in five) == [("bullish_trending", "6"), ("sideways", "6")]
    assert [c["timeframe"] for c in calls] == ["15min", "5min"]


def test_transitions_timeframe(cli: Run, two_timeframes: None, received: Any) -> None:
    calls = received("get_regime_transitions")
    args = ("transitions", "NIFTY", "--start", "2024-01-02", "--end", "2024-01-02", "-t", "regimes")
    fifteen = _rows(cli(*args, "--timeframe", "15min").output)
    assert [r[:2] for r in fifteen] == [["bearish_trending", "bearish_trending"]]
    five = _rows(cli(*args, "--timeframe", "5min").output)
    assert sorted(tuple(r[:2]) for r in five) == [("bullish_trending", "sideways"), ("sideways", "bullish_trending")]
    assert [c["timeframe"] for c in calls] == ["15min", "5min"]


# ---------------------------------------------------------------------------------------
# quality --calendar, doctor --estimate, db stop --mode


def test_quality_calendar(cli: Run, pg: PostgreSQLIntegration, received: Any) -> None:
    pytest.importorskip("pandas_market_calendars")  # an optional extra of the library
    # 2024-01-15: an NYSE holiday (Martin Luther King Day), an NSE trading day.
    day = dt.datetime(2024, 1, 15, 9, 15)
    pg.save_market_data(bars(["NIFTY"], ["1m"], day, 10))
    calls = received("quality_report")
    args = ("quality", "bars", "-s", "NIFTY", "--start", "2024-01-15", "--end", "2024-01-15")
    nse = cli(*args)
    assert "quality by session (XNSE)" in nse.output and "2024-01-15" in nse.output
    nyse = cli(*args, "--calendar", "XNYS")
    assert "quality by session (XNYS)" in nyse.output and "2024-01-15" not in nyse.output  # no session that day
    assert [c["calendar"] for c in calls] == [None, "XNYS"]  # None: the configured calendar (XNSE)


def test_doctor_estimate(cli: Run, pg: PostgreSQLIntegration, monkeypatch: pytest.MonkeyPatch) -> None:
    pg.save_market_data(bars(["NIFTY"], ["1m"], T0, 7))
    seen: list[bool] = []
    real = server.diagnose

    def diagnose(settings: Settings, *, count_rows: bool = True) -> Any:
        seen.append(count_rows)
        return real(settings, count_rows=count_rows)

    monkeypatch.setattr(server, "diagnose", diagnose)
    exact = cli("doctor").output
    estimated = cli("doctor", "--estimate").output
    assert "(planner estimates)" in estimated and "(planner estimates)" not in exact
    assert seen == [True, False]


def test_db_stop_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mode reaches the embedded server's stop (here a data directory with no server:
    stopping it is a no-op that says so; what each mode does is PostgreSQL's pg_ctl)."""
    monkeypatch.setenv("REGIME_IO_EMBEDDED_DIR", str(tmp_path / "pg"))
    seen: list[str] = []
    real = server.stop

    def stop(directory: Any = None, *, mode: str = "fast") -> bool:
        seen.append(mode)
        return real(directory, mode=mode)  # type: ignore[arg-type]

    monkeypatch.setattr(server, "stop", stop)
    runner = CliRunner()
    for args in (["db", "stop"], ["db", "stop", "--mode", "smart"], ["db", "stop", "--mode", "immediate"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "was not running" in result.output
    assert seen == ["fast", "smart", "immediate"]
    bad = runner.invoke(app, ["db", "stop", "--mode", "now"])
    assert bad.exit_code == 2 and seen == ["fast", "smart", "immediate"]
