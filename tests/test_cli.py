"""The regime-io command line, against the real test server.

Commands run in-process through Typer's CliRunner (``--dsn`` points at the test server,
``--schema`` at the test's fresh schema), and demo, ingest, export and latest also as
real subprocesses (``python -m regime_io`` and the console script).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.main import get_command
from typer.testing import CliRunner, Result

from regime_io import PostgreSQLIntegration, synthetic
from regime_io.cli import app
from regime_io.config import Settings
from regime_io.demo import DEMO_SYMBOLS

Run = Callable[..., Result]
PY = sys.executable
CONSOLE_SCRIPT = str(Path(sys.executable).with_name("regime-io"))


@pytest.fixture(autouse=True)
def _no_user_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's REGIME_IO_* variables must not leak into these tests."""
    for name in list(os.environ):
        if name.startswith("REGIME_IO_") and not name.startswith("REGIME_IO_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def cli(server: Any, settings: Settings) -> Run:
    """Run ``regime-io --dsn <test server> --schema <fresh schema> ARGS`` in-process."""
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Result:
        result = runner.invoke(app, ["--dsn", server.url(), "--schema", settings.schema, *args])
        assert result.exit_code == code, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
        assert "Traceback" not in result.output
        return result

    return run


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGIME_IO_") or k.startswith("REGIME_IO_TEST_")}
    env.update(COLUMNS="200", **extra)
    return env


def _count(sql: Any, settings: Settings, table: str) -> int:
    """Rows of ``table`` in both tiers: the row table and its sealed chunks (the demo seals)."""
    name = settings.table_name(table)  # type: ignore[arg-type]
    rows = int(sql(f'SELECT count(*) FROM "{settings.schema}"."{name}"')[0][0])
    if table == "optimization_results":
        return rows
    return rows + int(sql(f'SELECT coalesce(sum(row_count), 0) FROM "{settings.schema}"."{name}_chunks"')[0][0])


def _commands() -> list[str]:
    """Every command path of the app: 'demo', 'db start', ..."""
    root = get_command(app)
    out: list[str] = []

    def walk(group: Any, prefix: str) -> None:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                walk(command, f"{prefix}{name} ")
            else:
                out.append(f"{prefix}{name}")

    walk(root, "")
    return out


# ---------------------------------------------------------------------------------------
# help


def test_every_command_has_help() -> None:
    runner = CliRunner()
    commands = _commands()
    assert {"demo", "init", "ingest", "export", "latest", "distribution", "cleanup", "doctor",
            "db start", "db stop", "db status", "db url"} <= set(commands)
    for command in commands:
        result = runner.invoke(app, [*command.split(), "--help"])
        assert result.exit_code == 0, command
        assert "Usage: regime-io " + command in " ".join(result.output.split())


def test_version() -> None:
    from regime_io import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"regime-io {__version__}"


# ---------------------------------------------------------------------------------------
# init, ingest, export


def test_init_creates_the_tables(cli: Run, sql: Any, settings: Settings) -> None:
    result = cli("init")
    assert f"tables ready in schema {settings.schema!r}" in result.output
    names = {r[0] for r in sql("SELECT tablename FROM pg_tables WHERE schemaname = %s", (settings.schema,))}
    assert {settings.table_name(k) for k in ("market_data", "options_data", "market_regimes",
                                             "market_regimes_1min", "optimization_results")} <= names
    cli("init")  # idempotent


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".arrow"])
def test_ingest_file_formats(cli: Run, sql: Any, settings: Settings, tmp_path: Path, suffix: str) -> None:
    bars = synthetic.market_bars(["NIFTY", "TCS"], days=2)
    path = tmp_path / f"bars{suffix}"
    {".parquet": bars.write_parquet, ".csv": bars.write_csv, ".arrow": bars.write_ipc}[suffix](path)
    cli("init")
    result = cli("ingest", str(path), "--table", "market_data", "--chunk-rows", "400")
    assert f"-> market_data: {bars.height:,} rows, {bars.height:,} inserted, 0 updated, 0 unchanged" \
        in " ".join(result.output.split())
    assert _count(sql, settings, "market_data") == bars.height
    stored = sql(f'SELECT sum(close), sum(volume) FROM "{settings.schema}"."mr_market_data"')[0]
    assert float(stored[0]) == pytest.approx(bars["close"].sum(), abs=1e-6)
    assert int(stored[1]) == bars["volume"].sum()
    again = cli("ingest", str(path), "-t", "market_data")
    assert f"0 inserted, 0 updated, {bars.height:,} unchanged" in " ".join(again.output.split())


def test_ingest_is_one_transaction_and_names_the_bad_row(cli: Run, sql: Any, settings: Settings,
                                                         tmp_path: Path) -> None:
    bars = synthetic.market_bars(["NIFTY"], days=3)  # 1125 rows
    bad = bars.with_columns(pl.when(pl.int_range(pl.len()) == 1000).then(-5).otherwise(pl.col("volume"))
                            .alias("volume"))
    bad.write_parquet(tmp_path / "bad.parquet", row_group_size=250)
    cli("init")
    result = cli("ingest", str(tmp_path / "bad.parquet"), "-t", "market_data", "--chunk-rows", "250", code=1)
    assert result.stderr.startswith("error: ")
    assert "volume" in result.stderr and "1000" in result.stderr
    # The first four chunks were valid and sent, yet nothing stays: one transaction.
    assert _count(sql, settings, "market_data") == 0


def test_ingest_reports_bad_arguments_cleanly(cli: Run, tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    synthetic.market_bars(["NIFTY"], days=1).write_parquet(path)
    unknown = cli("ingest", str(path), "-t", "prices", code=1)
    assert unknown.stderr.startswith("error: ") and "prices" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
    odd = tmp_path / "bars.xlsx"
    odd.write_bytes(b"x")
    fmt = cli("ingest", str(odd), "-t", "market_data", code=1)
    assert "cannot tell the format of" in fmt.stderr and ".parquet" in fmt.stderr
    assert fmt.stderr.rstrip().endswith("or pass --format")  # the library's format= is an option here
    uninitialised = cli("ingest", str(path), "-t", "market_data", code=1)
    assert uninitialised.stderr.rstrip().endswith("; run regime-io init first")
    (tmp_path / "fake.parquet").write_text("not parquet")
    fake = cli("ingest", str(tmp_path / "fake.parquet"), "-t", "market_data", code=1)
    assert fake.stderr.startswith("error: cannot read the file: Parquet magic bytes not found")


def test_ingest_a_pandas_csv_with_its_index_column(cli: Run, sql: Any, settings: Settings, tmp_path: Path) -> None:
    """The error suggests an option that exists, and that option loads the file."""
    bars = synthetic.market_bars(["NIFTY"], days=1)
    bars.to_pandas().to_csv(tmp_path / "pandas.csv")
    cli("init")
    refused = cli("ingest", str(tmp_path / "pandas.csv"), "-t", "bars", code=1)
    assert "(pass --extra-columns ignore to drop them)" in refused.stderr
    assert _count(sql, settings, "market_data") == 0
    done = cli("ingest", str(tmp_path / "pandas.csv"), "-t", "bars", "--extra-columns", "ignore")
    assert f"-> market_data: {bars.height} rows, {bars.height} inserted" in " ".join(done.output.split())
    assert _count(sql, settings, "market_data") == bars.height
    bad = cli("ingest", str(tmp_path / "pandas.csv"), "-t", "bars", "--extra-columns", "drop", code=2)
    assert "'drop' is not one of 'error', 'ignore'" in " ".join(bad.output.replace("│", "").split())


def test_ingest_one_row_and_a_date_format(cli: Run, sql: Any, settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "one.csv").write_text("symbol,timestamp,open,high,low,close,volume,timeframe\n"
                                      "NIFTY,04/03/2024 09:15,1,2,0.5,1.5,10,1m\n")
    cli("init")
    refused = cli("ingest", str(tmp_path / "one.csv"), "-t", "bars", code=1)
    assert refused.stderr.startswith("error: cannot read the file")
    done = cli("ingest", str(tmp_path / "one.csv"), "-t", "bars", "--date-format", "%d/%m/%Y %H:%M")
    assert "-> market_data: 1 row, 1 inserted" in done.output
    stored = sql(f'SELECT timestamp FROM "{settings.schema}".mr_market_data')
    assert [r[0].date().isoformat() for r in stored] == ["2024-03-04"]  # 4 March: the format said so


def test_ingest_of_an_unparsable_csv_value_writes_nothing(cli: Run, sql: Any, settings: Settings,
                                                          tmp_path: Path) -> None:
    bars = synthetic.market_bars(["NIFTY"], days=2)
    text = bars.write_csv()
    lines = text.splitlines()
    lines[600] = lines[600].replace("2024-01-02", "2024-01-0x", 1)
    (tmp_path / "bars.csv").write_text("\n".join(lines) + "\n")
    cli("init")
    result = cli("ingest", str(tmp_path / "bars.csv"), "-t", "market_data", code=1)
    assert "cannot read the file" in result.stderr and "2024-01-0x" in result.stderr
    assert _count(sql, settings, "market_data") == 0


def _save_demo_like(settings: Settings) -> tuple[pl.DataFrame, pl.DataFrame]:
    bars = synthetic.market_bars(["NIFTY", "TCS"], days=3)
    regimes = synthetic.minute_regimes(["NIFTY", "TCS"], days=3)
    with PostgreSQLIntegration(settings=settings) as pg:
        pg.initialize_database()
        pg.save_market_data(bars)
        pg.save_1min_market_regime(regimes)
    return bars, regimes


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".arrow"])
def test_export_writes_exactly_the_range(cli: Run, settings: Settings, tmp_path: Path, suffix: str) -> None:
    bars, _ = _save_demo_like(settings)
    out = tmp_path / f"out{suffix}"
    result = cli("export", "-t", "market_data", "-s", "TCS", "--start", "2024-01-02 10:00",
                 "--end", "2024-01-03", "-o", str(out))
    expected = bars.filter((pl.col("symbol") == "TCS") & (pl.col("timestamp") >= pl.datetime(2024, 1, 2, 10))
                           & (pl.col("timestamp") < pl.datetime(2024, 1, 4)))
    assert f"{expected.height:,} rows of market_data written to" in result.output
    got = {".parquet": pl.read_parquet, ".arrow": pl.read_ipc,
           ".csv": lambda p: pl.read_csv(p, try_parse_dates=True)}[suffix](out)
    assert_frame_equal(got, expected.select(got.columns), check_dtypes=suffix != ".csv")
    assert not list(tmp_path.glob("*.part"))


def test_export_regimes_and_optimisation_results(cli: Run, settings: Settings, tmp_path: Path) -> None:
    _, regimes = _save_demo_like(settings)
    runs = synthetic.optimization_results(["NIFTY"], runs=4)
    with PostgreSQLIntegration(settings=settings) as pg:
        pg.save_optimization_result(runs)
    cli("export", "-t", "1min_market_regimes", "-s", "NIFTY", "--start", "2024-01-01", "--end", "2024-01-01",
        "-o", str(tmp_path / "r.parquet"))
    got = pl.read_parquet(tmp_path / "r.parquet")
    want = regimes.filter((pl.col("symbol") == "NIFTY") & (pl.col("timestamp").dt.date() == pl.date(2024, 1, 1)))
    assert_frame_equal(got, want.select(got.columns))
    cli("export", "-t", "optimization_results", "-o", str(tmp_path / "o.csv"))
    opt = pl.read_csv(tmp_path / "o.csv")
    assert opt.height == 4
    assert sorted(opt["fitness_value"].to_list()) == sorted(r["fitness_value"] for r in runs)  # type: ignore[misc]
    missing = cli("export", "-t", "market_data", "-o", str(tmp_path / "x.parquet"), code=1)
    assert "export of market_data needs symbol, start, end (options: --symbol, --start, --end)" in missing.stderr


def test_export_of_nothing_is_an_error_and_one_row_is_singular(cli: Run, settings: Settings,
                                                              tmp_path: Path) -> None:
    _save_demo_like(settings)
    out = tmp_path / "none.parquet"
    none = cli("export", "-t", "bars", "-s", "UNKNOWN", "--start", "2024-01-01", "--end", "2024-01-31", "-o",
               str(out), code=1)
    assert none.stderr.startswith("error: no rows of market_data for 'UNKNOWN' from 2024-01-01 to 2024-01-31")
    assert "✓" not in none.output and not out.exists()
    empty = cli("export", "-t", "bars", "-s", "UNKNOWN", "--start", "2024-01-01", "--end", "2024-01-31", "-o",
                str(out), "--allow-empty")
    assert "0 rows of market_data written" in empty.output and pl.read_parquet(out).height == 0
    one = cli("export", "-t", "1min", "-s", "NIFTY", "--start", "2024-01-02 09:15", "--end", "2024-01-02 09:15",
              "-o", str(tmp_path / "one.csv"))
    assert "✓ 1 row of market_regimes_1min written to" in one.output


# ---------------------------------------------------------------------------------------
# latest, distribution, transitions


def _table_rows(output: str) -> list[list[str]]:
    """Cells of the rows of rich tables in ``output``."""
    return [[c.strip() for c in line.split("│")] for line in output.splitlines() if "│" in line]


def test_latest(cli: Run, settings: Settings, sql: Any) -> None:
    bars, regimes = _save_demo_like(settings)
    # TCS stops 30 minutes earlier than NIFTY.
    cut = regimes.filter(pl.col("symbol") == "TCS")["timestamp"].sort()[-30]
    sql(f'DELETE FROM "{settings.schema}".mr_market_regimes_1min WHERE symbol = %s AND timestamp >= %s',
        ("TCS", cut))
    with PostgreSQLIntegration(settings=settings) as pg:
        pg.refresh_catalog("1min")  # rows deleted by another tool: the documented step
    kept = regimes.filter(~((pl.col("symbol") == "TCS") & (pl.col("timestamp") >= cut)))
    expected = kept.sort("timestamp").group_by("symbol").last().sort("symbol")
    rows = _table_rows(cli("latest").output)
    assert [r[:3] for r in rows] == [[s, f"{t:%Y-%m-%d %H:%M:%S}", g] for s, t, g in
                                     expected.select("symbol", "timestamp", "regime").iter_rows()]
    bar = _table_rows(cli("latest", "NIFTY", "-t", "bars").output)
    last_bar = bars.filter(pl.col("symbol") == "NIFTY").sort("timestamp").row(-1, named=True)
    assert len(bar) == 1
    assert bar[0][:3] == ["NIFTY", "1m", f"{last_bar['timestamp']:%Y-%m-%d %H:%M:%S}"]
    assert float(bar[0][6].replace(",", "")) == pytest.approx(last_bar["close"])
    assert _table_rows(cli("latest", "UNKNOWN").output) == []


def test_every_command_accepts_the_table_aliases(cli: Run, settings: Settings, tmp_path: Path) -> None:
    _save_demo_like(settings)
    assert "mr_market_data_p2024_01" in cli("partitions", "bars").output
    assert "mr_market_data_p2024_01" in cli("partitions", "market_data").output
    dry = cli("cleanup", "--days", "30", "-t", "bars", "-t", "1min_market_regimes", "--dry-run").output
    assert "market_data" in dry and "market_regimes_1min" in dry
    for name in ("bars", "market_data"):
        assert "latest market_data" in cli("latest", "NIFTY", "-t", name).output
    for name in ("1min", "market_regimes_1min", "1min_market_regimes"):
        rows = _table_rows(cli("distribution", "NIFTY", "--start", "2024-01-01", "--end", "2024-01-01",
                               "-t", name).output)
        assert sum(int(r[1].replace(",", "")) for r in rows) == 375, name
    wrong = cli("distribution", "NIFTY", "--start", "2024-01-01", "--end", "2024-01-01", "-t", "bars", code=1)
    assert "is not a regime table" in wrong.stderr
    unknown = cli("partitions", "prices", code=1)
    assert unknown.stderr.startswith("error: unknown table 'prices'; allowed: market_data") and "bars" in unknown.stderr


def test_distribution_of_nothing_draws_no_chart(cli: Run, settings: Settings, tmp_path: Path) -> None:
    _save_demo_like(settings)
    result = cli("distribution", "NIFTY", "--start", "2023-01-01", "--end", "2023-01-31", "--plot",
                 str(tmp_path / "d.png"))
    assert "(no rows)" in result.output and "no chart" in result.output
    assert not (tmp_path / "d.png").exists()


def test_distribution_and_transitions(cli: Run, settings: Settings, tmp_path: Path) -> None:
    _, regimes = _save_demo_like(settings)
    day = regimes.filter((pl.col("symbol") == "NIFTY") & (pl.col("timestamp").dt.date() <= pl.date(2024, 1, 2)))
    result = cli("distribution", "NIFTY", "--start", "2024-01-01", "--end", "2024-01-02",
                 "--plot", str(tmp_path / "d.png"))
    counts = day.group_by("regime").len()
    rows = {r[0]: r for r in _table_rows(result.output)}
    assert set(rows) == set(counts["regime"])
    for regime, n in counts.iter_rows():
        assert rows[regime][1] == f"{n:,}"
        assert rows[regime][2] == f"{100 * n / day.height:.1f}%"
    assert (tmp_path / "d.png").stat().st_size > 10_000

    result = cli("transitions", "NIFTY", "--start", "2024-01-01", "--end", "2024-01-02",
                 "--plot", str(tmp_path / "t.png"))
    seq = day.sort("timestamp")["regime"].to_list()
    pairs = pl.DataFrame({"a": seq[:-1], "b": seq[1:]}).group_by("a", "b").len()
    got = {(r[0], r[1]): r[2] for r in _table_rows(result.output)}
    assert got == {(a, b): f"{n:,}" for a, b, n in pairs.iter_rows()}
    assert (tmp_path / "t.png").stat().st_size > 10_000

    bad = cli("distribution", "NIFTY", "--start", "2024-02-01", "--end", "2024-01-01", code=1)
    assert bad.stderr.startswith("error: ") and "after" in bad.stderr


@pytest.mark.parametrize("command", [["distribution", "NIFTY"], ["transitions", "NIFTY"],
                                     ["export", "-t", "bars", "-s", "NIFTY", "-o", "x.parquet"]])
def test_ambiguous_dates_are_refused_in_the_command_lines_words(cli: Run, settings: Settings,
                                                                 command: list[str]) -> None:
    """'04/01/2024' could be 4 January or 1 April: refused, never guessed, in one line that
    names the option and a form that works."""
    _save_demo_like(settings)
    result = cli(*command, "--start", "04/01/2024", "--end", "2024-01-31", code=1)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --start '04/01/2024' is not an ISO 8601 date")
    assert lines[0].endswith("write it as YYYY-MM-DD or 'YYYY-MM-DD HH:MM'")


# ---------------------------------------------------------------------------------------
# cleanup, partitions, doctor


def test_cleanup_dry_run_then_for_real(cli: Run, sql: Any, settings: Settings) -> None:
    bars, regimes = _save_demo_like(settings)  # January 2024: older than 30 days
    dry = cli("cleanup", "--days", "30", "--dry-run")
    assert f"would remove {bars.height + regimes.height:,} rows" in dry.output
    assert _count(sql, settings, "market_data") == bars.height
    parts = cli("partitions")
    assert "mr_market_data_p2024_01" in parts.output
    done = cli("cleanup", "--days", "30", "--yes")
    assert f"would remove {bars.height + regimes.height:,} rows" in done.output  # the counts first
    assert f"✓ removed {bars.height + regimes.height:,} rows" in done.output
    assert _count(sql, settings, "market_data") == 0 == _count(sql, settings, "market_regimes_1min")
    assert "mr_market_data_p2024_01" not in cli("partitions").output
    cli("cleanup", "--days", "0", code=2)  # typer refuses days < 1 before anything runs
    assert "nothing to remove" in cli("cleanup", "--days", "30").output


def test_cleanup_asks_before_deleting(server: Any, settings: Settings, sql: Any) -> None:
    bars, regimes = _save_demo_like(settings)
    runner = CliRunner()
    base = ["--dsn", server.url(), "--schema", settings.schema, "cleanup", "--days", "30"]
    total = bars.height + regimes.height
    for answer in ("n\n", ""):  # "no", and no answer at all (stdin closed, as under cron)
        kept = runner.invoke(app, base, input=answer)
        assert kept.exit_code == 1, kept.output
        assert f"would remove {total:,} rows" in kept.output
        assert f"Delete {total:,} rows older than 30 days?" in kept.output
        assert kept.stderr.startswith("error: not confirmed: nothing deleted (pass --yes")
        assert _count(sql, settings, "market_data") == bars.height
    done = runner.invoke(app, base, input="y\n")
    assert done.exit_code == 0, done.output
    assert f"✓ removed {total:,} rows" in done.output
    assert _count(sql, settings, "market_data") == 0


def test_doctor(cli: Run, settings: Settings) -> None:
    before = cli("doctor")
    assert "does not exist yet" in before.output and "regime-io init" in before.output
    bars, regimes = _save_demo_like(settings)
    result = cli("doctor")
    assert "✓ server: reachable" in result.output
    assert "✓ tables: all 5 present" in result.output
    assert "✓ price scale: 2 (NUMERIC(10,2))" in result.output
    rows = {r[0]: r for r in _table_rows(result.output)}
    assert rows["market_data"][4] == f"{bars.height:,}"
    assert rows["market_regimes_1min"][4] == f"{regimes.height:,}"
    assert rows["options_data"][4] == "0"


def test_doctor_fails_fast_on_an_unreachable_server_without_showing_the_password() -> None:
    result = CliRunner().invoke(app, ["--dsn", "postgresql://alice:Sup3r-Secret@127.0.0.1:1/market", "doctor"])
    assert result.exit_code == 1
    assert "✗ server:" in result.output and "Connection refused" in result.output
    assert "Sup3r-Secret" not in result.output


# ---------------------------------------------------------------------------------------
# errors and secrets


def test_errors_are_one_clean_line(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--config", str(tmp_path / "missing.ini"), "latest"])
    assert result.exit_code == 1
    assert result.stderr == f"error: invalid configuration in {tmp_path / 'missing.ini'}: config file " \
                            f"{str(tmp_path / 'missing.ini')!r} does not exist\n"
    bad_schema = runner.invoke(app, ["--schema", "a;b", "init"])
    assert bad_schema.exit_code == 1 and "'a;b' is not a plain SQL name" in bad_schema.stderr
    assert bad_schema.exception is None or isinstance(bad_schema.exception, SystemExit)


def test_the_password_is_never_printed(tmp_path: Path) -> None:
    ini = tmp_path / "db.ini"
    ini.write_text("[DATABASE]\nhost = 127.0.0.1\nport = 1\nuser = alice\npassword = pa55-W0rd#x\n"
                   "[CONNECTION]\nretry_attempts = 0\nconnection_timeout = 2\n")
    runner = CliRunner()
    for args in (["latest"], ["init"], ["-vv", "doctor"], ["db", "url"], ["export", "-t", "optimization_results",
                                                                          "-o", str(tmp_path / "o.csv")]):
        result = runner.invoke(app, ["--config", str(ini), *args])
        assert "pa55-W0rd" not in result.output, args
        assert "Traceback" not in result.output, args
    masked = runner.invoke(app, ["--config", str(ini), "db", "url"])
    assert masked.exit_code == 0 and masked.stdout.strip() == "postgresql://alice:***@127.0.0.1:1/postgres"
    shown = runner.invoke(app, ["--config", str(ini), "db", "url", "--show-password"])
    assert shown.stdout.strip() == "postgresql://alice:pa55-W0rd%23x@127.0.0.1:1/postgres"
    down = runner.invoke(app, ["--config", str(ini), "latest"])
    assert down.exit_code == 1
    # Retries are logged as warnings; the error itself is the last line.
    assert down.stderr.splitlines()[-1].startswith("error: cannot reach the primary server (127.0.0.1:1 ")


def test_dsn_replaces_the_configured_address(tmp_path: Path) -> None:
    ini = tmp_path / "db.ini"
    ini.write_text("[DATABASE]\nhost = db.example\nuser = bob\npassword = filepw\nschema = from_file\n")
    result = CliRunner().invoke(app, ["--config", str(ini), "--dsn", "postgresql://carol@other.example:6543/x",
                                      "db", "url", "--show-password"])
    assert result.stdout.strip() == "postgresql://carol@other.example:6543/x"


# ---------------------------------------------------------------------------------------
# db: the embedded server


@pytest.fixture
def embedded_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from regime_io._conn import embedded as embedded

    pgdata = Path(tempfile.mkdtemp(prefix="rio-cli-")) / "pgdata"
    monkeypatch.setenv("REGIME_IO_EMBEDDED_DIR", str(pgdata))
    yield pgdata
    try:
        embedded.stop(pgdata, mode="immediate")
    finally:
        shutil.rmtree(pgdata.parent, ignore_errors=True)


def test_db_start_status_url_stop(embedded_dir: Path) -> None:
    runner = CliRunner()
    status = runner.invoke(app, ["db", "status"])
    assert status.exit_code == 1 and "not running" in status.output
    no_url = runner.invoke(app, ["db", "url"])
    assert no_url.exit_code == 1 and "regime-io db start" in no_url.stderr
    started = runner.invoke(app, ["db", "start"])
    assert started.exit_code == 0, started.output
    assert str(embedded_dir) in " ".join(started.output.split())
    status = runner.invoke(app, ["db", "status"])
    assert status.exit_code == 0 and "running" in status.output
    url = runner.invoke(app, ["db", "url"]).stdout.strip()
    import psycopg

    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_setting('data_directory')").fetchone()[0] == str(embedded_dir)  # type: ignore[index]
    init = runner.invoke(app, ["--schema", "cli_embedded", "init"])
    assert init.exit_code == 0 and "on the embedded server" in init.output
    stopped = runner.invoke(app, ["db", "stop"])
    assert stopped.exit_code == 0 and "stopped" in stopped.output
    assert runner.invoke(app, ["db", "status"]).exit_code == 1
    assert "was not running" in runner.invoke(app, ["db", "stop"]).output


# ---------------------------------------------------------------------------------------
# demo, in-process and as a subprocess


def _png_is_a_real_chart(path: Path) -> None:
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 30_000
    with Image.open(path) as image:
        width, height = image.size
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    assert width >= 800 and height >= 400
    assert len(np.unique(pixels, axis=0)) > 100


def test_demo_as_a_subprocess_then_rerun_is_idempotent(server: Any, settings: Settings, sql: Any,
                                                      tmp_path: Path) -> None:
    # A week keeps it quick; the README test runs the default month on a fresh embedded server.
    done = subprocess.run([CONSOLE_SCRIPT, "--dsn", server.url(), "--schema", settings.schema, "demo", "--days", "5"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "Warning" not in done.stderr, done.stderr  # realistic data fits the tables: nothing to warn about
    out = " ".join(done.stdout.split())
    for symbol in DEMO_SYMBOLS:
        assert re.search(rf"{symbol} │ 2024-\d\d-\d\d 15:29:00 │", out), symbol
    assert "regime distribution" in out and "time_share" in out
    chart = tmp_path / "regime_io_demo.png"
    assert f"chart written to {chart}" in out
    _png_is_a_real_chart(chart)
    bars = len(DEMO_SYMBOLS) * 5 * 375

    def stored() -> dict[str, int]:
        # Through the library: old months may sit in the sealed (columnar) tier.
        with PostgreSQLIntegration(settings=settings) as pg:
            catalog = pg.catalog().group_by("table").agg(pl.col("row_count").sum())
            counts = dict(catalog.iter_rows())
            counts["optimization_results"] = pg.get_optimization_results().height
            chain = pg.get_options_data("NIFTY", "2024-01-01", "2024-02-01")
        assert chain.height == counts["options_data"] and chain["delta"].null_count() == 0  # with greeks
        return counts

    counts = stored()
    assert counts["market_data"] == counts["market_regimes_1min"] == bars
    # 25 quarter-hours a session x 2 expiries x 10 strikes x (CE, PE)
    assert counts["options_data"] == 5 * 25 * 2 * 10 * 2 and counts["optimization_results"] == 5 * len(DEMO_SYMBOLS)

    again = CliRunner().invoke(app, ["--dsn", server.url(), "--schema", settings.schema, "demo", "--days", "5",
                                     "-o", str(tmp_path / "again.png")])
    assert again.exit_code == 0, again.output
    assert stored() == counts
    _png_is_a_real_chart(tmp_path / "again.png")


def test_demo_on_a_configured_server_uses_its_own_schema(server: Any, sql: Any, tmp_path: Path) -> None:
    """On a server the user configured, without --schema, the demo writes to regime_io_demo
    (never to the configured tables) and says which --schema reads it back."""
    result = CliRunner().invoke(app, ["--dsn", server.url(), "demo", "--days", "1", "-o", str(tmp_path / "d.png")])
    try:
        assert result.exit_code == 0, result.output
        assert "schema 'regime_io_demo' ready" in result.output
        assert "try: regime-io --schema regime_io_demo latest" in " ".join(result.output.split())
        tables = sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'regime_io_demo'")[0][0]
        assert tables >= 5
    finally:
        sql("DROP SCHEMA IF EXISTS regime_io_demo CASCADE")


# ---------------------------------------------------------------------------------------
# ingest, export and latest as real processes


def test_ingest_export_latest_as_subprocesses(server: Any, settings: Settings, sql: Any, tmp_path: Path) -> None:
    regimes = synthetic.minute_regimes(["NIFTY", "BANKNIFTY"], days=2)
    regimes.write_csv(tmp_path / "regimes.csv")
    # python -m regime_io with the DSN from the environment ...
    env = _env(REGIME_IO_DSN=server.url(), REGIME_IO_SCHEMA=settings.schema)
    init = subprocess.run([PY, "-m", "regime_io", "init"], env=env, capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    ingest = subprocess.run([PY, "-m", "regime_io", "ingest", "regimes.csv", "--table", "1min_market_regimes",
                             "--chunk-rows", "200"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert ingest.returncode == 0, ingest.stderr
    assert f"{regimes.height:,} inserted" in ingest.stdout
    assert _count(sql, settings, "market_regimes_1min") == regimes.height
    # ... and the console script with --dsn.
    base = [CONSOLE_SCRIPT, "--dsn", server.url(), "--schema", settings.schema]
    export = subprocess.run([*base, "export", "-t", "market_regimes_1min", "-s", "BANKNIFTY", "--start",
                             "2024-01-02", "--end", "2024-01-02", "-o", "bn.parquet"], cwd=tmp_path, env=_env(),
                            capture_output=True, text=True, timeout=120)
    assert export.returncode == 0, export.stderr
    got = pl.read_parquet(tmp_path / "bn.parquet")
    want = regimes.filter((pl.col("symbol") == "BANKNIFTY") & (pl.col("timestamp").dt.date() == pl.date(2024, 1, 2)))
    assert_frame_equal(got, want.select(got.columns))
    latest = subprocess.run([*base, "latest", "NIFTY", "BANKNIFTY"], env=_env(), capture_output=True, text=True,
                            timeout=120)
    assert latest.returncode == 0, latest.stderr
    last = regimes.sort("timestamp").group_by("symbol").last().sort("symbol")
    assert [r[:3] for r in _table_rows(latest.stdout)] == [
        [s, f"{t:%Y-%m-%d %H:%M:%S}", g] for s, t, g in last.select("symbol", "timestamp", "regime").iter_rows()]
    failed = subprocess.run([*base, "latest", "--table", "options_data"], env=_env(), capture_output=True,
                            text=True, timeout=120)
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: ") and "Traceback" not in failed.stderr


def test_export_of_a_sealed_month_in_a_fresh_process_prints_no_driver_panic(pg: Any, server: Any,
                                                                            settings: Settings, tmp_path: Path) -> None:
    """A fresh process does not know the table has chunks: its stream must look them up
    first. When it guessed "none", its guarded statement tripped inside connectorx's worker
    thread, which printed a Rust panic backtrace on stderr (the read was retried and the
    export came out right, so only the process's stderr shows it)."""
    _save_demo_like(settings)
    pg.seal(dt.date(2024, 2, 1))
    base = [CONSOLE_SCRIPT, "--dsn", server.url(), "--schema", settings.schema]
    export = subprocess.run([*base, "export", "-t", "bars", "-s", "NIFTY", "--start", "2024-01-01", "--end",
                             "2024-01-31", "-o", "jan.parquet"], cwd=tmp_path, env=_env(), capture_output=True,
                            text=True, timeout=120)
    assert export.returncode == 0, export.stderr
    assert "panicked" not in export.stderr and "RUST_BACKTRACE" not in export.stderr, export.stderr
    assert pl.read_parquet(tmp_path / "jan.parquet").height == pg.get_market_data("NIFTY", "2024-01-01",
                                                                                  "2024-01-31").height > 0
