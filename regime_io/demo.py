"""The demo: a month of realistic generated history stored, then read back and charted.

What ``regime-io demo`` runs (the CLI only prints the :class:`DemoResult`). It loads
:mod:`regime_io.synthetic` data for four symbols into the five tables, then reads the
latest regimes, a regime distribution and the best optimisation runs, and draws the
last week of the first symbol's price on a background coloured by regime. The months
before the last one are sealed (moved into the sealed tier, ``seal``), so the
reads span both tiers.

Which schema: :func:`demo_schema`. On the embedded server (nothing configured) the
demo writes to the configured schema, so ``regime-io latest`` and every other command
of the README find its rows without options. On a server you configured it writes to
its own schema, ``regime_io_demo``, so it never overwrites real January 2024 NIFTY bars;
pass that schema (``--schema regime_io_demo``) to read it.

Example:
    >>> from regime_io import PostgreSQLIntegration
    >>> from regime_io.demo import run_demo
    >>> with PostgreSQLIntegration() as pg:                     # doctest: +SKIP
    ...     result = run_demo(pg, chart="demo.png")
    >>> result.rows["market_data"]                              # doctest: +SKIP
    33000
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import synthetic
from .errors import UsageError
from .plots import plot_price_with_regimes

if TYPE_CHECKING:
    import polars as pl

    from ._tiers.sealing import SealReport
    from .config import Settings
    from .integration import PostgreSQLIntegration

__all__ = ["DEMO_DAYS", "DEMO_SCHEMA", "DEMO_SYMBOLS", "DemoResult", "demo_schema", "run_demo"]

DEMO_SCHEMA = "regime_io_demo"
DEMO_SYMBOLS: tuple[str, ...] = ("NIFTY", "BANKNIFTY", "RELIANCE", "INFY")
DEMO_DAYS = 22  # about a month of NSE sessions: 1 January to 1 February 2024
DEMO_CHART = "regime_io_demo.png"
MAX_DAYS = 260

Progress = Callable[[str, int, "int | None"], None]
"""``progress(table, rows_done, rows_total)``, called while each table is written."""


def demo_schema(settings: Settings) -> str:
    """The schema the demo writes to with ``settings``: the configured one on the embedded
    server, else :data:`DEMO_SCHEMA` (never the tables of a server you configured).

    >>> from regime_io import load_settings
    >>> demo_schema(load_settings(env={}))
    'public'
    >>> demo_schema(load_settings(config={"database": {"host": "db.example"}}, env={}))
    'regime_io_demo'
    """
    return settings.schema if settings.embedded else DEMO_SCHEMA


@dataclass
class DemoResult:
    """What :func:`run_demo` stored and read back."""

    schema: str
    schema_version: int
    symbols: tuple[str, ...]
    days: int
    first_day: dt.date
    last_day: dt.date
    rows: dict[str, int]
    latest: pl.DataFrame
    distribution: pl.DataFrame
    best_runs: pl.DataFrame
    # The months before the last session's month, moved into the sealed tier, so
    # the demo shows both tiers: readers return the same data from either.
    sealed: SealReport | None = None
    chart: Path | None = None
    chart_skipped: str | None = None  # why no chart was drawn (matplotlib missing)
    seconds: float = 0.0

    def seal_note(self) -> str | None:
        """What the demo sealed, why, and what plain SQL sees now (None: nothing sealed).

        >>> import datetime as dt
        >>> from regime_io._tiers.sealing import SealReport, SealedPeriod
        >>> jan = SealedPeriod("market_data", dt.date(2024, 1, 1), 1, 90, 900, 90)
        >>> r = DemoResult("public", 7, ("NIFTY",), 22, dt.date(2024, 1, 1), dt.date(2024, 2, 1),
        ...                {"market_data": 100}, *[None] * 3, sealed=SealReport("seal", (jan,)))
        >>> print(r.seal_note())  # doctest: +NORMALIZE_WHITESPACE
        sealed 90 rows of January 2024 (market_data) into the sealed tier (900 -> 90 bytes): months older than
        seal_after (60 days by default) move there; the demo seals every month before its last so that the reads
        below span both tiers, and they return the same rows. Plain SQL on the row tables (psql, Grafana) sees
        the 10 rows left in them: regime-io unseal 2024-01-01 2024-01-31 hands the sealed month back to SQL
        tools (docs/maintenance.md, "Sealing and unsealing").
        """
        report = self.sealed
        if report is None or not report.rows_moved:
            return None
        months = sorted({p.period for p in report})
        span = (f"{months[0]:%B %Y}" if len(months) == 1 else f"{months[0]:%B %Y} to {months[-1]:%B %Y}")
        last = months[-1].replace(day=28) + dt.timedelta(days=4)
        last = last - dt.timedelta(days=last.day)
        return (f"sealed {report.rows_moved:,} rows of {span} ({', '.join(report.tables)}) into the sealed "
                f"tier ({report.bytes_before:,} -> {report.bytes_after:,} bytes): months older than seal_after "
                "(60 days by default) move there; the demo seals every month before its last so that the reads "
                "below span both tiers, and they return the same rows. Plain SQL on the row tables (psql, "
                f"Grafana) sees the {self.total_rows - report.rows_moved:,} rows left in them: regime-io unseal "
                f"{months[0]:%Y-%m-%d} {last:%Y-%m-%d} hands the sealed month{'s' if len(months) > 1 else ''} "
                'back to SQL tools (docs/maintenance.md, "Sealing and unsealing").')

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def run_demo(pg: PostgreSQLIntegration[Any], *, days: int = DEMO_DAYS, symbols: Sequence[str] = DEMO_SYMBOLS,
             chart: str | Path | None = DEMO_CHART, progress: Progress | None = None) -> DemoResult:
    """Create the tables in ``pg``'s schema, store the demo data and read it back.

    Re-running is safe: rows are upserted, nothing is duplicated.

    Parameters:
        pg: where to write (its configured schema; see :func:`demo_schema` for the CLI's choice).
        days: NSE sessions of 1-minute history from 1 January 2024 (1 to 260).
        symbols: symbols to generate; the first one also gets an option chain and the chart.
        chart: where to write the PNG chart (None: no chart).
        progress: called with ``(table, rows_done, rows_total)`` while each table is written.

    Raises:
        UsageError: ``days`` out of range or no symbols.
    """

    if not 1 <= days <= MAX_DAYS:
        raise UsageError(f"days must be between 1 and {MAX_DAYS}, got {days!r}", value=days)
    names = tuple(symbols)
    if not names:
        raise UsageError("the demo needs at least one symbol")
    started = time.perf_counter()
    version = pg.initialize_database()
    data: dict[str, Any] = {
        "market_data": synthetic.market_bars(names, days=days),
        "market_regimes_1min": synthetic.minute_regimes(names, days=days),
        "market_regimes": synthetic.regimes(names, days=days),
        "options_data": synthetic.options_chain(names[0], days=days),
        "optimization_results": synthetic.optimization_results(names),
    }
    rows: dict[str, int] = {}
    for table, frame in data.items():
        def report(done: int, total: int | None, table: str = table) -> None:
            if progress is not None:
                progress(table, done, total)

        pg.save(table, frame, progress=report)
        rows[table] = len(frame)
        report(len(frame), len(frame))
    sessions = synthetic.session_days(days)
    first, last = sessions[0], sessions[-1]
    # Older months into the sealed tier (the reads below then span both tiers).
    sealed = pg.seal(last.replace(day=1))
    latest = pg.get_latest_1min_market_regime(symbols=list(names), return_type="polars")
    distribution = pg.get_market_regime_distribution(names[0], first, last, return_type="polars")
    best = pg.get_optimization_results(names[0], top=3, return_type="polars")
    result = DemoResult(schema=pg.settings.schema, schema_version=version, symbols=names, days=days,
                        first_day=first, last_day=last, rows=rows, latest=latest, distribution=distribution,
                        best_runs=best, sealed=sealed)
    if chart is not None:
        week = sessions[-5:]
        bars = pg.get_market_data(names[0], week[0], week[-1], timeframe="1m", return_type="polars")
        regimes = pg.get_1min_market_regimes(names[0], week[0], week[-1], return_type="polars")
        try:
            plot_price_with_regimes(bars, regimes, path=chart,
                                    title=f"{names[0]} close, coloured by 1-minute regime "
                                          f"({week[0]:%d %b} to {week[-1]:%d %b %Y})")
        except ImportError as err:
            result.chart_skipped = str(err)
        else:
            result.chart = Path(chart)
    result.seconds = time.perf_counter() - started
    return result
