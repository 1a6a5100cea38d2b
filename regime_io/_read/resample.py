"""Exchange sessions: the opening time resampling anchors at, and the session schedule of a calendar.

Calendars come from ``pandas_market_calendars`` (the ``calendars`` extra: ``pip install
'regime-io[calendars]'``), which covers NSE (``XNSE``) and the US, European and Asian
exchanges. Without it, the NSE/BSE hours (09:15-15:30, Asia/Kolkata) are built in, so
resampling works out of the box; a session schedule (holidays) needs the extra.

Stored times and sessions: a table written with zone-aware times holds instants in the
storage zone, so the exchange's local opening time is converted into it; a table written
with naive times is taken to hold the exchange's wall clock (the demo's convention:
``09:15`` is the NSE open), as is a table whose kind is not recorded yet.

Example:
    >>> parse_resample("5T").label, parse_resample("1H").label, parse_resample("1mo").unit
    ('5m', '1h', 'mo')
    >>> parse_resample("W"), parse_resample("QS")
    (Resample(count=1, unit='w', label_end=True), Resample(count=3, unit='mo', label_end=False))
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._schema.timezones import time_kinds
from .._sql.args import parse_duration
from .._sql.query import Query
from ..errors import UsageError
from ..tables import canonical_timeframe

if TYPE_CHECKING:
    from .._conn.database import Database
    from ..tables import TableSpec

__all__ = ["Resample", "bucket_sql", "parse_resample", "schedule", "session_hours"]


# Regular hours of the exchanges usable without the calendars extra: (open, close, zone).
_BUILT_IN: dict[str, tuple[dt.time, dt.time, str]] = {
    name: (dt.time(9, 15), dt.time(15, 30), "Asia/Kolkata") for name in ("XNSE", "NSE", "XBOM", "BSE")
}


_HINT = "pip install 'regime-io[calendars]' (pandas-market-calendars)"


@dataclass(frozen=True)
class Resample:
    """A resampling size: ``count`` x ``unit`` (``s``, ``m``, ``h``, ``d``, ``w``, ``mo``).

    ``label_end``: buckets are labelled by their last day (pandas' ``W``, ``ME``, ``QE``),
    not by their start."""

    count: int
    unit: str
    label_end: bool = False

    @property
    def label(self) -> str:
        return f"{self.count}{self.unit}"

    @property
    def seconds(self) -> int:
        return self.count * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[self.unit]

    @property
    def intraday(self) -> bool:
        return self.unit in ("s", "m", "h")


# pandas' period-end aliases: labelled by the bucket's last day (its right edge), the
# bucket closed on the right at the end of that day -- calendar weeks ending Sunday,
# calendar months, calendar quarters.
_PANDAS_END: dict[str, tuple[int, str]] = {"W": (1, "w"), "W-SUN": (1, "w"), "ME": (1, "mo"), "QE": (3, "mo"),
                                           "QE-DEC": (3, "mo")}
# pandas' quarter starts: labelled by the first day, as '3mo'.
_PANDAS_QUARTER_START = ("QS", "QS-JAN")
# Spellings whose meaning differs between pandas versions (and pandas 3 refuses): the hint.
_AMBIGUOUS = {
    "M": "'ME' (calendar months labelled by their last day, as pandas) or 'MS'/'1mo' (labelled by the 1st)",
    "Q": "'QE' (calendar quarters labelled by their last day, as pandas) or 'QS'/'3mo' (labelled by the 1st)",
}
_PANDAS_ALIAS = re.compile(r"^\s*(\d*)\s*([A-Za-z]+(?:-[A-Za-z]+)?)\s*$")


def _pandas_alias(value: str) -> Resample | None:
    """pandas' anchored aliases (``W``, ``ME``, ``QE``, ``QS``), checked before regime_io's
    own spellings; ``M`` and ``Q`` are refused with the spelling that says which is meant."""
    match = _PANDAS_ALIAS.match(value)
    if match is None:
        return None
    count, alias = int(match.group(1) or 1), match.group(2)
    if alias in _AMBIGUOUS:
        raise UsageError(f"resample: {value!r} is ambiguous (pandas once labelled it by the period's end, and "
                         f"pandas 3 refuses it); use {_AMBIGUOUS[alias]}", table="market_data", value=value)
    if alias in _PANDAS_END:
        size, unit = _PANDAS_END[alias]
        if count != 1:
            raise UsageError(f"resample: {value!r}: pandas anchors multiples of {alias!r} at the first row, not at "
                             f"the calendar; use '{alias}' or '{count * size}{unit}' (calendar-aligned, labelled "
                             "by the first day)", table="market_data", value=value)
        return Resample(size, unit, label_end=True)
    if alias in _PANDAS_QUARTER_START:
        return Resample(3 * count, "mo")
    if alias.startswith(("W-", "QE-", "QS-", "Q-")):
        raise UsageError(f"resample: {value!r}: weeks end on Sunday ('W') and quarters on the calendar's "
                         "('QE', 'QS') only", table="market_data", value=value)
    return None


def parse_resample(value: Any) -> Resample:
    """``"5m"``, ``"1h"``, ``"1d"``, ``"1w"``, ``"1mo"``, pandas' ``"5T"``, ``"1H"``, ``"1D"``,
    ``"5min"``, compound ``"1h30m"`` or a ``timedelta``, as a :class:`Resample`; pandas'
    ``"W"``, ``"ME"`` and ``"QE"`` as pandas labels them (the bucket's last day), ``"MS"``
    and ``"QS"`` by its first day.

    Raises:
        UsageError: anything else, sub-second sizes, intraday sizes of a day or more,
            ``"M"``/``"Q"`` (ambiguous: the message names ``"ME"``/``"MS"``).
    """
    allowed = ("use e.g. '30s', '5m', '1h', '1d', '1w', '1mo', pandas' '5T', '1H', '1D', 'W', 'ME', 'QE', "
               "'MS', 'QS', or a timedelta (whole seconds)")
    if isinstance(value, str):
        pandas_alias = _pandas_alias(value)
        if pandas_alias is not None:
            return pandas_alias
    text = canonical_timeframe(value) if isinstance(value, str) else None
    if text is None:
        try:
            delta = parse_duration(value, name="resample")
        except UsageError:
            raise UsageError(f"resample: {value!r} is not a bar size; {allowed}", table="market_data",
                             value=value) from None
        if delta % dt.timedelta(seconds=1):
            raise UsageError(f"resample: {value!r} is not a whole number of seconds; {allowed}",
                             table="market_data", value=value)
        seconds = int(delta.total_seconds())
        text = canonical_timeframe(f"{seconds}s")
        assert text is not None
    count = int(text.rstrip("smhdwo"))
    resample = Resample(count, text[len(str(count)):])
    if resample.intraday and resample.seconds >= 86400:
        raise UsageError(f"resample: {value!r} spans more than a session; intraday sizes are under a day, "
                         "longer ones are days, weeks or months ('1d', '1w', '1mo')", table="market_data",
                         value=value)
    return resample


def _calendar(name: str) -> Any:
    import pandas_market_calendars as mcal

    try:
        return mcal.get_calendar(name)
    except Exception:  # its own error types differ between versions
        raise UsageError(f"calendar {name!r} is unknown to pandas-market-calendars; e.g. 'XNSE', 'XNYS', 'XLON'",
                         value=name) from None


def _check_name(calendar: Any) -> str:
    if not isinstance(calendar, str) or not calendar.strip():
        raise UsageError(f"calendar: expected an exchange calendar name such as 'XNSE', got {calendar!r}",
                         value=calendar)
    return calendar.strip().upper()


def session_hours(calendar: str) -> tuple[dt.time, dt.time, str]:
    """The regular ``(open, close, zone)`` of ``calendar`` (exchange-local, naive times)."""
    name = _check_name(calendar)
    try:
        cal = _calendar(name)
    except ImportError:
        if name in _BUILT_IN:
            return _BUILT_IN[name]
        raise UsageError(f"calendar {name!r} needs the calendars extra: {_HINT}; built in: "
                         f"{', '.join(_BUILT_IN)}", value=calendar) from None
    return cal.open_time.replace(tzinfo=None), cal.close_time.replace(tzinfo=None), str(cal.tz)


def schedule(calendar: str, start: dt.date, end: dt.date) -> list[tuple[dt.date, dt.datetime, dt.datetime]]:
    """The sessions of ``calendar`` from ``start`` to ``end`` (inclusive): ``(day, open, close)``
    with open/close as naive exchange-local times (holidays and special hours included)."""
    name = _check_name(calendar)
    try:
        cal = _calendar(name)
    except ImportError:
        raise UsageError(f"a session schedule (holidays) of {name!r} needs the calendars extra: {_HINT}",
                         value=calendar) from None
    table = cal.schedule(start_date=start.isoformat(), end_date=end.isoformat())
    zone = str(cal.tz)
    out = []
    for day, row in table.iterrows():
        opened = row["market_open"].tz_convert(zone).to_pydatetime().replace(tzinfo=None)
        closed = row["market_close"].tz_convert(zone).to_pydatetime().replace(tzinfo=None)
        out.append((day.date(), opened, closed))
    return out


def table_is_aware(db: Database, spec: TableSpec) -> bool:
    """True when the table's times were written zone-aware (instants in the storage zone)."""

    return time_kinds(db).get(f"time_input:{spec.key}") == "aware"


def bucket_sql(q: Query, resample: Resample, *, column: str, calendar: str, aware: bool,
               storage_zone: str) -> str:
    """The SQL of a row's bucket start (its label): session-anchored for intraday sizes.

    Intraday: ``date_bin`` from that day's session open, never before the day's midnight,
    so no bucket holds rows of two sessions (the last one of a session is cut at the
    close). Days: the day (``n`` days: epoch-aligned); weeks: from Monday; months: the
    first of the month (``n`` months: from January). ``label_end`` (pandas' ``W``,
    ``ME``, ``QE``): the same buckets, labelled by their last day (midnight).
    """
    start = _bucket_start(q, resample, column=column, calendar=calendar, aware=aware, storage_zone=storage_zone)
    if not resample.label_end:
        return start
    size = f"{resample.count} {'week' if resample.unit == 'w' else 'month'}"
    return f"({start} + {q.param(size)}::interval - interval '1 day')"


def _bucket_start(q: Query, resample: Resample, *, column: str, calendar: str, aware: bool,
                  storage_zone: str) -> str:
    if resample.intraday:
        opened, _, zone = session_hours(calendar)
        day = f"date_trunc('day', {column})"
        offset = f"{q.param(f'{opened.hour * 3600 + opened.minute * 60 + opened.second} seconds')}::interval"
        local, storage = q.param(zone), q.param(storage_zone)
        anchor = (f"((({day} + {offset}) AT TIME ZONE {local}::text) AT TIME ZONE {storage}::text)"
                  if aware else f"({day} + {offset})")
        every = f"{q.param(f'{resample.seconds} seconds')}::interval"
        return f"GREATEST(date_bin({every}, {column}, {anchor}), {day})"
    if resample.unit == "d":
        if resample.count == 1:
            return f"date_trunc('day', {column})"
        return f"date_bin({q.param(f'{resample.seconds} seconds')}::interval, {column}, TIMESTAMP '1970-01-01')"
    if resample.unit == "w":
        # 1970-01-05 was a Monday: weeks run Monday to Sunday.
        return f"date_bin({q.param(f'{resample.seconds} seconds')}::interval, {column}, TIMESTAMP '1970-01-05')"
    month = f"date_trunc('month', {column})"
    if resample.count == 1:
        return month
    return (f"({month} - ((extract(month FROM {column})::int - 1) % {q.param(resample.count)}::int) "
            "* interval '1 month')")
