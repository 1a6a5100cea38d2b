"""Frames and values as terminal text for the CLI: numbers right-aligned with fixed decimals
per column, ISO times, shares as percentages; plain tab-separated text when piped.

Kept apart from ``cli.py`` so the command module only parses options, calls one library
function and prints what this module renders.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

import polars as pl
import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from .tables import table_spec

__all__ = ["confirm", "decimals", "plural", "print_cleanup", "print_frame", "print_seal", "show_tail", "tail_view",
           "text"]

def plural(n: int, word: str, plural: str | None = None) -> str:
    """``1 row``, ``2 rows``, ``1,250 rows``."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {plural or word + 's'}"


def text(value: Any, decimals: int | None = None) -> str:
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
        return " ".join(f"{k}={text(v)}" for k, v in value.items() if v is not None)
    return str(value)


def plain(value: Any, decimals: int | None = None) -> str:
    """A value for a pipe (``regime-io tail | cut -f5``): no thousands separators, fixed
    decimals per column, ISO times; empty for null.

    >>> plain(448825), plain(129.5, 2), plain(dt.datetime(2024, 1, 2, 9, 15))
    ('448825', '129.50', '2024-01-02 09:15:00')
    """
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{decimals if decimals is not None else 4}f}" if math.isfinite(value) else str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return str(value)


def decimals(values: Sequence[Any]) -> int:
    """Decimals that show every float of a column exactly (at most 4)."""
    needed = 0
    for value in values:
        if isinstance(value, float) and math.isfinite(value):
            for places in range(needed, 5):
                if abs(round(value, places) - value) < 1e-9:
                    break
            needed = max(needed, places)
    return needed


def print_frame(console: Console, frame: pl.DataFrame, *, title: str | None = None,
                columns: Sequence[str] | None = None, max_rows: int = 40, percent: Sequence[str] = ()) -> None:
    """Print a frame as a rich table (numbers right-aligned, shares as percentages)."""
    if columns is not None:
        frame = frame.select([c for c in columns if c in frame.columns])
    if title:
        # Printed above the table, not as its title: a title wraps at the table's width.
        console.print(f"[bold]{escape(title)}[/bold]")
    table = Table(show_edge=False, header_style="bold")
    shown = frame.head(max_rows)
    places = {name: decimals(shown[name].to_list()) for name, dtype in frame.schema.items() if dtype.is_float()}
    rows: list[list[str]] = []
    for row in shown.iter_rows():
        cells = []
        for name, value in zip(frame.columns, row, strict=True):
            if name in percent and isinstance(value, float):
                cells.append(f"{100 * value:.1f}%")
            elif value is None:
                cells.append("-")
            else:
                cells.append(text(value, places.get(name)))
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


TAIL_ROWS = 30  # rows the live view keeps on screen


def tail_view(window: pl.DataFrame | None, rows: int, table: str) -> Table:
    """The live view: the newest rows, newest last, with the running count in the title."""
    view = Table(show_edge=False, header_style="bold", title=f"{table_spec(table).key}: {plural(rows, 'row')} "
                 "(Ctrl-C to stop)", title_justify="left")
    if window is None:
        view.add_column("waiting for rows…")
        return view
    places = {name: decimals(window[name].to_list()) for name, dtype in window.schema.items() if dtype.is_float()}
    for name, dtype in window.schema.items():
        view.add_column(name, justify="right" if dtype.is_numeric() else "left", no_wrap=True)
    for values in window.iter_rows():
        view.add_row(*(escape(text(v, places.get(n))) for n, v in zip(window.columns, values, strict=True)))
    return view


def print_cleanup(console: Console, report: Any, days: int, *, dry_run: bool) -> None:
    """A cleanup report: per table and tier, then one line (``regime-io cleanup``)."""
    verb = "would remove" if dry_run else "removed"
    title = f"cleanup{' (dry run)' if dry_run else ''}: keep {plural(days, 'day')}"
    print_frame(console, report.to_frame(), title=title,
                columns=["table", "column", "cutoff", "partitions_dropped", "rows_dropped", "rows_deleted",
                         "sealed_rows_removed", "rows_removed"])
    sealed = sum(t.sealed_rows_removed for t in report)
    console.print(f"{'[yellow]dry run:[/yellow] ' if dry_run else '[green]✓[/green] '}{verb} "
                  f"{plural(report.rows_removed, 'row')}: {report.rows_removed - sealed:,} from the row tables "
                  f"({plural(report.partitions_dropped, 'partition')} dropped whole), {sealed:,} sealed")


def print_seal(console: Console, report: Any, *, dry_run: bool) -> None:
    """A seal, unseal or repair report (``regime-io seal``, ``unseal``, ``repair-sealed``)."""
    verb = {"seal": "sealed", "unseal": "unsealed", "repair": "merged into their chunks"}[report.action]
    print_frame(console, report.to_frame(), title=f"{report.action}{' (dry run)' if dry_run else ''}", max_rows=200)
    prefix = "[yellow]dry run:[/yellow] would move" if dry_run else f"[green]✓[/green] {verb}"
    sizes = "" if dry_run else f", {report.bytes_before:,} -> {report.bytes_after:,} bytes"
    console.print(f"{prefix} {plural(report.rows_moved, 'row')} in {plural(len(report), 'table-month')}{sizes}")


def show_tail(console: Console, stream: Any, table: str) -> tuple[int, int, str]:
    """Print a live tail's batches until it ends, Ctrl-C or a closed pipe; returns the rows
    and batches printed and the cursor to resume from. In a terminal: a live table of the
    newest rows; piped: a header, then one tab-separated line per row, plain numbers."""
    rows = batches = 0
    last = stream.cursor
    window: pl.DataFrame | None = None
    try:
        if console.is_terminal:
            with Live(tail_view(None, 0, table), console=console, auto_refresh=False) as screen:
                for batch in stream:
                    rows, batches, last = rows + batch.frame.height, batches + 1, batch.cursor
                    window = batch.frame if window is None else window.vstack(batch.frame).tail(TAIL_ROWS)
                    screen.update(tail_view(window, rows, table), refresh=True)
        else:
            for batch in stream:
                if batches == 0:
                    typer.echo("\t".join(batch.frame.columns))
                places = [decimals(batch.frame[n].to_list()) if t.is_float() else None
                          for n, t in batch.frame.schema.items()]
                # Plain numbers for the next tool in the pipe: 448825, not 448,825.
                if batch.frame.height:
                    typer.echo("\n".join("\t".join(plain(v, p) for v, p in zip(values, places, strict=True))
                                         for values in batch.frame.iter_rows()))
                rows, batches, last = rows + batch.frame.height, batches + 1, batch.cursor
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, exit 0, like any Unix filter; the
        # rest of stdout goes to /dev/null so the interpreter's final flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        stream.close()
    return rows, batches, last


def confirm(console: Console, question: str) -> bool:
    """Ask on the terminal; no answer (stdin closed, as under cron) means no."""
    try:
        return typer.confirm(question, default=False)
    except typer.Abort:
        console.print()
        return False
