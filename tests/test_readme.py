"""The README opens with the three commands, CI runs exactly those, and its example runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from regime_io.config import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

INSTALL = 'python -m venv .venv && .venv/bin/pip install -e ".[test]"'
MAIN_JOB = ".venv/bin/regime-io demo"
TEST = ".venv/bin/python -m pytest"


def test_readme_starts_with_install_main_job_and_test_commands() -> None:
    lines = README.splitlines()
    assert lines[0].startswith("```")
    assert lines[1:4] == [INSTALL, MAIN_JOB, TEST]
    assert lines[4] == "```"


def test_ci_runs_exactly_the_readme_commands() -> None:
    script = ROOT / ".ci" / "run"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert script.stat().st_mode & 0o111, ".ci/run must be executable"
    commands = [line for line in text.splitlines()
                if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert commands == [INSTALL, TEST]


def test_readme_python_example_runs(server: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Verbatim, pointed at the test server (and a fresh schema) through the environment."""
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
    assert blocks, "the README has a Python example"
    for name in [n for n in __import__("os").environ if n.startswith("REGIME_IO_")
                 and not n.startswith("REGIME_IO_TEST_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("REGIME_IO_DSN", server.url())
    monkeypatch.setenv("REGIME_IO_SCHEMA", settings.schema)
    exec(compile(blocks[0], "README.md", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert "NIFTY" in out and "21708.25" in out
