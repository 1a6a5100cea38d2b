"""The README opens with its two commands, CI runs the test one exactly, its Python example
runs, and every command of its command-line section answers with data after the demo."""

from __future__ import annotations

import re
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from regime_io.config import Settings
from tests._helpers import assert_demo_untouched, load_demo

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

INSTALL = 'python -m venv .venv && .venv/bin/pip install -e ".[test]"'
DEMO = f"{INSTALL} && .venv/bin/regime-io demo"
TEST = f"{INSTALL} && .venv/bin/python -m pytest"


def test_readme_opens_with_the_demo_and_the_test_commands() -> None:
    """Two commands, each complete on its own in a fresh clone, and nothing else in the block."""
    lines = README.splitlines()
    assert lines[:4] == ["```bash", DEMO, TEST, "```"]


def test_ci_runs_exactly_the_readme_commands() -> None:
    script = ROOT / ".ci" / "run"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert script.stat().st_mode & 0o111, ".ci/run must be executable"
    commands = [line for line in text.splitlines()
                if line.strip() and not line.startswith(("#", "set ", "cd "))]
    # The README's test command first, exactly; then only the version-floor job beside it
    # (issue 26: the lowest admitted versions, in a venv of its own under /tmp).
    assert commands == [TEST, "bash .ci/floors"]
    assert (ROOT / ".ci" / "floors").exists()


def test_readme_python_example_runs(server: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Verbatim, pointed at the test server (and a fresh schema) through the environment,
    after the demo (as a newcomer runs it): the demo's rows stay as they were."""
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
    assert blocks, "the README has a Python example"
    before = load_demo(settings)
    for name in [n for n in __import__("os").environ if n.startswith("REGIME_IO_")
                 and not n.startswith("REGIME_IO_TEST_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("REGIME_IO_DSN", server.url())
    monkeypatch.setenv("REGIME_IO_SCHEMA", settings.schema)
    exec(compile(blocks[0], "README.md", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert "FINNIFTY" in out and "21708.25" in out
    assert_demo_untouched(before, settings, "README.md")


def _cli_commands() -> list[list[str]]:
    """The commands of the README's command-line section, in order, without comments."""
    section = README.split("## Command line", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert block, "the command-line section has a bash block"
    commands = [shlex.split(line, comments=True) for line in block.group(1).splitlines()]
    assert all(c and c[0] == "regime-io" for c in commands)
    return [c[1:] for c in commands]


def test_readme_commands_answer_after_the_demo_in_a_fresh_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """A newcomer's path: nothing configured, a fresh home directory (so a fresh embedded
    server), the demo, then every README command: each one answers with the demo's data."""
    from typer.testing import CliRunner

    from regime_io._conn import embedded as embedded
    from regime_io.cli import app

    home = Path(tempfile.mkdtemp(prefix="rio-home-"))  # short: the server's socket lives under it
    for name in [n for n in __import__("os").environ if n.startswith(("REGIME_IO_", "XDG_", "PG"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("COLUMNS", "200")
    work = home / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    pgdata = embedded.data_dir()
    assert pgdata.is_relative_to(home) and not pgdata.exists()
    runner = CliRunner()
    outputs: dict[str, str] = {}
    try:
        for args in _cli_commands():
            result = runner.invoke(app, args)
            text = " ".join(result.output.split())
            assert result.exit_code == 0, f"regime-io {shlex.join(args)}: exit {result.exit_code}\n{result.output}"
            assert "Traceback" not in result.output and "error" not in result.stderr.lower()
            assert "(no rows)" not in text and "DataQualityWarning" not in text, shlex.join(args)
            outputs[shlex.join(args)] = text
        assert (work / "nifty.png").stat().st_size > 10_000 and (work / "regime_io_demo.png").stat().st_size > 10_000
    finally:
        embedded.stop(pgdata, mode="immediate")
        shutil.rmtree(home, ignore_errors=True)

    def out(command: str) -> str:
        return next(text for line, text in outputs.items() if line.startswith(command))

    assert "schema 'public' ready" in outputs["demo"] and "try: regime-io latest" in outputs["demo"]
    assert "✓ tables: all 5 present" in out("doctor")
    for symbol in ("NIFTY │ 2024-02-01 15:29:00", "BANKNIFTY │ 2024-02-01 15:29:00"):
        assert symbol in out("latest NIFTY BANKNIFTY")
    exported = re.search(r"✓ ([\d,]+) rows of market_data written to", out("export --table"))
    assert exported and int(exported.group(1).replace(",", "")) == 20 * 375  # January minus 1 Jan, 22 and 26
    assert f"0 inserted, 0 updated, {exported.group(1)} unchanged" in out("ingest nifty.parquet")
    assert "p2024_01" in out("partitions bars") and "p2024_02" in out("partitions bars")
    assert re.search(r"would remove [1-9][\d,]* rows", out("cleanup --days"))
    assert "regime distribution" in out("distribution NIFTY") and "Sideways" in out("distribution NIFTY")
    assert "Sideways" in out("transitions NIFTY")
    assert "running" in out("db status") and "stopped" in out("db stop")
