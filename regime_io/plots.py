"""Charts of market history and regimes (matplotlib, the optional ``plots`` extra).

Four charts, each returning a :class:`matplotlib.figure.Figure` and writing a PNG when
``path`` is given:

- :func:`plot_price_with_regimes`: close price over time on a background coloured by
  the regime in force at each bar;
- :func:`plot_regime_distribution`: share of each regime (by rows and, when the frame
  has it, by time spent);
- :func:`plot_transition_matrix`: heatmap of regime-to-regime transition probabilities.
- :func:`plot_coverage`: heatmap of data coverage (symbol x session, share of the
  session's minutes present) from ``quality_report``.

Figures are drawn on matplotlib's Agg canvas without touching ``pyplot``'s global
state, so they work in scripts, servers and notebooks (a notebook displays the returned
figure) and never change the user's backend. matplotlib is imported on first use, so
``import regime_io`` stays light.

Example:
    >>> from regime_io import synthetic
    >>> from regime_io.plots import plot_price_with_regimes
    >>> bars = synthetic.market_bars(["NIFTY"], days=2)
    >>> regimes = synthetic.minute_regimes(["NIFTY"], days=2)
    >>> fig = plot_price_with_regimes(bars, regimes)   # doctest: +SKIP
    >>> fig = plot_price_with_regimes(bars, regimes, path="nifty.png")   # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

from ._frames import to_polars
from .errors import UsageError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["REGIME_COLOURS", "plot_coverage", "plot_price_with_regimes", "plot_regime_distribution",
           "plot_transition_matrix"]

log = logging.getLogger(__name__)

# Regime names of the seed's classifier and synthetic data: fixed colours so that a
# regime looks the same on every chart. Other names get the next colour of a palette.
REGIME_COLOURS: dict[str, str] = {
    "Strong_Bullish": "#2ca02c",
    "Bullish": "#98df8a",
    "Mild_Bullish": "#98df8a",
    "Sideways": "#b0b0b0",
    "Neutral": "#b0b0b0",
    "Mild_Bearish": "#ff9896",
    "Bearish": "#d62728",
    "Strong_Bearish": "#8c1515",
    "High_Volatility": "#ff7f0e",
    "Low_Volatility": "#9edae5",
}
_PALETTE = ("#1f77b4", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#7f7f7f", "#aec7e8",
            "#ffbb78", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d")
_DPI = 110


def _matplotlib() -> Any:
    """Import matplotlib, or explain how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'regime-io[plots]'") from None
    return matplotlib


@functools.cache
def _figure_class() -> type[Figure]:
    """A Figure that a notebook displays as a PNG even when pyplot was never imported
    (IPython registers its Figure formatter only when pyplot sets up the inline backend)."""
    from matplotlib.figure import Figure

    class RegimeIOFigure(Figure):
        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png", dpi=_DPI)
            return buffer.getvalue()

    return RegimeIOFigure


def _new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas: no pyplot, no global backend change."""
    _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = _figure_class()(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _finish(fig: Figure, path: str | os.PathLike[str] | None) -> Figure:
    if path is not None:
        fig.savefig(os.fspath(path), format="png", dpi=_DPI)
        log.info("chart written to %s", os.fspath(path))
    return fig


def _frame(data: Any, what: str) -> pl.DataFrame:
    """A polars DataFrame from polars, pandas or Arrow input (the library's one converter)."""
    frame = to_polars(data, what=what)
    if frame is None:
        raise UsageError(f"{what}: expected a polars, pandas or Arrow frame, got {type(data).__name__}")
    return frame


def _need(frame: pl.DataFrame, what: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UsageError(f"{what}: missing column(s) {', '.join(map(repr, missing))}; "
                         f"got {', '.join(map(repr, frame.columns)) or 'no columns'}")


def _pick(frame: pl.DataFrame, what: str, candidates: Sequence[str]) -> str:
    for name in candidates:
        if name in frame.columns:
            return name
    raise UsageError(f"{what}: needs one of the columns {', '.join(map(repr, candidates))}; "
                     f"got {', '.join(map(repr, frame.columns)) or 'no columns'}")


def regime_colours(regimes: Sequence[str]) -> dict[str, str]:
    """A colour for each regime name: fixed for known names, a palette for the rest.

    >>> regime_colours(["Bearish", "Custom"])
    {'Bearish': '#d62728', 'Custom': '#1f77b4'}
    """
    out: dict[str, str] = {}
    spare = iter(_PALETTE * (len(regimes) // len(_PALETTE) + 1))
    for name in regimes:
        out[name] = REGIME_COLOURS.get(name) or next(spare)
    return out


def _one_symbol(frame: pl.DataFrame, what: str, symbol: str | None) -> tuple[pl.DataFrame, str | None]:
    if "symbol" not in frame.columns:
        return frame, symbol
    if symbol is not None:
        return frame.filter(pl.col("symbol") == symbol), symbol
    symbols = frame["symbol"].unique(maintain_order=True).to_list()
    if len(symbols) > 1:
        raise UsageError(f"{what}: holds {len(symbols)} symbols ({', '.join(map(repr, symbols[:5]))}"
                         f"{', ...' if len(symbols) > 5 else ''}); pass symbol= to choose one")
    return frame, (symbols[0] if symbols else None)


def plot_price_with_regimes(bars: Any, regimes: Any, *, path: str | os.PathLike[str] | None = None,
                            symbol: str | None = None, price: str = "close", title: str | None = None) -> Figure:
    """Close price over time on a background coloured by the regime in force at each bar.

    Bars are drawn one after another (nights and weekends take no space, as on a trading
    chart); each bar takes the latest regime at or before its timestamp (an as-of join,
    so a regime is never painted before it was known).

    Parameters:
        bars: bars with ``timestamp`` and ``close`` (``market_data`` / ``get_market_data``).
        regimes: rows with ``timestamp`` and ``regime`` (``get_1min_market_regimes``,
            ``get_market_regimes``), or None when ``bars`` already has a ``regime`` column
            (the output of ``asof_regimes``).
        path: write a PNG here as well.
        symbol: the symbol to draw when the frames hold several.
        price: the price column to draw (default ``close``).
        title: the chart title (default: the symbol and the date range).

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: a needed column is missing, or several symbols and no ``symbol``.
        ImportError: matplotlib is not installed (``pip install 'regime-io[plots]'``).

    Example:
        >>> fig = plot_price_with_regimes(bars, regimes, path="nifty.png")   # doctest: +SKIP
    """
    data = _frame(bars, "bars")
    _need(data, "bars", ["timestamp", price])
    data, symbol = _one_symbol(data, "bars", symbol)
    data = data.sort("timestamp")
    if regimes is None:
        _need(data, "bars (no regimes given)", ["regime"])
        joined = data.select("timestamp", price, "regime")
    else:
        reg = _frame(regimes, "regimes")
        _need(reg, "regimes", ["timestamp", "regime"])
        if "symbol" in reg.columns and symbol is not None:
            reg = reg.filter(pl.col("symbol") == symbol)
        reg = reg.select("timestamp", "regime").sort("timestamp")
        joined = data.select("timestamp", price).join_asof(
            reg.with_columns(pl.col("timestamp").cast(data.schema["timestamp"])), on="timestamp", strategy="backward")
    joined = joined.with_columns(pl.col(price).cast(pl.Float64))
    fig = _new_figure(11, 4.8)
    ax = fig.add_subplot()
    n = joined.height
    if n == 0:
        ax.text(0.5, 0.5, "no bars to draw", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return _finish(fig, path)
    _regime_background(ax, joined["regime"])
    ax.plot(range(n), joined[price].to_numpy(), color="#1a1a1a", linewidth=0.8, zorder=3)
    ax.set_xlim(-0.5, n - 0.5)
    _time_ticks(ax, joined["timestamp"].to_list())
    ax.set_ylabel(price)
    ax.grid(axis="y", alpha=0.3, zorder=0)
    first, last = joined["timestamp"][0], joined["timestamp"][-1]
    ax.set_title(title or f"{symbol or 'price'}  {first:%Y-%m-%d} to {last:%Y-%m-%d}  ({n:,} bars)",
                 loc="left", fontsize=11)
    return _finish(fig, path)


def _regime_background(ax: Axes, regime: pl.Series) -> None:
    """Shade each run of one regime across the full height of the axes."""
    from matplotlib.patches import Patch

    names = [r for r in regime.drop_nulls().unique(maintain_order=True).to_list()]
    colours = regime_colours(sorted(names))
    runs = (pl.DataFrame({"regime": regime})
            .with_row_index("i")
            .with_columns(run=(pl.col("regime") != pl.col("regime").shift(1)).fill_null(True).cum_sum())
            .group_by("run", maintain_order=True)
            .agg(pl.col("regime").first(), start=pl.col("i").min(), stop=pl.col("i").max()))
    for name in colours:
        spans = [(start - 0.5, stop - start + 1)
                 for start, stop in runs.filter(pl.col("regime") == name).select("start", "stop").iter_rows()]
        if spans:
            ax.broken_barh(spans, (0, 1), facecolors=colours[name], alpha=0.35, linewidth=0,
                           transform=ax.get_xaxis_transform(), zorder=1)
    handles = [Patch(facecolor=colours[name], alpha=0.5, label=name.replace("_", " ")) for name in colours]
    if handles:
        # Above the axes, right-aligned, opposite the title: never over the price line.
        ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8,
                  ncols=min(len(handles), 5), frameon=False, borderaxespad=0.2)


def _time_ticks(ax: Axes, stamps: list[dt.datetime]) -> None:
    """Label bar positions with dates (or times within a single day)."""
    n = len(stamps)
    days = sorted({t.date() for t in stamps})
    if len(days) > 1:
        # One tick at the first bar of each day, thinned to at most ~10 labels.
        firsts = [i for i in range(n) if i == 0 or stamps[i].date() != stamps[i - 1].date()]
        for i in firsts[1:]:
            ax.axvline(i - 0.5, color="#555555", linewidth=0.4, alpha=0.5, zorder=2)
        step = max(1, len(firsts) // 10 + (len(firsts) % 10 > 0))
        ticks = firsts[::step]
        labels = [f"{stamps[i]:%d %b}" for i in ticks]
    else:
        step = max(1, n // 8)
        ticks = list(range(0, n, step))
        labels = [f"{stamps[i]:%H:%M}" for i in ticks]
    ax.set_xticks(ticks, labels, fontsize=8)


def plot_regime_distribution(distribution: Any, *, path: str | os.PathLike[str] | None = None,
                             title: str | None = None) -> Figure:
    """Bar chart of how often (and, when known, how long) each regime held.

    Parameters:
        distribution: the output of ``get_market_regime_distribution``: a ``regime``
            column and a share column (``share``/``row_share``/``pct``...) or a count
            (``count``/``rows``); a time-weighted share (``time_share``...) is drawn
            next to it when present.
        path: write a PNG here as well.
        title: the chart title.

    Returns:
        The matplotlib Figure.

    Example:
        >>> dist = pg.get_market_regime_distribution("NIFTY", "2024-01-01", "2024-01-31")  # doctest: +SKIP
        >>> plot_regime_distribution(dist, path="dist.png")                                 # doctest: +SKIP
    """
    frame = _frame(distribution, "distribution")
    _need(frame, "distribution", ["regime"])
    share_col = next((c for c in ("row_share", "share", "pct", "percentage", "fraction") if c in frame.columns), None)
    if share_col is None:
        count_col = _pick(frame, "distribution", ("count", "rows", "n"))
        total = frame[count_col].sum() or 1
        frame = frame.with_columns((pl.col(count_col) / total).alias("share"))
        share_col = "share"
    time_col = next((c for c in ("time_share", "time_weighted_share", "time_pct", "duration_share")
                     if c in frame.columns), None)
    frame = frame.sort(share_col, descending=True)
    names = frame["regime"].cast(pl.String).to_list()
    shares = frame[share_col].cast(pl.Float64).to_numpy()
    scale = 100.0 if shares.size and shares.max() <= 1.0 + 1e-9 else 1.0
    colours = regime_colours(sorted(names))
    fig = _new_figure(8, 4.2)
    ax = fig.add_subplot()
    x = list(range(len(names)))
    if time_col is None:
        bars = ax.bar(x, shares * scale, color=[colours[n] for n in names], edgecolor="#333333", linewidth=0.5)
        ax.bar_label(bars, fmt="%.1f%%", fontsize=8)
    else:
        times = frame[time_col].cast(pl.Float64).fill_null(0).to_numpy()
        width = 0.4
        b1 = ax.bar([i - width / 2 for i in x], shares * scale, width, color=[colours[n] for n in names],
                    edgecolor="#333333", linewidth=0.5, label="share of rows")
        b2 = ax.bar([i + width / 2 for i in x], times * scale, width, color=[colours[n] for n in names],
                    edgecolor="#333333", linewidth=0.5, hatch="//", alpha=0.7, label="share of time")
        ax.bar_label(b1, fmt="%.1f%%", fontsize=7)
        ax.bar_label(b2, fmt="%.1f%%", fontsize=7)
        ax.legend(fontsize=8)
    ax.set_xticks(x, [n.replace("_", " ") for n in names], fontsize=9)
    ax.set_ylabel("share (%)")
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title(title or "regime distribution", loc="left", fontsize=11)
    return _finish(fig, path)


def plot_transition_matrix(transitions: Any, *, path: str | os.PathLike[str] | None = None,
                           title: str | None = None, self_transitions: bool = True) -> Figure:
    """Heatmap of the probability of moving from one regime (rows) to another (columns).

    Parameters:
        transitions: the output of ``get_regime_transitions`` in long form: a from-regime
            column (``from_regime``/``from``), a to-regime column (``to_regime``/``to``)
            and ``probability`` (or ``count``, normalised per row here).
        path: write a PNG here as well.
        title: the chart title.
        self_transitions: keep the diagonal (a regime followed by itself: persistence).
            False drops it and renormalises each row over the changes of regime, which
            shows where a regime goes when it ends.

    Returns:
        The matplotlib Figure.

    Example:
        >>> tr = pg.get_regime_transitions("NIFTY", "2024-01-01", "2024-01-31")   # doctest: +SKIP
        >>> plot_transition_matrix(tr, path="transitions.png")                   # doctest: +SKIP
    """
    import numpy as np

    frame = _frame(transitions, "transitions")
    src = _pick(frame, "transitions", ("from_regime", "from", "regime_from", "source"))
    dst = _pick(frame, "transitions", ("to_regime", "to", "regime_to", "target"))
    frame = frame.filter(pl.col(src).is_not_null() & pl.col(dst).is_not_null())
    if not self_transitions:
        frame = frame.filter(pl.col(src) != pl.col(dst))
    if "probability" not in frame.columns or not self_transitions:
        # Row-normalise the counts (or the probabilities left after dropping the diagonal).
        weight = _pick(frame, "transitions", ("count", "transitions", "n", "probability"))
        frame = frame.with_columns((pl.col(weight) / pl.col(weight).sum().over(src)).alias("probability"))
    value = "probability"
    names = sorted(set(frame[src].cast(pl.String).to_list()) | set(frame[dst].cast(pl.String).to_list()))
    index = {n: i for i, n in enumerate(names)}
    matrix = np.full((len(names), len(names)), np.nan)
    for a, b, p in frame.select(pl.col(src).cast(pl.String), pl.col(dst).cast(pl.String),
                                pl.col(value).cast(pl.Float64)).iter_rows():
        matrix[index[a], index[b]] = p
    size = max(4.5, 1.1 * len(names) + 2)
    fig = _new_figure(size + 1, size)
    ax = fig.add_subplot()
    if not names:
        ax.text(0.5, 0.5, "no transitions", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return _finish(fig, path)
    image = ax.imshow(np.nan_to_num(matrix, nan=0.0), cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(len(names)):
        for j in range(len(names)):
            p = matrix[i, j]
            text = "" if np.isnan(p) else f"{p:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=9,
                    color="white" if (not np.isnan(p) and p > 0.6) else "#1a1a1a")
    labels = [n.replace("_", " ") for n in names]
    ax.set_xticks(range(len(names)), labels, rotation=30, ha="right", fontsize=9)
    ax.set_yticks(range(len(names)), labels, fontsize=9)
    ax.set_xlabel("to regime")
    ax.set_ylabel("from regime")
    fig.colorbar(image, ax=ax, shrink=0.8, label="probability")
    ax.set_title(title or "regime transition probabilities", loc="left", fontsize=11)
    return _finish(fig, path)


def plot_coverage(report: Any, *, path: str | os.PathLike[str] | None = None, title: str | None = None) -> Figure:
    """Heatmap of coverage: one row per symbol, one column per session, coloured by the share
    of the session's minutes present (red: nothing stored, green: every minute).

    Parameters:
        report: the output of ``quality_report`` (``symbol``, ``session`` and
            ``coverage`` columns).
        path: write a PNG here as well.
        title: the chart title.

    Returns:
        The matplotlib Figure.

    Example:
        >>> report = pg.quality_report("bars", start_date="2024-01-01", end_date="2024-01-31")  # doctest: +SKIP
        >>> plot_coverage(report, path="coverage.png")                                       # doctest: +SKIP
    """
    import numpy as np

    frame = _frame(report, "report")
    _need(frame, "report", ["symbol", "session", "coverage"])
    symbols = sorted(set(frame["symbol"].cast(pl.String).to_list()))
    sessions = sorted(set(frame["session"].to_list()))
    matrix = np.full((len(symbols), len(sessions)), np.nan)
    row = {s: i for i, s in enumerate(symbols)}
    col = {d: j for j, d in enumerate(sessions)}
    for symbol, session, share in frame.select(pl.col("symbol").cast(pl.String), "session",
                                               pl.col("coverage").cast(pl.Float64)).iter_rows():
        matrix[row[symbol], col[session]] = share
    fig = _new_figure(min(16.0, max(6.0, 0.28 * len(sessions) + 3)), max(2.5, 0.35 * len(symbols) + 1.6))
    ax = fig.add_subplot()
    if not symbols:
        ax.text(0.5, 0.5, "no sessions", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return _finish(fig, path)
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto",
                      interpolation="nearest")
    ax.set_yticks(range(len(symbols)), symbols, fontsize=8)
    step = max(1, len(sessions) // 15)
    ax.set_xticks(range(0, len(sessions), step), [f"{d:%d %b}" for d in sessions[::step]], rotation=45,
                  ha="right", fontsize=8)
    ax.set_xlabel("session")
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of minutes present")
    ax.set_title(title or "coverage", loc="left", fontsize=11)
    return _finish(fig, path)
