"""Data-quality report: per symbol and exchange session, what is missing and what looks wrong.

For each symbol and each session of the exchange calendar in the range (holidays have
none), from the rows stored in both tiers:

* ``expected_minutes``: the session's length in minutes (375 for NSE's 09:15-15:30);
  ``present_minutes``: distinct minutes with a row inside the session (for tables with a
  timeframe, rows of the ``1m`` series); ``missing_minutes`` and ``coverage``
  (present / expected); ``first_missing``: the first missing minute.
* ``duplicate_bars``: minutes stored under two or more timeframes with the same OHLCV
  values (the same bar saved twice under different labels).
* ``ohlc_violations``: bars with ``low > high`` or ``open``/``close`` outside ``[low, high]``.
* ``zero_volume_runs``: runs of at least :data:`ZERO_VOLUME_RUN` consecutive bars with
  zero volume; ``longest_zero_volume_run``: the longest run of zero-volume bars.
* ``stale_runs``: runs of at least :data:`STALE_RUN` consecutive bars whose OHLC did not
  move at all (``open == high == low == close`` equal to the previous close).
* ``jumps``: bars whose close-to-close log return exceeds :data:`JUMP_SIGMAS` robust
  standard deviations (1.4826 x the median absolute deviation of the symbol's one-minute
  returns in the range); the first bar of a session is compared with nothing (no
  overnight gaps).

Stored times and sessions follow :mod:`regime_io._read.resample` (a naive table holds the
exchange's wall clock; a zone-aware one instants in the storage zone). Sessions are each
date's schedule (early closes, historical hours), of the calendar the ``calendar`` argument,
or else the ``calendars``/``calendar`` settings, give each symbol. Bars outside every session
of the span warn (:class:`~regime_io.errors.CalendarMismatchWarning`; ``strict``: refused).
``bar_label="end"``: the vendor stamps a bar by its end (09:31 for 09:30-09:31), so each
time is moved back one minute before it is matched with the session's minutes.

Example:
    >>> quality_report(db, "bars", ["NIFTY"], "2024-01-01", "2024-01-31")   # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from .._frames import check_return_type, convert
from .._sql.args import parse_range, resolve_symbols
from .._sql.query import TimeRange
from .._tiers.catalog import read_catalog
from ..errors import UsageError
from ..tables import TableSpec
from ..types import BarLabel, DateLike, ReturnType, check_choice
from .readers import read_range
from .resample import calendar_groups, check_fit, stored_sessions

if TYPE_CHECKING:
    from .._conn.database import Database

__all__ = ["JUMP_SIGMAS", "QUALITY_SCHEMA", "STALE_RUN", "ZERO_VOLUME_RUN", "quality_report"]


# A run of this many zero-volume bars is reported (one quiet minute is normal; five is a dead feed).
ZERO_VOLUME_RUN = 5


# A run of this many bars with no price movement at all is a stale (repeated) price.
STALE_RUN = 5


# A one-minute return beyond this many robust standard deviations is a jump.
JUMP_SIGMAS = 8.0


QUALITY_SCHEMA = pa.schema([
    ("symbol", pa.string()), ("session", pa.date32()), ("session_open", pa.timestamp("us")),
    ("session_close", pa.timestamp("us")), ("expected_minutes", pa.int64()), ("present_minutes", pa.int64()),
    ("missing_minutes", pa.int64()), ("coverage", pa.float64()), ("first_missing", pa.timestamp("us")),
    ("duplicate_bars", pa.int64()), ("ohlc_violations", pa.int64()), ("zero_volume_runs", pa.int64()),
    ("longest_zero_volume_run", pa.int64()), ("stale_runs", pa.int64()), ("jumps", pa.int64()),
])


_OHLCV = ("open", "high", "low", "close", "volume")


# Option bars: each contract is its own series of bars (runs and returns never mix contracts).
_CONTRACT = ("expiry_date", "strike_price", "option_type")


def quality_report(db: Database, table: str, symbols: str | Sequence[str] | None = None,
                   start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                   calendar: str | None = None, bar_label: BarLabel = "start", strict: bool = False,
                   return_type: ReturnType = "polars") -> Any:
    """The quality of ``table``'s minutes per symbol and session (module docstring).

    Raises:
        UsageError: an unknown table or calendar, a table without a time column, bad
            dates; a calendar other than the built-in needs the ``calendars`` extra.
    """
    check_return_type(return_type)
    check_choice("bar_label", bar_label, BarLabel)
    spec = db.spec(table)
    if spec.time_column is None:
        raise UsageError(f"quality_report reads the time-series tables; {spec.key!r} has no time column",
                         table=spec.key, value=table)

    catalog = pl.from_arrow(read_catalog(db, spec.key))
    assert isinstance(catalog, pl.DataFrame)
    wanted = resolve_symbols(symbols, None, case=db.settings.symbol_case, required=False)
    if wanted is None:
        wanted = catalog["symbol"].unique(maintain_order=True).to_list()
    rng = parse_range(start_date, end_date, timezone=db.settings.storage_timezone)
    listed = catalog.filter(pl.col("symbol").is_in(wanted))
    first = rng.start if start_date is not None else listed["first_timestamp"].min()
    last = rng.end if end_date is not None else listed["last_timestamp"].max()
    if not wanted or first is None or last is None:
        return convert(QUALITY_SCHEMA.empty_table(), return_type)
    assert isinstance(first, dt.datetime) and isinstance(last, dt.datetime)
    if end_date is not None and rng.end_exclusive:
        last = last - dt.timedelta(microseconds=1)
    # The end label of a bar is its start plus one minute (the minute bars the report counts).
    shift = dt.timedelta(minutes=1) if bar_label == "end" else dt.timedelta(0)
    reports = []
    for name, group in calendar_groups(db.settings, wanted, calendar).items():
        sessions = _sessions(db, spec, name, first, last)
        if sessions.height == 0:
            continue
        rows = _rows(db, spec, group, sessions, shift)
        in_window = rows.filter(pl.col("timestamp").is_between(first, last))
        outside = in_window.join(sessions, left_on=pl.col("timestamp").dt.date(), right_on="session",
                                 how="left").filter(
            pl.col("session_open").is_null() | (pl.col("timestamp") < pl.col("session_open"))
            | (pl.col("timestamp") >= pl.col("session_close")))
        example = outside["timestamp"].min()
        check_fit(spec.key, name, outside.height, example + shift if isinstance(example, dt.datetime) else example,
                  strict=strict, what="quality_report")
        reports.append(_report(spec, group, sessions, rows))
    if not reports:
        return convert(QUALITY_SCHEMA.empty_table(), return_type)
    report = pa.concat_tables(reports)
    if len(reports) > 1:
        report = report.sort_by([("symbol", "ascending"), ("session", "ascending")])
    return convert(report, return_type)


def _sessions(db: Database, spec: TableSpec, calendar: str, first: dt.datetime, last: dt.datetime) -> pl.DataFrame:
    """The calendar's sessions overlapping ``[first, last]``, open/close in stored time."""
    days = stored_sessions(db, spec, calendar, first.date() - dt.timedelta(days=1), last.date() + dt.timedelta(days=1))
    out = [(day, opened, closed) for day, opened, closed in days if closed > first and opened <= last]
    return pl.DataFrame(out, schema={"session": pl.Date, "session_open": pl.Datetime("us"),
                                     "session_close": pl.Datetime("us")}, orient="row")


def _rows(db: Database, spec: TableSpec, symbols: list[str], sessions: pl.DataFrame,
          shift: dt.timedelta) -> pl.DataFrame:
    """The stored rows of the sessions' span (both tiers), the columns the checks need, their
    times moved back by ``shift`` (end-labelled bars to their start)."""

    names = [n for n in ("symbol", spec.time_column or "timestamp", "timeframe", *_CONTRACT, *_OHLCV)
             if n in spec.column_names]
    start = sessions["session_open"].min()
    end = sessions["session_close"].max()
    assert isinstance(start, dt.datetime) and isinstance(end, dt.datetime)
    # Whole days, so bars of the days outside their sessions are seen (and reported).
    start, end = dt.datetime.combine(start.date(), dt.time()), dt.datetime.combine(end.date(), dt.time.max)
    table = read_range(db, spec, symbols, TimeRange(start + shift, end + shift, end_exclusive=True), names=names,
                       exact=False, extra=[], what="quality_report")
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    if spec.time_column != "timestamp":
        frame = frame.rename({spec.time_column or "timestamp": "timestamp"})
    return frame.with_columns(pl.col("timestamp") - shift) if shift else frame


def _report(spec: TableSpec, symbols: list[str], sessions: pl.DataFrame, rows: pl.DataFrame) -> pa.Table:
    has_tf = "timeframe" in rows.columns
    has_bars = all(c in rows.columns for c in _OHLCV)
    grid = pl.DataFrame({"symbol": symbols}).join(sessions, how="cross")
    # Rows inside each session (a join on the day, then a bound check).
    inside = (rows.with_columns(pl.col("timestamp").dt.date().alias("_day"))
              .join(sessions, left_on="_day", right_on="session")
              .filter((pl.col("timestamp") >= pl.col("session_open")) & (pl.col("timestamp") < pl.col("session_close")))
              .rename({"_day": "session"}))
    minute = inside.filter(pl.col("timeframe") == "1m") if has_tf else inside
    present = (minute.group_by("symbol", "session")
               .agg(pl.col("timestamp").dt.truncate("1m").n_unique().alias("present_minutes")))
    out = grid.join(present, on=["symbol", "session"], how="left").with_columns(
        pl.col("present_minutes").fill_null(0).cast(pl.Int64),
        ((pl.col("session_close") - pl.col("session_open")).dt.total_minutes()).cast(pl.Int64)
        .alias("expected_minutes"))
    out = out.with_columns((pl.col("expected_minutes") - pl.col("present_minutes")).clip(0).alias("missing_minutes"),
                           (pl.col("present_minutes") / pl.col("expected_minutes")).alias("coverage"))
    out = out.join(_first_missing(out, minute), on=["symbol", "session"], how="left")
    if has_tf and has_bars:
        dupes = (inside.group_by("symbol", "session", "timestamp", *_OHLCV)
                 .agg(pl.col("timeframe").n_unique().alias("n")).filter(pl.col("n") > 1)
                 .group_by("symbol", "session").agg(pl.len().cast(pl.Int64).alias("duplicate_bars")))
        out = out.join(dupes, on=["symbol", "session"], how="left")
    if has_bars:
        out = out.join(_bar_checks(minute), on=["symbol", "session"], how="left")
    for name in QUALITY_SCHEMA.names:
        if name not in out.columns:
            out = out.with_columns(pl.lit(None).alias(name))
    counts = ["duplicate_bars", "ohlc_violations", "zero_volume_runs", "longest_zero_volume_run", "stale_runs",
              "jumps"]
    if has_bars:
        out = out.with_columns(pl.col(c).fill_null(0) for c in counts)
    out = out.select(QUALITY_SCHEMA.names).sort("symbol", "session")
    return out.to_arrow().cast(QUALITY_SCHEMA)


def _first_missing(grid: pl.DataFrame, minute: pl.DataFrame) -> pl.DataFrame:
    """The first minute of each session without a row (null when none is missing)."""
    wanted = grid.filter(pl.col("missing_minutes") > 0).select("symbol", "session", "session_open", "session_close")
    if wanted.height == 0:
        return pl.DataFrame(schema={"symbol": pl.String, "session": pl.Date, "first_missing": pl.Datetime("us")})
    expected = wanted.with_columns(
        pl.datetime_ranges("session_open", pl.col("session_close") - pl.duration(minutes=1), interval="1m")
        .alias("minute")).explode("minute").select("symbol", "session", "minute")
    have = minute.select("symbol", pl.col("timestamp").dt.truncate("1m").alias("minute")).unique()
    missing = expected.join(have, on=["symbol", "minute"], how="anti")
    return missing.group_by("symbol", "session").agg(pl.col("minute").min().alias("first_missing"))


def _bar_checks(minute: pl.DataFrame) -> pl.DataFrame:
    contract = [c for c in _CONTRACT if c in minute.columns]
    series = ["symbol", *contract]
    session = (*series, "session")
    bars = minute.sort(*series, "timestamp")
    bars = bars.with_columns((pl.col("close").log() - pl.col("close").shift(1).log()).over(session).alias("_r"))
    sigma = bars.group_by(series).agg(pl.col("_r").median().alias("_med"))
    bars = bars.join(sigma, on=series, how="left", nulls_equal=True)
    sigma = bars.group_by(series).agg(((pl.col("_r") - pl.col("_med")).abs().median() * 1.4826).alias("_sigma"))
    bars = bars.join(sigma, on=series, how="left", nulls_equal=True)
    flat = ((pl.col("open") == pl.col("high")) & (pl.col("high") == pl.col("low")) & (pl.col("low") == pl.col("close"))
            & (pl.col("close") == pl.col("close").shift(1).over(session))).fill_null(False)
    bars = bars.with_columns((pl.col("volume") == 0).alias("_zero"), flat.alias("_flat"))
    for flag in ("_zero", "_flat"):
        previous = pl.col(flag).shift(1).over(session).fill_null(False)
        bars = bars.with_columns((pl.col(flag) & previous.not_()).alias(f"{flag}_start"))
        bars = bars.with_columns(pl.col(f"{flag}_start").cum_sum().over(session).alias(f"{flag}_id"))
        run_length = pl.col(flag).sum().over(*session, f"{flag}_id")
        bars = bars.with_columns(pl.when(pl.col(flag)).then(run_length).otherwise(0).alias(f"{flag}_len"))
    violation = ((pl.col("low") > pl.col("high")) | (pl.col("open") > pl.col("high")) | (pl.col("open") < pl.col("low"))
                 | (pl.col("close") > pl.col("high")) | (pl.col("close") < pl.col("low")))
    jump = ((pl.col("_r").abs() > JUMP_SIGMAS * pl.col("_sigma")) & (pl.col("_sigma") > 0)).fill_null(False)
    return bars.group_by("symbol", "session").agg(
        violation.sum().cast(pl.Int64).alias("ohlc_violations"),
        (pl.col("_zero_start") & (pl.col("_zero_len") >= ZERO_VOLUME_RUN)).sum().cast(pl.Int64)
        .alias("zero_volume_runs"),
        pl.col("_zero_len").max().cast(pl.Int64).alias("longest_zero_volume_run"),
        (pl.col("_flat_start") & (pl.col("_flat_len") >= STALE_RUN)).sum().cast(pl.Int64).alias("stale_runs"),
        jump.sum().cast(pl.Int64).alias("jumps"),
    )
