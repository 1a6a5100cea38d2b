"""Times back as they went in: a table written zone-aware reads back zone-aware.

Stored times are naive ``TIMESTAMP`` values in the storage zone (``regime_io._schema.timezones``).
A table whose rows arrived zone-aware (the kind recorded on its first write) holds
instants: readers return its time column as ``Datetime("us", "UTC")`` by default, or in the
zone asked for with ``tz=``, so a 09:31 New York bar reads back as 14:31 UTC *with its zone*
(or as 09:31 America/New_York), never as a naive 14:31 that looks like a local time. A
table written naive comes back naive, unchanged: its times carry no zone to convert from,
so ``tz=`` against it is a :class:`~regime_io.errors.UsageError`.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import UsageError
from ..tables import TableSpec
from .resample import table_is_aware

if TYPE_CHECKING:
    from .._conn.database import Database

__all__ = ["check_tz", "zoned", "zoned_batches"]

READ_ZONE = "UTC"  # the zone of an aware table's times when no tz= is given


def check_tz(tz: Any) -> str | None:
    """``tz`` as an IANA zone name, or None; anything else is a UsageError."""
    if tz is None:
        return None
    if isinstance(tz, str):
        try:
            zoneinfo.ZoneInfo(tz.strip())
            return tz.strip()
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    raise UsageError(f"tz: {tz!r} is not a time zone; use an IANA name such as 'UTC' or 'America/New_York'",
                     value=tz)


def _target(db: Database, spec: TableSpec, tz: str | None) -> str | None:
    """The zone the time column is returned in, or None when it stays naive."""
    if spec.time_column is None or not db.settings.enabled:
        return None
    if not table_is_aware(db, spec):
        if tz is not None:
            raise UsageError(f"tz={tz!r}: {spec.key} was written with naive timestamps, which carry no zone to "
                             "convert from (they read back as written); tz= applies to tables written zone-aware "
                             "(docs/timezones.md)", table=spec.key, column=spec.time_column, value=tz)
        return None
    return tz or READ_ZONE


def _convert(column: pa.Array | pa.ChunkedArray, storage_zone: str, zone: str) -> pa.Array | pa.ChunkedArray:
    if storage_zone == "UTC":  # naive UTC values are the instants already: a cast of the type only
        instants = column.cast(pa.timestamp("us", tz="UTC"))
    else:
        instants = pc.assume_timezone(column, timezone=storage_zone, ambiguous="earliest", nonexistent="earliest")
    return instants.cast(pa.timestamp("us", tz=zone))


def zoned(db: Database, spec: TableSpec, table: pa.Table, tz: str | None) -> pa.Table:
    """``table`` with the time column zone-aware when ``spec``'s rows were written zone-aware."""
    zone = _target(db, spec, tz)
    if zone is None or spec.time_column not in table.column_names:
        return table
    index = table.schema.get_field_index(spec.time_column)
    column = _convert(table.column(index), db.settings.storage_timezone, zone)
    return table.set_column(index, pa.field(spec.time_column, column.type), column)


def zoned_batches(db: Database, spec: TableSpec, batches: Iterator[pa.RecordBatch],
                  tz: str | None) -> Iterator[pa.RecordBatch]:
    """:func:`zoned` for a stream of record batches (the zone is decided before the first)."""
    zone = _target(db, spec, tz)
    if zone is None:
        return batches

    def converted() -> Iterator[pa.RecordBatch]:
        for batch in batches:
            index = batch.schema.get_field_index(spec.time_column)  # type: ignore[arg-type]
            column = _convert(batch.column(index), db.settings.storage_timezone, zone)
            yield batch.set_column(index, pa.field(spec.time_column, column.type), column)  # type: ignore[arg-type]

    return converted()
