"""Why a read came back empty, when the likely reason is a spelling: a symbol never stored,
or a timeframe the series does not have.

An empty frame alone is not an answer: ``get_market_data("AAPLL")`` and a read of ``"5m"``
bars where only ``"1m"`` bars are stored both return nothing. When a read that named its
symbols (or a timeframe) returns no row, :func:`explain_empty` looks the names up in the
series catalog (:func:`regime_io._tiers.catalog.read_catalog`, one small indexed query,
paid only for empty results) and warns:

* :class:`~regime_io.errors.UnknownSymbolWarning` for symbols never stored, with the
  closest stored symbols (``difflib``, and any stored spelling that differs only by case
  or spaces, e.g. rows written before ``symbol_case`` normalised them);
* :class:`~regime_io.errors.UnknownTimeframeWarning` when every symbol is stored but none
  has the timeframe asked for, with the timeframes they have and the ``resample=`` hint.

The catalog is kept by regime_io's writers; rows written by other tools are known to it
after ``refresh_catalog()``, which the message says.
"""

from __future__ import annotations

import difflib
import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._tiers.catalog import read_catalog
from ..errors import RegimeIOError, UnknownSymbolWarning, UnknownTimeframeWarning, caller_stacklevel
from ..tables import TableSpec

if TYPE_CHECKING:
    from .._conn.database import Database

__all__ = ["closest_symbols", "explain_empty"]

log = logging.getLogger(__name__)

# How many stored symbols a warning suggests, and how alike they must be (difflib ratio).
_SUGGESTIONS = 3
_CUTOFF = 0.6


def closest_symbols(symbol: str, stored: Sequence[str]) -> list[str]:
    """The stored symbols closest to ``symbol``: same letters in another case or with
    spaces first, then difflib's closest matches.

    >>> closest_symbols("AAPLL", ["AAPL", "MSFT", "AMZN"])
    ['AAPL']
    >>> closest_symbols("AAPL", ["aapl ", "MSFT"])
    ['aapl ']
    """
    key = symbol.strip().upper()
    same = [s for s in stored if s.strip().upper() == key and s != symbol]
    close = difflib.get_close_matches(key, [s.upper() for s in stored], n=_SUGGESTIONS, cutoff=_CUTOFF)
    by_upper: dict[str, list[str]] = {}
    for s in stored:
        by_upper.setdefault(s.upper(), []).append(s)
    out = list(same)
    for upper in close:
        out.extend(s for s in by_upper[upper] if s not in out and s != symbol)
    return out[:_SUGGESTIONS]


def explain_empty(db: Database, spec: TableSpec, symbols: Sequence[str] | None, *,
                  timeframe: str | None = None, resample_hint: bool = False) -> None:
    """Warn when an empty result is explained by the names asked for (module docstring).

    ``symbols``: the symbols the read named (None: every symbol, nothing to explain);
    ``timeframe``: the canonical timeframe it filtered on; ``resample_hint``: the reader
    takes ``resample=`` (market data), so the timeframe warning points to it.
    """
    if not symbols or spec.time_column is None or not db.settings.enabled:
        return
    try:
        catalog = read_catalog(db, spec.key)
    except RegimeIOError as err:  # a hint is never worth an error: the empty frame stands
        log.debug("no hint for an empty %s read: %s", spec.key, err)
        return
    rows = list(zip(catalog.column("symbol").to_pylist(), catalog.column("timeframe").to_pylist(), strict=True))
    stored = list(dict.fromkeys(str(s) for s, _ in rows))
    unknown = [s for s in symbols if s not in stored]
    if unknown:
        suggestions = {s: closest_symbols(s, stored) for s in unknown}
        parts = []
        for s in unknown:
            near = suggestions[s]
            parts.append(f"{s!r}" + (f" (closest stored: {', '.join(map(repr, near))})" if near else ""))
        case_hint = ""
        if any(n.strip().upper() == s.strip().upper() for s in unknown for n in suggestions[s]):
            case_hint = ("; a stored spelling differs only by case or spaces: rows written before symbols were "
                         "normalised (rewrite them, or set symbol_case = keep)")
        message = (f"{spec.key}: no rows were ever stored for symbol {', '.join(parts)}{case_hint}; "
                   f"{len(stored)} symbol(s) are stored (rows written by other tools count after "
                   "refresh_catalog())")
        warnings.warn(UnknownSymbolWarning(message, table=spec.key, symbols=unknown, suggestions=suggestions),
                      stacklevel=caller_stacklevel())
        return
    if timeframe is None or "timeframe" not in spec.column_names:
        return
    have = sorted({str(tf) for s, tf in rows if s in symbols and tf is not None}, key=_timeframe_order)
    if timeframe in have or not have:
        return
    hint = (f"; pass resample={timeframe!r} to aggregate the {have[0]!r} bars into {timeframe!r} buckets"
            if resample_hint else "")
    who = ", ".join(map(repr, symbols))
    message = (f"{spec.key}: {who} ha{'s' if len(symbols) == 1 else 've'} no {timeframe!r} rows; stored "
               f"timeframe(s): {', '.join(map(repr, have))}{hint}")
    warnings.warn(UnknownTimeframeWarning(message, table=spec.key, timeframe=timeframe, stored=have),
                  stacklevel=caller_stacklevel())


_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800, "mo": 2_592_000}


def _timeframe_order(timeframe: str) -> tuple[int, str]:
    """Finest first (``1m`` before ``5m`` before ``1h``), unknown spellings last."""
    digits = "".join(c for c in timeframe if c.isdigit())
    unit = timeframe[len(digits):]
    if not digits or unit not in _UNIT_SECONDS:
        return (2**62, timeframe)
    return (int(digits) * _UNIT_SECONDS[unit], timeframe)
