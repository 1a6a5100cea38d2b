"""Peak memory (RSS) of a streaming read and of a chunked Parquet ingest, in a subprocess.

The parent starts ``python -m benchmarks.memory stream|ingest ...`` with the server URL
in the ``RIO_BENCH_URL`` environment variable (never on the command line, where ``ps``
would show a password). The child does the work and prints one JSON line: rows, seconds,
``before_mb`` (RSS after imports and connecting, just before the work) and ``peak_mb``
(``VmHWM``: the highest RSS the process ever had, imports included; ``ru_maxrss`` would
include the parent's memory, inherited across fork + exec). The parent also samples the
child's RSS every 20 ms (``sampled_peak_mb``) as a cross-check.

Example (what the parent runs):
    RIO_BENCH_URL=postgresql://... python -m benchmarks.memory stream --schema s \\
        --symbols NIFTY,TCS --start 2022-01-03T09:15 --end 2022-12-30T15:29
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .measure import Figure, unavailable

__all__ = ["measure_ingest_rss", "measure_stream_rss", "write_bars_parquet"]

_ENV_URL = "RIO_BENCH_URL"


def _rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def _peak_mb() -> float:
    """This process's peak RSS.

    On Linux ``VmHWM`` from /proc (the peak of this process image): ``ru_maxrss`` is
    inherited across fork + exec, so a child of a big parent would report the parent's size.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # macOS bytes, Linux KiB


def _database(schema: str) -> Any:
    from regime_io.config import load_settings, settings_replace
    from regime_io.database import Database

    settings = load_settings(config={"database": {"dsn": os.environ[_ENV_URL]}}, env={})
    return Database(settings_replace(settings, schema=schema))


def _streams() -> Any:
    """The module holding ``iter_market_data``: ``regime_io._read.streams``, or the readers
    module of older versions (A/B runs against earlier commits); None before it existed."""
    import importlib

    for name in ("regime_io._read.streams", "regime_io._read.readers"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "iter_market_data"):
            return module
    return None


def _child_stream(args: argparse.Namespace) -> dict[str, Any]:
    reading = _streams()
    db = _database(args.schema)
    with db.connection():
        pass
    before = _rss_mb()
    started = time.perf_counter()
    rows = 0
    # Arrow batches, as measured before iter_* yielded frames of return_type (A/B with older code).
    arrow = {"return_type": "arrow"} if "return_type" in inspect.signature(reading.iter_market_data).parameters else {}
    for batch in reading.iter_market_data(db, args.symbols.split(","), dt.datetime.fromisoformat(args.start),
                                          dt.datetime.fromisoformat(args.end), batch_rows=args.batch_rows, **arrow):
        rows += batch.num_rows
    return {"rows": rows, "seconds": time.perf_counter() - started, "before_mb": before, "peak_mb": _peak_mb()}


def _child_ingest(args: argparse.Namespace) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from regime_io._write.save import save

    db = _database(args.schema)
    with db.connection():
        pass
    before = _rss_mb()
    started = time.perf_counter()
    parquet = pq.ParquetFile(args.parquet)
    result = save(db, "market_data", parquet.iter_batches(batch_size=args.batch_rows))
    return {"rows": result.rows, "inserted": result.inserted, "seconds": time.perf_counter() - started,
            "before_mb": before, "peak_mb": _peak_mb(), "method": result.method}


def _run_child(url: str, argv: list[str], *, timeout: float) -> dict[str, Any]:
    env = dict(os.environ, **{_ENV_URL: url})
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    import psutil

    # The parent also samples the child's RSS (every 20 ms), a cross-check of VmHWM.
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.memory", *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    sampled = 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal sampled
        try:
            child = psutil.Process(proc.pid)
            while not stop.is_set():
                sampled = max(sampled, child.memory_info().rss / 2**20)
                stop.wait(0.02)
        except psutil.Error:
            pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        stop.set()
        sampler.join()
        if proc.poll() is None:
            proc.kill()
    if proc.returncode != 0:
        raise RuntimeError(f"memory subprocess failed ({proc.returncode}): {stderr.strip()[-800:]}")
    out = dict(json.loads(stdout.strip().splitlines()[-1]))
    out["sampled_peak_mb"] = sampled
    return out


def write_bars_parquet(path: Path, *, rows: int, symbols: int, seed: int, row_group_rows: int = 250_000) -> int:
    """A Parquet file of about ``rows`` one-minute bars (float prices, as vendors ship
    them; whole minutes of every symbol). Returns the exact row count."""
    import pyarrow.parquet as pq

    from .data import BarStream

    stream = BarStream(symbols, seed=seed)
    minutes_per_group = max(1, row_group_rows // symbols)
    total_minutes = max(1, rows // symbols)
    writer = None
    written = 0
    try:
        while total_minutes > 0:
            table = stream.take(min(minutes_per_group, total_minutes)).to_arrow()
            total_minutes -= table.num_rows // symbols
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write_table(table, row_group_size=row_group_rows)
            written += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    return written


def _figure(label: str, out: dict[str, Any], **extra: Any) -> Figure:
    fig: Figure = {"kind": "rss", "label": label, "unit": "MB", "peak_mb": out["peak_mb"],
                   "before_mb": out["before_mb"], "sampled_peak_mb": out["sampled_peak_mb"], "rows": out["rows"],
                   "seconds": out["seconds"],
                   "rows_per_s": out["rows"] / out["seconds"] if out["seconds"] else None}
    fig.update(extra)
    return fig


def measure_stream_rss(url: str, *, schema: str, symbols: list[str], start: dt.datetime, end: dt.datetime,
                       expected_rows: int, batch_rows: int = 250_000, timeout: float = 1800) -> Figure:
    """Peak RSS of ``iter_market_data`` over ``[start, end]`` for ``symbols`` in a fresh process."""
    label = f"peak RSS, iter_market_data streaming {expected_rows:,} rows ({batch_rows:,}-row batches)"
    if _streams() is None:
        return unavailable(label, "regime_io's iter_market_data does not exist yet", kind="rss")
    out = _run_child(url, ["stream", "--schema", schema, "--symbols", ",".join(symbols), "--start", start.isoformat(),
                           "--end", end.isoformat(), "--batch-rows", str(batch_rows)], timeout=timeout)
    if out["rows"] != expected_rows:
        raise RuntimeError(f"streaming read returned {out['rows']} rows, expected {expected_rows}")
    return _figure(label, out, batch_rows=batch_rows)


def measure_ingest_rss(url: str, *, schema: str, parquet: Path, rows: int, batch_rows: int = 250_000,
                       timeout: float = 1800) -> Figure:
    """Peak RSS of ``save`` fed the batches of a Parquet file, in a fresh process."""
    size_mb = parquet.stat().st_size / 2**20
    label = (f"peak RSS, chunked ingest of a {size_mb:,.0f} MB Parquet file ({rows:,} rows, "
             f"{batch_rows:,}-row batches, one transaction)")
    out = _run_child(url, ["ingest", "--schema", schema, "--parquet", str(parquet), "--batch-rows", str(batch_rows)],
                     timeout=timeout)
    if out["rows"] != rows or out["inserted"] != rows:
        raise RuntimeError(f"parquet ingest wrote {out}, expected {rows} rows")
    return _figure(label, out, batch_rows=batch_rows, parquet_mb=size_mb)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("stream")
    s.add_argument("--schema", required=True)
    s.add_argument("--symbols", required=True)
    s.add_argument("--start", required=True)
    s.add_argument("--end", required=True)
    s.add_argument("--batch-rows", type=int, default=250_000)
    i = sub.add_parser("ingest")
    i.add_argument("--schema", required=True)
    i.add_argument("--parquet", required=True)
    i.add_argument("--batch-rows", type=int, default=250_000)
    args = parser.parse_args(argv)
    out = _child_stream(args) if args.what == "stream" else _child_ingest(args)
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
