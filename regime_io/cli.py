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

import functools
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast, get_args

import typer
from rich.console import Console
from rich.logging import RichHandler
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

from . import __version__, server
from . import server as embedded
from ._conn.embedded import StopMode
from ._render import confirm, plural, print_cleanup, print_frame, print_seal, show_tail
from .config import Settings, load_settings, settings_replace, with_dsn
from .demo import DEMO_CHART, DEMO_DAYS, MAX_DAYS, demo_schema, run_demo
from .errors import ConfigError, RegimeIOError, UsageError, option_name
from .files import Format, export_dataset, export_table, read_file, write_file
from .integration import PostgreSQLIntegration
from .plots import plot_coverage, plot_regime_distribution, plot_transition_matrix
from .tables import TABLE_ALIASES, TABLES, regime_spec, table_spec
from .types import BarLabel, ExtraColumns, OnConflict, OnDuplicate, RegimeTable

if TYPE_CHECKING:
    import polars as pl

    from .integration import PostgreSQLIntegration

__all__ = ["app", "main"]

log = logging.getLogger(__name__)

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

# Every table name and alias the library accepts (table_spec), for help texts.
TABLE_NAMES = ", ".join([*TABLES, *(f"{alias} ({key})" for alias, key in TABLE_ALIASES.items())])


def _choices(literal: Any) -> str:
    """``a, b or c`` from a Literal alias of the library."""
    values = [str(v) for v in get_args(literal)]
    return ", ".join(values[:-1]) + f" or {values[-1]}" if len(values) > 1 else values[0]


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

    def integration(self, *, default_schema: str | None = None) -> PostgreSQLIntegration[pl.DataFrame]:

        return PostgreSQLIntegration(settings=self.settings(default_schema=default_schema))


def _check_schema(schema: str) -> str:
    name = schema.strip().lower()
    try:
        load_settings(config={"database": {"schema": name}}, env={})  # the configuration's own check
    except ConfigError as err:
        raise ConfigError(err.problems, source="--schema") from None
    return name


def _load_settings(config: Path | None, dsn: str | None) -> Settings:
    settings = load_settings(config)
    return settings if dsn is None else with_dsn(settings, dsn, source="--dsn")


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


class _CliLogHandler(RichHandler):
    """The CLI's handler: a class of its own, so a second invocation in one process
    (tests, notebooks) replaces it instead of adding another."""


def _setup_output(verbose: int) -> None:
    """Library log records (retries, warnings; more with -v) go to stderr through rich.
    Output that is not a terminal (a pipe, a file, a test) gets wide lines instead of
    80 columns, so tables are not squeezed."""
    for c in (console, err_console):
        if not c.is_terminal and "COLUMNS" not in os.environ:
            c.width = 160
    package = logging.getLogger("regime_io")
    package.handlers = [h for h in package.handlers if not isinstance(h, _CliLogHandler)]
    package.addHandler(_CliLogHandler(console=err_console, show_path=False, show_time=verbose > 0, markup=False,
                                      rich_tracebacks=False))
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


def _option_names(params: tuple[str, ...]) -> str:
    return ", ".join(option_name(p) for p in params)


def _clean_errors(func: F) -> F:
    """Turn library errors into one line and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = kwargs.get("ctx")
        state = _state(ctx) if isinstance(ctx, typer.Context) else None
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning  # restored when the command ends
                return func(*args, **kwargs)
        except RegimeIOError as err:
            # The message worded for the command line (its remedies as options, not
            # keyword arguments); the arguments it names (err.params) as this command's options.
            options = _option_names(err.params)
            raise _fail(f"{err.cli_message} (options: {options})" if options else err.cli_message, state) from None
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

    return cast(F, wrapper)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """A warning as one yellow line on stderr (``DataQualityWarning``, ``UnknownSymbolWarning``),
    without Python's file path and source line."""
    err_console.print(f"[yellow]warning:[/yellow] {escape(str(message))}", soft_wrap=True)


def _chart(frame: pl.DataFrame, path: Path, draw: Callable[[], Any], *, empty: str, what: str = "chart") -> None:
    """Draw a chart of ``frame`` into ``path``, or say why not: an empty result draws nothing."""
    if frame.height == 0:
        console.print(f"[yellow]no chart:[/yellow] {empty}, nothing written to {escape(str(path))}")
        return
    draw()
    console.print(f"[green]✓[/green] {what} written to {escape(str(path))}")


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
    days: Annotated[int, typer.Option(help="NSE sessions of 1-minute history to generate, from 1 January 2024.",
                                      min=1, max=MAX_DAYS)] = DEMO_DAYS,
) -> None:
    """Load a month of realistic generated history, then show latest regimes, a distribution and a chart.

    With nothing configured it runs on the embedded server, in the configured schema, so
    every other command finds its rows. On a server you configured it writes to its own
    schema (regime_io_demo, or --schema) and never touches your tables. Re-running it is
    safe: rows are upserted, nothing is duplicated.
    """

    state = _state(ctx)
    pg = state.integration(default_schema=demo_schema(state.settings()))
    settings = pg.settings
    with pg:
        if settings.embedded:
            with console.status("starting the embedded PostgreSQL server (the first run initialises it)..."):
                resolved = pg.db.resolved
            console.print(f"[green]✓[/green] embedded PostgreSQL server on {resolved.host} port {resolved.port}")
        else:
            console.print(f"[green]✓[/green] server {settings.describe()}")
        with _progress() as progress:
            tasks: dict[str, Any] = {}

            def show(table: str, done: int, total: int | None) -> None:
                if table not in tasks:
                    tasks[table] = progress.add_task(table, total=total)
                progress.update(tasks[table], completed=done, total=total)

            result = run_demo(pg, days=days, chart=output, progress=show)
    console.print(f"[green]✓[/green] schema {result.schema!r} ready (schema version {result.schema_version})")
    console.print(f"[green]✓[/green] {plural(result.total_rows, 'row')} stored: {len(result.symbols)} symbols x "
                  f"{plural(result.days, 'NSE session')} ({result.first_day:%d %b} to {result.last_day:%d %b %Y}) "
                  "of 1-minute bars and regimes, 15-minute regimes, an option chain with greeks, "
                  "optimisation results")
    note = result.seal_note()
    if note is not None:
        console.print(f"[green]✓[/green] {escape(note)}")
    print_frame(console, result.latest, title="latest 1-minute regimes",
                 columns=["symbol", "timestamp", "regime", "confidence", "greek_sentiment"])
    print_frame(console, result.distribution,
                 title=f"{result.symbols[0]} regime distribution {result.first_day} to {result.last_day}",
                 columns=["regime", "count", "share", "time_share"], percent=("share", "time_share"))
    print_frame(console, result.best_runs, title=f"{result.symbols[0]} best optimisation runs",
                 columns=["algorithm", "fitness_value", "parameters", "timeframe"])
    if result.chart is not None:
        console.print(f"[green]✓[/green] chart written to [bold]{escape(str(result.chart.resolve()))}[/bold]")
    elif result.chart_skipped:
        console.print(f"[yellow]chart skipped:[/yellow] {escape(result.chart_skipped)}")
    # The schema to pass for reading it back: none when it is the configured one.
    schema_option = "" if settings.embedded and not state.schema else f"--schema {result.schema} "
    console.print(f"done in {result.seconds:.1f}s. Data is in schema {result.schema!r} of "
                  f"{'the embedded server' if settings.embedded else settings.describe()}; "
                  f"try: regime-io {schema_option}latest")


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


@app.command()
@_clean_errors
def ingest(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Parquet, CSV or Arrow IPC file.", exists=True, dir_okay=False)],
    table: Annotated[str, typer.Option("--table", "-t", help=f"Target table: {TABLE_NAMES}.")],
    on_conflict: Annotated[OnConflict, typer.Option(
        help=f"Rows whose key is already stored: {_choices(OnConflict)}.")] = "update",
    on_duplicate: Annotated[OnDuplicate, typer.Option(
        help=f"Rows of the file sharing a key: {_choices(OnDuplicate)} (the last one wins).")] = "error",
    extra_columns: Annotated[ExtraColumns, typer.Option(
        help=f"Columns the table does not have (a pandas index column): {_choices(ExtraColumns)}.")] = "error",
    file_format: Annotated[Format | None, typer.Option(
        "--format", help=f"{_choices(Format)} (default: from the suffix).", show_default=False)] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Refuse rows that fail the sanity checks (low > high, "
                                         "...) instead of warning.")] = False,
    date_format: Annotated[str | None, typer.Option(
        help="Layout of timestamps that are not ISO 8601, e.g. '%d/%m/%Y %H:%M' (strftime codes).",
        show_default=False)] = None,
    chunk_rows: Annotated[int, typer.Option(help="Rows per chunk read and sent.", min=1)] = 250_000,
    rename: Annotated[str | None, typer.Option(
        help="File columns to table columns, e.g. 'o=open,h=high,l=low,c=close,v=volume'.",
        show_default=False)] = None,
    symbol: Annotated[str | None, typer.Option("--symbol", "-s", help="The symbol of every row (a file of one "
                                               "symbol without a symbol column).", show_default=False)] = None,
    timeframe: Annotated[str | None, typer.Option(help="The timeframe of every row (a file without a timeframe "
                                                  "column), e.g. 1m.", show_default=False)] = None,
) -> None:
    """Load a file into a table in ONE transaction, streamed in chunks with a progress bar.

    Every chunk is validated before it is sent; a bad row anywhere rolls the whole file back
    and names the row. Re-running the same file changes nothing (rows are upserted).
    """

    key = table_spec(table).key
    batches = read_file(file, key, format=file_format, batch_rows=chunk_rows, date_format=date_format,
                        rename=rename, symbol=symbol, timeframe=timeframe)
    with _state(ctx).integration() as pg, _progress() as progress:
        task = progress.add_task(f"{key}", total=batches.rows)
        result = pg.save(key, batches, on_conflict=on_conflict, on_duplicate=on_duplicate,
                         extra_columns=extra_columns, strict=strict, date_format=date_format,
                         chunk_rows=chunk_rows,
                         progress=_rows_callback(progress, task, batches.rows))
        progress.update(task, completed=result.rows, total=result.rows)
    console.print(f"[green]✓[/green] {escape(str(file))} -> {key}: {plural(result.rows, 'row')}, "
                  f"{result.inserted:,} inserted, {result.updated:,} updated, {result.unchanged:,} unchanged "
                  f"in {result.seconds:.2f}s")


@app.command()
@_clean_errors
def export(
    ctx: typer.Context,
    table: Annotated[str, typer.Option("--table", "-t", help=f"Table to read: {TABLE_NAMES}.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="out.parquet, out.csv or out.arrow (a new "
                                         "directory with --partition-by).", dir_okay=False)],
    symbol: Annotated[str | None, typer.Option("--symbol", "-s", help="Symbol to export (all symbols: "
                                               "optimization_results only).", show_default=False)] = None,
    start: Annotated[str | None, typer.Option(help="First timestamp or date (inclusive).",
                                              show_default=False)] = None,
    end: Annotated[str | None, typer.Option(help="Last timestamp or date (inclusive; a date means the "
                                            "whole day).", show_default=False)] = None,
    timeframe: Annotated[str | None, typer.Option(help="Only this timeframe (market_data, market_regimes).",
                                                  show_default=False)] = None,
    file_format: Annotated[Format | None, typer.Option(
        "--format", help=f"{_choices(Format)} (default: from the suffix).", show_default=False)] = None,
    allow_empty: Annotated[bool, typer.Option("--allow-empty", help="Write an empty file when no row matches "
                                              "(default: an error, no file).")] = False,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Read the rows as they were known at this instant "
                                              "(ISO time; tables that keep history, docs/history.md).",
                                              show_default=False)] = None,
    partition_by: Annotated[str | None, typer.Option("--partition-by", help="Write a hive-partitioned Parquet "
                                                     "dataset of both tiers by these keys (symbol,timeframe,month); "
                                                     "--symbol, --start, --end optional.", show_default=False)] = None,
) -> None:
    """Write a symbol's rows in \\[start, end] to a Parquet, CSV or Arrow file (streamed for bars and options).

    No row matching is an error (exit code 1) and no file is written, unless --allow-empty.
    """

    key = table_spec(table).key
    if partition_by is not None:
        with _state(ctx).integration() as pg, console.status(f"exporting {key}..."):
            result = export_dataset(pg, key, output, partition_by=partition_by, symbols=[symbol] if symbol else None,
                                    start=start, end=end, timeframe=timeframe, as_of=as_of, allow_empty=allow_empty)
        console.print(f"[green]✓[/green] {escape(str(result))}")
        return
    with _state(ctx).integration() as pg, console.status(f"exporting {key}..."):
        result = export_table(pg, key, output, symbol=symbol, start=start, end=end, timeframe=timeframe,
                              format=file_format, allow_empty=allow_empty, as_of=as_of)
    console.print(f"[green]✓[/green] {escape(str(result))}")


# ---------------------------------------------------------------------------------------
# Reading: latest, distribution, transitions


def _regime_table(name: str) -> RegimeTable:
    """The readers' ``table=`` value for any name of a regime table (``1min``, ``market_regimes``...)."""

    return "1min" if regime_spec(name).key == "market_regimes_1min" else "regimes"


@app.command()
@_clean_errors
def latest(
    ctx: typer.Context,
    symbols: Annotated[list[str] | None, typer.Argument(help="Symbols (default: every symbol present).",
                                                        show_default=False)] = None,
    table: Annotated[str, typer.Option("--table", "-t", help="1min (market_regimes_1min), regimes "
                                       "(market_regimes) or bars (market_data), or any table name.")] = "1min",
    timeframe: Annotated[str | None, typer.Option(help="Only this timeframe (regimes, bars).",
                                                  show_default=False)] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Read the rows as they were known at this instant "
                                              "(ISO time; tables that keep history, docs/history.md).",
                                              show_default=False)] = None,
) -> None:
    """The latest row of each symbol: 1-minute regimes by default."""
    key = table_spec(table).key
    with _state(ctx).integration() as pg:
        frame = pg.get_latest(key, symbols=symbols or None, timeframe=timeframe, as_of=as_of)
    print_frame(console, frame, title=f"latest {key}", columns=_LATEST_COLUMNS.get(key))


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
    table: Annotated[str, typer.Option("--table", "-t", help="1min (market_regimes_1min) or regimes "
                                       "(market_regimes), or either table name.")] = "1min",
    timeframe: Annotated[str | None, typer.Option(help="Regime timeframe (with --table regimes).",
                                                  show_default=False)] = None,
    plot: Annotated[Path | None, typer.Option(help="Also write a bar chart PNG here.", dir_okay=False,
                                              show_default=False)] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Read the rows as they were known at this instant "
                                              "(ISO time; tables that keep history, docs/history.md).",
                                              show_default=False)] = None,
) -> None:
    """How often and how long each regime held for SYMBOL in \\[start, end], computed in SQL."""
    with _state(ctx).integration() as pg:
        frame = pg.get_market_regime_distribution(symbol, start, end, table=_regime_table(table),
                                                  timeframe=timeframe, as_of=as_of, return_type="polars")
    print_frame(console, frame, title=f"{symbol} regime distribution {start} to {end}",
                 columns=["regime", "count", "share", "time_share"], percent=("share", "time_share"))
    if plot is not None:
        _chart(frame, plot,
               lambda: plot_regime_distribution(frame, path=plot, title=f"{symbol} regimes {start} to {end}"),
               empty=f"no regimes of {escape(symbol)} from {start} to {end}")


@app.command()
@_clean_errors
def transitions(
    ctx: typer.Context,
    symbol: Annotated[str, typer.Argument(help="Symbol.")],
    start: Annotated[str, typer.Option(help="First timestamp or date (inclusive).")],
    end: Annotated[str, typer.Option(help="Last timestamp or date (inclusive).")],
    table: Annotated[str, typer.Option("--table", "-t", help="1min (market_regimes_1min) or regimes "
                                       "(market_regimes), or either table name.")] = "1min",
    timeframe: Annotated[str | None, typer.Option(help="Regime timeframe (with --table regimes).",
                                                  show_default=False)] = None,
    plot: Annotated[Path | None, typer.Option(help="Also write a heatmap PNG here.", dir_okay=False,
                                              show_default=False)] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Read the rows as they were known at this instant "
                                              "(ISO time; tables that keep history, docs/history.md).",
                                              show_default=False)] = None,
) -> None:
    """Regime transition probabilities and mean run lengths for SYMBOL in \\[start, end]."""
    with _state(ctx).integration() as pg:
        frame = pg.get_regime_transitions(symbol, start, end, table=_regime_table(table),
                                          timeframe=timeframe, as_of=as_of, return_type="polars")
    print_frame(console, frame, title=f"{symbol} regime transitions {start} to {end}", percent=("probability",),
                 max_rows=100)
    if plot is not None:
        _chart(frame, plot,
               lambda: plot_transition_matrix(frame, path=plot, title=f"{symbol} regime transitions {start} to {end}"),
               empty=f"no regimes of {escape(symbol)} from {start} to {end}")


# ---------------------------------------------------------------------------------------
# Maintenance


@app.command()
@_clean_errors
def cleanup(
    ctx: typer.Context,
    days: Annotated[int, typer.Option("--days", "-d", help="Keep this many days of data.", min=1)],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be removed; change nothing.")]
    = False,
    tables: Annotated[list[str] | None, typer.Option("--table", "-t", help="Only these tables (repeatable): "
                                                     f"{TABLE_NAMES}.", show_default=False)] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking (scripts, cron). Without it "
                                      "the counts are shown first and you are asked to confirm.")] = False,
) -> None:
    """Remove rows older than --days: whole partitions are dropped, only the boundary one is deleted from.

    Shows what would be removed (a dry run) and asks before deleting, unless --yes.
    """
    with _state(ctx).integration() as pg:
        planned = pg.cleanup_old_data(days, tables=tables or None, dry_run=True)
        print_cleanup(console, planned, days, dry_run=True)
        if dry_run:
            return
        if planned.rows_removed == 0 and planned.partitions_dropped == 0:
            console.print("nothing to remove")
            return
        if not yes and not confirm(console, f"Delete {plural(planned.rows_removed, 'row')} older than "
                                    f"{plural(days, 'day')}?"):
            raise UsageError("not confirmed: nothing deleted (pass --yes to delete without asking)")
        report = pg.cleanup_old_data(days, tables=tables or None, dry_run=False)
    print_cleanup(console, report, days, dry_run=False)


@app.command()
@_clean_errors
def delete(
    ctx: typer.Context,
    table: Annotated[str, typer.Option("--table", "-t", help=f"Table to delete from: {TABLE_NAMES} "
                                       "(not optimization_results).")],
    symbols: Annotated[list[str], typer.Option("--symbol", "-s", help="Symbol whose rows go (repeatable).")],
    start: Annotated[str | None, typer.Option(help="First timestamp or date (inclusive; default: the first row).",
                                              show_default=False)] = None,
    end: Annotated[str | None, typer.Option(help="Last timestamp or date (inclusive; a date means the whole day; "
                                            "default: the last row).", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be deleted; change nothing.")]
    = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking (scripts). Without it the count "
                                      "is shown first and you are asked to confirm.")] = False,
) -> None:
    """Delete the rows of --symbol in \\[start, end] from both tiers (sealed months too), asking first."""
    key = table_spec(table).key
    span = f"[{start or '…'}, {end or '…'}]"
    with _state(ctx).integration() as pg:
        planned = pg.delete_range(key, symbols, start, end, dry_run=True)
        console.print(f"{key}: would delete {plural(planned, 'row')} of {', '.join(symbols)} in {escape(span)}")
        if dry_run:
            return
        if planned == 0:
            console.print("nothing to delete")
            return
        if not yes and not confirm(console, f"Delete {plural(planned, 'row')}?"):
            raise UsageError("not confirmed: nothing deleted (pass --yes to delete without asking)")
        deleted = pg.delete_range(key, symbols, start, end)
    console.print(f"[green]✓[/green] {key}: deleted {plural(deleted, 'row')}")


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
    print_frame(console, frame, title="partitions", max_rows=200)


@app.command()
@_clean_errors
def seal(
    ctx: typer.Context,
    older_than: Annotated[str | None, typer.Option("--older-than", help="Seal whole months older than this: an "
                                                   "age ('90d', '8w') or a date (default: seal_after).",
                                                   show_default=False)] = None,
    tables: Annotated[list[str] | None, typer.Option("--table", "-t", help="Only these tables (repeatable): "
                                                     f"{TABLE_NAMES}.", show_default=False)] = None,
    symbols: Annotated[list[str] | None, typer.Option("--symbol", "-s", help="Only these symbols (repeatable).",
                                                      show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would move; change nothing.")] = False,
) -> None:
    """Move old months into the sealed tier; readers return the same data."""
    with _state(ctx).integration() as pg:
        report = pg.seal(older_than, tables=tables or None, symbols=symbols or None, dry_run=dry_run)
    print_seal(console, report, dry_run=dry_run)


@app.command()
@_clean_errors
def unseal(
    ctx: typer.Context,
    start: Annotated[str, typer.Argument(help="First day (ISO date).")],
    end: Annotated[str, typer.Argument(help="Last day (ISO date, included).")],
    tables: Annotated[list[str] | None, typer.Option("--table", "-t", help="Only these tables (repeatable): "
                                                     f"{TABLE_NAMES}.", show_default=False)] = None,
    symbols: Annotated[list[str] | None, typer.Option("--symbol", "-s", help="Only these symbols (repeatable).",
                                                      show_default=False)] = None,
) -> None:
    """Put sealed months overlapping START..END back into the row tables (for SQL tools)."""
    with _state(ctx).integration() as pg:
        report = pg.unseal(start, end, tables=tables or None, symbols=symbols or None)
    print_seal(console, report, dry_run=False)


@app.command("repair-sealed")
@_clean_errors
def repair_sealed(
    ctx: typer.Context,
    tables: Annotated[list[str] | None, typer.Option("--table", "-t", help="Only these tables (repeatable): "
                                                     f"{TABLE_NAMES}.", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be merged; change nothing.")] = False,
) -> None:
    """Merge rows that other tools wrote into sealed months into their chunks (see doctor)."""
    with _state(ctx).integration() as pg:
        report = pg.repair_sealed(tables=tables or None, dry_run=dry_run)
    print_seal(console, report, dry_run=dry_run)


@app.command()
@_clean_errors
def sql(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="A SELECT over bars, options, regimes, \"1min\", results or the "
                                         "table names; sealed months included.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the result to out.parquet, out.csv "
                                                "or out.arrow instead of printing it.", show_default=False)] = None,
    exact: Annotated[bool, typer.Option("--exact", help="DECIMAL columns as exact decimals.")] = False,
) -> None:
    """Run SQL over both tiers (rows and sealed months); polars SQL, filters pushed to the server."""
    with _state(ctx).integration() as pg:
        frame = pg.sql(query, exact=exact, return_type="polars")
    if output is not None:
        rows = write_file(frame.to_arrow(), output)
        console.print(f"[green]✓[/green] {plural(rows, 'row')} written to {escape(str(output))}")
        return
    print_frame(console, frame, title="sql", max_rows=200)


@app.command()
@_clean_errors
def symbols(
    ctx: typer.Context,
    table: Annotated[list[str] | None, typer.Option("--table", "-t", help="Only this table (repeat for "
                                                    "several; default: every time-series table).",
                                                    show_default=False)] = None,
) -> None:
    """List what is stored: per table and series, the first and last timestamp and the row count."""
    with _state(ctx).integration() as pg:
        frame = pg.catalog(table or None, return_type="polars")
    print_frame(console, frame, title="series", max_rows=500)


@app.command()
@_clean_errors
def follow(
    ctx: typer.Context,
    table: Annotated[str, typer.Argument(help=f"The table to follow: {TABLE_NAMES}.")],
    symbol: Annotated[list[str] | None, typer.Option("--symbol", "-s", help="Only this symbol (repeat for "
                                                     "several; default: every symbol).", show_default=False)] = None,
    since: Annotated[str | None, typer.Option(help="First print the stored rows from this time (ISO 8601, e.g. "
                                              "2024-01-02 or '2024-01-02 09:15'), then follow.",
                                              show_default=False)] = None,
    cursor: Annotated[str | None, typer.Option(help="Resume after the rows a previous run printed (the token "
                                               "its summary line shows).", show_default=False)] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop after this many seconds without a new row "
                                                  "(default: run until Ctrl-C).", show_default=False)] = None,
) -> None:
    """Print new and changed rows of a table as they are committed, until Ctrl-C.

    In a terminal: a live table of the newest rows; piped: one tab-separated line per row.
    """
    import time

    started = time.monotonic()
    with _state(ctx).integration() as pg:
        stream = pg.follow(table, symbols=symbol or None, since=since, cursor=cursor, timeout=timeout,
                         return_type="polars")
        rows, batches, last = show_tail(console, stream, table)
    err_console.print(f"{plural(rows, 'row')} in {plural(batches, 'batch', 'batches')} over "
                      f"{time.monotonic() - started:,.1f}s; resume with --cursor {last}", soft_wrap=True)


@app.command()
@_clean_errors
def quality(
    ctx: typer.Context,
    table: Annotated[str, typer.Argument(help="Table name or alias (bars, options, regimes, 1min).")] = "bars",
    symbol: Annotated[list[str] | None, typer.Option("--symbol", "-s", help="Only these symbols (repeatable; "
                                                     "default: every catalogued symbol).", show_default=False)] = None,
    start: Annotated[str | None, typer.Option(help="First timestamp or date (default: the first stored).",
                                              show_default=False)] = None,
    end: Annotated[str | None, typer.Option(help="Last timestamp or date, inclusive (default: the last stored).",
                                            show_default=False)] = None,
    calendar: Annotated[str | None, typer.Option(help="Exchange calendar of the sessions (XNSE, XNYS...); "
                                                 "default: the calendar/calendars settings.",
                                                 show_default=False)] = None,
    bar_label: Annotated[str, typer.Option(help=f"How the vendor stamps a bar: {_choices(BarLabel)} "
                                                "(09:31 for 09:30-09:31).")] = "start",
    plot: Annotated[Path | None, typer.Option(help="Also write a coverage heatmap PNG here (symbol x session).",
                                              dir_okay=False, show_default=False)] = None,
) -> None:
    """Missing minutes and bad bars per symbol and session: coverage, OHLC violations, zero-volume runs, jumps."""
    with _state(ctx).integration() as pg:
        frame = pg.quality_report(table, symbol or None, start, end, calendar=calendar,
                                  bar_label=cast(Any, bar_label), return_type="polars")
        shown = calendar or (pg.settings.calendar if not pg.settings.calendars else "calendars from configuration")
    print_frame(console, frame, title=f"{table} quality by session ({shown})",
                max_rows=200, percent=("coverage",),
                 columns=["symbol", "session", "expected_minutes", "present_minutes", "coverage", "first_missing",
                          "duplicate_bars", "ohlc_violations", "zero_volume_runs", "stale_runs", "jumps"])
    if plot is not None:
        _chart(frame, plot, lambda: plot_coverage(frame, path=plot, title=f"{table} coverage ({calendar})"),
               empty="no sessions with stored symbols", what="coverage heatmap")


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

    state = _state(ctx)
    try:
        settings = state.settings()
    except ConfigError as err:
        console.print(f"[red]✗[/red] configuration: {escape(str(err))}")
        raise typer.Exit(1) from None
    pool_log = logging.getLogger("regime_io._conn.pool")
    quiet = pool_log.getEffectiveLevel() >= logging.WARNING
    if quiet:
        # The failed attempt is the server check's own result: do not print it twice.
        pool_log.setLevel(logging.ERROR)
    try:
        report = server.diagnose(settings, count_rows=not estimate)
    finally:
        if quiet:
            pool_log.setLevel(logging.NOTSET)
    marks = {"ok": "[green]✓[/green]", "warn": "[yellow]![/yellow]", "fail": "[red]✗[/red]"}
    for check in report.checks:
        console.print(f"{marks[check.status]} {check.name}: {escape(settings.redact(check.detail))}")
    if report.tables is not None:
        print_frame(console, report.tables, title="tables", max_rows=20)
    if not report.ok:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------
# db: the embedded server


@db_app.command("start")
@_clean_errors
def db_start(ctx: typer.Context) -> None:
    """Start the embedded server (or find it running) and print where it listens."""

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
    mode: Annotated[StopMode, typer.Option(help=f"{_choices(StopMode)}: smart waits for clients to "
                                           "disconnect.")] = "fast",
) -> None:
    """Stop the embedded server."""

    settings = _state(ctx).settings()
    if embedded.stop(settings.embedded_dir, mode=mode):
        console.print("[green]✓[/green] embedded server stopped")
    else:
        console.print(f"embedded server in {embedded.data_dir(settings.embedded_dir)} was not running")


@db_app.command("status")
@_clean_errors
def db_status(ctx: typer.Context) -> None:
    """Say whether the embedded server runs (exit code 1 when it does not)."""

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

    # Plain print: a URL must not be wrapped or styled.
    typer.echo(embedded.url(_state(ctx).settings(), show_password=show_password))


def main() -> None:
    """Entry point of the ``regime-io`` console script and ``python -m regime_io``."""
    app(prog_name="regime-io")
