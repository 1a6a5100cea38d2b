"""Read replicas: readers use one when configured, writers always use the primary.

With no ``read_replicas`` configured every read goes to the primary. The replica
support (round-robin or first healthy, fallback to the primary with a warning,
read-your-writes) is built in issue 8.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .pool import Connection

if TYPE_CHECKING:
    from .database import Database

log = logging.getLogger(__name__)


def read_url(db: Database) -> str:
    """The URL connectorx should read from (the primary for now)."""
    return db.resolved.url(redact=False)


@contextmanager
def read_connection(db: Database) -> Iterator[Connection]:
    """A pooled connection for point reads."""
    with db.pool.connection() as conn:
        yield conn


def close(db: Database) -> None:
    """Release replica pools (none yet)."""
