"""docs/cli.md shows what the commands print after ``regime-io demo``; this holds it true.

Every ```text block of the page with a ``$ regime-io`` command carries a marker
(``tests/_cli_outputs.py`` explains them). The blocks marked to run are run again here,
in-process, in a fresh home directory: so a fresh embedded server with nothing
configured, the demo first, the commands that change its data (``delete``, ``unseal``,
``seal``, ``db stop``) last. Each command's output must equal the documented one after
:func:`tests._cli_outputs.normalise`, which replaces only what legitimately varies
between runs: durations (``done in 2.4s``, ``reachable in 49 ms``, a progress bar's
``0:00:00``), process ids, the server's version, follow's resume cursor (it holds
transaction ids), byte sizes (``15,279,680 -> 2,121,260 bytes``; the ``bytes_before``,
``bytes_after`` and ``total_bytes`` columns: server version, vacuum timing) and
cleanup's ``cutoff`` column (now minus the days). Table rows are compared cell by cell,
so a column's width does not matter. Paths under the temporary home read as
``/home/you``, as on the page. Counts, symbols, timestamps of the data, tiers, estimates
and messages must match exactly (the demo's data comes from fixed seeds), so a count
edited by hand on the page fails here. After a deliberate change, ``python -m
tests._cli_outputs --write`` rewrites the page from a new run.
"""

from __future__ import annotations

import copy
import difflib

import pytest

from tests import _cli_outputs as outputs

LINES, BLOCKS = outputs.parse(outputs.CLI_MD.read_text())
RUN = outputs.run_order(BLOCKS)
WRITE = "python -m tests._cli_outputs --write"


@pytest.fixture(scope="module")
def pgdata() -> list[outputs.Block]:
    """The run blocks with what their commands printed. (Named ``pgdata``: the module
    starts an embedded server of its own, in a fresh home, so it is not a unit test.)"""
    blocks = copy.deepcopy(RUN)
    outputs.run_blocks(blocks)
    return blocks


def test_every_block_of_commands_is_marked() -> None:
    """parse() refuses a block of ``$ regime-io`` commands without a marker; the page runs
    the demo before the commands that read its data, and every block it does not run says
    why."""
    assert len(RUN) >= 20 and sum(len(b.commands) for b in RUN) >= 28
    demo = next(i for i, b in enumerate(RUN) if b.commands[0].args == ["demo"])
    assert all(c.args[:1] in (["distribution"],) for b in RUN[:demo] for c in b.commands), \
        "only commands that fail before reading data run before the demo"
    assert all(b.reason for b in BLOCKS if not b.runs)
    steps = [b.step for b in RUN if b.step is not None]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)


@pytest.mark.parametrize("index", range(len(RUN)), ids=[b.title[:60] for b in RUN])
def test_documented_output_is_a_real_run(pgdata: list[outputs.Block], index: int) -> None:
    block = pgdata[index]
    for command in block.commands:
        assert command.actual is not None
        want, got = outputs.normalise(command.expected), outputs.normalise(command.actual)
        diff = "\n".join(difflib.unified_diff(want, got, "docs/cli.md", "this run", lineterm=""))
        assert want == got, (f"docs/cli.md line {block.start}: `{' '.join(command.text)}` printed something else "
                             f"(rerun `{WRITE}` if the change is meant):\n{diff}")


def test_normalising_keeps_counts_and_masks_only_what_varies() -> None:
    """The comparison's own rules: a changed count, symbol or tier still differs; a
    duration, pid, version, byte size or cutoff does not."""
    doctor = next(c for b in BLOCKS for c in b.commands if c.args == ["doctor"])
    cleanup = next(c for b in BLOCKS for c in b.commands if c.args[:1] == ["cleanup"])
    same = outputs.normalise(doctor.expected)
    for old, new in [("90,220 rows", "90,221 rows"), ("1,500 │ 31,500", "1,501 │ 31,500"),
                     ("4,120 in the row tables", "4,120 in the sealed tier"), (" market_data ", " market_dat ")]:
        assert old in "\n".join(doctor.expected), old
        assert outputs.normalise([line.replace(old, new) for line in doctor.expected]) != same, old
    varied = [line.replace("PostgreSQL 18", "PostgreSQL 17").replace(" ms:", "1 ms:") for line in doctor.expected]
    varied = [outputs.VARYING[3][0].sub("pid 1", line) for line in varied]
    assert varied != doctor.expected and outputs.normalise(varied) == same
    cut = [line.replace("2026-", "2031-") for line in cleanup.expected]
    assert cut != cleanup.expected and outputs.normalise(cut) == outputs.normalise(cleanup.expected)
    rows = [line.replace("31,500", "31,499") for line in cleanup.expected]
    assert outputs.normalise(rows) != outputs.normalise(cleanup.expected)
