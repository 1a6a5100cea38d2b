"""Every round of the alternated lines, drawn: where a median near its limit comes from.

Issue 23's sealed-tier targets are judged by the median of each round's ratio (the
sealed tier's run over ArcticDB's run of the same round, :func:`~benchmarks.measure.round_ratios`).
A median at 1.48 or 1.55 says little about whether the next run meets the limit; the
rounds do. This draws, per alternated line of :data:`~benchmarks.report.ALTERNATED`,
each round's ratio of each results file (one colour per file), the file's median as a
bar and the line's limit, so a reader sees a miss the machine's drift decides apart
from one every round shares.

Usage (matplotlib: the ``plots`` extra)::

    python -m benchmarks.rounds benchmarks/results/2026-12-06-vm-issue23-r19-run*.json \\
        --output docs/img/issue23_rounds.png
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from .measure import round_ratios
from .report import ALTERNATED

__all__ = ["main", "plot_rounds", "rounds_of"]


def rounds_of(figures: dict[str, Any]) -> dict[str, list[float]]:
    """Each alternated line's ratio per round in one results file's figures (lines the
    run did not measure are left out)."""
    out = {}
    for key, _, _ in ALTERNATED:
        ratios = round_ratios(figures.get(f"history.alternated.{key}.sealed"),
                              figures.get(f"history.alternated.{key}.arcticdb"))
        if ratios:
            out[key] = ratios
    return out


def plot_rounds(results: list[Path], output: Path) -> Path:
    """Draw every round of every alternated line of ``results`` (results JSON files) into
    ``output`` (PNG); returns it."""
    try:
        from matplotlib.figure import Figure as MplFigure
    except ImportError:  # (the bench extra does not bring matplotlib)
        raise SystemExit("benchmarks.rounds draws with matplotlib: pip install -e '.[bench,plots]'") from None
    runs = [(path.stem, rounds_of(json.loads(path.read_text()).get("figures", {}))) for path in results]
    keys = [key for key, _, _ in ALTERNATED if any(key in r for _, r in runs)]
    if not keys:
        raise SystemExit(f"no alternated lines in {', '.join(map(str, results))}")
    limits = {key: limit for key, _, limit in ALTERNATED}
    fig = MplFigure(figsize=(max(6.0, 1.3 * len(keys)), 4.2), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(runs))
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
    for j, (name, by_key) in enumerate(runs):
        color = colors[j % len(colors)]
        for i, key in enumerate(keys):
            ratios = by_key.get(key)
            if not ratios:
                continue
            x = i - 0.4 + width * (j + 0.5)
            spread = [x + width * 0.6 * ((n % 7) / 6 - 0.5) for n in range(len(ratios))]
            ax.scatter(spread, ratios, s=9, color=color, alpha=0.55, linewidths=0,
                       label=name if i == keys.index(next(k for k in keys if k in by_key)) else None)
            ax.hlines(statistics.median(ratios), x - width / 2, x + width / 2, color=color, linewidth=2.2)
    for i, key in enumerate(keys):
        ax.hlines(limits[key], i - 0.45, i + 0.45, color="black", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(keys)), [key.replace("_", "\n") for key in keys], fontsize=8)
    ax.set_ylabel("sealed tier / ArcticDB, per round")
    ax.set_title("Alternated rounds: each dot a round, bars the medians, dashes the limits", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rounds", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="results JSON files of benchmarks.run")
    parser.add_argument("--output", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    print(plot_rounds(args.results, args.output))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
