"""Configuration: the seed's INI file and dict, environment overrides, DSNs, errors, secrets."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import adbc_driver_postgresql.dbapi as adbc
import psycopg
import pytest
from _auth import password_role
from psycopg.conninfo import conninfo_to_dict

from regime_io.config import Secret, Settings, load_settings, settings_replace
from regime_io.errors import ConfigError
from regime_io.tables import TABLES

SEED_INI = Path(__file__).resolve().parent.parent / "config" / "database_config.ini"

# The seed's configuration dict, verbatim from the spec.
SEED_DICT: dict[str, Any] = {
    "database": {
        "enabled": True, "host": "localhost", "port": 5432, "database": "market_regime",
        "user": "postgres", "password": "postgres", "schema": "public", "table_prefix": "mr_",
    },
    "tables": {
        "market_data": "market_data", "options_data": "options_data", "market_regimes": "market_regimes",
        "1min_market_regimes": "market_regimes_1min", "optimization_results": "optimization_results",
    },
    "connection": {"max_connections": 5, "connection_timeout": 30, "retry_attempts": 3, "retry_delay": 5},
}

NASTY_PASSWORD = "p@ss#w:rd%25/x?y&z é"


def _problems(**kwargs: Any) -> list[str]:
    kwargs.setdefault("env", {})
    with pytest.raises(ConfigError) as info:
        load_settings(**kwargs)
    return info.value.problems


# -- the seed's shapes ------------------------------------------------------------------


def test_seed_ini_file_is_read_exactly() -> None:
    s = load_settings(SEED_INI, env={})
    assert (s.enabled, s.host, s.port, s.database, s.user) == (True, "localhost", 5432, "market_regime", "postgres")
    assert s.password.get() == "postgres"
    assert (s.schema, s.table_prefix) == ("public", "mr_")
    assert s.table_names == {k: t.default_name for k, t in TABLES.items()}
    assert s.table_name("market_regimes_1min") == "mr_market_regimes_1min"
    assert (s.max_connections, s.connection_timeout, s.retry_attempts, s.retry_delay) == (5, 30.0, 3, 5.0)
    assert s.source == str(SEED_INI)
    assert not s.embedded


def test_seed_dict_gives_the_same_settings_as_the_seed_file() -> None:
    from_dict = load_settings(config=SEED_DICT, env={})
    from_file = load_settings(SEED_INI, env={})
    assert from_dict == settings_replace(from_file, source="dict")


def test_section_names_are_case_insensitive_in_a_dict() -> None:
    s = load_settings(config={"DATABASE": {"Host": "db.example"}, "Connection": {"MAX_CONNECTIONS": "9"}}, env={})
    assert (s.host, s.max_connections) == ("db.example", 9)


def test_table_names_and_prefix_come_from_config(tmp_path: Path) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text("[DATABASE]\ntable_prefix =\nschema = Analytics\n[TABLES]\n1min_market_regimes = regimes_1m\n")
    s = load_settings(ini, env={})
    assert s.table_name("market_regimes_1min") == "regimes_1m"
    assert s.table_name("market_data") == "market_data"
    # Folded like the seed's unquoted SQL names.
    assert s.schema == "analytics"


def test_none_in_a_dict_means_unset() -> None:
    s = load_settings(config={"database": {"host": None, "password": None, "port": None}}, env={})
    assert s.embedded and not s.password and s.port == 5432


def test_missing_file_and_both_sources_are_errors(tmp_path: Path) -> None:
    assert "does not exist" in _problems(config_file=tmp_path / "nope.ini")[0]
    assert "not both" in _problems(config_file=SEED_INI, config=SEED_DICT)[0]


def test_ini_syntax_errors_name_the_line_but_never_quote_it(tmp_path: Path) -> None:
    ini = tmp_path / "broken.ini"
    ini.write_text("password = hunter2secret\n[DATABASE]\n")
    with pytest.raises(ConfigError) as info:
        load_settings(ini, env={})
    assert "line 1" in str(info.value)
    assert "hunter2secret" not in str(info.value)
    ini.write_text("[DATABASE]\nhost = a\n  hunter2secret\nnot a key hunter2secret\n")
    with pytest.raises(ConfigError, match=r"broken\.ini: line\(s\) 4: expected 'key = value'$") as info:
        load_settings(ini, env={})
    assert "hunter2secret" not in str(info.value)


def test_regime_io_config_names_the_file() -> None:
    s = load_settings(env={"REGIME_IO_CONFIG": str(SEED_INI)})
    assert s.database == "market_regime"


# -- environment and precedence ---------------------------------------------------------


def test_environment_overrides_the_file() -> None:
    env = {"REGIME_IO_HOST": "db.internal", "REGIME_IO_PORT": "6543", "REGIME_IO_PASSWORD": "from-env",
           "REGIME_IO_USER": "app", "REGIME_IO_MAX_CONNECTIONS": "11", "REGIME_IO_SCHEMA": "markets"}
    s = load_settings(SEED_INI, env=env)
    assert (s.host, s.port, s.user, s.max_connections, s.schema) == ("db.internal", 6543, "app", 11, "markets")
    assert s.password.get() == "from-env"
    assert s.database == "market_regime"  # not overridden: from the file
    assert s.source.endswith("+ environment")


@pytest.mark.parametrize(
    ("file_value", "env_value", "expected"),
    [(None, None, 5), ("7", None, 7), ("7", "9", 9), (None, "9", 9)],
)
def test_precedence_defaults_then_file_then_env(tmp_path: Path, file_value: str | None, env_value: str | None,
                                                 expected: int) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text("[CONNECTION]\n" + (f"max_connections = {file_value}\n" if file_value else ""))
    env = {"REGIME_IO_MAX_CONNECTIONS": env_value} if env_value else {}
    assert load_settings(ini, env=env).max_connections == expected


def test_environment_dsn_replaces_the_files_address() -> None:
    s = load_settings(SEED_INI, env={"REGIME_IO_DSN": "postgresql://reader@replica.example:6000/history"})
    assert (s.host, s.port, s.user, s.database) == ("replica.example", 6000, "reader", "history")
    # The file's password belongs to the file's server: it must not leak into the DSN's.
    assert not s.password


def test_explicit_keys_beat_a_dsn_in_the_same_layer() -> None:
    env = {"REGIME_IO_DSN": "postgresql://u:dsnpw@h:1/d", "REGIME_IO_PASSWORD": "explicit"}
    s = load_settings(env=env)
    assert (s.host, s.port, s.password.get()) == ("h", 1, "explicit")
    s = load_settings(config={"database": {"dsn": "postgresql://u@h:1/d", "port": 2}}, env={})
    assert s.port == 2


def test_empty_or_embedded_host_means_the_embedded_server(tmp_path: Path) -> None:
    ini = tmp_path / "c.ini"
    ini.write_text("[DATABASE]\nhost =\n")
    assert load_settings(ini, env={}).embedded
    assert load_settings(config={"database": {"host": "embedded"}}, env={}).embedded
    assert load_settings(env={}).embedded  # nothing at all
    # The environment can send a file's configuration to the embedded server too.
    assert load_settings(SEED_INI, env={"REGIME_IO_HOST": ""}).embedded
    with pytest.raises(ConfigError, match="embedded server not started"):
        load_settings(env={}).url()


def test_embedded_dir_from_env(tmp_path: Path) -> None:
    s = load_settings(env={"REGIME_IO_EMBEDDED_DIR": str(tmp_path / "pg")})
    assert s.embedded_dir == str(tmp_path / "pg")
    assert load_settings(config={"database": {"embedded_dir": ""}}, env={}).embedded_dir is None


def test_unknown_environment_variables_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="regime_io.config"):
        s = load_settings(env={"REGIME_IO_HOTS": "typo", "REGIME_IO_TEST_DSN": "ignored", "OTHER": "x"})
    assert s.embedded
    assert "REGIME_IO_HOTS" in caplog.text
    assert "REGIME_IO_TEST_DSN" not in caplog.text


# -- DSN forms --------------------------------------------------------------------------


def test_url_dsn_with_percent_encoded_password() -> None:
    dsn = "postgresql://us%40er:p%40ss%23w%3Ard%25x@Db.Example:6543/my%20db?sslmode=require"
    s = load_settings(config={"database": {"dsn": dsn}}, env={})
    assert (s.user, s.password.get(), s.host, s.port, s.database) == ("us@er", "p@ss#w:rd%x", "Db.Example",
                                                                      6543, "my db")
    assert s.libpq_options == {"sslmode": "require"}


@pytest.mark.parametrize(
    "dsn",
    ["host=db.example port=5433 dbname=mr user=bob password='it\\'s a \\\\ \\'secret\\'' connect_timeout=7",
     "host = db.example port=5433 dbname = mr user=bob password=plain%40text connect_timeout=7",
     "postgresql://bob:p%40ss%23w%3Ard%25x%20y@db.example:5433/mr?connect_timeout=7"],
)
def test_dsns_parse_as_libpq_parses_them(dsn: str) -> None:
    libpq = conninfo_to_dict(dsn)
    s = load_settings(config={"database": {"dsn": dsn}}, env={})
    assert (s.host, str(s.port), s.database, s.user) == (libpq["host"], libpq["port"], libpq["dbname"],
                                                         libpq["user"])
    assert s.password.get() == libpq["password"]
    assert s.connection_timeout == 7


@pytest.mark.parametrize(
    "dsn",
    ["postgresql://bob@localhost:5433/mr?host=/var/Run/My%20Sockets",
     "postgresql://bob@%2Fvar%2FRun%2FMy%20Sockets:5433/mr",
     "host='/var/Run/My Sockets' port=5433 dbname=mr user=bob"],
)
def test_unix_socket_dsns(dsn: str) -> None:
    s = load_settings(config={"database": {"dsn": dsn}}, env={})
    assert s.host is not None and s.host.startswith("/var/Run/My")  # a path: case kept
    assert (s.port, s.database, s.user) == (5433, "mr", "bob")
    # The URL carries the socket directory as ?host= (connectorx needs that form).
    back = conninfo_to_dict(s.url())
    assert back["host"] == s.host and back["port"] == "5433"


def test_ipv6_dsn() -> None:
    s = load_settings(config={"database": {"dsn": "postgresql://u@[::1]:5544/d"}}, env={})
    assert (s.host, s.port) == ("::1", 5544)
    assert "@[::1]:5544/" in s.url()


@pytest.mark.parametrize(
    ("dsn", "fragment"),
    [("postgresql://u:s3c#r3t@h/d", "percent-encode"),
     ("postgresql://u:s3c:r3t@h:notaport/d", "port is not a number"),
     ("postgresql://u:s3c/r3t@h/d", "port is not a number"),
     ("mysql://u@h/d", "scheme must be postgresql"),
     ("postgresql://u@h/d?bogus=1", "unsupported parameter 'bogus'"),
     ("just words", "expected postgresql://"),
     ("postgresql://u@h1:5432,h2:5432/d", "several hosts")],
)
def test_bad_dsns_are_reported_without_the_dsn(dsn: str, fragment: str) -> None:
    problems = _problems(config={"database": {"dsn": dsn}})
    assert any(fragment in p for p in problems), problems
    assert not any("s3c" in p or "r3t" in p for p in problems)


# -- every problem at once --------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"databse": {}}, "unknown section [databse]"),
        ({"database": {"hots": "x"}}, "unknown key 'hots' in [DATABASE]"),
        ({"connection": {"max_connection": 5}}, "unknown key 'max_connection'"),
        ({"database": {"port": "abc"}}, "port: expected a whole number, got 'abc'"),
        ({"database": {"port": 70000}}, "port: must be between 1 and 65535"),
        ({"database": {"port": 0}}, "port: must be between 1 and 65535"),
        ({"database": {"port": 54.5}}, "port: expected a whole number"),
        ({"database": {"enabled": "maybe"}}, "enabled: expected true or false"),
        ({"database": {"user": " "}}, "user: must not be empty"),
        ({"connection": {"retry_attempts": -1}}, "retry_attempts: must be between 0 and 100"),
        ({"connection": {"retry_delay": -0.5}}, "retry_delay: must be >= 0"),
        ({"connection": {"connection_timeout": 0}}, "connection_timeout: must be > 0"),
        ({"connection": {"connection_timeout": "nan"}}, "connection_timeout: must be > 0"),
        ({"connection": {"max_connections": 0}}, "max_connections: must be between 1 and 1000"),
        ({"database": {"schema": "public; DROP TABLE x"}}, "schema: 'public; DROP TABLE x' is not a plain SQL name"),
        ({"database": {"schema": "1abc"}}, "schema: '1abc' is not a plain SQL name"),
        ({"database": {"schema": "a" * 64}}, "longer than 63 characters"),
        ({"database": {"table_prefix": 'mr"_'}}, "table_prefix: 'mr\"_' is not a plain SQL name"),
        ({"database": {"table_prefix": "1x_"}}, "table_prefix: '1x_' is not a plain SQL name"),
        ({"tables": {"market_data": "md-1"}}, "tables.market_data: 'md-1' is not a plain SQL name"),
        ({"tables": {"market_data": ""}}, "tables.market_data: '' is not a plain SQL name"),
        ({"tables": {"markt_data": "x"}}, "unknown key 'markt_data' in [TABLES]"),
        ({"tables": {"market_data": "same", "options_data": "same"}}, "two tables share one name"),
        ({"tables": {"market_data": "schema_version"}}, "is reserved"),
        ({"tables": {"market_data": "x" * 60}}, "is too long"),
        ({"database": {"table_prefix": ""}, "tables": {"1min_market_regimes": "1min"}}, "starts with a digit"),
        ({"database": {"storage_timezone": "Mars/Olympus"}}, "storage_timezone: unknown time zone 'Mars/Olympus'"),
        ({"database": {"storage_timezone": ""}}, "storage_timezone: unknown time zone ''"),
        ({"database": {"partition_interval": "monthly"}}, "partition_interval: must be one of day, week, month, year"),
        ({"database": {"citus": "2"}}, "citus: expected true or false"),
        ({"retention": {"market_data": 0}}, "retention.market_data: must be >= 1"),
        ({"database": []}, "must be a mapping"),
    ],
)
def test_each_bad_input_is_named(config: dict[str, Any], fragment: str) -> None:
    problems = _problems(config=config)
    assert any(fragment in p for p in problems), problems


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    ini = tmp_path / "bad.ini"
    ini.write_text(
        "[DATABASE]\nport = x\nschema = a b\npassword = hunter2secret\ntable_prefix = mr-\n"
        "storage_timezone = Nowhere/Land\npartition_interval = fortnight\nhots = y\n"
        "[TABLES]\nmarket_data = drop table;\n"
        "[CONNECTION]\nretry_attempts = -2\nmax_connections = many\n"
        "[EXTRA]\nk = v\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(ini, env={})
    err = info.value
    assert len(err.problems) == 10, err.problems
    for key in ("port", "schema", "table_prefix", "storage_timezone", "partition_interval", "'hots'",
                "tables.market_data", "retry_attempts", "max_connections", "[EXTRA]"):
        assert any(key in p for p in err.problems), key
    assert err.source == str(ini)
    assert "10 problems" in str(err)
    assert "hunter2secret" not in str(err) and "hunter2secret" not in repr(err)


def test_problems_name_the_environment_variable() -> None:
    problems = _problems(config={"database": {"port": 1}}, env={"REGIME_IO_PORT": "x", "REGIME_IO_RETRY_DELAY": "-1"})
    assert "port (REGIME_IO_PORT): expected a whole number, got 'x'" in problems
    assert any(p.startswith("retry_delay (REGIME_IO_RETRY_DELAY)") for p in problems)


def test_config_error_is_a_regime_io_error() -> None:
    from regime_io import RegimeIOError

    with pytest.raises(RegimeIOError, match=r"^invalid configuration in dict: port: expected a whole number, got 'x'$"):
        load_settings(config={"database": {"port": "x"}}, env={})


# -- secrets ----------------------------------------------------------------------------


def test_secret_never_prints() -> None:
    secret = Secret("hunter2secret")
    assert str(secret) == "***" and repr(secret) == "Secret('***')" and f"{secret}" == "***"
    assert secret.get() == "hunter2secret"
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b") and not Secret("")


def test_settings_never_print_the_password() -> None:
    s = load_settings(config={"database": {"host": "h", "password": "hunter2secret", "sslpassword": "keypass99"},
                              "connection": {"read_replicas": "postgresql://r:replicapw@r1/d"}}, env={})
    for text in (repr(s), str(s), s.describe(), s.url(), f"{s}"):
        assert "hunter2secret" not in text and "keypass99" not in text and "replicapw" not in text, text
    assert "postgresql://postgres:***@h:5432/postgres" in s.url()
    assert "sslpassword=***" in s.url()
    assert "hunter2secret" in s.url(redact=False) and "keypass99" in s.url(redact=False)


def test_redact_removes_raw_and_encoded_forms() -> None:
    s = load_settings(config={"database": {"host": "h", "password": "p@ss w#rd"},
                              "connection": {"read_replicas": "postgresql://r:replica%23pw@r1/d"}}, env={})
    text = f"failed: p@ss w#rd / {s.url(redact=False)} / p%40ss+w%23rd / replica#pw"
    cleaned = s.redact(text)
    for leaked in ("p@ss w#rd", "p%40ss", "replica#pw", "replica%23pw"):
        assert leaked not in cleaned, cleaned


def test_url_round_trips_through_libpq_parsing() -> None:
    s = load_settings(config={"database": {"host": "db.example", "port": 5433, "user": "us@er:x",
                                           "password": NASTY_PASSWORD, "database": "my db/1",
                                           "options": "-c search_path=a,b", "application_name": "r+io"}},
                      env={})
    parsed = conninfo_to_dict(s.url(redact=False))
    assert parsed["password"] == NASTY_PASSWORD
    assert (parsed["user"], parsed["dbname"], parsed["host"], parsed["port"]) == ("us@er:x", "my db/1",
                                                                                  "db.example", "5433")
    # '+' must stay '+' and spaces must not become '+': libpq does not decode '+'.
    assert parsed["options"] == "-c search_path=a,b" and parsed["application_name"] == "r+io"
    assert parsed["connect_timeout"] == "30"
    # And our own parser reads the URL back to the same settings.
    again = load_settings(config={"database": {"dsn": s.url(redact=False, with_timeout=False)}}, env={})
    assert again.password == s.password and (again.user, again.database) == (s.user, s.database)


def test_url_with_nasty_password_connects_for_real(server: Any) -> None:
    """libpq and ADBC accept the percent-encoded password: a role that needs it logs in."""
    with password_role(server, NASTY_PASSWORD) as role:
        s = settings_replace(server.settings, user=role, password=Secret(NASTY_PASSWORD))
        with psycopg.connect(s.url(redact=False)) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (role,)
        with adbc.connect(s.url(redact=False)) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_user")
            assert cur.fetchone() == (role,)


def test_connectorx_reads_through_the_socket_url(server: Any) -> None:
    cx = pytest.importorskip("connectorx")
    table = cx.read_sql(server.settings.url(redact=False), "SELECT 41 + 1 AS answer", return_type="arrow")
    assert table.column("answer").to_pylist() == [42]


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError, match=r"^cannot assign to field 'port'$"):
        s.port = 1  # type: ignore[misc]

