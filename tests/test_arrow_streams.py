"""Arrow streams in and out: ``iter_*`` is an Arrow C stream as well as an iterator of
batches; the writers take any Arrow stream (``__arrow_c_stream__``, pyarrow datasets and
scanners), streamed in one transaction."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration, ValidationError
from regime_io.config import Settings, settings_replace
from tests._reading_data import bars, options

T0 = dt.datetime(2024, 1, 30, 9, 15)


class CapsuleOnly:
    """An Arrow stream that is nothing else (as a nanoarrow or ADBC stream is)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self.table.__arrow_c_stream__(requested_schema)


@pytest.fixture
def stored(pg: PostgreSQLIntegration) -> PostgreSQLIntegration:
    """Bars of two symbols over the end of January (sealed) into February (rows)."""
    pg.save_market_data(bars(["AAA", "BBB"], ["1m"], T0, 3000))
    pg.seal("2024-02-01", tables="bars")
    return pg


def test_a_stream_is_an_arrow_c_stream_and_still_an_iterator(stored: PostgreSQLIntegration) -> None:
    pg = stored
    want = pg.get_market_data(["AAA", "BBB"], "2024-01-01", "2024-03-31", return_type="arrow")
    stream = pg.iter_market_data(["AAA", "BBB"], "2024-01-01", "2024-03-31", batch_rows=1000, return_type="arrow")
    assert stream.schema == want.schema  # known before the first batch
    batches = list(stream)
    assert all(isinstance(b, pa.RecordBatch) and b.num_rows <= 1000 for b in batches)
    assert pa.Table.from_batches(batches).equals(want)
    read = pa.RecordBatchReader.from_stream(pg.iter_market_data(["AAA", "BBB"], "2024-01-01", "2024-03-31"))
    assert read.schema == want.schema and read.read_all().equals(want)
    frame = pl.DataFrame(pg.iter_market_data(["AAA", "BBB"], "2024-01-01", "2024-03-31"))
    assert_frame_equal(frame, pg.get_market_data(["AAA", "BBB"], "2024-01-01", "2024-03-31"))
    # polars 2's from_arrow reads any Arrow C stream as a struct Series (unnested: the same
    # frame); polars 1 as the frame itself.
    read_back = pl.from_arrow(pg.iter_market_data(["AAA", "BBB"], "2024-01-01", "2024-03-31"))
    assert_frame_equal(read_back.struct.unnest() if isinstance(read_back, pl.Series) else read_back, frame)


def _equal(got: Any, want: Any, return_type: str) -> None:
    if return_type == "pandas":
        pd_testing = pytest.importorskip("pandas.testing")
        pd_testing.assert_frame_equal(got, want)
    elif return_type == "polars":
        assert_frame_equal(got, want)
    else:
        assert got.schema == want.schema and got.equals(want)


@pytest.mark.parametrize("return_type", ["polars", "pandas", "arrow", None])
def test_iterating_yields_frames_of_the_return_type(stored: PostgreSQLIntegration, settings: Settings,
                                                     return_type: str | None) -> None:
    """Each item is a frame of the ``return_type`` asked for (None: the instance's, here
    pandas) of at most ``batch_rows`` rows; concatenated, they equal the eager read in that
    type, across the sealed month and the row tier. The Arrow C stream of the same kind of
    stream still gives Arrow batches."""
    pd = pytest.importorskip("pandas")
    expected = {"polars": pl.DataFrame, "pandas": pd.DataFrame, "arrow": pa.RecordBatch, None: pd.DataFrame}
    with PostgreSQLIntegration(settings=settings, return_type="pandas") as pg:
        args: tuple[Any, ...] = (["AAA", "BBB"], "2024-01-01", "2024-03-31")
        kw: dict[str, Any] = {} if return_type is None else {"return_type": return_type}
        frames = list(pg.iter_market_data(*args, batch_rows=1000, **kw))
        assert len(frames) >= 6 and all(type(f) is expected[return_type] and len(f) <= 1000 for f in frames)
        want = pg.get_market_data(*args, **kw)
        if return_type == "polars":
            got: Any = pl.concat(frames)
        elif return_type == "arrow":
            got = pa.Table.from_batches(frames)
        else:
            got = pd.concat(frames, ignore_index=True)
        _equal(got, want, return_type or "pandas")
        options_frames = list(pg.iter_options_data("AAA", "2020-01-01", "2020-01-31", **kw))
        assert options_frames == []
        reader = pa.RecordBatchReader.from_stream(pg.iter_market_data(*args, batch_rows=1000, **kw))
        assert reader.read_all().equals(pg.get_market_data(*args, return_type="arrow"))


def test_option_streams_yield_frames_of_the_return_type(pg: PostgreSQLIntegration) -> None:
    pd = pytest.importorskip("pandas")
    pg.save_options_data(options("NIFTY", [dt.date(2024, 2, 29)], [21500.0], T0, 20))
    args = ("NIFTY", "2024-01-01", "2024-03-31")
    polars_frames = list(pg.iter_options_data(*args, batch_rows=16))
    assert len(polars_frames) == 3 and all(isinstance(f, pl.DataFrame) for f in polars_frames)
    assert_frame_equal(pl.concat(polars_frames), pg.get_options_data(*args))
    pandas_frames = list(pg.iter_options_data(*args, batch_rows=16, return_type="pandas"))
    assert all(isinstance(f, pd.DataFrame) for f in pandas_frames)
    _equal(pd.concat(pandas_frames, ignore_index=True), pg.get_options_data(*args, return_type="pandas"), "pandas")
    batches = list(pg.iter_options_data(*args, batch_rows=16, return_type="arrow"))
    assert all(isinstance(b, pa.RecordBatch) for b in batches)
    _equal(pa.Table.from_batches(batches), pg.get_options_data(*args, return_type="arrow"), "arrow")


def test_an_empty_stream_has_the_readers_schema(stored: PostgreSQLIntegration, settings: Settings) -> None:
    pg = stored
    for exact in (False, True):
        empty = pa.RecordBatchReader.from_stream(pg.iter_market_data("AAA", "2020-01-01", "2020-01-31",
                                                                      exact=exact)).read_all()
        assert empty.num_rows == 0
        assert empty.schema == pg.get_market_data("AAA", "2020-01-01", "2020-01-31", exact=exact,
                                                  return_type="arrow").schema
    options_schema = pa.RecordBatchReader.from_stream(pg.iter_options_data("AAA", "2020-01-01", "2020-01-31")).schema
    assert options_schema == pg.get_options_data("AAA", "2020-01-01", "2020-01-31", return_type="arrow").schema
    with PostgreSQLIntegration(settings=settings_replace(settings, enabled=False)) as off:
        assert pa.RecordBatchReader.from_stream(off.iter_market_data("AAA")).schema == \
            pg.get_market_data("AAA", "2020-01-01", "2020-01-31", return_type="arrow").schema


@pytest.mark.parametrize("kind", ["reader", "capsule", "scanner", "dataset", "iter_stream", "duckdb"])
def test_writers_take_any_arrow_stream(pg: PostgreSQLIntegration, kind: str) -> None:
    frame = bars(["AAA", "BBB"], ["1m"], T0, 500)
    table = frame.to_arrow()
    source: Any
    if kind == "reader":
        source = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=100))
    elif kind == "capsule":
        source = CapsuleOnly(table)
    elif kind == "scanner":
        source = ds.dataset(table).scanner(batch_size=128)
    elif kind == "dataset":
        source = ds.dataset(table)
    elif kind == "iter_stream":  # this library's own stream, written back: every row unchanged
        pg.save_market_data(frame)
        source = pg.iter_market_data(["AAA", "BBB"], "2024-01-01", "2024-03-31", batch_rows=300)
    else:
        duckdb = pytest.importorskip("duckdb")
        source = duckdb.from_arrow(table)
    result = pg.save("bars", source)
    assert result.rows == 1000 and result.method == "staged"  # the stream path: staged, merged once
    if kind == "iter_stream":
        assert result.unchanged == 1000
    else:
        assert result.inserted == 1000
    got = pg.get_market_data(["AAA", "BBB"], "2024-01-01", "2024-03-31")
    assert_frame_equal(got, frame.sort("symbol", "timestamp").select(got.columns), check_dtypes=False)


def test_a_bad_batch_late_in_a_stream_writes_nothing(pg: PostgreSQLIntegration) -> None:
    good = bars(["AAA"], ["1m"], T0, 300).to_arrow()
    bad = bars(["BBB"], ["1m"], T0, 10).to_arrow()
    bad = bad.set_column(bad.schema.get_field_index("high"), "high", pa.array([-1.0] * 10))
    reader = pa.RecordBatchReader.from_batches(good.schema, [*good.to_batches(max_chunksize=100),
                                                             *bad.to_batches()])
    with pytest.raises(ValidationError, match="high"):
        pg.save("bars", CapsuleOnly(pa.Table.from_batches(list(reader))), strict=True)
    assert pg.get_market_data(["AAA", "BBB"], "2024-01-01", "2024-03-31").height == 0


def test_option_streams(pg: PostgreSQLIntegration) -> None:
    frame = options("NIFTY", [dt.date(2024, 2, 29)], [21500.0], T0, 20)
    assert pg.save("options", ds.dataset(frame.to_arrow()).scanner()).inserted == 40
    back = pl.DataFrame(pg.iter_options_data("NIFTY", "2024-01-01", "2024-03-31"))
    assert_frame_equal(back, pg.get_options_data("NIFTY", "2024-01-01", "2024-03-31"))
