"""The notebooks execute cleanly, on the test server, and are stored without outputs.

Each notebook builds ``PostgreSQLIntegration`` with no server configured (the embedded
one for a user); here ``REGIME_IO_DSN`` and ``REGIME_IO_SCHEMA`` in the kernel's
environment point it at the test server and a fresh schema.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from regime_io.config import Settings

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_the_notebooks_are_there() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "backtest.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip the outputs"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path: Path, server: Any, settings: Settings, sql: Any, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("REGIME_IO_") and not name.startswith("REGIME_IO_TEST_"):
            monkeypatch.delenv(name)
    # The kernel inherits this process's environment.
    monkeypatch.setenv("REGIME_IO_DSN", server.url())
    monkeypatch.setenv("REGIME_IO_SCHEMA", settings.schema)
    # What a Jupyter user gets: the inline backend, which displays returned figures as PNG.
    monkeypatch.delenv("MPLBACKEND", raising=False)
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(book, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError with the cell and traceback on failure
    outputs = [o for cell in book.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # Charts were drawn (the figures the cells return are displayed as PNG).
    pngs = [o for o in outputs
            if o.output_type in ("display_data", "execute_result") and "image/png" in o.get("data", {})]
    assert pngs, f"{path.name} drew no chart"
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Traceback" not in text
    # It wrote where the environment said, not into the schema the notebook names.
    assert sql(f'SELECT count(*) FROM "{settings.schema}".mr_market_data')[0][0] > 0
    assert sql("SELECT count(*) FROM pg_namespace WHERE nspname IN ('regime_io_quickstart', "
               "'regime_io_backtest')")[0][0] == 0
