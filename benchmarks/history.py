"""Issue 12's data shape against the tools a quant would pick instead, in one run.

The data: ``--history-symbols`` symbols x ``--history-minutes`` consecutive calendar
minutes from 2024-01-01 (default 10 x 100,000 = 1M one-minute bars, random-walk prices
with 2 decimals; :class:`~benchmarks.data.ConsecutiveBars`). The slices: every bar, one
symbol's whole range, one symbol x the calendar month of the middle bar (February 2024:
41,760 bars), one symbol x the day of the middle bar (1,440 bars), and a restatement of
that day for every symbol (new prices, 14,400 bars).

Measured on the same bars, in this order:

- **ArcticDB** (LMDB in a scratch directory; skipped as "unavailable" when ``arcticdb``
  is not installed, as in CI): ``write_batch`` of one pandas frame per symbol into a
  fresh library, ``read_batch`` of every symbol straight to polars (concatenated with a
  ``symbol`` column: the same frame shape as regime_io's), ``read(date_range=...)`` of a
  month and of a day, ``update_batch`` of the restated day;
- **Parquet + polars**: ``write_parquet`` (zstd) of the frame in reader order,
  ``read_parquet``, ``scan_parquet().filter().collect()`` of a month and of a day;
- **COPY-out**: ``COPY (the reader's query, plain columns) TO STDOUT (FORMAT binary)``
  of each slice, read and thrown away: the row tier's ceiling;
- **regime_io, row tier**: ``save`` into an empty table, ``get_market_data`` of each
  slice, ``save`` of the restated day (every row updated), storage per bar
  (``pg_total_relation_size`` of every partition: heap, TOAST and indexes);
- **regime_io, sealed tier** (when the engine has ``seal``): the same table
  sealed, then the same reads and restatement (which merges into the sealed chunks),
  storage per bar of the chunk table (TOAST and indexes included), and the backfill
  fast path: ``save(..., tier="sealed")`` of every bar into an empty table;
- **the sealed tier and ArcticDB in turn** (``history.alternated.*``, with ArcticDB
  installed): each read and the restatement once per round on each side, the targets
  judged by the median of each round's ratio (:func:`~benchmarks.measure.paired_ratio`);
  the restatement twice: as it runs (the patch segments the previous run encoded are
  remembered, ``segment_memo``) and with them forgotten first (``restate_cold``: decoded,
  as by a process restating a day another process restated last); and a day's first
  restatement (``restate_first``: a different day each round, each side's first update of
  that day, :func:`_first_days`).

Example:
    >>> bars = ConsecutiveBars(2, start=HISTORY_START.date()).take(3)
    >>> bars.height, str(bars["timestamp"].max())
    (6, '2024-01-01 00:02:00')
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
from psycopg import sql

from regime_io._read import readers as reading
from regime_io._read import scan as scanning
from regime_io._schema import maintenance
from regime_io._sql.names import chunk_table
from regime_io._sql.query import Query
from regime_io._sql.quote import quote_ident
from regime_io._tiers import changes, column_codec, router, sealed_format
from regime_io._write.save import save
from regime_io._write.validate import validate

from .data import ConsecutiveBars
from .measure import Figure, alternated_latency, alternated_times, latency, time_it, unavailable
from .reads import _copy_out, plugin_collect, range_query
from .server import BenchServer
from .writes import DECIMALS, Maintenance

__all__ = ["HISTORY_START", "Slices", "history_bars", "run_history"]

log = logging.getLogger(__name__)

HISTORY_START = dt.datetime(2024, 1, 1)
_ONE_US = dt.timedelta(microseconds=1)


class Slices:
    """The time windows of the history benchmarks, derived from the bars' span."""

    def __init__(self, stream: ConsecutiveBars, minutes: int) -> None:
        self.symbols = stream.symbols
        self.start, self.end = stream.span()
        mid: dt.datetime = stream.timestamps(minutes // 2, 1)[0].astype(dt.datetime)
        self.month_start = dt.datetime(mid.year, mid.month, 1)
        next_month = dt.datetime(mid.year + mid.month // 12, mid.month % 12 + 1, 1)
        self.month_end = min(next_month - _ONE_US, self.end)
        self.day_start = dt.datetime(mid.year, mid.month, mid.day)
        self.day_end = min(self.day_start + dt.timedelta(days=1) - _ONE_US, self.end)


def history_bars(symbols: int, minutes: int, *, seed: int) -> tuple[pl.DataFrame, ConsecutiveBars]:
    stream = ConsecutiveBars(symbols, seed=seed, start=HISTORY_START.date())
    return stream.take(minutes), stream


def _rows(frame: pl.DataFrame, symbol: str | None, start: dt.datetime, end: dt.datetime) -> int:
    cond = pl.col("timestamp").is_between(start, end)
    if symbol is not None:
        cond &= pl.col("symbol") == symbol
    return frame.filter(cond).height


def _check(what: str, got: int, expected: int) -> None:
    if got != expected:
        raise RuntimeError(f"{what}: {got} rows, expected {expected}")


def _table_bytes(server: BenchServer, db: Any, *, chunks: bool) -> int:
    """Bytes of the row table (every partition: heap, TOAST, indexes) or of its chunk table."""
    name = db.settings.table_name("market_data")
    with server.connect() as conn:
        if chunks:
            query = sql.SQL("SELECT pg_total_relation_size({}::regclass)").format(
                sql.Literal(f'"{db.settings.schema}"."{name}_chunks"'))
        else:
            query = sql.SQL("SELECT coalesce(sum(pg_total_relation_size(relid)), 0) "
                            "FROM pg_partition_tree({}::regclass)").format(
                sql.Literal(f'"{db.settings.schema}"."{name}"'))
        row = conn.execute(query).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _schema_bytes(server: BenchServer, db: Any) -> int:
    """Bytes of every table of the schema (heap, TOAST, indexes): the row partitions, the
    chunk table, the knowledge-time tables, the catalog -- what a user's disk holds."""
    with server.connect() as conn:
        row = conn.execute("SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                           "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
                           "AND c.relkind IN ('r', 'm')", (db.settings.schema,)).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _size_figure(label: str, total: int, rows: int, *, note: str | None = None) -> Figure:
    fig: Figure = {"kind": "size", "label": label, "unit": "B/row", "bytes": total, "rows": rows,
                   "bytes_per_row": total / rows if rows else 0.0}
    if note:
        fig["note"] = note
    return fig


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _restated(frame: pl.DataFrame, flip: bool) -> pl.DataFrame:
    return frame.with_columns(pl.col(c) + 0.01 for c in DECIMALS) if flip else frame


def _sealing() -> Any:
    """The sealed tier's engine, or None while it is not built."""
    try:
        from regime_io._tiers import sealing as sealing
    except ImportError:
        return None
    return sealing if hasattr(sealing, "seal") else None


def _tier_param() -> bool:
    import inspect

    return "tier" in inspect.signature(save).parameters


def run_history(server: BenchServer, *, symbols: int, minutes: int, repeats: int, slow_repeats: int, seed: int,
                say: Callable[[str], None]) -> dict[str, Figure]:
    """Every ``history.*`` figure (see the module docstring)."""
    figures: dict[str, Figure] = {}
    bars, stream = history_bars(symbols, minutes, seed=seed + 3)
    sl = Slices(stream, minutes)
    n = bars.height
    one = sl.symbols[0]
    slices = {  # key -> (symbols, start, end, what)
        "read_all": (sl.symbols, sl.start, sl.end, f"{len(sl.symbols)} symbols x {minutes:,} minutes"),
        "read_symbol": ([one], sl.start, sl.end, f"1 symbol x {minutes:,} minutes"),
        "read_month": ([one], sl.month_start, sl.month_end, f"1 symbol x 1 month ({sl.month_start:%Y-%m})"),
        "read_day": ([one], sl.day_start, sl.day_end, f"1 symbol x 1 day ({sl.day_start:%Y-%m-%d})"),
    }
    expected = {k: _rows(bars, None if len(s) > 1 else s[0], a, b) for k, (s, a, b, _) in slices.items()}
    day_frame = bars.filter(pl.col("timestamp").is_between(sl.day_start, sl.day_end))
    say(f"history shape: {n:,} bars ({symbols} symbols x {minutes:,} consecutive minutes from "
        f"{sl.start:%Y-%m-%d}); month {expected['read_month']:,} rows, day {expected['read_day']:,}")

    arctic_figures, arctic = _arcticdb(server, bars, sl, slices, expected, day_frame, repeats=repeats, say=say)
    figures.update(arctic_figures)
    try:
        figures.update(_parquet(server, bars, sl, slices, expected, repeats=repeats, say=say))
        db = server.database("history")
        maint = Maintenance(server, db)
        try:
            figures.update(_row_tier(server, db, maint, bars, slices, expected, day_frame, arctic, repeats=repeats,
                                     slow_repeats=slow_repeats, say=say))
            figures.update(_sealed_tier(server, db, maint, bars, slices, expected, day_frame, arctic,
                                        repeats=repeats, say=say))
        finally:
            maint.close()
            db.close()
    finally:
        if arctic is not None:
            arctic.close()
    where = (f"{server.kind} server, PostgreSQL {server.version}, "
             f"{'Unix socket' if (server.settings.host or '').startswith('/') else 'TCP'}")
    for key, fig in figures.items():
        if key.endswith(".copy"):
            fig["server"] = where
    return figures


def _read_figure(key: str, fn: Callable[[], Any], *, label: str, rows: int, repeats: int) -> Figure:
    """Large slices: a time figure (median of ``repeats``; 4 x as many for the reads of a
    few ms, whose medians of 5 moved by 10% from run to run); the day: warm latency."""
    if key == "read_day":
        return latency(fn, calls=max(10, repeats * 10), label=label)
    many = key in ("read_month", "read_symbol")
    return time_it(fn, repeats=repeats * 4 if many else repeats, label=label, rows=rows, warmup=1)


# ---------------------------------------------------------------------------------------
# Baselines


class _Arctic:
    """The ArcticDB library of the baselines, kept until the sealed tier's reads and
    restatement have run beside it (:func:`_alternated`)."""

    def __init__(self, read: Callable[[list[str], dt.datetime, dt.datetime], pl.DataFrame],
                 update: Callable[[], None], prepare: Callable[[pl.DataFrame], Callable[[], None]],
                 close: Callable[[], None]) -> None:
        # prepare(frame): the update of those bars, its pandas frames built now (untimed).
        self.read, self.update, self.prepare, self.close = read, update, prepare, close


def _arcticdb(server: BenchServer, bars: pl.DataFrame, sl: Slices, slices: dict[str, Any], expected: dict[str, int],
              day_frame: pl.DataFrame, *, repeats: int,
              say: Callable[[str], None]) -> tuple[dict[str, Figure], _Arctic | None]:
    keys = {"write": "ArcticDB write_batch, fresh library (LMDB), one pandas frame per symbol",
            **{k: f"ArcticDB read -> polars, {v[3]}" for k, v in slices.items()},
            "restate": f"ArcticDB update_batch, 1 day x {len(sl.symbols)} symbols (new prices)",
            "storage": "ArcticDB LMDB directory size per bar"}
    try:
        import arcticdb
        from arcticdb.version_store.library import UpdatePayload, WritePayload
    except ImportError as err:
        reason = f"arcticdb is not installed ({err}); pip install 'regime-io[bench]'"
        return {f"history.{k}.arcticdb": unavailable(label, reason, kind="size" if k == "storage" else
                                                     "latency" if k == "read_day" else "time")
                for k, label in keys.items()}, None
    figures: dict[str, Figure] = {}
    path = server.scratch_file("arcticdb")
    path.mkdir(exist_ok=True)
    ac = arcticdb.Arctic(f"lmdb://{path}")
    value_cols = ["timestamp", "open", "high", "low", "close", "volume"]

    def pandas_of(frame: pl.DataFrame) -> dict[str, Any]:
        return {str(s): part.select(value_cols).to_pandas().set_index("timestamp")
                for (s,), part in frame.partition_by("symbol", as_dict=True, maintain_order=True).items()}

    frames = pandas_of(bars)
    libraries: list[str] = []  # the current library is the last one

    def fresh() -> None:
        if libraries:
            ac.delete_library(libraries[-1])
        libraries.append(f"bench{len(libraries) + 1}")
        ac.create_library(libraries[-1])

    def write() -> None:
        ac[libraries[-1]].write_batch([WritePayload(s, f) for s, f in frames.items()])

    say(f"ArcticDB {arcticdb.__version__} (LMDB): write, reads, update")
    figures["history.write.arcticdb"] = time_it(write, repeats=repeats, setup=fresh, label=keys["write"],
                                                rows=bars.height)
    lib = ac[libraries[-1]]
    figures["history.storage.arcticdb"] = _size_figure(keys["storage"], _dir_bytes(path), bars.height,
                                                       note="information: LMDB map files, not a target")

    def read(symbols: list[str], start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
        if len(symbols) == 1:
            got = lib.read(symbols[0], date_range=(start, end), output_format="polars").data
            return got.with_columns(pl.lit(symbols[0]).alias("symbol"))
        items = lib.read_batch(symbols, output_format="polars")
        return pl.concat([item.data.with_columns(pl.lit(s).alias("symbol")) for s, item in zip(symbols, items,
                                                                                                 strict=True)])

    for key, (symbols, start, end, _) in slices.items():
        _check(f"ArcticDB {key}", read(symbols, start, end).height, expected[key])
        figures[f"history.{key}.arcticdb"] = _read_figure(
            key, partial(read, symbols, start, end), label=keys[key], rows=expected[key],
            repeats=repeats)
    restate = {True: pandas_of(_restated(day_frame, True)), False: pandas_of(day_frame)}
    flip = {"v": False}

    def update() -> None:
        flip["v"] = not flip["v"]
        lib.update_batch([UpdatePayload(s, f) for s, f in restate[flip["v"]].items()])

    figures["history.restate.arcticdb"] = time_it(update, repeats=repeats, label=keys["restate"],
                                                  rows=day_frame.height, warmup=1)

    def prepare(frame: pl.DataFrame) -> Callable[[], None]:
        payloads = [UpdatePayload(s, f) for s, f in pandas_of(frame).items()]
        return lambda: lib.update_batch(payloads)

    def close() -> None:
        ac.delete_library(libraries[-1])
        shutil.rmtree(path, ignore_errors=True)

    return figures, _Arctic(read, update, prepare, close)


def _parquet(server: BenchServer, bars: pl.DataFrame, sl: Slices, slices: dict[str, Any], expected: dict[str, int],
             *, repeats: int, say: Callable[[str], None]) -> dict[str, Figure]:
    figures: dict[str, Figure] = {}
    path = server.scratch_file("history.parquet")
    ordered = bars.sort("symbol", "timeframe", "timestamp")
    say("Parquet + polars: write, reads")
    figures["history.write.parquet"] = time_it(lambda: ordered.write_parquet(path), repeats=repeats,
                                               label="polars write_parquet (zstd), one file in reader order",
                                               rows=bars.height)
    figures["history.storage.parquet"] = _size_figure("Parquet file size per bar (zstd)", path.stat().st_size,
                                                      bars.height, note="information, not a target")

    def read(symbols: list[str], start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
        if len(symbols) > 1:
            return pl.read_parquet(path)
        return pl.scan_parquet(path).filter((pl.col("symbol") == symbols[0])
                                            & pl.col("timestamp").is_between(start, end)).collect()

    for key, (symbols, start, end, what) in slices.items():
        _check(f"Parquet {key}", read(symbols, start, end).height, expected[key])
        label = ("polars read_parquet, every bar" if len(symbols) > 1 else
                 f"polars scan_parquet().filter().collect(), {what}")
        figures[f"history.{key}.parquet"] = _read_figure(
            key, partial(read, symbols, start, end), label=label, rows=expected[key], repeats=repeats)
    path.unlink(missing_ok=True)
    return figures


# ---------------------------------------------------------------------------------------
# regime_io


def _reads(server: BenchServer, db: Any, slices: dict[str, Any], expected: dict[str, int], *, tier: str,
           repeats: int, copy: bool) -> dict[str, Figure]:
    figures: dict[str, Figure] = {}
    for key, (symbols, start, end, what) in slices.items():
        target = symbols if len(symbols) > 1 else symbols[0]
        _check(f"{tier} tier {key}", reading.get_market_data(db, target, start, end).height, expected[key])
        figures[f"history.{key}.{tier}"] = _read_figure(
            key, partial(reading.get_market_data, db, target, start, end),
            label=f"regime_io get_market_data, {tier} tier, {what}", rows=expected[key], repeats=repeats)
        if tier == "sealed" and key in ("read_all", "read_symbol"):
            # The same read as Arrow: what the conversion to polars costs (an Arrow-first
            # reader converts at the end; ArcticDB builds its polars frame natively).
            figures[f"history.{key}_arrow.{tier}"] = _read_figure(
                key, partial(reading.get_market_data, db, target, start, end, return_type="arrow"),
                label=f"regime_io get_market_data(return_type='arrow'), {tier} tier, {what}", rows=expected[key],
                repeats=repeats)
        if key == "read_month":
            # scan(), the eager read and the plugin floor in turn, one run of each per round:
            # the row tier's month read moved between ~38 and ~59 ms from block to block of
            # one run, which the scan-vs-eager ratio of two blocks took for scan()'s cost
            # (0.73-1.40 over five runs of one library).
            # "inside": the eager read run by a bare IO plugin (in its call, as scan() reads
            # its first frame), scan()'s floor; "plugin": the plugin yielding a frame already
            # read (0.05x of a 34 ms row-tier month, 3 x 40 rounds).
            ready = reading.get_market_data(db, symbols[0], start, end)
            eager = partial(reading.get_market_data, db, symbols[0], start, end)
            figures.update({f"history.scan_{part}.{tier}": fig for part, fig in alternated_times(
                {"month": partial(_scan_collect, db, symbols[0], start, end), "eager": eager,
                 "plugin": partial(plugin_collect, ready.clone, ready.schema, symbols[0], start, end),
                 "inside": partial(plugin_collect, eager, ready.schema, symbols[0], start, end)},
                rounds=repeats * _ALTERNATED_ROUNDS["read_month"], rows=expected[key],
                labels={"month": f"regime_io scan() filtered to {what} and collected, {tier} tier",
                        "eager": f"regime_io get_market_data, {tier} tier, {what} (the eager read scan() is held "
                                 "against)",
                        "plugin": f"polars IO plugin yielding the eager frame of {what}, filtered and collected "
                                  "(the plugin machinery alone)",
                        "inside": f"polars IO plugin running the eager read of {what}, filtered and collected "
                                  "(scan()'s floor)"}).items()})
        if copy:
            run = _copy_out(server, range_query(db, symbols, start, end))
            figures[f"history.{key}.copy"] = _read_figure(
                key, run, label=f"COPY (the reader's query, plain columns) TO STDOUT (FORMAT binary), {what}",
                rows=expected[key], repeats=repeats)
    symbol = next(iter(slices.values()))[0][0]
    figures[f"history.latest.{tier}"] = latency(partial(reading.get_latest, db, "market_data", symbol),
                                                calls=max(50, repeats * 20),
                                                label=f"regime_io get_latest of 1 symbol, {tier} tier")
    return figures


# Rounds per --repeats of the alternated runs: more for the reads of a few ms, whose
# medians moved by 10% from run to run (the same counts _read_figure uses); 4 for the
# whole read and the restatements, whose medians of 10 rounds moved 1.42-1.57 (every bar)
# and 1.08-2.09 (a restatement, segments forgotten) over five runs of one library (~2 s
# more a run at the default size).
_ALTERNATED_ROUNDS = {"read_all": 4, "read_symbol": 8, "read_month": 8, "read_day": 10, "restate": 4,
                      "restate_cold": 4}


def _alternated(key: str, ours: Callable[[], Any], arcticdb: Callable[[], Any] | None, *, what: str, rows: int,
                rounds: int, tier: str = "sealed") -> dict[str, Figure]:
    """regime_io's run (on ``tier``) and ArcticDB's, one of each per round
    (``history.alternated.<key>.<tier>`` and ``.arcticdb``): the targets' ratios from runs
    made in the same seconds, where the blocks above ran minutes apart. Both
    "unavailable" without ArcticDB (``arcticdb`` None)."""
    labels = {tier: f"regime_io {tier} tier, {what}, runs alternated with ArcticDB's",
              "arcticdb": f"ArcticDB, {what}, runs alternated with regime_io's"}
    if arcticdb is None:
        reason = "unavailable: arcticdb is not installed (pip install 'regime-io[bench]')"
        figures = {name: unavailable(label, reason) for name, label in labels.items()}
    else:
        figures = alternated_times({tier: ours, "arcticdb": arcticdb}, rounds=rounds, rows=rows, labels=labels)
    return {f"history.alternated.{key}.{name}": fig for name, fig in figures.items()}


def _first_days(bars: pl.DataFrame, day_frame: pl.DataFrame) -> list[dt.datetime]:
    """The days whose first restatement is timed: days of the bars other than the restated
    day (whole ones first: a short first or last day only when a month has too few), months
    taken in turn, spread over each month, and no more in a month than its patches hold
    before they are folded into the payload (PATCH_ROWS: 5 days of 1,440 bars, the restated
    day one of them in its month). On the default bars: 14 whole days (January 5,
    February 4, March 5)."""
    first: dt.datetime = bars.get_column("timestamp").min()  # type: ignore[assignment]
    last: dt.datetime = bars.get_column("timestamp").max()  # type: ignore[assignment]
    restated: dt.datetime = day_frame.get_column("timestamp").min()  # type: ignore[assignment]
    per_day = day_frame.height // max(day_frame.get_column("symbol").n_unique(), 1)
    per_month = getattr(sealed_format, "PATCH_ROWS", 8192) // max(per_day, 1)
    day = dt.datetime(first.year, first.month, first.day)
    months: dict[tuple[int, int], tuple[list[dt.datetime], list[dt.datetime]]] = {}  # whole days, short ones
    while day <= last:
        if day.date() != restated.date():
            whole = day >= first and day + dt.timedelta(days=1) - dt.timedelta(minutes=1) <= last
            months.setdefault((day.year, day.month), ([], []))[0 if whole else 1].append(day)
        day += dt.timedelta(days=1)
    picked: list[list[dt.datetime]] = []
    for (year, month), (whole, short) in months.items():
        k = per_month - (1 if (year, month) == (restated.year, restated.month) else 0)
        days = whole if len(whole) >= k else whole + short
        n = min(k, len(days))
        if n > 0:
            picked.append([days[round(i * (len(days) - 1) / max(n - 1, 1))] for i in range(n)])
    return [month[i] for i in range(max(map(len, picked), default=0)) for month in picked if i < len(month)]


def _first_restatements(db: Any, bars: pl.DataFrame, day_frame: pl.DataFrame,
                        arctic: _Arctic | None) -> dict[str, Figure]:
    """Each day of :func:`_first_days` restated once (new prices for every symbol): what a
    day's first restatement costs (its chunks' payloads are read; a day restated again
    finds its keys in the patches and is not), alternated with ArcticDB's first
    ``update_batch`` of the same day (``history.alternated.restate_first``): ArcticDB's
    update of a day it has not updated before reads and rewrites the segment around it
    (40-134 ms on the 2-core VM, against 14-24 ms for a day updated before), so each side's
    first update is held against the other's. ``history.restate_first.sealed``: the same
    runs (a block of them without ArcticDB)."""
    frames = [_restated(bars.filter(pl.col("timestamp").is_between(d, d + dt.timedelta(days=1) - _ONE_US)), True)
              for d in _first_days(bars, day_frame)]
    symbols = day_frame.get_column("symbol").n_unique()
    label = (f"regime_io.save of 1 day x {symbols} symbols with new prices into sealed months, each day's first "
             "restatement (a different day each run)")
    what = f"a day's first restatement, 1 day x {symbols} symbols (save / update_batch), a different day each round"
    if len(frames) < 2:
        reason = "unavailable: fewer than two other days hold bars"
        return {"history.restate_first.sealed": unavailable(label, reason),
                **{f"history.alternated.restate_first.{tier}": unavailable(f"{who}, {what}", reason)
                   for tier, who in (("sealed", "regime_io sealed tier"), ("arcticdb", "ArcticDB"))}}
    ours = list(frames)

    def restate() -> None:
        frame = ours.pop(0)
        result = save(db, "market_data", frame)
        if result.updated != frame.height:
            raise RuntimeError(f"first restatement of a day: {result}")

    if arctic is None:
        figures = _alternated("restate_first", restate, None, what=what, rows=day_frame.height, rounds=0)
        figures["history.restate_first.sealed"] = time_it(restate, repeats=len(frames), rows=day_frame.height,
                                                          label=label)
        return figures
    theirs = [arctic.prepare(frame) for frame in frames]

    def update() -> None:
        theirs.pop(0)()

    figures = _alternated("restate_first", restate, update, what=what, rows=day_frame.height,
                          rounds=len(frames) - 1)
    figures["history.restate_first.sealed"] = {**figures["history.alternated.restate_first.sealed"], "label": label}
    return figures


def _latest_side_by_side(server: BenchServer, db: Any, bars: pl.DataFrame, slices: dict[str, Any], *,
                         calls: int) -> dict[str, Figure]:
    """``get_latest`` of one symbol on the sealed tier and on the row tier, one call of each
    in turn. The row tier is a second schema holding the newest calendar month of the same
    bars (the month ``get_latest`` reads there; older partitions are not touched), so the
    two are timed in the same seconds instead of minutes apart (``history.latest.*``)."""
    symbol = next(iter(slices.values()))[0][0]
    newest = bars.get_column("timestamp").max()
    assert isinstance(newest, dt.datetime)
    rows_db = server.database("history_latest_rows")
    try:
        save(rows_db, "market_data", bars.filter(pl.col("timestamp") >= newest.replace(day=1, hour=0, minute=0)))
        maint = Maintenance(server, rows_db)
        maint.vacuum()
        maint.close()
        want = reading.get_latest(db, "market_data", symbol)
        _check("latest row, row-tier copy vs sealed", reading.get_latest(rows_db, "market_data", symbol).height,
               want.height)
        figures = alternated_latency(
            {"row": partial(reading.get_latest, rows_db, "market_data", symbol),
             "sealed": partial(reading.get_latest, db, "market_data", symbol)},
            calls=calls, labels={"row": "regime_io get_latest of 1 symbol, row tier (the newest month), alternated",
                                 "sealed": "regime_io get_latest of 1 symbol, sealed tier, alternated"})
    finally:
        rows_db.close()
    out = {f"history.latest_alternated.{k}": v for k, v in figures.items()}
    out.update(_latest_json_cost(server, db, symbol, want, calls=calls))
    return out


def _latest_json_cost(server: BenchServer, db: Any, symbol: str, want: pl.DataFrame, *,
                      calls: int) -> dict[str, Figure]:
    """What rebuilding a sealed series' newest row from the chunk's ``last_row`` JSON costs
    the latest-row lookup (issue 23: the sealed tier's latest row against the row tier's):
    the chunk lookup as the reader runs it (the router's relation, every value from the
    JSON through its declared type) alternated with the same lookup reading a stored
    column in place of each value, on one warm psycopg connection."""
    spec = db.spec("market_data")
    time_col = spec.time_column or "timestamp"
    newest = want.get_column(time_col)[0]
    relation = router.newest_sealed_rows(db, spec)(Query())
    table = chunk_table(spec, db.settings)
    stored = ", ".join(f"k.{quote_ident(c)}" if c in spec.chunk_by else f"k.last_ts AS {quote_ident(c)}"
                       if c == time_col else f"k.row_count AS {quote_ident(c)}" for c in spec.column_names)
    texts = {"json": f"SELECT r.* FROM {relation} r WHERE r.symbol = %s AND r.{quote_ident(time_col)} = %s",
             "stored": f"SELECT {stored} FROM {table} k WHERE k.last_row IS NOT NULL AND k.symbol = %s "
                       "AND k.last_ts = %s"}
    conn = server.connect()
    try:
        for text in texts.values():
            _check("latest row lookup", len(conn.execute(text, (symbol, newest), prepare=True).fetchall()), 1)
        figures = alternated_latency(
            {k: partial(lambda t: conn.execute(t, (symbol, newest), prepare=True).fetchall(), text)
             for k, text in texts.items()},
            calls=calls * 5, labels={"json": "the sealed newest-row lookup, values from the chunk's JSON (psycopg)",
                                     "stored": "the same lookup, a stored column in place of each value"})
    finally:
        conn.close()
    return {f"history.floor.latest_{k}": v for k, v in figures.items()}


def _floors(server: BenchServer, db: Any, slices: dict[str, Any], expected: dict[str, int], *,
            repeats: int) -> dict[str, Figure]:
    """What no reader of the sealed tier can beat on this server (issue 23: a miss is
    explained by a floor measured in the same run): fetching the slice's chunk payloads
    over a warm psycopg connection and decoding them on one thread (prices as float64, as
    the float readers decode them) -- no fingerprint, no row tier, no merge, no conversion
    to polars; and the bare round trip (``SELECT 1``)."""
    spec = db.spec("market_data")
    table = sql.Identifier(db.settings.schema, f"{db.settings.table_name('market_data')}_chunks")
    conn = server.connect()
    figures: dict[str, Figure] = {}
    try:
        def fetch_decode(symbols: list[str], start: dt.datetime, end: dt.datetime) -> int:
            rows = conn.execute(sql.SQL("SELECT schema_fingerprint, codec, payload FROM {} WHERE symbol = ANY(%s) "
                                        "AND last_ts >= %s AND first_ts <= %s").format(table),
                                (symbols, start, end), binary=True).fetchall()
            # Float decimals, as the float readers decode them (floats=True skips decimal128).
            return sum(sealed_format.decode(spec, bytes(p), f, codec=c, floats=True,
                                            window=None if len(symbols) > 1 else (start, end)).num_rows
                       for f, c, p in rows)

        for key, (symbols, start, end, what) in slices.items():
            label = f"floor: fetch + decode the chunks of {what} (psycopg, one thread)"
            if fetch_decode(symbols, start, end) < expected[key]:
                raise RuntimeError(f"floor {key}: fewer rows than the slice")
            figures[f"history.floor.{key}"] = _read_figure(key, partial(fetch_decode, symbols, start, end),
                                                           label=label, rows=expected[key], repeats=repeats)
        figures["history.floor.roundtrip"] = latency(lambda: conn.execute("SELECT 1").fetchall(),
                                                     calls=max(50, repeats * 20),
                                                     label="floor: one round trip (SELECT 1, warm psycopg)")
    finally:
        conn.close()
    return figures


def _patched_floor(server: BenchServer, db: Any, slices: dict[str, Any], expected: dict[str, int], *,
                   repeats: int) -> Figure:
    """The floor of reading every bar after a restatement: fetch each chunk's payload and
    patch over a warm psycopg connection and decode them on one thread, the patch laid
    over the payload (floats) -- what any reader of these chunks must do."""
    spec = db.spec("market_data")
    table = sql.Identifier(db.settings.schema, f"{db.settings.table_name('market_data')}_chunks")
    symbols, start, end, what = slices["read_all"]
    conn = server.connect()
    try:
        def fetch_decode() -> int:
            rows = conn.execute(sql.SQL("SELECT schema_fingerprint, codec, payload, patch FROM {} "
                                        "WHERE symbol = ANY(%s) AND last_ts >= %s AND first_ts <= %s").format(table),
                                (symbols, start, end), binary=True).fetchall()
            return sum(sealed_format.decode(spec, bytes(p), f, codec=c, floats=True,
                                            patch=None if patch is None else bytes(patch)).num_rows
                       for f, c, p, patch in rows)

        if fetch_decode() < expected["read_all"]:
            raise RuntimeError("patched floor: fewer rows than the slice")
        return _read_figure("read_all", fetch_decode, rows=expected["read_all"], repeats=repeats,
                            label=f"floor: fetch + decode the chunks and their patches of {what} (psycopg, one thread)")
    finally:
        conn.close()


def _scan_collect(db: Any, symbol: str, start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
    return (scanning.scan(db, "market_data")
            .filter((pl.col("symbol") == symbol) & pl.col("timestamp").is_between(start, end)).collect())


def _backfill_floor(server: BenchServer, db: Any, bars: pl.DataFrame, *, repeats: int) -> Figure:
    """What any backfill into month chunks must do: encode each symbol-month with the chunk
    codec and store the payloads (COPY into a bytea table stored EXTERNAL) -- no
    validation, no catalog, no change log, no merge."""
    spec = db.spec("market_data")
    scale = 10 ** (spec.price_scale or 0)
    months = bars.with_columns(pl.col("timestamp").dt.truncate("1mo").alias("_period")).partition_by(
        ["symbol", "_period"])
    conn = server.connect(autocommit=True)

    def encode_and_store() -> None:
        payloads = []
        for month in months:
            unscaled = month.with_columns((pl.col(c) * scale).round().cast(pl.Int64) for c in spec.price_columns)
            table = unscaled.select(list(spec.chunk_columns)).to_arrow()
            table = pa.table([column_codec.decimal_from_unscaled(table.column(f.name), f.type)
                              if pa.types.is_decimal(f.type) else table.column(f.name).cast(f.type)
                              for f in sealed_format.payload_schema(spec)], schema=sealed_format.payload_schema(spec))
            payloads.append(sealed_format.encode(spec, sealed_format.conform_payload(spec, table)))
        with conn.cursor() as cur:
            cur.execute(sql.SQL("TRUNCATE {}").format(store))
            with cur.copy(sql.SQL("COPY {} (payload) FROM STDIN (FORMAT binary)").format(store)) as copy:
                copy.set_types(["bytea"])
                for payload in payloads:
                    copy.write_row((payload,))

    # A logged table, as the chunk table is (a TEMP table writes no WAL and measured ~15%
    # lower: not a floor of a durable write).
    store = sql.Identifier(db.settings.schema, "rio_floor_payloads")
    try:
        conn.execute(sql.SQL("CREATE TABLE {} (payload bytea)").format(store))
        conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN payload SET STORAGE EXTERNAL").format(store))
        return time_it(encode_and_store, repeats=repeats, rows=bars.height, warmup=1,
                       label=f"floor: encode {len(months)} symbol-month chunks and COPY the payloads into a "
                             "logged table (no validation, catalog, change log or merge)")
    finally:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(store))
        conn.close()


def _backfill_musts(server: BenchServer, db: Any, bars: pl.DataFrame, *, repeats: int) -> dict[str, Figure]:
    """What a backfill does beyond the floor because every write must: the validation every
    writer runs on its input (types, ranges, rounding, duplicate keys: the library's own
    ``validate``), and the change-log entry a sealed write leaves for live tails (the new
    chunks' payloads, encoded already, in one entry per month as the writer writes it:
    ``changes.encode_new_chunks``, INSERTed into a logged table)."""
    spec = db.spec("market_data")
    figures = {"history.floor.backfill_validate": time_it(
        lambda: validate(spec, bars), repeats=repeats, rows=bars.height, warmup=1,
        label="validation of the backfilled frame alone (what every write checks)")}
    rows = pl.from_arrow(validate(spec, bars))
    assert isinstance(rows, pl.DataFrame)
    months: list[list[tuple[tuple[Any, ...], int, bytes]]] = []
    for (_,), month in rows.with_columns(pl.col("timestamp").dt.truncate("1mo").alias("_p")).partition_by(
            "_p", as_dict=True, maintain_order=True).items():
        chunks = month.partition_by(list(spec.chunk_by), as_dict=True, maintain_order=True)
        months.append([(key, part.height, sealed_format.encode(spec, sealed_format.conform_payload(
            spec, part.drop("_p").to_arrow().cast(spec.arrow_schema())))) for key, part in chunks.items()])
    conn = server.connect(autocommit=True)

    def log_changes() -> None:
        with conn.transaction():
            conn.execute(sql.SQL("TRUNCATE {}").format(log))
            for written in months:
                conn.execute(sql.SQL("INSERT INTO {} (payload) VALUES (%s)").format(log),
                             (changes.encode_new_chunks(spec, written),))

    log = sql.Identifier(db.settings.schema, "rio_floor_changes")  # logged, as sealed_changes is
    try:
        conn.execute(sql.SQL("CREATE TABLE {} (payload bytea)").format(log))
        conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN payload SET STORAGE EXTERNAL").format(log))
        figures["history.floor.backfill_changes"] = time_it(
            log_changes, repeats=repeats, rows=bars.height, warmup=1,
            label=f"change-log entries of the backfill alone ({len(months)} monthly entries of the new chunks' "
                  "payloads: INSERT into a logged table)")
    finally:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(log))
        conn.close()
    return figures


def _restate_floor(server: BenchServer, db: Any, day_frame: pl.DataFrame, *, repeats: int) -> Figure:
    """The server's part of a restatement into sealed months, nothing else: in one
    transaction, lock and fetch the chunk rows of the restated day's months (payload and
    patch), then write each patch back (the bytes it holds: the same size as the
    restatement's, and the data stays as it was) -- no decoding, merging or encoding."""
    table = sql.Identifier(db.settings.schema, f"{db.settings.table_name('market_data')}_chunks")
    symbols = sorted(set(day_frame.get_column("symbol")))
    first = day_frame.get_column("timestamp").min()
    assert isinstance(first, dt.datetime)
    period = first.date().replace(day=1)
    conn = server.connect()

    def lock_fetch_write() -> None:
        with conn.transaction():
            rows = conn.execute(sql.SQL("SELECT symbol, timeframe, payload, patch FROM {} WHERE symbol = ANY(%s) "
                                        "AND period_start = %s ORDER BY symbol, timeframe FOR UPDATE").format(table),
                                (symbols, period), binary=True).fetchall()
            if len(rows) != len(symbols) or any(r[3] is None for r in rows):
                raise RuntimeError("restate floor: expected one patched chunk per symbol")
            with conn.cursor() as cur:
                cur.executemany(sql.SQL("UPDATE {} SET patch = %s WHERE symbol = %s AND timeframe = %s "
                                        "AND period_start = %s").format(table),
                                [(bytes(r[3]), r[0], r[1], period) for r in rows])

    try:
        return time_it(lock_fetch_write, repeats=repeats, rows=day_frame.height, warmup=1,
                       label=f"floor: lock + fetch the {len(symbols)} chunk rows, write their patches back "
                             "(one transaction, psycopg; no decoding, merge or encoding)")
    finally:
        conn.close()


def _delete_floor(db: Any, maint: Maintenance, bars: pl.DataFrame) -> Figure:
    """What an MVCC-safe seal must do besides reading the rows out (TRUNCATE is not safe
    for readers holding an older snapshot): DELETE them from the row partitions, one
    statement, timed once on rows saved into the row tier for it."""
    save(db, "market_data", bars)
    maint.vacuum()
    _check("delete floor: rows in the row tier", maint.count(), bars.height)
    try:
        return time_it(lambda: maint.conn.execute(sql.SQL("DELETE FROM {}").format(maint.table)), repeats=1,
                       rows=bars.height, label=f"floor: DELETE the {bars.height:,} rows a seal moves (one statement)")
    finally:
        maint.truncate()


def _row_tier(server: BenchServer, db: Any, maint: Maintenance, bars: pl.DataFrame, slices: dict[str, Any],
              expected: dict[str, int], day_frame: pl.DataFrame, arctic: _Arctic | None, *, repeats: int,
              slow_repeats: int, say: Callable[[str], None]) -> dict[str, Figure]:
    figures: dict[str, Figure] = {}
    n = bars.height
    say(f"regime_io row tier: fresh save of {n:,} bars ({repeats} runs)")
    save(db, "market_data", bars)  # creates the partitions (kept by TRUNCATE)
    figures["history.write.row"] = time_it(lambda: save(db, "market_data", bars), repeats=repeats,
                                           setup=maint.truncate, rows=n,
                                           label="regime_io.save into an empty table, row tier (polars, float prices)")
    _check("row tier write", maint.count(), n)
    maint.vacuum()
    figures["history.storage.row"] = _size_figure(
        "regime_io row tier per bar (pg_total_relation_size of every partition: heap, TOAST, indexes)",
        _table_bytes(server, db, chunks=False), n)
    say("regime_io row tier: reads (and COPY-out of the same rows)")
    figures.update(_reads(server, db, slices, expected, tier="row", repeats=repeats, copy=True))
    # The day read again, ArcticDB's in turn: shown beside the p50s (taken minutes apart, the
    # ratio moved 1.01-1.60 over five runs of one library), each run a cold call.
    day_symbols, day_start, day_end, day_what = slices["read_day"]
    figures.update(_alternated("read_day_row", partial(reading.get_market_data, db, day_symbols[0], day_start, day_end),
                               None if arctic is None else partial(arctic.read, day_symbols, day_start, day_end),
                               what=day_what, rows=expected["read_day"], tier="row",
                               rounds=repeats * _ALTERNATED_ROUNDS["read_day"]))
    symbols = slices["read_all"][0]
    first, last = slices["read_all"][1], slices["read_all"][2]
    figures["history.read_each_symbol.row"] = time_it(
        lambda: [reading.get_market_data(db, s, first, last) for s in symbols], repeats=slow_repeats, rows=n,
        label=f"regime_io get_market_data, row tier, {len(symbols)} single-symbol reads one after the other")
    flip = {"v": False}
    restated = {True: _restated(day_frame, True), False: _restated(day_frame, False)}  # built untimed, as ArcticDB's

    def restate() -> None:
        flip["v"] = not flip["v"]
        result = save(db, "market_data", restated[flip["v"]])
        if result.updated != day_frame.height:
            raise RuntimeError(f"row-tier restatement: {result}")

    figures["history.restate.row"] = time_it(
        restate, repeats=repeats, rows=day_frame.height,
        label=f"regime_io.save of 1 day x {len(symbols)} symbols with new prices, row tier (every row updated)")
    if flip["v"]:
        save(db, "market_data", day_frame)  # back to the original prices
    maint.vacuum()
    return figures


def _sealed_tier(server: BenchServer, db: Any, maint: Maintenance, bars: pl.DataFrame, slices: dict[str, Any],
                 expected: dict[str, int], day_frame: pl.DataFrame, arctic: _Arctic | None, *, repeats: int,
                 say: Callable[[str], None]) -> dict[str, Figure]:
    n = bars.height
    what = slices["read_all"][3]
    labels = {
        "seal": f"regime_io seal of {n:,} bars (rows -> chunks, one run)",
        "storage": "regime_io whole schema per bar right after seal() returns, no VACUUM (every table: heap, "
                   "TOAST, indexes)",
        **{k: f"regime_io get_market_data, sealed tier, {v[3]}" for k, v in slices.items()},
        "restate": f"regime_io.save of 1 day x {len(slices['read_all'][0])} symbols with new prices into sealed "
                   "months (merged into the chunks)",
        "write": f"regime_io.save(tier='sealed') backfill of {n:,} bars into an empty table ({what})",
    }
    sealing = _sealing()
    if sealing is None:
        reason = "unavailable: not built yet (regime_io._tiers.sealing.seal does not exist)"
        return {f"history.{k}.sealed": unavailable(label, reason, kind="size" if k == "storage" else
                                                  "latency" if k == "read_day" else "time")
                for k, label in labels.items()}
    figures: dict[str, Figure] = {}
    say(f"regime_io sealed tier: sealing {n:,} bars")
    report: list[Any] = []
    def seal_as_users_do() -> None:
        # What PostgreSQLIntegration.seal() runs: the move, then VACUUM + REINDEX of the
        # partitions it emptied (the space comes back before seal() returns).
        report.append(sealing.seal(db, "1d", tables=["market_data"]))
        maintenance.analyze_moved(db, report[-1])

    figures["history.seal.sealed"] = time_it(seal_as_users_do, repeats=1, label=labels["seal"], rows=n)
    moved = report[-1].rows_moved
    figures["history.seal.sealed"]["report"] = repr(report[-1])
    _check("seal rows moved", moved, n)
    _check("rows left in the row tier after sealing", maint.count(), 0)
    # Issue 23: what the schema holds right after seal() returns, no VACUUM.
    figures["history.storage.sealed"] = _size_figure(labels["storage"], _schema_bytes(server, db), n)
    maint.vacuum()
    figures["history.storage.chunks"] = _size_figure(
        "regime_io chunk table alone per bar (heap, TOAST, indexes)", _table_bytes(server, db, chunks=True), n)
    say("regime_io sealed tier: reads")
    figures.update(_reads(server, db, slices, expected, tier="sealed", repeats=repeats, copy=False))
    say("regime_io sealed tier: floors (fetch + decode the chunks alone; one round trip)")
    figures.update(_floors(server, db, slices, expected, repeats=repeats))
    say("regime_io latest row: the sealed tier and a row-tier copy of the newest month, calls alternated")
    figures.update(_latest_side_by_side(server, db, bars, slices, calls=max(100, repeats * 40)))
    say("regime_io sealed tier and ArcticDB: the reads, runs alternated")
    for key, (symbols, start, end, what) in slices.items():
        target = symbols if len(symbols) > 1 else symbols[0]
        figures.update(_alternated(key, partial(reading.get_market_data, db, target, start, end),
                                   None if arctic is None else partial(arctic.read, symbols, start, end), what=what,
                                   rows=expected[key], rounds=repeats * _ALTERNATED_ROUNDS[key]))
    flip = {"v": False}
    restated = {True: _restated(day_frame, True), False: _restated(day_frame, False)}  # built untimed, as ArcticDB's

    def restate() -> None:
        flip["v"] = not flip["v"]
        result = save(db, "market_data", restated[flip["v"]])
        if result.updated != day_frame.height:
            raise RuntimeError(f"sealed restatement: {result}")

    # One untimed run first, as ArcticDB's update gets: the timed runs restate a day the
    # patches hold already. A day's first restatement is timed on its own below.
    figures["history.restate.sealed"] = time_it(restate, repeats=repeats, rows=day_frame.height,
                                                label=labels["restate"], warmup=1)
    _check("rows in the row tier after restating sealed months", maint.count(), 0)
    figures["history.floor.restate"] = _restate_floor(server, db, day_frame, repeats=repeats)
    say("regime_io sealed tier and ArcticDB: the restatement, runs alternated")
    figures.update(_alternated("restate", restate, None if arctic is None else arctic.update,
                               what=f"1 day x {len(slices['read_all'][0])} symbols restated (save / update_batch)",
                               rows=day_frame.height, rounds=repeats * _ALTERNATED_ROUNDS["restate"]))
    # The same with the patch segments the previous run encoded forgotten first: what a
    # process restating a day another process restated last pays (it decodes them).
    memo = getattr(sealed_format, "segment_memo", None)  # (older versions: none)

    def restate_cold() -> None:
        if memo is not None:
            memo.forget()
        restate()

    say("regime_io sealed tier and ArcticDB: the restatement, patch segments not remembered, runs alternated")
    figures.update(_alternated("restate_cold", restate_cold, None if arctic is None else arctic.update,
                               what=f"1 day x {len(slices['read_all'][0])} symbols restated (save / update_batch), "
                                    "the patch segments decoded (not remembered from the previous run)",
                               rows=day_frame.height, rounds=repeats * _ALTERNATED_ROUNDS["restate_cold"]))
    # The restated day now sits in each month's patch: reads lay it over the payload.
    symbols, start, end, what = slices["read_all"]
    figures["history.read_all_patched.sealed"] = _read_figure(
        "read_all", partial(reading.get_market_data, db, symbols, start, end),
        label=f"regime_io get_market_data, sealed tier, {what}, after the restatement (patched months)",
        rows=expected["read_all"], repeats=repeats)
    figures["history.floor.read_all_patched"] = _patched_floor(server, db, slices, expected, repeats=repeats)
    figures.update(_alternated("read_all_patched", partial(reading.get_market_data, db, symbols, start, end),
                               None if arctic is None else partial(arctic.read, symbols, start, end),
                               what=f"{what}, after the restatement", rows=expected["read_all"],
                               rounds=repeats * _ALTERNATED_ROUNDS["read_all"]))
    say("regime_io sealed tier and ArcticDB: a day's first restatement, a different day each round, alternated")
    figures.update(_first_restatements(db, bars, day_frame, arctic))
    if not _tier_param():
        figures["history.write.sealed"] = unavailable(labels["write"], "unavailable: save() has no tier= yet")
        return figures
    say(f"regime_io sealed tier: backfill of {n:,} bars ({repeats} runs)")
    bdb = server.database("backfill")
    bmaint = Maintenance(server, bdb)
    chunk_table = sql.Identifier(bdb.settings.schema, f"{bdb.settings.table_name('market_data')}_chunks")

    def empty() -> None:
        bmaint.conn.execute(sql.SQL("TRUNCATE {}").format(chunk_table))
        bmaint.truncate()

    results: list[Any] = []
    try:
        figures["history.write.sealed"] = time_it(
            lambda: results.append(save(bdb, "market_data", bars, tier="sealed")), repeats=repeats, setup=empty,
            label=labels["write"], rows=n, warmup=1)
        figures["history.write.sealed"]["write_result"] = str(results[-1])
        _check("backfill: rows in the row tier", bmaint.count(), 0)
        _check("backfill: rows read back", reading.get_market_data(bdb, slices["read_all"][0], slices["read_all"][1],
                                                                    slices["read_all"][2]).height, n)
        say("regime_io sealed tier: floors of the backfill (encode + store) and of the seal (DELETE the rows)")
        figures["history.floor.backfill"] = _backfill_floor(server, bdb, bars, repeats=repeats)
        figures.update(_backfill_musts(server, bdb, bars, repeats=repeats))
        empty()  # no sealed months: the rows go to the row tier
        figures["history.floor.seal_delete"] = _delete_floor(bdb, bmaint, bars)
    finally:
        bmaint.close()
        bdb.close()
    return figures
