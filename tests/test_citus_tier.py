"""The citus tier is skipped only when it was not asked for; otherwise it runs or fails.

A tier that vanishes in silence lets CI pass without it (issue 27): these tests pin the
rule of ``tests._citus.tier()`` -- skipped, with one line, only when the Citus source is
absent or ``REGIME_IO_SKIP_CITUS=1``; a failed build, a cluster that does not start or a
Python error while starting it is a failure -- and check end to end that such a failure
makes a pytest run of the citus tests exit non-zero with errors, not skips.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import _citus as citus

ROOT = Path(__file__).resolve().parent.parent


class _Started:
    """A stand-in for ``_citus.start`` that records whether the tier tried to start."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.calls = 0
        self.error = error

    def __call__(self) -> Any:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return "a cluster"


@pytest.fixture
def source_present(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    tarball = tmp_path / "citus-14.0.1.tar.gz"
    tarball.write_bytes(b"not looked at: start() is replaced")
    monkeypatch.setenv(citus.SOURCE_VARIABLE, str(tarball))
    monkeypatch.delenv(citus.SKIP_VARIABLE, raising=False)
    return tarball


def test_source_absent_skips_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(citus.SOURCE_VARIABLE, raising=False)
    monkeypatch.delenv(citus.SKIP_VARIABLE, raising=False)
    monkeypatch.setattr(citus, "DEFAULT_SOURCES", [tmp_path / "nowhere" / "citus-14.0.1.tar.gz"])
    started = _Started()
    state = citus.tier(started)
    assert started.calls == 0 and state.cluster is None and state.failure is None
    assert state.skip is not None and "no Citus source" in state.skip and str(tmp_path / "nowhere") in state.skip
    assert state.header().startswith("SKIPPED, no Citus source") and "\n" not in state.header()


@pytest.mark.parametrize("value", ["1", "true"])
def test_the_opt_out_skips_without_starting(source_present: Path, monkeypatch: pytest.MonkeyPatch,
                                            value: str) -> None:
    monkeypatch.setenv(citus.SKIP_VARIABLE, value)
    started = _Started()
    state = citus.tier(started)
    assert started.calls == 0
    assert state.skip == f"REGIME_IO_SKIP_CITUS={value}" and state.failure is None
    assert state.header() == f"SKIPPED, REGIME_IO_SKIP_CITUS={value}"


def test_opt_out_zero_does_not_opt_out(source_present: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(citus.SKIP_VARIABLE, "0")
    started = _Started()
    assert citus.tier(started).cluster == "a cluster" and started.calls == 1


@pytest.mark.parametrize("error", [
    citus.CitusUnavailable("citus build failed at make (log /x/build.log): error: ..."),  # a failed build
    citus.CitusUnavailable("pg_ctl failed: could not bind IPv4 address"),  # a node that does not start
    NameError("name 'pginstal' is not defined"),  # a bug in tests/_citus.py
    OSError(28, "No space left on device"),
])
def test_source_present_and_start_fails_is_a_failure_not_a_skip(source_present: Path,
                                                                  error: BaseException) -> None:
    started = _Started(error)
    state = citus.tier(started)
    assert started.calls == 1
    assert state.skip is None and state.cluster is None
    assert state.failure is not None and type(error).__name__ in state.failure and str(error) in state.failure
    assert "Traceback" in state.failure  # a Python bug shows where it is
    assert state.header().startswith("FAILED to start")


def test_a_named_source_that_is_missing_is_a_failure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(citus.SKIP_VARIABLE, raising=False)
    monkeypatch.setenv(citus.SOURCE_VARIABLE, str(tmp_path / "missing.tar.gz"))
    started = _Started()
    state = citus.tier(started)
    assert started.calls == 0 and state.skip is None
    assert state.failure is not None and "REGIME_IO_CITUS_SOURCE" in state.failure and "is not a file" in state.failure


def test_a_tier_that_cannot_start_fails_the_pytest_run(server: Any, tmp_path: Path) -> None:
    """End to end, through the real conftest: a citus test errors, the run exits 1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGIME_IO_")}
    env.update(REGIME_IO_TEST_DSN=server.url(), REGIME_IO_CITUS_SOURCE=str(tmp_path / "missing.tar.gz"))
    test = "tests/test_citus.py::test_initialize_distributes_every_table_colocated"
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", test], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "1 error" in out and "skipped" not in out, out
    assert "regime_io citus cluster: FAILED to start" in out, out
    assert "citus tier asked for but not running" in out and "is not a file" in out, out
