"""Reader results: each reader's Arrow schema, empty results and the decoding of what
the drivers return (DECIMAL text to float64, JSON parameters to a struct).

Example:
    >>> output_schema("market_data", columns=["timestamp", "close"])
    timestamp: timestamp[us]
    close: double
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .._frames import check_return_type, conform, convert
from ..errors import ReadError, Remedy, UsageError
from ..tables import TableSpec, table_spec
from ..types import ParametersAs, ReturnType

__all__ = [
    "DISTRIBUTION_SCHEMA", "TRANSITIONS_SCHEMA", "as_read", "column_names", "decimal_text", "decode_parameters",
    "empty_distribution", "empty_frame", "empty_transitions", "output_schema", "reader_schema",
]

log = logging.getLogger(__name__)


DISTRIBUTION_SCHEMA = pa.schema([
    ("regime", pa.string()),
    ("count", pa.int64()),
    ("share", pa.float64()),
    ("seconds", pa.float64()),
    ("time_share", pa.float64()),
])


TRANSITIONS_SCHEMA = pa.schema([
    ("from_regime", pa.string()),
    ("to_regime", pa.string()),
    ("count", pa.int64()),
    ("probability", pa.float64()),
    ("mean_run_length", pa.float64()),
])


def output_schema(table: str, *, exact: bool = False, columns: Sequence[str] | None = None) -> pa.Schema:
    """The Arrow schema a reader of ``table`` returns (``parameters`` as JSON text).

    >>> output_schema("market_data", columns=["timestamp", "close"])
    timestamp: timestamp[us]
    close: double
    """
    spec = table_spec(table)
    return reader_schema(spec, column_names(spec, columns), exact=exact)


def empty_frame(table: str | TableSpec, *, return_type: ReturnType = "polars", exact: bool = False,
                columns: Sequence[str] | None = None) -> Any:
    """An empty result of ``table``'s readers, with the full schema (``table``: a name, or a
    declaration at a schema's price scale, ``db.spec(name)``).

    >>> empty_frame("market_regimes_1min").schema["confidence"]
    Float64
    """
    check_return_type(return_type)
    spec = table if isinstance(table, TableSpec) else table_spec(table)
    arrow = reader_schema(spec, column_names(spec, columns), exact=exact).empty_table()
    if spec.key == "optimization_results" and "parameters" in arrow.column_names:
        arrow = decode_parameters(arrow, "struct")
    return convert(arrow, return_type)


def empty_distribution(*, return_type: ReturnType = "polars") -> Any:
    """An empty :func:`get_market_regime_distribution` result."""
    check_return_type(return_type)
    return convert(DISTRIBUTION_SCHEMA.empty_table(), return_type)


def empty_transitions(*, return_type: ReturnType = "polars") -> Any:
    """An empty :func:`get_regime_transitions` result."""
    check_return_type(return_type)
    return convert(TRANSITIONS_SCHEMA.empty_table(), return_type)


def column_names(spec: TableSpec, columns: Sequence[str] | str | None) -> list[str]:
    if columns is None:
        return list(spec.column_names)
    names = [columns] if isinstance(columns, str) else list(columns)
    allowed = spec.column_names
    for name in names:
        if name not in allowed:
            raise UsageError(f"{spec.key}: unknown column {name!r}; allowed: {', '.join(allowed)}",
                            table=spec.key, column=str(name), value=name)
    if not names:
        raise UsageError(f"{spec.key}: columns is empty; pass None for every column", table=spec.key)
    if len(set(names)) != len(names):
        raise UsageError(f"{spec.key}: columns {names!r} name a column twice", table=spec.key)
    return names


def reader_schema(spec: TableSpec, names: Sequence[str], *, exact: bool) -> pa.Schema:
    full = spec.read_schema(exact=exact)
    return pa.schema([full.field(n) for n in names])


def as_read(table: pa.Table, spec: TableSpec, schema: pa.Schema, *, exact: bool,
            constants: dict[str, Any] | None = None) -> pa.Table:
    """A driver's rows in a reader's ``schema``: DECIMAL text parsed (:func:`decimal_text`),
    then selected and cast (``conform``; ``constants`` fill columns the query left out)."""
    return conform(decimal_text(table, spec, exact=exact), schema, constants=constants)


def decimal_text(table: pa.Table, spec: TableSpec, *, exact: bool) -> pa.Table:
    """DECIMAL columns read as text (see :func:`select_list`) in the reader's type:
    ``decimal128(p, s)`` when ``exact`` (Arrow parses the text exactly), else float64.

    PostgreSQL's ``numeric::float8`` is exactly "format as text, parse with strtod";
    Arrow's parser is correctly rounded too, so the floats are identical (checked on 11M
    rows x 4 prices), and 1M bars read in 0.81 s instead of 1.00 s with ``::float8``.
    An exact read never goes through float64: at scale 8, a price above 2**26 has
    decimals no double holds (99999999.12345601 came back as ...602).
    """
    texts = [field.name for field in table.schema
             if field.name in spec.column_names and spec.column(field.name).kind == "decimal"
             and (pa.types.is_string(field.type) or pa.types.is_large_string(field.type))]
    if not texts:
        return table

    def parse(name: str) -> pa.ChunkedArray:
        try:
            return pc.cast(table.column(name), spec.column(name).read_type(exact=exact))
        except pa.ArrowInvalid:
            raise _not_a_decimal(spec, table, name) from None

    if table.num_rows < PARALLEL_PARSE_ROWS or len(texts) == 1:
        parsed = [parse(name) for name in texts]
    else:
        # Arrow's cast releases the GIL: the price columns parse side by side (1M bars,
        # 4 prices: 38 -> 20 ms on 2 cores).
        with ThreadPoolExecutor(max_workers=len(texts)) as pool:
            parsed = list(pool.map(parse, texts))
    for name, array in zip(texts, parsed, strict=True):
        table = table.set_column(table.schema.get_field_index(name), pa.field(name, array.type), array)
    return table


def _not_a_decimal(spec: TableSpec, table: pa.Table, name: str) -> ReadError:
    """An exact read met a NUMERIC no decimal holds: 'NaN' or an infinity, which regime_io's
    writers refuse but another tool's INSERT can store. (A float read gives NaN / inf.)"""
    column = table.column(name)
    bad = pc.is_in(pc.utf8_lower(column), pa.array(["nan", "infinity", "-infinity"]))
    row = pc.index(bad, True).as_py()
    if row < 0:  # not a non-finite value: one wider than the declared type (a column altered by hand)
        return ReadError(f"{spec.key}: column {name} holds a value {spec.column(name).pg_type} cannot hold; "
                         "was the column altered by another tool? {fix} to get it as a float",
                         table=spec.key, column=name, fixes=(_FLOAT_READ,))
    value = column[row].as_py()
    at = f" (timestamp {table.column('timestamp')[row].as_py()})" if "timestamp" in table.column_names else ""
    return ReadError(f"{spec.key}: column {name} holds {value!r}{at}, which no exact decimal holds (stored by "
                     "another tool: regime_io's writers refuse it); {fix} to get it as a float, or correct the row",
                     table=spec.key, column=name, value=value, fixes=(_FLOAT_READ,))


_FLOAT_READ = Remedy("read without exact=True", "read without --exact")


# Tables at least this long parse their DECIMAL text columns in parallel.
PARALLEL_PARSE_ROWS = 100_000


def decode_parameters(table: pa.Table, how: ParametersAs) -> pa.Table:
    """Replace the JSON text of ``parameters`` by a struct (union of keys), unless ``how="json"``."""
    if how == "json" or "parameters" not in table.column_names:
        return table
    import polars as pl

    text = pl.from_arrow(table.column("parameters").combine_chunks())
    assert isinstance(text, pl.Series)
    if table.num_rows == 0:
        decoded = pl.Series("parameters", [], dtype=pl.Struct([]))
    else:
        try:
            decoded = text.str.json_decode(infer_schema_length=None)
        except pl.exceptions.PolarsError as err:
            log.warning("optimization_results.parameters: rows do not share one JSON shape (%s); "
                        "returning the JSON text", str(err).splitlines()[0])
            return table
        if not isinstance(decoded.dtype, pl.Struct):
            log.warning("optimization_results.parameters: values are not JSON objects; returning the JSON text")
            return table
    index = table.column_names.index("parameters")
    arrow = decoded.to_arrow()
    return table.set_column(index, pa.field("parameters", arrow.type), arrow)
