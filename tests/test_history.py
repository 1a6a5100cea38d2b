"""Knowledge time: superseded versions are kept on update, and every reader answers as of an instant."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration
from regime_io.errors import UsageError, WriteError
from tests._helpers import stop_server_when_running
from tests._reading_data import bars, regimes_1min

UTC = dt.timezone.utc
T0 = dt.datetime(2025, 1, 1, tzinfo=UTC)


def _at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def _history_count(pg: PostgreSQLIntegration, sql, key: str) -> int:
    return int(sql(f"SELECT count(*) FROM {pg.db.table(key)[:-1]}_history\"")[0][0])


def test_an_update_keeps_the_previous_version_and_appends_keep_none(pg: PostgreSQLIntegration, sql) -> None:
    data = regimes_1min(["AAA", "BBB"], dt.datetime(2024, 1, 2, 9, 15), 20)
    first = pg.save_1min_market_regime(data)
    assert (first.inserted, first.method) == (40, "copy")
    assert pg.save_1min_market_regime(data).unchanged == 40  # same values: no version
    assert _history_count(pg, sql, "market_regimes_1min") == 0
    changed = data.head(5).with_columns(pl.lit("revised").alias("regime"))
    result = pg.save_1min_market_regime(changed)
    assert (result.inserted, result.updated, result.unchanged) == (0, 5, 0)
    assert _history_count(pg, sql, "market_regimes_1min") == 5
    versions = pg.history("1min", "AAA", "2024-01-02", "2024-01-02")
    assert versions.height == 25
    revised = versions.filter(pl.col("timestamp") == dt.datetime(2024, 1, 2, 9, 15))
    assert revised["regime"].to_list() == [data["regime"][0], "revised"]
    old, new = revised.row(0, named=True), revised.row(1, named=True)
    assert old["known_to"] == new["known_from"] and new["known_to"] is None
    assert old["known_from"] < old["known_to"]


def test_reads_as_of_an_instant_see_the_values_then_known(pg: PostgreSQLIntegration) -> None:
    data = regimes_1min(["AAA"], dt.datetime(2024, 1, 2, 9, 15), 10)
    pg.save_1min_market_regime(data, known_at=_at(0))
    pg.save_1min_market_regime(data.head(4).with_columns(pl.lit("v2").alias("regime")), known_at=_at(10))
    pg.save_1min_market_regime(data.head(2).with_columns(pl.lit("v3").alias("regime")), known_at=_at(20))
    read = lambda at: pg.get_1min_market_regimes("AAA", "2024-01-02", "2024-01-02", as_of=at)  # noqa: E731
    assert read(_at(-1)).height == 0  # nothing was known before the first write
    assert_frame_equal(read(_at(5)), pg.get_1min_market_regimes("AAA", "2024-01-02", "2024-01-02").with_columns(
        pl.Series("regime", data["regime"])))
    assert read(_at(10))["regime"].to_list()[:5] == ["v2", "v2", "v2", "v2", data["regime"][4]]
    assert read(_at(25))["regime"].to_list()[:4] == ["v3", "v3", "v2", "v2"]
    assert_frame_equal(read(dt.datetime.now(UTC)), pg.get_1min_market_regimes("AAA", "2024-01-02", "2024-01-02"))


def test_known_at_from_a_column_writes_vintages_in_order(pg: PostgreSQLIntegration) -> None:
    base = regimes_1min(["AAA"], dt.datetime(2024, 1, 2, 9, 15), 3)
    archive = pl.concat([
        base.with_columns(pl.lit("live").alias("regime"), pl.lit(_at(1)).alias("computed_at")),
        base.head(1).with_columns(pl.lit("model2").alias("regime"), pl.lit(_at(30)).alias("computed_at")),
    ])
    result = pg.save_1min_market_regime(archive, known_at="computed_at")
    assert (result.rows, result.inserted, result.updated) == (4, 3, 1)
    versions = pg.history("1min", "AAA")
    assert versions["regime"].to_list() == ["live", "model2", "live", "live"]
    assert versions["known_from"].to_list()[:2] == [_at(1), _at(30)]
    assert pg.get_1min_market_regimes("AAA", as_of=_at(29))["regime"].to_list() == ["live"] * 3


def test_a_vintage_older_than_the_stored_one_is_refused(pg: PostgreSQLIntegration) -> None:
    data = regimes_1min(["AAA"], dt.datetime(2024, 1, 2, 9, 15), 3)
    pg.save_1min_market_regime(data, known_at=_at(10))
    with pytest.raises(WriteError, match="knowledge order"):
        pg.save_1min_market_regime(data.with_columns(pl.lit("x").alias("regime")), known_at=_at(5))
    assert pg.get_1min_market_regimes("AAA")["regime"].to_list() == data["regime"].to_list()


@pytest.mark.parametrize(("call", "message"), [
    (lambda pg: pg.get_market_data("AAA", as_of=T0),
     r"^market_data keeps no history, so it cannot be read as of .*add it to \[DATABASE\] history_tables"),
    (lambda pg: pg.save_market_data(bars(["AAA"], ["1m"], dt.datetime(2024, 1, 2), 2), known_at=T0),
     r"^market_data keeps no history, so known_at= has no meaning; add it to \[DATABASE\] history_tables"),
    (lambda pg: pg.history("market_data", "AAA"),
     r"^market_data keeps no history; add it to \[DATABASE\] history_tables"),
    (lambda pg: pg.get_1min_market_regimes("AAA", as_of="not a time"),
     r"^as_of: 'not a time' is not an ISO 8601 date or timestamp"),
    (lambda pg: pg.get_1min_market_regimes("AAA", as_of=42), r"^as_of: expected a datetime or an ISO string, got 42$"),
    (lambda pg: pg.save_1min_market_regime(regimes_1min(["AAA"], dt.datetime(2024, 1, 2), 2), known_at="nope"),
     r"^market_regimes_1min: known_at='nope' is neither a column of the data nor a timestamp$"),
])
def test_misuse_is_a_usage_error(pg: PostgreSQLIntegration, call, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        call(pg)


# ---------------------------------------------------------------------------------------
# Random write sequences against a reference computed from the write log

import itertools  # noqa: E402
import threading  # noqa: E402

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

KEYS = [(s, dt.datetime(2024, 1, 2, 9, 15) + dt.timedelta(minutes=m)) for s in ("A", "B") for m in range(4)]
_examples = itertools.count()

writes = st.lists(
    st.tuples(st.integers(1, 30),  # minutes after the previous write
              st.dictionaries(st.sampled_from(range(len(KEYS))), st.sampled_from(["bull", "bear", "flat"]),
                              min_size=1)),
    min_size=1, max_size=6)


def _frame(prefix: str, rows: dict[int, str]) -> pl.DataFrame:
    base = pl.concat([regimes_1min(["X"], dt.datetime(2024, 1, 2), 1)] * len(rows))  # other values fixed
    return base.with_columns(
        pl.Series("symbol", [prefix + KEYS[i][0] for i in rows]),
        pl.Series("timestamp", [KEYS[i][1] for i in rows], dtype=pl.Datetime("us")),
        pl.Series("regime", list(rows.values())))


def _reference(prefix: str, log: list[tuple[dt.datetime, dict[int, str]]], at: dt.datetime,
               timeless: set[int]) -> pl.DataFrame:
    """The rows known at ``at``: per key, the value of the last write at or before ``at``.
    A ``timeless`` key's first version counts as known since always: it was sealed before
    any change (a chunk keeps no per-row insertion time; a row first written into a chunk
    is dated by a "no value yet" record instead)."""
    known: dict[int, str] = {}
    first: dict[int, str] = {}
    for when, rows in log:
        for i, value in rows.items():
            first.setdefault(i, value)
            if when <= at:
                known[i] = value
    for i in timeless:
        known.setdefault(i, first[i])
    rows = sorted(((prefix + KEYS[i][0], KEYS[i][1], v) for i, v in known.items()))
    return pl.DataFrame(rows, schema={"symbol": pl.String, "timestamp": pl.Datetime("us"), "regime": pl.String},
                        orient="row")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking: each example costs seconds
@given(log=writes, seal_after=st.integers(0, 6))
def test_reads_as_of_any_instant_equal_the_write_log(pg: PostgreSQLIntegration, log, seal_after: int) -> None:
    prefix = f"E{next(_examples)}"
    symbols = [prefix + "A", prefix + "B"]
    stamped: list[tuple[dt.datetime, dict[int, str]]] = []
    when = T0
    timeless: set[int] = set()
    value: dict[int, str] = {}
    changed: set[int] = set()
    for n, (gap, rows) in enumerate(log):
        if n == seal_after:  # seal January mid-sequence: later restatements merge into chunks
            pg.seal(dt.date(2024, 2, 1), symbols=symbols)
            timeless = set(value) - changed
        when = when + dt.timedelta(minutes=gap)
        pg.save_1min_market_regime(_frame(prefix, rows), known_at=when)
        stamped.append((when, rows))
        for i, v in rows.items():
            if i in value and value[i] != v:
                changed.add(i)
            value[i] = v
    instants = [T0 - dt.timedelta(minutes=1)] + [w + d for w, _ in stamped
                                                 for d in (-dt.timedelta(microseconds=1), dt.timedelta(0))]
    for at in [*instants, dt.datetime.now(UTC)]:
        got = pg.get_1min_market_regimes(symbols=symbols, columns=["symbol", "timestamp", "regime"], as_of=at)
        assert_frame_equal(got, _reference(prefix, stamped, at, timeless), check_row_order=True)
    current = pg.get_1min_market_regimes(symbols=symbols, columns=["symbol", "timestamp", "regime"])
    assert_frame_equal(current, _reference(prefix, stamped, stamped[-1][0], timeless))
    _assert_chains(pg.history("1min", symbols=symbols))


def _assert_chains(versions: pl.DataFrame, key: tuple[str, ...] = ("symbol", "timestamp")) -> None:
    """Per key: versions ordered by known_from, each ending where the next starts, one current."""
    for _, chain in versions.group_by(list(key), maintain_order=True):
        starts, ends = chain["known_from"].to_list(), chain["known_to"].to_list()
        assert ends[-1] is None and all(e is not None for e in ends[:-1]), chain
        for (s0, e0), s1 in zip(zip(starts, ends, strict=True), starts[1:], strict=False):
            assert e0 == s1, chain  # gap-free and non-overlapping
            assert s0 is None or s0 < e0, chain


# ---------------------------------------------------------------------------------------
# Concurrency and crashes


def test_concurrent_rewrites_of_the_same_rows_leave_one_gap_free_chain_per_key(pg: PostgreSQLIntegration) -> None:
    data = regimes_1min(["AAA"], dt.datetime(2024, 1, 2, 9, 15), 30)
    pg.save_1min_market_regime(data)
    writers, rounds = 4, 5
    errors: list[BaseException] = []

    def rewrite(w: int) -> None:
        try:
            for r in range(rounds):
                result = pg.save_1min_market_regime(data.with_columns(pl.lit(f"w{w}r{r}").alias("regime")))
                assert result.updated == data.height
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=rewrite, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    versions = pg.history("1min", "AAA")
    assert versions.height == data.height * (1 + writers * rounds)
    _assert_chains(versions)
    # The current value is the last version of each chain, and as of any version's start
    # the reader returns that version for its key.
    last = versions.filter(pl.col("known_to").is_null())
    assert_frame_equal(last.drop("known_from", "known_to"), pg.get_1min_market_regimes("AAA"))
    probe = versions.filter(pl.col("timestamp") == data["timestamp"][0]).row(7, named=True)
    at = pg.get_1min_market_regimes("AAA", as_of=probe["known_from"])
    assert at.filter(pl.col("timestamp") == probe["timestamp"])["regime"].to_list() == [probe["regime"]]


@pytest.mark.slow
def test_a_server_killed_mid_rewrite_leaves_the_chains_intact(server, pg: PostgreSQLIntegration) -> None:


    from regime_io.errors import ServerUnavailableError

    if not server.controllable:
        pytest.skip("the test server is an external DSN: it cannot be stopped from here")
    data = regimes_1min(["AAA", "BBB"], dt.datetime(2024, 1, 2, 9, 15), 20_000)
    pg.save_1min_market_regime(data)
    pg.save_1min_market_regime(data.with_columns(pl.lit("second").alias("regime")))
    before = pg.history("1min", symbols=["AAA", "BBB"])
    # Stop the server while the rewrite moves versions into the history.
    watcher, fired, cancel = stop_server_when_running(server, "INSERT INTO %_history%")
    watcher.start()
    try:
        # Lost mid-statement, then the retry finds the server down: either way nothing landed.
        with pytest.raises(ServerUnavailableError,
                           match=r"nothing from this call was committed|cannot reach the primary server"):
            pg.save_1min_market_regime(data.with_columns(pl.lit("third").alias("regime")))
    finally:
        cancel.set()
        watcher.join()
        if fired.is_set():
            server.start()
    assert fired.is_set()
    after = pg.history("1min", symbols=["AAA", "BBB"])
    assert_frame_equal(after, before)  # nothing of the cut-off rewrite, the chains as they were
    _assert_chains(after)
    assert pg.save_1min_market_regime(data.with_columns(pl.lit("third").alias("regime"))).updated == data.height
    _assert_chains(pg.history("1min", symbols=["AAA", "BBB"]))


# ---------------------------------------------------------------------------------------
# Every reader as of an instant answers what it answered then


@pytest.fixture
def pg_all(settings) -> PostgreSQLIntegration:
    """Every table keeps history."""
    from regime_io.config import settings_replace
    from regime_io.tables import TABLES

    integration = PostgreSQLIntegration(settings=settings_replace(settings, history_tables=tuple(TABLES)))
    integration.initialize_database()
    yield integration
    integration.close()


@pytest.mark.parametrize("sealed", [False, True], ids=["rows", "sealed"])
def test_every_reader_as_of_answers_what_it_answered_then(pg_all: PostgreSQLIntegration, sealed: bool) -> None:
    from tests._reading_data import options, regimes

    pg = pg_all
    day = dt.datetime(2024, 1, 2, 9, 15)
    bars_v1 = bars(["AAA", "BBB"], ["1m"], day, 60)
    regimes_v1 = regimes_1min(["AAA"], day, 60)
    tf_v1 = regimes(["AAA"], ["5m"], day, 12)
    opts_v1 = options("AAA", [dt.date(2024, 1, 25)], [100.0, 110.0], day, 20)
    result_v1 = {"symbol": "AAA", "algorithm": "grid", "timeframe": "1m", "run_id": "r1",
                 "fitness_value": 1.5, "parameters": {"window": 20},
                 "start_date": dt.date(2024, 1, 1), "end_date": dt.date(2024, 1, 31)}
    k1, k2 = _at(0), _at(60)
    pg.save_market_data(bars_v1, known_at=k1)
    pg.save_1min_market_regime(regimes_v1, known_at=k1)
    pg.save_market_regime(tf_v1, known_at=k1)
    pg.save_options_data(opts_v1, known_at=k1)
    pg.save_optimization_result(result_v1, known_at=k1)
    if sealed:
        pg.seal(dt.date(2024, 2, 1))
    readers = {
        "bars": lambda **kw: pg.get_market_data(["AAA", "BBB"], "2024-01-02", "2024-01-02", **kw),
        "bars_exact": lambda **kw: pg.get_market_data("AAA", "2024-01-02", "2024-01-02", exact=True, **kw),
        "resampled": lambda **kw: pg.get_market_data("AAA", "2024-01-02", "2024-01-02", resample="15m", **kw),
        "regimes_1min": lambda **kw: pg.get_1min_market_regimes("AAA", "2024-01-02", "2024-01-02", **kw),
        "regimes": lambda **kw: pg.get_market_regimes("AAA", "2024-01-02", "2024-01-02", **kw),
        "options": lambda **kw: pg.get_options_data("AAA", "2024-01-02", "2024-01-02", **kw),
        "chain": lambda **kw: pg.get_option_chain("AAA", "2024-01-02 09:30", **kw),
        "latest": lambda **kw: pg.get_latest("bars", **kw),
        "latest_1min": lambda **kw: pg.get_latest_1min_market_regime("AAA", **kw),
        "distribution": lambda **kw: pg.get_market_regime_distribution("AAA", "2024-01-02", "2024-01-02", **kw),
        "transitions": lambda **kw: pg.get_regime_transitions("AAA", "2024-01-02", "2024-01-02", **kw),
        "results": lambda **kw: pg.get_optimization_results("AAA", **kw),
        "stream": lambda **kw: pl.from_arrow(pa_concat(pg.iter_market_data("AAA", "2024-01-02", "2024-01-02",
                                                                           batch_rows=25, return_type="arrow", **kw))),
    }
    then = {name: read() for name, read in readers.items()}
    # Revisions at k2: changed bars and regimes, a new bar, a re-run result.
    pg.save_market_data(bars_v1.head(30).with_columns(pl.col("volume") + 1), known_at=k2)
    pg.save_market_data(bars(["AAA"], ["1m"], day + dt.timedelta(minutes=60), 5), known_at=k2)
    pg.save_1min_market_regime(regimes_v1.with_columns(pl.lit("revised").alias("regime")), known_at=k2)
    pg.save_market_regime(tf_v1.with_columns(pl.lit("revised").alias("regime")), known_at=k2)
    pg.save_options_data(opts_v1.with_columns(pl.col("volume") + 7), known_at=k2)
    pg.save_optimization_result({**result_v1, "fitness_value": 9.5}, known_at=k2)
    for name, read in readers.items():
        assert not read().equals(then[name]) or name in ("latest_1min",), name  # the revision is visible now
        assert_frame_equal(read(as_of=k1 + dt.timedelta(minutes=1)), then[name], check_dtypes=True), name


def pa_concat(batches):
    import pyarrow as pa

    return pa.Table.from_batches(list(batches))


def test_cleanup_drops_versions_superseded_longer_ago_than_history_days(settings) -> None:
    from regime_io.config import settings_replace

    now = dt.datetime.now(UTC)
    data = regimes_1min(["AAA"], dt.datetime.now().replace(microsecond=0) - dt.timedelta(days=1), 5)
    for days in (None, 2):
        with PostgreSQLIntegration(settings=settings_replace(settings, history_days=days)) as pg:
            pg.initialize_database()
            if days is None:
                pg.save_1min_market_regime(data, known_at=now - dt.timedelta(days=10))
                pg.save_1min_market_regime(data.with_columns(pl.lit("b").alias("regime")),
                                           known_at=now - dt.timedelta(days=5))
                pg.save_1min_market_regime(data.with_columns(pl.lit("c").alias("regime")))
            report = pg.cleanup_old_data(3650, tables=["1min"])
            assert report.tables[0].versions_removed == (0 if days is None else 5)
            assert report.rows_removed == 0
            kept = pg.history("1min", "AAA").group_by("timestamp").len()["len"].to_list()
            assert kept == [3] * 5 if days is None else kept == [2] * 5
    with PostgreSQLIntegration(settings=settings) as pg:  # a row retention takes its rows' versions along
        report = pg.cleanup_old_data(0, tables=["1min"])
        assert report.tables[0].versions_removed == 5 and pg.history("1min", "AAA").height == 0


# ---------------------------------------------------------------------------------------
# Point-in-time as-of join


def _live_then_revised(pg: PostgreSQLIntegration, n: int = 10) -> tuple[pl.DataFrame, pl.DataFrame]:
    """1-minute regimes written 30 s after their timestamps, all rewritten a day later."""
    start = dt.datetime(2024, 1, 2, 9, 15)
    live = regimes_1min(["AAA"], start, n).with_columns(
        (pl.col("timestamp") + dt.timedelta(seconds=30)).dt.replace_time_zone("UTC").alias("computed_at"))
    pg.save_1min_market_regime(live, known_at="computed_at")
    revised = live.drop("computed_at").with_columns(pl.lit("revised").alias("regime"))
    pg.save_1min_market_regime(revised, known_at=dt.datetime(2024, 1, 3, tzinfo=UTC))
    bars_ = pl.DataFrame({"symbol": ["AAA"] * n,
                          "timestamp": [start + dt.timedelta(minutes=m, seconds=40) for m in range(n)]})
    return live, bars_


def test_point_in_time_gives_each_bar_the_regime_known_at_its_timestamp(pg: PostgreSQLIntegration) -> None:
    live, bars_ = _live_then_revised(pg)
    today = pg.asof_regimes(bars_)
    assert today["regime"].to_list() == ["revised"] * 10  # the look-ahead a backtest must not see
    pit = pg.asof_regimes(bars_, point_in_time=True)
    assert pit["regime"].to_list() == live["regime"].to_list()  # bar at m:40 knew the m:00 row (out at m:30)
    assert pit["regime_timestamp"].to_list() == live["timestamp"].to_list()
    # A bar at m:20 did not know the m:00 row yet: it gets the previous minute's.
    early = bars_.with_columns(pl.col("timestamp") - dt.timedelta(seconds=20))
    pit_early = pg.asof_regimes(early, point_in_time=True)
    assert pit_early["regime"].to_list() == [None, *live["regime"].to_list()[:-1]]
    lagged = pg.asof_regimes(early, point_in_time=True, known_lag="15s")  # known by m:35
    assert lagged["regime"].to_list() == live["regime"].to_list()
    assert pg.asof_regimes(early, point_in_time=True, tolerance="30s")["regime"].null_count() == 10
    assert_frame_equal(pit.select(bars_.columns), bars_)  # the bars, in their order


def test_point_in_time_misuse(pg: PostgreSQLIntegration) -> None:
    _, bars_ = _live_then_revised(pg, 2)
    with pytest.raises(UsageError, match=r"^known_lag only applies with point_in_time=True$"):
        pg.asof_regimes(bars_, known_lag="5s")
    with pytest.raises(UsageError, match=r"^point_in_time must be True or False, got 'yes'$"):
        pg.asof_regimes(bars_, point_in_time="yes")


def test_cli_reading_commands_take_as_of(pg: PostgreSQLIntegration, server, settings, tmp_path) -> None:
    from typer.testing import CliRunner

    from regime_io.cli import app

    data = regimes_1min(["AAA"], dt.datetime(2024, 1, 2, 9, 15), 5).with_columns(pl.lit("old").alias("regime"))
    pg.save_1min_market_regime(data, known_at=_at(0))
    pg.save_1min_market_regime(data.with_columns(pl.lit("new").alias("regime")), known_at=_at(60))
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, ["--dsn", server.url(), "--schema", settings.schema, *args])
        assert result.exit_code == 0, result.output
        return result.output

    assert "old" in run("latest", "AAA", "--as-of", "2025-01-01T00:30:00+00:00")
    assert "new" in run("latest", "AAA")
    assert "old" in run("distribution", "AAA", "--start", "2024-01-02", "--end", "2024-01-02",
                        "--as-of", "2025-01-01 00:30")
    assert "old" in run("transitions", "AAA", "--start", "2024-01-02", "--end", "2024-01-02",
                        "--as-of", "2025-01-01 00:30")
    out = tmp_path / "then.parquet"
    run("export", "--table", "1min", "--symbol", "AAA", "--start", "2024-01-02", "--end", "2024-01-02",
        "-o", str(out), "--as-of", "2025-01-01 00:30")
    assert pl.read_parquet(out)["regime"].to_list() == ["old"] * 5
    refused = runner.invoke(app, ["--dsn", server.url(), "--schema", settings.schema, "latest", "--table", "bars",
                                  "--as-of", "2025-01-01"])
    assert refused.exit_code != 0 and "keeps no history" in refused.output


def test_scan_as_of_equals_the_eager_reader_as_of(pg: PostgreSQLIntegration) -> None:
    data = regimes_1min(["AAA", "BBB"], dt.datetime(2024, 1, 2, 9, 15), 30)
    pg.save_1min_market_regime(data, known_at=_at(0))
    pg.save_1min_market_regime(data.head(10).with_columns(pl.lit("new").alias("regime")), known_at=_at(60))
    pg.seal(dt.date(2024, 2, 1), symbols=["BBB"])  # one symbol sealed, one as rows
    at = _at(30)
    lazy = pg.scan("1min", as_of=at).filter(pl.col("timestamp") >= dt.datetime(2024, 1, 2, 9, 20))
    eager = pg.get_1min_market_regimes(["AAA", "BBB"], "2024-01-02 09:20", "2024-01-02", as_of=at)
    assert_frame_equal(lazy.collect(), eager)
    assert "new" not in eager["regime"].to_list() and eager.height == 50
    assert_frame_equal(pg.scan("1min", as_of=at).filter(pl.col("symbol") == "AAA").collect(),
                       pg.get_1min_market_regimes("AAA", as_of=at))


@pytest.mark.slow
def test_the_knowledge_benchmark_runs(server, capsys) -> None:
    from benchmarks.knowledge import main

    assert main(["--dsn", server.url(), "--bars", "7500", "--days", "25", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "restate 1 day x 10 symbols" in out and "as_of" in out


@pytest.mark.citus
def test_knowledge_time_on_citus_matches_the_plain_server(citus_pg: PostgreSQLIntegration,
                                                          pg: PostgreSQLIntegration) -> None:
    """The versioned merge, as-of reads, history() and the point-in-time join on a
    coordinator with two workers give the plain server's answers."""
    answers = []
    for db in (pg, citus_pg):
        data = regimes_1min(["AAA", "BBB"], dt.datetime(2024, 1, 2, 9, 15), 20)
        db.save_1min_market_regime(data, known_at=_at(0))
        result = db.save_1min_market_regime(data.head(8).with_columns(pl.lit("v2").alias("regime")),
                                            known_at=_at(10))
        assert (result.inserted, result.updated) == (0, 8)
        revised = db.save_1min_market_regime(data.head(3).with_columns(pl.lit("v3").alias("regime")))
        assert (revised.inserted, revised.updated) == (0, 3)
        versions = db.history("1min", symbols=["AAA", "BBB"])
        _assert_chains(versions)
        bars_ = data.select("symbol", "timestamp").with_columns(pl.col("timestamp") + dt.timedelta(seconds=5))
        answers.append([
            db.get_1min_market_regimes(["AAA", "BBB"], as_of=_at(5)),
            db.get_1min_market_regimes(["AAA", "BBB"], as_of=_at(15)),
            db.get_latest_1min_market_regime(as_of=_at(5)),
            versions.drop("known_from", "known_to"),
            db.asof_regimes(bars_, point_in_time=True, known_lag="400d").drop("regime_timestamp"),
        ])
    for plain, citus in zip(*answers, strict=True):
        assert_frame_equal(plain, citus)
