"""SQL identifiers: validation, quoting, and hostile names stopped at configuration time."""

from __future__ import annotations

from typing import Any

import pytest

from regime_io._sql.quote import literal, qualified, quote_ident
from regime_io.config import MAX_IDENTIFIER_LENGTH, identifier_problem, load_settings
from regime_io.errors import ConfigError

HOSTILE = [
    'x"; DROP TABLE mr_market_data; --',
    "x; DROP SCHEMA public CASCADE",
    "x' OR '1'='1",
    "public.other",
    "a b",
    "tab\tname",
    "new\nline",
    "1starts_with_digit",
    "semi;colon",
    "dash-name",
    "",
    "ünïcode",
    "nul\x00byte",
    "a" * (MAX_IDENTIFIER_LENGTH + 1),
]


@pytest.mark.parametrize("name", ["mr_market_data", "_private", "Mixed_Case1", "a", "a" * MAX_IDENTIFIER_LENGTH])
def test_plain_names_pass(name: str) -> None:
    assert identifier_problem(name) is None


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused_with_a_reason(name: str) -> None:
    problem = identifier_problem(name)
    assert problem is not None
    assert problem.startswith(repr(name))


def test_non_strings_are_refused() -> None:
    assert identifier_problem(42) is not None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "quoted"),
    [("plain", '"plain"'), ('a"b', '"a""b"'), ('"', '""""'), ("Mixed", '"Mixed"'), ("a b", '"a b"')],
)
def test_quote_ident_doubles_quotes(name: str, quoted: str) -> None:
    assert quote_ident(name) == quoted


def test_quote_ident_and_literal_refuse_nul() -> None:
    with pytest.raises(ValueError, match=r"^identifier contains a NUL byte$"):
        quote_ident("a\x00b")
    with pytest.raises(ValueError, match=r"^literal contains a NUL byte$"):
        literal("a\x00b")


def test_qualified_and_literal() -> None:
    assert qualified("s", 't"x') == '"s"."t""x"'
    assert literal("it's") == "'it''s'"


@pytest.mark.parametrize("name", [n for n in HOSTILE if n and "\x00" not in n and len(n) <= MAX_IDENTIFIER_LENGTH])
def test_quoting_keeps_even_a_hostile_name_one_identifier(sql: Any, name: str) -> None:
    """Second line of defence: quoted, a hostile name is just a strange name to the server."""
    sql(f"CREATE TEMP TABLE {quote_ident(name)} (v INT)")
    try:
        rows = sql("SELECT relname FROM pg_class WHERE relname = %s AND relpersistence = 't'", (name,))
        assert rows == [(name,)]
    finally:
        sql(f"DROP TABLE {quote_ident(name)}")


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("where", ["schema", "table_prefix", "table"])
def test_hostile_names_in_config_never_reach_sql(name: str, where: str) -> None:
    if where == "schema":
        config: dict[str, Any] = {"database": {"schema": name}}
    elif where == "table_prefix":
        config = {"database": {"table_prefix": name}}
    else:
        config = {"tables": {"market_data": name}}
    if (where, name) in (("table_prefix", ""), ("table", "1starts_with_digit")):
        # Not hostile here: no prefix at all; a digit behind the default prefix "mr_".
        settings = load_settings(config=config, env={})
        assert identifier_problem(settings.table_name("market_data")) is None
        return
    with pytest.raises(ConfigError) as info:
        load_settings(config=config, env={})
    key = {"schema": "schema", "table_prefix": "table_prefix", "table": "tables.market_data"}[where]
    assert any(p.startswith(key) for p in info.value.problems), info.value.problems


def test_hostile_names_from_the_environment_are_refused_too() -> None:
    with pytest.raises(ConfigError, match=r"schema \(REGIME_IO_SCHEMA\)"):
        load_settings(env={"REGIME_IO_SCHEMA": 'x"; DROP TABLE y; --'})


def test_hostile_names_in_an_ini_file_are_refused(tmp_path: Any) -> None:
    ini = tmp_path / "evil.ini"
    ini.write_text('[DATABASE]\nschema = public"; DROP TABLE x; --\n[TABLES]\nmarket_data = x;y\n')
    with pytest.raises(ConfigError, match=r"evil\.ini \(2 problems\)") as info:
        load_settings(ini, env={})
    assert len(info.value.problems) == 2
