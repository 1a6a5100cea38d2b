"""Smoke test of the benchmark harness: tiny sizes, every figure produced, no timing assertions.

The harness runs against the session's test server (``--dsn``), writes its JSON and
Markdown to a temporary directory and must produce every figure it promises, each
measured (not "unavailable"), plus a verdict for every target of issue 6 and for the
issue-12 targets whose inputs are measured (ArcticDB is a ``bench`` extra that CI does not
install: its figures may be "unavailable", with the reason).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.measure import alternated_times, is_measured, paired_ratio, paired_sum_ratio
from benchmarks.report import RESULTS_BEGIN, RESULTS_END, expected_figures
from benchmarks.run import main

SCALE = [4000, 8000]
TINY = ["--rows", "4000", "--symbols", "4", "--repeats", "2", "--slow-repeats", "1",
        "--scale", ",".join(map(str, SCALE)), "--scale-symbols", "10", "--scale-batch", "1000", "--scale-batches", "2",
        "--pandas-rows", "1000", "--latency-calls", "10", "--regime-days", "3", "--rolling-calls", "5",
        "--parquet-rows", "5000", "--batch-rows", "1000", "--history-symbols", "3", "--history-minutes", "3000"]


@pytest.fixture(scope="module")
def run(server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    docs = out / "performance.md"
    docs.write_text(f"# Performance\n\nintro\n\n{RESULTS_BEGIN}\nold table\n{RESULTS_END}\n\noutro\n")
    code = main([*TINY, "--dsn", server.url(), "--output", str(out / "results.json"),
                 "--markdown", str(out / "table.md"), "--docs", str(docs)])
    return {"code": code, "server": server, "json": json.loads((out / "results.json").read_text()),
            "markdown": (out / "table.md").read_text(), "docs": docs.read_text(), "url": server.url()}


def test_exits_cleanly(run: dict[str, Any]) -> None:
    assert run["code"] == 0


def _arcticdb_installed() -> bool:
    try:
        import arcticdb  # noqa: F401
    except ImportError:
        return False
    return True


def _may_be_unavailable(run: dict[str, Any], key: str) -> bool:
    # Server-side COPY FROM 'file' needs the server on this machine (not a container).
    if key.endswith(".arcticdb") or key.startswith("history.alternated."):  # runs beside ArcticDB's
        return not _arcticdb_installed()
    return run["server"].kind != "embedded" and key.startswith("ingest.fresh.server_copy")


@pytest.mark.parametrize("key", expected_figures(SCALE))
def test_every_figure_is_measured(run: dict[str, Any], key: str) -> None:
    figures = run["json"]["figures"]
    assert key in figures, f"{key} missing from the results"
    fig = figures[key]
    if _may_be_unavailable(run, key) and not is_measured(fig):
        assert fig["reason"]
        return
    assert is_measured(fig), fig.get("reason")
    if fig["kind"] == "time":
        assert len(fig["samples"]) >= 1 and fig["min"] <= fig["median"] <= fig["max"]
        assert fig["median"] > 0
    elif fig["kind"] == "latency":
        assert fig["calls"] >= 5 and fig["min"] <= fig["p50"] <= fig["p99"] <= fig["max"]
    elif fig["kind"] == "size":
        assert fig["bytes"] > 0 and fig["bytes_per_row"] == pytest.approx(fig["bytes"] / fig["rows"])
    else:
        assert fig["kind"] == "rss" and fig["peak_mb"] >= fig["before_mb"] > 0
    assert fig["label"] in run["markdown"], f"{key} is not in the Markdown table"


def test_ratios_against_same_run_baselines(run: dict[str, Any]) -> None:
    figures = run["json"]["figures"]
    ours = figures["ingest.fresh.regime_io"]
    assert ours["ratio_to"] == "ingest.fresh.server_copy"
    assert ours["ratio"] == pytest.approx(ours["median"] / figures["ingest.fresh.server_copy"]["median"])
    read = figures["read.range.regime_io"]
    assert read["ratio"] == pytest.approx(read["median"] / figures["read.range.copy_binary"]["median"])
    pandas = figures["ingest.fresh.pandas_to_sql"]
    assert pandas["measured_rows"] == 1000 and pandas["extrapolated_to_rows"] == 4000
    assert figures["ingest.fresh.pandas_to_sql_multi"]["measured_rows"] == 100
    assert "extrapolated" in pandas["label"]


def test_every_target_has_a_verdict(run: dict[str, Any]) -> None:
    targets = run["json"]["targets"]
    names = [t["target"] for t in targets]
    # Issue 6's ten targets come first; issue 12's (items 6 and 7) are all there.
    assert len(names) >= 23 and len(set(names)) == len(names)
    for wanted in ("row tier: read every symbol", "row tier: read 1 symbol (whole range)",
                   "sealed: all bars vs ArcticDB (blocks)", "sealed vs ArcticDB, runs alternated: all bars",
                   "sealed: read all bars, speed-up", "sealed: 1 symbol x 1 month", "sealed: 1 symbol x 1 day",
                   "sealed: backfill", "sealed: restate", "sealed: whole schema per bar", "sealed: streaming read",
                   "1-minute append", "sealed: seal the bars", "sealed: latest row of 1 symbol, p50",
                   "sealed: latest row of 1 symbol vs the row tier", "latest floor: the row tier",
                   "row tier: scan() of a 1-symbol month",
                   "sealed tier: scan() of a 1-symbol month", "sealed: 1 symbol, whole range"):
        assert any(n.startswith(wanted) for n in names), wanted
    for target in targets:
        if "ArcticDB" in target["target"] and not _arcticdb_installed():
            assert target["measured"] is None and target["met"] is None, target
            assert target["verdict"] in ("not measured", "context"), target
        else:
            assert target["measured"] is not None, target
            assert target["met"] in (True, False)
        assert target["target"] in run["markdown"]
    # Issue 23's rule, judged by the report: a missed target is explained only by a floor
    # of it (named) that misses in the same run; a context line is never judged.
    by_name = {t["target"]: t for t in targets}
    for target in targets:
        for name in target["floor_of"]:
            assert by_name[name]["role"] == "target", name
        if target["verdict"] == "explained":
            assert target["met"] is False and target["explained_by"], target
            for floor in target["explained_by"]:
                assert by_name[floor]["met"] is False and target["target"] in by_name[floor]["floor_of"]
        elif target["role"] == "target" and target["met"] is False:
            assert target["verdict"] == "not met"
    # Context lines (the blocks' ratios beside an alternated line, the Arrow reads) are
    # shown beside the line that is judged, never counted.
    for target in targets:
        if target["role"] == "context":
            assert target["judged_by"] or "return_type='arrow'" in target["target"], target
            if target["judged_by"]:
                assert by_name[target["judged_by"]]["role"] == "target"
    assert any(t["judged_by"] == "sealed vs ArcticDB, runs alternated: 1 symbol, whole range" for t in targets)
    assert any(t["floor_of"] for t in targets if "seal floor" in t["target"])
    assert "**Verdict:** " in run["markdown"]


def test_history_shape(run: dict[str, Any]) -> None:
    figures = run["json"]["figures"]
    # 3 symbols x 3,000 consecutive minutes from 2024-01-01: the middle bar's day is 2024-01-02.
    assert figures["history.read_all.row"]["rows"] == 9000
    assert figures["history.read_month.row"]["rows"] == 3000
    assert "2024-01-02" in figures["history.read_day.row"]["label"]
    assert figures["history.read_all.row"]["ratio_to"] == "history.read_all.copy"
    assert "server" in figures["history.read_all.copy"]
    sealed = figures["history.seal.sealed"]
    assert "9,000 rows" in sealed["report"]
    # Issue 23: the restatement's floor, a read of the patched months, the backfill's musts.
    assert figures["history.floor.restate"]["rows"] == 3 * 1440
    assert figures["history.read_all_patched.sealed"]["rows"] == 9000
    assert figures["history.floor.read_all_patched"]["rows"] == 9000
    assert figures["history.floor.backfill_validate"]["rows"] == figures["history.floor.backfill_changes"]["rows"]
    # Issue 23: the sealed tier's runs alternated with ArcticDB's (when installed).
    for key in ("read_all", "read_symbol", "read_month", "read_day", "restate", "read_all_patched"):
        pair = [figures[f"history.alternated.{key}.{tier}"] for tier in ("sealed", "arcticdb")]
        if _arcticdb_installed():
            assert len(pair[0]["samples"]) == len(pair[1]["samples"]) >= 2, key
    # A day's first restatement, a different day each round (warm-up: the first day): the
    # 3,000 minutes hold one other whole day (January 1st) and a short one (January 3rd).
    first = figures["history.restate_first.sealed"]
    assert len(first["samples"]) == (1 if _arcticdb_installed() else 2)
    if _arcticdb_installed():
        pair = [figures[f"history.alternated.restate_first.{tier}"] for tier in ("sealed", "arcticdb")]
        assert len(pair[0]["samples"]) == len(pair[1]["samples"]) == 1
    # The latest row's floor: the JSON rebuild measured beside a lookup without it.
    assert figures["history.floor.latest_json"]["calls"] == figures["history.floor.latest_stored"]["calls"] > 0


def test_results_describe_the_machine_without_secrets(run: dict[str, Any]) -> None:
    meta = run["json"]["meta"]
    assert meta["machine"]["cores_logical"] >= 1 and meta["machine"]["ram_gb"] > 0
    assert meta["server"]["version"] and meta["server"]["shared_machine"] is True
    text = json.dumps(run["json"])
    assert run["url"] not in text
    password = run["server"].settings.password.get()
    if password:
        assert password not in text and password not in run["markdown"]


def test_docs_block_replaced(run: dict[str, Any]) -> None:
    docs = run["docs"]
    assert "old table" not in docs and "intro" in docs and "outro" in docs
    assert docs.count(RESULTS_BEGIN) == 1 and "| Target | Measured |" in docs


def test_tables_cleaned_up(run: dict[str, Any]) -> None:
    import psycopg

    with psycopg.connect(run["url"]) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'rio_bench_%'").fetchall()
    assert rows == []


def test_rejects_unknown_sections(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--sections", "write,nonsense", "--output", str(tmp_path / "x.json")])
    assert info.value.code == 2  # argparse's usage error, not a clean exit
    assert "unknown sections ['nonsense']; allowed: " in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_alternated_runs_pair_by_round() -> None:
    calls: list[str] = []
    figures = alternated_times({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=4,
                               labels={"a": "A", "b": "B"}, warmup=0)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]  # the order flips every round
    assert len(figures["a"]["samples"]) == len(figures["b"]["samples"]) == 4
    assert "alternated with B" in figures["a"]["note"]
    # The median of each round's ratio, not the ratio of the medians (here 2.0 against 1.5).
    a = {"kind": "time", "label": "a", "samples": [2.0, 4.0, 6.0]}
    b = {"kind": "time", "label": "b", "samples": [1.0, 2.0, 6.0]}
    assert paired_ratio(a, b) == 2.0
    assert paired_ratio(a, {"kind": "time", "label": "b", "status": "unavailable", "reason": "x"}) is None
    # A floor of a run plus an overhead of the same round: (2+1)/2, (4+2)/4, (6+6)/6 -> 1.5.
    assert paired_sum_ratio(a, b) == 1.5


def test_the_rounds_plot_draws_every_round_the_verdict_judged(run: dict[str, Any], tmp_path: Path) -> None:
    """Per alternated line, the rounds the verdict's median comes from (ArcticDB is not
    in the test extra: the tiny run's figures stand in for ArcticDB's too, reversed)."""
    import statistics

    from benchmarks.report import ALTERNATED
    from benchmarks.rounds import plot_rounds, rounds_of

    measured = [f for f in run["json"]["figures"].values() if f.get("kind") == "time" and len(f.get("samples", ())) > 2]
    figures: dict[str, Any] = {}
    for n, (key, _, _) in enumerate(ALTERNATED):
        ours = measured[n % len(measured)]
        figures[f"history.alternated.{key}.sealed"] = ours
        figures[f"history.alternated.{key}.arcticdb"] = {**ours, "samples": ours["samples"][::-1]}
    rounds = rounds_of(figures)
    assert set(rounds) == {key for key, _, _ in ALTERNATED}
    for key, ratios in rounds.items():
        sealed, arctic = figures[f"history.alternated.{key}.sealed"], figures[f"history.alternated.{key}.arcticdb"]
        assert ratios == [a / b for a, b in zip(sealed["samples"], arctic["samples"], strict=True)]
        assert statistics.median(ratios) == paired_ratio(sealed, arctic)  # the plot's medians are the verdict's
    assert rounds_of(run["json"]["figures"]).keys() <= rounds.keys()  # (a run without ArcticDB: none)
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"figures": figures}))
    png = plot_rounds([results, results], tmp_path / "rounds.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def _seconds(median: float) -> dict[str, Any]:
    return {"kind": "time", "median": median, "label": "t"}


@pytest.mark.parametrize(("delete", "verdict"), [(0.5, "explained"), (0.1, "not met")])
def test_a_miss_is_explained_only_by_its_floor_missing(delete: float, verdict: str) -> None:
    """The seal misses 1 s; its floor (COPY-out of the rows + their chunks stored + DELETE)
    misses too when the DELETE takes 0.5 s (explained), not when it takes 0.1 s (a miss of
    the seal's own)."""
    from benchmarks.report import evaluate_targets, verdict_summary

    figures = {"history.seal.sealed": _seconds(2.5), "history.read_all.copy": _seconds(0.7),
               "history.floor.backfill": _seconds(0.15), "history.floor.seal_delete": _seconds(delete)}
    targets = {t["target"]: t for t in evaluate_targets(figures)}
    seal = targets["sealed: seal the bars (rows -> chunks)"]
    assert seal["met"] is False and seal["verdict"] == verdict
    floor = targets["seal floor: COPY-out of the bars the seal reads + encoding and storing their chunks + "
                    "DELETE of them"]
    assert floor["floor_of"] == [seal["target"]] and floor["role"] == "floor"
    assert floor["measured"] == pytest.approx(0.85 + delete)
    # A part not measured leaves the floor unmeasured (never a smaller sum).
    del figures["history.floor.backfill"]
    assert {t["target"]: t for t in evaluate_targets(figures)}[floor["target"]]["measured"] is None
    summary = verdict_summary(list(targets.values()))
    assert ("1 missed and not explained" in summary) == (verdict == "not met")


@pytest.mark.parametrize(("pandas", "verdict"), [(27.0, "explained"), (42.0, "not met")])
def test_the_pandas_speed_up_is_explained_by_the_servers_own_copy(pandas: float, verdict: str) -> None:
    """10x pandas.to_sql is out of reach when the server's COPY FROM file is itself less
    than 10x faster than pandas (27 s vs 3.9 s: explained); at 42 s (10.8x) it is regime_io's miss."""
    from benchmarks.report import evaluate_targets

    figures = {"ingest.fresh.regime_io": _seconds(4.5), "ingest.fresh.server_copy": _seconds(3.9),
               "ingest.fresh.pandas_to_sql": _seconds(pandas), "ingest.fresh.pandas_to_sql_multi": _seconds(168.0)}
    targets = {t["target"]: t for t in evaluate_targets(figures)}
    speed_up = targets["fresh ingest speed-up over pandas.to_sql (its faster method, extrapolated)"]
    assert speed_up["measured"] == pytest.approx(pandas / 4.5) and speed_up["met"] is False
    assert speed_up["verdict"] == verdict


def _p50(ms: float, *, note: str | None = None) -> dict[str, Any]:
    return {"kind": "latency", "p50": ms, "label": "l", **({"note": note} if note else {})}


def test_the_read_at_each_size_is_judged_against_the_reference_read_in_its_rounds() -> None:
    """The blocks' p50s (2.0 / 2.6 / 2.5 ms) drift 30%; against the reference table read
    in the same rounds (2.1 / 2.5 / 2.4 ms) the largest deviation is 5%."""
    from benchmarks.report import evaluate_targets

    figures: dict[str, Any] = {}
    for size, read, ref in ((1_000_000, 2.0, 2.1), (5_000_000, 2.6, 2.5), (10_000_000, 2.5, 2.4)):
        figures[f"scale.{size}.one_day_read"] = _p50(read, note="in turn")
        figures[f"scale.{size}.one_day_read_ref"] = _p50(ref, note="in turn")
        figures[f"scale.{size}.scan_one_day"] = _p50(read * 1.2, note="in turn")
    targets = {t["target"]: t for t in evaluate_targets(figures)}
    growth = targets["1-day range read time, largest deviation from the smallest size"]
    assert growth["measured"] == pytest.approx(100 * (2.0 / 2.1 - 1) * -1) and growth["met"] is True
    scan = targets["scan() of a 1-symbol day vs get_market_data of that day (pushdown)"]
    assert scan["measured"] == pytest.approx(1.2) and "in turn" in scan["where"]
    del figures["scale.5000000.one_day_read_ref"]  # an older run's results: the blocks' p50s
    growth = {t["target"]: t for t in evaluate_targets(figures)}[growth["target"]]
    assert growth["measured"] == pytest.approx(30.0) and growth["met"] is False


@pytest.mark.parametrize(("inside", "verdict"), [(3.2, "explained"), (2.4, "not met")])
def test_the_day_scan_is_explained_only_by_the_read_inside_a_bare_plugin(inside: float, verdict: str) -> None:
    """scan() of a day at 1.7x the eager read (2.0 ms) misses 1.5x; when the same eager read
    run by a bare IO plugin takes 3.2 ms (1.6x) the miss is polars' (explained); at 2.4 ms
    (1.2x) it is scan()'s own."""
    from benchmarks.report import evaluate_targets

    figures = {"scale.1000000.one_day_read": _p50(2.0, note="in turn"),
               "scale.1000000.scan_one_day": _p50(3.4, note="in turn"),
               "scale.1000000.scan_one_day_inside": _p50(inside, note="in turn")}
    targets = {t["target"]: t for t in evaluate_targets(figures)}
    scan = targets["scan() of a 1-symbol day vs get_market_data of that day (pushdown)"]
    assert scan["measured"] == pytest.approx(1.7) and scan["verdict"] == verdict
    floor = targets["scan floor: get_market_data of that day run inside a bare polars IO plugin vs get_market_data"]
    assert floor["measured"] == pytest.approx(inside / 2.0) and floor["floor_of"] == [scan["target"]]


def test_a_terminated_run_stops_its_embedded_server(tmp_path: Path) -> None:
    """SIGTERM (``timeout``, a CI cancel) ends a run through its cleanup: the embedded
    server it started is stopped (its socket gone), not left running."""
    import signal
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-c", "import time\nfrom benchmarks.server import bench_server\n"
         "with bench_server(None) as s:\n    print(s.settings.host, s.settings.port, flush=True)\n    time.sleep(120)"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        assert child.stdout is not None
        host, port = child.stdout.readline().split()
        socket = Path(host) / f".s.PGSQL.{port}"
        assert socket.exists()  # the server is up
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == 128 + signal.SIGTERM
        assert not socket.exists()
    finally:
        child.kill()
