"""Plots: what is drawn matches the data, PNGs are real images, matplotlib stays optional."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.image import imread
from matplotlib.patches import Rectangle
from PIL import Image

import regime_io
from regime_io import UsageError, plots, synthetic


def _png_ok(path: Path, fig: object) -> None:
    """The file is a PNG of the figure's pixel size. What the figure shows is checked by
    each test against the data (``_drawn``): an empty chart is a perfectly good PNG too."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = (np.array(fig.get_size_inches()) * fig.dpi).round().astype(int)  # type: ignore[attr-defined]
    with Image.open(path) as image:
        assert image.size == (width, height)


def _drawn(fig: Any) -> dict[str, Any]:
    """The data a figure's first axes draws: the line's y values, the bar heights, the
    heatmap cells and the number of shaded spans."""
    ax = fig.axes[0]
    return {
        "line": np.asarray(ax.lines[0].get_ydata(), dtype=float) if ax.lines else np.array([]),
        "bars": sorted(round(float(p.get_height()), 6) for p in ax.patches if isinstance(p, Rectangle)),
        "image": np.asarray(ax.images[0].get_array()) if ax.images else np.array([]),
        "spans": sum(len(c.get_paths()) for c in ax.collections if isinstance(c, PolyCollection)),
    }


def _runs(regimes: list[str | None]) -> list[tuple[str | None, int, int]]:
    """(regime, first index, last index) of each run, computed by hand."""
    out: list[tuple[str | None, int, int]] = []
    for i, r in enumerate(regimes):
        if out and out[-1][0] == r:
            out[-1] = (r, out[-1][1], i)
        else:
            out.append((r, i, i))
    return out


def test_price_with_regimes_paints_one_span_per_run(tmp_path: Path) -> None:
    bars = synthetic.market_bars(["NIFTY"], days=2)
    regimes = synthetic.minute_regimes(["NIFTY"], days=2)
    fig = plots.plot_price_with_regimes(bars, regimes, path=tmp_path / "p.png")
    _png_ok(tmp_path / "p.png", fig)
    ax = fig.axes[0]
    spans = {}
    for coll in ax.collections:
        if isinstance(coll, PolyCollection):
            colour = tuple(np.round(coll.get_facecolor()[0][:3], 3))
            spans[colour] = [tuple(np.round(p.vertices[[0, 2], 0], 1)) for p in coll.get_paths()]
    expected = _runs(regimes["regime"].to_list())
    colours = plots.regime_colours(sorted(set(regimes["regime"])))
    from matplotlib.colors import to_rgb

    for name, colour in colours.items():
        want = sorted((start - 0.5, stop + 0.5) for r, start, stop in expected if r == name)
        got = sorted(tuple(sorted(v)) for v in spans[tuple(np.round(to_rgb(colour), 3))])
        assert got == want, name
    # The price line is the close, bar after bar.
    line = ax.lines[0]
    np.testing.assert_allclose(line.get_ydata(), bars["close"].to_numpy())
    assert list(line.get_xdata()) == list(range(bars.height))


def test_price_with_regimes_never_paints_a_regime_before_it_is_known() -> None:
    start = dt.datetime(2024, 1, 2, 9, 15)
    bars = pl.DataFrame({"timestamp": [start + dt.timedelta(minutes=i) for i in range(10)],
                         "close": [100.0 + i for i in range(10)]})
    # Known only from minute 3 and minute 7 (between bars at 6.5 minutes).
    regimes = pl.DataFrame({"timestamp": [start + dt.timedelta(minutes=3), start + dt.timedelta(minutes=6, seconds=30)],
                            "regime": ["Bearish", "Strong_Bullish"]})
    fig = plots.plot_price_with_regimes(bars, regimes)
    painted = {}
    for coll in fig.axes[0].collections:
        for path in coll.get_paths():
            lo, hi = sorted(path.vertices[[0, 2], 0])
            painted[(lo, hi)] = coll
    assert sorted(painted) == [(2.5, 6.5), (6.5, 9.5)]  # bars 0-2 unpainted; bar 6 still Bearish


def test_price_with_regimes_accepts_asof_output_pandas_and_arrow(tmp_path: Path) -> None:
    bars = synthetic.market_bars(["TCS"], days=1)
    regimes = synthetic.minute_regimes(["TCS"], days=1)
    joined = bars.join(regimes.select("timestamp", "regime"), on="timestamp")
    a = plots.plot_price_with_regimes(joined, None)
    b = plots.plot_price_with_regimes(bars.to_pandas(), regimes.to_arrow())
    assert len(a.axes[0].collections) == len(b.axes[0].collections) > 0


def test_price_with_regimes_needs_one_symbol_and_the_columns() -> None:
    bars = synthetic.market_bars(["NIFTY", "TCS"], days=1)
    regimes = synthetic.minute_regimes(["NIFTY", "TCS"], days=1)
    with pytest.raises(UsageError, match=r"2 symbols \('NIFTY', 'TCS'\); pass symbol="):
        plots.plot_price_with_regimes(bars, regimes)
    fig = plots.plot_price_with_regimes(bars, regimes, symbol="TCS")
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(),
                               bars.filter(pl.col("symbol") == "TCS")["close"].to_numpy())
    with pytest.raises(UsageError, match="regimes: missing column\\(s\\) 'regime'"):
        plots.plot_price_with_regimes(bars, regimes.drop("regime"), symbol="TCS")
    with pytest.raises(UsageError, match="bars: expected a polars, pandas or Arrow frame, got list"):
        plots.plot_price_with_regimes([1, 2], regimes)


def test_regime_distribution_bars_are_the_shares(tmp_path: Path) -> None:
    dist = pl.DataFrame({"regime": ["Sideways", "Bearish", "Custom"], "count": [6, 3, 1],
                         "share": [0.6, 0.3, 0.1], "time_share": [0.5, 0.25, 0.25]})
    fig = plots.plot_regime_distribution(dist, path=tmp_path / "d.png")
    _png_ok(tmp_path / "d.png", fig)
    heights = sorted(round(p.get_height(), 6) for p in fig.axes[0].patches)
    assert heights == sorted([60.0, 30.0, 10.0, 50.0, 25.0, 25.0])
    # Without shares the counts are normalised.
    fig = plots.plot_regime_distribution(dist.select("regime", "count"))
    assert sorted(round(p.get_height(), 6) for p in fig.axes[0].patches) == [10.0, 30.0, 60.0]


def test_transition_matrix_cells_are_the_probabilities(tmp_path: Path) -> None:
    tr = pl.DataFrame({"from_regime": ["A", "A", "B", "B"], "to_regime": ["A", "B", "A", "B"],
                       "count": [8, 2, 1, 3], "probability": [0.8, 0.2, 0.25, 0.75]})
    fig = plots.plot_transition_matrix(tr, path=tmp_path / "t.png")
    _png_ok(tmp_path / "t.png", fig)
    image = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(np.asarray(image), [[0.8, 0.2], [0.25, 0.75]])
    off = plots.plot_transition_matrix(tr, self_transitions=False).axes[0].images[0].get_array()
    np.testing.assert_allclose(np.asarray(off), [[0.0, 1.0], [1.0, 0.0]])
    counts_only = plots.plot_transition_matrix(tr.drop("probability")).axes[0].images[0].get_array()
    np.testing.assert_allclose(np.asarray(counts_only), [[0.8, 0.2], [0.25, 0.75]])


def test_plots_of_empty_frames_still_render(tmp_path: Path) -> None:
    from regime_io._read import decode

    figs = {
        "d": plots.plot_regime_distribution(decode.empty_distribution(), path=tmp_path / "d.png"),
        "t": plots.plot_transition_matrix(decode.empty_transitions(), path=tmp_path / "t.png"),
        "p": plots.plot_price_with_regimes(decode.empty_frame("market_data"),
                                           decode.empty_frame("market_regimes_1min"), path=tmp_path / "p.png"),
    }
    for name, fig in figs.items():
        assert imread(tmp_path / f"{name}.png").shape[0] > 100
        _png_ok(tmp_path / f"{name}.png", fig)
        drawn = _drawn(fig)  # and they are empty: the checks below can tell
        assert drawn["line"].size == 0 and drawn["bars"] == [] and drawn["image"].size == 0 and drawn["spans"] == 0


def test_plots_from_the_database(pg: regime_io.PostgreSQLIntegration, tmp_path: Path) -> None:
    pg.save_market_data(synthetic.market_bars(["NIFTY"], days=2))
    pg.save_1min_market_regime(synthetic.minute_regimes(["NIFTY"], days=2))
    bars = pg.get_market_data("NIFTY", "2024-01-01", "2024-01-02")
    regimes = pg.get_1min_market_regimes("NIFTY", "2024-01-01", "2024-01-02")
    dist = pg.get_market_regime_distribution("NIFTY", "2024-01-01", "2024-01-02")
    trans = pg.get_regime_transitions("NIFTY", "2024-01-01", "2024-01-02")
    assert min(bars.height, regimes.height, dist.height, trans.height) > 0
    # Each chart draws the data read, and its file is that chart.
    price = regime_io.plot_price_with_regimes(bars, regimes, path=tmp_path / "p.png")
    _png_ok(tmp_path / "p.png", price)
    np.testing.assert_allclose(_drawn(price)["line"], bars["close"].to_numpy())
    by_time = dict(zip(regimes["timestamp"].to_list(), regimes["regime"].to_list(), strict=True))
    assert _drawn(price)["spans"] == len(_runs([by_time.get(t) for t in bars["timestamp"].to_list()]))
    shares = regime_io.plot_regime_distribution(dist, path=tmp_path / "d.png")
    _png_ok(tmp_path / "d.png", shares)
    assert _drawn(shares)["bars"] == sorted(round(100 * v, 6) for v in [*dist["share"], *dist["time_share"]])
    matrix = regime_io.plot_transition_matrix(trans, path=tmp_path / "t.png")
    _png_ok(tmp_path / "t.png", matrix)
    names = sorted(set(trans["from_regime"]) | set(trans["to_regime"]))
    want = np.zeros((len(names), len(names)))
    for a, b, p in trans.select("from_regime", "to_regime", "probability").iter_rows():
        want[names.index(a), names.index(b)] = p
    np.testing.assert_allclose(_drawn(matrix)["image"], want)


def test_no_pyplot_state_and_no_backend_change() -> None:
    code = textwrap.dedent("""
        import sys, matplotlib
        raw = lambda: dict.__getitem__(matplotlib.rcParams, "backend")  # get_backend() would import pyplot
        backend = raw()
        from regime_io import synthetic, plot_price_with_regimes
        plot_price_with_regimes(synthetic.market_bars(["A"], days=1), synthetic.minute_regimes(["A"], days=1))
        print("pyplot" if "matplotlib.pyplot" in sys.modules else "no-pyplot", raw() == backend)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["no-pyplot", "True"]


def test_import_regime_io_does_not_import_matplotlib() -> None:
    code = "import sys, regime_io; regime_io.plot_regime_distribution; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_matplotlib_gives_an_install_hint() -> None:
    code = textwrap.dedent("""
        import sys
        sys.modules["matplotlib"] = None  # as if not installed
        import polars as pl
        from regime_io import plot_regime_distribution
        try:
            plot_regime_distribution(pl.DataFrame({"regime": ["A"], "count": [1]}))
        except ImportError as err:
            print(err)
    """)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "plots need matplotlib: pip install 'regime-io[plots]'"
