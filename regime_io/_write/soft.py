"""Data-quality checks that warn (``DataQualityWarning``) or, with ``strict=True``, refuse.

Real vendor data violates them without being wrong to store, so by default the batch is
accepted and one warning says what was noticed, one line per check and column, with the
count, the first row and the value:

- OHLC sanity (``low <= open/close <= high``, the table's ``soft_checks``);
- lost digits: values rounded to a DECIMAL column's scale that had non-zero digits beyond
  it (``129.76819 -> 129.77``), and timestamps cut below a microsecond.

The warning points at the caller's line (``errors.caller_stacklevel``).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import numpy as np
import polars as pl

from ..errors import STRICT, ValidationError, caller_stacklevel
from ..tables import Column, TableSpec
from .decimals import float_units

__all__ = ["DataQualityWarning", "check_rounding", "check_soft", "check_sub_microsecond"]


class DataQualityWarning(UserWarning):
    """A soft sanity check failed (e.g. ``low > high``); the batch was still accepted."""


_OPS = {"<=": lambda a, b: a <= b}


def check_rounding(spec: TableSpec, col: Column, s: pl.Series, lossy: list[tuple[str, str, int, Any]], *,
                   snapped: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Note (for a warning, or an error with strict=True) the values whose digits beyond the
    column's scale are not all zero: stored rounded, they lose information (129.76819 ->
    129.77 in a NUMERIC(10,2) price, gamma 0.00071 -> 0.0007).

    Floats are judged after the snap that removes binary noise (0.1 + 0.2 is 0.30, not a
    loss): :func:`~regime_io._write.decimals.float_units`, the rule the float path stores
    by, so the value shown as stored is the one stored (``snapped``: its result for ``s``
    when the conversion computed it already). ~10 ms on 1M prices.
    """
    assert col.scale is not None
    if isinstance(s.dtype, pl.Decimal):
        if (s.dtype.scale or 0) <= col.scale:
            return
        rounded = s.round(col.scale, mode="half_away_from_zero")
        mask = (rounded != s).fill_null(False).to_numpy()
        stored_values = rounded
    elif s.dtype.is_float():
        # Called after the conversion, which refused what is not finite or out of range.
        units, mask = snapped if snapped is not None else float_units(s.cast(pl.Float64).to_numpy(), col.scale)
        stored_values = None
    else:
        return
    bad = np.flatnonzero(mask)
    if len(bad) == 0:
        return
    row = int(bad[0])
    value = s[row]
    if stored_values is not None:
        stored = f"{stored_values[row]}"
    else:
        stored = f"{Decimal(int(units[row])).scaleb(-col.scale):.{col.scale}f}"
    lossy.append((f"{len(bad)} value(s) of {col.name} have digits NUMERIC({col.precision},{col.scale}) cannot "
                  f"store and are rounded (first: row {row}, {col.name}={value!r} \u2192 {stored})", col.name,
                  row, value))


def check_sub_microsecond(spec: TableSpec, col: Column, s: pl.Series,
                           lossy: list[tuple[str, str, int, Any]]) -> None:
    """Note the timestamps whose digits below a microsecond TIMESTAMP cannot keep (nanosecond
    input from pandas or a string with 7-9 decimals): stored cut to the microsecond."""
    if isinstance(s.dtype, pl.Datetime) and s.dtype.time_unit == "ns":
        cut = (s.dt.nanosecond() % 1000 != 0).fill_null(False)
    elif s.dtype == pl.String:
        cut = s.str.contains(r"[.,]\d{6}\d*[1-9]").fill_null(False)
    else:
        return
    if not cut.any():
        return
    row = _first(cut)
    assert row is not None
    value = s[row]
    if isinstance(s.dtype, pl.Datetime):
        shown = s.dt.to_string("%Y-%m-%d %H:%M:%S%.9f")[row]
        stored = s.cast(pl.Datetime("us", s.dtype.time_zone)).dt.to_string("%Y-%m-%d %H:%M:%S%.6f")[row]
        value = shown
    else:
        shown = str(value)
        stored = re.sub(r"([.,]\d{6})\d+", r"\1", shown)
    lossy.append((f"{int(cut.sum())} value(s) of {col.name} have digits below a microsecond, which TIMESTAMP "
                  f"cannot store (first: row {row}, {col.name}={shown} is stored as {stored})", col.name, row, value))


def check_soft(spec: TableSpec, frame: pl.DataFrame, *, strict: bool,
                lossy: list[tuple[str, str, int, Any]] | None = None,
                units: Mapping[str, tuple[np.ndarray, np.ndarray | None]] | None = None) -> None:
    """``units``: decimal columns the writer converted from floats, as their stored values
    in units of ``10**-scale`` and their validity (None: no nulls). A check between two
    of the same scale compares those in numpy, not the polars decimals (~0.25 ms a check
    on a 14,400-row restatement, 8 ms on 1M rows); the first bad row of a failing check
    is found the usual way."""
    problems = [text for text, *_ in lossy or []]
    units = units or {}
    if lossy and strict:
        text, column, first, value = lossy[0]
        raise ValidationError(f"{spec.key}: {text}; {{fix}} rejects them", table=spec.key, column=column,
                              row=first, value=value, fixes=(STRICT,))
    for left, op, right in spec.soft_checks:
        if left not in frame.columns or right not in frame.columns:
            continue  # absent: all NULL, nothing to compare
        if left in units and right in units and spec.column(left).scale == spec.column(right).scale:
            (a, a_valid), (b, b_valid) = units[left], units[right]
            holds = _OPS[op](a, b)
            if a_valid is not None:
                holds |= ~a_valid
            if b_valid is not None:
                holds |= ~b_valid
            if bool(holds.all()):
                continue
        ok = _OPS[op](frame.get_column(left), frame.get_column(right)).fill_null(True)
        if ok.all():
            continue
        row = _first(~ok)
        assert row is not None
        lv, rv = frame.get_column(left)[row], frame.get_column(right)[row]
        if strict:
            raise ValidationError(
                f"{spec.key}.{left}: {int((~ok).sum())} row(s) violate {left} {op} {right} (first bad row {row}: "
                f"{left}={lv}, {right}={rv}); {{fix}} rejects them",
                table=spec.key, column=left, row=row, value=lv, fixes=(STRICT,))
        problems.append(f"{int((~ok).sum())} row(s) violate {left} {op} {right} (first: row {row}, {left}={lv}, "
                        f"{right}={rv})")
    if problems:
        message = f"{spec.key}: accepted with data-quality warnings: {'; '.join(problems)}"
        warnings.warn(message, DataQualityWarning, stacklevel=caller_stacklevel())


def _first(mask: pl.Series) -> int | None:
    idx = mask.arg_true()
    return int(idx[0]) if len(idx) else None
