"""A restatement of a few rows in a sealed month goes to the chunk's patch, not a new payload.

The payload's bytes stay as they were; every reader lays the patch over them; the chunk's
row count, time bounds and newest row follow; past ``PATCH_ROWS`` rows the next write folds
the patch into a new payload. Compared with the same writes into the row tier.
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import signal
import struct
from typing import Any

import adbc_driver_manager.dbapi
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration
from regime_io._conn import pipeline
from regime_io._tiers import chunk_bytes, chunk_merge, sealed_format, sealed_store, segment_memo
from regime_io._write.validate import validate
from regime_io.tables import table_spec
from tests._reading_data import bars, options, regimes_1min
from tests.test_sealing_properties import START, _answers, _same, _write

KEY = ["symbol", "timeframe", "timestamp"]


def _chunks(pg: PostgreSQLIntegration, sql: Any, key: str = "market_data") -> list[tuple[Any, ...]]:
    """(symbol, period, md5(payload), patch bytes or None, row_count, first_ts, last_ts) per chunk."""
    return sql(f"SELECT symbol, period_start, md5(payload), octet_length(patch), row_count, first_ts, last_ts "
               f"FROM {pg.db.table(key)[:-1]}_chunks\" ORDER BY 1, 2")


def _sealed_month(pg: PostgreSQLIntegration) -> pl.DataFrame:
    """Two symbols of one-minute bars over January 2024, sealed (44,640 rows each)."""
    data = bars(["NIFTY", "BANKNIFTY"], ["1m"], dt.datetime(2024, 1, 1), 31 * 1440, seed=5)
    pg.save_market_data(data)
    pg.seal(dt.date(2024, 2, 1))
    return data


def _upsert(base: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    return pl.concat([base.join(new, on=KEY, how="anti"), new]).sort("symbol", "timestamp")


def test_a_restated_day_lands_in_the_patch_and_every_reader_sees_it(pg: PostgreSQLIntegration, sql) -> None:
    data = _sealed_month(pg)
    before = _chunks(pg, sql)
    assert [c[3] for c in before] == [None, None]
    day = data.filter(pl.col("timestamp").dt.day() == 10)
    restated = day.with_columns(pl.col("low").alias("close"), pl.col("volume") + 1)
    result = pg.save_market_data(restated)
    assert (result.inserted, result.updated, result.unchanged) == (0, day.height, 0)
    after = _chunks(pg, sql)
    # The payloads are untouched (same bytes); each chunk has a patch; counts and bounds hold.
    assert [c[2] for c in after] == [c[2] for c in before]
    assert all(c[3] for c in after)
    assert [c[4:] for c in after] == [c[4:] for c in before]
    expected = _upsert(data, restated)
    for exact in (False, True):
        got = pg.get_market_data(["NIFTY", "BANKNIFTY"], "2024-01-01", "2024-01-31 23:59", exact=exact)
        got = got.sort("symbol", "timestamp")
        assert_frame_equal(got.with_columns(pl.col(c).cast(pl.Float64) for c in ("open", "high", "low", "close")),
                           expected.select(got.columns))
    # A window inside the restated day, and one that only touches the payload.
    inside = pg.get_market_data("NIFTY", "2024-01-10 09:00", "2024-01-10 10:00")
    assert inside.get_column("close").to_list() == restated.filter(
        (pl.col("symbol") == "NIFTY") & pl.col("timestamp").is_between(dt.datetime(2024, 1, 10, 9),
                                                                       dt.datetime(2024, 1, 10, 10))
    ).get_column("close").to_list()
    outside = pg.get_market_data("NIFTY", "2024-01-20", "2024-01-20")
    assert outside.get_column("close").to_list() == data.filter(
        (pl.col("symbol") == "NIFTY") & (pl.col("timestamp").dt.day() == 20)).get_column("close").to_list()
    # The same batch again changes nothing, and writes nothing.
    again = pg.save_market_data(restated)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, day.height)
    assert _chunks(pg, sql) == after


def test_keys_the_patch_holds_merge_without_the_payload(pg: PostgreSQLIntegration, sql,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A day restated again (or a write run again) finds every key in the patch: the
    payloads are not fetched. A key the patch lacks brings back the part of its chunk's
    payload the day falls in (never the whole payload of a patchable chunk), and the
    counts and reads are those of the row tier either way."""
    fetched: list[list[str]] = []
    whole: list[list[str]] = []
    parts: list[tuple[int, int]] = []  # (bytes fetched: not zero, payload size)
    real_whole, real_windows = sealed_store.fetch_payloads, sealed_store.fetch_payload_windows

    def spy_whole(cur: Any, settings: Any, spec: Any, period: dt.date, stored: dict[Any, Any]) -> dict[Any, Any]:
        whole.append(sorted(k[0] for k in stored))
        return real_whole(cur, settings, spec, period, stored)

    def spy(cur: Any, settings: Any, spec: Any, period: dt.date, windows: dict[Any, Any]) -> dict[Any, Any]:
        fetched.append(sorted(k[0] for k in windows))
        out = real_windows(cur, settings, spec, period, windows)
        parts.extend((int(np.count_nonzero(np.frombuffer(b, np.uint8))), b.size) for b in out.values())
        return out

    monkeypatch.setattr(sealed_store, "fetch_payloads", spy_whole)
    monkeypatch.setattr(sealed_store, "fetch_payload_windows", spy)
    data = _sealed_month(pg)
    day = data.filter(pl.col("timestamp").dt.day() == 10)
    first = day.with_columns(pl.col("volume") + 1)
    assert pg.save_market_data(first).updated == day.height
    assert fetched.pop() == ["BANKNIFTY", "NIFTY"]  # the first restatement reads the payloads' windows
    assert len(parts) == 2 and all(got < size / 2 for got, size in parts), parts  # 1 batch of 6, and the footer
    assert all(w == [] for w in whole), whole
    again = day.with_columns(pl.col("volume") + 2)
    result = pg.save_market_data(again)
    assert (result.inserted, result.updated, result.unchanged) == (0, day.height, 0)
    assert fetched.pop() == []  # every key in the patches: no payload travels
    assert pg.save_market_data(again).unchanged == day.height
    assert fetched.pop() == []
    # NIFTY's rows reach one minute past the patched day: its payload is needed; BANKNIFTY's is not.
    nifty_more = data.filter((pl.col("symbol") == "NIFTY") & (pl.col("timestamp") == dt.datetime(2024, 1, 11)))
    mixed = pl.concat([again.with_columns(pl.col("volume") + 1), nifty_more.with_columns(pl.col("volume") + 5)])
    result = pg.save_market_data(mixed)
    assert (result.inserted, result.updated, result.unchanged) == (0, mixed.height, 0)
    assert fetched.pop() == ["NIFTY"]
    expected = _upsert(_upsert(_upsert(data, first), again), mixed)
    got = pg.get_market_data(["NIFTY", "BANKNIFTY"], "2024-01-01", "2024-01-31 23:59", exact=True)
    assert_frame_equal(got.sort("symbol", "timestamp").select("symbol", "timestamp", "volume"),
                       expected.select("symbol", "timestamp", "volume"))


def test_a_restatement_widens_the_chunk_statistics_by_what_it_changed_and_keeps_earlier_ones(
        pg: PostgreSQLIntegration, sql) -> None:
    """A patch's statistics come from the rows a write changed: bounds an earlier
    restatement widened stay widened (min/max only ever widen), and a read filtered on
    them still finds the rows."""
    data = _sealed_month(pg)
    table = pg.db.table("market_data")[:-1] + '_chunks"'

    def bounds() -> tuple[Any, ...]:
        return tuple(sql(f"SELECT min_high, max_high, min_volume, max_volume FROM {table} "
                         "WHERE symbol = 'NIFTY'")[0])

    before = bounds()
    spike = data.filter((pl.col("symbol") == "NIFTY") & (pl.col("timestamp").dt.day() == 3)).head(2).with_columns(
        pl.lit(99_999.0).alias("high"), pl.lit(10**12).alias("volume"))
    pg.save_market_data(spike)
    after_spike = bounds()
    assert float(after_spike[1]) == 99_999.0 and after_spike[3] == 10**12
    assert (after_spike[0], after_spike[2]) == (before[0], before[2])
    calm = data.filter((pl.col("symbol") == "NIFTY") & (pl.col("timestamp").dt.day() == 20)).with_columns(
        pl.col("volume") + 1)
    pg.save_market_data(calm)  # the patch now holds both days; this write changed day 20 only
    assert bounds()[1] == after_spike[1] and bounds()[3] == after_spike[3]
    got = pg.get_market_data("NIFTY", "2024-01-03", "2024-01-03 23:59", exact=True)
    assert got.filter(pl.col("volume") == 10**12).height == 2


def test_rows_added_after_the_newest_move_the_latest_row_and_restated_older_ones_do_not(
        pg: PostgreSQLIntegration, sql) -> None:
    data = _sealed_month(pg)
    newest = data.filter(pl.col("symbol") == "NIFTY").tail(1)
    # Restating the newest row changes what get_latest returns.
    changed = newest.with_columns(pl.col("high").alias("close"))
    pg.save_market_data(changed)
    latest = pg.get_latest("market_data", symbols=["NIFTY"])
    assert latest.get_column("close").to_list() == changed.get_column("close").to_list()
    # A row older than the newest, restated: the newest row stays.
    older = data.filter(pl.col("symbol") == "NIFTY").slice(100, 1).with_columns(pl.col("low").alias("close"))
    pg.save_market_data(older)
    latest = pg.get_latest("market_data", symbols=["NIFTY"])
    assert latest.get_column("close").to_list() == changed.get_column("close").to_list()
    # A bar between the first two and one after the last (still January): inserted.
    first_ts = data.get_column("timestamp").min()
    assert isinstance(first_ts, dt.datetime)
    late = newest.with_columns(pl.col("timestamp") + dt.timedelta(seconds=30), pl.col("low").alias("close"))
    early = newest.with_columns(pl.lit(first_ts + dt.timedelta(seconds=30)).alias("timestamp"))
    result = pg.save_market_data(pl.concat([late, early]))
    assert (result.inserted, result.updated) == (2, 0)
    latest = pg.get_latest("market_data", symbols=["NIFTY"], exact=True)
    assert latest.get_column("timestamp").to_list() == late.get_column("timestamp").to_list()
    chunk = next(c for c in _chunks(pg, sql) if c[0] == "NIFTY")
    assert chunk[4] == 31 * 1440 + 2
    assert (chunk[5], chunk[6]) == (first_ts, late.item(0, "timestamp"))
    got = pg.get_market_data("NIFTY", "2024-01-01", "2024-01-31 23:59:59")
    assert got.height == 31 * 1440 + 2
    assert got.get_column("timestamp").is_sorted()
    series = pg.catalog("market_data").filter(pl.col("symbol") == "NIFTY")
    assert (series.item(0, "row_count"), series.item(0, "sealed")) == (31 * 1440 + 2, 31 * 1440 + 2)


def test_a_patch_past_patch_rows_folds_into_a_new_payload(pg: PostgreSQLIntegration, sql) -> None:
    data = _sealed_month(pg)
    nifty = data.filter(pl.col("symbol") == "NIFTY")
    first = nifty.slice(0, sealed_format.PATCH_ROWS - 100).with_columns(pl.col("volume") + 7)
    pg.save_market_data(first)
    patched = {c[0]: c for c in _chunks(pg, sql)}
    assert patched["NIFTY"][3] is not None
    second = nifty.slice(20_000, 200).with_columns(pl.col("volume") + 9)
    result = pg.save_market_data(second)
    assert result.updated == 200
    folded = {c[0]: c for c in _chunks(pg, sql)}
    assert folded["NIFTY"][3] is None and folded["NIFTY"][2] != patched["NIFTY"][2]
    assert folded["BANKNIFTY"] == patched["BANKNIFTY"]  # not written
    got = pg.get_market_data("NIFTY", "2024-01-01", "2024-01-31 23:59", exact=True)
    assert_frame_equal(got.select("timestamp", "volume"),
                       _upsert(_upsert(nifty, first), second).select("timestamp", "volume"))


def test_unseal_and_delete_range_of_a_patched_month(pg: PostgreSQLIntegration, sql) -> None:
    data = _sealed_month(pg)
    restated = data.filter(pl.col("timestamp").dt.day() == 3).with_columns(pl.col("low").alias("open"))
    pg.save_market_data(restated)
    expected = _upsert(data, restated)
    removed = pg.delete_range("market_data", "NIFTY", "2024-01-20", "2024-01-21 23:59")
    assert removed == 2 * 1440
    expected = expected.filter(~((pl.col("symbol") == "NIFTY")
                                 & pl.col("timestamp").is_between(dt.datetime(2024, 1, 20),
                                                                  dt.datetime(2024, 1, 21, 23, 59))))
    nifty = next(c for c in _chunks(pg, sql) if c[0] == "NIFTY")
    assert nifty[3] is None  # rewritten whole: the patch went into the payload
    pg.unseal("2024-01-01", "2024-01-31")
    assert _chunks(pg, sql) == []
    got = pg.get_market_data(["NIFTY", "BANKNIFTY"], "2024-01-01", "2024-01-31 23:59", exact=True)
    # Exact decimals compared as the doubles the test wrote (two decimals: the nearest
    # double either way; polars' float -> Decimal cast rounds differently across versions).
    assert_frame_equal(got.sort("symbol", "timestamp").select("symbol", "timestamp", "open")
                       .with_columns(pl.col("open").cast(pl.Float64)),
                       expected.select("symbol", "timestamp", "open"))


def test_options_rows_restated_by_strike_and_type(pg: PostgreSQLIntegration, sql) -> None:
    chain = options("NIFTY", [dt.date(2024, 1, 25)], [21500.0, 21600.0], dt.datetime(2024, 1, 2, 9, 15), 300)
    pg.save_options_data(chain)
    pg.seal(dt.date(2024, 2, 1))
    key = ["symbol", "expiry_date", "strike_price", "option_type", "timestamp"]
    one = chain.filter((pl.col("strike_price") == 21600.0) & (pl.col("option_type") == "PE")).head(20)
    restated = one.with_columns(pl.col("high").alias("close"))
    result = pg.save_options_data(restated)
    assert (result.inserted, result.updated) == (0, 20)
    assert all(c[3] for c in _chunks(pg, sql, "options_data"))
    got = pg.get_options_data("NIFTY", "2024-01-01", "2024-01-31", exact=True).sort(key)
    expected = pl.concat([chain.join(restated, on=key, how="anti"), restated]).sort(key)
    assert_frame_equal(got.select([*key, "close"]).with_columns(pl.col("close").cast(pl.Float64),
                                                                 pl.col("strike_price").cast(pl.Float64)),
                       expected.select([*key, "close"]))


# ---------------------------------------------------------------------------------------
# Property: restatements into sealed months answer as the same restatements into rows


def _restatement(seed: int, n: int, *, fraction: int) -> dict[str, pl.DataFrame]:
    """New values for every ``fraction``-th row of :func:`_write`'s data, and new rows
    between its bars (three minutes after each of those rows)."""
    step = dt.timedelta(hours=7)
    data = bars(["NIFTY", "BANKNIFTY", "M&M"], ["1m", "5m"], START, n, step=step, seed=seed + 1)
    chosen = data.gather_every(fraction)
    added = chosen.gather_every(3).with_columns(pl.col("timestamp") + dt.timedelta(minutes=3))
    chain = options("NIFTY", [dt.date(2024, 2, 29), dt.date(2024, 4, 25)], [21500.0, 21600.0],
                    START, n // 4 + 1, step=step * 3, seed=seed + 1).gather_every(fraction)
    return {"market_data": pl.concat([chosen, added]), "options_data": chain}


def _restate(pg: PostgreSQLIntegration, seed: int, n: int, fraction: int) -> list[tuple[int, int, int]]:
    frames = _restatement(seed, n, fraction=fraction)
    out = []
    for result in (pg.save_market_data(frames["market_data"]), pg.save_options_data(frames["options_data"])):
        out.append((result.inserted, result.updated, result.unchanged))
    return out


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.generate])
@given(seed=st.integers(0, 10_000), n=st.integers(20, 300), seal_month=st.integers(2, 8),
       fraction=st.integers(2, 9), window=st.tuples(st.integers(0, 200), st.integers(0, 200)))
@example(seed=3, n=250, seal_month=8, fraction=4, window=(0, 200))
@pytest.mark.slow
def test_restatements_into_patches_answer_as_into_rows(pg: PostgreSQLIntegration, sql, seed: int, n: int,
                                                       seal_month: int, fraction: int,
                                                       window: tuple[int, int]) -> None:
    lo = START + dt.timedelta(days=min(window))
    hi = START + dt.timedelta(days=max(window), hours=5)
    _write(pg, sql, seed, n)
    counts = [_restate(pg, seed, n, fraction), _restate(pg, seed + 7, n, fraction + 1)]
    want = _answers(pg, lo, hi)
    _write(pg, sql, seed, n)
    pg.seal(dt.date(2024, seal_month, 1) if seal_month < 8 else dt.date(2030, 1, 1))
    # Twice: the second restatement upserts into the patches the first one wrote.
    assert [_restate(pg, seed, n, fraction), _restate(pg, seed + 7, n, fraction + 1)] == counts
    if seal_month > 2:
        assert sql(f"SELECT count(*) FROM {pg.db.table('market_data')[:-1]}_chunks\" "
                   "WHERE patch IS NOT NULL")[0][0] > 0
    _same(want, _answers(pg, lo, hi))
    pg.unseal("2020-01-01", "2030-12-31")
    _same(want, _answers(pg, lo, hi))


def test_repair_merges_other_tools_rows_into_a_patched_chunk(pg: PostgreSQLIntegration, sql) -> None:
    """repair_sealed() folds the patch and the row tier's strays into one new payload."""
    data = _sealed_month(pg)
    restated = data.filter((pl.col("symbol") == "NIFTY") & (pl.col("timestamp").dt.day() == 5)).with_columns(
        pl.col("volume") + 3)
    pg.save_market_data(restated)
    table = pg.db.table("market_data")
    stray = restated.item(7, "timestamp")
    sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")  # another tool's row, as before the guard
    sql(f"INSERT INTO {table} (symbol, timestamp, open, high, low, close, volume, timeframe) "
        "VALUES ('NIFTY', %s, 1, 1, 1, 1, 4242, '1m')", (stray,))
    sql(f"ALTER TABLE {table} ENABLE TRIGGER USER")
    assert pg.repair_sealed().rows_moved == 1
    nifty = next(c for c in _chunks(pg, sql) if c[0] == "NIFTY")
    assert nifty[3] is None and nifty[4] == 31 * 1440
    got = pg.get_market_data("NIFTY", "2024-01-01", "2024-01-31 23:59", exact=True)
    expected = _upsert(data.filter(pl.col("symbol") == "NIFTY"), restated)
    want = expected.with_columns(pl.when(pl.col("timestamp") == stray).then(4242).otherwise(pl.col("volume"))
                                 .alias("volume"))
    assert_frame_equal(got.select("timestamp", "volume"), want.select("timestamp", "volume"))


def test_a_known_at_restatement_into_a_patch_reads_as_of_and_reaches_a_tail(pg: PostgreSQLIntegration) -> None:
    """The seams a patch meets: knowledge time (the previous values become history), as-of
    reads before and after the vintage, and the live tail, which receives the restated rows."""
    t0 = dt.datetime(2024, 1, 8, 9, 15)
    sealed = regimes_1min(["AAA", "BBB"], t0, 120)
    pg.save_1min_market_regime(sealed)
    assert pg.seal("2024-02-01", tables="1min").rows_moved == 240
    tail = pg.follow("1min", timeout=0.5, poll_interval=0.05)
    before = dt.datetime.now(dt.timezone.utc)
    restated = sealed.filter(pl.col("symbol") == "AAA").slice(10, 5).with_columns(pl.lit("RESTATED").alias("regime"))
    vintage = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    result = pg.save_1min_market_regime(restated, known_at=vintage)
    assert (result.inserted, result.updated) == (0, 5)
    window = ("2024-01-01", "2024-01-31")
    old = pg.get_1min_market_regimes("AAA", *window, as_of=before)
    new = pg.get_1min_market_regimes("AAA", *window, as_of=vintage + dt.timedelta(days=1))
    assert old.filter(pl.col("regime") == "RESTATED").height == 0
    assert new.filter(pl.col("regime") == "RESTATED")["timestamp"].to_list() == restated["timestamp"].to_list()
    versions = pg.history("1min", "AAA", *window)
    assert versions.filter(pl.col("known_to").is_not_null()).height == 5  # the previous values, now ended
    got = pl.concat([b.frame for b in tail])
    assert sorted(got.select("symbol", "timestamp", "regime").rows()) == sorted(
        restated.select("symbol", "timestamp", "regime").rows())


@settings(max_examples=60, deadline=None, phases=[Phase.explicit, Phase.generate])
@given(rows=st.lists(st.tuples(st.sampled_from(["AAA", "BBB", "M&M"]), st.sampled_from(["1m", "5m"]),
                               st.integers(0, 4 * 31 * 1440)), min_size=1, max_size=60, unique=True),
       in_order=st.booleans())
def test_chunk_groups_match_a_partition_by_series_and_month(rows: list[tuple[str, str, int]], in_order: bool) -> None:
    """The writers' grouping of a batch by chunk (slices when each chunk is one run, else a
    gather) against polars' partition_by: the same rows per (series, month), in their
    order, chunks in order of first appearance, and each row's chunk number."""
    from regime_io._tiers.row_groups import chunk_groups
    if in_order:
        rows = sorted(rows)
    frame = pl.DataFrame({"symbol": [r[0] for r in rows], "timeframe": [r[1] for r in rows],
                          "timestamp": [START + dt.timedelta(minutes=r[2]) for r in rows]}
                         ).with_row_index("n")
    groups, number = chunk_groups(table_spec("market_data"), frame.to_arrow())
    by_month = frame.with_columns(pl.col("timestamp").dt.truncate("1mo").dt.date().alias("period"))
    expected = by_month.partition_by(["symbol", "timeframe", "period"], as_dict=True, maintain_order=True)
    assert list(groups) == [((s, t), p) for s, t, p in expected]
    for part, want in zip(groups.values(), expected.values(), strict=True):
        assert pl.from_arrow(part)["n"].to_list() == want["n"].to_list()
    assert [list(groups)[i] for i in number.tolist()] == [((s, t), p) for s, t, p in
                                                           by_month.select("symbol", "timeframe", "period").rows()]


@pytest.mark.parametrize("in_order", [True, False])
def test_chunk_groups_of_long_runs_match_a_partition(in_order: bool) -> None:
    """A backfill's rows in key order come in long runs of one symbol (each key column's
    codes are then taken from its runs, not hashed row by row): the same groups as
    polars' partition_by, and the same when the rows are shuffled (hashed)."""
    from regime_io._tiers.row_groups import chunk_groups
    minutes = 50_000  # 35 days from START: at least two periods per series
    frame = pl.DataFrame({"symbol": np.repeat(["AAA", "BBB", "M&M"], 2 * minutes),
                          "timeframe": np.tile(np.repeat(["1m", "5m"], minutes), 3),
                          "timestamp": np.tile(np.array([START + dt.timedelta(minutes=m) for m in range(minutes)],
                                                        dtype="datetime64[us]"), 6)}).with_row_index("n")
    if not in_order:
        frame = frame.sample(fraction=1.0, shuffle=True, seed=3)
    groups, number = chunk_groups(table_spec("market_data"), frame.to_arrow())
    by_month = frame.with_columns(pl.col("timestamp").dt.truncate("1mo").dt.date().alias("period"))
    expected = by_month.partition_by(["symbol", "timeframe", "period"], as_dict=True, maintain_order=True)
    assert list(groups) == [((s, t), p) for s, t, p in expected] and len(groups) >= 12  # 2+ months a series
    for part, want in zip(groups.values(), expected.values(), strict=True):
        assert pl.from_arrow(part)["n"].to_list() == want["n"].to_list()
    assert number.tolist() == [list(expected).index(k) for k in
                               by_month.select("symbol", "timeframe", "period").rows()]


def test_month_numbers_match_numpys_calendar() -> None:
    from regime_io._tiers.row_groups import _month_numbers

    edges = [np.datetime64(d, "us").astype(np.int64) + delta for d in ("1969-12-01", "2024-02-01", "2024-03-01")
             for delta in (-1, 0, 1)]
    micros = np.concatenate([np.array(edges), np.random.default_rng(5).integers(-3 * 10**15, 3 * 10**15, 5000)])
    assert (_month_numbers(micros) == micros.astype("datetime64[us]").astype("datetime64[M]").astype(np.int64)).all()
    assert _month_numbers(np.zeros(0, dtype=np.int64)).size == 0


def test_a_write_across_sealed_and_row_months_probes_only_the_rows_left(pg: PostgreSQLIntegration) -> None:
    """On ADBC the collision probe runs after the routing, over the rows left for the row
    tier: stored ones there are merged (staged), fresh ones copied, and the sealed month's
    rows patch their chunks either way."""
    data = _sealed_month(pg)
    february = bars(["NIFTY", "BANKNIFTY"], ["1m"], dt.datetime(2024, 2, 1), 300, seed=6)
    pg.save_market_data(february)
    january = data.filter(pl.col("timestamp").dt.day() == 10).with_columns(pl.col("volume") + 1)
    restated_feb = february.head(100).with_columns(pl.col("volume") + 1)
    result = pg.save_market_data(pl.concat([january, restated_feb]))
    assert (result.method, result.inserted, result.updated) == ("staged", 0, january.height + 100)
    march = bars(["NIFTY", "BANKNIFTY"], ["1m"], dt.datetime(2024, 3, 1), 50, seed=7)
    again = january.with_columns(pl.col("volume") + 1)
    result = pg.save_market_data(pl.concat([again, march]))
    assert (result.method, result.inserted, result.updated) == ("copy", march.height, again.height)
    got = pg.get_market_data(["NIFTY", "BANKNIFTY"], "2024-01-01", "2024-03-31").sort("symbol", "timestamp")
    expected = _upsert(_upsert(_upsert(pl.concat([data, february]), january), restated_feb),
                       pl.concat([again, march]))
    assert_frame_equal(got, expected.select(got.columns).cast(got.schema))


def test_a_few_rows_restated_into_a_sealed_month_stay_in_the_pipeline(pg: PostgreSQLIntegration, sql,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """A small write (<= SMALL_BATCH_ROWS) into a sealed month reads its chunk rows and
    writes its patches on the pipelined psycopg connection: no second run over ADBC."""
    import logging

    data = _sealed_month(pg)
    few = data.filter(pl.col("symbol") == "NIFTY").slice(500, 5).with_columns(pl.col("volume") + 1)
    with caplog.at_level(logging.DEBUG, logger="regime_io"):
        result = pg.save_market_data(few)
    assert (result.method, result.updated) == ("sealed", 5)
    assert not [r for r in caplog.records if "needs ADBC" in r.getMessage()], caplog.text
    assert [c[3] is not None for c in _chunks(pg, sql)] == [False, True]  # BANKNIFTY untouched, NIFTY patched
    got = pg.get_market_data("NIFTY", "2024-01-01", "2024-01-31 23:59")
    expected = _upsert(data.filter(pl.col("symbol") == "NIFTY"), few)
    assert_frame_equal(got, expected.select(got.columns).cast(got.schema))


def _segments(pg: PostgreSQLIntegration, sql: Any, symbol: str) -> tuple[bytes, list[chunk_bytes.Segment]]:
    """The chunk's patch bytes and its segments (``patch_segments``)."""
    (patch,), = sql(f"SELECT patch FROM {pg.db.table('market_data')[:-1]}_chunks\" WHERE symbol = %s", (symbol,))
    segments = chunk_bytes.patch_segments(patch)
    assert segments is not None, "a patch written by this version is framed"
    return bytes(patch), segments


def _segment_bytes(patch: bytes, segments: list[chunk_bytes.Segment]) -> list[bytes]:
    return [patch[s.start:s.start + s.size] for s in segments]


def _day(data: pl.DataFrame, day: int, **changes: pl.Expr) -> pl.DataFrame:
    return data.filter(pl.col("timestamp").dt.day() == day).with_columns(**changes)


def test_days_restated_one_by_one_append_segments_and_a_day_again_replaces_only_its_own(
        pg: PostgreSQLIntegration, sql) -> None:
    data = _sealed_month(pg)
    expected = data
    for day in (10, 14, 12):  # the third between the first two: segments kept in order of time
        restated = _day(data, day, close=pl.col("low"), volume=pl.col("volume") + day)
        assert pg.save_market_data(restated).updated == restated.height
        expected = _upsert(expected, restated)
    patch, segments = _segments(pg, sql, "NIFTY")
    assert [(s.rows, dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=s.first)) for s in segments] == [
        (1440, dt.datetime(2024, 1, d)) for d in (10, 12, 14)]
    kept = _segment_bytes(patch, segments)
    # Day 12 again, other values: its segment is replaced; days 10 and 14 kept byte for byte.
    again = _day(data, 12, close=pl.col("high"), volume=pl.col("volume") + 99)
    result = pg.save_market_data(again)
    assert (result.inserted, result.updated) == (0, again.height)
    expected = _upsert(expected, again)
    patch, segments = _segments(pg, sql, "NIFTY")
    now = _segment_bytes(patch, segments)
    assert len(now) == 3 and now[0] == kept[0] and now[2] == kept[2] and now[1] != kept[1]
    # A write whose span meets days 10 to 14 (a row of each end): one segment replaces the three.
    nifty = data.filter(pl.col("symbol") == "NIFTY")
    ends = pl.concat([_day(nifty, 10).head(1), _day(nifty, 14).tail(1)])
    ends = ends.with_columns(pl.col("volume") * 0 + 5)
    assert pg.save_market_data(ends).updated == 2
    expected = _upsert(expected, ends)
    _, segments = _segments(pg, sql, "NIFTY")
    assert [s.rows for s in segments] == [3 * 1440]
    for exact in (False, True):
        got = pg.get_market_data(["NIFTY", "BANKNIFTY"], "2024-01-01", "2024-01-31 23:59", exact=exact)
        assert_frame_equal(got.sort("symbol", "timestamp").with_columns(
            pl.col(c).cast(pl.Float64) for c in ("open", "high", "low", "close")), expected.select(got.columns))
    window = pg.get_market_data("BANKNIFTY", "2024-01-12 10:00", "2024-01-14 03:00")
    assert_frame_equal(window, expected.filter((pl.col("symbol") == "BANKNIFTY") & pl.col("timestamp").is_between(
        dt.datetime(2024, 1, 12, 10), dt.datetime(2024, 1, 14, 3))).select(window.columns))


def test_past_max_segments_the_patch_is_rewritten_as_one(pg: PostgreSQLIntegration, sql) -> None:
    data = _sealed_month(pg)
    nifty = data.filter(pl.col("symbol") == "NIFTY")
    expected = nifty
    for i in range(chunk_bytes.MAX_SEGMENTS):
        few = nifty.slice(1000 * i, 10).with_columns(pl.col("volume") + 3)
        pg.save_market_data(few)
        expected = _upsert(expected, few)
        assert len(_segments(pg, sql, "NIFTY")[1]) == i + 1
    one_more = nifty.slice(20_000, 10).with_columns(pl.col("volume") + 4)
    pg.save_market_data(one_more)
    expected = _upsert(expected, one_more)
    _, segments = _segments(pg, sql, "NIFTY")
    assert [s.rows for s in segments] == [10 * (chunk_bytes.MAX_SEGMENTS + 1)]
    got = pg.get_market_data("NIFTY", "2024-01-01", "2024-01-31 23:59", exact=True)
    assert_frame_equal(got.select("timestamp", "volume"), expected.select("timestamp", "volume"))


def test_a_patch_written_before_segments_reads_and_the_next_write_frames_it(pg: PostgreSQLIntegration,
                                                                             sql) -> None:
    data = _sealed_month(pg)
    spec = pg.db.spec("market_data")
    # The unframed patch an earlier version wrote: one IPC file of the restated rows.
    restated = _day(data, 5, close=pl.col("low")).filter(pl.col("symbol") == "NIFTY")
    rows = sealed_format.conform_payload(spec, validate(spec, restated))
    sql(f"UPDATE {pg.db.table('market_data')[:-1]}_chunks\" SET patch = %s WHERE symbol = 'NIFTY'",
        (sealed_format.encode(spec, rows),))
    expected = _upsert(data, restated)
    got = pg.get_market_data(["NIFTY", "BANKNIFTY"], "2024-01-01", "2024-01-31 23:59")
    assert_frame_equal(got.sort("symbol", "timestamp"), expected.select(got.columns))
    other = _day(data, 20, volume=pl.col("volume") + 1).filter(pl.col("symbol") == "NIFTY")
    assert pg.save_market_data(other).updated == 1440
    expected = _upsert(expected, other)
    _, segments = _segments(pg, sql, "NIFTY")
    assert [s.rows for s in segments] == [2 * 1440]  # the old patch and the new rows, one segment
    got = pg.get_market_data(["NIFTY", "BANKNIFTY"], "2024-01-01", "2024-01-31 23:59")
    assert_frame_equal(got.sort("symbol", "timestamp"), expected.select(got.columns))


@pytest.mark.parametrize("rows_per_symbol", [1440, 3])  # over ADBC; a small write, pipelined
def test_patch_updates_go_as_one_statement_of_arrays_and_keep_what_they_do_not_change(
        pg: PostgreSQLIntegration, sql, monkeypatch: pytest.MonkeyPatch, rows_per_symbol: int) -> None:
    """The patch updates of one period go as one statement binding one array per column
    (pipeline.run_arrays), on either driver: a restatement into the past of both symbols
    stores the same rows and counts, and keeps each chunk's newest row and statistics
    where the patch brings none (sent as pipeline.optional_text, never NULL: ADBC 1.12
    sends NULL elements as '')."""
    data = _sealed_month(pg)
    sent: list[int] = []  # the parameters of each patch update sent, on either driver

    def counting(cls: Any) -> None:
        real = cls.execute

        def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(query, str) and "FROM (SELECT * FROM unnest(" in query:
                sent.append(query.count("$"))
            return real(self, query, *args, **kwargs)

        monkeypatch.setattr(cls, "execute", execute)

    counting(pipeline.PsycopgCursor)
    counting(adbc_driver_manager.dbapi.Cursor)
    newest = f"SELECT symbol, last_row::text, min_volume FROM {pg.db.table('market_data')[:-1]}_chunks\" ORDER BY 1"
    before = sql(newest)
    day = data.filter(pl.col("timestamp").dt.day() == 12).group_by("symbol", maintain_order=True).head(
        rows_per_symbol)
    restated = day.with_columns(pl.col("volume") + 7)
    result = pg.save_market_data(restated)
    assert (result.inserted, result.updated) == (0, day.height)
    assert len(sent) == 1 and sent[0] == 18  # one statement: 18 arrays, whatever the chunks
    assert sql(newest) == before  # the newest rows (Jan 31st) kept; the volumes' lower bounds too
    assert all(c[3] for c in _chunks(pg, sql))
    got = pg.get_market_data(["NIFTY", "BANKNIFTY"], "2024-01-01", "2024-01-31 23:59")
    assert_frame_equal(got.sort("symbol", "timestamp"), _upsert(data, restated).select(got.columns),
                       check_dtypes=False)


def test_a_patch_update_keeps_bounds_it_has_no_value_for_and_takes_empty_text(pg: PostgreSQLIntegration,
                                                                                sql) -> None:
    """A restated day whose nullable columns are all NULL leaves those columns' chunk
    bounds as they were (NULL: keep), and an empty-text value widens a text column's
    lower bound to '' (sent as "=", not as the '' that stands for NULL in the arrays)."""
    data = regimes_1min(["NIFTY"], dt.datetime(2024, 1, 1), 31 * 1440)
    pg.save("market_regimes_1min", data)
    pg.seal(dt.date(2024, 2, 1))
    bounds = (f"SELECT min_greek_sentiment, max_greek_sentiment, min_ema_signal, max_ema_signal, "
              f"min_confidence FROM {pg.db.table('market_regimes_1min')[:-1]}_chunks\"")
    (before,) = sql(bounds)
    assert before[0] == "bearish" and before[2] is not None and before[4] >= 0
    day = data.filter(pl.col("timestamp").dt.day() == 12)
    restated = day.with_columns(greek_sentiment=pl.lit(""), ema_signal=pl.lit(None, pl.Float64),
                                confidence=pl.lit(-1.0))
    result = pg.save("market_regimes_1min", restated)
    assert (result.inserted, result.updated) == (0, day.height)
    (after,) = sql(bounds)
    assert after == ("", before[1], before[2], before[3], decimal.Decimal("-1.00"))
    got = pg.get_1min_market_regimes("NIFTY", "2024-01-12", "2024-01-12 23:59")
    assert got["greek_sentiment"].to_list() == [""] * day.height and got["ema_signal"].null_count() == day.height
    assert got.filter(pl.col("greek_sentiment") == "").height == day.height


def test_run_arrays_refuses_nulls() -> None:
    """ADBC 1.12 binds a NULL array element as '': run_arrays refuses NULLs before sending."""
    with pytest.raises(ValueError, match="NULL"):
        pipeline.run_arrays(object(), "UPDATE t SET a = v.a FROM ({values}) AS v(a)", pa.table({"a": ["x", None]}),
                            ["TEXT"])


def test_a_merge_finds_changed_values_as_arrow_compares_them() -> None:
    """A merge tells a restated row from a row sent again by comparing its values in
    numpy on their buffers (chunk_merge._differs); it finds exactly the rows Arrow's
    equality finds (nulls and NaNs equal to themselves): decimals of 18 digits and of 38
    (negative ones: the high word), floats with NaN and -0.0, integers, times, sliced
    arrays (an offset into the buffer) and columns with nulls (Arrow's path)."""
    rng = np.random.default_rng(11)
    n = 500

    def pair(values: list[Any], kind: pa.DataType) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
        other = list(values)
        for i in rng.choice(n, 40, replace=False):
            other[i] = values[(i + 1) % n]
        return pa.chunked_array([pa.array(values, kind)]), pa.chunked_array([pa.array(other[:7], kind),
                                                                              pa.array(other[7:], kind)])

    big = [decimal.Decimal(int(v) * 2**64 + 7) for v in rng.integers(-3, 3, n)]  # equal low words
    floats = [float(v) for v in rng.choice([1.5, -0.0, 0.0, np.nan, 2.25], n)]
    cases = [
        pair([decimal.Decimal(int(v)).scaleb(-2) for v in rng.integers(-10**17, 10**17, n)], pa.decimal128(18, 2)),
        pair([decimal.Decimal(int(v)).scaleb(-2) for v in rng.integers(-3, 3, n)], pa.decimal128(10, 2)),
        pair(big, pa.decimal128(38, 0)),
        pair(floats, pa.float64()),
        pair([int(v) for v in rng.integers(-3, 3, n)], pa.int16()),
        pair([dt.datetime(2024, 1, 1) + dt.timedelta(seconds=int(v)) for v in rng.integers(0, 3, n)],
             pa.timestamp("us")),
        pair([None if v == 0 else int(v) for v in rng.integers(0, 3, n)], pa.int64()),
        pair(["a" if v else "b" for v in rng.integers(0, 2, n)], pa.string()),
    ]
    for a, b in cases:
        for x, y in ((a, b), (a.slice(3, 400), b.slice(3, 400))):
            want = np.logical_not(chunk_merge._same(x, y).to_numpy(zero_copy_only=False))
            got = chunk_merge._differs(x, y)
            assert got.dtype == bool and np.array_equal(got, want), x.type
            assert want.any() and not want.all()


@pytest.mark.parametrize("remembered", [True, False])
def test_a_day_restated_again_merges_alike_whether_its_segments_are_remembered_or_decoded(
        pg: PostgreSQLIntegration, sql, monkeypatch: pytest.MonkeyPatch, remembered: bool) -> None:
    """A write into segments this process encoded takes their rows from segment_memo,
    one into segments it did not (forgotten here: another process's) decodes them: the
    counts, the patch bytes and every read are the same either way, and the memo is
    used exactly when it holds the bytes."""
    data = _sealed_month(pg)
    day = data.filter(pl.col("timestamp").dt.day() == 10)
    first = day.with_columns(pl.col("volume") + 1)
    second = day.with_columns(pl.col("volume") + 1).with_columns(
        pl.when(pl.col("timestamp").dt.hour() == 9).then(pl.col("volume") + 5).otherwise(pl.col("volume")))
    assert pg.save_market_data(first).updated == day.height
    decoded: list[int] = []
    real = sealed_format._decode_many

    def counting(spec: Any, payloads: Any, *args: Any, **kwargs: Any) -> Any:
        decoded.append(len(payloads))
        return real(spec, payloads, *args, **kwargs)

    monkeypatch.setattr(sealed_format, "_decode_many", counting)
    if not remembered:
        segment_memo.forget()
    again = pg.save_market_data(second)
    changed = second.filter(pl.col("timestamp").dt.hour() == 9).height
    assert (again.inserted, again.updated, again.unchanged) == (0, changed, day.height - changed)
    assert decoded == ([] if remembered else [2])  # two chunks' segments, built in one pass
    for symbol in ("NIFTY", "BANKNIFTY"):
        patch, segments = _segments(pg, sql, symbol)
        rows = sealed_format.decode_patch(pg.db.spec("market_data"), patch,
                                          sealed_format.fingerprint(pg.db.spec("market_data")))
        want = second.filter(pl.col("symbol") == symbol).sort("timestamp")
        assert rows.column("volume").to_pylist() == want["volume"].to_list() and len(segments) == 1
    got = pg.get_market_data(["NIFTY", "BANKNIFTY"], "2024-01-01", "2024-01-31 23:59").sort("symbol", "timestamp")
    assert_frame_equal(got, _upsert(data, second).select(got.columns), check_dtypes=False)


def test_segment_memo_gives_what_decoding_gives_and_forgets_the_least_recent() -> None:
    """Rows remembered for segment bytes equal (values and types) the rows decoding those
    bytes gives; other bytes, another fingerprint or codec are not found; past MEMO_BYTES
    the least recently used are forgotten."""
    spec = table_spec("market_data")
    rows = sealed_format.conform_payload(spec, validate(spec, bars(["NIFTY"], ["1m"], dt.datetime(2024, 1, 2), 900,
                                                                  seed=3)))
    segment_memo.forget()
    patch = sealed_format.add_segment(spec, None, rows)
    (segment,) = chunk_bytes.patch_segments(patch) or []
    encoded = patch[segment.start:segment.start + segment.size]
    fp = sealed_format.fingerprint(spec)
    known = segment_memo.recall((fp, fp, sealed_format.CODEC, False), encoded)
    assert known is not None
    segment_memo.forget()
    assert segment_memo.recall((fp, fp, sealed_format.CODEC, False), encoded) is None
    fresh = sealed_format.decode_patches(spec, [(patch, [segment])], fp)[0]
    assert known.schema == fresh.schema and known.equals(fresh)
    segment_memo.remember((fp, fp, sealed_format.CODEC, False), [(encoded, known)])
    assert segment_memo.recall(("other", fp, sealed_format.CODEC, False), encoded) is None
    assert segment_memo.recall((fp, fp, sealed_format.RELATIVE_CODEC, False), encoded) is None
    assert segment_memo.recall((fp, fp, sealed_format.CODEC, False), encoded + b"x") is None
    # Reads remember their own (floats) rows, and cut a window out of them as decoding does.
    assert segment_memo.recall((fp, fp, sealed_format.CODEC, True), encoded) is None
    for window in (None, (dt.datetime(2024, 1, 2, 3, 7), dt.datetime(2024, 1, 2, 9, 59, 59)),
                   (dt.datetime(2024, 1, 3), dt.datetime(2024, 1, 4))):
        for floats in (False, True):
            segment_memo.forget()
            cold = sealed_format.decode_patch(spec, patch, fp, window=window, floats=floats)
            warm = sealed_format.decode_patch(spec, patch, fp, window=window, floats=floats)
            direct = sealed_format._decode_many(spec, [pa.py_buffer(encoded)], fp, codec=sealed_format.CODEC,
                                                window=window, floats=floats)
            assert cold.equals(direct) and warm.equals(direct) and warm.schema == direct.schema
            assert segment_memo.recall((fp, fp, sealed_format.CODEC, floats), encoded) is not None
    assert direct.num_rows == 0 and cold.num_rows == 0  # (a window past the segment)
    many = segment_memo.MEMO_BYTES // rows.get_total_buffer_size()
    segment_memo.remember((fp, fp, sealed_format.CODEC, False), [(i.to_bytes(8, "little"), rows)
                                                                 for i in range(many)])
    assert segment_memo.recall((fp, fp, sealed_format.CODEC, False), encoded) is None  # the oldest, forgotten
    assert segment_memo.recall((fp, fp, sealed_format.CODEC, False), (many - 1).to_bytes(8, "little")) is not None
    segment_memo.forget()


def test_segment_memo_counts_the_buffers_a_slice_keeps_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    """A few rows sliced out of a large table keep its buffers alive: the memo counts those
    bytes, not the rows, so a slice of a table past its budget is not kept, and slices of
    one table push each other out once their buffers add up past it."""
    how = ("f", "f", "c", False)
    big = pa.table({"a": np.arange(100_000, dtype=np.int64)})  # 800,000 bytes
    monkeypatch.setattr(segment_memo, "MEMO_BYTES", 1_000_000)
    segment_memo.forget()
    segment_memo.remember(how, [(b"slice", big.slice(10, 5))])
    assert segment_memo.recall(how, b"slice") is not None  # 800,000 referenced: kept
    segment_memo.remember(how, [(b"other", big.slice(20, 5))])  # 1.6 MB counted: the first goes
    assert segment_memo.recall(how, b"slice") is None and segment_memo.recall(how, b"other") is not None
    segment_memo.remember(how, [(b"huge", pa.table({"a": np.arange(200_000, dtype=np.int64)}).slice(0, 3))])
    assert segment_memo.recall(how, b"huge") is None  # past the budget on its own: not kept
    assert segment_memo.recall(how, b"other") is not None
    segment_memo.forget()


def test_a_segment_read_under_another_declaration_is_not_given_the_writers_rows() -> None:
    """Rows are remembered per writer's and reader's declaration: a segment written at
    price scale 2 and read, in the same process, under a declaration of scale 4 comes
    back in the reader's types, as decoding it gives them."""
    two, four = table_spec("market_data"), table_spec("market_data", price_scale=4)
    assert sealed_format.fingerprint(two) != sealed_format.fingerprint(four)
    rows = sealed_format.conform_payload(two, validate(two, bars(["NIFTY"], ["1m"], dt.datetime(2024, 1, 2), 300,
                                                                seed=4)))
    patch = sealed_format.add_segment(two, None, rows)  # remembered, in scale 2's types
    written = sealed_format.fingerprint(two)
    for floats in (False, True):
        warm = sealed_format.decode_patch(four, patch, written, floats=floats)
        segment_memo.forget()
        cold = sealed_format.decode_patch(four, patch, written, floats=floats)
        assert warm.schema == cold.schema == sealed_format.payload_schema(four) and warm.equals(cold)
        assert warm.column("close").to_pylist() == rows.column("close").cast(pa.decimal128(12, 4)).to_pylist()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_starts_with_an_empty_memo_and_a_free_lock() -> None:
    """The memo's lock held by another thread at a fork would never be released in the
    child: the child gets a lock of its own and an empty memo."""
    fp = "f"
    segment_memo.remember((fp, fp, "c", False), [(b"abc", pa.table({"a": [1]}))])
    with segment_memo._lock:  # held (as by another thread) while forking
        pid = os.fork()
        if pid == 0:  # the child: must not block (killed by the alarm if it does), and remembers nothing
            signal.alarm(10)
            code = 0 if segment_memo.recall((fp, fp, "c", False), b"abc") is None else 1
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert segment_memo.recall((fp, fp, "c", False), b"abc") is not None
    segment_memo.forget()


def test_segments_whose_frames_miscount_their_rows_are_decoded_chunk_by_chunk() -> None:
    """A frame's row count that disagrees with its segment's rows (never written by this
    version) is not trusted to cut decoded rows apart: each chunk's segments are decoded
    on their own."""
    spec = table_spec("market_data")
    fp = sealed_format.fingerprint(spec)
    parts = [sealed_format.conform_payload(spec, validate(spec, bars([s], ["1m"], dt.datetime(2024, 1, 2), n, seed=6)))
             for s, n in (("NIFTY", 200), ("TCS", 300))]
    patches = []
    for rows in parts:
        patch = bytearray(sealed_format.add_segment(spec, None, rows))
        struct.pack_into("<I", patch, 8 + 4, rows.num_rows + 7)  # the frame's row count, wrong
        patches.append(bytes(patch))
    segment_memo.forget()
    got = sealed_format.decode_patches(spec, [(p, chunk_bytes.patch_segments(p) or []) for p in patches], fp)
    assert [t.num_rows for t in got] == [200, 300]
    assert all(t.equals(rows) for t, rows in zip(got, parts, strict=True))


@pytest.mark.parametrize("in_order", [True, False])
def test_rows_in_a_span_by_search_or_by_filter(in_order: bool) -> None:
    """sealed_store._in_span: the rows of a chunk's rows whose time lies in a write's span
    (both ends included), found by binary search over rows in time order and by Arrow's
    filter otherwise -- the same rows either way as a plain comparison gives."""
    spec = table_spec("market_data")
    rows = sealed_format.conform_payload(spec, validate(spec, bars(["NIFTY"], ["1m"], dt.datetime(2024, 1, 2), 600,
                                                                  seed=8)))
    if not in_order:
        rows = rows.take(pa.array(np.random.default_rng(3).permutation(rows.num_rows)))
    span = (dt.datetime(2024, 1, 2, 3, 0), dt.datetime(2024, 1, 2, 4, 59))
    got = sealed_store._in_span(spec, rows, span)
    times = rows.column("timestamp").to_pylist()
    assert sorted(got.column("timestamp").to_pylist()) == sorted(t for t in times if span[0] <= t <= span[1])
    assert got.num_rows == 120
    assert sealed_store._in_span(spec, rows, (dt.datetime(2025, 1, 1), dt.datetime(2025, 1, 2))).num_rows == 0
