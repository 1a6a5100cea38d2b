"""The live tail: rows delivered once, in commit order per key, late commits included,
rollbacks never; cursors resume exactly; sealed-tier writes and other tools' writes
are delivered; misuse is a UsageError."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pyarrow.ipc as pa_ipc
import pytest
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration, UsageError
from regime_io.config import Settings
from tests._helpers import eventually

T0 = dt.datetime(2024, 5, 6, 9, 15)
ROOT = Path(__file__).resolve().parent.parent


def regimes(symbols: list[str], minute: int, tag: str = "UP", confidence: float = 0.5) -> pl.DataFrame:
    return pl.DataFrame({"symbol": symbols, "timestamp": [T0 + dt.timedelta(minutes=minute)] * len(symbols),
                         "regime": [tag] * len(symbols), "confidence": [confidence] * len(symbols)})


def keys(frame: pl.DataFrame) -> list[tuple[str, dt.datetime, str]]:
    return [(r["symbol"], r["timestamp"], r["regime"]) for r in frame.iter_rows(named=True)]


def drain(pg: PostgreSQLIntegration[Any], **kwargs: Any) -> tuple[list[pl.DataFrame], str | None]:
    frames, cursor = [], None
    kwargs.setdefault("timeout", 0.5)
    kwargs.setdefault("poll_interval", 0.05)
    with pg.follow("1min", **kwargs) as batches:
        for batch in batches:
            frames.append(batch.frame)
            cursor = batch.cursor
    return frames, cursor


def test_new_and_changed_rows_arrive_once_rollbacks_never(pg: PostgreSQLIntegration[Any]) -> None:
    pg.save_1min_market_regime(regimes(["A", "B"], 0))  # before the tail: not delivered
    tail = pg.follow("1min", timeout=1.0, poll_interval=0.05)
    pg.save_1min_market_regime(regimes(["A", "B"], 1))
    pg.save_1min_market_regime(regimes(["A"], 0, tag="DOWN"))  # an update of a row stored before
    pg.save_1min_market_regime(regimes(["A"], 0, tag="DOWN"))  # unchanged: nothing new

    def boom(done: int, total: int | None) -> None:
        raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError, match=r"^rolled back$"):
        pg.save("1min", regimes(["C"], 5), progress=boom)
    got = [row for batch in tail for row in keys(batch.frame)]
    assert sorted(got) == sorted([("A", T0 + dt.timedelta(minutes=1), "UP"), ("B", T0 + dt.timedelta(minutes=1), "UP"),
                                  ("A", T0, "DOWN")])


def test_the_frame_has_the_range_readers_columns_and_dtypes(pg: PostgreSQLIntegration[Any]) -> None:
    tail = pg.follow("1min", timeout=0.5, poll_interval=0.05)
    pg.save_1min_market_regime(regimes(["A", "B"], 0).with_columns(pl.lit(0.05).alias("ema_signal")))
    frame = pl.concat([b.frame for b in tail])
    stored = pg.get_1min_market_regimes(["A", "B"])
    assert_frame_equal(frame.sort("symbol", "timestamp"), stored.sort("symbol", "timestamp"))
    exact = next(iter(pg.follow("1min", since=T0, exact=True, return_type="arrow", timeout=0.1))).frame
    assert str(exact.schema.field("confidence").type) == "decimal128(5, 2)"
    pandas = next(iter(pg.follow("1min", since=T0, return_type="pandas", timeout=0.1))).frame
    assert list(pandas.columns) == stored.columns


def test_a_late_commit_is_delivered_after_the_rows_committed_before_it(pg: PostgreSQLIntegration[Any],
                                                                      settings: Settings) -> None:
    """A transaction that started first and commits last (another tool's plain INSERT:
    the column default stamps it) is delivered when it commits, not skipped."""
    tail = pg.follow("1min", timeout=0.7, poll_interval=0.05)
    table = f'"{settings.schema}"."{settings.table_name("market_regimes_1min")}"'
    url = pg.db.resolved.url(redact=False)
    pg.save_1min_market_regime(regimes(["A"], 0))  # creates the partitions
    with psycopg.connect(url) as slow:
        slow.execute(f"INSERT INTO {table} (symbol, timestamp, regime, confidence) VALUES ('LATE', %s, 'X', 1)",
                     (T0,))
        pg.save_1min_market_regime(regimes(["B"], 0))
        first = next(tail)
        assert sorted(keys(first.frame)) == [("A", T0, "UP"), ("B", T0, "UP")]
        slow.commit()
    rest = [row for batch in tail for row in keys(batch.frame)]
    assert rest == [("LATE", T0, "X")]


def test_other_tools_take_part_with_the_column_default(pg: PostgreSQLIntegration[Any], settings: Settings) -> None:
    pg.save_1min_market_regime(regimes(["A"], 0))
    tail = pg.follow("1min", timeout=0.5, poll_interval=0.05)  # no NOTIFY from these writes: found by polling
    table = f'"{settings.schema}"."{settings.table_name("market_regimes_1min")}"'
    with psycopg.connect(pg.db.resolved.url(redact=False), autocommit=True) as conn:
        conn.execute(f"UPDATE {table} SET regime = 'SQL', change_xid = DEFAULT WHERE symbol = 'A'")
        conn.execute(f"UPDATE {table} SET confidence = 0.9 WHERE symbol = 'A'")  # no stamp: not seen
    assert [row for b in tail for row in keys(b.frame)] == [("A", T0, "SQL")]


def test_since_reads_both_tiers_in_one_snapshot_then_follows(pg: PostgreSQLIntegration[Any]) -> None:
    old = pl.concat([regimes(["A", "B"], m) for m in range(3)]).with_columns(
        pl.col("timestamp").dt.offset_by("-2mo"))
    pg.save_1min_market_regime(old)
    pg.seal(T0.date() - dt.timedelta(days=20))
    assert pg.catalog("1min").height == 2
    pg.save_1min_market_regime(pl.concat([regimes(["A", "B"], m) for m in range(3)]))
    since = T0 - dt.timedelta(days=62)
    frames, cursor = drain(pg, since=since)
    assert len(frames) == 1
    expected = pg.get_1min_market_regimes(["A", "B"], start_date=since)
    assert_frame_equal(frames[0].sort("symbol", "timestamp"), expected.sort("symbol", "timestamp"))
    only_a, _ = drain(pg, since=since, symbols="A")
    assert set(only_a[0]["symbol"]) == {"A"} and only_a[0].height == 6
    pg.save_1min_market_regime(regimes(["A"], 9))
    frames, _ = drain(pg, cursor=cursor)
    assert [keys(f) for f in frames] == [[("A", T0 + dt.timedelta(minutes=9), "UP")]]


def test_writes_into_sealed_months_are_delivered(pg: PostgreSQLIntegration[Any]) -> None:
    old = pl.concat([regimes(["A", "B"], m) for m in range(4)]).with_columns(
        pl.col("timestamp").dt.offset_by("-2mo"))
    pg.save_1min_market_regime(old)
    pg.seal(T0.date() - dt.timedelta(days=20))
    tail = pg.follow("1min", timeout=0.5, poll_interval=0.05)
    restated = old.filter(pl.col("symbol") == "A").head(2).with_columns(pl.lit("RESTATED").alias("regime"))
    unchanged = old.filter(pl.col("symbol") == "B").head(1)
    fresh = regimes(["A"], 30, tag="NEW").with_columns(pl.col("timestamp").dt.offset_by("-2mo"))
    result = pg.save_1min_market_regime(pl.concat([restated, unchanged, fresh]))
    assert (result.inserted, result.updated, result.unchanged) == (1, 2, 1)
    assert result.method == "sealed"
    got = [row for b in tail for row in keys(b.frame)]
    assert sorted(got) == sorted(keys(pl.concat([restated, fresh])))


def _entry_kinds(pg: PostgreSQLIntegration[Any], settings: Settings) -> list[str]:
    table = f'"{settings.schema}"."{settings.table_prefix}sealed_changes"'
    with psycopg.connect(pg.db.resolved.url(redact=False), autocommit=True) as conn:
        payloads = [bytes(r[0]) for r in conn.execute(f"SELECT payload FROM {table} ORDER BY seq")]
    return [(pa_ipc.open_stream(p).schema.metadata or {}).get(b"regime_io.change", b"rows").decode()
            for p in payloads]


def test_a_sealed_backfill_is_delivered_from_its_chunks(pg: PostgreSQLIntegration[Any], settings: Settings) -> None:
    # New chunks go to the change log as their payloads (one entry), restated rows of an
    # existing chunk as rows: the tail delivers both exactly, in the declared types.
    tail = pg.follow("1min", timeout=0.5, poll_interval=0.05, exact=True)
    first = pl.concat([regimes(["A", "B"], m, confidence=0.25 + m / 100) for m in range(3)])
    assert pg.save("1min", first, tier="sealed").method == "sealed"
    restated = regimes(["A"], 1, tag="RESTATED", confidence=0.75)
    more = regimes(["C"], 0, tag="NEW")  # another new chunk, in the same write
    result = pg.save("1min", pl.concat([restated, more]), tier="sealed")
    assert (result.inserted, result.updated) == (1, 1)
    assert _entry_kinds(pg, settings) == ["chunks", "rows", "chunks"]
    frames = [b.frame for b in tail]
    got = pl.concat(frames).sort("symbol", "timestamp")
    stored = pg.get_1min_market_regimes(["A", "B", "C"], exact=True).sort("symbol", "timestamp")
    assert got.height == 7 and got.select("symbol", "timestamp").is_unique().all()
    assert_frame_equal(got.select(stored.columns), stored)


def test_a_large_write_arrives_in_pages_and_resumes_mid_interval(pg: PostgreSQLIntegration[Any]) -> None:
    start = pg.follow("1min").cursor
    pg.save_1min_market_regime(pl.concat([regimes([f"S{i}" for i in range(5)], m) for m in range(2)]))
    frames, _ = drain(pg, cursor=start, max_rows=4)
    assert [f.height for f in frames] == [4, 4, 2]
    second = None
    with pg.follow("1min", cursor=start, max_rows=4, timeout=0.3) as batches:
        next(batches)
        second = next(batches).cursor
    rest, _ = drain(pg, cursor=second, max_rows=4)
    assert [f.height for f in rest] == [2]
    everything = pl.concat(frames)
    assert everything.select("symbol", "timestamp").is_unique().all() and everything.height == 10
    assert_frame_equal(pl.concat(frames[2:]), rest[0])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_rows": 0}, "max_rows"),
    ({"timeout": -1}, "timeout"),
    ({"poll_interval": 0}, "poll_interval"),
    ({"cursor": "nonsense"}, "not a tail cursor"),
    ({"cursor": "rt1.bm90IGpzb24"}, "damaged"),
    ({"since": "04/03/2024"}, "ISO 8601"),
    ({"return_type": "numpy"}, "return_type"),
])
def test_misuse_is_a_usage_error(pg: PostgreSQLIntegration[Any], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        pg.follow("1min", **kwargs)


def test_cursor_of_another_table_or_with_since_is_refused(pg: PostgreSQLIntegration[Any]) -> None:
    cursor = pg.follow("bars").cursor
    with pytest.raises(UsageError, match="follows 'market_data'"):
        pg.follow("1min", cursor=cursor)
    with pytest.raises(UsageError, match="not both"):
        pg.follow("bars", cursor=cursor, since=T0)
    with pytest.raises(UsageError, match="no time column"):
        pg.follow("optimization_results")


# -- concurrency: 8 writers, random commit delays and rollbacks, a consumer killed and resumed


class Writers:
    """Eight writers: six through regime_io (commit delayed inside the transaction, random
    rollbacks via the progress hook), one through save_rolling_market_regime, one with
    plain SQL (another tool). Each writer owns its symbol, so its calls give each key's
    commit order. Records every committed version."""

    def __init__(self, pg: PostgreSQLIntegration[Any], settings: Settings, calls: int, seed: int,
                 gates: dict[int, threading.Event] | None = None) -> None:
        self.pg = pg
        self.gates = gates or {}  # call number -> event every writer waits for before that call
        self.table = f'"{settings.schema}"."{settings.table_name("market_regimes_1min")}"'
        self.url = pg.db.resolved.url(redact=False)
        self.calls = calls
        self.seed = seed
        self.committed: dict[tuple[str, dt.datetime], list[str]] = {}
        self.lock = threading.Lock()
        self.errors: list[BaseException] = []

    def run(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._guard, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        return threads

    def _guard(self, w: int) -> None:
        try:
            self._writer(w)
        except BaseException as err:  # surfaced by the test
            self.errors.append(err)

    def _writer(self, w: int) -> None:
        rng = random.Random(self.seed * 100 + w)
        symbol = f"W{w}"
        written: list[int] = []
        for call in range(self.calls):
            if call in self.gates and not self.gates[call].wait(120):
                raise TimeoutError(f"gate before call {call} never opened")
            minutes = [rng.choice(written) if written and rng.random() < 0.3 else call]
            if rng.random() < 0.3:
                minutes.append(call + 1000)
            frame = pl.concat([regimes([symbol], m, tag=f"{symbol}-{call}-{m}") for m in minutes])
            rollback = rng.random() < 0.2
            delay = rng.random() * 0.15
            try:
                if w == 7:
                    self._sql(frame, delay, rollback)
                elif w == 6 and not rollback:
                    time.sleep(delay)
                    self.pg.save_rolling_market_regime(frame, window_minutes=10**6)
                else:
                    def hook(done: int, total: int | None, delay: float = delay, rollback: bool = rollback) -> None:
                        time.sleep(delay)  # the transaction is open and has written: a late commit
                        if rollback:
                            raise _Rollback

                    self.pg.save("1min", frame, progress=hook, chunk_rows=1)
            except _Rollback:
                continue
            if rollback and w in (6, 7):
                continue
            with self.lock:
                for r in frame.iter_rows(named=True):
                    self.committed.setdefault((r["symbol"], r["timestamp"]), []).append(r["regime"])
            written.extend(m for m in minutes if m not in written)

    def _sql(self, frame: pl.DataFrame, delay: float, rollback: bool) -> None:
        with psycopg.connect(self.url) as conn:
            for r in frame.iter_rows(named=True):
                conn.execute(f"INSERT INTO {self.table} (symbol, timestamp, regime, confidence) "
                             "VALUES (%s, %s, %s, 0.5) ON CONFLICT (symbol, timestamp) DO UPDATE "
                             "SET regime = EXCLUDED.regime, change_xid = DEFAULT",
                             (r["symbol"], r["timestamp"], r["regime"]))
            time.sleep(delay)
            if rollback:
                conn.rollback()
            else:
                conn.commit()


class _Rollback(Exception):
    pass


def check_delivery(delivered: list[tuple[str, dt.datetime, str]],
                   committed: dict[tuple[str, dt.datetime], list[str]], stored: pl.DataFrame) -> None:
    """Exactly once, commit order per key, rollbacks never, final state reached."""
    assert len(delivered) == len(set(delivered)), "a row version was delivered twice"
    per_key: dict[tuple[str, dt.datetime], list[str]] = {}
    for symbol, ts, tag in delivered:
        per_key.setdefault((symbol, ts), []).append(tag)
    assert set(per_key) == set(committed), "keys delivered != keys committed"
    final = {(r["symbol"], r["timestamp"]): r["regime"] for r in stored.iter_rows(named=True)}
    for key, versions in committed.items():
        got = per_key[key]
        assert set(got) <= set(versions), f"{key}: delivered a version never committed: {got} vs {versions}"
        order = [versions.index(v) for v in got]
        assert order == sorted(order), f"{key}: delivered out of commit order: {got} vs {versions}"
        assert got[-1] == versions[-1] == final[key], f"{key}: last delivered {got[-1]}, stored {final[key]}"
        if len(versions) == 1:
            assert got == versions  # inserted once, never changed: delivered exactly


def test_eight_writers_one_consumer_every_committed_row_once(pg: PostgreSQLIntegration[Any],
                                                             settings: Settings) -> None:
    pg.save_1min_market_regime(regimes(["PRE"], 0))  # the partitions, for the plain-SQL writer
    tail = pg.follow("1min", timeout=1.5, poll_interval=0.1, max_rows=5)
    writers = Writers(pg, settings, calls=8, seed=1)
    delivered: list[tuple[str, dt.datetime, str]] = []
    threads = writers.run()
    for batch in tail:
        delivered.extend(keys(batch.frame))
    for t in threads:
        t.join()
    delivered.extend(row for b in pg.follow("1min", cursor=tail.cursor, timeout=0.3) for row in keys(b.frame))
    assert not writers.errors, writers.errors
    check_delivery(delivered, writers.committed, pg.get_1min_market_regimes([f"W{w}" for w in range(8)]))


@pytest.mark.slow
def test_a_consumer_killed_at_random_points_resumes_exactly(pg: PostgreSQLIntegration[Any], settings: Settings,
                                                            tmp_path: Path) -> None:
    """Three consumers are killed (SIGKILL) while writers commit; the fourth resumes and ends.

    Forced, not hoped for: the writers advance in phases, each released only once a new
    consumer is running, and each kill comes after that consumer has delivered new rows
    (then at a random point up to half a second later), so every kill interrupts a
    consumer in the middle of rows that are still being written."""
    pg.save_1min_market_regime(regimes(["PRE"], 0))
    cursor = pg.follow("1min").cursor
    out = tmp_path / "delivered.jsonl"
    out.touch()
    phases = {5: threading.Event(), 10: threading.Event(), 15: threading.Event()}
    writers = Writers(pg, settings, calls=20, seed=2, gates=phases)
    rng = random.Random(7)
    url = pg.db.resolved.url(redact=False)

    def consumer(idle: float) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, str(ROOT / "tests" / "_tail_consumer.py"), url, settings.schema,
                                 str(out), cursor, str(idle)], cwd=ROOT, stderr=subprocess.PIPE)

    def lines() -> int:
        return out.read_text(encoding="utf-8").count("\n")

    def last_complete_cursor() -> str:
        text = out.read_text(encoding="utf-8")
        complete = text[: text.rfind("\n") + 1]
        out.write_text(complete, encoding="utf-8")  # a line cut by the kill: as if never written
        done = complete.splitlines()
        return json.loads(done[-1])["cursor"] if done else cursor

    threads = writers.run()  # the first phase (calls 0-4) starts at once
    kills = []
    for gate in [None, *phases.values()][:3]:
        proc = consumer(idle=60)
        if gate is not None:
            gate.set()  # the next phase of writes, while this consumer runs
        before = lines()
        assert eventually(lambda before=before: lines() > before, timeout=60), "the consumer delivered nothing"
        time.sleep(rng.uniform(0.0, 0.5))
        assert proc.poll() is None, "the consumer ended before it was killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills.append(any(t.is_alive() for t in threads))
        cursor = last_complete_cursor()
    phases[15].set()
    for t in threads:
        t.join()
    assert kills == [True, True, True], "a kill came after the writers had finished"
    proc = consumer(idle=3)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert not writers.errors, writers.errors
    delivered = [(s, dt.datetime.fromisoformat(ts), tag) for line in out.read_text().splitlines()
                 for s, ts, tag in json.loads(line)["rows"]]
    check_delivery(delivered, writers.committed, pg.get_1min_market_regimes([f"W{w}" for w in range(8)]))


def test_sealing_and_unsealing_move_rows_without_delivering_them(pg: PostgreSQLIntegration[Any]) -> None:
    old = pl.concat([regimes(["A"], m) for m in range(3)]).with_columns(pl.col("timestamp").dt.offset_by("-2mo"))
    pg.save_1min_market_regime(old)
    tail = pg.follow("1min", timeout=0.5, poll_interval=0.05)
    pg.seal(T0.date() - dt.timedelta(days=20))
    pg.unseal(T0 - dt.timedelta(days=90), T0)
    pg.save_1min_market_regime(regimes(["A"], 0))
    assert [row for b in tail for row in keys(b.frame)] == [("A", T0, "UP")]
    assert pg.get_1min_market_regimes("A").height == 4


# -- the command line


def _cli(server: Any, settings: Settings, *args: str) -> Any:
    from typer.testing import CliRunner

    from regime_io.cli import app

    result = CliRunner().invoke(app, ["--dsn", server.url(), "--schema", settings.schema, "follow", *args])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


def test_cli_prints_rows_as_lines_when_piped_and_a_summary(pg: PostgreSQLIntegration[Any], server: Any,
                                                           settings: Settings) -> None:
    pg.save_1min_market_regime(regimes(["A", "B"], 0))
    result = _cli(server, settings, "1min", "--since", T0.isoformat(), "--symbol", "A", "--timeout", "0.3")
    lines = result.stdout.splitlines()
    assert lines[0].split("\t")[:4] == ["symbol", "timestamp", "regime", "confidence"]
    assert [line.split("\t")[:3] for line in lines[1:]] == [["A", "2024-05-06 09:15:00", "UP"]]
    assert "1 row in 1 batch" in result.stderr and "--cursor rt1." in result.stderr
    cursor = result.stderr.split("--cursor ")[1].split()[0]
    pg.save_1min_market_regime(regimes(["A", "B"], 1))
    again = _cli(server, settings, "1min", "--cursor", cursor, "--symbol", "A", "-s", "B", "--timeout", "0.3")
    assert [line.split("\t")[0] for line in again.stdout.splitlines()[1:]] == ["A", "B"]


def test_cli_live_view_in_a_terminal(pg: PostgreSQLIntegration[Any], server: Any, settings: Settings,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    from regime_io import cli

    screen = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=screen, force_terminal=True, width=200))
    pg.save_1min_market_regime(regimes(["A", "B"], 0))
    result = _cli(server, settings, "1min", "--since", "2024-05-06", "--timeout", "0.3")
    assert "market_regimes_1min: 2 rows (Ctrl-C to stop)" in screen.getvalue()
    assert "2 rows in 1 batch" in result.stderr


def test_small_and_large_writes_store_the_same_values(pg: PostgreSQLIntegration[Any], settings: Settings) -> None:
    """Writes of a few rows run over psycopg (regime_io._conn.pipeline), larger ones over
    ADBC: the same rows, written either way, are stored identically (values, nulls,
    change stamps), and collisions count the same."""
    from regime_io._conn import pipeline as _smallwrite

    names = [f"S{i}" for i in range(3)]
    frame = pl.concat([regimes(names, m, tag=f"T{m}", confidence=0.01 * m) for m in range(40)]).with_columns(
        pl.Series("directional_component", [None, 1.2345, -0.0001] * 40),
        pl.Series("greek_sentiment", ["BULL", None, "b\\e'ar\"s"] * 40))
    assert frame.height > _smallwrite.SMALL_BATCH_ROWS
    big = pg.save_1min_market_regime(frame.with_columns(pl.col("symbol") + "_BIG"))  # symbols are upper case
    small = [pg.save_1min_market_regime(part.with_columns(pl.col("symbol") + "_SMALL"))
             for part in frame.iter_slices(_smallwrite.SMALL_BATCH_ROWS // 2)]
    assert big.inserted == sum(r.inserted for r in small) == frame.height
    again = pg.save_1min_market_regime(frame.head(5).with_columns(pl.col("symbol") + "_SMALL"))
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 5)
    table = f'"{settings.schema}"."{settings.table_name("market_regimes_1min")}"'
    with psycopg.connect(pg.db.resolved.url(redact=False)) as conn:
        rows = conn.execute(f"SELECT split_part(symbol, '_', 2), split_part(symbol, '_', 1), timestamp, regime, "
                            "confidence::text, directional_component::text, greek_sentiment, change_xid IS NOT NULL "
                            f"FROM {table} ORDER BY 2, 3, 1").fetchall()
    by_way = {way: [r[1:] for r in rows if r[0] == way] for way in ("BIG", "SMALL")}
    assert by_way["BIG"] == by_way["SMALL"] and len(by_way["BIG"]) == frame.height


def test_cleanup_prunes_the_sealed_change_entries(pg: PostgreSQLIntegration[Any], settings: Settings) -> None:
    old = pl.concat([regimes(["A"], m) for m in range(3)]).with_columns(pl.col("timestamp").dt.offset_by("-2mo"))
    pg.save_1min_market_regime(old)
    pg.seal(T0.date() - dt.timedelta(days=20))
    pg.save_1min_market_regime(old.head(1).with_columns(pl.lit("RESTATED").alias("regime")))
    table = f'"{settings.schema}"."{settings.table_prefix}sealed_changes"'
    with psycopg.connect(pg.db.resolved.url(redact=False), autocommit=True) as conn:
        assert conn.execute(f"SELECT count(*), sum(row_count) FROM {table}").fetchone() == (1, 1)
        pg.cleanup_old_data(30, dry_run=True)
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)
        pg.cleanup_old_data(0)
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


@pytest.mark.slow
def test_the_live_benchmark_runs_at_tiny_sizes(server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/live.py end to end (no timing assertions): every figure is produced."""
    from benchmarks.live import main

    assert main(["--dsn", server.url(), "--symbols", "5", "--ticks", "5", "--bars", "3750", "--repeats", "1",
                 "--calls", "5"]) == 0
    out = capsys.readouterr().out
    for key in ("live.ingest_stamped", "live.ingest_plain", "live.rolling_stamped", "live.rolling_plain",
                "live.notify", "live.commit_to_frame", "writer cost of the change stamp", "live.rolling_save",
                "live.rolling_floor", "floor in the same run"):
        assert key in out, out
