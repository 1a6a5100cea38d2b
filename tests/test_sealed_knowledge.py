"""Knowledge time in sealed months gives the row tier's documented errors (issue 25 item 5)."""

from __future__ import annotations

import datetime as dt
import re

import polars as pl
import pytest

from regime_io import PostgreSQLIntegration, WriteError
from tests._reading_data import regimes_1min

T0 = dt.datetime(2024, 1, 8, 9, 15)


def _message(pg: PostgreSQLIntegration, *, sealed: bool) -> str:
    """Store January's regimes (sealed or not), restate one row now, then write that row
    again with a known_at before the restatement: refused."""
    rows = regimes_1min(["AAA"], T0, 5)
    pg.save_1min_market_regime(rows)
    if sealed:
        assert pg.seal("2024-02-01", tables=["1min"]).rows_moved == 5
    restated = rows.head(1).with_columns(confidence=rows["confidence"][0] / 2)
    pg.save_1min_market_regime(restated)  # a version ended by the clock, now
    with pytest.raises(WriteError) as caught:
        pg.save_1min_market_regime(restated.with_columns(confidence=1.0), known_at=dt.datetime(2020, 1, 1))
    return str(caught.value)


@pytest.mark.parametrize("sealed", [False, True], ids=["rows", "sealed"])
def test_an_earlier_known_at_is_the_documented_write_error(pg: PostgreSQLIntegration, sealed: bool) -> None:
    message = _message(pg, sealed=sealed)
    assert "violates check constraint" not in message
    assert re.match(r"market_regimes_1min: known_at 2020-01-01 00:00:00\S* is not after the stored version's "
                    r"knowledge time 20\d\d-.* \(key \(symbol, timestamp\)=\(AAA, 2024-01-08 09:15:00\)\); write the "
                    r"vintages of a row in knowledge order; nothing was written", message), message


def test_nothing_was_written_and_later_vintages_still_go_in(pg: PostgreSQLIntegration) -> None:
    _message(pg, sealed=True)
    before = pg.history("1min", ["AAA"], "2024-01-01", "2024-01-31")
    later = regimes_1min(["AAA"], T0, 1).with_columns(confidence=3.0)
    pg.save_1min_market_regime(later, known_at=dt.datetime.now() + dt.timedelta(days=365))
    # A plain write after a version dated in the future: its version still ends after it began.
    pg.save_1min_market_regime(later.with_columns(confidence=4.0))
    after = pg.history("1min", ["AAA"], "2024-01-01", "2024-01-31")
    assert after.height == before.height + 2
    assert (after["known_to"] > after["known_from"].fill_null(dt.datetime.min.replace(tzinfo=dt.timezone.utc))).all()
    got = pg.get_1min_market_regimes("AAA", "2024-01-08 09:15", "2024-01-08 09:15")
    assert got["confidence"].to_list() == [4.0]


def test_ignore_into_a_sealed_month_supersedes_nothing(pg: PostgreSQLIntegration) -> None:
    """on_conflict='ignore' keeps the sealed row: no version of it may end (one difference,
    from the merge itself, feeds knowledge time: it cannot disagree with what was stored)."""
    t0 = dt.datetime(2024, 1, 8, 9, 15)
    first = pl.DataFrame({"symbol": ["AAA"] * 2, "timestamp": [t0, t0 + dt.timedelta(minutes=1)],
                          "regime": ["UP", "UP"], "confidence": [0.5, 0.5]})
    pg.save_1min_market_regime(first)
    assert pg.seal("2024-02-01", tables="1min").rows_moved == 2
    before = pg.history("1min", "AAA", "2024-01-01", "2024-01-31")
    changed = first.with_columns(pl.lit("DOWN").alias("regime"))
    fresh = pl.DataFrame({"symbol": ["AAA"], "timestamp": [t0 + dt.timedelta(minutes=2)], "regime": ["DOWN"],
                          "confidence": [0.5]})
    result = pg.save_1min_market_regime(pl.concat([changed, fresh]), on_conflict="ignore")
    assert (result.inserted, result.updated) == (1, 0)
    after = pg.history("1min", "AAA", "2024-01-01", "2024-01-31")
    assert before.height == 2 and after.height == 3  # the new row; no superseded version of the kept ones
    assert after["regime"].to_list() == ["UP", "UP", "DOWN"] and after["known_to"].null_count() == 3


def test_a_known_at_backfill_into_new_chunks_reaches_the_tail_and_as_of(pg: PostgreSQLIntegration) -> None:
    """Seams of the backfill's change-log entry (new chunks logged as their payloads):
    a ``tier="sealed"`` write with ``known_at`` creates the chunks, a tail receives exactly
    their rows, and reads as of before and after that knowledge time agree with it."""
    tail = pg.follow("1min", timeout=0.5, poll_interval=0.05, exact=True)
    known = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
    rows = regimes_1min(["AAA", "BBB"], T0, 4)
    result = pg.save("1min", rows, tier="sealed", known_at=known)
    assert (result.inserted, result.method) == (8, "sealed")
    got = pl.concat([b.frame for b in tail]).sort("symbol", "timestamp")
    stored = pg.get_1min_market_regimes(["AAA", "BBB"], exact=True).sort("symbol", "timestamp")
    assert got.height == 8
    assert got.select(stored.columns).equals(stored)
    assert pg.get_1min_market_regimes(["AAA", "BBB"], as_of=known - dt.timedelta(seconds=1)).height == 0
    assert pg.get_1min_market_regimes(["AAA", "BBB"], as_of=known).height == 8
