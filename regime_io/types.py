"""The option vocabularies of the public API, declared once.

Every ``Literal`` a public method takes lives here; the facade, the engines and the
CLI's choices (``typing.get_args``) all import it from this module.

Example:
    >>> from typing import get_args
    >>> get_args(ReturnType)
    ('polars', 'pandas', 'arrow')
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, Literal, get_args

import numpy as np

from .errors import UsageError

__all__ = [
    "BarLabel",
    "DateLike",
    "ExtraColumns",
    "OnConflict",
    "OnDuplicate",
    "ParametersAs",
    "RegimeTable",
    "ReturnType",
    "SymbolCase",
    "Tier",
    "check_choice",
]

# What readers return: a polars DataFrame (default), a pandas DataFrame or an Arrow table.
ReturnType = Literal["polars", "pandas", "arrow"]
# What a writer does with a row whose natural key is already stored.
OnConflict = Literal["update", "ignore", "error"]
# What a writer does with two rows of one batch that share a natural key.
OnDuplicate = Literal["error", "keep_last"]
# What a writer does with input columns the table does not have.
ExtraColumns = Literal["error", "ignore"]
# Which regime table the regime statistics and the as-of join read.
RegimeTable = Literal["1min", "regimes"]
# Where a write goes: "auto" (rows; rows of sealed series-months merge into their chunks)
# or "sealed" (every row straight into chunks: the backfill fast path).
Tier = Literal["auto", "sealed"]
# How symbols are spelled on every path (writers, readers, scan, as-of joins, the CLI):
# "upper" strips and upper-cases them (" aapl" is "AAPL"); "keep" strips only.
SymbolCase = Literal["upper", "keep"]
# How a vendor stamps a bar: by its start (09:30 for 09:30-09:31, the default) or its end (09:31).
BarLabel = Literal["start", "end"]
# How optimisation results return ``parameters``: a struct column or the JSON text.
ParametersAs = Literal["struct", "json"]

# A time bound: a datetime (naive = storage zone; aware = converted), a date, an ISO 8601
# string, or a numpy datetime64 / pandas Timestamp (both normalised to a datetime).
DateLike = dt.datetime | dt.date | str | np.datetime64


@functools.cache
def _choices(allowed_type: Any) -> tuple[Any, ...]:
    return get_args(allowed_type)  # ~20 us a call; every write checks three options


def check_choice(name: str, value: object, allowed_type: Any) -> None:
    """Refuse ``value`` unless it is one of the ``Literal``'s values (a ``UsageError``
    listing them), so every option is checked against the one declaration above.

    >>> check_choice("on_conflict", "update", OnConflict)
    """

    allowed = _choices(allowed_type)
    if value not in allowed:
        raise UsageError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}", value=value)
