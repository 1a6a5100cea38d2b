"""Knowledge time benchmarks (issue 16): what keeping versions costs, in one run.

``python -m benchmarks.knowledge [--dsn DSN] [--bars 200000] [--days 45] [--repeats 5] [--json PATH]``

- **fresh ingest**: COPY ingest (``save`` into an empty ``market_data``) against the
  server's own ``COPY ... FROM 'file'`` of the same rows, in two schemas of the same
  server, round-robin: one as shipped (the nullable ``known_from`` column every row
  table now has) and one with that column dropped (the table of before). Each run
  starts from ``TRUNCATE`` + ``CHECKPOINT`` (untimed). Target: the ratio to server COPY
  at most 5% above the one without the column.
- **as-of read**: one symbol x one calendar month of ``market_regimes_1min`` (10 symbols,
  ``--days`` sessions of 1-minute regimes, a tenth of the rows revised once), read now
  and ``as_of`` an instant between the first write and the revision. Target: <= 2x.
- **restatement**: one day of 10 symbols of ``market_regimes_1min`` rewritten with new
  values (every row changes, 3,750 rows), into a schema keeping history (the default)
  and one with ``history_tables = none`` (the single merge of before), round-robin.
  Target: <= 1.5x.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import polars as pl
from psycopg import sql

from regime_io import synthetic
from regime_io._schema.ddl import initialize_database
from regime_io.config import settings_replace
from regime_io.database import Database

from .server import BenchServer, bench_server

__all__ = ["main", "run_knowledge"]

log = logging.getLogger(__name__)

UTC = dt.timezone.utc


def _db(server: BenchServer, section: str, **changes: Any) -> Database:
    db = Database(settings_replace(server.new_schema(section), **changes))
    initialize_database(db.pool, db.settings)
    return db


def _median(samples: list[float]) -> float:
    """The minimum: on a shared machine other work only ever adds time, so the fastest of
    interleaved runs is the estimate least disturbed by it (medians are reported too)."""
    return min(samples)


def fresh_ingest(server: BenchServer, *, bars: int, repeats: int, seed: int) -> dict[str, Any]:
    from regime_io._write.save import save

    dbs = {"with known_from": _db(server, "kt_with"), "without": _db(server, "kt_without")}
    with server.connect() as conn:
        db = dbs["without"]
        conn.execute(sql.SQL("ALTER TABLE {} DROP COLUMN known_from").format(
            sql.Identifier(db.settings.schema, db.settings.table_name("market_data"))))
    symbols = 10
    frame = synthetic.market_bars([f"S{i}" for i in range(symbols)], days=max(1, bars // (symbols * 375)), seed=seed)
    path = server.scratch_file("knowledge_bars.csv")
    frame.write_csv(path)
    path.chmod(0o644)
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
    for db in dbs.values():
        save(db, "market_data", frame)  # partitions and warm caches, untimed (truncated before each run)
    ours: dict[str, list[float]] = {k: [] for k in dbs}
    copy: dict[str, list[float]] = {k: [] for k in dbs}
    for i in range(repeats):
        for name, db in (list(dbs.items()) if i % 2 == 0 else list(dbs.items())[::-1]):  # alternate who goes first
            table = sql.Identifier(db.settings.schema, db.settings.table_name("market_data"))
            for kind in ("copy", "ours"):
                with server.connect() as conn:
                    conn.execute(sql.SQL("TRUNCATE {}").format(table))
                    conn.execute("CHECKPOINT")
                begun = time.perf_counter()
                if kind == "ours":
                    save(db, "market_data", frame)
                    ours[name].append(time.perf_counter() - begun)
                else:
                    with server.connect() as conn:
                        conn.execute(sql.SQL("COPY {} ({}) FROM {} (FORMAT csv, HEADER true)").format(
                            table, cols, sql.Literal(str(path))))
                    copy[name].append(time.perf_counter() - begun)
    for db in dbs.values():
        db.close()
    out: dict[str, Any] = {"rows": frame.height}
    for name in dbs:
        out[name] = {"save_s": _median(ours[name]), "server_copy_s": _median(copy[name]),
                     "ratio": _median(ours[name]) / _median(copy[name]),
                     "median_ratio": statistics.median(ours[name]) / statistics.median(copy[name])}
    out["ratio_change"] = out["with known_from"]["ratio"] / out["without"]["ratio"] - 1
    return out


def _regimes(days: int, seed: int) -> pl.DataFrame:
    return synthetic.minute_regimes([f"S{i}" for i in range(10)], days=days, seed=seed, start=dt.date(2024, 1, 1))


def as_of_read(server: BenchServer, *, days: int, repeats: int, seed: int) -> dict[str, Any]:
    from regime_io._read.readers import get_1min_market_regimes
    from regime_io._write.save import save

    db = _db(server, "kt_read")
    data = _regimes(days, seed)
    first = dt.datetime(2024, 6, 1, tzinfo=UTC)
    save(db, "market_regimes_1min", data, known_at=first)
    revised = data.filter(pl.int_range(pl.len()) % 10 == 0).with_columns(pl.lit("revised").alias("regime"))
    save(db, "market_regimes_1min", revised, known_at=first + dt.timedelta(days=30))
    at = first + dt.timedelta(days=1)

    def now() -> Any:
        return get_1min_market_regimes(db, "S3", "2024-02-01", "2024-02-29")

    def then() -> Any:
        return get_1min_market_regimes(db, "S3", "2024-02-01", "2024-02-29", as_of=at)

    rows = now().height
    assert then().height == rows
    samples: dict[str, list[float]] = {"current": [], "as_of": []}
    for _ in range(max(repeats, 5) * 4):
        for name, fn in (("current", now), ("as_of", then)):
            begun = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - begun)
    db.close()
    cur, old = _median(samples["current"]), _median(samples["as_of"])
    return {"rows": rows, "current_s": cur, "as_of_s": old, "ratio": old / cur,
            "median_ratio": statistics.median(samples["as_of"]) / statistics.median(samples["current"]),
            "history_rows": revised.height}


def restatement(server: BenchServer, *, repeats: int, seed: int) -> dict[str, Any]:
    from regime_io._write.save import save

    dbs = {"history": _db(server, "kt_hist"), "no history": _db(server, "kt_plain", history_tables=())}
    data = _regimes(3, seed)
    day = data.filter(pl.col("timestamp").dt.date() == data["timestamp"].dt.date().max())
    for db in dbs.values():
        save(db, "market_regimes_1min", data)
    samples: dict[str, list[float]] = {k: [] for k in dbs}
    for i in range(repeats * 6):
        restated = day.with_columns(pl.lit(f"r{i}").alias("regime"), pl.col("confidence") + i)
        for name, db in (list(dbs.items()) if i % 2 == 0 else list(dbs.items())[::-1]):
            begun = time.perf_counter()
            result = save(db, "market_regimes_1min", restated)
            samples[name].append(time.perf_counter() - begun)
            assert result.updated == day.height, result
    for db in dbs.values():
        db.close()
    with_h, without = _median(samples["history"]), _median(samples["no history"])
    return {"rows": day.height, "history_s": with_h, "no_history_s": without, "ratio": with_h / without,
            "median_ratio": statistics.median(samples["history"]) / statistics.median(samples["no history"]),
            "samples": len(samples["history"])}


def run_knowledge(server: BenchServer, *, bars: int, days: int, repeats: int, seed: int = 7) -> dict[str, Any]:
    return {"fresh_ingest": fresh_ingest(server, bars=bars, repeats=repeats, seed=seed),
            "as_of_read": as_of_read(server, days=days, repeats=repeats, seed=seed),
            "restatement": restatement(server, repeats=repeats, seed=seed)}


def markdown(result: dict[str, Any]) -> str:
    f, r, s = result["fresh_ingest"], result["as_of_read"], result["restatement"]
    w, wo = f["with known_from"], f["without"]

    def met(ok: bool) -> str:
        return "met" if ok else "**not met**"

    return "\n".join([
        "| operation | before (no versions) | with knowledge time | ratio | target |",
        "|---|---:|---:|---:|---|",
        f"| fresh COPY ingest, {f['rows']:,} bars: time / server `COPY FROM file` | {wo['save_s'] * 1000:,.0f} ms / "
        f"{wo['server_copy_s'] * 1000:,.0f} ms = {wo['ratio']:.2f}x | {w['save_s'] * 1000:,.0f} ms / "
        f"{w['server_copy_s'] * 1000:,.0f} ms = {w['ratio']:.2f}x | {f['ratio_change']:+.1%} | "
        f"at most 5% worse: {met(f['ratio_change'] <= 0.05)} |",
        f"| read 1 symbol x 1 month of 1-minute regimes ({r['rows']:,} rows): current vs `as_of` | "
        f"{r['current_s'] * 1000:,.1f} ms | {r['as_of_s'] * 1000:,.1f} ms | {r['ratio']:.2f}x | "
        f"<= 2x: {met(r['ratio'] <= 2)} |",
        f"| restate 1 day x 10 symbols ({s['rows']:,} rows, every row changed) | {s['no_history_s'] * 1000:,.1f} ms | "
        f"{s['history_s'] * 1000:,.1f} ms | {s['ratio']:.2f}x | <= 1.5x: {met(s['ratio'] <= 1.5)} |",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.knowledge", description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=None, help="a server to use instead of a fresh embedded one")
    parser.add_argument("--bars", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=45)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with bench_server(args.dsn) as server:
        result = run_knowledge(server, bars=args.bars, days=args.days, repeats=args.repeats)
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
