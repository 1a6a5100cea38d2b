"""Scale curve: ingest rate and 1-day range-read time as ``market_data`` grows.

The table grows time-major (every symbol's next minutes), as it does in production. At
each size N the table is first filled (untimed) to ``N - batches * batch_rows`` rows,
then ``batches`` fresh batches of ``batch_rows`` rows are ingested with ``save`` and
timed one by one (the figure is their median rate), so the last measured batch ends at N
rows. Then the table is VACUUMed and ANALYZEd (what autovacuum does to an insert-only
table sooner or later; done explicitly so that whether autovacuum happened to run does
not change the read numbers) and the read of one symbol for one fixed day (375 rows) is
timed warm over many calls.
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
from .measure import Figure, latency, timed_once, unavailable
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
    stream = BarStream(symbols, seed=seed + 1)
    batch_minutes = max(1, batch_rows // symbols)
    batch_rows = batch_minutes * symbols
    table = table_ident(db)
    total = 0
    conn = server.connect()
    for size in sorted(sizes):
        fill = size - batches * batch_rows - total
        if fill > 0:
            say(f"scale {size:,}: filling {fill:,} rows")
            while fill > 0:
                frame = stream.take(max(1, min(fill, FILL_CHUNK_ROWS) // symbols))
                save(db, "market_data", frame)
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
            total += frame.height
        figures[key]["table_rows"] = total
        figures[key]["target_rows"] = size
        conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(table))
        read_key = f"scale.{size}.one_day_read"
        read_label = f"get_market_data, 1 symbol x 1 day ({MINUTES_PER_DAY} rows), table of {total:,} rows"
        if not hasattr(reading, "get_market_data"):
            figures[read_key] = unavailable(read_label, "regime_io._read.readers.get_market_data does not exist yet",
                                            kind="latency")
        else:
            day_start, day_end = stream.day_bounds(0)
            got = reading.get_market_data(db, stream.symbols[0], day_start, day_end)
            if got.height != min(MINUTES_PER_DAY, stream.minute):
                raise RuntimeError(f"1-day read returned {got.height} rows")
            read = partial(reading.get_market_data, db, stream.symbols[0], day_start, day_end)
            figures[read_key] = latency(read, calls=read_calls, label=read_label)
            figures[read_key]["table_rows"] = total
            figures[f"scale.{size}.scan_one_day"] = _scan_one_day(db, stream.symbols[0], day_start, day_end, got,
                                                                 calls=read_calls, rows=total)
        say(f"scale {size:,}: {figures[key]['rows_per_s']:,.0f} rows/s, 1-day read "
            f"{figures[read_key].get('p50', float('nan')):.1f} ms (table {total:,} rows)")
    conn.close()
    return figures, db, stream


def _scan_one_day(db: Any, symbol: str, start: Any, end: Any, want: Any, *, calls: int, rows: int) -> Figure:
    """``scan()`` with the 1-symbol, 1-day filter of the read above, collected warm (issue 15:
    within 1.5x of ``get_market_data`` for the same day means the filter reached the server)."""
    import polars as pl

    from regime_io._read import scan as _scan

    label = f"scan('market_data') filtered to 1 symbol x 1 day, collected, table of {rows:,} rows"
    lf = _scan.scan(db, "market_data")

    def collect() -> Any:
        return lf.filter((pl.col("symbol") == symbol) & pl.col("timestamp").is_between(start, end)).collect()

    got = collect()
    if not got.equals(want):
        raise RuntimeError(f"scan() of the 1-day filter differs from get_market_data ({got.height} vs "
                           f"{want.height} rows)")
    figure = latency(collect, calls=calls, label=label)
    figure["table_rows"] = rows
    return figure
