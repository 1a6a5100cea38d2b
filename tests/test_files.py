"""regime_io.files: formats, typed streaming reads, atomic writes, per-table export."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration, RegimeIOError, synthetic
from regime_io.config import Settings
from regime_io.errors import UsageError
from regime_io.files import FileBatches, detect_format, export_table, read_file, write_file


@pytest.mark.parametrize(("name", "expected"), [("a.parquet", "parquet"), ("a.PQ", "parquet"), ("a.csv", "csv"),
                                                ("a.arrow", "ipc"), ("a.feather", "ipc"), ("a.arrows", "ipc")])
def test_detect_format_from_the_suffix(name: str, expected: str) -> None:
    assert detect_format(name) == expected


def test_detect_format_refuses_unknown_suffixes_and_names() -> None:
    assert detect_format("prices.txt", format="CSV") == "csv"
    with pytest.raises(UsageError, match=r"cannot tell the format of 'prices.xlsx' .*\.parquet"):
        detect_format("prices.xlsx")
    with pytest.raises(ValueError, match="format 'excel' is not supported; allowed: parquet, csv, ipc"):
        detect_format("prices.parquet", format="excel")


def test_read_parquet_in_batches_with_its_row_count(tmp_path: Path) -> None:
    bars = synthetic.market_bars(["NIFTY"], days=2)
    bars.write_parquet(tmp_path / "b.parquet", row_group_size=300)
    batches = read_file(tmp_path / "b.parquet", "bars", batch_rows=200)
    assert isinstance(batches, Iterator) and batches.rows == bars.height and batches.format == "parquet"
    sizes = [b.num_rows for b in batches]
    assert sum(sizes) == bars.height and max(sizes) <= 200
    with pytest.raises(UsageError, match="batch_rows must be at least 1"):
        read_file(tmp_path / "b.parquet", "bars", batch_rows=0)
    with pytest.raises(UsageError, match="unknown table 'prices'"):
        read_file(tmp_path / "b.parquet", "prices")


def test_read_csv_with_the_table_types(tmp_path: Path) -> None:
    bars = synthetic.market_bars(["NIFTY"], days=1).with_columns(pl.col("volume").cast(pl.Int32))
    bars.to_pandas().to_csv(tmp_path / "pandas.csv")  # with pandas' unnamed index column
    table = pa.Table.from_batches(list(read_file(tmp_path / "pandas.csv", "market_data")))
    assert table.schema.field("volume").type == pa.int64()
    assert table.schema.field("close").type == pa.float64()
    assert table.schema.field("timestamp").type == pa.timestamp("us")
    assert table.column_names[0] not in bars.columns  # the index column is there, for extra_columns
    got = pl.from_arrow(table).select(bars.columns)
    assert_frame_equal(got, bars.with_columns(pl.col("volume").cast(pl.Int64)), check_dtypes=False)


def test_read_csv_dates_as_text_for_a_date_format(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("symbol,timestamp,close\nNIFTY,04/03/2024 09:15,1.5\n")
    table = pa.Table.from_batches(list(read_file(tmp_path / "d.csv", "bars", date_format="%d/%m/%Y %H:%M")))
    assert table.column("timestamp").to_pylist() == ["04/03/2024 09:15"]
    with pytest.raises(pa.ArrowInvalid,
                       match=r"CSV conversion error to timestamp\[us\]: invalid value '04/03/2024 09:15'"):
        list(read_file(tmp_path / "d.csv", "bars"))  # not ISO 8601: refused, never guessed


def test_read_ipc_file_and_stream(tmp_path: Path) -> None:
    regimes = synthetic.minute_regimes(["TCS"], days=1)
    regimes.write_ipc(tmp_path / "r.arrow")
    with pa.OSFile(str(tmp_path / "r.arrows"), "wb") as sink, \
            pa.ipc.new_stream(sink, regimes.to_arrow().schema) as writer:
        writer.write_table(regimes.to_arrow())
    for name in ("r.arrow", "r.arrows"):
        got = pl.from_arrow(pa.Table.from_batches(list(read_file(tmp_path / name, "1min"))))
        assert isinstance(got, pl.DataFrame)
        assert_frame_equal(got, regimes)


def test_write_file_is_atomic(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    assert write_file(pa.table({"a": [1, 2, 3]}), out) == 3

    def failing() -> Iterator[pa.RecordBatch]:
        yield pa.record_batch({"a": [4]})
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_file(failing(), out)
    assert pl.read_parquet(out)["a"].to_list() == [1, 2, 3]  # the previous file, untouched
    assert not list(tmp_path.glob("*.part"))
    schema = pa.schema([("symbol", pa.string()), ("close", pa.float64())])
    assert write_file(iter(()), tmp_path / "empty.csv", schema=schema) == 0
    assert (tmp_path / "empty.csv").read_text().strip() == '"symbol","close"'


@pytest.fixture
def stored(settings: Settings) -> Iterator[PostgreSQLIntegration[pl.DataFrame]]:
    with PostgreSQLIntegration(settings=settings) as pg:
        pg.initialize_database()
        pg.save_market_data(synthetic.market_bars(["NIFTY", "TCS"], days=2))
        pg.save_optimization_result(synthetic.optimization_results(["NIFTY"], runs=3))
        yield pg


def test_export_a_range_under_any_table_name(stored: Any, tmp_path: Path) -> None:
    for name in ("bars", "market_data"):
        result = export_table(stored, name, tmp_path / f"{name}.arrow", symbol="TCS", start="2024-01-02 09:15",
                              end="2024-01-02 09:15")
        assert (result.table, result.rows) == ("market_data", 1)
        assert str(result) == f"1 row of market_data written to {tmp_path / f'{name}.arrow'}"
    got = pl.read_ipc(tmp_path / "bars.arrow")
    assert got["symbol"].to_list() == ["TCS"] and got.height == 1


def test_export_of_nothing_is_refused_unless_allowed(stored: Any, tmp_path: Path) -> None:
    out = tmp_path / "x.parquet"
    with pytest.raises(UsageError, match=r"no rows of market_data for 'UNKNOWN' from 2024-01-01 to 2024-01-31; "
                                         r"nothing written"):
        export_table(stored, "bars", out, symbol="UNKNOWN", start="2024-01-01", end="2024-01-31")
    assert not out.exists()
    result = export_table(stored, "bars", out, symbol="UNKNOWN", start="2024-01-01", end="2024-01-31",
                          allow_empty=True)
    assert result.rows == 0
    empty = pl.read_parquet(out)
    assert empty.height == 0 and empty.columns == list(synthetic.market_bars(["A"], days=1).columns)
    with pytest.raises(RegimeIOError, match="export of market_data needs symbol, start"):
        export_table(stored, "bars", out, end="2024-01-31")


def test_export_optimisation_results_with_json_parameters(stored: Any, tmp_path: Path) -> None:
    result = export_table(stored, "optimization_results", tmp_path / "o.csv")
    assert result.rows == 3
    runs = pl.read_csv(tmp_path / "o.csv")
    params = [json.loads(p) for p in runs["parameters"]]
    assert {"ema_fast", "ema_slow", "atr_period", "regime_filter"} == set(params[0])
    assert isinstance(read_file(tmp_path / "o.csv", "optimization_results"), FileBatches)


def test_export_options_and_regimes(stored: Any, tmp_path: Path) -> None:
    chain = synthetic.options_chain("NIFTY", days=1, strikes=2)
    regimes = synthetic.regimes(["NIFTY"], days=1)
    stored.save_options_data(chain)
    stored.save_market_regime(regimes)
    options = export_table(stored, "options", tmp_path / "o.parquet", symbol="NIFTY", start="2024-01-01",
                           end="2024-01-01")
    assert options.rows == chain.height
    got = pl.read_parquet(tmp_path / "o.parquet").sort("timestamp", "expiry_date", "strike_price", "option_type")
    assert got["implied_volatility"].to_list() == chain["implied_volatility"].to_list()
    result = export_table(stored, "regimes", tmp_path / "r.arrow", symbol="NIFTY", start="2024-01-01",
                          end="2024-01-01", timeframe="15m")
    assert result.rows == regimes.height == pl.read_ipc(tmp_path / "r.arrow").height
