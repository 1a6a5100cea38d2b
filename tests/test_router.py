"""The tier router (regime_io/_tiers/router.py): the statements a read sends, and the guard
that keeps an answer consistent when a seal commits in the middle of a read."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration, ReadError
from regime_io._frames import VIEWS, constant, convert
from regime_io._read import readers
from regime_io._tiers import router
from regime_io.config import Settings
from tests._reading_data import bars

T0 = dt.datetime(2024, 1, 8, 9, 15)
SYMBOLS = ["AAA", "BBB"]
JAN = ("2024-01-01", "2024-01-31")


def statements(caplog: pytest.LogCaptureFixture, table: str = "market_data") -> list[str]:
    """The statements the read drivers sent that touch ``table`` (rows or chunks)."""
    return [r.getMessage() for r in caplog.records
            if r.name == "regime_io._conn.engines" and table in r.getMessage()
            and r.getMessage().startswith(("adbc", "connectorx", "lookup"))]


@pytest.fixture
def loaded(pg: PostgreSQLIntegration) -> PostgreSQLIntegration:
    pg.save_market_data(bars(SYMBOLS, ["1m"], T0, 30))
    pg.save_market_data(bars(SYMBOLS, ["1m"], T0 + dt.timedelta(days=31), 30))
    return pg


@pytest.mark.parametrize("read", [
    lambda pg: pg.get_market_data(SYMBOLS, *JAN),
    lambda pg: pg.get_market_data("AAA", "2023-01-01", "2024-12-31"),  # a large range: values inlined, COPY
    lambda pg: pg.get_market_data(SYMBOLS, *JAN, resample="1h"),
    lambda pg: pg.get_market_regime_distribution("AAA", *JAN, table="regimes"),
])
def test_a_read_with_nothing_sealed_is_one_statement(loaded: PostgreSQLIntegration, settings: Settings,
                                                     caplog: pytest.LogCaptureFixture, read: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="regime_io._conn.engines")
    loaded.save_market_regime(pl.DataFrame({"symbol": ["AAA"] * 2, "timeframe": ["1m"] * 2,
                                            "timestamp": [T0, T0 + dt.timedelta(minutes=1)],
                                            "regime": ["UP", "DOWN"], "confidence": [0.5, 0.6]}))
    caplog.clear()
    frame = read(loaded)
    assert frame.height > 0
    sent = statements(caplog, "market_regimes" if "distribution" in str(read.__code__.co_names) else "market_data")
    assert len(sent) == 1, sent
    assert "regime_io: the sealed tier changed" in sent[0]  # the guard travels with the row read


def test_an_as_of_read_with_nothing_sealed_is_one_statement(pg: PostgreSQLIntegration,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    frame = pl.DataFrame({"symbol": ["AAA"] * 3, "timestamp": [T0 + dt.timedelta(minutes=i) for i in range(3)],
                          "regime": ["UP"] * 3, "confidence": [0.5] * 3})
    pg.save_1min_market_regime(frame)
    caplog.set_level(logging.DEBUG, logger="regime_io._conn.engines")
    got = pg.get_1min_market_regimes("AAA", *JAN, as_of=dt.datetime.now(dt.timezone.utc))
    assert got.height == 3
    assert len(statements(caplog, "market_regimes_1min")) == 1


def test_a_sealed_read_is_two_statements(loaded: PostgreSQLIntegration, caplog: pytest.LogCaptureFixture) -> None:
    want = loaded.get_market_data(SYMBOLS, "2024-01-01", "2024-03-01")
    assert loaded.seal("2024-02-01", tables="bars").rows_moved == 60
    caplog.set_level(logging.DEBUG, logger="regime_io._conn.engines")
    got = loaded.get_market_data(SYMBOLS, "2024-01-01", "2024-03-01")
    assert_frame_equal(got, want)
    sent = statements(caplog)
    assert len(sent) == 2, sent
    assert "_chunks" in sent[0] and "regime_io: the sealed tier changed" in sent[1]


def test_another_process_sealed_the_table(loaded: PostgreSQLIntegration, settings: Settings,
                                          caplog: pytest.LogCaptureFixture) -> None:
    want = loaded.get_market_data(SYMBOLS, "2024-01-01", "2024-03-01")
    with PostgreSQLIntegration(settings=settings) as other:
        other.seal("2024-02-01", tables="bars")
    caplog.set_level(logging.DEBUG, logger="regime_io._conn.engines")
    # This process expected no chunks: its guarded statement fails, it reads both tiers.
    assert_frame_equal(loaded.get_market_data(SYMBOLS, "2024-01-01", "2024-03-01"), want)
    assert len(statements(caplog)) == 3
    caplog.clear()
    assert_frame_equal(loaded.get_market_data(SYMBOLS, "2024-01-01", "2024-03-01"), want)
    assert len(statements(caplog)) == 2  # from then on: chunks first


@pytest.mark.parametrize("kind", ["range", "sql"])
def test_a_seal_between_the_two_statements_is_caught(loaded: PostgreSQLIntegration, settings: Settings,
                                                     monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """Forced interleaving: right after the router fetched the chunks (none of February),
    another process seals February; the row read's guard fails and the read runs again."""
    want = (loaded.get_market_data(SYMBOLS, "2024-01-01", "2024-03-01") if kind == "range"
            else loaded.get_market_data(SYMBOLS, "2024-01-01", "2024-03-01", resample="1h"))
    loaded.seal("2024-02-01", tables="bars")  # January sealed: reads fetch chunks first
    # Range reads fetch chunks with the row-tier check, SQL readers without it.
    name = "sealed_rows_checked" if kind == "range" else "sealed_rows"
    real = getattr(router, name)
    calls: list[str] = []

    def then_seal(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)
        if not calls:
            with PostgreSQLIntegration(settings=settings) as other:
                moved = other.seal("2024-03-01", tables="bars").rows_moved
            calls.append(f"sealed {moved}")
        else:
            calls.append("again")
        return found

    monkeypatch.setattr(router, name, then_seal)
    got = (loaded.get_market_data(SYMBOLS, "2024-01-01", "2024-03-01") if kind == "range"
           else loaded.get_market_data(SYMBOLS, "2024-01-01", "2024-03-01", resample="1h"))
    assert calls == ["sealed 60", "again"]
    assert_frame_equal(got, want)


def test_every_read_gives_up_after_max_tries(loaded: PostgreSQLIntegration, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded.seal("2024-02-01", tables="bars")
    real = router.sealed_rows_checked

    def stale(*args: Any, **kwargs: Any) -> Any:
        sealed, _, _ = real(*args, **kwargs)
        return sealed, "a fingerprint no statement will see", True  # rows "may" exist: the guarded read runs

    monkeypatch.setattr(router, "sealed_rows_checked", stale)
    with pytest.raises(ReadError, match=f"during each of {router.MAX_TRIES} attempts"):
        loaded.get_market_data(SYMBOLS, "2024-01-01", "2024-03-01")


def test_a_read_of_sealed_months_only_is_one_statement(loaded: PostgreSQLIntegration,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """A range wholly in sealed months (a backtest over sealed history): the chunks'
    statement also sees that the row tier has no row of the range, so it is the answer --
    one round trip, not two; a range that reaches the row tier still reads it."""
    want = loaded.get_market_data(SYMBOLS, "2024-01-01", "2024-01-31 23:59")
    loaded.seal("2024-02-01", tables="bars")
    caplog.set_level(logging.DEBUG, logger="regime_io._conn.engines")
    assert_frame_equal(loaded.get_market_data(SYMBOLS, "2024-01-01", "2024-01-31 23:59"), want)
    assert len(statements(caplog)) == 1
    caplog.clear()
    both = loaded.get_market_data(SYMBOLS, "2024-01-01", "2024-03-01")
    assert len(statements(caplog)) == 2 and both.height > want.height


def test_the_latest_row_of_a_sealed_series_is_one_round_trip(loaded: PostgreSQLIntegration,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """A series whose newest rows are all sealed: the statement that joins the series
    catalog to the row table joins it to each chunk's ``last_row`` too (no payload
    crosses the wire). The first latest-row read of a table also looks for chunks sealed
    before schema version 8 (in the same pipeline); once it found none, one statement."""
    caplog.set_level(logging.DEBUG, logger="regime_io._conn.engines")
    want = loaded.get_latest("bars", symbols=SYMBOLS)
    first = statements(caplog)
    assert len(first) == 3 and "last_row IS NULL" in first[1] and "last_row IS NULL" in first[2], first
    want_exact = loaded.get_latest("bars", symbols=SYMBOLS, exact=True)
    loaded.seal("2030-01-01", tables="bars")  # everything sealed
    caplog.clear()
    assert_frame_equal(loaded.get_latest("bars", symbols=SYMBOLS), want)
    sent = statements(caplog)
    assert len(sent) == 1 and "last_row" in sent[0] and "payload" not in sent[0], sent
    assert_frame_equal(loaded.get_latest("bars", symbols=SYMBOLS, exact=True), want_exact)


def test_the_latest_row_at_a_month_edge_comes_from_its_own_chunk(pg: PostgreSQLIntegration) -> None:
    """The latest-row join bounds the chunks it reads by period: a series whose newest bar
    is the first minute of a month, one whose newest is the last minute of the month
    before, each over months of chunks, give the same rows sealed as unsealed (a bound
    one day too tight on either side loses one of them)."""
    first_of_march = dt.datetime(2024, 3, 1)
    pg.save_market_data(bars(["AAA"], ["1m"], first_of_march - dt.timedelta(days=70), 4, step=dt.timedelta(days=20)))
    pg.save_market_data(bars(["AAA"], ["1m"], first_of_march, 1))
    pg.save_market_data(bars(["BBB"], ["1m"], first_of_march - dt.timedelta(days=70), 4, step=dt.timedelta(days=20)))
    pg.save_market_data(bars(["BBB"], ["1m"], first_of_march - dt.timedelta(minutes=1), 1))
    want = pg.get_latest("market_data", symbols=["AAA", "BBB"], exact=True)
    assert want.get_column("timestamp").to_list() == [first_of_march, first_of_march - dt.timedelta(minutes=1)]
    report = pg.seal("2030-01-01", tables="market_data")
    assert report.rows_moved == 10
    assert_frame_equal(pg.get_latest("market_data", symbols=["AAA", "BBB"], exact=True), want)


def test_chunks_sealed_before_last_row_still_give_the_latest_row(loaded: PostgreSQLIntegration, sql: Any) -> None:
    """A chunk table of schema version 7 gets ``last_row`` from ``initialize_database()``;
    its chunks have none (NULL): their newest row comes from the payload (one record batch
    decoded), the same row as before the seal."""
    want = loaded.get_latest("bars", symbols=SYMBOLS, exact=True)
    loaded.seal("2030-01-01", tables="bars")
    chunks = f'"{loaded.settings.schema}".mr_market_data_chunks'
    sql(f"ALTER TABLE {chunks} DROP COLUMN last_row")  # as schema version 7 left it
    loaded.initialize_database()
    assert sql(f"SELECT count(*) FROM {chunks} WHERE last_row IS NULL") == [(4,)]
    # The first read (before the seal) found no such chunk; the upgrade made it look again,
    # and every read looks while some are left.
    for _ in range(2):
        assert_frame_equal(loaded.get_latest("bars", symbols=SYMBOLS, exact=True), want)
    assert_frame_equal(loaded.get_latest("bars"), loaded.get_latest("bars", symbols=SYMBOLS))


def test_history_without_a_range_includes_sealed_current_versions(pg: PostgreSQLIntegration) -> None:
    frame = pl.DataFrame({"symbol": ["AAA"] * 3, "timestamp": [T0 + dt.timedelta(minutes=i) for i in range(3)],
                          "regime": ["UP", "UP", "DOWN"], "confidence": [0.5, 0.6, 0.7]})
    pg.save_1min_market_regime(frame)
    before = pg.history("1min", "AAA")
    assert before.height == 3
    assert pg.seal("2024-02-01", tables="1min").rows_moved == 3
    # The rows now in chunks are still the current versions (read with the rows, consistently).
    assert_frame_equal(pg.history("1min", "AAA").drop("known_from"), before.drop("known_from"))


@pytest.mark.skipif(not VIEWS, reason="this pyarrow casts no text to string views (pyarrow < 17): text stays text")
def test_chunks_alone_reach_polars_with_their_key_as_string_views(loaded: PostgreSQLIntegration,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunk key's text is built as Arrow string views when the answer is the chunks'
    alone and polars is asked for (polars takes them as they are); Arrow and pandas get
    text, and a range that reaches the row tier merges as text. Every frame is the one
    the row tier gives."""
    want = {"jan": loaded.get_market_data(SYMBOLS, "2024-01-01", "2024-01-31 23:59"),
            "both": loaded.get_market_data(SYMBOLS, "2024-01-01", "2024-03-01")}
    loaded.seal("2024-02-01", tables="bars")
    seen: list[list[pa.DataType]] = []
    real = readers.convert

    def spy(table: pa.Table, return_type: Any) -> Any:
        seen.append(table.schema.types)
        return real(table, return_type)

    monkeypatch.setattr(readers, "convert", spy)
    assert_frame_equal(loaded.get_market_data(SYMBOLS, "2024-01-01", "2024-01-31 23:59"), want["jan"])
    assert pa.string_view() in seen[-1] and pa.string() not in seen[-1]
    arrow = loaded.get_market_data(SYMBOLS, "2024-01-01", "2024-01-31 23:59", return_type="arrow")
    assert pa.string_view() not in arrow.schema.types
    assert_frame_equal(pl.from_arrow(arrow), want["jan"])  # type: ignore[arg-type]
    assert_frame_equal(loaded.get_market_data(SYMBOLS, "2024-01-01", "2024-03-01"), want["both"])
    assert pa.string_view() not in seen[-1]


@pytest.mark.parametrize("length", [1000, 1024, 44_640, 1 << 16, (1 << 16) + 1])
@pytest.mark.parametrize("value", ["", "AAA", "TWELVE_BYTES", "A SYMBOL LONGER THAN TWELVE", "ÜNICODE-€", "X" * 40])
def test_a_constant_text_column_as_string_views(value: str, length: int) -> None:
    """Built as asked, or (1,024 to 65,536 rows, values up to 32 bytes) sliced from one
    array per value: the same values either way, as text and as views, in polars too."""
    types = [pa.string(), pa.string_view()] if VIEWS else [pa.string()]
    for type_ in types:
        for n in (length, length - 7):
            array = constant(value, n, type_)
            array.validate(full=True)
            assert array.type == type_ and array.to_pylist() == [value] * n
            frame = pl.from_arrow(pa.table({"s": array}))
            assert frame.get_column("s").to_list() == [value] * n  # type: ignore[union-attr]


@pytest.mark.parametrize(("rows", "pieces", "kept"), [(10_000, 3, True), (100, 3, False), (20_000, 1, True)])
def test_long_chunks_reach_polars_as_they_are(rows: int, pieces: int, kept: bool) -> None:
    """A table in long pieces (a sealed read: one per month chunk) becomes a polars frame
    in the same pieces, with no copy into one; short pieces are joined. The frame is the
    same either way."""
    table = pa.concat_tables([pa.table({"symbol": ["AAA"] * rows, "close": np.arange(rows, dtype=np.float64) + i})
                              for i in range(pieces)])
    frame = convert(table, "polars")
    assert frame.n_chunks() == (pieces if kept else 1)
    assert_frame_equal(frame, pl.from_arrow(table.combine_chunks()))  # type: ignore[arg-type]
    # Columns chunked apart are joined whatever their length.
    uneven = pa.table({"a": pa.chunked_array([np.arange(rows)] * pieces),
                       "b": pa.chunked_array([np.arange(rows * pieces)])})
    assert convert(uneven, "polars").n_chunks() == 1
