"""``PostgreSQLIntegration.scan``: lazy frames equal to the eager readers', with pushdown.

Each filter of the grid is collected from ``scan()`` and compared with the eager reader
asked the same question, over the row tier, the sealed tier and both (January sealed,
February in rows). The SQL sent is captured from the engines' debug log.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
from _reading_data import bars, options, regimes_1min
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration, UsageError
from regime_io._read import readers as reading
from regime_io._read import scan as scanning
from tests._helpers import insert_ten_second_bars

START = dt.datetime(2024, 1, 31, 12, 0)  # 2,000 minutes: crosses into February
T1, T2 = dt.datetime(2024, 1, 31, 20, 0), dt.datetime(2024, 2, 1, 3, 30)
EXPIRIES = [dt.date(2024, 2, 1), dt.date(2024, 2, 8)]
# LazyFrame.collect_batches is polars >= 1.34 (the floor, .ci/floors, is 1.31).
needs_collect_batches = pytest.mark.skipif(not hasattr(pl.LazyFrame, "collect_batches"),
                                           reason="LazyFrame.collect_batches needs polars >= 1.34")


def _fill(pg: PostgreSQLIntegration) -> None:
    pg.initialize_database()
    pg.save_market_data(bars(["A", "B", "M&M"], ["1m", "5m"], START, 2000))
    pg.save_1min_market_regime(regimes_1min(["A", "B"], START, 2000))
    pg.save_options_data(options("NIFTY", EXPIRIES, [21500.0, 21600.0, 21700.5], START, 1500))


@pytest.fixture(params=["rows", "sealed", "both"])
def filled(request: pytest.FixtureRequest, pg: PostgreSQLIntegration) -> PostgreSQLIntegration:
    _fill(pg)
    if request.param == "sealed":
        assert pg.seal(dt.date(2030, 1, 1)).rows_moved > 0
    elif request.param == "both":
        assert pg.seal(dt.date(2024, 2, 1)).rows_moved > 0
    return pg


def _bars_filters(pg: PostgreSQLIntegration) -> list[tuple[str, Callable[[pl.LazyFrame], pl.LazyFrame],
                                                           Callable[[], pl.DataFrame]]]:
    col = pl.col
    return [
        ("symbol, timeframe alias, between",
         lambda lf: lf.filter((col("symbol") == "A") & (col("timeframe") == "1min")
                              & col("timestamp").is_between(T1, T2)),
         lambda: pg.get_market_data("A", T1, T2, timeframe="1m")),
        ("is_in, open end", lambda lf: lf.filter(col("symbol").is_in(["B", "M&M"]) & (col("timestamp") >= T1)),
         lambda: pg.get_market_data(["B", "M&M"], T1)),
        ("nothing", lambda lf: lf, lambda: pg.get_market_data(["A", "B", "M&M"])),
        ("timeframe only", lambda lf: lf.filter(col("timeframe") == "5T"),
         lambda: pg.get_market_data(["A", "B", "M&M"], timeframe="5m")),
        ("strict bounds", lambda lf: lf.filter((col("timestamp") > T1) & (col("timestamp") < T2)
                                               & (col("symbol") == "M&M")),
         lambda: pg.get_market_data("M&M", T1, T2).filter((col("timestamp") > T1) & (col("timestamp") < T2))),
        ("projection and head", lambda lf: lf.filter(col("symbol") == "B").select("timestamp", "close").head(7),
         lambda: pg.get_market_data("B", columns=["timestamp", "close"]).head(7)),
        ("unsupported predicate",
         lambda lf: lf.filter((col("close") > col("open")) | (col("volume") < 100)).head(50),
         lambda: pg.get_market_data(["A", "B", "M&M"]).filter((col("close") > col("open")) | (col("volume") < 100))
         .head(50)),
        ("date literal, partly pushed",
         lambda lf: lf.filter((col("timestamp") >= dt.date(2024, 2, 1)) & (col("symbol") == "A")
                              & (col("timestamp").dt.minute() == 0)),
         lambda: pg.get_market_data("A", dt.date(2024, 2, 1)).filter(col("timestamp").dt.minute() == 0)),
        ("contradiction", lambda lf: lf.filter((col("symbol") == "A") & (col("symbol") == "B")),
         lambda: pg.get_market_data("A").head(0)),
    ]


def test_scan_equals_the_eager_readers(filled: PostgreSQLIntegration) -> None:
    pg = filled
    lf = pg.scan("bars")
    for name, query, eager in _bars_filters(pg):
        assert_frame_equal(query(lf).collect(), eager(), check_row_order=True), name


@pytest.mark.parametrize("values", ["inlined", "bound"])
def test_small_ranges_both_ways(filled: PostgreSQLIntegration, monkeypatch: pytest.MonkeyPatch,
                                values: str) -> None:
    # ADBC either way, as the eager readers: values inlined (COPY) or bound as parameters.
    monkeypatch.setattr(reading, "SMALL_RANGE_ROWS", 0 if values == "inlined" else 10**12)
    pg = filled
    got = pg.scan("bars").filter((pl.col("symbol") == "A") & pl.col("timestamp").is_between(T1, T2)).collect()
    assert_frame_equal(got, pg.get_market_data("A", T1, T2))


def test_options_and_regimes(filled: PostgreSQLIntegration) -> None:
    pg = filled
    col = pl.col
    got = pg.scan("options").filter((col("symbol") == "NIFTY") & (col("expiry_date") == EXPIRIES[1])
                                    & col("strike_price").is_in([21500.0, 21700.5]) & (col("option_type") == "call")
                                    & (col("timestamp") <= T2)).collect()
    want = pg.get_options_data("NIFTY", None, T2, expiry=EXPIRIES[1], strikes=[21500, 21700.5], option_type="CE")
    assert want.height > 0
    assert_frame_equal(got, want)
    ranged = pg.scan("options").filter((col("strike_price") > 21500) & (col("expiry_date") <= EXPIRIES[0])
                                       & (col("option_type") == "PE")).collect()
    assert_frame_equal(ranged, pg.get_options_data("NIFTY", expiry=EXPIRIES[0], strikes=[21600, 21700.5],
                                                   option_type="PE"))
    sideways = pg.scan("1min").filter((col("regime") == "sideways") & (col("symbol") == "B")).collect()
    assert_frame_equal(sideways, pg.get_1min_market_regimes("B").filter(col("regime") == "sideways"))
    exact = pg.scan("bars", exact=True).filter(col("symbol") == "A").head(3).collect()
    assert exact.schema["close"] == pl.Decimal(10, 2)


def _sent(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "regime_io._conn.engines")


def test_the_sql_sent_carries_the_pushed_predicate(pg: PostgreSQLIntegration, caplog: pytest.LogCaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _fill(pg)
    monkeypatch.setattr(reading, "SMALL_RANGE_ROWS", 0)  # values inlined: they are in the logged text
    caplog.set_level(logging.DEBUG, logger="regime_io._conn.engines")
    lf = pg.scan("bars")
    lf.filter((pl.col("symbol") == "A") & (pl.col("timeframe") == "1min") & (pl.col("timestamp") > T1)).select(
        "timestamp", "close").head(5).collect()
    sent = _sent(caplog)
    assert "t.\"symbol\" = E'A'" in sent and "t.\"timeframe\" = E'1m'" in sent
    assert "t.\"timestamp\" >= TIMESTAMP '2024-01-31 20:00:00.000001'" in sent
    assert '"open"' not in sent  # projection: only the columns asked for (and the predicate's)
    caplog.clear()
    # polars hands a source the row limit when no filter precedes head(): LIMIT n.
    assert lf.select("timestamp", "close").head(5).collect().height == 5
    assert "LIMIT 5" in _sent(caplog)
    caplog.clear()
    # Not pushable: no LIMIT (polars filters first), the rows are still right.
    got = lf.filter((pl.col("symbol") == "A") & (pl.col("close") * 2 > pl.col("open") * 2)).head(5).collect()
    assert "LIMIT" not in _sent(caplog) and "t.\"symbol\" = E'A'" in _sent(caplog)
    assert_frame_equal(got, pg.get_market_data("A").filter(pl.col("close") > pl.col("open")).head(5))
    # One symbol: its column is left out of the row query and filled in, as the eager readers do.
    for small in (0, 10**12):  # values inlined (COPY), bound
        monkeypatch.setattr(reading, "SMALL_RANGE_ROWS", small)
        caplog.clear()
        one = lf.filter(pl.col("symbol") == "A").collect()
        rows = [m for m in _sent(caplog).splitlines() if '"close"' in m and "ORDER BY" in m]
        assert rows and all('"symbol"' not in m.split(" FROM ")[0] for m in rows), rows
        assert_frame_equal(one, pg.get_market_data("A"))


def test_misuse_is_a_usage_error(pg: PostgreSQLIntegration) -> None:
    _fill(pg)
    with pytest.raises(UsageError, match="unknown table"):
        pg.scan("prices")
    with pytest.raises(UsageError, match="time-series"):
        pg.scan("results")
    # Raised in the source's call (the plan and the first read run there), which polars 1.x
    # and 2 pass on as is (1.x wraps what a source raises while its frames are pulled in
    # its ComputeError).
    with pytest.raises(UsageError, match="timeframe 'tick' is not an accepted value"):
        pg.scan("bars").filter(pl.col("timeframe") == "tick").collect()


@needs_collect_batches
def test_batches_stream(pg: PostgreSQLIntegration) -> None:
    _fill(pg)
    batches: list[Any] = []
    for batch in pg.scan("bars").filter(pl.col("symbol") == "A").collect_batches(chunk_size=500):
        batches.append(batch)
    assert sum(b.height for b in batches) == 4000


def test_counts_joins_and_the_streaming_engine(pg: PostgreSQLIntegration) -> None:
    _fill(pg)
    lf = pg.scan("bars")
    assert lf.select(pl.len()).collect().item() == 3 * 2 * 2000
    assert lf.filter(pl.col("symbol") == "A").select(pl.len()).collect().item() == 2 * 2000
    streamed = lf.filter((pl.col("symbol") == "B") & (pl.col("timeframe") == "5m")).collect(engine="streaming")
    assert_frame_equal(streamed, pg.get_market_data("B", timeframe="5m"))
    regimes = pg.scan("1min").select("symbol", "timestamp", "regime")
    joined = lf.filter(pl.col("timeframe") == "1m").join(regimes, on=["symbol", "timestamp"]).collect()
    assert joined.height == 2 * 2000


def test_what_a_predicate_pushes() -> None:
    """The plan alone (no server): pushed tests, exactness, stored spellings, what stays in polars."""
    from regime_io._read.scan import plan_scan
    from regime_io.tables import TABLES

    bars_ = TABLES["market_data"]
    plan = plan_scan(bars_, pl.col("timestamp").is_between(T1, T2, closed="left") & pl.col("timeframe").is_in(
        ["1min", "5T"]) & (pl.col("symbol") == "A"))
    assert (plan.start, plan.end, plan.end_exclusive) == (T1, T2, True) and plan.exact
    assert plan.equal == {"timeframe": ["1m", "5m"]} and plan.symbols == ["A"]
    assert plan.predicate is not None and '"1m"' in str(plan.predicate)
    partly = plan_scan(bars_, (pl.col("symbol") == "A") & ((pl.col("close") > 1) | (pl.col("volume") == 0)))
    assert partly.symbols == ["A"] and not partly.exact
    # Nanosecond literals would be cut to microseconds: left to polars.
    ns = plan_scan(bars_, pl.col("timestamp") < pl.lit(T1).cast(pl.Datetime("ns")))
    assert ns.end > T2 and not ns.exact
    # Ranges on text would depend on the collation: left to polars.
    text = plan_scan(bars_, pl.col("symbol") > "A")
    assert text.symbols is None and not text.exact
    opts = plan_scan(TABLES["options_data"], (pl.col("strike_price") > 21500) & (pl.col("option_type") == "p"))
    assert opts.lower == {"strike_price": (Decimal(21500), False)} and opts.equal == {"option_type": ["PE"]}


@pytest.mark.parametrize("fault", ["whole predicate", "one term"])
def test_an_unreadable_predicate_pushes_less_and_answers_right(
        pg: PostgreSQLIntegration, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
        fault: str) -> None:
    """polars documents Expr.meta.serialize(format="json") as unstable across versions: a
    shape the parser does not know (injected here into the client-side parser) pushes
    less, polars filters the rest, one warning says so, and the answer is unchanged."""
    _fill(pg)
    assert pg.seal(dt.date(2024, 2, 1)).rows_moved > 0  # January sealed, February in rows
    if fault == "whole predicate":
        def unreadable(*args: Any, **kwargs: Any) -> Any:
            raise KeyError("BinaryExpr")  # what a renamed node does to the parser
        monkeypatch.setattr(scanning, "_rewrite", unreadable)
    else:
        push = scanning._push

        def first_term_unreadable(spec: Any, plan: Any, node: Any) -> bool:
            if "Column" in str(node) and "symbol" in str(node):
                plan.symbols = ["NOT-A-SYMBOL"]  # half-done work of a failing term is dropped
                raise TypeError("unexpected node shape")
            return bool(push(spec, plan, node))
        monkeypatch.setattr(scanning, "_push", first_term_unreadable)
    caplog.set_level(logging.WARNING, logger="regime_io._read.scan")
    got = pg.scan("bars").filter((pl.col("symbol") == "B") & (pl.col("timeframe") == "5m")
                                 & pl.col("timestamp").is_between(T1, T2)).collect()
    assert_frame_equal(got, pg.get_market_data("B", T1, T2, timeframe="5m"))
    assert got.height > 0 and set(got["timestamp"].dt.month()) == {1, 2}
    warnings = [r.getMessage() for r in caplog.records if r.name == "regime_io._read.scan"]
    assert len(warnings) == 1 and "not read" in warnings[0] and "polars filters" in warnings[0], warnings
    head = pg.scan("bars").filter(pl.col("symbol") == "A").head(3).collect()  # no LIMIT pushed: still 3 rows
    assert_frame_equal(head, pg.get_market_data("A").head(3))


def test_scan_without_explain_names(pg: PostgreSQLIntegration, monkeypatch: pytest.MonkeyPatch) -> None:
    """polars before explain_name (1.20 .. 1.44) gets no such keyword; .ci/floors runs the real one."""
    _fill(pg)
    real = scanning.register_io_source

    def old_polars(io_source: Any, *, schema: Any, validate_schema: bool = False) -> Any:
        return real(io_source, schema=schema, validate_schema=validate_schema)
    monkeypatch.setattr(scanning, "register_io_source", old_polars)
    monkeypatch.setattr(scanning, "_EXPLAIN", False)
    assert pg.scan("bars").filter(pl.col("symbol") == "A").select(pl.len()).collect().item() == 4000


@pytest.mark.citus
def test_scan_on_citus(pg: PostgreSQLIntegration, citus_pg: PostgreSQLIntegration) -> None:
    """The same answers from distributed tables (rows and sealed chunks) as from the plain
    server with the same data, sealed alike; none of them empty."""
    moved = []
    for engine in (pg, citus_pg):
        _fill(engine)
        moved.append(engine.seal(dt.date(2024, 2, 1)).rows_moved)
    assert moved[0] > 0 and moved[0] == moved[1]
    plain_filters = _bars_filters(pg)
    for (name, query, _), (_, _, eager) in zip(_bars_filters(citus_pg), plain_filters, strict=True):
        plain = eager()
        assert plain.height > 0 or name == "contradiction", name  # the one filter that matches nothing
        assert_frame_equal(query(pg.scan("bars")).collect(), plain), name
        assert_frame_equal(query(citus_pg.scan("bars")).collect(), plain), name


def test_sealed_chunks_are_pruned_by_the_pushed_predicate(pg: PostgreSQLIntegration,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    _fill(pg)
    pg.seal(dt.date(2030, 1, 1))
    caplog.set_level(logging.DEBUG, logger="regime_io._conn.engines")
    got = pg.scan("bars").filter((pl.col("symbol") == "B") & (pl.col("timeframe") == "5min")
                                 & (pl.col("timestamp") >= dt.datetime(2024, 2, 1))).collect()
    assert_frame_equal(got, pg.get_market_data("B", dt.datetime(2024, 2, 1), timeframe="5m"))
    chunk_reads = [r.getMessage() for r in caplog.records
                   if r.name == "regime_io._conn.engines" and "payload" in r.getMessage()]
    assert chunk_reads, "no chunk was read"
    for sent in chunk_reads:  # only B's 5m chunks of February on: key, period and time bounds
        assert "t.symbol = $1" in sent and "t.period_start >= $2" in sent and "t.last_ts >= $4" in sent
        assert "'B'" in sent and "['5m']" in sent and "datetime.date(2024, 1" not in sent


@pytest.mark.slow
@needs_collect_batches
def test_scan_streams_with_bounded_memory(pg: PostgreSQLIntegration, sql: Any) -> None:
    """Three million bars through collect_batches(): the process holds a small part of them at a time.

    Measured on the second pass: the first one also warms the allocator and polars' pools."""
    import gc

    from test_reading_stream import PeakRSS

    pg.initialize_database()
    rows = 3_000_000
    first = insert_ten_second_bars(pg, sql, rows)
    lf = pg.scan("bars").filter((pl.col("symbol") == "NIFTY") & (pl.col("timestamp") >= first))
    for _ in lf.collect_batches(chunk_size=100_000):
        pass
    gc.collect()
    seen = data_bytes = 0
    with PeakRSS() as rss:
        for frame in lf.collect_batches(chunk_size=100_000):
            seen += frame.height
            data_bytes += frame.estimated_size()
            del frame
    # ~170 MB as polars frames; a full read would grow RSS by more than that.
    assert seen == rows and data_bytes > 150_000_000
    assert rss.growth < data_bytes / 2, f"peak RSS grew {rss.growth / 1e6:.0f} MB for {data_bytes / 1e6:.0f} MB"


def _one_month_read_at_once(pg: PostgreSQLIntegration, sealed: str, caplog: pytest.LogCaptureFixture,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reading, "SMALL_RANGE_ROWS", 0)  # a month's worth, not a few rows
    _fill(pg)
    with PostgreSQLIntegration(settings=pg.settings) as other:
        sealer = other if sealed == "by another process" else pg
        assert sealer.seal(dt.date(2024, 2, 1)).rows_moved > 0
        expected = other.get_market_data("A", T1, T2)
    caplog.set_level(logging.DEBUG, logger="regime_io")
    got = pg.scan("bars").filter((pl.col("symbol") == "A") & pl.col("timestamp").is_between(T1, T2)).collect()
    assert_frame_equal(got, expected)
    assert got.get_column("timestamp").dt.month().unique().sort().to_list() == [1, 2]  # both tiers
    sent = [r.getMessage() for r in caplog.records if r.name == "regime_io._conn.engines"]
    # No stream's lookup of the chunks' fingerprint first (one statement less).
    assert not any(s.startswith("lookup: SELECT (SELECT coalesce(md5(") for s in sent), sent


@pytest.mark.parametrize("sealed", ["by another process", "by this one"])
def test_a_one_symbol_month_is_read_at_once_over_either_tier(pg: PostgreSQLIntegration, sealed: str,
                                                             caplog: pytest.LogCaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """One symbol over at most a month is read as the eager reader reads it (no chunk lookup
    first), also when another process sealed it: this process does not know the table has
    chunks, so the row read's guard must trip and the read go to the chunks."""
    _one_month_read_at_once(pg, sealed, caplog, monkeypatch)


@pytest.mark.citus
def test_a_one_symbol_month_sealed_by_another_process_on_citus(citus_pg: PostgreSQLIntegration,
                                                               caplog: pytest.LogCaptureFixture,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The same on distributed tables: the guard of the row read trips on the coordinator."""
    _one_month_read_at_once(citus_pg, "by another process", caplog, monkeypatch)


def test_the_first_frame_is_read_on_the_thread_that_collects(pg: PostgreSQLIntegration,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """polars calls the source on the collecting thread and pulls its frames on a thread of
    its own (the streaming engine), where the same read ran slower on 2 cores: the first
    piece is read in the call. Later pieces are still read as polars pulls them."""
    _fill(pg)
    read_on: list[str] = []
    tables = scanning._tables

    def recording(*args: Any, **kwargs: Any) -> Any:
        for table in tables(*args, **kwargs):
            read_on.append(threading.current_thread().name)
            yield table

    monkeypatch.setattr(scanning, "_tables", recording)
    got = pg.scan("bars").filter(pl.col("symbol") == "A").collect()
    assert_frame_equal(got, pg.get_market_data("A"))
    assert read_on and read_on[0] == threading.current_thread().name, read_on
