"""Results: ratios against same-run baselines, the issue's targets, JSON and Markdown.

Example:
    >>> targets = evaluate_targets({})
    >>> targets[0]["met"] is None           # nothing measured, nothing claimed
    True
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .measure import Figure, is_measured, paired_ratio, paired_sum_ratio, value

__all__ = ["RESULTS_BEGIN", "RESULTS_END", "add_derived", "evaluate_targets", "expected_figures", "markdown",
           "update_docs", "verdict_summary", "write_json"]

RESULTS_BEGIN = "<!-- benchmark-results:begin -->"
RESULTS_END = "<!-- benchmark-results:end -->"

FRESH_LIMIT = "ingest.fresh.server_copy"  # the faster of binary and CSV server-side COPY

# figure -> the figure it is compared with (ratio = this / that, in time; > 1 is slower)
BASELINE: dict[str, str] = {
    "ingest.fresh.regime_io": FRESH_LIMIT,
    "ingest.fresh.polars_adbc": FRESH_LIMIT,
    "ingest.fresh.psycopg_copy_rows": FRESH_LIMIT,
    "ingest.fresh.pandas_to_sql": FRESH_LIMIT,
    "ingest.fresh.pandas_to_sql_multi": FRESH_LIMIT,
    "ingest.fresh.server_copy_binary": FRESH_LIMIT,
    "ingest.fresh.server_copy_csv": FRESH_LIMIT,
    "ingest.fresh.server_copy_binary_sorted": FRESH_LIMIT,
    "ingest.validate_only": FRESH_LIMIT,
    "ingest.reingest.all_colliding": FRESH_LIMIT,
    "ingest.reingest.all_changed": FRESH_LIMIT,
    "ingest.reingest.half_new": FRESH_LIMIT,
    "read.range.regime_io": "read.range.copy_binary",
    "read.range.regime_io_exact": "read.range.copy_binary",
    "read.range.copy_binary_float8": "read.range.copy_binary",
    "read.range.connectorx_numeric": "read.range.copy_binary",
    "read.range.connectorx_float8": "read.range.copy_binary",
    "read.range.pandas_read_sql": "read.range.copy_binary",
}
# Issue 12's shape: row-tier reads against COPY-out of the same rows (their ceiling); the
# sealed tier, Parquet and the writes against ArcticDB.
HISTORY_SLICES = ("read_all", "read_symbol", "read_month", "read_day")
for _slice in HISTORY_SLICES:
    BASELINE[f"history.{_slice}.row"] = f"history.{_slice}.copy"
    BASELINE[f"history.{_slice}.sealed"] = f"history.{_slice}.arcticdb"
    BASELINE[f"history.{_slice}.parquet"] = f"history.{_slice}.arcticdb"
    BASELINE[f"history.{_slice}.copy"] = f"history.{_slice}.arcticdb"
BASELINE["history.read_each_symbol.row"] = "history.read_all.copy"
for _tier in ("row", "sealed", "parquet"):
    BASELINE[f"history.write.{_tier}"] = "history.write.arcticdb"
for _tier in ("row", "sealed"):
    BASELINE[f"history.restate.{_tier}"] = "history.restate.arcticdb"
BASELINE["history.seal.sealed"] = "history.write.arcticdb"
# The sealed tier and ArcticDB run in turn (benchmarks.history._alternated).
ALTERNATED = (("read_all", "all bars", 1.5), ("read_symbol", "1 symbol, whole range", 1.5),
              ("read_month", "1 symbol x 1 month", 1.5), ("read_day", "1 symbol x 1 day", 1.5),
              ("restate", "restate 1 day x every symbol (update_batch)", 2.0),
              ("restate_cold", "restate 1 day x every symbol, its patch segments not remembered (update_batch)",
               2.0),
              ("restate_first", "a day's first restatement x every symbol vs ArcticDB's first update of that day "
                                "(update_batch; a different day each round)", 2.0),
              ("read_all_patched", "all bars after the restatement", 1.5))
for _key, _, _ in ALTERNATED:
    BASELINE[f"history.alternated.{_key}.sealed"] = f"history.alternated.{_key}.arcticdb"
BASELINE["history.alternated.read_day_row.row"] = "history.alternated.read_day_row.arcticdb"

# The 1-minute append figure of the 2026-11-24 run (docs/performance.md): issue 12 asks
# that it keeps that figure; the limit allows 25% for the shared machine's noise.
APPEND_BEFORE_MS = 5.56

SECTIONS: list[tuple[str, str]] = [
    ("ingest.", "Ingest (one-minute bars, 8 columns, 4 DECIMAL(10,2))"),
    ("read.", "Range reads"),
    ("history.", "Issue 12 shape: one-minute bars on consecutive minutes, regime_io's two tiers against ArcticDB "
                 "(LMDB), Parquet + polars and COPY-out"),
    ("latest.", "Latest rows (warm, per call)"),
    ("regimes.", "Regime statistics and rolling saves"),
    ("scale.", "Scale curve"),
    ("memory.", "Peak memory (fresh subprocess, VmHWM)"),
]


def expected_figures(scale_sizes: list[int]) -> list[str]:
    """Every figure a full run produces (the smoke test checks each one)."""
    fixed = [
        "ingest.validate_only", "ingest.polars_decimal_cast",
        "ingest.fresh.regime_io", "ingest.fresh.server_copy_binary", "ingest.fresh.server_copy_csv",
        "ingest.fresh.server_copy_binary_sorted",
        FRESH_LIMIT, "ingest.fresh.polars_adbc", "ingest.fresh.psycopg_copy_rows",
        "ingest.fresh.pandas_to_sql", "ingest.fresh.pandas_to_sql_multi",
        "ingest.reingest.all_colliding", "ingest.reingest.all_changed", "ingest.reingest.half_new",
        "read.range.regime_io", "read.range.regime_io_exact", "read.range.copy_binary",
        "read.range.copy_binary_float8", "read.range.connectorx_numeric", "read.range.connectorx_float8",
        "read.range.pandas_read_sql", "read.one_day.regime_io",
        "latest.small.one_symbol", "latest.small.one_symbol_psycopg", "latest.small.all_symbols",
        "latest.small.all_symbols_listed",
        "latest.scale.one_symbol", "latest.scale.one_symbol_psycopg", "latest.scale.all_symbols",
        "latest.scale.all_symbols_listed",
        "regimes.distribution", "regimes.transitions", "regimes.rolling_save",
        "memory.stream_read", "memory.parquet_ingest", "memory.stream_sealed",
    ]
    for tier in ("arcticdb", "parquet", "row", "sealed"):
        fixed += [f"history.write.{tier}", f"history.storage.{tier}"]
        fixed += [f"history.{s}.{tier}" for s in HISTORY_SLICES]
    fixed += [f"history.{s}.copy" for s in HISTORY_SLICES]
    fixed += ["history.restate.arcticdb", "history.restate.row", "history.restate.sealed", "history.seal.sealed",
              "history.read_each_symbol.row", "history.read_all_patched.sealed", "history.restate_first.sealed",
              "history.latest_alternated.row", "history.latest_alternated.sealed", "history.floor.latest_json",
              "history.floor.latest_stored"]
    fixed += [f"history.scan_{part}.{tier}" for part in ("month", "eager", "plugin", "inside")
              for tier in ("row", "sealed")]
    fixed += [f"history.alternated.{k}.{t}" for k, _, _ in ALTERNATED for t in ("arcticdb", "sealed")]
    fixed += ["history.alternated.read_day_row.row", "history.alternated.read_day_row.arcticdb"]
    for size in sorted(scale_sizes):
        fixed += [f"scale.{size}.ingest", f"scale.{size}.one_day_read", f"scale.{size}.one_day_read_ref",
                  f"scale.{size}.scan_one_day", f"scale.{size}.scan_one_day_inside"]
    return fixed


def add_derived(figures: dict[str, Figure]) -> None:
    """The fresh-ingest limit (faster server COPY) and each figure's ratio to its baseline."""
    copies = [figures.get(k) for k in ("ingest.fresh.server_copy_binary", "ingest.fresh.server_copy_csv")]
    measured = [f for f in copies if f is not None and is_measured(f)]
    if measured:
        best = dict(min(measured, key=lambda f: float(f["median"])))
        best["label"] = f"server-side COPY FROM file, the faster format ({best['label'].split('(')[1].split(')')[0]})"
        figures[FRESH_LIMIT] = best
    elif copies and copies[0] is not None:
        figures[FRESH_LIMIT] = dict(copies[0])
    for key, base in BASELINE.items():
        fig, ref = figures.get(key), figures.get(base)
        if (is_measured(fig) and is_measured(ref) and key != base and fig is not None and ref is not None
                and fig["kind"] in ("time", "latency") and ref["kind"] in ("time", "latency")):
            mine, theirs = value(fig), value(ref)  # median s or p50 ms: the same unit for both
            if fig["kind"] != ref["kind"]:
                mine = mine * (1000 if fig["kind"] == "time" else 1) if mine is not None else None
                theirs = theirs * (1000 if ref["kind"] == "time" else 1) if theirs is not None else None
            if mine is not None and theirs:
                fig["ratio"] = mine / theirs
                fig["ratio_to"] = base


def _ratio(figures: Mapping[str, Figure], a: str, b: str) -> float | None:
    va, vb = value(figures.get(a)), value(figures.get(b))
    if va is None or vb is None or vb == 0:
        return None
    return va / vb


def _difference(figures: Mapping[str, Figure], a: str, b: str) -> float | None:
    va, vb = value(figures.get(a)), value(figures.get(b))
    return None if va is None or vb is None else va - vb


def _scale_points(figures: Mapping[str, Figure], kind: str) -> list[tuple[int, Figure]]:
    points = []
    for key, fig in figures.items():
        m = re.fullmatch(r"scale\.(\d+)\." + kind, key)
        if m and is_measured(fig):
            points.append((int(m.group(1)), fig))
    return sorted(points, key=lambda p: p[0])


def evaluate_targets(figures: Mapping[str, Figure]) -> list[dict[str, Any]]:
    """The issue's targets with the measured value and met / not met (None: not measured)."""
    out: list[dict[str, Any]] = []

    def add(name: str, measured: float | None, limit: float, *, higher_is_better: bool = False, unit: str = "x",
            where: str = "", floor_of: tuple[str, ...] = (), context: bool = False, judged_by: str = "") -> None:
        met = None if measured is None else (measured >= limit if higher_is_better else measured <= limit)
        role = "floor" if floor_of else "context" if context or judged_by else "target"
        out.append({"target": name, "measured": measured, "limit": limit, "unit": unit,
                    "comparison": ">=" if higher_is_better else "<=", "met": met, "where": where, "role": role,
                    "floor_of": list(floor_of), "judged_by": judged_by})

    add("fresh ingest vs server-side COPY FROM file", _ratio(figures, "ingest.fresh.regime_io", FRESH_LIMIT), 1.3)
    pandas = [value(figures.get(k)) for k in ("ingest.fresh.pandas_to_sql", "ingest.fresh.pandas_to_sql_multi")]
    pandas_best = min((p for p in pandas if p is not None), default=None)
    ours = value(figures.get("ingest.fresh.regime_io"))
    pandas_target = "fresh ingest speed-up over pandas.to_sql (its faster method, extrapolated)"
    add(pandas_target, None if pandas_best is None or not ours else pandas_best / ours, 10, higher_is_better=True)
    # The server reading a binary file itself is the fastest any client can ingest: where
    # pandas' executemany (psycopg pipelines it) is less than 10x slower than that, no
    # client reaches 10x (2026-12-06: 6.96x and 8.34x in two full runs).
    limit = value(figures.get(FRESH_LIMIT))
    add("ingest floor: server-side COPY FROM file's speed-up over pandas.to_sql (its faster method)",
        None if pandas_best is None or not limit else pandas_best / limit, 10, higher_is_better=True,
        floor_of=(pandas_target,))
    add("fresh ingest vs polars write_database(adbc)",
        _ratio(figures, "ingest.fresh.regime_io", "ingest.fresh.polars_adbc"), 1.0)
    add("re-ingest, every row colliding, vs server-side COPY",
        _ratio(figures, "ingest.reingest.all_colliding", FRESH_LIMIT), 3.0)
    add("range read into Polars vs COPY TO STDOUT BINARY",
        _ratio(figures, "read.range.regime_io", "read.range.copy_binary"), 1.5)
    scale_one = figures.get("latest.scale.one_symbol")
    add("latest row, one symbol, p50 warm", value(scale_one), 1.0, unit="ms",
        where=_where(scale_one))
    scale_all = figures.get("latest.scale.all_symbols")
    add("latest row, all symbols, p50 warm", value(scale_all), 10.0, unit="ms", where=_where(scale_all))
    ingest = _scale_points(figures, "ingest")
    if len(ingest) >= 2:
        (n0, f0), (n1, f1) = ingest[0], ingest[-1]
        add("ingest rate at the largest size vs the smallest", f1["rows_per_s"] / f0["rows_per_s"], 0.8,
            higher_is_better=True, where=f"{n0:,} -> {n1:,} rows (the issue asks 1M -> 50M)")
    else:
        add("ingest rate at the largest size vs the smallest", None, 0.8, higher_is_better=True)
    reads = _scale_points(figures, "one_day_read")
    growth = "1-day range read time, largest deviation from the smallest size"
    if len(reads) >= 2 and all(is_measured(figures.get(f"scale.{n}.one_day_read_ref")) for n, _ in reads):
        # Each size against the reference table (the smallest size's rows) read in the
        # same rounds: the blocks' p50s, minutes apart, moved by 20-28% with no change.
        drift = max(abs(f["p50"] / figures[f"scale.{n}.one_day_read_ref"]["p50"] - 1) for n, f in reads)
        add(growth, drift * 100, 20, unit="%", where=f"{reads[0][0]:,} -> {reads[-1][0]:,} rows, each size's reads "
            "in turn with the reference table's")
    elif len(reads) >= 2:  # results of runs before the reference table
        values = [f["p50"] for _, f in reads]
        drift = max(abs(v / values[0] - 1) for v in values)
        add(growth, drift * 100, 20, unit="%", where=f"{reads[0][0]:,} -> {reads[-1][0]:,} rows")
    else:
        add(growth, None, 20, unit="%")
    scans = _scale_points(figures, "scan_one_day")
    scan_line = "scan() of a 1-symbol day vs get_market_data of that day (pushdown)"
    if scans:
        size, scan = scans[-1]
        eager = figures.get(f"scale.{size}.one_day_read")
        eager_p50 = eager["p50"] if is_measured(eager) and eager is not None else None
        add(scan_line, None if eager_p50 is None else scan["p50"] / eager_p50, 1.5,
            where=f"{size:,} rows" + (", calls in turn" if "note" in scan else ""))
        inside = figures.get(f"scale.{size}.scan_one_day_inside")
        if inside is not None:  # (results from before 2026-12-06 have no floor)
            add("scan floor: get_market_data of that day run inside a bare polars IO plugin vs get_market_data",
                None if eager_p50 is None or not is_measured(inside) else inside["p50"] / eager_p50, 1.5,
                where=f"{size:,} rows, calls in turn", floor_of=(scan_line,))
    else:
        add(scan_line, None, 1.5)
    stream = figures.get("memory.stream_read")
    add("streaming read, peak RSS", value(stream), 500, unit="MB", where=_where(stream))
    _history_targets(figures, add)
    _verdicts(out)
    return out


def _verdicts(targets: list[dict[str, Any]]) -> None:
    """Each target's ``verdict``: met, ``explained`` (missed, and a floor of it measured in
    the same run misses too: the issue's "miss explained by a floor"), not met or not
    measured. A floor names the targets it explains (``floor_of``); a context line
    (``role`` "context") is shown, not judged."""
    by_name = {t["target"]: t for t in targets}
    floors: dict[str, list[dict[str, Any]]] = {}
    for t in targets:
        for name in t["floor_of"]:
            assert name in by_name and by_name[name]["role"] == "target", f"floor of an unknown target: {name}"
            floors.setdefault(name, []).append(t)
        if t["judged_by"]:
            assert by_name[t["judged_by"]]["role"] == "target", f"judged by an unknown target: {t['judged_by']}"
    for t in targets:
        if t["role"] == "context":
            t["verdict"] = "context"
        elif t["met"] is None:
            t["verdict"] = "not measured"
        elif t["met"]:
            t["verdict"] = "met"
        elif t["role"] == "floor":
            t["verdict"] = "floor misses"
        else:
            missing = [f for f in floors.get(t["target"], []) if f["met"] is False]
            t["verdict"] = "explained" if missing else "not met"
            t["explained_by"] = [f["target"] for f in missing]


def verdict_summary(targets: list[dict[str, Any]]) -> str:
    """One line: how many targets were met, missed with a floor that misses too
    (explained), missed unexplained (named) and not measured."""
    judged = [t for t in targets if t["role"] == "target"]
    count = {v: [t for t in judged if t["verdict"] == v] for v in ("met", "explained", "not met", "not measured")}
    unexplained = "; ".join(f"#{targets.index(t) + 1} {t['target']}" for t in count["not met"])
    return (f"{len(judged)} targets: {len(count['met'])} met, {len(count['explained'])} missed with a floor that "
            f"misses too (explained), {len(count['not met'])} missed and not explained"
            f"{': ' + unexplained if unexplained else ''}, {len(count['not measured'])} not measured.")


def _history_targets(figures: Mapping[str, Figure], add: Any) -> None:
    """Issue 12: item 6 (row-tier reads vs COPY-out) and item 7 (sealed tier vs ArcticDB);
    issue 23's targets. Where the sealed tier's run and ArcticDB's alternate (one of each
    per round), the alternated line is judged and the blocks' line (minutes apart) is
    context: over five runs of one library on the 2-core VM, the blocks' ratio for one
    symbol's whole range moved 1.17-1.83 and the alternated one 1.31-1.35 (round 18)."""
    server = figures.get("history.read_all.copy", {}).get("server", "")
    add("row tier: read every symbol vs COPY-out of the same rows",
        _ratio(figures, "history.read_all.row", "history.read_all.copy"), 1.5, where=server)
    add("row tier: read 1 symbol (whole range) vs COPY-out of the same rows",
        _ratio(figures, "history.read_symbol.row", "history.read_symbol.copy"), 1.5, where=server)
    add("row tier: read 1 symbol x 1 month vs COPY-out of the same rows",
        _ratio(figures, "history.read_month.row", "history.read_month.copy"), 1.5, where=server)
    alternated = {key: f"sealed vs ArcticDB, runs alternated: {what}" for key, what, _ in ALTERNATED}
    for key, _, limit in ALTERNATED:
        add(alternated[key], paired_ratio(figures.get(f"history.alternated.{key}.sealed"),
                                          figures.get(f"history.alternated.{key}.arcticdb")),
            limit, where="median of each round's ratio (one run of each per round)")
    for key, what in (("read_all", "all bars"), ("read_symbol", "1 symbol, whole range"),
                      ("read_month", "1 symbol x 1 month"), ("read_day", "1 symbol x 1 day (p50)")):
        add(f"sealed: {what} vs ArcticDB (blocks)",
            _ratio(figures, f"history.{key}.sealed", f"history.{key}.arcticdb"), 1.5, judged_by=alternated[key])
        add(f"sealed floor (fetch + decode only): {what} vs ArcticDB",
            _ratio(figures, f"history.floor.{key}", f"history.{key}.arcticdb"), 1.5, floor_of=(alternated[key],))
    for key, what in (("read_all", "all bars"), ("read_symbol", "1 symbol, whole range")):
        add(f"sealed, return_type='arrow': {what} vs ArcticDB (blocks)",
            _ratio(figures, f"history.{key}_arrow.sealed", f"history.{key}.arcticdb"), 1.5,
            where="the same read without the conversion to polars", context=True)
    add("sealed: read all bars, speed-up over COPY-out of the same rows as row data",
        _ratio(figures, "history.read_all.copy", "history.read_all.sealed"), 5, higher_is_better=True)
    row_day = "row tier: 1 symbol x 1 day vs ArcticDB (p50)"
    add(row_day, _ratio(figures, "history.read_day.row", "history.read_day.arcticdb"), 1.5)
    # Shown, not judged: each alternated run follows a gc.collect() and ArcticDB's read, so
    # it is a cold call (5.8 ms where the warm p50 is ~2.5; ArcticDB's ~3 either way).
    add("row tier: 1 symbol x 1 day vs ArcticDB, runs alternated (cold calls)",
        paired_ratio(figures.get("history.alternated.read_day_row.row"),
                     figures.get("history.alternated.read_day_row.arcticdb")), 1.5,
        where="median of each round's ratio (one run of each per round)", judged_by=row_day)
    backfill = "sealed: backfill (save tier='sealed') vs ArcticDB write"
    add(backfill, _ratio(figures, "history.write.sealed", "history.write.arcticdb"), 3)
    add("backfill floor (encode the chunks + COPY the payloads) vs ArcticDB write",
        _ratio(figures, "history.floor.backfill", "history.write.arcticdb"), 3, floor_of=(backfill,))
    musts = [value(figures.get(k)) for k in ("history.floor.backfill", "history.floor.backfill_validate",
                                             "history.floor.backfill_changes")]
    arctic = value(figures.get("history.write.arcticdb"))
    parts = [m for m in musts if m is not None]
    add("backfill floor + validation + change log (what every sealed write does) vs ArcticDB write",
        sum(parts) / arctic if len(parts) == len(musts) and arctic else None, 3, floor_of=(backfill,))
    add("sealed: restate 1 day x every symbol vs ArcticDB update (blocks)",
        _ratio(figures, "history.restate.sealed", "history.restate.arcticdb"), 2, judged_by=alternated["restate"])
    # Shown, not judged: a day's first restatement against ArcticDB's update of a day it
    # updated before, whose first update of a day took 40-134 ms and the same day again
    # 14-24 (round 17). Judged like for like: the alternated first-restatement line.
    add("sealed: a day's first restatement (its payloads read) vs ArcticDB's update of a day it updated before "
        "(not like for like)", _ratio(figures, "history.restate_first.sealed", "history.restate.arcticdb"), 2,
        judged_by=alternated["restate_first"])
    add("restate floor (lock + fetch the chunk rows, write the patches) vs ArcticDB update",
        _ratio(figures, "history.floor.restate", "history.restate.arcticdb"), 2,
        floor_of=(alternated["restate"], alternated["restate_cold"]))
    add("sealed: all bars after the restatement (patched months) vs ArcticDB (blocks)",
        _ratio(figures, "history.read_all_patched.sealed", "history.read_all.arcticdb"), 1.5,
        judged_by=alternated["read_all_patched"])
    add("sealed floor (fetch + decode the chunks and their patches): all bars after the restatement vs ArcticDB",
        _ratio(figures, "history.floor.read_all_patched", "history.read_all.arcticdb"), 1.5,
        floor_of=(alternated["read_all_patched"],))
    storage = figures.get("history.storage.sealed")
    add("sealed: whole schema per bar right after seal() returns (no VACUUM)", value(storage), 20, unit="B",
        where=f"{storage['rows']:,} bars" if is_measured(storage) and storage else "")
    seal = figures.get("history.seal.sealed")
    seal_line = "sealed: seal the bars (rows -> chunks)"
    add(seal_line, value(seal), 1.0, unit="s",
        where=f"{seal['rows']:,} bars" if is_measured(seal) and seal and seal.get("rows") else "")
    # A seal reads every row it moves out of the row tier (COPY-out of them), stores them as
    # chunks (the backfill's floor: encode + COPY the payloads) and deletes them: its floor.
    # (Without the chunks' part the floor sat at 0.99-1.02 s on the 2026-12-06 machine, a
    # coin toss against the 1 s limit for a seal of ~2 s.)
    parts = [value(figures.get(k)) for k in ("history.read_all.copy", "history.floor.backfill",
                                              "history.floor.seal_delete")]
    add("seal floor: COPY-out of the bars the seal reads + encoding and storing their chunks + DELETE of them",
        None if any(p is None for p in parts) else sum(p for p in parts if p is not None), 1.0,
        unit="s", floor_of=(seal_line,))
    latest = figures.get("history.latest.sealed")
    add("sealed: latest row of 1 symbol, p50 warm", value(latest), 1.0, unit="ms")
    # The two tiers' calls alternated in the same seconds where measured; else the two
    # figures timed minutes apart.
    pair = ("history.latest_alternated.sealed", "history.latest_alternated.row")
    if not is_measured(figures.get(pair[0])):
        pair = ("history.latest.sealed", "history.latest.row")
    latest_line = "sealed: latest row of 1 symbol vs the row tier's" + (
        ", calls alternated" if "alternated" in pair[0] else "")
    add(latest_line, _ratio(figures, *pair), 1.0)
    # What the sealed lookup does that the row tier's does not: rebuild the row from JSON.
    json_cost = _difference(figures, "history.floor.latest_json", "history.floor.latest_stored")
    row_latest = value(figures.get(pair[1]))
    add("latest floor: the row tier's latest row + rebuilding the row from the chunk's JSON, vs the row tier's",
        None if json_cost is None or not row_latest else (row_latest + json_cost) / row_latest, 1.0,
        floor_of=(latest_line,))
    for tier in ("row", "sealed"):
        scan = f"{tier} tier: scan() of a 1-symbol month vs the eager read of it, runs alternated"
        month, eager, plugin, inside = (figures.get(f"history.scan_{part}.{tier}")
                                        for part in ("month", "eager", "plugin", "inside"))
        add(scan, paired_ratio(month, eager), 1.2, where="median of each round's ratio (one run of each per round)")
        if inside is not None:
            add(f"{tier} tier scan floor: the eager read run inside a bare polars IO plugin vs the eager read",
                paired_ratio(inside, eager), 1.2, floor_of=(scan,), where="runs of the same rounds")
        else:  # (results from before 2026-12-06: the plugin timed apart, its time added)
            add(f"{tier} tier scan floor: the eager read + polars' IO-plugin overhead vs the eager read",
                paired_sum_ratio(eager, plugin), 1.2, floor_of=(scan,), where="the eager read and the plugin of the "
                "same rounds")
    sealed_stream = figures.get("memory.stream_sealed")
    add("sealed: streaming read, peak RSS", value(sealed_stream), 500, unit="MB", where=_where(sealed_stream))
    append = figures.get("regimes.rolling_save")
    add("1-minute append (save_rolling_market_regime) p50, kept (2026-11-24: 5.56 ms, +25%)", value(append),
        round(APPEND_BEFORE_MS * 1.25, 2), unit="ms")


def _where(fig: Figure | None) -> str:
    if not fig:
        return ""
    m = re.search(r"\(([^()]*rows[^()]*)\)\s*$", fig.get("label", ""))
    if m:
        return m.group(1)
    return f"{fig['rows']:,} rows" if fig.get("rows") else ""


# ---------------------------------------------------------------------------------------
# Formatting


def _secs(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f} s"
    if v >= 1:
        return f"{v:.2f} s"
    return f"{v * 1000:.0f} ms" if v >= 0.01 else f"{v * 1000:.2f} ms"


def _ms(v: float) -> str:
    return f"{v:.2f} ms" if v < 10 else f"{v:,.1f} ms"


def _row(key: str, fig: Figure) -> str:
    label = fig.get("label", key)
    if not is_measured(fig):
        return f"| {label} | | n/a | | | not measured: {fig.get('reason', '?')} |"
    kind = fig["kind"]
    rows = f"{fig['rows']:,}" if fig.get("rows") else ""
    if kind == "time":
        median = _secs(fig["median"])
        spread = f"{_secs(fig['min'])} – {_secs(fig['max'])} (n={len(fig['samples'])})"
        rate = f"{fig['rows_per_s']:,.0f} rows/s" if fig.get("rows_per_s") else ""
        ratio = f"{fig['ratio']:.2f}× {_short(fig['ratio_to'])}" if "ratio" in fig else ""
        return f"| {label} | {rows} | {median} | {spread} | {rate} | {ratio} |"
    if kind == "latency":
        ratio = f"{fig['ratio']:.2f}× {_short(fig['ratio_to'])}" if "ratio" in fig else ""
        return (f"| {label} | | p50 {_ms(fig['p50'])} | p99 {_ms(fig['p99'])}, min {_ms(fig['min'])}, "
                f"max {_ms(fig['max'])} (n={fig['calls']}) | | {ratio} |")
    if kind == "size":
        return (f"| {label} | {rows} | {fig['bytes_per_row']:,.1f} B/bar | {fig['bytes'] / 2**20:,.1f} MB in all | "
                "| |")
    if kind == "rss":
        rate = f"{fig['rows_per_s']:,.0f} rows/s" if fig.get("rows_per_s") else ""
        sampled = f", sampled peak {fig['sampled_peak_mb']:,.0f} MB" if fig.get("sampled_peak_mb") else ""
        return (f"| {label} | {rows} | peak {fig['peak_mb']:,.0f} MB | {fig['before_mb']:,.0f} MB before the work"
                f"{sampled}, {fig['seconds']:.1f} s | {rate} | |")
    return f"| {label} | | ? | | | |"


def _short(key: str) -> str:
    short = {FRESH_LIMIT: "server COPY", "read.range.copy_binary": "COPY TO STDOUT"}
    if key.startswith("history."):
        return {"copy": "COPY-out", "arcticdb": "ArcticDB"}.get(key.rsplit(".", 1)[1], key)
    return short.get(key, key)


def markdown(meta: Mapping[str, Any], figures: Mapping[str, Figure], targets: list[dict[str, Any]]) -> str:
    m = meta["machine"]
    s = meta["server"]
    lines = [
        f"Run {meta['started']} on `{m['host']}`: {m['cpu']}, {m['cores_logical']} logical cores, "
        f"{m['ram_gb']} GB RAM, {m['os']}; PostgreSQL {s['version']} ({s['kind']} server; shared_buffers "
        f"{s['settings'].get('shared_buffers')}, synchronous_commit {s['settings'].get('synchronous_commit')}); "
        "a shared machine (other work ran at the same time); load average at start "
        f"{', '.join(str(x) for x in m['load_average_at_start'])}. Options: `{meta['command']}`. "
        f"Total {meta['seconds']:.0f} s.",
        "",
        "Times are medians over the runs (n) with min – max; ratios are against a baseline measured in the same "
        "run (> 1 is slower than the baseline).",
        "",
    ]
    for prefix, title in SECTIONS:
        keys = [k for k in figures if k.startswith(prefix)]
        if not keys:
            continue
        lines += [f"#### {title}", "", "| Measurement | Rows | Median | Spread | Rate | Ratio |",
                  "|---|---:|---:|---|---:|---|"]
        for key in _ordered(keys):
            lines.append(_row(key, figures[key]))
        lines.append("")
    lines += ["#### Targets (issues 6, 12 and 23)", "",
              "A floor is the least work the line it names must do, measured in the same run: a target missed "
              "while a floor of it misses too is *explained* (issue 23's rule); a context line is shown, not judged.",
              "", "| # | Target | Measured | Limit | Where | Verdict |", "|---:|---|---:|---:|---|---|"]
    number = {t["target"]: i for i, t in enumerate(targets, 1)}
    for i, t in enumerate(targets, 1):
        unit = t["unit"] if t["unit"] == "x" else " " + t["unit"]
        measured = "n/a" if t["measured"] is None else f"{t['measured']:.2f}{unit}"
        where = "; ".join(w for w in (t["where"], _floor_note(t, number)) if w)
        verdict = {"met": "met", "explained": "not met, explained ({})", "not met": "**not met**",
                   "not measured": "not measured", "floor misses": "floor: misses", "context": "context"}[t["verdict"]]
        verdict = verdict.format(", ".join(f"floor #{number[f]}" for f in t.get("explained_by", ())))
        if t["role"] == "floor" and t["verdict"] == "met":
            verdict = "floor: met"
        lines.append(f"| {i} | {t['target']} | {measured} | {t['comparison']} {t['limit']:g}{unit} | {where} "
                     f"| {verdict} |")
    lines += ["", f"**Verdict:** {verdict_summary(targets)}"]
    return "\n".join(lines) + "\n"


def _floor_note(target: Mapping[str, Any], number: Mapping[str, int]) -> str:
    if target["judged_by"]:
        return f"judged by #{number[target['judged_by']]}"
    if not target["floor_of"]:
        return ""
    return "floor of " + ", ".join(f"#{number[name]}" for name in target["floor_of"])


def _ordered(keys: list[str]) -> list[str]:
    def sort_key(k: str) -> tuple[Any, ...]:
        m = re.fullmatch(r"scale\.(\d+)\.(.*)", k)
        return (0, int(m.group(1)), m.group(2)) if m else (1, 0, "")

    scale = sorted((k for k in keys if k.startswith("scale.")), key=sort_key)
    return scale if scale else keys


def write_json(path: Path, meta: Mapping[str, Any], figures: Mapping[str, Figure],
               targets: list[dict[str, Any]], *, secrets: list[str]) -> None:
    text = json.dumps({"meta": meta, "figures": figures, "targets": targets}, indent=2, default=str)
    for secret in secrets:
        if secret and secret in text:  # belt and braces: the URL is never stored, but check
            raise RuntimeError("refusing to write results that contain the server password")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def update_docs(path: Path, table: str, *, results_file: str) -> None:
    """Replace the generated block of ``docs/performance.md`` with the latest table."""
    text = path.read_text() if path.exists() else f"# Performance\n\n{RESULTS_BEGIN}\n{RESULTS_END}\n"
    if RESULTS_BEGIN not in text or RESULTS_END not in text:
        text += f"\n{RESULTS_BEGIN}\n{RESULTS_END}\n"
    head, rest = text.split(RESULTS_BEGIN, 1)
    _, tail = rest.split(RESULTS_END, 1)
    block = (f"{RESULTS_BEGIN}\n<!-- generated by `python -m benchmarks.run`; raw numbers in "
             f"`{results_file}` -->\n\n{table}\n{RESULTS_END}")
    path.write_text(head + block + tail)


def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")
