"""The example outputs of docs/cli.md: found, run after ``regime-io demo``, compared, rewritten.

A ```text block of docs/cli.md whose commands start with ``$ regime-io`` is preceded by a
marker comment that says what it is:

* ``<!-- cli-output -->``: the block's commands run, in the order of the page, after the
  demo (the demo's own block is the first such block to run a demo), in a fresh home
  directory, so on a fresh embedded server with nothing configured, as a newcomer runs
  them; what each printed (stdout and stderr as they interleave, ``exit N`` after a
  failure) is the documented output.
* ``<!-- cli-output step=N -->``: a command that changes the demo's data (``delete``,
  ``seal``, ``unseal``, ``db stop``); these run after all the others, by ``N``, so every
  other block shows the data as the demo left it.
* ``<!-- cli-output: not run: REASON -->``: an illustration that needs a file or a state the
  demo does not make (a vendor's CSV, rows another tool wrote beside a sealed month).

A ``[y/N]:`` prompt in a documented output is answered with what follows it there.

``python -m tests._cli_outputs --write`` runs the blocks and rewrites their outputs in
docs/cli.md; ``tests/test_cli_outputs.py`` runs them and compares (see :func:`normalise`
for what may differ between runs).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLI_MD = ROOT / "docs" / "cli.md"

MARKER = re.compile(r"^<!-- cli-output(?P<step> step=(?P<n>\d+))?(?P<not_run>: not run: (?P<reason>.+?))? -->$")
PROMPT = re.compile(r"\[y/N\]: (?P<answer>\S+)$")

# What a reader of the page sees instead of the test's temporary home directory.
HOME_SHOWN = "/home/you"

# Cells of these table columns depend on the moment of the run or on disk layout, not on
# the data: the cutoff of cleanup is now minus the days; sizes in bytes depend on the
# server version, vacuum timing and the zstd build.
MASKED_COLUMNS = {"cutoff", "bytes_before", "bytes_after", "total_bytes"}

# (pattern, replacement) applied to every line before comparing.
VARYING = [
    (re.compile(r"\b(in|over) \d+(?:\.\d+)? ?(?:ms|s)\b"), r"\1 <duration>"),  # done in 13.2s, reachable in 30 ms
    (re.compile(r"100% \d+:\d\d:\d\d"), "100% <duration>"),  # a progress bar's elapsed time
    (re.compile(r"\bPostgreSQL \d+(?:\.\d+)*"), "PostgreSQL <version>"),
    (re.compile(r"\bpid \d+"), "pid <pid>"),
    (re.compile(r"\brt1\.[A-Za-z0-9_-]+"), "<cursor>"),  # follow's resume token holds transaction ids
    (re.compile(r"\d[\d,]* -> \d[\d,]* bytes"), "<bytes> -> <bytes> bytes"),
]


@dataclass
class Command:
    text: list[str]  # the documented command line(s), "$ regime-io ..." with continuations
    expected: list[str]  # the documented output
    actual: list[str] | None = None

    @property
    def args(self) -> list[str]:
        joined = " ".join(line.removesuffix("\\").strip() for line in self.text)
        words = shlex.split(joined.removeprefix("$ "))
        assert words[0] == "regime-io", self.text
        return words[1:]

    @property
    def answer(self) -> str | None:
        for line in self.expected:
            found = PROMPT.search(line)
            if found:
                return found.group("answer")
        return None


@dataclass
class Block:
    start: int  # index of the first line inside the fence
    end: int  # index of the closing fence
    step: int | None
    reason: str | None
    commands: list[Command] = field(default_factory=list)

    @property
    def runs(self) -> bool:
        return self.reason is None

    @property
    def title(self) -> str:
        return " && ".join(shlex.join(["regime-io", *c.args]) for c in self.commands)[:80]


def _commands(lines: list[str]) -> list[Command]:
    out: list[Command] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            assert out, f"output before the first command: {line!r}"
            out[-1].expected.append(line)
            i += 1
            continue
        text = [line]
        while text[-1].endswith("\\"):
            i += 1
            text.append(lines[i])
        out.append(Command(text, []))
        i += 1
    return out


def parse(markdown: str) -> tuple[list[str], list[Block]]:
    """The page's lines and its marked blocks; fails on a ```text block with a ``$ regime-io``
    command and no marker."""
    lines = markdown.split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i] == "```text":
            end = lines.index("```", i + 1)
            body = lines[i + 1:end]
            marker = MARKER.match(lines[i - 1]) if i else None
            has_command = any(line.startswith("$ regime-io") for line in body)
            if marker is None:
                assert not has_command, f"docs/cli.md line {i + 1}: a block of commands without a cli-output marker"
            else:
                assert body and body[0].startswith("$ regime-io"), f"docs/cli.md line {i + 1}: no command"
                step = int(marker.group("n")) if marker.group("n") else None
                blocks.append(Block(i + 1, end, step, marker.group("reason"), _commands(body)))
            i = end + 1
            continue
        i += 1
    return lines, blocks


def run_order(blocks: list[Block]) -> list[Block]:
    """Blocks that run: those without a step in page order, then the steps by number."""
    running = [b for b in blocks if b.runs]
    return [b for b in running if b.step is None] + sorted((b for b in running if b.step is not None),
                                                           key=lambda b: b.step or 0)


def _clean_table_line(line: str, header: list[str] | None) -> tuple[str, list[str] | None]:
    if "┃" in line:
        cells = [c.strip() for c in line.split("┃")]
        return "header|" + "|".join(cells), cells
    if line.strip() and set(line.strip()) <= set("━╇"):
        return "<rule>", header
    if "│" in line and header is not None:
        cells = [c.strip() for c in line.split("│")]
        if len(cells) == len(header):
            cells = ["<masked>" if name in MASKED_COLUMNS and cell else cell
                     for name, cell in zip(header, cells, strict=True)]
        return "row|" + "|".join(cells), header
    return line, None


def normalise(lines: list[str]) -> list[str]:
    """An output as compared: trailing spaces and blank lines dropped; durations, the
    server's version, process ids, follow's cursor and byte sizes replaced by placeholders
    (:data:`VARYING`); table rows compared cell by cell (so a column's width does not
    matter), with the cells of :data:`MASKED_COLUMNS` (cleanup's cutoff, sizes in bytes)
    masked. Everything else -- counts, symbols, timestamps of the data, tiers, messages --
    must be equal."""
    out: list[str] = []
    header: list[str] | None = None
    for raw in lines:
        line = raw.rstrip()
        for pattern, replacement in VARYING:
            line = pattern.sub(replacement, line)
        line, header = _clean_table_line(line, header)
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return out


@contextmanager
def fresh_home() -> Iterator[Path]:
    """A fresh home directory (so a fresh embedded server, nothing configured) with a
    ``work`` directory as the current directory; the server is stopped afterwards."""
    from regime_io._conn import embedded

    home = Path(tempfile.mkdtemp(prefix="rio-doc-"))  # short: the server's socket lives under it
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    for name in [n for n in os.environ if n.startswith(("REGIME_IO_", "XDG_", "PG"))]:
        del os.environ[name]
    os.environ.update(HOME=str(home), XDG_DATA_HOME=str(home / ".local" / "share"), COLUMNS="200")
    work = home / "work"
    work.mkdir()
    os.chdir(work)
    pgdata = embedded.data_dir()
    assert pgdata.is_relative_to(home) and not pgdata.exists()
    try:
        yield home
    finally:
        try:
            if embedded.status() is not None:
                embedded.stop(pgdata, mode="immediate")
        finally:
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)
            shutil.rmtree(home, ignore_errors=True)


def run_blocks(blocks: list[Block]) -> None:
    """Run the blocks' commands in :func:`run_order` in a fresh home; fills ``actual``."""
    from typer.testing import CliRunner

    from regime_io import cli

    runner = CliRunner()
    # The page shows 200 columns whatever COLUMNS was when regime_io.cli was imported.
    widths = [(console, console._width) for console in (cli.console, cli.err_console)]
    for console, _ in widths:
        console.width = 200
    try:
        with fresh_home() as home:
            _run(runner, cli.app, home, blocks)
    finally:
        for console, width in widths:
            console._width = width


def _run(runner: Any, app: Any, home: Path, blocks: list[Block]) -> None:
    for block in run_order(blocks):
        for command in block.commands:
            answer = command.answer
            result = runner.invoke(app, command.args, input=None if answer is None else answer + "\n")
            assert "Traceback" not in result.output, result.output
            text = result.output.replace(str(home), HOME_SHOWN)
            lines = text.split("\n")
            while lines and not lines[-1].strip():
                lines.pop()
            if result.exit_code != 0:
                lines.append(f"exit {result.exit_code}")
            command.actual = [line.rstrip() for line in lines]


def rewrite(lines: list[str], blocks: list[Block]) -> str:
    """The page with each run block's outputs replaced by what its commands printed."""
    out = list(lines)
    for block in sorted((b for b in blocks if b.runs), key=lambda b: b.start, reverse=True):
        body: list[str] = []
        for command in block.commands:
            assert command.actual is not None
            body += command.text + command.actual
        out[block.start:block.end] = body
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if argv != ["--write"]:
        print("usage: python -m tests._cli_outputs --write   (reruns docs/cli.md's outputs and rewrites them)")
        return 2
    lines, blocks = parse(CLI_MD.read_text())
    run_blocks(blocks)
    CLI_MD.write_text(rewrite(lines, blocks))
    print(f"rewrote {sum(len(b.commands) for b in blocks if b.runs)} outputs in {CLI_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
