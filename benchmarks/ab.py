"""An A/B of two source trees of regime_io on one server, alternating, in the same run.

Usage::

    git worktree add /tmp/rio-old <commit>
    python -m benchmarks.ab --old /tmp/rio-old --new . --rows 500000 --rounds 5

Each round runs every operation once per tree, each tree in its own Python process
(``PYTHONPATH`` pointing at the tree), alternating which tree goes first, on a fresh
schema of one embedded server (``--dsn`` for another). Prints the median time of each
operation per tree and the ratio new / old (> 1: the new tree is slower). The figures
are meant for ``docs/performance.md``; take them with nothing else running.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# The body run in each tree's process: prints one JSON object of seconds per operation.
WORKER = r'''
import datetime as dt, json, sys, time, uuid
import numpy as np, polars as pl
from regime_io import PostgreSQLIntegration
from regime_io.config import load_settings

url, rows, symbols = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
schema = "ab_" + uuid.uuid4().hex[:10]
settings = load_settings(config={"database": {"dsn": url, "schema": schema}}, env={})
per = rows // symbols
t0 = dt.datetime(2024, 1, 1)
rng = np.random.default_rng(7)
close = np.round(100 + rng.standard_normal(rows).cumsum() * 0.05, 2)
bars = pl.DataFrame({
    "symbol": np.repeat([f"S{i:02d}" for i in range(symbols)], per),
    "timeframe": "1m",
    "timestamp": pl.datetime_range(t0, t0 + dt.timedelta(minutes=per - 1), "1m", eager=True).to_list() * symbols,
    "open": close, "high": close + 0.05, "low": close - 0.05, "close": close,
    "volume": rng.integers(1, 1000, rows),
})
last = t0 + dt.timedelta(minutes=per - 1)
month = ("2024-01-01", "2024-01-31")
day = ("2024-01-10", "2024-01-10")
out = {}

def clock(name, call, repeat=1):
    times = []
    for _ in range(repeat):
        start = time.perf_counter(); call(); times.append(time.perf_counter() - start)
    out[name] = sorted(times)[len(times) // 2]

with PostgreSQLIntegration(settings=settings) as pg:
    pg.initialize_database()
    clock("ingest", lambda: pg.save_market_data(bars))
    clock("small write (2 rows)", lambda: pg.save_market_data(bars.head(2)), repeat=50)
    for prefix in ("rows", "sealed"):
        if prefix == "sealed":
            seal = getattr(pg, "seal", None) or pg.seal_history  # renamed in 0.2
            clock("seal", lambda: seal(last + dt.timedelta(days=62)))
        clock(f"{prefix}: read all", lambda: pg.get_market_data(symbols=[f"S{i:02d}" for i in range(symbols)]))
        clock(f"{prefix}: 1 symbol, month", lambda: pg.get_market_data("S00", *month), repeat=5)
        clock(f"{prefix}: 1 symbol, day", lambda: pg.get_market_data("S00", *day), repeat=20)
        clock(f"{prefix}: latest, 1 symbol", lambda: pg.get_latest("bars", "S00"), repeat=50)
        clock(f"{prefix}: resample 1h, month", lambda: pg.get_market_data("S00", *month, resample="1h"), repeat=3)
        clock(f"{prefix}: scan month", lambda: pg.scan("bars").filter(
            (pl.col("symbol") == "S00") & pl.col("timestamp").is_between(dt.datetime(2024, 1, 1),
                                                                       dt.datetime(2024, 1, 31, 23, 59))).collect(),
              repeat=3)
import psycopg
with psycopg.connect(url, autocommit=True) as conn:
    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
print(json.dumps(out))
'''


def _run(tree: Path, url: str, rows: int, symbols: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    done = subprocess.run([sys.executable, "-c", WORKER, url, str(rows), str(symbols)], env=env, check=False,
                          capture_output=True, text=True, cwd=tempfile.gettempdir())
    if done.returncode:
        raise SystemExit(f"{tree}: the worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n\n")[0])
    p.add_argument("--old", type=Path, required=True, help="the previous tree (a git worktree)")
    p.add_argument("--new", type=Path, default=Path("."), help="the tree under test")
    p.add_argument("--rows", type=int, default=500_000)
    p.add_argument("--symbols", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--dsn", default=None, help="a server to use instead of a fresh embedded one")
    args = p.parse_args(argv)
    cleanup = None
    url = args.dsn
    if url is None:
        from regime_io._conn import embedded

        pgdata = Path(tempfile.mkdtemp(prefix="rio-ab-")) / "pgdata"
        info = embedded.start(pgdata)
        url = f"postgresql://{info.user}@localhost:{info.port}/{info.database}?host={info.socket_dir}"

        def cleanup() -> None:
            embedded.stop(pgdata, mode="fast")

    results: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
    try:
        for round_ in range(args.rounds):
            order = [("old", args.old), ("new", args.new)]
            if round_ % 2:
                order.reverse()
            for name, tree in order:
                for op, seconds in _run(tree, url, args.rows, args.symbols).items():
                    results[name].setdefault(op, []).append(seconds)
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        if cleanup is not None:
            cleanup()
    print(f"| operation ({args.rows:,} bars, {args.symbols} symbols, {args.rounds} rounds) | old (median) "
          "| new (median) | new / old |")
    print("|---|---:|---:|---:|")
    for op, old in results["old"].items():
        new = results["new"].get(op, [])
        if not new:
            continue
        a, b = statistics.median(old), statistics.median(new)
        unit, scale = ("ms", 1e3)
        print(f"| {op} | {a * scale:,.2f} {unit} | {b * scale:,.2f} {unit} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
