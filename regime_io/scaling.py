"""Scale-out: distributing the tables with Citus when the extension is present.

Every primary key includes ``symbol`` (the distribution column), so the DDL is
Citus-compatible by construction; see ``docs/scaling.md``.
"""

from __future__ import annotations

import logging
from typing import Any

from .config import Settings

log = logging.getLogger(__name__)


def distribute_tables(cur: Any, settings: Settings) -> bool:
    """Distribute the time-series tables by ``symbol`` if the ``citus`` extension is installed.

    Returns False (and logs) on a plain server.
    """
    cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'citus'")
    if not cur.fetchall():
        log.warning("citus = true but the citus extension is not installed; tables stay local")
        return False
    raise NotImplementedError("Citus distribution is built in issue 8")
