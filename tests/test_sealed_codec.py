"""The sealed tier's chunk codecs (regime_io._tiers.sealed_format): new chunks are written
as "arrow-ipc-lz4-rel" (time and decimal columns as differences within each batch from
its first value, or decimals as differences from a base column of the same scale,
integers in their narrowest type, LZ4), chunks written earlier as "arrow-ipc-lz4-narrow",
"arrow-ipc-lz4-delta" or "arrow-ipc-zstd" still read, and all give back exactly the rows
that went in."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pytest
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration
from regime_io._tiers import chunk_bytes, column_codec, segment_memo
from regime_io._tiers import sealed_format as chunks
from regime_io.errors import SchemaError
from regime_io.tables import TABLES
from tests._reading_data import bars

BARS = TABLES["market_data"]
REGIMES = TABLES["market_regimes_1min"]


def _bars(n: int, *, start: dt.datetime = dt.datetime(2024, 1, 2, 9, 15), jump: int = 0) -> pa.Table:
    times = [start + dt.timedelta(minutes=i) for i in range(n)]
    if jump:  # a gap wider than an int32 of microseconds: the d64 path
        times = [t + (dt.timedelta(days=jump) if i >= n // 2 else dt.timedelta(0)) for i, t in enumerate(times)]
    price = [Decimal(100 + (i * 37 % 101) - 50) / 100 + Decimal("-60.00") * (i % 7 == 0) for i in range(n)]
    table = pa.table({"timestamp": pa.array(times, pa.timestamp("us")), "open": price, "high": price, "low": price,
                      "close": price, "volume": list(range(n)), "timeframe": ["1m"] * n})
    return chunks.conform_payload(BARS, table)


@pytest.mark.parametrize("rows", [1, 5, chunks.BATCH_ROWS, chunks.BATCH_ROWS * 2 + 17])
@pytest.mark.parametrize("codec", chunks.CODECS)
def test_every_codec_gives_back_the_rows(rows: int, codec: str) -> None:
    table = _bars(rows)
    payload = chunks.encode(BARS, table, codec=codec)
    got = chunks.decode(BARS, payload, chunks.fingerprint(BARS), codec=codec)
    assert got.schema == chunks.payload_schema(BARS)
    assert got.equals(table.combine_chunks())


def test_differences_too_wide_for_int32_are_kept_as_int64() -> None:
    table = _bars(chunks.BATCH_ROWS + 100, jump=40)  # 40 days = 3.5e12 microseconds in one step
    payload = chunks.encode(BARS, table)
    got = chunks.decode(BARS, payload, chunks.fingerprint(BARS))
    assert got.equals(table.combine_chunks())


@pytest.mark.parametrize("codec", chunks.CODECS)
def test_a_window_returns_exactly_its_rows_and_each_batch_stands_alone(codec: str) -> None:
    table = _bars(chunks.BATCH_ROWS * 3)
    payload = chunks.encode(BARS, table, codec=codec)
    ts = table.column("timestamp")
    fp = chunks.fingerprint(BARS)
    window = (ts[chunks.BATCH_ROWS * 2 + 5].as_py(), ts[chunks.BATCH_ROWS * 2 + 10].as_py())
    got = chunks.decode(BARS, payload, fp, window=window)
    assert got.equals(table.slice(chunks.BATCH_ROWS * 2 + 5, 6).combine_chunks())  # both ends included
    middle = (ts[chunks.BATCH_ROWS + 5].as_py(), ts[chunks.BATCH_ROWS * 2 + 5].as_py())
    got = chunks.decode(BARS, payload, fp, window=middle)
    # Batches 2 and 3, each summed from its own first value, cut to the window.
    assert got.equals(table.slice(chunks.BATCH_ROWS + 5, chunks.BATCH_ROWS + 1).combine_chunks())
    floats = chunks.decode(BARS, payload, fp, window=middle, floats=True)
    assert floats.num_rows == got.num_rows
    assert (chunks.as_type(floats.column("close"), pa.float64()).to_pylist()
            == [float(v) for v in got.column("close").to_pylist()])
    between = (ts[10].as_py() + dt.timedelta(seconds=1), ts[10].as_py() + dt.timedelta(seconds=2))
    assert chunks.decode(BARS, payload, fp, window=between).num_rows == 0  # between two bars: nothing
    before = (ts[0].as_py() - dt.timedelta(days=2), ts[0].as_py() - dt.timedelta(days=1))
    assert chunks.decode(BARS, payload, fp, window=before).num_rows == 0


@pytest.mark.parametrize("codec", chunks.CODECS)
def test_a_window_reads_from_its_byte_range_and_the_tail_alone(codec: str) -> None:
    """What a restatement fetches of a payload (the footer at its end and the byte range
    of the window's batches) decodes the window as the whole payload does; the batches
    outside it fail to read, loudly; a tail without the whole footer asks for everything."""
    table = _bars(chunks.BATCH_ROWS * 4 + 100)
    payload = chunks.encode(BARS, table, codec=codec)
    ts = table.column("timestamp")
    fp = chunks.fingerprint(BARS)
    tail = payload[-chunk_bytes.TAIL_BYTES:]
    spans = [(0, 0), (5, 9), (chunks.BATCH_ROWS - 2, chunks.BATCH_ROWS + 3),
             (chunks.BATCH_ROWS * 2 + 1, chunks.BATCH_ROWS * 4 + 99), (0, chunks.BATCH_ROWS * 4 + 99)]
    for lo, hi in spans:
        window = (ts[lo].as_py(), ts[hi].as_py())
        start_stop = chunks.window_bytes(tail, len(payload), window)
        assert start_stop is not None
        start, stop = start_stop
        sparse = chunk_bytes.sparse_payload(len(payload), tail, start, payload[start:stop])
        got = chunks.decode(BARS, sparse, fp, codec=codec, window=window)
        assert got.equals(chunks.decode(BARS, payload, fp, codec=codec, window=window))
        assert got.num_rows == hi - lo + 1
    start, stop = chunks.window_bytes(tail, len(payload), (ts[5].as_py(), ts[9].as_py())) or (0, 0)
    assert stop - start < len(payload) / 3  # one batch of five (~27% of this payload)
    sparse = chunk_bytes.sparse_payload(len(payload), tail, start, payload[start:stop])
    with pytest.raises(pa.ArrowInvalid):
        chunks.decode(BARS, sparse, fp, codec=codec)  # every batch: the others are not there
    before = (ts[0].as_py() - dt.timedelta(days=2), ts[0].as_py() - dt.timedelta(days=1))
    assert chunks.window_bytes(tail, len(payload), before) is not None
    assert chunks.window_bytes(payload[-200:], len(payload), before) is None  # the footer is longer
    assert chunks.window_bytes(b"not a payload", 13, before) is None


@pytest.mark.parametrize("floats", [True, False])
@pytest.mark.parametrize("window", [None, (1000, 9000), (20000, 20100)])
@pytest.mark.parametrize("shape", ["restated", "added", "nulls"])
def test_a_patch_written_over_the_rows_as_they_are_built_gives_what_laying_it_over_gives(
        floats: bool, window: tuple[int, int] | None, shape: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A patch whose every time is in the payload is written over the rows as their
    columns are built; one that adds a row, or holds a null, is laid over the built rows
    (apply_patch). Either way the rows are the same."""
    spec = REGIMES if shape == "nulls" else BARS
    n = chunks.BATCH_ROWS * 3
    start = dt.datetime(2024, 1, 2, 9, 15)
    if spec is BARS:
        table = _bars(n, start=start)
        patch = table.take(list(range(500, 12000, 3))).set_column(
            5, "volume", pa.array(list(range(10**6, 10**6 + len(range(500, 12000, 3)))), pa.int64()))
        patch = patch.set_column(4, "close", pa.array([Decimal("12.34")] * patch.num_rows,
                                                      table.schema.field("close").type))
        if shape == "added":  # one time between two stored bars
            extra = patch.slice(0, 1).set_column(0, "timestamp", pa.array([start + dt.timedelta(seconds=30)],
                                                                            pa.timestamp("us")))
            patch = pa.concat_tables([extra.cast(patch.schema), patch])
    else:
        times = [start + dt.timedelta(minutes=i) for i in range(n)]
        table = chunks.conform_payload(spec, pa.table({
            "timestamp": pa.array(times, pa.timestamp("us")), "regime": ["UP"] * n,
            "confidence": pa.array([Decimal("0.50")] * n, pa.decimal128(5, 2))}))
        patch = table.take(list(range(100, 9000, 7)))
        patch = patch.set_column(2, "confidence", pa.array([None] * patch.num_rows, pa.decimal128(5, 2)))
    patch = chunks.conform_payload(spec, patch)
    payload, encoded = chunks.encode(spec, table), chunks.encode(spec, patch)
    fp = chunks.fingerprint(spec)
    ts = table.column("timestamp")
    span = None if window is None else (ts[window[0]].as_py(), ts[window[1]].as_py())
    placed: list[bool] = []
    real = column_codec.overlay_places

    def spy(*args: Any) -> Any:
        found = real(*args)
        placed.append(found is not None)
        return found

    monkeypatch.setattr(column_codec, "overlay_places", spy)
    got = chunks.decode(spec, payload, fp, window=span, floats=floats, patch=encoded)
    expected = chunks.apply_patch(spec, chunks.decode(spec, payload, fp, window=span, floats=floats),
                                  chunks.decode(spec, encoded, fp, window=span, floats=floats))
    assert got.equals(expected) and got.schema.metadata is None
    in_window = chunks.decode(spec, encoded, fp, window=span).num_rows
    # The added row (between the first two bars) is outside both windows.
    overlaid = shape == "restated" or (shape == "added" and window is not None)
    assert placed == ([overlaid] if in_window else [])


def test_nullable_decimals_with_nulls_are_stored_as_they_are() -> None:
    n = 50
    table = chunks.conform_payload(REGIMES, pa.table({
        "timestamp": pa.array([dt.datetime(2024, 1, 2, 9, 15) + dt.timedelta(minutes=i) for i in range(n)],
                              pa.timestamp("us")),
        "regime": ["UP"] * n,
        "confidence": [None if i % 3 == 0 else Decimal(i % 100) / 100 for i in range(n)]}))
    payload = chunks.encode(REGIMES, table)
    got = chunks.decode(REGIMES, payload, chunks.fingerprint(REGIMES))
    assert got.equals(table.combine_chunks())
    assert got.column("confidence").null_count == 17


def _regimes(n: int, *, nulls: bool) -> pa.Table:
    return chunks.conform_payload(REGIMES, pa.table({
        "timestamp": pa.array([dt.datetime(2024, 3, 1) + dt.timedelta(minutes=i) for i in range(n)],
                              pa.timestamp("us")),
        "regime": ["UP", "DOWN"] * (n // 2) + ["UP"] * (n % 2),
        "confidence": [None if nulls and i % 3 == 0 else Decimal(i % 100 - 40) / 100 for i in range(n)]}))


@pytest.mark.parametrize("codec", chunks.CODECS)
def test_tables_encoded_together_are_the_bytes_each_gets_alone(codec: str) -> None:
    """A restatement encodes its patches together (encode_many, add_segments,
    chunk_stats_many, last_rows_json: each column's arithmetic once over all of them);
    each table's bytes, statistics and newest row are exactly what it gets alone --
    differences of other widths (a 40-day jump, volumes past int32), more than one
    batch, one row, a table the differences of whose prices are wider than against the
    close, and tables with nulls (encoded one by one) among them."""
    wide = _bars(300)
    wide = chunks.conform_payload(BARS, wide.set_column(wide.schema.get_field_index("volume"), "volume",
                                                        pa.array([i * 2**35 for i in range(300)], pa.int64())))
    shifted = _bars(50, start=dt.datetime(2024, 1, 9))
    shifted = chunks.conform_payload(BARS, shifted.set_column(
        1, "open", pa.array([Decimal(i * 997 % 90001) / 100 for i in range(50)], pa.decimal128(10, 2))))
    for spec, tables in (
        (BARS, [_bars(1440), _bars(chunks.BATCH_ROWS + 100, jump=40), _bars(1), wide, shifted, _bars(7)]),
        # Each one batch, widths differing: each table's part a view of a cast per width.
        (BARS, [_bars(1440), wide, _bars(1), shifted, _bars(7), _bars(300, jump=40)]),
        (REGIMES, [_regimes(30, nulls=False), _regimes(30, nulls=True), _regimes(5, nulls=False)]),
    ):
        alone = [chunks.encode(spec, t, codec=codec) for t in tables]
        assert chunks.encode_many(spec, tables, codec=codec) == alone
        patch = chunks.add_segment(spec, None, tables[0])
        items = [(None, t, ()) for t in tables[1:]] + [(patch, tables[0], chunk_bytes.patch_segments(patch))]
        assert chunks.add_segments(spec, items) == [chunks.add_segment(spec, p, t, replacing=r) for p, t, r in items]
        assert chunks.chunk_stats_many(spec, tables) == [chunks.chunk_stats(spec, t) for t in tables]
        keys = [(f"S{i}", *("1m",) * (len(spec.chunk_by) - 1)) for i in range(len(tables))]
        assert chunks.last_rows_json(spec, list(zip(keys, tables, strict=True))) == [
            chunks.last_row_json(spec, k, t) for k, t in zip(keys, tables, strict=True)]
        for payload, table in zip(alone, tables, strict=True):
            assert chunks.decode(spec, payload, chunks.fingerprint(spec), codec=codec).equals(table.combine_chunks())
    assert chunks.encode_many(BARS, []) == chunks.add_segments(BARS, []) == chunks.chunk_stats_many(BARS, []) == []
    assert chunks.last_rows_json(BARS, []) == column_codec.to_deltas_many([], narrow=True) == []


def test_patches_decoded_together_give_each_chunk_its_own_rows() -> None:
    """decode_patches (a restatement's chunks, every segment built in one pass) gives
    each patch the rows decode_patch gives it alone: segments chosen or all, segments
    laid out differently (prices not stored against the close), several segments a
    patch, and a patch whose chosen segments hold no row of another's time."""
    first = chunks.add_segment(BARS, None, _bars(1440))
    first = chunks.add_segment(BARS, first, _bars(30, start=dt.datetime(2024, 1, 5)))
    shifted = chunks.conform_payload(BARS, _bars(50, start=dt.datetime(2024, 1, 9)).set_column(
        1, "open", pa.array([Decimal(i * 997 % 90001) / 100 for i in range(50)], pa.decimal128(10, 2))))
    other = chunks.add_segment(BARS, None, shifted)
    third = chunks.add_segment(BARS, None, _bars(3, start=dt.datetime(2024, 1, 20)))
    segments = [chunk_bytes.patch_segments(p) for p in (first, other, third)]
    assert segments[0] is not None and segments[1] is not None and segments[2] is not None
    cases = [[(first, segments[0]), (other, segments[1]), (third, segments[2])],
             [(first, segments[0][1:]), (third, segments[2])], [(other, segments[1])]]
    for case in cases:
        got = chunks.decode_patches(BARS, case, chunks.fingerprint(BARS))
        for table, (patch, chosen) in zip(got, case, strict=True):
            alone = chunks.decode_patch(BARS, patch, chunks.fingerprint(BARS), segments=chosen)
            assert table.num_rows == sum(s.rows for s in chosen)
            assert table.equals(alone)


def test_an_unknown_codec_is_refused_with_the_known_ones() -> None:
    with pytest.raises(SchemaError, match="arrow-ipc-lz4-narrow, arrow-ipc-lz4-delta, arrow-ipc-zstd"):
        chunks.decode(BARS, chunks.encode(BARS, _bars(3)), chunks.fingerprint(BARS), codec="parquet-zstd")


def test_chunks_of_every_codec_read_together(pg: PostgreSQLIntegration, sql: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A schema sealed by earlier versions (zstd chunks, then LZ4 differences with the
    batches' first values in place, narrowed, relative to the close) and then by this
    one: reads, restatements into the old chunks and unsealing see one table."""
    data = bars(["NIFTY", "BANKNIFTY"], ["1m"], dt.datetime(2024, 1, 2, 9, 15), 6000, step=dt.timedelta(minutes=30))
    pg.save_market_data(data)
    want = pg.get_market_data(["NIFTY", "BANKNIFTY"], "2024-01-01", "2024-12-31", exact=True)
    for codec, cutoff in ((chunks.ZSTD_CODEC, dt.date(2024, 2, 1)), (chunks.DELTA_CODEC, dt.date(2024, 3, 1)),
                          (chunks.NARROW_CODEC, dt.date(2024, 4, 1)), (chunks.RELATIVE_CODEC, dt.date(2024, 5, 1))):
        with monkeypatch.context() as old:
            old.setattr(chunks, "CODEC", codec)  # (encode reads it when called)
            pg.seal(cutoff)
    pg.seal(dt.date(2024, 6, 1))
    table = pg.db.table("market_data")[:-1] + '_chunks"'
    codecs = dict(sql(f"SELECT to_char(period_start, 'YYYY-MM'), min(codec) FROM {table} GROUP BY 1"))
    assert codecs == {"2024-01": chunks.ZSTD_CODEC, "2024-02": chunks.DELTA_CODEC, "2024-03": chunks.NARROW_CODEC,
                      "2024-04": chunks.RELATIVE_CODEC, "2024-05": chunks.CODEC}
    # Each chunk's payload is written in the codec its row names (the IPC metadata differs).
    kinds = dict(sql(f"SELECT to_char(period_start, 'YYYY-MM'), min(encode(substring(payload from 1 for 4096), "
                     f"'escape')) FROM {table} GROUP BY 1"))
    assert "regime_io.delta" not in kinds["2024-01"] and "=s" in kinds["2024-05"] and "=s" not in kinds["2024-04"]
    assert_frame_equal(pg.get_market_data(["NIFTY", "BANKNIFTY"], "2024-01-01", "2024-12-31", exact=True), want)
    assert_frame_equal(pg.get_market_data(["NIFTY", "BANKNIFTY"], "2024-01-01", "2024-12-31"),
                       want.with_columns(pl.col(c).cast(pl.Float64) for c in ("open", "high", "low", "close")))
    for day_of in (dt.date(2024, 1, 3), dt.date(2024, 2, 7), dt.date(2024, 3, 6), dt.date(2024, 4, 3)):
        day = want.filter(pl.col("timestamp").dt.date() == day_of).with_columns(pl.col("volume") + 1)
        assert pg.save_market_data(day.drop("id", strict=False)).updated == day.height
        after = pg.get_market_data(["NIFTY", "BANKNIFTY"], day_of, day_of, exact=True)
        assert after["volume"].to_list() == day["volume"].to_list()
    codecs = dict(sql(f"SELECT to_char(period_start, 'YYYY-MM'), min(codec) FROM {table} GROUP BY 1"))
    assert set(codecs.values()) == {chunks.CODEC}  # a restatement rewrites an old chunk in this codec
    assert pg.unseal("2024-01-01", "2024-12-31").rows_moved == want.height


def test_the_narrow_codec_stores_differences_and_integers_in_their_narrowest_types() -> None:
    """Prices as int8/int16 differences from each batch's first
    value (kept in the metadata), minutes as int32, volume as the narrowest integer type
    that holds it; a gap wider than int32 keeps int64; every value comes back."""
    table = _bars(chunks.BATCH_ROWS * 2 + 5)
    payload = chunks.encode(BARS, table, codec=chunks.NARROW_CODEC)
    stored = ipc.open_file(pa.py_buffer(payload)).schema
    # (these prices jump by up to 60.50 a bar: 6,050 cents, int16)
    assert [stored.field(c).type for c in ("timestamp", "open", "volume")] == [pa.int32(), pa.int16(), pa.int16()]
    steady = table.set_column(1, "open", pa.array([Decimal(100 + i % 3) / 100 for i in range(table.num_rows)],
                                                  pa.decimal128(10, 2)))
    assert ipc.open_file(pa.py_buffer(chunks.encode(BARS, chunks.conform_payload(BARS, steady),
                                                    codec=chunks.NARROW_CODEC))).schema.field("open").type == pa.int8()
    assert stored.metadata[b"regime_io.firsts"].count(b",") == 2 * 5  # 3 batches, 5 columns
    assert chunks.decode(BARS, payload, chunks.fingerprint(BARS), codec=chunks.NARROW_CODEC).equals(
        table.combine_chunks())
    wide = _bars(chunks.BATCH_ROWS + 100, jump=40)
    stored = ipc.open_file(pa.py_buffer(chunks.encode(BARS, wide, codec=chunks.NARROW_CODEC))).schema
    assert stored.field("timestamp").type == pa.int64()
    big = table.set_column(5, pa.field("volume", pa.int64()), pa.array([2**40] * table.num_rows, pa.int64()))
    payload = chunks.encode(BARS, chunks.conform_payload(BARS, big))
    assert ipc.open_file(pa.py_buffer(payload)).schema.field("volume").type == pa.int64()
    assert chunks.decode(BARS, payload, chunks.fingerprint(BARS)).column("volume").to_pylist()[:2] == [2**40] * 2


def _stored(payload: bytes) -> tuple[pa.Schema, dict[str, str]]:
    schema = ipc.open_file(pa.py_buffer(payload)).schema
    kinds = dict(item.split("=", 1) for item in schema.metadata[b"regime_io.delta"].decode().split(","))
    return schema, kinds


def _times(table: pa.Table, times: list[dt.datetime]) -> pa.Table:
    return chunks.conform_payload(BARS, table.set_column(0, "timestamp", pa.array(times, pa.timestamp("us"))))


@pytest.mark.parametrize("window", [None, (dt.datetime(2024, 1, 8, 9, 0), dt.datetime(2024, 1, 8, 11, 0))])
def test_the_offsets_codec_steps_times_offsets_prices_and_compresses_only_what_shrinks(window: Any) -> None:
    """Minutes stored as 1s in one byte (their step, 60,000,000 us, named in the kind);
    a close as offsets from its batch's first value where no wider than its differences;
    the payload LZ4-compressed only when that saves a quarter; every value back, whole
    and in a window, as decimals and as floats."""
    fp = chunks.fingerprint(BARS)
    rows = chunks.BATCH_ROWS * 2 + 17
    rng = np.random.default_rng(23)
    cents = 100_000 + np.cumsum(rng.integers(-150, 151, rows))  # a random walk: its LZ4 gain is ~0

    def decimals(values: Any) -> pa.Array:
        return pa.array([Decimal(int(v)).scaleb(-2) for v in values], pa.decimal128(10, 2))

    table = _bars(rows)
    for c, shift in (("open", rng.integers(-20, 21, rows)), ("high", rng.integers(0, 40, rows)),
                     ("low", -rng.integers(0, 40, rows)), ("close", 0)):
        table = table.set_column(table.schema.get_field_index(c), c, decimals(cents + shift))
    table = chunks.conform_payload(BARS, table.set_column(5, "volume", pa.array(rng.integers(0, 10**6, rows))))

    def check(t: pa.Table) -> bytes:
        payload = chunks.encode(BARS, t)
        want = t if window is None else t.filter(pc.and_(pc.greater_equal(t["timestamp"], window[0]),
                                                        pc.less_equal(t["timestamp"], window[1])))
        assert chunks.decode(BARS, payload, fp, window=window).equals(want.combine_chunks())
        # As floats: what the previous codec's float read gives (its division, tested above).
        older = chunks.encode(BARS, t, codec=chunks.RELATIVE_CODEC)
        assert chunks.decode(BARS, payload, fp, window=window, floats=True).equals(
            chunks.decode(BARS, older, fp, codec=chunks.RELATIVE_CODEC, window=window, floats=True))
        return payload

    payload = check(table)
    schema, kinds = _stored(payload)
    assert schema.field("timestamp").type == pa.int8() and kinds["timestamp"].endswith("|60000000")
    assert kinds["timestamp"][0] == "s"
    # A random walk of up to 1.50 a bar: its offsets within a batch fit int16, as its differences do.
    assert kinds["close"][0] == "a" and schema.field("close").type == pa.int16()
    # Differences that do not compress: stored plain (the payload no smaller than its columns).
    assert len(payload) >= sum(schema.field(n).type.bit_width // 8 for n in schema.names) * rows
    # A row 30 s after the first among minutes: the step is the second difference, 30 s.
    times = [dt.datetime(2024, 1, 2, 9, 15) + dt.timedelta(minutes=i) for i in range(rows)]
    times[1] = times[0] + dt.timedelta(seconds=30)
    _, kinds = _stored(check(_times(table, times)))
    assert kinds["timestamp"].endswith("|30000000")
    # Days whose second difference (3 days, a weekend) is a multiple of the step (1 day).
    days = [dt.datetime(2024, 1, 5) + dt.timedelta(days=i + 2 * (i > 0)) for i in range(rows)]
    _, kinds = _stored(check(_times(table, days)))
    assert kinds["timestamp"][0] == "s" and kinds["timestamp"].endswith(f"|{86_400 * 10**6}")
    times[2] = times[1] + dt.timedelta(microseconds=7)  # no common step: plain differences
    _, kinds = _stored(check(_times(table, times)))
    assert kinds["timestamp"][0] == "d"
    # A trend: the close's differences (1 cent, int8) narrower than its offsets (int16): kept as differences.
    trend = [Decimal(10000 + i) / 100 for i in range(rows)]
    trending = chunks.conform_payload(BARS, table.set_column(4, "close", pa.array(trend, pa.decimal128(10, 2))))
    _, kinds = _stored(check(trending))
    assert kinds["close"][0] == "d"
    # Repeated prices shrink by more than a quarter: compressed.
    flat = [Decimal("100.25")] * rows
    repeated = table
    for c in ("open", "high", "low", "close"):
        repeated = repeated.set_column(repeated.schema.get_field_index(c), c, pa.array(flat, pa.decimal128(10, 2)))
    repeated = chunks.conform_payload(BARS, repeated.set_column(5, "volume", pa.array([7] * rows, pa.int64())))
    schema, _ = _stored(check(repeated))
    raw = sum(schema.field(n).type.bit_width // 8 for n in schema.names) * rows
    assert len(chunks.encode(BARS, repeated)) < raw / 4


def test_patch_segments_of_other_steps_are_built_apart() -> None:
    """Two segments of one patch whose times step differently (minutes, then 30 s): their
    batches are built together only when their layouts match, steps included, so each
    segment's times come back in its own step."""
    fp = chunks.fingerprint(BARS)
    minutes = _bars(300)
    start = dt.datetime(2024, 1, 3, 9, 15)
    halves = _times(_bars(300), [start + dt.timedelta(seconds=30 * i) for i in range(300)])
    patch = chunks.add_segment(BARS, chunks.add_segment(BARS, None, minutes), halves)
    assert len(chunks.patch_segments(patch) or []) == 2
    for floats in (False, True):
        got = chunks.decode_patch(BARS, patch, fp, floats=floats)
        want = pa.concat_tables([chunks.decode(BARS, chunks.encode(BARS, t), fp, floats=floats)
                                 for t in (minutes, halves)])
        assert got.equals(want.combine_chunks())


def test_unscaled_integers_become_the_same_decimals() -> None:
    """Sealing reads prices as their unscaled integers ((price * 10^s)::int8, no text)."""
    values = [12976, -6000, None, 0, 10**17]
    kind = pa.decimal128(18, 2)
    got = column_codec.decimal_from_unscaled(pa.array(values, pa.int64()), kind)
    assert got.to_pylist() == [None if v is None else Decimal(v).scaleb(-2) for v in values]
    sliced = column_codec.decimal_from_unscaled(pa.array(values, pa.int64()).slice(1, 3), kind)
    assert sliced.to_pylist() == [Decimal("-60.00"), None, Decimal("0.00")]


def test_chunk_statistics_are_the_exact_bounds_of_every_column() -> None:
    """The per-chunk min/max (read pruning) of decimals come from their unscaled integers;
    they are the exact decimals Arrow's own min_max gives, negative values included, and
    a column with nulls takes Arrow's path."""
    import pyarrow.compute as pc

    table = _bars(chunks.BATCH_ROWS + 3)
    got = chunks.chunk_stats(BARS, table)
    for name in chunks.chunk_stat_columns(BARS):
        bounds = pc.min_max(table.column(name))
        assert (got[f"min_{name}"], got[f"max_{name}"]) == (bounds["min"].as_py(), bounds["max"].as_py())
        assert str(got[f"min_{name}"]) == str(bounds["min"].as_py())  # same exponent: '-60.50', not '-60.5'
    assert got["min_open"] < 0 < got["max_open"]
    times = [dt.datetime(2024, 1, 2) + dt.timedelta(minutes=i) for i in range(4)]
    regimes = chunks.conform_payload(REGIMES, pa.table({
        "timestamp": pa.array(times, pa.timestamp("us")), "regime": ["UP"] * 4,
        "confidence": pa.array([Decimal("0.25"), None, Decimal("-0.50"), Decimal("0.75")], pa.decimal128(5, 2))}))
    stats = chunks.chunk_stats(REGIMES, regimes)
    assert (stats["min_confidence"], stats["max_confidence"]) == (Decimal("-0.50"), Decimal("0.75"))


def test_a_framed_patch_decodes_the_segments_its_window_meets_in_order_of_time() -> None:
    rows = _bars(3000)
    fp = chunks.fingerprint(BARS)
    parts = [rows.slice(2000, 500), rows.slice(0, 700), rows.slice(1000, 300)]  # written out of order
    patch: bytes | None = None
    for part in parts:
        patch = chunks.add_segment(BARS, patch, part)
    segments = chunk_bytes.patch_segments(patch)
    assert segments is not None and [s.rows for s in segments] == [700, 300, 500]
    whole = chunks.decode_patch(BARS, patch, fp)
    assert whole.equals(pa.concat_tables([rows.slice(0, 700), rows.slice(1000, 300), rows.slice(2000, 500)]))
    ts = rows.column("timestamp")
    window = (ts[1100].as_py(), ts[2100].as_py())  # meets the second and third segments
    assert chunks.decode_patch(BARS, patch, fp, window=window).equals(
        pa.concat_tables([rows.slice(1100, 200), rows.slice(2000, 101)]))
    gap = (ts[800].as_py(), ts[900].as_py())  # between segments: no row, the payload's types
    assert chunks.decode_patch(BARS, patch, fp, window=gap).num_rows == 0
    # Replacing the middle segment keeps the others' bytes.
    assert patch is not None
    again = chunks.add_segment(BARS, patch, rows.slice(1000, 400), replacing=segments[1:2])
    after = chunk_bytes.patch_segments(again)
    assert after is not None and [s.rows for s in after] == [700, 400, 500]
    assert again[after[0].start:after[0].start + after[0].size] == \
        patch[segments[0].start:segments[0].start + segments[0].size]
    # A patch written before segments (one IPC file) reads as one; a cut-short one is refused.
    assert chunk_bytes.patch_segments(chunks.encode(BARS, rows)) is None
    assert chunks.decode_patch(BARS, chunks.encode(BARS, rows.slice(5, 9)), fp).equals(rows.slice(5, 9))
    last = max(segments, key=lambda s: s.start)  # the last one in the bytes
    for cut in (patch[:-10], patch[:-(last.size + 20)]):  # inside a segment, inside its frame
        with pytest.raises(SchemaError, match="cut short"):
            chunk_bytes.patch_segments(cut)


def test_segments_stored_in_different_widths_or_with_nulls_decode_together(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _bars(3000)
    fp = chunks.fingerprint(BARS)
    big = rows.slice(1000, 500)  # volumes past int16, prices jumping: other narrowed types
    big = big.set_column(big.schema.get_field_index("volume"), "volume",
                         pa.array([10**6 + i for i in range(500)], pa.int64()))
    nulls = rows.slice(2000, 300)
    nulls = nulls.set_column(nulls.schema.get_field_index("volume"), "volume",
                             pa.array([None if i % 3 else i for i in range(300)], pa.int64()))
    parts = [chunks.conform_payload(BARS, p) for p in (rows.slice(0, 400), big, nulls)]
    patch: bytes | None = None
    for part in parts:
        patch = chunks.add_segment(BARS, patch, part)
    for remembered in (True, False):  # (segment_memo: the rows add_segment encoded, or decoded)
        if not remembered:
            segment_memo.forget()
        for floats in (False, True):
            got = chunks.decode_patch(BARS, patch, fp, floats=floats)
            one_by_one = pa.concat_tables([chunks.decode(BARS, chunks.encode(BARS, p), fp, floats=floats)
                                           for p in parts])
            assert got.equals(one_by_one)
        assert chunks.decode_patch(BARS, patch, fp).equals(pa.concat_tables(parts))
    # Volumes narrowed to different widths, no null: the batches are built together.
    two = chunks.add_segment(BARS, chunks.add_segment(BARS, None, parts[0]), parts[1])
    segment_memo.forget()
    builds: list[int] = []
    real = chunks._build
    monkeypatch.setattr(chunks, "_build", lambda spec, opened, *a, **k: builds.append(len(opened)) or real(
        spec, opened, *a, **k))
    assert chunks.decode_patch(BARS, two, fp).column("volume").to_pylist() == [
        *parts[0].column("volume").to_pylist(), *parts[1].column("volume").to_pylist()]
    assert builds == [2]


def _ohlc(n: int, *, seed: int = 7, start: dt.datetime = dt.datetime(2024, 1, 2, 9, 15)) -> pa.Table:
    """Bars as a market gives them: each open the previous close, high and low a few ticks
    outside; prices walk by up to 0.40 a minute."""
    import random

    rnd = random.Random(seed)
    close, rows = 25_000, []
    for i in range(n):
        open_ = close
        close = max(close + rnd.randint(-40, 40), 100)
        rows.append((start + dt.timedelta(minutes=i), open_, max(open_, close) + rnd.randint(0, 15),
                     min(open_, close) - rnd.randint(0, 15), close, rnd.randint(1, 90_000)))
    cents = {name: pa.array([Decimal(r[k]).scaleb(-2) for r in rows], pa.decimal128(10, 2))
             for k, name in ((1, "open"), (2, "high"), (3, "low"), (4, "close"))}
    return chunks.conform_payload(BARS, pa.table({
        "timestamp": pa.array([r[0] for r in rows], pa.timestamp("us")), **cents,
        "volume": [r[5] for r in rows], "timeframe": ["1m"] * n}))


def test_the_relative_codec_stores_open_high_and_low_against_the_close() -> None:
    """Open, high and low differ from the same bar's close by no more than from their own
    previous value: stored as that difference (kind r, the base named), the close summed;
    every value comes back, exact and as floats, whole and in a window, and the float
    values are the ones the other codecs give."""
    table = _ohlc(chunks.BATCH_ROWS * 2 + 11)
    payload = chunks.encode(BARS, table, codec=chunks.RELATIVE_CODEC)
    meta = dict(item.split("=", 1) for item in
                ipc.open_file(pa.py_buffer(payload)).schema.metadata[b"regime_io.delta"].decode().split(","))
    assert {name: how.split("|")[0][0] for name, how in meta.items()} == {
        "timestamp": "d", "open": "r", "high": "r", "low": "r", "close": "d", "volume": "n"}
    assert all(meta[name].endswith("|close") for name in ("open", "high", "low"))
    fp = chunks.fingerprint(BARS)
    narrow = chunks.encode(BARS, table, codec=chunks.NARROW_CODEC)
    times = table.column("timestamp")
    for window in (None, (times[9000].as_py(), times[9100].as_py()), (times[0].as_py(), times[0].as_py())):
        for floats in (False, True):
            got = chunks.decode(BARS, payload, fp, codec=chunks.RELATIVE_CODEC, window=window, floats=floats)
            assert got.equals(chunks.decode(BARS, narrow, fp, codec=chunks.NARROW_CODEC, window=window,
                                            floats=floats))
            if window is None and not floats:
                assert got.equals(table.combine_chunks())
            if floats:
                assert got.column("high").type == pa.float64()


def test_a_column_is_stored_relative_only_where_that_is_no_wider_and_the_scales_match() -> None:
    """A price far from the close and drifting apart from it keeps its own differences; a
    decimal of another scale is never added to the close; a lone decimal has no base."""
    table = _ohlc(3000)
    jumpy = pa.array([Decimal(5_000_000 + i).scaleb(-2) for i in range(3000)], pa.decimal128(10, 2))
    table = table.set_column(table.schema.get_field_index("open"), pa.field("open", pa.decimal128(10, 2), False),
                             jumpy)
    fine = pa.array([Decimal(2_500_000 + i).scaleb(-4) for i in range(3000)], pa.decimal128(12, 4))
    mixed = table.append_column(pa.field("fine", pa.decimal128(12, 4), False), fine)
    _, deltas, firsts = column_codec.to_deltas(mixed, narrow=True, relative=True)
    assert deltas["open"].startswith("d") and deltas["fine"].startswith("d")
    assert deltas["high"].startswith("r") and deltas["low"].startswith("r") and deltas["close"].startswith("d")
    assert set(firsts) == {"timestamp", "open", "close", "fine"}
    alone = pa.table({"timestamp": table.column("timestamp"), "close": table.column("close")})
    assert column_codec.to_deltas(alone, narrow=True, relative=True)[1]["close"].startswith("d")
    payload = chunks.encode(BARS, table)
    for floats in (False, True):
        assert chunks.decode(BARS, payload, chunks.fingerprint(BARS), floats=floats).equals(
            chunks.decode(BARS, chunks.encode(BARS, table, codec=chunks.NARROW_CODEC), chunks.fingerprint(BARS),
                          codec=chunks.NARROW_CODEC, floats=floats))


def test_patch_segments_laid_out_differently_by_the_relative_codec_decode_in_order() -> None:
    """A patch's segments where one stores the open against the close and the next its own
    differences are built one by one (their layouts differ) and give every row back."""
    first = _ohlc(700)
    later = _ohlc(500, start=dt.datetime(2024, 1, 3, 9, 15))
    jumpy = pa.array([Decimal(5_000_000 + i).scaleb(-2) for i in range(500)], pa.decimal128(10, 2))
    later = later.set_column(later.schema.get_field_index("open"), pa.field("open", pa.decimal128(10, 2), False),
                             jumpy)
    patch = chunks.add_segment(BARS, chunks.add_segment(BARS, None, first), later)
    kinds = [column_codec.to_deltas(part, narrow=True, relative=True)[1]["open"][0] for part in (first, later)]
    assert kinds == ["r", "d"]
    fp = chunks.fingerprint(BARS)
    assert chunks.decode_patch(BARS, patch, fp).equals(pa.concat_tables([first, later]).combine_chunks())
    floats = chunks.decode_patch(BARS, patch, fp, floats=True)
    assert floats.column("open").to_pylist() == [float(v) for v in pa.concat_tables([first, later])
                                                 .column("open").to_pylist()]


@pytest.mark.parametrize("gaps", [0, 1, 40, 600])
@pytest.mark.parametrize("kept_apart", [True, False])
def test_running_sums_of_steady_differences_are_the_running_sums(gaps: int, kept_apart: bool) -> None:
    """Batches of one step with rare other differences (overnight gaps, a step back) are
    rebuilt without numpy's running sum; the values are exactly its values, also when
    too many differ (the running sum then) and for short batches."""
    import numpy as np

    rng = np.random.default_rng(gaps)
    batches, firsts, expected = [], [], []
    for n, kind in ((chunks.BATCH_ROWS, np.int32), (5000, np.int16), (40, np.int32), (1, np.int8)):
        diffs = np.full(n, 60 if kind != np.int8 else 1, dtype=kind)
        odd = rng.choice(np.arange(1, n), size=min(gaps, n - 1), replace=False) if n > 1 else []
        diffs[odd] = rng.integers(-30, 3000, len(odd)).astype(kind)
        first = int(rng.integers(-10**12, 10**12))
        values = diffs.astype(np.int64)
        values[0] = first
        expected.append(np.cumsum(values))
        if kept_apart:
            diffs[0] = 0
        else:
            diffs = values.copy()  # (the older codec: the first value in place, int64)
        batches.append(pa.array(diffs))
        firsts.append(first)
    got = column_codec.running_sums(batches, firsts if kept_apart else None)
    assert got.tolist() == np.concatenate(expected).tolist()


def test_a_base_column_before_the_columns_stored_against_it_reads_back_unchanged() -> None:
    """When the base comes first in the declaration (here the open, whose own differences
    are narrowest) the columns after it add to its values before it is scaled: every value
    comes back, as floats too, whole and in a window."""
    import random

    rnd = random.Random(3)
    n = chunks.BATCH_ROWS + 700
    opens = [20_000 + i for i in range(n)]  # one cent a minute: int8 differences
    closes = [o + rnd.randint(-300, 300) for o in opens]  # its own differences need int16
    table = chunks.conform_payload(BARS, pa.table({
        "timestamp": pa.array([dt.datetime(2024, 1, 2) + dt.timedelta(minutes=i) for i in range(n)],
                              pa.timestamp("us")),
        **{name: pa.array([Decimal(v).scaleb(-2) for v in values], pa.decimal128(10, 2))
           for name, values in (("open", opens), ("high", [max(o, c) + 5 for o, c in zip(opens, closes, strict=True)]),
                                ("low", [min(o, c) - 5 for o, c in zip(opens, closes, strict=True)]),
                                ("close", closes))},
        "volume": list(range(n)), "timeframe": ["1m"] * n}))
    payload = chunks.encode(BARS, table)
    meta = ipc.open_file(pa.py_buffer(payload)).schema.metadata[b"regime_io.delta"].decode()
    assert "open=d8" in meta and "close=r16|decimal|10|2|0|open" in meta
    narrow = chunks.encode(BARS, table, codec=chunks.NARROW_CODEC)
    fp = chunks.fingerprint(BARS)
    times = table.column("timestamp")
    for window in (None, (times[8000].as_py(), times[8400].as_py())):
        for floats in (False, True):
            assert chunks.decode(BARS, payload, fp, window=window, floats=floats).equals(
                chunks.decode(BARS, narrow, fp, codec=chunks.NARROW_CODEC, window=window, floats=floats))
    assert chunks.decode(BARS, payload, fp, floats=True).column("open").to_pylist()[:2] == [200.0, 200.01]
