"""The ``regime-io`` command line: a thin shell over the library.

Each command calls one library function and prints its result with rich. A
:class:`~regime_io.errors.RegimeIOError` becomes one red line on stderr and exit code 1,
never a traceback; passwords never reach the terminal (``db url`` masks them unless
``--show-password``).

Where the commands connect, lowest precedence first: the embedded server (nothing
configured), ``--config FILE`` (or ``REGIME_IO_CONFIG``), ``REGIME_IO_*`` environment
variables, then ``--dsn`` and ``--schema``. See ``docs/cli.md``.

Example (shell)::

    regime-io demo
    regime-io --config config/database_config.ini latest NIFTY BANKNIFTY
    regime-io ingest bars.parquet --table market_data
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from . import __version__
from ._sql import identifier_problem
from .config import Settings, load_settings, settings_replace
from .errors import ConfigError, RegimeIOError

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from .integration import PostgreSQLIntegration

__all__ = ["app", "main"]

log = logging.getLogger(__name__)

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

DEMO_SCHEMA = "regime_io_demo"
DEMO_SYMBOLS = ("NIFTY", "BANKNIFTY", "RELIANCE", "INFY")
DEMO_DAYS = 22  # a month of weekday sessions
DEMO_CHART = "regime_io_demo.png"

INGEST_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".arrow": "ipc", ".ipc": "ipc",
                  ".feather": "ipc", ".arrows": "ipc"}
EXPORT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".arrow": "ipc", ".ipc": "ipc",
                  ".feather": "ipc"}

app = typer.Typer(
    name="regime-io",
    help="Market history in PostgreSQL, back as columnar frames.\n\n"
         "With nothing configured, commands run on an embedded PostgreSQL server in your user data "
         "directory. Start with: regime-io demo",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(help="The embedded PostgreSQL server: start, stop, status, url.", no_args_is_help=True)
app.add_typer(db_app, name="db")


# ---------------------------------------------------------------------------------------
# Global options and settings


@dataclass
class _State:
    config: Path | None = None
    dsn: str | None = None
    schema: str | None = None
    _settings: Settings | None = None

    def settings(self, *, default_schema: str | None = None) -> Settings:
        """The configuration: file / environment, then ``--dsn`` and ``--schema`` on top."""
        if self._settings is None:
            self._settings = _load_settings(self.config, self.dsn)
        settings = self._settings
        schema = self.schema or default_schema
        if schema is not None:
            settings = settings_replace(settings, schema=_check_schema(schema))
        return settings

    def integration(self, *, default_schema: str | None = None) -> PostgreSQLIntegration:
        from .integration import PostgreSQLIntegration

        return PostgreSQLIntegration(settings=self.settings(default_schema=default_schema))


def _check_schema(schema: str) -> str:
    problem = identifier_problem(schema.strip().lower())
    if problem:
        raise ConfigError([f"schema: {problem}"], source="--schema")
    return schema.strip().lower()


def _load_settings(config: Path | None, dsn: str | None) -> Settings:
    settings = load_settings(config)
    if dsn is None:
        return settings
    try:
        address = load_settings(config={"database": {"dsn": dsn}}, env={})
    except ConfigError as err:
        raise ConfigError(err.problems, source="--dsn") from None
    changes: dict[str, Any] = {
        "host": address.host, "port": address.port, "database": address.database, "user": address.user,
        "password": address.password, "libpq_options": address.libpq_options,
        "source": f"{settings.source} + --dsn",
    }
    if "connect_timeout" in dsn:
        changes["connection_timeout"] = address.connection_timeout
    return settings_replace(settings, **changes)


def _state(ctx: typer.Context) -> _State:
    root = ctx.find_root()
    if not isinstance(root.obj, _State):
        root.obj = _State()
    return root.obj


def _version(value: bool) -> None:
    if value:
        console.print(f"regime-io {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="INI configuration file (the seed's \\[DATABASE] \\[TABLES] \\[CONNECTION]). "
        "Default: REGIME_IO_CONFIG, else REGIME_IO_* variables, else the embedded server.",
        dir_okay=False, show_default=False)] = None,
    dsn: Annotated[str | None, typer.Option(
        "--dsn", help="postgresql://user:password@host:port/database; replaces the address of the "
        "configuration. Prefer REGIME_IO_DSN: a command line is visible to other users.",
        show_default=False)] = None,
    schema: Annotated[str | None, typer.Option(
        "--schema", help="PostgreSQL schema holding the tables (overrides the configuration).",
        show_default=False)] = None,
    verbose: Annotated[int, typer.Option(
        "--verbose", "-v", count=True, help="Log progress (-v) or debug details (-vv) to stderr.")] = 0,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Market history in PostgreSQL, back as columnar frames."""
    ctx.obj = _State(config=config, dsn=dsn, schema=schema)
    _setup_output(verbose)


def _setup_output(verbose: int) -> None:
    """Library log records (retries, warnings; more with -v) go to stderr through rich.
    Output that is not a terminal (a pipe, a file, a test) gets wide lines instead of
    80 columns, so tables are not squeezed."""
    for c in (console, err_console):
        if not c.is_terminal and "COLUMNS" not in os.environ:
            c.width = 160
    from rich.logging import RichHandler

    package = logging.getLogger("regime_io")
    package.handlers = [h for h in package.handlers if not getattr(h, "_regime_io_cli", False)]
    handler = RichHandler(console=err_console, show_path=False, show_time=verbose > 0, markup=False,
                          rich_tracebacks=False)
    handler._regime_io_cli = True  # type: ignore[attr-defined]
    package.addHandler(handler)
    package.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)


# ---------------------------------------------------------------------------------------
# Error handling and output helpers

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, state: _State | None = None) -> typer.Exit:
    """Print one red error line (password scrubbed) and return the exit to raise."""
    if state is not None and state._settings is not None:
        message = state._settings.redact(message)
    elif state is not None and state.dsn:
        message = message.replace(state.dsn, "***")  # never echo a DSN that failed to load
    err_console.print(f"[bold red]error:[/bold red] {escape(message)}", soft_wrap=True)
    return typer.Exit(1)


def _clean_errors(func: F) -> F:
    """Turn library errors into one line and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = kwargs.get("ctx")
        state = _state(ctx) if isinstance(ctx, typer.Context) else None
        try:
            return func(*args, **kwargs)
        except RegimeIOError as err:
            raise _fail(str(err), state) from None
        except ImportError as err:
            raise _fail(str(err), state) from None
        except OSError as err:  # a file that cannot be read or written
            raise _fail(str(err), state) from None
        except Exception as err:
            # Arrow's readers report files they cannot parse (not Parquet, a CSV value
            # that does not convert): a file problem, not a bug to show a traceback for.
            if type(err).__module__.startswith("pyarrow"):
                raise _fail(f"cannot read the file: {' '.join(str(err).split())}", state) from None
            raise
        except KeyboardInterrupt:
            raise _fail("interrupted", state) from None

    return wrapper  # type: ignore[return-value]


def _text(value: Any, decimals: int | None = None) -> str:
    """A value as plain text: thousands separators, fixed decimals per column, ISO times."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:,.{decimals if decimals is not None else 4}f}"
    if isinstance(value, dt.datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, dict):
        return " ".join(f"{k}={_text(v)}" for k, v in value.items() if v is not None)
    return str(value)


def _decimals(values: Sequence[Any]) -> int:
    """Decimals that show every float of a column exactly (at most 4)."""
    needed = 0
    for value in values:
        if isinstance(value, float) and math.isfinite(value):
            for places in range(needed, 5):
                if abs(round(value, places) - value) < 1e-9:
                    break
            needed = max(needed, places)
    return needed


def _print_frame(frame: pl.DataFrame, *, title: str | None = None, columns: Sequence[str] | None = None,
                 max_rows: int = 40, percent: Sequence[str] = ()) -> None:
    """Print a frame as a rich table (numbers right-aligned, shares as percentages)."""
    if columns is not None:
        frame = frame.select([c for c in columns if c in frame.columns])
    if title:
        # Printed above the table, not as its title: a title wraps at the table's width.
        console.print(f"[bold]{escape(title)}[/bold]")
    table = Table(show_edge=False, header_style="bold")
    shown = frame.head(max_rows)
    places = {name: _decimals(shown[name].to_list()) for name, dtype in frame.schema.items() if dtype.is_float()}
    rows: list[list[str]] = []
    for row in shown.iter_rows():
        cells = []
        for name, value in zip(frame.columns, row, strict=True):
            if name in percent and isinstance(value, float):
                cells.append(f"{100 * value:.1f}%")
            elif value is None:
                cells.append("-")
            else:
                cells.append(_text(value, places.get(name)))
        rows.append(cells)
    for i, (name, dtype) in enumerate(frame.schema.items()):
        numeric = dtype.is_numeric()
        nested = dtype.is_nested() or name == "parameters"
        # Values keep their full width (a cut timestamp or price is useless); long
        # headers give way first.
        widest = max((len(r[i]) for r in rows), default=0)
        table.add_column(name, justify="right" if numeric else "left", no_wrap=not nested,
                         overflow="fold" if nested else "ellipsis",
                         min_width=None if nested else max(min(len(name), 8), min(widest, 24)))
    for cells in rows:
        table.add_row(*(escape(c) if c != "-" else "[dim]-[/dim]" for c in cells))
    console.print(table)
    if frame.height > max_rows:
        console.print(f"[dim]... {frame.height - max_rows:,} more rows[/dim]")
    if frame.height == 0:
        console.print("[dim](no rows)[/dim]")


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                    TaskProgressColumn(), TimeElapsedColumn(), console=console, transient=False)


def _rows_callback(progress: Progress, task: Any, total: int | None = None) -> Callable[[int, int | None], None]:
    def update(done: int, of: int | None) -> None:
        progress.update(task, completed=done, total=total if total is not None else of)

    return update


# ---------------------------------------------------------------------------------------
# demo


@app.command()
@_clean_errors
def demo(
    ctx: typer.Context,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the PNG chart.",
                                         dir_okay=False)] = Path(DEMO_CHART),
    days: Annotated[int, typer.Option(help="Weekday sessions of 1-minute history to generate.",
                                      min=1, max=260)] = DEMO_DAYS,
) -> None:
    """Load a month of realistic generated history, then show latest regimes, a distribution and a chart.

    Runs on the embedded server when nothing is configured, in its own schema
    (regime_io_demo, or --schema), so it never touches your data. Re-running it is safe:
    rows are upserted, nothing is duplicated.
    """
    from . import synthetic

    started = time.perf_counter()
    state = _state(ctx)
    pg = state.integration(default_schema=DEMO_SCHEMA)
    settings = pg.settings
    with pg:
        if settings.embedded:
            with console.status("starting the embedded PostgreSQL server (the first run initialises it)..."):
                resolved = pg.db.resolved
            console.print(f"[green]✓[/green] embedded PostgreSQL server on {resolved.host} port {resolved.port}")
        else:
            console.print(f"[green]✓[/green] server {settings.describe()}")
        version = pg.initialize_database()
        console.print(f"[green]✓[/green] schema {settings.schema!r} ready (schema version {version})")

        symbols = list(DEMO_SYMBOLS)
        with console.status("generating a month of 1-minute history..."):
            bars_frame = synthetic.market_bars(symbols, days=days)
            data: dict[str, Any] = {
                "market_data": bars_frame,
                "market_regimes_1min": synthetic.minute_regimes(symbols, days=days),
                "market_regimes": synthetic.regimes(symbols, days=days),
                "options_data": synthetic.options_chain(symbols[0], days=days),
                "optimization_results": synthetic.optimization_results(symbols),
            }
        total_rows = sum(len(frame) for frame in data.values())
        with _progress() as progress:
            for table, frame in data.items():
                task = progress.add_task(table, total=len(frame))
                pg.save(table, frame, progress=_rows_callback(progress, task))
                progress.update(task, completed=len(frame))
        console.print(f"[green]✓[/green] {total_rows:,} rows stored: {len(symbols)} symbols x {days} sessions of "
                      "1-minute bars and regimes, 15-minute regimes, an option chain with greeks, "
                      "optimisation results")

        latest = pg.get_latest_1min_market_regime(symbols=symbols)
        _print_frame(latest, title="latest 1-minute regimes",
                     columns=["symbol", "timestamp", "regime", "confidence", "greek_sentiment"])
        session_days = sorted({t.date() for t in bars_frame["timestamp"].to_list()})
        start, end = session_days[0].isoformat(), session_days[-1].isoformat()
        distribution = pg.get_market_regime_distribution(symbols[0], start, end)
        _print_frame(distribution, title=f"{symbols[0]} regime distribution {start} to {end}",
                     columns=["regime", "count", "share", "time_share"], percent=("share", "time_share"))
        best = pg.get_optimization_results(symbols[0], top=3)
        _print_frame(best, title=f"{symbols[0]} best optimisation runs",
                     columns=["algorithm", "fitness_value", "parameters", "timeframe"])

        chart_days = session_days[-5:]
        bars = pg.get_market_data(symbols[0], chart_days[0], chart_days[-1], timeframe="1m")
        regimes = pg.get_1min_market_regimes(symbols[0], chart_days[0], chart_days[-1])
        try:
            from .plots import plot_price_with_regimes

            plot_price_with_regimes(bars, regimes, path=output,
                                    title=f"{symbols[0]} close, coloured by 1-minute regime "
                                          f"({chart_days[0]:%d %b} to {chart_days[-1]:%d %b %Y})")
        except ImportError as err:
            console.print(f"[yellow]chart skipped:[/yellow] {escape(str(err))}")
        else:
            console.print(f"[green]✓[/green] chart written to [bold]{escape(str(output.resolve()))}[/bold]")
    console.print(f"done in {time.perf_counter() - started:.1f}s. Data is in schema {settings.schema!r} of "
                  f"{'the embedded server' if settings.embedded else settings.describe()}; "
                  f"try: regime-io --schema {settings.schema} latest")


# ---------------------------------------------------------------------------------------
# init, ingest, export


@app.command()
@_clean_errors
def init(ctx: typer.Context) -> None:
    """Create the schema, the five tables and their indexes if missing (idempotent)."""
    pg = _state(ctx).integration()
    with pg:
        version = pg.initialize_database()
    console.print(f"[green]✓[/green] tables ready in schema {pg.settings.schema!r} "
                  f"(schema version {version}) on {_where(pg.settings)}")


def _where(settings: Settings) -> str:
    return "the embedded server" if settings.embedded else f"{settings.host}:{settings.port}"


def _file_format(path: Path, formats: dict[str, str], option: str | None) -> str:
    if option is not None:
        if option not in set(formats.values()):
            raise RegimeIOError(f"format {option!r} is not supported; allowed: "
                                f"{', '.join(sorted(set(formats.values())))}")
        return option
    fmt = formats.get(path.suffix.lower())
    if fmt is None:
        raise RegimeIOError(f"cannot tell the format of {str(path)!r} from its suffix; use one of "
                            f"{', '.join(sorted(formats))} or pass --format")
    return fmt


def _csv_types(table: str) -> dict[str, pa.DataType]:
    """Column types for CSV parsing, from the table declaration (prices as float64: the
    writer rounds them to the column's scale with its own rules)."""
    import pyarrow as pa

    from .tables import table_spec

    types: dict[str, pa.DataType] = {}
    for column in table_spec(table).columns:
        if column.kind == "decimal":
            types[column.name] = pa.float64()
        elif column.kind in ("timestamp", "date", "bigint", "text", "json"):
            types[column.name] = column.arrow_type
    return types


def _read_batches(path: Path, fmt: str, table: str, chunk_rows: int) -> tuple[Iterator[pa.RecordBatch], int | None]:
    """Record batches of ``path`` (streamed, bounded memory) and the row count if known."""
    import pyarrow as pa

    if fmt == "parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        return parquet.iter_batches(batch_size=chunk_rows), parquet.metadata.num_rows
    if fmt == "csv":
        import pyarrow.csv as pacsv

        reader = pacsv.open_csv(
            path, read_options=pacsv.ReadOptions(block_size=16 << 20),
            convert_options=pacsv.ConvertOptions(column_types=_csv_types(table), strings_can_be_null=True))
        return iter(reader), None
    source = pa.memory_map(str(path))
    try:
        file_reader = pa.ipc.open_file(source)
    except pa.ArrowInvalid:
        stream = pa.ipc.open_stream(pa.memory_map(str(path)))
        return iter(stream), None
    batches = (file_reader.get_batch(i) for i in range(file_reader.num_record_batches))
    return batches, None


@app.command()
@_clean_errors
def ingest(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Parquet, CSV or Arrow IPC file.", exists=True, dir_okay=False)],
    table: Annotated[str, typer.Option("--table", "-t", help="Target table: market_data, options_data, "
                                       "market_regimes, market_regimes_1min, optimization_results.")],
    on_conflict: Annotated[str, typer.Option(help="Rows whose key exists: update, ignore or error.")] = "update",
    file_format: Annotated[str | None, typer.Option("--format", help="parquet, csv or ipc (default: from "
                                                    "the suffix).", show_default=False)] = None,
    chunk_rows: Annotated[int, typer.Option(help="Rows per chunk read and sent.", min=1)] = 250_000,
) -> None:
    """Load a file into a table in ONE transaction, streamed in chunks with a progress bar.

    Every chunk is validated before it is sent; a bad row anywhere rolls the whole file back
    and names the row. Re-running the same file changes nothing (rows are upserted).
    """
    from .tables import table_spec

    fmt = _file_format(file, INGEST_FORMATS, file_format)
    key = table_spec(table).key
    if on_conflict not in ("update", "ignore", "error"):
        raise RegimeIOError(f"--on-conflict must be update, ignore or error, got {on_conflict!r}")
    pg = _state(ctx).integration()
    with pg:
        batches, total = _read_batches(file, fmt, key, chunk_rows)
        with _progress() as progress:
            task = progress.add_task(f"{key}", total=total)
            result = pg.save(key, batches, on_conflict=on_conflict,  # type: ignore[arg-type]
                             chunk_rows=chunk_rows, progress=_rows_callback(progress, task, total))
            progress.update(task, completed=result.rows, total=result.rows)
    console.print(f"[green]✓[/green] {escape(str(file))} -> {key}: {result.rows:,} rows, "
                  f"{result.inserted:,} inserted, {result.updated:,} updated, {result.unchanged:,} unchanged "
                  f"in {result.seconds:.2f}s")


def _write_table(data: pa.Table | Iterator[pa.RecordBatch], schema: pa.Schema | None, path: Path,
                 fmt: str) -> int:
    """Write a table or a stream of batches to ``path``; returns the rows written."""
    import pyarrow as pa

    if isinstance(data, pa.Table):
        batches: Iterator[pa.RecordBatch] = iter(data.to_batches())
        schema = data.schema
    else:
        batches = data
    first = next(batches, None)
    if schema is None:
        schema = first.schema if first is not None else pa.schema([])
    rows = 0
    tmp = path.with_name(path.name + ".part")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        writer: Any = pq.ParquetWriter(tmp, schema, compression="zstd")
    elif fmt == "csv":
        import pyarrow.csv as pacsv

        writer = pacsv.CSVWriter(tmp, schema)
    else:
        writer = pa.ipc.new_file(tmp, schema)
    try:
        for batch in ([first] if first is not None else []):
            writer.write_batch(batch)
            rows += batch.num_rows
        for batch in batches:
            writer.write_batch(batch)
            rows += batch.num_rows
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    writer.close()
    # The file appears whole or not at all.
    os.replace(tmp, path)
    return rows


@app.command()
@_clean_errors
def export(
    ctx: typer.Context,
    table: Annotated[str, typer.Option("--table", "-t", help="Table to read.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="out.parquet, out.csv or out.arrow.",
                                         dir_okay=False)],
    symbol: Annotated[str | None, typer.Option("--symbol", "-s", help="Symbol to export (all symbols: "
                                               "optimization_results only).", show_default=False)] = None,
    start: Annotated[str | None, typer.Option(help="First timestamp or date (inclusive).",
                                              show_default=False)] = None,
    end: Annotated[str | None, typer.Option(help="Last timestamp or date (inclusive; a date means the "
                                            "whole day).", show_default=False)] = None,
    timeframe: Annotated[str | None, typer.Option(help="Only this timeframe (market_data, market_regimes).",
                                                  show_default=False)] = None,
    file_format: Annotated[str | None, typer.Option("--format", help="parquet, csv or ipc (default: from "
                                                    "the suffix).", show_default=False)] = None,
) -> None:
    """Write a symbol's rows in \\[start, end] to a Parquet, CSV or Arrow file (streamed for bars and options)."""
    from . import _reading as reading
    from .tables import table_spec

    fmt = _file_format(output, EXPORT_FORMATS, file_format)
    key = table_spec(table).key
    if key != "optimization_results":
        missing = [name for name, value in (("--symbol", symbol), ("--start", start), ("--end", end))
                   if value is None]
        if missing:
            raise RegimeIOError(f"export of {key} needs {', '.join(missing)}")
    pg = _state(ctx).integration()
    with pg:
        db = pg.db
        data: Any
        schema = None
        if key == "market_data":
            data = reading.iter_market_data(db, symbol, start, end, timeframe=timeframe)  # type: ignore[arg-type]
            schema = reading.output_schema(key)
        elif key == "options_data":
            data = reading.iter_options_data(db, symbol, start, end)  # type: ignore[arg-type]
            schema = reading.output_schema(key)
        elif key == "market_regimes":
            data = pg.get_market_regimes(symbol, start, end, timeframe=timeframe,  # type: ignore[arg-type]
                                         return_type="arrow")
        elif key == "market_regimes_1min":
            data = pg.get_1min_market_regimes(symbol, start, end, return_type="arrow")  # type: ignore[arg-type]
        else:
            data = reading.get_optimization_results(db, symbol, timeframe=timeframe, return_type="arrow",
                                                    parameters="json")
        with console.status(f"exporting {key}..."):
            rows = _write_table(data, schema, output, fmt)
    console.print(f"[green]✓[/green] {rows:,} rows of {key} written to {escape(str(output))}")


# ---------------------------------------------------------------------------------------
# Reading: latest, distribution, transitions


_LATEST_TABLES = {"1min": "market_regimes_1min", "regimes": "market_regimes", "bars": "market_data"}


@app.command()
@_clean_errors
def latest(
    ctx: typer.Context,
    symbols: Annotated[list[str] | None, typer.Argument(help="Symbols (default: every symbol present).",
                                                        show_default=False)] = None,
    table: Annotated[str, typer.Option("--table", "-t", help="1min (market_regimes_1min), regimes "
                                       "(market_regimes) or bars (market_data), or a table name.")] = "1min",
    timeframe: Annotated[str | None, typer.Option(help="Only this timeframe (regimes, bars).",
                                                  show_default=False)] = None,
) -> None:
    """The latest row of each symbol: 1-minute regimes by default."""
    from .tables import table_spec

    key = table_spec(_LATEST_TABLES.get(table, table)).key
    with _state(ctx).integration() as pg:
        frame = pg.get_latest(key, symbols=symbols or None, timeframe=timeframe)
    _print_frame(frame, title=f"latest {key}", columns=_LATEST_COLUMNS.get(key))


_LATEST_COLUMNS = {
    "market_regimes_1min": ["symbol", "timestamp", "regime", "confidence", "greek_sentiment", "trending_oi_pa"],
    "market_regimes": ["symbol", "timeframe", "timestamp", "regime", "confidence"],
    "market_data": ["symbol", "timeframe", "timestamp", "open", "high", "low", "close", "volume"],
}


@app.command()
@_clean_errors
def distribution(
    ctx: typer.Context,
    symbol: Annotated[str, typer.Argument(help="Symbol.")],
    start: Annotated[str, typer.Option(help="First timestamp or date (inclusive).")],
    end: Annotated[str, typer.Option(help="Last timestamp or date (inclusive).")],
    table: Annotated[str, typer.Option("--table", "-t", help="1min or regimes.")] = "1min",
    timeframe: Annotated[str | None, typer.Option(help="Regime timeframe (with --table regimes).",
                                                  show_default=False)] = None,
    plot: Annotated[Path | None, typer.Option(help="Also write a bar chart PNG here.", dir_okay=False,
                                              show_default=False)] = None,
) -> None:
    """How often and how long each regime held for SYMBOL in \\[start, end], computed in SQL."""
    with _state(ctx).integration() as pg:
        frame = pg.get_market_regime_distribution(symbol, start, end, table=table,  # type: ignore[arg-type]
                                                  timeframe=timeframe)
    _print_frame(frame, title=f"{symbol} regime distribution {start} to {end}",
                 columns=["regime", "count", "share", "time_share"], percent=("share", "time_share"))
    if plot is not None:
        from .plots import plot_regime_distribution

        plot_regime_distribution(frame, path=plot, title=f"{symbol} regimes {start} to {end}")
        console.print(f"[green]✓[/green] chart written to {escape(str(plot))}")


@app.command()
@_clean_errors
def transitions(
    ctx: typer.Context,
    symbol: Annotated[str, typer.Argument(help="Symbol.")],
    start: Annotated[str, typer.Option(help="First timestamp or date (inclusive).")],
    end: Annotated[str, typer.Option(help="Last timestamp or date (inclusive).")],
    table: Annotated[str, typer.Option("--table", "-t", help="1min or regimes.")] = "1min",
    timeframe: Annotated[str | None, typer.Option(help="Regime timeframe (with --table regimes).",
                                                  show_default=False)] = None,
    plot: Annotated[Path | None, typer.Option(help="Also write a heatmap PNG here.", dir_okay=False,
                                              show_default=False)] = None,
) -> None:
    """Regime transition probabilities and mean run lengths for SYMBOL in \\[start, end]."""
    with _state(ctx).integration() as pg:
        frame = pg.get_regime_transitions(symbol, start, end, table=table,  # type: ignore[arg-type]
                                          timeframe=timeframe)
    _print_frame(frame, title=f"{symbol} regime transitions {start} to {end}", percent=("probability",),
                 max_rows=100)
    if plot is not None:
        from .plots import plot_transition_matrix

        plot_transition_matrix(frame, path=plot, title=f"{symbol} regime transitions {start} to {end}")
        console.print(f"[green]✓[/green] chart written to {escape(str(plot))}")


# ---------------------------------------------------------------------------------------
# Maintenance


@app.command()
@_clean_errors
def cleanup(
    ctx: typer.Context,
    days: Annotated[int, typer.Option("--days", "-d", help="Keep this many days of data.", min=1)],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be removed; change nothing.")]
    = False,
    tables: Annotated[list[str] | None, typer.Option("--table", "-t", help="Only these tables (repeatable).",
                                                     show_default=False)] = None,
) -> None:
    """Remove rows older than --days: whole partitions are dropped, only the boundary one is deleted from."""
    with _state(ctx).integration() as pg:
        report = pg.cleanup_old_data(days, tables=tables or None, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    _print_frame(report.to_frame(), title=f"cleanup{' (dry run)' if dry_run else ''}: keep {days} days",
                 columns=["table", "column", "cutoff", "partitions_dropped", "rows_removed"])
    console.print(f"{'[yellow]dry run:[/yellow] ' if dry_run else '[green]✓[/green] '}{verb} "
                  f"{report.rows_removed:,} rows ({report.partitions_dropped} partitions dropped whole)")


@app.command()
@_clean_errors
def partitions(
    ctx: typer.Context,
    table: Annotated[str | None, typer.Argument(help="One table (default: every partitioned table).",
                                                show_default=False)] = None,
) -> None:
    """List the time partitions of the tables with their ranges and sizes."""
    with _state(ctx).integration() as pg:
        frame = pg.list_partitions(table)
    _print_frame(frame, title="partitions", max_rows=200)


# ---------------------------------------------------------------------------------------
# doctor


@app.command()
@_clean_errors
def doctor(
    ctx: typer.Context,
    estimate: Annotated[bool, typer.Option("--estimate", help="Planner row estimates instead of exact "
                                           "counts (instant on huge tables).")] = False,
) -> None:
    """Check the configuration, the server, the tables and their row counts (exit code 1 on failure)."""
    from . import _diagnostics as diagnostics

    state = _state(ctx)
    try:
        settings = state.settings()
    except ConfigError as err:
        console.print(f"[red]✗[/red] configuration: {escape(str(err))}")
        raise typer.Exit(1) from None
    pool_log = logging.getLogger("regime_io._pool")
    quiet = pool_log.getEffectiveLevel() >= logging.WARNING
    if quiet:
        # The failed attempt is the server check's own result: do not print it twice.
        pool_log.setLevel(logging.ERROR)
    try:
        report = diagnostics.diagnose(settings, count_rows=not estimate)
    finally:
        if quiet:
            pool_log.setLevel(logging.NOTSET)
    marks = {"ok": "[green]✓[/green]", "warn": "[yellow]![/yellow]", "fail": "[red]✗[/red]"}
    for check in report.checks:
        console.print(f"{marks[check.status]} {check.name}: {escape(settings.redact(check.detail))}")
    if report.tables is not None:
        _print_frame(report.tables, title="tables", max_rows=20)
    if not report.ok:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------
# db: the embedded server


@db_app.command("start")
@_clean_errors
def db_start(ctx: typer.Context) -> None:
    """Start the embedded server (or find it running) and print where it listens."""
    from . import _embedded as embedded

    settings = _state(ctx).settings()
    with console.status("starting the embedded PostgreSQL server..."):
        server = embedded.start(settings.embedded_dir)
    console.print(f"[green]✓[/green] embedded server running: pid {server.pid}, socket {server.socket_dir}, "
                  f"port {server.port}, data {server.pgdata}")
    if not settings.embedded:
        console.print(f"[yellow]note:[/yellow] your configuration points at {settings.describe()}, "
                      "so commands will not use the embedded server")


@db_app.command("stop")
@_clean_errors
def db_stop(
    ctx: typer.Context,
    mode: Annotated[str, typer.Option(help="smart (wait for clients), fast or immediate.")] = "fast",
) -> None:
    """Stop the embedded server."""
    from . import _embedded as embedded

    if mode not in ("smart", "fast", "immediate"):
        raise RegimeIOError(f"--mode must be smart, fast or immediate, got {mode!r}")
    settings = _state(ctx).settings()
    if embedded.stop(settings.embedded_dir, mode=mode):  # type: ignore[arg-type]
        console.print("[green]✓[/green] embedded server stopped")
    else:
        console.print(f"embedded server in {embedded.data_dir(settings.embedded_dir)} was not running")


@db_app.command("status")
@_clean_errors
def db_status(ctx: typer.Context) -> None:
    """Say whether the embedded server runs (exit code 1 when it does not)."""
    from . import _embedded as embedded

    settings = _state(ctx).settings()
    server = embedded.status(settings.embedded_dir)
    if server is None:
        where = embedded.data_dir(settings.embedded_dir)
        console.print(f"embedded server: [yellow]not running[/yellow] (data {where})")
        raise typer.Exit(1)
    console.print(f"embedded server: [green]running[/green], pid {server.pid}, socket {server.socket_dir}, "
                  f"port {server.port}, data {server.pgdata}")


@db_app.command("url")
@_clean_errors
def db_url(
    ctx: typer.Context,
    show_password: Annotated[bool, typer.Option("--show-password", help="Print the password instead of ***.")]
    = False,
) -> None:
    """Print the postgresql:// URL of the server the commands use (psql, connectorx, ADBC)."""
    from . import _embedded as embedded

    settings = _state(ctx).settings()
    if settings.embedded:
        server = embedded.status(settings.embedded_dir)
        if server is None:
            raise RegimeIOError("the embedded server is not running; start it with: regime-io db start")
        settings = settings_replace(settings, host=server.socket_dir, port=server.port, user=server.user,
                                    database=server.database)
    # Plain print: a URL must not be wrapped or styled.
    typer.echo(settings.url(redact=not show_password, with_timeout=False))


def main() -> None:
    """Entry point of the ``regime-io`` console script and ``python -m regime_io``."""
    app(prog_name="regime-io")
