"""The sealed tier: seal/unseal move rows between tiers, once, atomically; readers see no difference."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration
from regime_io._tiers import sealing as sealing
from tests._reading_data import bars


def _counts(pg: PostgreSQLIntegration, sql, key: str = "market_data") -> tuple[int, int]:
    rows = sql(f"SELECT count(*) FROM {pg.db.table(key)}")[0][0]
    chunked = sql(f"SELECT coalesce(sum(row_count), 0) FROM {pg.db.table(key)[:-1]}_chunks\"")[0][0]
    return rows, chunked


def test_seal_moves_whole_months_once_and_unseal_puts_them_back(pg: PostgreSQLIntegration, sql) -> None:
    data = bars(["NIFTY", "BANKNIFTY"], ["1m", "5m"], dt.datetime(2024, 1, 30), 3000, step=dt.timedelta(minutes=30))
    pg.save_market_data(data)
    before = pg.get_market_data(["NIFTY", "BANKNIFTY"], "2024-01-01", "2024-12-31", exact=True)
    report = sealing.seal(pg.db, dt.date(2024, 3, 15))
    assert report.tables == ("market_data",)
    assert [p.period for p in report] == [dt.date(2024, 1, 1), dt.date(2024, 2, 1)]
    jan_feb = data.filter(pl.col("timestamp") < dt.datetime(2024, 3, 1)).height
    assert report.rows_moved == jan_feb
    assert _counts(pg, sql) == (data.height - jan_feb, jan_feb)
    assert sealing.seal(pg.db, dt.date(2024, 3, 15)).rows_moved == 0  # idempotent
    unsealed = sealing.unseal(pg.db, "2024-01-01", "2024-12-31")
    assert unsealed.rows_moved == jan_feb
    assert _counts(pg, sql) == (data.height, 0)
    after = pg.get_market_data(["NIFTY", "BANKNIFTY"], "2024-01-01", "2024-12-31", exact=True)
    assert_frame_equal(before, after)


# ---------------------------------------------------------------------------------------
# Writes into sealed months


def _sealed_jan(pg: PostgreSQLIntegration) -> pl.DataFrame:
    data = bars(["NIFTY"], ["1m"], dt.datetime(2024, 1, 2, 9, 15), 2000, step=dt.timedelta(minutes=15))
    pg.save_market_data(data)
    pg.seal(dt.date(2024, 2, 1))
    return data


def test_a_restatement_of_a_sealed_month_merges_into_its_chunk_with_exact_counts(
        pg: PostgreSQLIntegration, sql) -> None:
    data = _sealed_jan(pg)
    jan = data.filter(pl.col("timestamp") < dt.datetime(2024, 2, 1))
    assert _counts(pg, sql)[1] == jan.height
    day = jan.filter(pl.col("timestamp").dt.day() == 3)
    changed = day.head(10).with_columns(pl.col("volume") + 1)
    same = day.slice(10, 5)
    new = pl.DataFrame({"symbol": ["NIFTY"], "timestamp": [dt.datetime(2024, 1, 31, 23, 59)], "open": [100.0],
                        "high": [101.0], "low": [99.0], "close": [100.5], "volume": [7], "timeframe": ["1m"]})
    result = pg.save_market_data(pl.concat([changed, same, new]))
    assert (result.inserted, result.updated, result.unchanged) == (1, 10, 5)
    assert result.method == "sealed"
    chunked = _counts(pg, sql)[1]
    assert chunked == jan.height + 1  # merged into the chunk, nothing in the row tier for January
    assert sql(f"SELECT count(*) FROM {pg.db.table('market_data')} WHERE timestamp < '2024-02-01'")[0][0] == 0
    expected = (pl.concat([jan.join(changed, on=["symbol", "timeframe", "timestamp"], how="anti"), changed, new])
                .sort("timestamp"))
    got = pg.get_market_data("NIFTY", "2024-01-01", "2024-01-31")
    assert_frame_equal(got, expected.select(got.columns))
    # The same batch again changes nothing.
    again = pg.save_market_data(pl.concat([changed, same, new]))
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 16)


def test_on_conflict_error_and_ignore_behave_as_for_rows(pg: PostgreSQLIntegration, sql) -> None:
    from regime_io.errors import WriteError

    data = _sealed_jan(pg)
    first = data.head(1)
    with pytest.raises(WriteError, match="market_data: a row with this natural key already exists"):
        pg.save_market_data(pl.concat([first.with_columns(pl.col("volume") + 5)]), on_conflict="error")
    ignored = pg.save_market_data(first.with_columns(pl.col("volume") + 5), on_conflict="ignore")
    assert (ignored.inserted, ignored.updated, ignored.unchanged) == (0, 0, 1)
    got = pg.get_market_data("NIFTY", "2024-01-01", "2024-01-02")
    assert got.get_column("volume")[0] == first.get_column("volume")[0]


def test_a_batch_across_sealed_and_row_months_lands_in_both_in_one_transaction(pg: PostgreSQLIntegration,
                                                                               sql) -> None:
    data = _sealed_jan(pg)
    rows_before, chunks_before = _counts(pg, sql)
    restated = data.with_columns(pl.col("close") + 0.01, pl.col("high") + 0.01)
    result = pg.save_market_data(restated)
    assert (result.inserted, result.updated) == (0, data.height)
    assert _counts(pg, sql) == (rows_before, chunks_before)
    assert_frame_equal(pg.get_market_data("NIFTY", "2024-01-01", "2024-12-31"), restated.select(
        pg.get_market_data("NIFTY", "2024-01-01", "2024-12-31").columns))
    # A stream of chunks takes the same route.
    streamed = pg.save_market_data(iter([data.head(100), data.slice(100, 1900)]))
    assert (streamed.inserted, streamed.updated, streamed.unchanged) == (0, data.height, 0)
    assert _counts(pg, sql) == (rows_before, chunks_before)


def test_backfill_with_tier_sealed_goes_straight_into_chunks(pg: PostgreSQLIntegration, sql) -> None:
    data = bars(["NIFTY", "BANKNIFTY"], ["1m"], dt.datetime(2023, 1, 2), 3000, step=dt.timedelta(minutes=20))
    pg.save_market_data(data.head(10))  # some rows already in the row tier: they move too
    result = pg.save_market_data(data, tier="sealed")
    assert (result.method, result.inserted, result.unchanged) == ("sealed", data.height - 10, 10)
    assert _counts(pg, sql) == (0, data.height)
    got = pg.get_market_data(["NIFTY", "BANKNIFTY"], "2023-01-01", "2023-12-31", exact=True)
    assert got.height == data.height
    assert_frame_equal(got.select("symbol", "timestamp", "volume"),
                       data.sort("symbol", "timestamp").select("symbol", "timestamp", "volume"))


def test_eight_concurrent_restatements_of_one_sealed_month_lose_no_update(pg: PostgreSQLIntegration, sql) -> None:
    import threading

    data = _sealed_jan(pg)
    jan = data.filter(pl.col("timestamp") < dt.datetime(2024, 2, 1)).with_row_index("i")
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def restate(k: int) -> None:
        mine = jan.filter(pl.col("i") % 8 == k).drop("i").with_columns(pl.lit(1_000_000 + k).alias("volume"))
        try:
            barrier.wait()
            pg.save_market_data(mine)
        except BaseException as err:  # asserted below
            errors.append(err)

    threads = [threading.Thread(target=restate, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = pg.get_market_data("NIFTY", "2024-01-01", "2024-01-31")
    expected = jan.with_columns((1_000_000 + pl.col("i") % 8).cast(pl.Int64).alias("volume")).drop("i")
    assert_frame_equal(got, expected.select(got.columns))
    assert _counts(pg, sql)[0] == data.height - jan.height


def test_cleanup_drops_sealed_rows_past_the_cutoff(pg: PostgreSQLIntegration, sql) -> None:
    data = bars(["NIFTY"], ["1m"], dt.datetime(2024, 1, 2), 3000, step=dt.timedelta(minutes=30))
    pg.save_market_data(data)
    pg.seal(dt.date(2024, 3, 1))
    today = sql("SELECT LOCALTIMESTAMP::date")[0][0]
    report = pg.cleanup_old_data((today - dt.date(2024, 2, 10)).days, tables=["market_data"])
    entry = report["market_data"]
    old = data.filter(pl.col("timestamp") < entry.cutoff).height
    assert entry.chunks_dropped == 1  # January, whole
    assert entry.sealed_rows_removed == old
    assert entry.rows_removed == old
    got = pg.get_market_data("NIFTY", "2024-01-01", "2024-12-31")
    assert got.height == data.height - old
    assert got.get_column("timestamp").min() >= entry.cutoff


def test_cli_seal_and_unseal(pg: PostgreSQLIntegration, sql, server, settings) -> None:
    from typer.testing import CliRunner

    from regime_io.cli import app

    data = bars(["NIFTY"], ["1m"], dt.datetime(2024, 1, 2), 3000, step=dt.timedelta(minutes=30))
    pg.save_market_data(data)
    base = ["--dsn", server.url(), "--schema", settings.schema]
    runner = CliRunner()
    planned = runner.invoke(app, [*base, "seal", "--older-than", "2024-03-01", "--dry-run"])
    assert planned.exit_code == 0, planned.output
    assert "dry run: would move" in planned.output
    assert _counts(pg, sql)[1] == 0
    done = runner.invoke(app, [*base, "seal", "--older-than", "2024-03-01", "--table", "bars"])
    assert done.exit_code == 0, done.output
    moved = data.filter(pl.col("timestamp") < dt.datetime(2024, 3, 1)).height
    assert f"sealed {moved:,} rows in 2 table-months" in done.output
    assert _counts(pg, sql) == (data.height - moved, moved)
    back = runner.invoke(app, [*base, "unseal", "2024-01-01", "2024-12-31", "--symbol", "NIFTY"])
    assert back.exit_code == 0, back.output
    assert _counts(pg, sql) == (data.height, 0)
    bad = runner.invoke(app, [*base, "seal", "--older-than", "soon"])
    assert bad.exit_code != 0 and "older_than" in bad.output and "Traceback" not in bad.output


@pytest.mark.parametrize("exact", [False, True])
def test_resampling_sealed_bars_across_a_weekend_buckets_as_the_rows(pg: PostgreSQLIntegration, exact: bool) -> None:
    """Intraday buckets anchor at the session open, on days without a session too. Over
    sealed rows (read on ADBC) the day's open came from an array parameter whose NULLs
    (no session) ADBC before 1.13 bound as 1970-01-01: weekend bars were bucketed from
    midnight (06:00, 12:00, 18:00 instead of 03:15, 09:15, 15:15 for 6-hour buckets)."""
    start = dt.datetime(2024, 1, 29, 9, 15)
    pg.save_market_data(bars(["NIFTY"], ["1m"], start, 250, step=dt.timedelta(hours=7), seed=4))
    window = (start, start + dt.timedelta(days=80))
    with pytest.warns(Warning):  # the bars fall outside XNSE's sessions: said, not refused
        rows = pg.get_market_data("NIFTY", *window, resample="6h", exact=exact)
    saturday = rows.filter(pl.col("timestamp").dt.weekday() == 6)
    labels = set(saturday["timestamp"].dt.strftime("%H:%M"))
    assert saturday.height and labels <= {"00:00", "03:15", "09:15", "15:15", "21:15"}, labels  # 00:00: cut at midnight
    pg.seal(dt.date(2030, 1, 1))
    with pytest.warns(Warning):
        sealed = pg.get_market_data("NIFTY", *window, resample="6h", exact=exact)
    assert_frame_equal(sealed, rows)


def test_a_month_sealed_whole_takes_every_series_in_it_and_a_keyed_seal_only_its_own(
        pg: PostgreSQLIntegration, sql) -> None:
    """Sealing a month every symbol at once reads and deletes its rows by time alone (no
    key filter): a series written after the plan, before the month's lock, moves too, and
    the report counts it. Sealed for some symbols (or in parts), only those series move."""
    data = bars(["NIFTY", "BANKNIFTY", "FINNIFTY"], ["1m"], dt.datetime(2024, 1, 2), 600,
                step=dt.timedelta(minutes=60))
    pg.save_market_data(data)
    spec = pg.db.spec("market_data")
    jan = dt.date(2024, 1, 1)
    in_jan = data.filter(pl.col("timestamp") < dt.datetime(2024, 2, 1))
    per_symbol = in_jan.group_by("symbol").len()
    count = dict(zip(per_symbol["symbol"], per_symbol["len"], strict=True))
    # Keyed: only NIFTY's rows move, the others stay in the row tier.
    moved, series, _, _ = sealing._seal_group(pg.db, spec, jan, [("NIFTY", "1m")])
    assert (moved, series) == (count["NIFTY"], 1)
    assert _counts(pg, sql) == (data.height - count["NIFTY"], count["NIFTY"])
    # Whole: the plan named BANKNIFTY only (FINNIFTY "written after it"); both move.
    moved, series, before, _ = sealing._seal_group(pg.db, spec, jan, [("BANKNIFTY", "1m")], row_bytes=100.0,
                                                   whole_period=True)
    assert (moved, series) == (count["BANKNIFTY"] + count["FINNIFTY"], 2)
    assert before == moved * 100  # the late series' rows sized too
    assert _counts(pg, sql) == (data.height - in_jan.height, in_jan.height)
    after = pg.get_market_data(["NIFTY", "BANKNIFTY", "FINNIFTY"], "2024-01-01", "2024-12-31", exact=True)
    assert after.height == data.height
    assert sql(f"SELECT count(*) FROM {pg.db.table('market_data')} WHERE timestamp < '2024-02-01'")[0][0] == 0


def test_the_report_counts_the_rows_heap_bytes_before_a_seal(pg: PostgreSQLIntegration, sql) -> None:
    """bytes_before: the rows' heap tuples (with headers), the count times the mean tuple of
    the first 10,000 rows -- every row here, so the whole table's sum to a byte a series."""
    data = bars(["NIFTY", "BANKNIFTY"], ["1m", "5m"], dt.datetime(2024, 1, 30), 1200, step=dt.timedelta(minutes=30))
    pg.save_market_data(data)
    table = pg.db.table("market_data")
    exact = sql(f"SELECT sum(pg_column_size(t.*) + 28) FROM {table} t WHERE timestamp < '2024-03-01'")[0][0]
    series = len(sql(f"SELECT DISTINCT symbol, timeframe, date_trunc('month', timestamp) FROM {table} "
                     "WHERE timestamp < '2024-03-01'"))
    report = sealing.seal(pg.db, dt.date(2024, 3, 15))
    assert report.rows_moved == data.filter(pl.col("timestamp") < dt.datetime(2024, 3, 1)).height
    assert abs(report.bytes_before - int(exact)) <= series
