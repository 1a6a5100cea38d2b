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
import functools
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from .._schema.timezones import time_kinds
from .._sql.args import parse_duration
from .._sql.query import EARLIEST, LATEST, Query, TimeRange
from .._tiers.catalog import read_catalog
from ..errors import CalendarMismatchWarning, UsageError, caller_stacklevel
from ..tables import canonical_timeframe

if TYPE_CHECKING:
    from .._conn.database import Database
    from ..config import Settings
    from ..tables import TableSpec

__all__ = ["Resample", "bucket_sql", "calendar_groups", "check_fit", "outside_sql", "parse_resample", "schedule",
           "session_days", "session_hours", "stored_sessions"]

# A session: its day, open and close in stored time (naive).
Session = tuple[dt.date, dt.datetime, dt.datetime]


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


# pandas-market-calendars builds a calendar's holiday rules on every get_calendar() and a
# month's schedule through pandas: ~14 ms per resample here, more than the query of a
# one-symbol month (~11 ms). Both depend only on their arguments: kept per process.
@functools.lru_cache(maxsize=32)
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
    return list(_schedule(_check_name(calendar), start, end))


@functools.lru_cache(maxsize=256)
def _schedule(name: str, start: dt.date, end: dt.date) -> tuple[tuple[dt.date, dt.datetime, dt.datetime], ...]:
    calendar = name
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
    return tuple(out)


def calendar_groups(settings: Settings, symbols: Sequence[str], calendar: str | None) -> dict[str, list[str]]:
    """Which calendar each symbol's sessions come from, as ``{calendar: symbols}``: an
    explicit ``calendar`` for all of them, else the ``calendars`` setting's entry for the
    symbol, else the ``calendar`` setting."""
    if calendar is not None:
        return {_check_name(calendar): list(symbols)}
    groups: dict[str, list[str]] = {}
    for symbol in symbols:
        groups.setdefault(settings.calendars.get(symbol, settings.calendar), []).append(symbol)
    return groups


def stored_sessions(db: Database, spec: TableSpec, calendar: str, first: dt.date, last: dt.date) -> list[Session]:
    """The sessions of ``calendar`` from ``first`` to ``last`` with open and close in stored
    time: the schedule of each date (holidays, early closes, historical hours); without the
    calendars extra, the built-in regular hours on weekdays."""
    name = _check_name(calendar)
    try:
        days = schedule(name, first, last)
        zone = str(_calendar(name).tz)
    except UsageError:
        if name not in _BUILT_IN:
            raise
        opened, closed, zone = _BUILT_IN[name]
        days = [(first + dt.timedelta(days=i), dt.datetime.combine(first + dt.timedelta(days=i), opened),
                 dt.datetime.combine(first + dt.timedelta(days=i), closed))
                for i in range((last - first).days + 1) if (first + dt.timedelta(days=i)).weekday() < 5]
    if not table_is_aware(db, spec):
        return days
    local, storage = ZoneInfo(zone), ZoneInfo(db.settings.storage_timezone)
    return [(day, opened.replace(tzinfo=local).astimezone(storage).replace(tzinfo=None),
             closed.replace(tzinfo=local).astimezone(storage).replace(tzinfo=None)) for day, opened, closed in days]


def session_days(db: Database, spec: TableSpec, symbols: Sequence[str], rng: TimeRange) -> tuple[dt.date, dt.date]:
    """The days a read of ``rng`` can touch; an open side ends at the symbols' catalogued span."""
    start, end = rng.start, rng.end
    if start <= EARLIEST or end >= LATEST:
        rows = [r for r in read_catalog(db, spec.key).to_pylist() if r["symbol"] in set(symbols)]
        firsts = [r["first_timestamp"] for r in rows if r["first_timestamp"] is not None]
        lasts = [r["last_timestamp"] for r in rows if r["last_timestamp"] is not None]
        if start <= EARLIEST:
            start = min(firsts, default=end if end < LATEST else dt.datetime(2000, 1, 1))
        if end >= LATEST:
            end = max(lasts, default=start)
    return start.date() - dt.timedelta(days=1), max(start, end).date() + dt.timedelta(days=1)


def _session_lookup(q: Query, sessions: Sequence[Session], column: str) -> tuple[str, str]:
    """SQL of the open and close of the session on the (stored) day of ``column``: arrays
    indexed by the day's offset from the first one (NULL on days without a session)."""
    first = min(opened.date() for _, opened, _ in sessions)
    last = max(opened.date() for _, opened, _ in sessions)
    opens: list[dt.datetime | None] = [None] * ((last - first).days + 1)
    closes: list[dt.datetime | None] = list(opens)
    for _, opened, closed in sessions:
        opens[(opened.date() - first).days] = opened
        closes[(opened.date() - first).days] = closed
    index = f"(({column})::date - {q.param(first)}::date + 1)"
    # (Days without a session are NULL elements: Query.param sends such a list as an
    # array literal, which every driver binds alike.)
    return f"({q.param(opens)}::timestamp[])[{index}]", f"({q.param(closes)}::timestamp[])[{index}]"


def outside_sql(q: Query, sessions: Sequence[Session], *, column: str) -> str:
    """The SQL condition "the bar at ``column`` is outside every session"."""
    if not sessions:
        return "TRUE"
    opened, closed = _session_lookup(q, sessions, column)
    return f"NOT COALESCE({column} >= {opened} AND {column} < {closed}, FALSE)"


def check_fit(table: str, calendar: str, outside: int, example: Any, *, strict: bool, what: str) -> None:
    """Warn (or refuse, ``strict``) when ``outside`` bars fall outside ``calendar``'s sessions."""
    if not outside:
        return
    message = (f"{what}: {outside} bar(s) of {table!r} fall outside the sessions of calendar {calendar!r}, "
               f"e.g. {example}; the data may trade on another exchange: pass calendar= (e.g. 'XNYS') or "
               "configure calendar / calendars (AAPL:XNYS)")
    if strict:
        raise UsageError(message, table=table, value=example)
    warnings.warn(CalendarMismatchWarning(message, table=table, calendar=calendar, outside=outside,
                                          example=example), stacklevel=caller_stacklevel())


def table_is_aware(db: Database, spec: TableSpec) -> bool:
    """True when the table's times were written zone-aware (instants in the storage zone)."""

    return time_kinds(db).get(f"time_input:{spec.key}") == "aware"


def bucket_sql(q: Query, resample: Resample, *, column: str, calendar: str, aware: bool,
               storage_zone: str, sessions: Sequence[Session] = ()) -> str:
    """The SQL of a row's bucket start (its label): session-anchored for intraday sizes.

    Intraday: ``date_bin`` from that day's session open (``sessions``: the schedule's open
    of the date; days without one: the regular open), never before the day's midnight,
    so no bucket holds rows of two sessions (the last one of a session is cut at the
    close). Days: the day (``n`` days: epoch-aligned); weeks: from Monday; months: the
    first of the month (``n`` months: from January). ``label_end`` (pandas' ``W``,
    ``ME``, ``QE``): the same buckets, labelled by their last day (midnight).
    """
    start = _bucket_start(q, resample, column=column, calendar=calendar, aware=aware, storage_zone=storage_zone,
                          sessions=sessions)
    if not resample.label_end:
        return start
    size = f"{resample.count} {'week' if resample.unit == 'w' else 'month'}"
    return f"({start} + {q.param(size)}::interval - interval '1 day')"


def _bucket_start(q: Query, resample: Resample, *, column: str, calendar: str, aware: bool,
                  storage_zone: str, sessions: Sequence[Session] = ()) -> str:
    if resample.intraday:
        opened, _, zone = session_hours(calendar)
        day = f"date_trunc('day', {column})"
        offset = f"{q.param(f'{opened.hour * 3600 + opened.minute * 60 + opened.second} seconds')}::interval"
        local, storage = q.param(zone), q.param(storage_zone)
        anchor = (f"((({day} + {offset}) AT TIME ZONE {local}::text) AT TIME ZONE {storage}::text)"
                  if aware else f"({day} + {offset})")
        if sessions:  # that date's open (historical hours, special sessions), else the regular one
            anchor = f"COALESCE({_session_lookup(q, sessions, column)[0]}, {anchor})"
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
