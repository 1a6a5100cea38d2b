"""The one write transaction: batch, streamed and ``known_at=`` writes share its retries and
its ``NOTIFY`` (regime_io/_write/transaction.py)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import polars as pl
import pytest

from regime_io import PostgreSQLIntegration
from regime_io.config import Settings, settings_replace

T0 = dt.datetime(2024, 5, 6, 9, 15)


def regimes(symbols: list[str], minute: int, tag: str = "UP") -> pl.DataFrame:
    return pl.DataFrame({"symbol": symbols, "timestamp": [T0 + dt.timedelta(minutes=minute)] * len(symbols),
                         "regime": [tag] * len(symbols), "confidence": [0.5] * len(symbols)})


def many(n: int, minute: int = 0, tag: str = "UP") -> pl.DataFrame:
    # More rows than a pipelined small write takes: the ADBC connection of the pool.
    return pl.DataFrame({"symbol": [f"S{i:03d}" for i in range(n)],
                         "timestamp": [T0 + dt.timedelta(minutes=minute)] * n,
                         "regime": [tag] * n, "confidence": [0.5] * n})


WRITES: dict[str, Callable[[PostgreSQLIntegration[Any], int], Any]] = {
    "plain": lambda pg, m: pg.save_1min_market_regime(many(300, m)),
    "known_at instant": lambda pg, m: pg.save_1min_market_regime(many(300, m, "KN"),
                                                                      known_at=T0 + dt.timedelta(days=1, minutes=m)),
    "known_at column": lambda pg, m: pg.save_1min_market_regime(
        many(300, m, "KC").with_columns(pl.lit(T0 + dt.timedelta(days=2, minutes=m)).alias("seen")), known_at="seen"),
}


@pytest.mark.parametrize("kind", list(WRITES))
def test_a_write_on_a_dead_connection_is_run_again(kind: str, settings: Settings, sql: Any,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    # Pings only after an hour idle: the pool hands out the connection the server killed.
    lazy = settings_replace(settings, health_check_interval=3600.0)
    with PostgreSQLIntegration(settings=lazy) as pg:
        pg.initialize_database()
        WRITES[kind](pg, 0)  # warms the pool's ADBC connection
        killed = sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                     "AND backend_type = 'client backend'")
        assert killed[0][0] >= 1
        with caplog.at_level(logging.INFO, logger="regime_io"):
            result = WRITES[kind](pg, 1)
        assert result.rows == 300 and result.inserted == 300
        # The dead connection was met and the call ran again: by the transaction, or (a
        # known_at column first asks which periods are sealed) by that read.
        assert any("re-running the write once" in r.getMessage() or "running the read once more" in r.getMessage()
                   for r in caplog.records), caplog.text
        stored = pg.get_1min_market_regimes(symbols=[f"S{i:03d}" for i in range(300)], start_date=T0,
                                            end_date=T0 + dt.timedelta(minutes=1))
        assert stored.height == 600


@pytest.mark.parametrize("kind", list(WRITES))
def test_a_write_wakes_a_waiting_tail_at_once(kind: str, pg: PostgreSQLIntegration[Any]) -> None:
    # A poll every minute: only the writer's NOTIFY can deliver within seconds.
    got: list[tuple[float, int]] = []
    first = threading.Event()
    done = threading.Event()

    def consume() -> None:
        with pg.follow("1min", timeout=20.0, poll_interval=60.0) as batches:
            for batch in batches:
                got.append((time.monotonic(), batch.frame.height))
                first.set()
                if sum(n for _, n in got) >= 302:
                    break
        done.set()

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    time.sleep(0.3)
    pg.save_1min_market_regime(regimes(["WARM", "UP"], 0))  # the tail is listening once this arrives
    assert first.wait(15), "the warm-up rows never arrived"
    sent = time.monotonic()
    WRITES[kind](pg, 5)
    assert done.wait(15), f"the {kind} write never reached the tail: {got}"
    assert got[-1][0] - sent < 5.0, f"delivered after {got[-1][0] - sent:.1f} s: by polling, not NOTIFY"
    assert sum(n for _, n in got) == 302


def test_a_known_at_write_into_a_sealed_month_is_followed_and_read_as_of(pg: PostgreSQLIntegration[Any]) -> None:
    """The seam of the sealed tier, knowledge time and the change log: a restatement of a
    sealed row with known_at= merges into its chunk, a waiting follower receives it at once,
    and reads as of before and after it see the two versions."""
    pg.save_1min_market_regime(regimes(["SEAL"], 0, tag="OLD"))
    assert pg.seal("2024-06-01", tables="1min").rows_moved == 1
    got: list[pl.DataFrame] = []
    first = threading.Event()
    done = threading.Event()

    def consume() -> None:
        with pg.follow("1min", timeout=20.0, poll_interval=60.0) as batches:
            for batch in batches:
                got.append(batch.frame)
                first.set()
                if sum(f.height for f in got) >= 2:
                    break
        done.set()

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    time.sleep(0.3)
    pg.save_1min_market_regime(regimes(["WARM"], 0))
    assert first.wait(15), "the warm-up row never arrived"
    before = dt.datetime.now(dt.timezone.utc)
    result = pg.save_1min_market_regime(regimes(["SEAL"], 0, tag="NEW"), known_at=before + dt.timedelta(seconds=1))
    assert result.updated == 1 and result.method == "sealed"  # into the chunk, as without known_at
    assert done.wait(15), f"the restatement never reached the follower: {got}"
    assert got[-1]["symbol"].to_list() == ["SEAL"] and got[-1]["regime"].to_list() == ["NEW"]
    old = pg.get_1min_market_regimes("SEAL", "2024-05-01", "2024-05-31", as_of=before)
    new = pg.get_1min_market_regimes("SEAL", "2024-05-01", "2024-05-31")
    assert old["regime"].to_list() == ["OLD"] and new["regime"].to_list() == ["NEW"]
