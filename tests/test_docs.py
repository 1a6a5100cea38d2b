"""The docs stay true: every CLI command and public name documented, runnable examples run,
links resolve, and the troubleshooting guide shows the messages the library really prints."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.main import get_command

import regime_io
from regime_io import PostgreSQLIntegration, synthetic
from regime_io.cli import app
from regime_io.config import Settings, settings_replace
from tests._helpers import assert_demo_untouched, load_demo

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CLI_MD = (DOCS / "cli.md").read_text()
API_MD = (DOCS / "api.md").read_text()
TROUBLE_MD = (DOCS / "troubleshooting.md").read_text()
RUNNABLE = re.compile(r"^```python runnable\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _commands() -> dict[str, Any]:
    """Every command of the app by its path ('demo', 'db start', ...)."""
    out: dict[str, Any] = {}

    def walk(group: Any, prefix: str) -> None:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                walk(command, f"{prefix}{name} ")
            else:
                out[f"{prefix}{name}"] = command

    walk(get_command(app), "")
    return out


def _cli_section(path: str) -> str:
    heading = f"## `regime-io {path}`\n"
    assert heading in CLI_MD, f"docs/cli.md has no section '{heading.strip()}'"
    rest = CLI_MD.split(heading, 1)[1]
    return rest.split("\n## ", 1)[0]


@pytest.mark.parametrize("path", sorted(_commands()))
def test_every_cli_command_and_option_is_documented(path: str) -> None:
    section = _cli_section(path)
    for param in _commands()[path].params:
        if param.param_type_name == "option":
            long = next(o for o in param.opts if o.startswith("--"))
            assert long in section, f"regime-io {path}: option {long} is not in its docs/cli.md section"


def test_global_options_are_documented() -> None:
    section = CLI_MD.split("## Global options", 1)[1].split("\n## ", 1)[0]
    for param in get_command(app).params:
        long = next(o for o in param.opts if o.startswith("--"))
        assert f"`{long}" in section, long


@pytest.mark.parametrize("name", regime_io.__all__)
def test_every_public_name_is_in_the_api_reference(name: str) -> None:
    assert re.search(rf"^### `(regime_io\.)?{re.escape(name)}[(`]", API_MD, flags=re.MULTILINE), \
        f"{name} is missing from docs/api.md (run: .venv/bin/python tests/_apidoc.py)"


def test_api_reference_matches_the_code() -> None:
    """The generated reference is current: every signature and every docstring."""
    import _apidoc

    current, rendered = _apidoc.current(), _apidoc.render()
    for what, pick in (("signature", lambda line: line.startswith(("### ", "#### "))), ("text", lambda line: True)):
        stale = [line for line in rendered.splitlines() if pick(line)] != \
                [line for line in current.splitlines() if pick(line)]
        assert not stale, f"docs/api.md is out of date ({what}s differ): run .venv/bin/python tests/_apidoc.py"


# ---------------------------------------------------------------------------------------
# Runnable examples and links


DOCS_WITH_EXAMPLES = sorted(p.name for p in DOCS.glob("*.md") if RUNNABLE.search(p.read_text()))


def test_the_guides_have_runnable_examples() -> None:
    assert {"index.md", "api.md", "plots.md"} <= set(DOCS_WITH_EXAMPLES)


@pytest.mark.parametrize("name", DOCS_WITH_EXAMPLES)
def test_runnable_examples_run(name: str, server: Any, settings: Settings, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The ```python runnable blocks of a page run in order, in one namespace, on the test
    server (through REGIME_IO_DSN / REGIME_IO_SCHEMA, as a user would point them), where the
    demo's data is (as after ``regime-io demo`` on the embedded server): they may read it,
    and must leave its rows as they were."""
    before = load_demo(settings)
    for var in [n for n in os.environ if n.startswith("REGIME_IO_") and not n.startswith("REGIME_IO_TEST_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("REGIME_IO_DSN", server.url())
    monkeypatch.setenv("REGIME_IO_SCHEMA", settings.schema)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(ROOT / "config", tmp_path / "config")  # as in a clone's root, where the pages' paths start
    namespace: dict[str, Any] = {"__name__": f"__docs_{name}__"}
    for i, block in enumerate(RUNNABLE.findall((DOCS / name).read_text())):
        exec(compile(block, f"docs/{name}[runnable block {i + 1}]", "exec"), namespace)
    assert_demo_untouched(before, settings, f"docs/{name}")
    if name == "plots.md":
        for png in ("nifty_regimes.png", "nifty_distribution.png", "nifty_transitions.png", "nifty_asof.png"):
            assert (tmp_path / png).stat().st_size > 10_000, png
    if name == "api.md":
        assert "start_date '2024-02-01' is after end_date '2024-01-01'" in capsys.readouterr().out


BASH = re.compile(r"^```bash\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _command_blocks() -> list[tuple[str, list[list[str]]]]:
    """The guides' ```bash blocks made only of ``regime-io`` commands, as argument lists
    (docs/cli.md has its own test, tests/test_cli_outputs.py; the README's, tests/test_readme.py)."""
    import shlex

    found = []
    for page in sorted(DOCS.glob("*.md")):
        if page.name == "cli.md":
            continue
        for block in BASH.findall(page.read_text()):
            commands = [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]
            if commands and all(c and c[0] == "regime-io" for c in commands):
                found.append((page.name, [c[1:] for c in commands]))
    return found


@pytest.mark.parametrize(("name", "commands"), [pytest.param(n, c, id=f"{n}-{i}")
                                               for i, (n, c) in enumerate(_command_blocks())])
def test_command_examples_run(name: str, commands: list[list[str]], server: Any, settings: Settings,
                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each command of a guide's command block runs after the demo (exit 0) and leaves its rows."""
    from typer.testing import CliRunner

    before = load_demo(settings)
    monkeypatch.chdir(tmp_path)
    for args in commands:
        result = CliRunner().invoke(app, ["--dsn", server.url(), "--schema", settings.schema, *args])
        assert result.exit_code == 0, f"docs/{name}: regime-io {' '.join(args)}\n{result.output}"
    assert_demo_untouched(before, settings, f"docs/{name}")


MY_PAGES = ["index.md", "cli.md", "api.md", "plots.md", "troubleshooting.md"]


@pytest.mark.parametrize("page", [*(DOCS / p for p in MY_PAGES), ROOT / "README.md"], ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


# ---------------------------------------------------------------------------------------
# Troubleshooting: the messages are the library's own


def _message(call: Callable[[], Any]) -> str:
    with pytest.raises(regime_io.RegimeIOError) as info:
        call()
    err = info.value
    return f"{type(err).__module__}.{type(err).__name__}: {err}"


def _in_doc(message: str) -> None:
    assert message in TROUBLE_MD, f"docs/troubleshooting.md does not show this message:\n{message}"


@pytest.fixture
def trouble(settings: Settings) -> Any:
    pg = PostgreSQLIntegration(settings=settings_replace(settings, retry_attempts=1, retry_delay=1.0))
    pg.initialize_database()
    yield pg
    pg.close()


def test_insertion_errors_read_as_documented(trouble: Any, settings: Settings) -> None:
    pg = trouble
    bars = synthetic.market_bars(["NIFTY"], days=1)
    row = pl.int_range(pl.len())
    cases: list[Callable[[], Any]] = [
        lambda: pg.save_market_data(bars.drop("volume")),
        lambda: pg.save_market_data(bars.with_columns(vwap=pl.col("close"))),
        lambda: pg.save_market_data(bars.with_columns(pl.col("close").cast(pl.String) + "x")),
        lambda: pg.save_market_data(bars.with_columns(symbol=pl.when(row == 7).then(None).otherwise("symbol"))),
        lambda: pg.save_market_data(bars.with_columns(close=pl.when(row == 3).then(123456789.0).otherwise("close"))),
        lambda: pg.save_market_data(pl.concat([bars, bars.head(1)])),
        lambda: pg.save_market_data(bars.with_columns(symbol=pl.lit("X" * 25))),
        lambda: pg.save_options_data(synthetic.options_chain("NIFTY", days=1, strikes=2)
                                     .with_columns(option_type=pl.lit("CALLX"))),
        lambda: pg.save("prices", bars),
        lambda: pg.save_market_data(bars.with_columns(low=pl.col("high") + 1), strict=True),
        lambda: PostgreSQLIntegration(settings=settings_replace(settings, schema="never_initialised"))
        .save_market_data(bars),
    ]
    for case in cases:
        _in_doc(_message(case))
    # The attributes the guide's first example prints.
    with pytest.raises(regime_io.ValidationError) as info:
        pg.save_market_data(bars.with_columns(volume=pl.when(row == 42).then(-100).otherwise("volume")))
    err = info.value
    _in_doc(f"regime_io.errors.ValidationError: {err}")
    assert (err.table, err.column, err.row, err.value) == ("market_data", "volume", 42, -100)
    assert "market_data volume 42 -100" in TROUBLE_MD
    pg.save_market_data(bars)
    _in_doc(_message(lambda: pg.save_market_data(bars.head(5), on_conflict="error")))


def test_query_errors_read_as_documented(trouble: Any, settings: Settings) -> None:
    pg = trouble
    for case in [
        lambda: pg.get_market_data("NIFTY", "2024-02-01", "2024-01-01"),
        lambda: pg.get_market_data("NIFTY", "2024-13-01", "2024-12-31"),
        lambda: pg.get_market_data("NIFTY", "2024-01-01", "2024-01-02", columns=["close", "vwap"]),
        lambda: pg.get_latest("options_data"),
        lambda: pg.get_market_data("NIFTY", "2024-01-01", "2024-01-02", return_type="numpy"),
        lambda: pg.get_optimization_results("NIFTY", top="5"),
        lambda: pg.get_market_data("NIFTY", "2024-01-01", "2024-01-02", resample="5 parsecs"),
        lambda: PostgreSQLIntegration(settings=settings_replace(settings, schema="never_initialised"))
        .get_market_data("NIFTY", "2024-01-01", "2024-01-02"),
    ]:
        _in_doc(_message(case))


def test_connection_errors_read_as_documented(settings: Settings) -> None:
    _in_doc(_message(lambda: PostgreSQLIntegration(config={"database": {"port": "54x32", "schema": "market-data",
                                                                       "passwrd": "x"}})))
    refused = _message(lambda: PostgreSQLIntegration(config={
        "database": {"host": "127.0.0.1", "port": 1, "user": "postgres", "password": "s3cret"},
        "connection": {"retry_attempts": 1, "retry_delay": 1}}).initialize_database())
    # Up to the OS's wording of "connection refused", which is the same on Linux hosts.
    _in_doc(refused.split(" Connection refused")[0])
    assert "s3cret" not in refused
    busy = PostgreSQLIntegration(settings=settings_replace(settings, max_connections=1, connection_timeout=1.0))

    def exhaust() -> None:
        with busy.db.connection(), busy.db.connection():
            pass

    _in_doc(_message(exhaust))
    busy.close()
    # Login failures are not retried; their FATAL line is the server's own.
    for changes, fatal in [({"database": "market_regime"}, 'FATAL:  database "market_regime" does not exist'),
                           ({"user": "trader"}, 'FATAL:  role "trader" does not exist')]:
        message = _message(lambda changes=changes: PostgreSQLIntegration(  # type: ignore[misc]
            settings=settings_replace(settings, **changes)).initialize_database())
        assert message.startswith("regime_io.errors.ServerError: cannot connect to the primary server (")
        assert message.endswith(fatal) and fatal in TROUBLE_MD


@pytest.fixture
def limited_role(server: Any, trouble: Any) -> Any:
    """A login role that may read every table of the schema but market_data and the
    1-minute regimes, and write none (the "Permissions" sections' users)."""
    import uuid

    import psycopg
    from psycopg import sql as pgsql

    role = f"rio_ro_{uuid.uuid4().hex[:10]}"
    schema, ident = trouble.settings.schema, pgsql.Identifier
    with psycopg.connect(server.url(), autocommit=True) as admin:
        admin.execute(pgsql.SQL("CREATE ROLE {} LOGIN PASSWORD 'read-only'").format(ident(role)))
        admin.execute(pgsql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(ident(schema), ident(role)))
        admin.execute(pgsql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(ident(schema), ident(role)))
    yield role
    with psycopg.connect(server.url(), autocommit=True) as admin:
        admin.execute(pgsql.SQL("DROP OWNED BY {}").format(ident(role)))
        admin.execute(pgsql.SQL("DROP ROLE {}").format(ident(role)))


def test_permission_errors_read_as_documented(server: Any, trouble: Any, limited_role: str) -> None:
    import psycopg
    from psycopg import sql as pgsql

    from regime_io.config import Secret

    trouble.save_market_data(synthetic.market_bars(["NIFTY"], days=1))
    trouble.save_1min_market_regime(synthetic.minute_regimes(["NIFTY"], days=1))
    limited = PostgreSQLIntegration(settings=settings_replace(trouble.settings, user=limited_role,
                                                              password=Secret("read-only"), retry_attempts=0))
    try:
        # A read-only user can read, not write.
        assert limited.get_market_data("NIFTY", "2024-01-01", "2024-01-01").height == 375
        message = _message(lambda: limited.save_market_data(synthetic.market_bars(["NIFTY"], days=1)))
        assert message == ("regime_io.errors.WriteError: market_data: the server refused the write: permission "
                           "denied for table mr_market_data; nothing was written")
        _in_doc(message)
        with psycopg.connect(server.url(), autocommit=True) as admin:
            schema = pgsql.Identifier(trouble.settings.schema)
            admin.execute(pgsql.SQL("REVOKE SELECT ON {}.mr_market_data, {}.mr_market_regimes_1min FROM {}").format(
                schema, schema, pgsql.Identifier(limited_role)))
        latest = _message(lambda: limited.get_latest_1min_market_regime("NIFTY"))
        assert latest == ("regime_io.errors.ReadError: get_latest failed: permission denied for table "
                          "mr_market_regimes_1min")
        _in_doc(latest)
        ranged = _message(lambda: limited.get_market_data("NIFTY", "2024-01-01", "2024-01-01"))
        assert ranged == ("regime_io.errors.ReadError: get_market_data failed: permission denied for table "
                          "mr_market_data")
        _in_doc(ranged)
    finally:
        limited.close()
