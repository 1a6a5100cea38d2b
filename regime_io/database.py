"""The connection pools behind every call (public name; the engine lives in ``_conn.database``)."""

from __future__ import annotations

from ._conn.database import Database

__all__ = ["Database"]
