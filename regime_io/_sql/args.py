"""Parsing of user arguments (instants, ranges, dates, symbols, durations) into typed values."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import DATETIME, Remedy, UsageError
from ..types import SymbolCase
from .query import EARLIEST, LATEST, TimeRange

# A day, in ISO 8601's extended (2024-01-31) or basic (20240131) form. Times take both
# forms too ("20240131T0930", "20240131 093100"): datetime.fromisoformat reads them with
# the dashed form's meaning, and so do the writers (regime_io._write.validate).
DAY_PATTERN = r"^(?:\d{4}-\d{2}-\d{2}|\d{8})$"
_DAY = re.compile(DAY_PATTERN)


def _day(text: str) -> dt.date | None:
    """The day a date-only string names, or None when it has a time (or is no date)."""
    if not _DAY.match(text):
        return None
    digits = text.replace("-", "")
    return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))


def parse_time(value: Any, *, name: str, timezone: str) -> tuple[dt.datetime, bool]:
    """A datetime, date or ISO string as a naive timestamp in the storage zone.

    Returns ``(timestamp, was_a_date)``. A day -- a ``date``, a date-only string
    (``"2024-01-31"`` or ``"20240131"``) or a day-unit ``numpy.datetime64`` -- is its
    midnight with ``was_a_date`` True (an ``end`` bound then includes the whole day);
    anything else is an instant. Zoned datetimes are converted to ``timezone`` (the
    storage zone) first.

    >>> parse_time("20240131", name="end", timezone="UTC")
    (datetime.datetime(2024, 1, 31, 0, 0), True)
    >>> parse_time("20240131T0930", name="end", timezone="UTC")
    (datetime.datetime(2024, 1, 31, 9, 30), False)
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            day = _day(text)
            if day is not None:
                return dt.datetime.combine(day, dt.time()), True
            if text.endswith(("Z", "z")):
                text = text[:-1] + "+00:00"
            value = dt.datetime.fromisoformat(text)
        except ValueError:
            raise UsageError(f"{{fix}} {value!r} is not an ISO 8601 date or timestamp (e.g. '2024-01-31', "
                             "'20240131', '2024-01-31 15:30' or '20240131T1530'); '04/03/2024' could be 4 March "
                             "or 3 April, so other layouts are refused: {fix}", value=value,
                             fixes=(Remedy.subject(name), DATETIME)) from None
    if type(value).__module__ == "numpy" and hasattr(value, "dtype") and value.dtype.kind == "M":
        if value != value:  # NaT
            raise UsageError(f"{name}: NaT is not a time", value=value)
        if str(value.dtype) == "datetime64[D]":  # np.datetime64("2024-01-31"): a day, like a date
            return dt.datetime.combine(value.astype(object), dt.time()), True
        value = value.astype("datetime64[us]").item()  # numpy datetime64 is naive: the storage zone
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(ZoneInfo(timezone)).replace(tzinfo=None)
        # pandas.Timestamp is a datetime subclass: keep plain datetimes only.
        return dt.datetime(value.year, value.month, value.day, value.hour, value.minute,
                           value.second, value.microsecond), False
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time()), True
    raise UsageError(f"{name}: expected a datetime, date or ISO string, got {type(value).__name__} ({value!r})",
                    value=value)


def parse_range(start: Any, end: Any, *, timezone: str, start_name: str = "start_date",
                end_name: str = "end_date") -> TimeRange:
    """``[start, end]`` inclusive; a day as ``end`` includes that whole day; None is open.

    Two ends at the same midnight *instant* (``pd.Timestamp("2024-01-31")`` twice) are
    refused: they hold only rows stamped exactly at midnight, almost surely not what was
    meant; the message says to pass the date.
    """
    lo, _ = parse_time(start, name=start_name, timezone=timezone) if start is not None else (EARLIEST, False)
    if end is None:
        if lo > LATEST:
            raise UsageError(f"{start_name} {start!r} is out of range", value=start)
        return TimeRange(lo, LATEST, end_exclusive=False)
    hi, end_is_date = parse_time(end, name=end_name, timezone=timezone)
    if end_is_date:
        hi = hi + dt.timedelta(days=1)
        if lo >= hi:
            raise UsageError(f"{start_name} {start!r} is after {end_name} {end!r}", value=start)
    elif lo > hi:
        raise UsageError(f"{start_name} {start!r} is after {end_name} {end!r}", value=start)
    elif lo == hi and hi.time() == dt.time():
        raise UsageError(f"{start_name} and {end_name} are both the instant {hi:%Y-%m-%d} 00:00, which holds only "
                         f"rows stamped exactly at midnight; for the whole day pass the date ({end_name}="
                         f"'{hi:%Y-%m-%d}' or datetime.date({hi.year}, {hi.month}, {hi.day})), or give times of day",
                         value=end)
    return TimeRange(lo, hi, end_exclusive=end_is_date)


def is_aware(value: Any) -> bool:
    """True for a zone-aware bound: an aware datetime or an ISO string with an offset."""
    if isinstance(value, dt.datetime):
        return value.tzinfo is not None
    if isinstance(value, str):
        text = value.strip()
        return len(text) > 10 and (text[-1] in "Zz" or re.search(r"[+-]\d{2}:?\d{2}$", text[10:]) is not None)
    return False


def parse_date(value: Any, *, name: str) -> dt.date:
    """A date, a midnight datetime or an ISO date string."""
    if isinstance(value, dt.datetime):
        if value.time() != dt.time():
            raise UsageError(f"{name}: {value!r} has a time of day; pass a date", value=value)
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            day = _day(text)
            if day is not None:
                return day
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise UsageError(f"{name}: {value!r} is not an ISO date (e.g. '2024-01-25' or '20240125')",
                             value=value) from None
        return parse_date(parsed, name=name)
    raise UsageError(f"{name}: expected a date or ISO string, got {type(value).__name__} ({value!r})", value=value)


def text_arg(value: Any, *, name: str, allow_none: bool = True) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value:
        raise UsageError(f"{name}: expected a non-empty string, got {value!r}", value=value)
    if "\x00" in value:
        raise UsageError(f"{name}: {value!r} contains a NUL byte", value=value)
    return value


def normalise_symbol(value: str, case: SymbolCase) -> str:
    """A symbol as it is stored and looked up: stripped, and upper-cased unless ``case="keep"``.

    >>> normalise_symbol(" aapl ", "upper"), normalise_symbol(" BRK.b", "keep")
    ('AAPL', 'BRK.b')
    """
    text = value.strip()
    return text.upper() if case == "upper" else text


def symbol_arg(value: Any, *, name: str = "symbol", case: SymbolCase) -> str:
    """One symbol argument, spelled as the writers store it (:func:`normalise_symbol`)."""
    text = text_arg(value, name=name, allow_none=False)
    assert text is not None
    symbol = normalise_symbol(text, case)
    if not symbol:
        raise UsageError(f"{name}: {value!r} is blank; pass a symbol such as 'NIFTY'", value=value)
    return symbol


def resolve_symbols(symbol: Any, symbols: Any, *, case: SymbolCase, required: bool = True) -> list[str] | None:
    """The symbols a reader was asked for: ``symbol`` (one or a list) or ``symbols``,
    spelled as stored (:func:`normalise_symbol` with ``case``, the ``symbol_case`` setting).

    Returns None when neither was given and ``required`` is False (every symbol).
    """
    if symbol is not None and symbols is not None:
        raise UsageError("pass symbol or symbols, not both", value=symbols)
    if symbol is not None:
        return symbol_list(symbol, name="symbol", case=case)
    if symbols is not None:
        return symbol_list(symbols, name="symbols", case=case)
    if required:
        raise UsageError("pass symbol= (one symbol or a list) or symbols=")
    return None


def symbol_list(value: Any, *, name: str = "symbol", case: SymbolCase | None) -> list[str]:
    """One symbol or a sequence of them, deduplicated, order kept; spelled as stored
    (:func:`normalise_symbol`) unless ``case`` is None (other text lists: option types)."""

    def one(item: Any) -> str:
        if case is None:
            text = text_arg(item, name=name, allow_none=False)
            assert text is not None
            return text
        return symbol_arg(item, name=name, case=case)

    if isinstance(value, str):
        return [one(value)]
    if isinstance(value, Sequence) or (hasattr(value, "__iter__") and not isinstance(value, (bytes, dict))):
        out: list[str] = []
        for item in value:
            s = one(item)
            if s not in out:
                out.append(s)
        return out
    raise UsageError(f"{name}: expected a symbol or a list of symbols, got {type(value).__name__} ({value!r})",
                    value=value)


_DURATION = re.compile(r"(\d+)(us|ms|s|min|m|h|d|w)")


_UNITS = {"us": dt.timedelta(microseconds=1), "ms": dt.timedelta(milliseconds=1), "s": dt.timedelta(seconds=1),
          "m": dt.timedelta(minutes=1), "min": dt.timedelta(minutes=1), "h": dt.timedelta(hours=1),
          "d": dt.timedelta(days=1), "w": dt.timedelta(weeks=1)}


def parse_duration(value: Any, *, name: str) -> dt.timedelta:
    """``"5m"``, ``"1h30m"``, ``"2d"`` (Polars spelling; ``"5min"`` also works) or a timedelta."""
    if isinstance(value, dt.timedelta):
        delta = value
    elif isinstance(value, str) and value and _DURATION.sub("", value.strip()) == "":
        delta = sum((int(n) * _UNITS[u] for n, u in _DURATION.findall(value.strip())), dt.timedelta())
    else:
        raise UsageError(f"{name}: {value!r} is not a duration; use e.g. '30s', '5m', '1h', '1d' or a timedelta",
                        value=value)
    if delta <= dt.timedelta(0):
        raise UsageError(f"{name}: {value!r} must be positive", value=value)
    return delta
