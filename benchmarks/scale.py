"""Scale curve: ingest rate and 1-day range-read time as ``market_data`` grows.

The table grows time-major (every symbol's next minutes), as it does in production. At
each size N the table is first filled (untimed) to ``N - batches * batch_rows`` rows,
then ``batches`` fresh batches of ``batch_rows`` rows are ingested with ``save`` and
timed one by one (the figure is their median rate), so the last measured batch ends at N
rows. Then the table is VACUUMed and ANALYZEd (what autovacuum does to an insert-only
table sooner or later; done explicitly so that whether autovacuum happened to run does
not change the read numbers) and the read of one symbol for one fixed day (375 rows) is
timed warm over many calls, in turn with the same read of a reference table holding the
smallest size's rows (another schema, filled with the same frames) and with ``scan()``'s
collect of the same day: a 2-ms read timed in blocks minutes apart moved by 20-28% from
one size to the next (2.03 / 2.60 / 2.53 ms at 1M / 5M / 10M), and by 6% when run again
in one process, so the growth and the scan's overhead are judged call by call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from psycopg import sql

from regime_io._read import readers as reading
from regime_io._write.save import save

from .data import MINUTES_PER_DAY, BarStream
from .measure import Figure, alternated_latency, timed_once, unavailable
from .reads import plugin_collect
from .server import BenchServer
from .writes import table_ident

__all__ = ["run_scale"]

log = logging.getLogger(__name__)

FILL_CHUNK_ROWS = 1_000_000


def run_scale(server: BenchServer, *, sizes: Sequence[int], symbols: int, batch_rows: int, batches: int,
              read_calls: int, seed: int, say: Callable[[str], None]) -> tuple[dict[str, Figure], Any, BarStream]:
    """Figures ``scale.<N>.ingest`` and ``scale.<N>.one_day_read`` for each size N.

    Returns the figures, the ``Database`` holding the grown table and its stream.
    """
    figures: dict[str, Figure] = {}
    db = server.database("scale")
    reference = server.database("scale_ref")  # the smallest size's rows, read in turn with each size's
    smallest = min(sizes)
    kept: list[Any] = []  # the frames saved up to the smallest size, for the reference table
    stream = BarStream(symbols, seed=seed + 1)
    batch_minutes = max(1, batch_rows // symbols)
    batch_rows = batch_minutes * symbols
    table = table_ident(db)
    total = 0
    conn = server.connect()

    def keep(frame: Any) -> None:
        if total < smallest:
            kept.append(frame)

    for size in sorted(sizes):
        fill = size - batches * batch_rows - total
        if fill > 0:
            say(f"scale {size:,}: filling {fill:,} rows")
            while fill > 0:
                frame = stream.take(max(1, min(fill, FILL_CHUNK_ROWS) // symbols))
                save(db, "market_data", frame)
                keep(frame)
                total += frame.height
                fill -= frame.height
        key = f"scale.{size}.ingest"
        label = f"regime_io.save of {batch_rows:,}-row batches into a table growing to {size:,} rows"
        for _ in range(batches):
            frame = stream.take(batch_minutes)
            started = time.perf_counter()
            result = save(db, "market_data", frame)
            figures[key] = timed_once(figures.get(key), time.perf_counter() - started, label=label, rows=frame.height)
            if result.method != "copy" or result.inserted != frame.height:
                raise RuntimeError(f"scale batch did not take the copy path: {result}")
            keep(frame)
            total += frame.height
        figures[key]["table_rows"] = total
        figures[key]["target_rows"] = size
        if kept:
            say(f"scale {size:,}: the reference table ({sum(f.height for f in kept):,} rows)")
            for frame in kept:
                save(reference, "market_data", frame)
            kept.clear()
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(table_ident(reference)))
        conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(table))
        figures.update(_one_day(db, reference, stream, size=size, rows=total, calls=read_calls))
        say(f"scale {size:,}: {figures[key]['rows_per_s']:,.0f} rows/s, 1-day read "
            f"{figures[f'scale.{size}.one_day_read'].get('p50', float('nan')):.1f} ms (table {total:,} rows)")
    conn.close()
    reference.close()
    return figures, db, stream


def _one_day(db: Any, reference: Any, stream: BarStream, *, size: int, rows: int, calls: int) -> dict[str, Figure]:
    """The 1-day read on the grown table, on the reference table (the smallest size's rows)
    and ``scan()``'s collect of the same day (issue 15: within 1.5x of ``get_market_data``
    means the filter reached the server), called in turn."""
    import polars as pl

    from regime_io._read import scan as _scan

    read_label = f"get_market_data, 1 symbol x 1 day ({MINUTES_PER_DAY} rows), table of {rows:,} rows"
    if not hasattr(reading, "get_market_data"):
        return {f"scale.{size}.one_day_read": unavailable(
            read_label, "regime_io._read.readers.get_market_data does not exist yet", kind="latency")}
    day_start, day_end = stream.day_bounds(0)
    symbol = stream.symbols[0]
    read = partial(reading.get_market_data, db, symbol, day_start, day_end)
    read_reference = partial(reading.get_market_data, reference, symbol, day_start, day_end)
    got = read()
    if got.height != min(MINUTES_PER_DAY, stream.minute) or not read_reference().equals(got):
        raise RuntimeError(f"1-day read returned {got.height} rows, or other rows than the reference table's")
    lf = _scan.scan(db, "market_data")

    def collect() -> Any:
        return lf.filter((pl.col("symbol") == symbol) & pl.col("timestamp").is_between(day_start, day_end)).collect()

    if not collect().equals(got):
        raise RuntimeError("scan() of the 1-day filter differs from get_market_data")
    # scan()'s floor: the same read run by a bare polars IO plugin (benchmarks.reads.plugin_collect).
    keys = {"one_day_read": read, "one_day_read_ref": read_reference, "scan_one_day": collect,
            "scan_one_day_inside": partial(plugin_collect, read, got.schema, symbol, day_start, day_end)}
    labels = {"one_day_read": read_label,
              "one_day_read_ref": "the same read on the reference table (the smallest size's rows, another schema)",
              "scan_one_day": f"scan('market_data') filtered to 1 symbol x 1 day, collected, table of {rows:,} rows",
              "scan_one_day_inside": "polars IO plugin running the same get_market_data, filtered and collected "
                                     "(scan()'s floor)"}
    timed = alternated_latency(keys, calls=calls, labels=labels)
    out = {f"scale.{size}.{k}": fig for k, fig in timed.items()}
    for fig in out.values():
        fig["table_rows"] = rows
    return out
