"""Every derived relation name, built once from ``tables.py`` and the settings.

The row table, its sealed-chunk table (``<t>_chunks``), its knowledge-time table
(``<t>_history``), the schema version table, the series catalog and the change log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..config import Settings
from ..tables import TableSpec
from .quote import literal, qualified

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["catalog_table", "channel", "history_table", "sealed_changes_table"]


def qualified_table(spec: TableSpec, settings: Settings) -> str:
    """The quoted ``"schema"."prefix+name"`` of a table."""
    return qualified(settings.schema, settings.table_name(spec.key))


def version_table(settings: Settings) -> str:
    return qualified(settings.schema, f"{settings.table_prefix}schema_version")


def metadata_table(settings: Settings) -> str:
    """The quoted ``"schema"."<prefix>metadata"``: what the schema records about itself
    (storage zone, price scale, each table's time kind)."""
    return qualified(settings.schema, f"{settings.table_prefix}metadata")


def index_name(settings: Settings, spec: TableSpec, columns: Iterable[str]) -> str:
    name = f"{settings.table_name(spec.key)}_{'_'.join(columns)}_idx"
    return name[:63]


def chunk_table(spec: TableSpec, settings: Settings) -> str:
    """The quoted ``"schema"."<table>_chunks"`` of a sealable table."""
    return qualified(settings.schema, f"{settings.table_name(spec.key)}_chunks")


def guard_function(spec: TableSpec, settings: Settings) -> str:
    """The quoted ``"schema"."<table>_sealed_guard"``: the trigger function of the sealed-month guard."""
    return qualified(settings.schema, f"{settings.table_name(spec.key)}_sealed_guard")


def guard_trigger(spec: TableSpec, settings: Settings) -> str:
    """The (unquoted) name of the sealed-month guard's trigger on the row table."""
    return f"{settings.table_name(spec.key)}_sealed_guard"[:63]


def horizon_function(spec: TableSpec, settings: Settings) -> str:
    """The quoted ``"schema"."<table>_sealed_horizon"``: end of the newest sealed month."""
    return qualified(settings.schema, f"{settings.table_name(spec.key)}_sealed_horizon")


def sealed_changes_table(settings: Settings) -> str:
    """The quoted ``"schema"."<prefix>sealed_changes"``."""
    return qualified(settings.schema, f"{settings.table_prefix}sealed_changes")


def channel(settings: Settings, key: str) -> str:
    """The NOTIFY channel of one table (an identifier of at most 63 bytes)."""
    name = f"regime_io:{settings.schema}.{settings.table_name(key)}"  # type: ignore[arg-type]
    if len(name.encode()) > 63:
        name = "regime_io:" + hashlib.sha1(name.encode()).hexdigest()
    return name


def catalog_table(settings: Settings) -> str:
    """The quoted ``"schema"."<prefix>series"``."""
    return qualified(settings.schema, f"{settings.table_prefix}series")


def history_table(spec: TableSpec, settings: Settings) -> str:
    """The quoted ``"schema"."<table>_history"``."""
    return qualified(settings.schema, f"{settings.table_name(spec.key)}_history")


_LOCK_NAMESPACE = 0x5245_4749  # "REGI"


def ddl_lock_key(settings: Settings) -> str:
    """The advisory-lock key (SQL text) that serialises DDL on one schema and prefix."""
    return f"{_LOCK_NAMESPACE}, hashtext({literal(settings.schema + '.' + settings.table_prefix)})"
