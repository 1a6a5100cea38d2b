"""docs/reading.md: its Python examples run, in order, and every reader is documented."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from regime_io._read import readers as reading
from regime_io.config import Settings
from tests._helpers import assert_demo_untouched, load_demo

DOC = (Path(__file__).resolve().parent.parent / "docs" / "reading.md").read_text()


def test_reading_doc_examples_run(server: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """In order, after the demo (as a newcomer runs them), whose rows they leave as they were."""
    blocks = re.findall(r"```python\n(.*?)```", DOC, flags=re.DOTALL)
    assert len(blocks) >= 10
    before = load_demo(settings)
    for name in [n for n in os.environ if n.startswith("REGIME_IO_") and not n.startswith("REGIME_IO_TEST_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("REGIME_IO_DSN", server.url())
    monkeypatch.setenv("REGIME_IO_SCHEMA", settings.schema)
    namespace: dict[str, Any] = {"__name__": "__reading_doc__"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/reading.md[python block {i + 1}]", "exec"), namespace)
    assert_demo_untouched(before, settings, "docs/reading.md")


@pytest.mark.parametrize("name", [n for n in reading.__all__ if n.startswith(("get_", "iter_", "asof_"))])
def test_every_reader_is_documented(name: str) -> None:
    assert f"`{name}(" in DOC, f"{name} is missing from docs/reading.md"
