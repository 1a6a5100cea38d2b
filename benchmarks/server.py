"""One server per benchmark run: a fresh embedded server in a temporary directory, or ``--dsn``.

Every section of a run works in its own schema of that server (``rio_bench_<random>``),
dropped at the end, so a run never touches existing tables. The description of the
server that goes into the results never contains a password.

Example:
    >>> with bench_server(None) as server:          # doctest: +SKIP
    ...     server.version, server.kind
    ('18.1', 'embedded')
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from regime_io.config import Settings, load_settings, settings_replace
from regime_io.database import Database

__all__ = ["BenchServer", "bench_server"]

log = logging.getLogger(__name__)

# Server settings worth knowing when reading the numbers.
_SHOWN_SETTINGS = ("server_version", "shared_buffers", "work_mem", "maintenance_work_mem", "max_wal_size",
                   "synchronous_commit", "fsync", "wal_level", "max_parallel_workers_per_gather", "jit")


@dataclass
class BenchServer:
    kind: str  # "embedded" or "dsn"
    settings: Settings  # points at the server; schema chosen per section
    version: str = ""
    server_settings: dict[str, str] = field(default_factory=dict)
    is_superuser: bool = False
    local: bool = False  # the server reads files of this machine (same host)
    schemas: list[str] = field(default_factory=list)
    scratch: Path | None = None  # a directory the server's OS user can read

    def url(self) -> str:
        """The libpq URL with the password (never logged or stored)."""
        return self.settings.url(redact=False)

    def describe(self) -> str:
        return self.settings.describe()

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(), autocommit=autocommit)

    def new_schema(self, section: str) -> Settings:
        """Settings for a fresh schema (created by ``initialize_database``), dropped at the end."""
        schema = f"rio_bench_{section}_{uuid.uuid4().hex[:6]}"
        self.schemas.append(schema)
        return settings_replace(self.settings, schema=schema)

    def database(self, section: str) -> Database:
        """A ``Database`` on a fresh, initialised schema."""
        from regime_io._schema.ddl import initialize_database

        db = Database(self.new_schema(section))
        initialize_database(db.pool, db.settings)
        return db

    def drop_schemas(self) -> None:
        with self.connect() as conn:
            for schema in self.schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        self.schemas.clear()

    def scratch_file(self, name: str) -> Path:
        """A path for a data file the server process can read (``COPY ... FROM 'file'``)."""
        assert self.scratch is not None
        return self.scratch / name


def _scratch_dir() -> Path:
    # The embedded server runs as another OS user (pgserver) when we are root: it must be
    # able to traverse the directory and read the files we put there.
    path = Path(tempfile.mkdtemp(prefix="rio-bench-data-"))
    path.chmod(0o755)
    return path


def _inspect(server: BenchServer) -> None:
    with server.connect() as conn:
        for name in _SHOWN_SETTINGS:
            row = conn.execute("SELECT current_setting(%s, true)", (name,)).fetchone()
            server.server_settings[name] = row[0] if row and row[0] is not None else "?"
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        server.is_superuser = bool(row and row[0])
    server.version = server.server_settings.get("server_version", "?")


@contextlib.contextmanager
def _terminated_cleanly() -> Iterator[None]:
    """SIGTERM (``timeout``, a CI runner's cancel) ends the run as Ctrl-C does, through the
    ``finally`` blocks, so the embedded server is stopped and its directory removed: killed
    by the default handler, a run left its PostgreSQL running in /tmp/rio-bench-*."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def bench_server(dsn: str | None, *, keep: bool = False) -> Iterator[BenchServer]:
    """Start a fresh embedded server (``dsn`` None) or use ``dsn``; clean up afterwards."""
    base = {"connection": {"max_connections": "8", "connection_timeout": "30", "retry_attempts": "1",
                           "retry_delay": "0.5"}}
    pgdata: Path | None = None
    if dsn:
        settings = load_settings(config={"database": {"dsn": dsn}, **base}, env={})
        host = settings.host or ""
        server = BenchServer("dsn", settings, local=host.startswith("/") or host in ("localhost", "127.0.0.1", "::1"))
    else:
        from regime_io._conn import embedded as embedded

        pgdata = Path(tempfile.mkdtemp(prefix="rio-bench-")) / "pgdata"
        log.info("starting a fresh embedded server in %s", pgdata)
        info = embedded.start(pgdata)
        settings = load_settings(config={"database": {"host": info.socket_dir, "port": info.port}, **base}, env={})
        server = BenchServer("embedded", settings, local=True)
    server.scratch = _scratch_dir()
    try:
        with _terminated_cleanly():
            _inspect(server)
            yield server
    finally:
        with contextlib.suppress(Exception):
            server.drop_schemas()
        shutil.rmtree(server.scratch, ignore_errors=True)
        if pgdata is not None and not keep:
            from regime_io._conn import embedded as embedded

            with contextlib.suppress(Exception):
                embedded.stop(pgdata, mode="fast")
            shutil.rmtree(pgdata.parent, ignore_errors=True)


def machine() -> dict[str, Any]:
    """The machine the numbers come from: CPU, cores, RAM, OS, library versions."""
    import platform
    import socket

    import adbc_driver_postgresql
    import connectorx
    import numpy
    import polars
    import psutil
    import pyarrow

    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {"python": platform.python_version(), "polars": polars.__version__, "pyarrow": pyarrow.__version__,
                "numpy": numpy.__version__, "connectorx": getattr(connectorx, "__version__", "?"),
                "adbc_driver_postgresql": getattr(adbc_driver_postgresql, "__version__", "?"),
                "psycopg": psycopg.__version__}
    for optional in ("pandas", "sqlalchemy"):
        with contextlib.suppress(ImportError):
            versions[optional] = __import__(optional).__version__
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "host": socket.gethostname(),
        "cpu": cpu,
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in load],
        "versions": versions,
    }
