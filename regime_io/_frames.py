"""Reader outputs: one Arrow schema per reader, then polars, pandas or Arrow.

Every reader builds an Arrow table that matches its declared schema exactly (column
order and types, for empty and non-empty results alike) and converts it last, so the
three return types can only differ by the libraries' own type mapping.

Example:
    >>> import pyarrow as pa
    >>> schema = pa.schema([("symbol", pa.string()), ("close", pa.float64())])
    >>> conform(pa.table({"close": [1.5]}), schema, constants={"symbol": "NIFTY"}).to_pylist()
    [{'symbol': 'NIFTY', 'close': 1.5}]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from .errors import ReadError

ReturnType = Literal["polars", "pandas", "arrow"]
RETURN_TYPES: tuple[str, ...] = ("polars", "pandas", "arrow")


def check_return_type(return_type: Any) -> None:
    if return_type not in RETURN_TYPES:
        raise ReadError(f"return_type {return_type!r} is not supported; allowed: {', '.join(RETURN_TYPES)}",
                        value=return_type)


def constant(value: Any, length: int, type_: pa.DataType) -> pa.Array:
    """``length`` copies of ``value`` (filled in C++, not from a Python list)."""
    return pc.fill_null(pa.nulls(length, type_), pa.scalar(value, type_))


def conform(table: pa.Table, schema: pa.Schema, *, constants: Mapping[str, Any] | None = None) -> pa.Table:
    """Select, add and cast columns so ``table`` has exactly ``schema``.

    ``constants`` fills columns the query left out (the symbol of a single-symbol read).
    Casts are safe: a value that does not fit raises instead of being truncated.
    """
    constants = constants or {}
    arrays = []
    for field in schema:
        if field.name in constants:
            arrays.append(constant(constants[field.name], table.num_rows, field.type))
            continue
        column = table.column(field.name)
        if column.type != field.type:
            column = column.cast(field.type)
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=schema)


def empty_table(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:  # pragma: no cover - pandas is an optional extra
        raise ReadError("return_type='pandas' needs pandas: pip install 'regime-io[pandas]'") from None
    return pandas


def convert(table: pa.Table, return_type: ReturnType) -> Any:
    """The Arrow table as the requested frame type."""
    if return_type == "arrow":
        return table
    if return_type == "polars":
        import polars as pl

        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        return frame
    if return_type == "pandas":
        _pandas()
        return table.to_pandas()
    check_return_type(return_type)
    raise AssertionError("unreachable")
