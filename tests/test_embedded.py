"""The embedded server: reuse, persistence across Python processes, status and stop.

One temporary data directory for the whole module (``initdb`` costs seconds); stopped and
removed at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import platformdirs
import psycopg
import pytest

from regime_io._conn import embedded as embedded
from regime_io._conn.pool import resolve_server
from regime_io.config import load_settings


@pytest.fixture(scope="module")
def pgdata(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("embedded") / "pgdata"
    yield directory
    embedded.stop(directory, mode="immediate")
    shutil.rmtree(directory.parent, ignore_errors=True)


def _url(info: embedded.EmbeddedServer) -> str:
    return f"postgresql://{info.user}@localhost:{info.port}/{info.database}?host={info.socket_dir}"


def _run(code: str, pgdata: Path) -> str:
    """Run ``code`` in a new Python process; it finds the data directory in RIO_PGDATA."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**os.environ, "RIO_PGDATA": str(pgdata)}, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_starting_twice_reuses_the_running_server(pgdata: Path) -> None:
    first = embedded.start(pgdata)
    second = embedded.start(pgdata)
    assert first.pid is not None and first.pid == second.pid
    assert first.socket_dir == second.socket_dir and first.port == second.port
    assert embedded.status(pgdata) == first
    with psycopg.connect(_url(first)) as conn:
        assert conn.execute("SELECT pg_backend_pid() > 0").fetchone() == (True,)


def test_data_survives_a_new_python_process(pgdata: Path) -> None:
    pid = embedded.start(pgdata).pid
    writer = """
        import os, psycopg
        from regime_io._conn import embedded
        info = embedded.start(os.environ["RIO_PGDATA"])
        url = f"postgresql://postgres@localhost:{info.port}/postgres?host={info.socket_dir}"
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS kept (v TEXT)")
            conn.execute("INSERT INTO kept VALUES ('written by another process')")
        print(info.pid)
    """
    reader = """
        import os, psycopg
        from regime_io._conn import embedded
        info = embedded.start(os.environ["RIO_PGDATA"])
        url = f"postgresql://postgres@localhost:{info.port}/postgres?host={info.socket_dir}"
        with psycopg.connect(url) as conn:
            print(conn.execute("SELECT v FROM kept").fetchone()[0])
    """
    assert _run(writer, pgdata) == str(pid)  # the child reused this server
    # The writer has exited; the server (and the row) outlive it.
    assert embedded.status(pgdata) is not None
    assert _run(reader, pgdata) == "written by another process"


def test_stop_then_start_keeps_the_data(pgdata: Path) -> None:
    info = embedded.start(pgdata)
    with psycopg.connect(_url(info), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS restarted (v INT)")
        conn.execute("INSERT INTO restarted VALUES (7)")
    assert embedded.stop(pgdata) is True
    assert embedded.status(pgdata) is None
    assert embedded.stop(pgdata) is False  # already stopped
    again = embedded.start(pgdata)  # the same process starts it again
    assert again.pid != info.pid and embedded.status(pgdata) == again
    with psycopg.connect(_url(again)) as conn:
        assert conn.execute("SELECT v FROM restarted").fetchall() == [(7,)]


def test_status_and_stop_of_a_directory_without_a_server(tmp_path: Path) -> None:
    assert embedded.status(tmp_path / "never") is None
    assert embedded.stop(tmp_path / "never") is False
    assert not (tmp_path / "never").exists()  # looking does not create anything


def test_data_dir_override_env_and_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("REGIME_IO_EMBEDDED_DIR", raising=False)
    assert embedded.data_dir() == (Path(platformdirs.user_data_dir("regime-io")) / "pgdata").resolve()
    monkeypatch.setenv("REGIME_IO_EMBEDDED_DIR", str(tmp_path / "from-env"))
    assert embedded.data_dir() == (tmp_path / "from-env").resolve()
    assert embedded.data_dir(tmp_path / "explicit") == (tmp_path / "explicit").resolve()


def test_unconfigured_settings_resolve_to_the_embedded_server(pgdata: Path) -> None:
    settings = load_settings(config={"database": {"embedded_dir": str(pgdata)}}, env={})
    assert settings.embedded
    resolved = resolve_server(settings)
    info = embedded.start(pgdata)
    assert (resolved.host, resolved.port, resolved.user) == (info.socket_dir, info.port, "postgres")
    with psycopg.connect(resolved.url(redact=False)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_url_of_the_embedded_server_and_when_it_is_not_running(tmp_path: Path) -> None:
    from regime_io import server as public
    from regime_io.config import load_settings
    from regime_io.errors import RegimeIOError

    settings = load_settings(config={"database": {"embedded_dir": str(tmp_path / "none")}}, env={})
    with pytest.raises(RegimeIOError, match="the embedded server is not running; start it with: regime-io db start"):
        public.url(settings)
    configured = load_settings(config={"database": {"host": "db.example", "port": "6543", "user": "u",
                                                     "password": "s3cret", "database": "d"}}, env={})
    assert public.url(configured) == "postgresql://u:***@db.example:6543/d"
    assert "s3cret" in public.url(configured, show_password=True)
    assert "s3cret" not in public.url(configured)
