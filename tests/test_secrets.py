"""Secrets: a password with ``@``, ``#``, ``:``, ``%`` and a space works through every
configuration form and every driver, and never shows up in a log line (all loggers at
DEBUG, and the drivers' own stderr), an exception message, a repr, the CLI's output or
a benchmark results file. libpq options (``sslmode``, ``application_name``,
``options``) pass through from the configuration to both drivers.

The test server trusts local connections, so the role used here gets a ``pg_hba.conf``
rule demanding scram-sha-256 (``tests/_auth.py``): a wrong password is really refused.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import connectorx as cx
import polars as pl
import psycopg
import pytest
from _auth import password_role

from regime_io import (
    ConfigError,
    PostgreSQLIntegration,
    RegimeIOError,
    Secret,
    ServerError,
    ServerUnavailableError,
    load_settings,
)
from regime_io._conn.pool import ConnectionPool
from regime_io.config import Settings, settings_replace
from regime_io.database import Database

PASSWORD = "Zq9@p#ss: w%rd%41 x"  # '%rd' is no valid escape, '%41' is one: both must stay literal
WRONG = "Wr9@n#g: p%ss%20 y"
ROOT = Path(__file__).resolve().parent.parent


def forms(secret: str) -> list[str]:
    """Every spelling of ``secret`` that could leak: raw, URL-encoded, form-encoded, and its
    distinctive middle (so a partly mangled copy is caught too)."""
    return sorted({secret, quote(secret, safe=""), quote(secret), quote_plus(secret), secret[:9], secret[3:12]},
                  key=len, reverse=True)


def assert_clean(text: str, where: str) -> None:
    for secret in (PASSWORD, WRONG):
        for form in forms(secret):
            assert form not in text, f"{form!r} (a form of a password) appears in {where}: ...{text[:400]}"


@pytest.fixture(scope="module")
def role(server: Any) -> Iterator[str]:
    with password_role(server, PASSWORD) as name:
        yield name


@pytest.fixture
def secure(role: str, settings: Settings, sql: Any) -> Iterator[Settings]:
    """Settings for the password role on a fresh schema it owns."""
    sql(f'CREATE SCHEMA "{settings.schema}" AUTHORIZATION "{role}"')
    yield settings_replace(settings, user=role, password=Secret(PASSWORD))


def dsn_for(settings: Settings, password: str) -> str:
    return settings_replace(settings, password=Secret(password)).url(redact=False, with_timeout=False)


def frame(n: int = 3) -> pl.DataFrame:
    import datetime as dt

    t0 = dt.datetime(2024, 1, 2, 9, 15)
    return pl.DataFrame({"symbol": ["NIFTY"] * n, "timestamp": [t0 + dt.timedelta(minutes=i) for i in range(n)],
                         "regime": ["Bullish"] * n, "confidence": [50.0 + i for i in range(n)]})


# -- connecting with the password -------------------------------------------------------


def test_the_password_is_really_checked(secure: Settings) -> None:
    with PostgreSQLIntegration(settings=settings_replace(secure, password=Secret(WRONG), retry_attempts=0)) as pg, \
            pytest.raises(ServerError, match="password authentication failed"):
        pg.initialize_database()


@pytest.mark.parametrize("how", ["settings", "dict", "ini", "env-dsn", "dict-dsn"])
def test_every_configuration_form_connects_with_the_password(secure: Settings, tmp_path: Path, how: str) -> None:
    host, port = secure.host, secure.port
    assert host is not None
    database = {"host": host, "port": str(port), "user": secure.user, "password": PASSWORD,
                "database": secure.database, "schema": secure.schema}
    if how == "settings":
        settings = secure
    elif how == "dict":
        settings = load_settings(config={"database": database}, env={})
    elif how == "ini":
        ini = tmp_path / "db.ini"
        ini.write_text("[DATABASE]\n" + "".join(f"{k} = {v}\n" for k, v in database.items()))
        settings = load_settings(ini, env={})
    elif how == "env-dsn":
        settings = load_settings(env={"REGIME_IO_DSN": dsn_for(secure, PASSWORD), "REGIME_IO_SCHEMA": secure.schema})
    else:
        settings = load_settings(config={"database": {"dsn": dsn_for(secure, PASSWORD), "schema": secure.schema}},
                                 env={})
    assert settings.password.get() == PASSWORD
    with PostgreSQLIntegration(settings=settings) as pg:
        pg.initialize_database()
        pg.save_1min_market_regime(frame())
        # ADBC (pool, bound parameters) and connectorx (its own connections, the URL) both log in.
        assert pg.get_latest_1min_market_regime("NIFTY").height == 1
        assert pg.get_1min_market_regimes("NIFTY", "2024-01-02", "2024-01-02").height == 3
        assert list(pg.iter_market_data("NIFTY", "2024-01-02", "2024-01-02")) is not None
        url = pg.db.read_url()
        assert quote(PASSWORD, safe="") in url  # encoded once: '%' became '%25', '#' '%23', '@' '%40'
        assert cx.read_sql(url, "SELECT current_user AS u", return_type="arrow").column("u")[0].as_py() == secure.user


# -- the password never shows -----------------------------------------------------------


def _hung_port() -> tuple[socket.socket, int]:
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(8)
    return hole, hole.getsockname()[1]


def test_the_password_is_in_no_log_line_error_or_repr(secure: Settings, caplog: pytest.LogCaptureFixture,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    texts: list[tuple[str, str]] = []

    def failing(where: str, call: Any, expected: type[BaseException] = RegimeIOError) -> None:
        with pytest.raises(expected) as info:
            call()
        err = info.value
        texts.append((f"{where} (message)", str(err)))
        texts.append((f"{where} (repr)", repr(err)))
        texts.append((f"{where} (args)", repr(err.args)))
        cause = err.__cause__
        if cause is not None and isinstance(err, RegimeIOError):
            # The wrapped driver error is the caller's to see too (traceback "caused by").
            texts.append((f"{where} (cause)", str(cause)))

    # The package logger too: another test (or the CLI) may have set its own level.
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="regime_io"):
        with PostgreSQLIntegration(settings=secure) as pg:
            pg.initialize_database()
            pg.save_1min_market_regime(frame())
            pg.get_1min_market_regimes("NIFTY", "2024-01-02", "2024-01-02")
            pg.get_latest_1min_market_regime("NIFTY")
            pg.cleanup_old_data(days_to_keep=10_000)
            pool = pg.db.pool
            for obj in (pg, pg.db, pool, pg.settings, pg.settings.password):
                texts.append((f"repr({type(obj).__name__})", repr(obj)))
                texts.append((f"str({type(obj).__name__})", str(obj)))
            texts.append(("describe()", pg.settings.describe()))
            texts.append(("url()", pg.settings.url()))
            # Errors of every kind, made with this password in the settings.
            failing("validation error", lambda: pg.save_1min_market_regime(frame().with_columns(
                pl.lit(1e6).alias("confidence"))))
            failing("write error", lambda: pg.save_1min_market_regime(frame(), on_conflict="error"))
            failing("read error", lambda: pg.get_market_regime_distribution("NIFTY", "2024-01-02", "2024-01-01"))
        missing_tables = settings_replace(secure, schema=f"nothing_{uuid.uuid4().hex[:6]}")
        with PostgreSQLIntegration(settings=missing_tables) as pg:
            failing("schema error", lambda: pg.save_1min_market_regime(frame()))
            failing("reader on missing tables", lambda: pg.get_1min_market_regimes("NIFTY", "2024-01-02",
                                                                                  "2024-01-02"))
        wrong = settings_replace(secure, password=Secret(WRONG), retry_attempts=0)
        with PostgreSQLIntegration(settings=wrong) as pg:
            failing("wrong password, writer", lambda: pg.save_1min_market_regime(frame()), ServerError)
            failing("wrong password, reader", lambda: pg.get_1min_market_regimes("NIFTY", "2024-01-02",
                                                                                "2024-01-02"), ServerError)
        hole, port = _hung_port()
        with hole, PostgreSQLIntegration(settings=settings_replace(
                secure, host="127.0.0.1", port=port, connection_timeout=2, retry_attempts=1, retry_delay=0)) as pg:
            failing("unreachable host", lambda: pg.get_latest_1min_market_regime("NIFTY"), ServerUnavailableError)
        pool = ConnectionPool.from_settings(wrong)
        texts.append(("repr(pool with the wrong password)", repr(pool)))
        texts.append(("repr(Database)", repr(Database(wrong))))
        failing("config error from a DSN", lambda: load_settings(
            config={"database": {"dsn": dsn_for(secure, PASSWORD).replace(f":{secure.port}/", ":port/")}}, env={}),
            ConfigError)
        failing("config error next to a password", lambda: load_settings(
            config={"database": {"password": PASSWORD, "port": "x"}}, env={}), ConfigError)
    records = caplog.records
    assert any(r.levelno == logging.DEBUG and r.name.startswith("regime_io") for r in records)  # DEBUG captured
    for record in records:
        texts.append((f"log record {record.name}", record.getMessage()))
    texts.append(("captured log text", caplog.text))
    out, err = capfd.readouterr()  # libpq and connectorx (r2d2) write to the process's stderr
    texts.append(("stdout/stderr", out + err))
    assert len(texts) > 30
    for where, text in texts:
        assert_clean(text, where)


# -- the command line -------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("REGIME_IO_")}
    return subprocess.run([sys.executable, "-m", "regime_io", *args], capture_output=True, text=True,
                          env={**base, **env, "COLUMNS": "200"}, cwd=ROOT, timeout=120)


@pytest.mark.slow
def test_cli_output_never_shows_the_password(secure: Settings) -> None:
    env = {"REGIME_IO_DSN": dsn_for(secure, PASSWORD)}
    runs = [
        _cli("-vv", "--schema", secure.schema, "init", env=env),
        _cli("-vv", "--schema", secure.schema, "doctor", env=env),
        _cli("-vv", "--schema", secure.schema, "latest", env=env),
        _cli("-vv", "--schema", secure.schema, "--dsn", dsn_for(secure, PASSWORD), "partitions", env={}),
        _cli("-vv", "--schema", secure.schema, "doctor", env={"REGIME_IO_DSN": dsn_for(secure, WRONG),
                                                              "REGIME_IO_RETRY_ATTEMPTS": "0"}),
        _cli("-vv", "--dsn", dsn_for(secure, PASSWORD).replace(f":{secure.port}/", ":notaport/"), "doctor", env={}),
    ]
    assert [r.returncode for r in runs[:4]] == [0, 0, 0, 0], [r.stderr[-500:] for r in runs[:4]]
    assert runs[4].returncode == 1 and "password authentication failed" in runs[4].stdout + runs[4].stderr
    assert runs[5].returncode != 0
    for i, r in enumerate(runs):
        assert_clean(r.stdout + r.stderr, f"CLI run {i}")


@pytest.mark.slow
def test_benchmark_results_never_hold_the_password(secure: Settings, tmp_path: Path) -> None:
    from benchmarks.run import main

    out = tmp_path / "results.json"
    code = main(["--sections", "regimes", "--rows", "2000", "--symbols", "2", "--repeats", "1",
                 "--slow-repeats", "1", "--latency-calls", "5", "--regime-days", "2", "--rolling-calls", "3",
                 "--dsn", dsn_for(secure, PASSWORD), "--output", str(out), "--markdown", str(tmp_path / "t.md")])
    assert code == 0
    for path in tmp_path.iterdir():
        assert_clean(path.read_text(), f"benchmark file {path.name}")


# -- libpq options pass through -----------------------------------------------------------


def test_libpq_options_reach_both_drivers(settings: Settings, sql: Any) -> None:
    name = f"rio_secrets_{uuid.uuid4().hex[:6]}"
    configured = load_settings(config={"database": {
        "host": settings.host, "port": str(settings.port), "schema": settings.schema, "sslmode": "disable",
        "application_name": name, "options": "-c statement_timeout=4321",
    }}, env={})
    url = configured.url()
    for fragment in ("sslmode=disable", f"application_name={name}", "options=-c%20statement_timeout%3D4321"):
        assert fragment in url, url
    with PostgreSQLIntegration(settings=configured) as pg:
        pg.initialize_database()
        with pg.db.connection() as conn:  # ADBC (libpq)
            cur = conn.cursor()
            cur.execute("SELECT current_setting('statement_timeout'), current_setting('application_name')")
            assert cur.fetchone() == ("4321ms", name)
            cur.close()
        row = cx.read_sql(pg.db.read_url(), "SELECT current_setting('statement_timeout') AS t, "
                          "current_setting('application_name') AS a", return_type="arrow")  # connectorx
        assert (row.column("t")[0].as_py(), row.column("a")[0].as_py()) == ("4321ms", name)


class _NoSSLServer:
    """A TCP 'server' that answers every SSLRequest with 'N' (no SSL), as a PostgreSQL
    server without SSL does, then hangs up."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.ssl_requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    packet = conn.recv(8)
                    if packet == b"\x00\x00\x00\x08\x04\xd2\x16\x2f":  # SSLRequest
                        self.ssl_requests += 1
                        conn.sendall(b"N")
                        conn.recv(1024)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def test_sslmode_require_against_a_server_without_ssl_fails_clearly_and_at_once(settings: Settings) -> None:
    fake = _NoSSLServer()
    try:
        required = load_settings(config={"database": {"host": "127.0.0.1", "port": str(fake.port),
                                                      "password": PASSWORD, "sslmode": "require"},
                                         "connection": {"retry_attempts": "2", "retry_delay": "30"}}, env={})
        assert "sslmode=require" in required.url()
        with PostgreSQLIntegration(settings=required) as pg:
            for call in (lambda: pg.save_1min_market_regime(frame()),
                         lambda: pg.get_1min_market_regimes("NIFTY", "2024-01-02", "2024-01-02")):
                started = time.perf_counter()
                with pytest.raises(ServerError) as info:
                    call()
                assert time.perf_counter() - started < 15  # refused, not retried (retry_delay is 30 s)
                assert not isinstance(info.value, ServerUnavailableError)
                assert "SSL" in str(info.value), str(info.value)
                assert_clean(str(info.value), "ssl error")
        assert fake.ssl_requests >= 2
    finally:
        fake.close()


def test_an_sslmode_connectorx_cannot_honour_moves_its_reads_to_adbc(settings: Settings,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """connectorx 0.4 accepts only disable/prefer/require: with verify-full the reads it
    serves (resampling, streams) go to ADBC, which is libpq (never a silent downgrade to
    unverified TLS, never an error). libpq ignores sslmode on a Unix socket, so every read
    works here; tests/test_tls.py checks the same over real TLS."""
    if not (settings.host or "").startswith("/"):
        pytest.skip("the test server is reached over TCP (REGIME_IO_TEST_DSN): verify-full needs TLS there, "
                    "which tests/test_tls.py sets up")
    strict = settings_replace(settings, libpq_options={"sslmode": "verify-full"})
    caplog.set_level(logging.DEBUG, logger="regime_io._conn.engines")
    with PostgreSQLIntegration(settings=strict) as pg:
        pg.initialize_database()
        assert pg.get_latest_1min_market_regime("NIFTY").height == 0
        assert pg.get_1min_market_regimes("NIFTY", "2024-01-02", "2024-01-02").height == 0
        assert pg.get_1min_market_regimes("NIFTY", "2024-01-01", "2024-12-31").height == 0
        pg.save_market_data(pl.DataFrame({
            "symbol": "NIFTY", "timestamp": [dt.datetime(2024, 1, 2, 9, 15 + i) for i in range(30)],
            "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5, "volume": 10, "timeframe": "1m"}))
        assert pg.get_market_data("NIFTY", "2024-01-01", "2024-12-31", resample="1h").height > 0
        assert sum(len(b) for b in pg.iter_market_data("NIFTY", "2024-01-01", "2024-12-31")) == 30
    assert not [r for r in caplog.records if r.getMessage().startswith(("connectorx:", "connectorx stream"))]


def test_psycopg_sees_the_same_password(secure: Settings) -> None:
    # The URL regime_io builds is a valid libpq URL for other clients too.
    with psycopg.connect(secure.url(redact=False)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (secure.user,)
