"""``PostgreSQLIntegration`` basics: the embedded default, the seed's INI file, context manager, repr."""

from __future__ import annotations

import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from _helpers import eventually, write_seed_ini

from regime_io import PostgreSQLIntegration
from regime_io._conn import embedded as embedded
from regime_io._schema.ddl import SCHEMA_VERSION
from regime_io.config import Settings, settings_replace
from regime_io.tables import TABLES


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own REGIME_IO_* variables must not change what these tests build."""
    import os

    for name in list(os.environ):
        if name.startswith("REGIME_IO_") and not name.startswith("REGIME_IO_TEST_"):
            monkeypatch.delenv(name)


def _tables_in(url: str, schema: str, prefix: str = "mr_") -> dict[str, bool]:
    with psycopg.connect(url) as conn:
        return {
            key: conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                              (f'"{schema}"."{prefix}{spec.default_name}"',)).fetchone() == (True,)
            for key, spec in TABLES.items()
        }


@pytest.fixture
def embedded_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("rio-default") / "pgdata"
    monkeypatch.setenv("REGIME_IO_EMBEDDED_DIR", str(directory))
    yield directory
    embedded.stop(directory, mode="immediate")
    shutil.rmtree(directory.parent, ignore_errors=True)


def test_no_arguments_means_the_embedded_server(embedded_dir: Path) -> None:
    pg = PostgreSQLIntegration()
    assert pg.settings.embedded
    assert "embedded server" in repr(pg)
    assert embedded.status(embedded_dir) is None  # nothing starts before it is needed
    assert pg.initialize_database() == SCHEMA_VERSION
    running = embedded.status(embedded_dir)
    assert running is not None and pg.db.resolved.host == running.socket_dir
    assert _tables_in(pg.db.resolved.url(redact=False), "public") == dict.fromkeys(TABLES, True)
    pg.close()
    # The server keeps running for the next process; a second object reuses it.
    with PostgreSQLIntegration() as again:
        assert again.initialize_database() == SCHEMA_VERSION
        assert embedded.status(embedded_dir) == running


def test_seed_ini_pointing_at_the_test_server(server: Any, settings: Settings, tmp_path: Path, sql: Any) -> None:
    ini = write_seed_ini(tmp_path / "database_config.ini", server.settings, schema=settings.schema,
                    password=server.settings.password.get() or "postgres")
    pg = PostgreSQLIntegration(config_file=ini)
    try:
        assert not pg.settings.embedded and pg.settings.source == str(ini)
        assert pg.initialize_database() == SCHEMA_VERSION
        assert pg.initialize_database() == SCHEMA_VERSION  # idempotent
        assert _tables_in(server.url(), settings.schema) == dict.fromkeys(TABLES, True)
        assert sql("SELECT count(*) FROM information_schema.tables WHERE table_schema = %s "
                   "AND table_name = 'mr_schema_version'", (settings.schema,)) == [(1,)]
    finally:
        pg.close()


def test_seed_dict_pointing_at_the_test_server(server: Any, settings: Settings) -> None:
    s = server.settings
    config = {"database": {"host": s.host, "port": s.port, "database": s.database, "user": s.user,
                           "password": s.password.get(), "schema": settings.schema, "table_prefix": "mr_"}}
    with PostgreSQLIntegration(config=config) as pg:
        pg.initialize_database()
        assert _tables_in(server.url(), settings.schema) == dict.fromkeys(TABLES, True)


def test_context_manager_closes_every_connection(settings: Settings, sql: Any) -> None:
    tag = f"rio_ctx_{uuid.uuid4().hex[:8]}"
    tagged = settings_replace(settings, libpq_options={**settings.libpq_options, "application_name": tag})

    def connections() -> int:
        return int(sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (tag,))[0][0])

    with PostgreSQLIntegration(settings=tagged) as pg:
        pg.initialize_database()
        assert connections() == 1
    assert eventually(lambda: connections() == 0)
    # Also when the block raises.
    with pytest.raises(ZeroDivisionError, match="division by zero"), PostgreSQLIntegration(settings=tagged) as pg:
        pg.initialize_database()
        assert connections() == 1
        1 / 0  # noqa: B018
    assert eventually(lambda: connections() == 0)


def test_repr_never_shows_the_password(server: Any, settings: Settings, tmp_path: Path) -> None:
    # The test server trusts local connections, so any password logs in: this one never may print.
    ini = write_seed_ini(tmp_path / "c.ini", server.settings, schema=settings.schema,
                    password=server.settings.password.get() or "hunter2#S3cret")
    secret = server.settings.password.get() or "hunter2#S3cret"
    with PostgreSQLIntegration(config_file=ini) as pg:
        pg.initialize_database()  # connected: the pool and resolved settings exist now
        texts = [repr(pg), str(pg), repr(pg.db), repr(pg.db.pool), repr(pg.settings), str(pg.settings),
                 repr(pg.db.resolved), pg.settings.describe(), pg.db.resolved.url()]
    for text in texts:
        assert secret not in text, text
        assert "S3cret" not in text, text


def test_disabled_integration_does_not_connect() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with PostgreSQLIntegration(config={"database": {"enabled": False, "host": "127.0.0.1", "port": port}}) as pg:
        assert not pg.enabled
        assert pg.initialize_database() == 0
        assert "disabled" in repr(pg)
