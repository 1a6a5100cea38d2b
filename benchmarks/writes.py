"""Ingest benchmarks: ``regime_io`` writers against the physical limit and the usual alternatives.

Fresh ingest (empty table, partitions already there, ``TRUNCATE`` + ``CHECKPOINT`` before
every run, untimed) of the same one-minute bars by:

- ``regime_io.save`` from a polars frame with float prices (what users have): validation,
  float -> DECIMAL rounding, the collision probe and binary COPY through ADBC;
- server-side ``COPY ... FROM 'file'`` of the same rows in binary and CSV format (the
  server reads the file itself: no client, no network; the physical limit);
- ``polars.DataFrame.write_database(engine="adbc")`` after casting prices to Decimal(10,2)
  (it cannot write floats into NUMERIC); the cast is not timed;
- psycopg ``COPY ... FROM STDIN`` fed row by row from ``DataFrame.iter_rows()``;
- ``pandas.DataFrame.to_sql`` through SQLAlchemy + psycopg, default ``method=None`` and
  ``method="multi"`` (chunks of 1,000 rows), on a subset, extrapolated linearly.

Methods run round-robin (one run of each, then the next round), so slow drifts of a
shared machine hit every method alike. Then the upsert paths: re-ingest of the same
rows (every row collides, nothing changes), of the same keys with every price changed
(every row updated), and a batch half new, half already stored.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import Any

import polars as pl
from psycopg import sql

from regime_io._write.save import save
from regime_io._write.validate import validate
from regime_io.tables import TABLES

from .data import BarStream
from .measure import Figure, time_it, timed_once, unavailable
from .server import BenchServer

__all__ = ["load_bars", "run_writes"]

log = logging.getLogger(__name__)

SPEC = TABLES["market_data"]
COLUMNS = list(SPEC.column_names)
DECIMALS = [c.name for c in SPEC.columns if c.kind == "decimal"]


def table_ident(db: Any) -> sql.Composable:
    return sql.Identifier(db.settings.schema, db.settings.table_name("market_data"))


def column_list() -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)


class Maintenance:
    """TRUNCATE / VACUUM / CHECKPOINT between runs, on an autocommit psycopg connection."""

    def __init__(self, server: BenchServer, db: Any) -> None:
        self.conn = server.connect(autocommit=True)
        self.table = table_ident(db)
        self.can_checkpoint = True

    def checkpoint(self) -> None:
        if not self.can_checkpoint:
            return
        try:
            self.conn.execute("CHECKPOINT")
        except Exception as err:  # not superuser / no pg_checkpoint role: runs stay comparable anyway
            log.info("CHECKPOINT not allowed (%s); continuing without it", type(err).__name__)
            self.can_checkpoint = False

    def truncate(self) -> None:
        self.conn.execute(sql.SQL("TRUNCATE {}").format(self.table))
        self.checkpoint()

    def vacuum(self) -> None:
        self.conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(self.table))
        self.checkpoint()

    def count(self) -> int:
        row = self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self.table)).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.conn.close()


def _dump(server: BenchServer, db: Any, fmt: str, *, key_order: bool = False) -> str:
    """Write the stored rows to a file the server can read; return its path. Rows in input
    order (time-major), or in natural-key order (the order regime_io sends them in)."""
    path = server.scratch_file(f"market_data{'_sorted' if key_order else ''}.{fmt}")
    order = sql.SQL("symbol, timeframe, timestamp" if key_order else "timestamp, symbol")
    query = sql.SQL("COPY (SELECT {} FROM {} ORDER BY {}) TO STDOUT WITH (FORMAT {})").format(
        column_list(), table_ident(db), order, sql.SQL(fmt))
    with server.connect() as conn, conn.cursor() as cur, open(path, "wb") as fh, cur.copy(query) as copy:
        for block in copy:
            fh.write(block)
    path.chmod(0o644)
    return str(path)


def _server_copy(server: BenchServer, db: Any, path: str, fmt: str) -> Callable[[], None]:
    statement = sql.SQL("COPY {} ({}) FROM {} WITH (FORMAT {})").format(
        table_ident(db), column_list(), sql.Literal(path), sql.SQL(fmt))
    conn = server.connect(autocommit=True)

    def run() -> None:
        conn.execute(statement)

    return run


def _psycopg_rows(server: BenchServer, db: Any, frame: pl.DataFrame) -> Callable[[], None]:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(table_ident(db), column_list())

    def run() -> None:
        with server.connect(autocommit=False) as conn:
            with conn.cursor() as cur, cur.copy(statement) as copy:
                for row in frame.iter_rows():
                    copy.write_row(row)
            conn.commit()

    return run


def _polars_adbc(server: BenchServer, db: Any, frame: pl.DataFrame) -> Callable[[], None]:
    name = f"{db.settings.schema}.{db.settings.table_name('market_data')}"
    url = server.url()

    def run() -> None:
        frame.write_database(name, url, engine="adbc", if_table_exists="append")

    return run


def _sqlalchemy_engine(server: BenchServer) -> Any:
    import sqlalchemy

    url = server.url().replace("postgresql://", "postgresql+psycopg://", 1)
    return sqlalchemy.create_engine(url, pool_pre_ping=False)


def _pandas_to_sql(server: BenchServer, db: Any, frame: pl.DataFrame, method: str | None) -> Callable[[], None]:
    engine = _sqlalchemy_engine(server)
    pdf = frame.to_pandas()
    table = db.settings.table_name("market_data")

    def run() -> None:
        pdf.to_sql(table, engine, schema=db.settings.schema, if_exists="append", index=False, method=method,
                   chunksize=1000 if method == "multi" else None)

    return run


def load_bars(server: BenchServer, *, rows: int, symbols: int, seed: int) -> tuple[Any, BarStream]:
    """Only load the bars the read benchmarks use (when the write section is not run)."""
    db = server.database("io")
    stream = BarStream(symbols, seed=seed)
    save(db, "market_data", stream.take(rows // symbols))
    maint = Maintenance(server, db)
    maint.vacuum()
    maint.close()
    return db, stream


def run_writes(server: BenchServer, *, rows: int, symbols: int, repeats: int, slow_repeats: int,
               pandas_rows: int, seed: int, say: Callable[[str], None]) -> tuple[dict[str, Figure], Any, BarStream]:
    """All ingest figures. Returns them, the ``Database`` left holding the bars (the read
    benchmarks use it) and the stream that generated them."""
    figures: dict[str, Figure] = {}
    db = server.database("io")
    maint = Maintenance(server, db)
    say(f"generating {rows:,} one-minute bars for {symbols} symbols")
    stream = BarStream(symbols, seed=seed)
    bars = stream.take(rows // symbols)
    n = bars.height

    # Warm-up: creates the partitions (kept by TRUNCATE), fills the pool, writes the files.
    say("warm-up ingest and COPY files")
    save(db, "market_data", bars)
    files: dict[str, str] = {}
    if server.local:
        for fmt in ("binary", "csv"):
            files[fmt] = _dump(server, db, fmt)
        files["binary_sorted"] = _dump(server, db, "binary", key_order=True)

    started = time.perf_counter()
    validated = validate(SPEC, bars)
    figures["ingest.validate_only"] = time_it(lambda: validate(SPEC, bars), repeats=repeats,
                                              label="regime_io validation alone (float -> DECIMAL, checks)",
                                              rows=n)
    del validated
    log.debug("validation figures took %.1fs", time.perf_counter() - started)

    decimal_frame = bars.with_columns(pl.col(c).cast(pl.Decimal(10, 2)) for c in DECIMALS)
    figures["ingest.polars_decimal_cast"] = time_it(
        lambda: bars.with_columns(pl.col(c).cast(pl.Decimal(10, 2)) for c in DECIMALS), repeats=repeats,
        label="polars cast of prices to Decimal(10,2) (needed before write_database; not in its time)", rows=n)

    methods: dict[str, tuple[str, Callable[[], Any], str | None]] = {
        "ingest.fresh.regime_io": ("regime_io.save (polars frame, float prices)",
                                   lambda: save(db, "market_data", bars), None),
        "ingest.fresh.polars_adbc": ("polars write_database(engine='adbc'), Decimal frame",
                                     _polars_adbc(server, db, decimal_frame), None),
    }
    reasons: dict[str, str] = {}
    for fmt in ("binary", "csv", "binary_sorted"):
        key = f"ingest.fresh.server_copy_{fmt}"
        label = (f"server-side COPY FROM file ({fmt}), the limit" if fmt != "binary_sorted" else
                 "server-side COPY FROM file (binary, rows in natural-key order as regime_io sends them; "
                 "information, not the target's baseline)")
        if fmt not in files:
            reasons[key] = "the server is not on this machine; it cannot read our file"
            figures[key] = unavailable(label, reasons[key])
            continue
        try:
            maint.truncate()
            fmt_sql = fmt.split("_")[0]
            _server_copy(server, db, files[fmt], fmt_sql)()
            methods[key] = (label, _server_copy(server, db, files[fmt], fmt_sql), None)
        except Exception as err:
            figures[key] = unavailable(label, f"{type(err).__name__}: {server.settings.redact(str(err))[:200]}")
    say(f"fresh ingest of {n:,} rows: {len(methods)} methods x {repeats} rounds")
    for round_ in range(repeats):
        for key, (label, fn, note) in methods.items():
            maint.truncate()
            gc.collect()
            t0 = time.perf_counter()
            fn()
            figures[key] = timed_once(figures.get(key), time.perf_counter() - t0, label=label, rows=n, note=note)
            if round_ == 0:  # every method really wrote every row
                _check_count(maint, n, key)
        say(f"  round {round_ + 1}/{repeats}: " + ", ".join(
            f"{k.rsplit('.', 1)[1]} {figures[k]['samples'][-1]:.2f}s" for k in methods))
    maint.truncate()
    psy = _psycopg_rows(server, db, bars)
    figures["ingest.fresh.psycopg_copy_rows"] = time_it(
        psy, repeats=slow_repeats, setup=maint.truncate, rows=n,
        label="psycopg COPY FROM STDIN, rows from DataFrame.iter_rows()")
    _check_count(maint, n, "psycopg COPY")

    for method, key in ((None, "ingest.fresh.pandas_to_sql"), ("multi", "ingest.fresh.pandas_to_sql_multi")):
        # method='multi' is ~6x slower than executemany here: a tenth of the rows keeps the run short.
        sub = bars.head(max(1, min(pandas_rows if method is None else pandas_rows // 10, n)))
        label = (f"pandas.to_sql (SQLAlchemy+psycopg, method={method!r}"
                 + (", chunksize=1000" if method else "") + f"), {sub.height:,} rows, extrapolated")
        try:
            import sqlalchemy  # noqa: F401
        except ImportError:
            figures[key] = unavailable(label, "sqlalchemy is not installed (pip install regime-io[bench])")
            continue
        say(f"pandas.to_sql method={method!r} on {sub.height:,} rows")
        fig = time_it(_pandas_to_sql(server, db, sub, method), repeats=slow_repeats, setup=maint.truncate,
                      label=label, rows=sub.height)
        _check_count(maint, sub.height, "pandas.to_sql")
        scale = n / sub.height
        fig["measured_rows"] = sub.height
        fig["extrapolated_to_rows"] = n
        for k in ("median", "min", "max"):
            fig[k] = fig[k] * scale
        fig["rows"] = n
        fig["rows_per_s"] = n / fig["median"]
        fig["note"] = f"measured on {sub.height:,} rows, times scaled x{scale:g} (linear extrapolation)"
        figures[key] = fig

    # -- upserts ------------------------------------------------------------------------
    maint.truncate()
    save(db, "market_data", bars)
    maint.vacuum()
    say(f"re-ingest, every row colliding, nothing changed ({repeats} runs)")
    results: list[Any] = []
    figures["ingest.reingest.all_colliding"] = time_it(
        lambda: results.append(save(db, "market_data", bars)), repeats=repeats, setup=maint.checkpoint,
        label="regime_io.save, every row collides (same values: nothing rewritten)", rows=n)
    figures["ingest.reingest.all_colliding"]["write_result"] = str(results[-1])

    shifted = bars.with_columns(pl.col(c) + 0.01 for c in DECIMALS)
    state = {"flip": False}

    def changed() -> None:
        state["flip"] = not state["flip"]
        results.append(save(db, "market_data", shifted if state["flip"] else bars))

    say(f"re-ingest, every row colliding with changed prices ({slow_repeats} runs)")
    figures["ingest.reingest.all_changed"] = time_it(
        changed, repeats=slow_repeats, setup=maint.vacuum,
        label="regime_io.save, every row collides with new prices (every row updated)", rows=n)
    figures["ingest.reingest.all_changed"]["write_result"] = str(results[-1])

    half = bars.head(n // 2)

    def store_half() -> None:
        maint.truncate()
        save(db, "market_data", half)
        maint.vacuum()

    say(f"half new, half colliding ({slow_repeats} runs)")
    figures["ingest.reingest.half_new"] = time_it(
        lambda: results.append(save(db, "market_data", bars)), repeats=slow_repeats, setup=store_half,
        label="regime_io.save, half the rows new, half already stored", rows=n)
    figures["ingest.reingest.half_new"]["write_result"] = str(results[-1])

    # Leave the full, clean table for the readers.
    maint.truncate()
    save(db, "market_data", bars)
    maint.vacuum()
    _check_count(maint, n, "final load")
    maint.close()
    return figures, db, stream


def _check_count(maint: Maintenance, expected: int, what: str) -> None:
    got = maint.count()
    if got != expected:
        raise RuntimeError(f"{what}: the table holds {got} rows after the run, expected {expected}")
