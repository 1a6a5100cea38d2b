"""Every error regime_io raises on purpose.

The tree::

    RegimeIOError                  root: catch this to catch everything below
    ├── ConfigError                bad configuration (lists every problem at once)
    ├── UsageError (ValueError)    the call itself is wrong: a bad argument, an unknown
    │                              table, column or option, an ambiguous value
    ├── ServerError                the server cannot be reached or went away
    │   ├── ServerUnavailableError connecting failed after the configured retries,
    │   │   │                      or a connection died mid-call (retry-safe)
    │   │   └── PoolTimeoutError   every pooled connection stayed busy for
    │   │                          connection_timeout seconds
    │   └── PoolClosedError        the pool (or the PostgreSQLIntegration) was closed
    ├── SchemaError                the database schema is missing or not what regime_io expects
    ├── ValidationError            a frame does not fit the table; nothing was sent
    ├── WriteError                 the server refused a write; nothing was written
    └── ReadError                  the server refused a query

Warnings (``UserWarning`` subclasses, shown once per call site in notebooks and scripts)::

    UnknownSymbolWarning           a read named a symbol that was never stored; the
                                   message lists the closest stored symbols
    UnknownTimeframeWarning        a read asked for a timeframe the series does not have;
                                   the message lists the stored ones and points to resample=

Misuse is always a :class:`UsageError` (also a ``ValueError``), whichever method was
called; ``ReadError``/``WriteError`` mean the server refused. Driver exceptions are
translated in one place, ``regime_io._conn.driver_errors``.

Errors about data carry ``table``, ``column``, ``row`` and ``value`` where they apply,
so a notebook user can jump to the offending row: ``df[err.row]``.

A message that suggests a fix ("pass extra_columns='ignore'") holds it as a
:class:`Remedy`, worded twice: as a keyword argument for a caller of the library, as an
option for the command line (``err.cli_message``). The CLI prints that wording; it never
rewrites message text.

Driver errors are wrapped (``raise WriteError(...) from err``) and their text is
scrubbed of credentials before it reaches a message.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CalendarMismatchWarning",
    "ConfigError",
    "PoolClosedError",
    "PoolTimeoutError",
    "ReadError",
    "RegimeIOError",
    "Remedy",
    "SchemaError",
    "ServerError",
    "ServerUnavailableError",
    "UnknownSymbolWarning",
    "UnknownTimeframeWarning",
    "UsageError",
    "ValidationError",
    "WriteError",
]


_UNSET: Any = object()

# The library parameters whose command-line option has another name.
_OPTION_NAMES = {"start_date": "--start", "end_date": "--end"}


def option_name(param: str) -> str:
    """The command-line option of a library parameter: ``extra_columns`` -> ``--extra-columns``."""
    return _OPTION_NAMES.get(param) or "--" + param.replace("_", "-")


@dataclass(frozen=True)
class Remedy:
    """A fix a message suggests, in the words of whoever reads it.

    ``python`` is for a caller of the library, ``cli`` for the command line. A message
    marks where it goes with ``{fix}`` (one marker per remedy, in order).
    """

    python: str
    cli: str

    @classmethod
    def argument(cls, param: str, value: Any = _UNSET) -> Remedy:
        """Pass a keyword argument (``extra_columns='ignore'``): on the command line, the
        option of the same name (``--extra-columns ignore``). No ``value``: any value
        (``format=`` / ``--format``); ``True``: a flag (``strict=True`` / ``--strict``)."""
        option = option_name(param)
        if value is _UNSET:
            return cls(f"{param}=", option)
        if value is True:
            return cls(f"{param}=True", option)
        shown = str(value)
        return cls(f"{param}={value!r}", f"{option} {shown!r}" if " " in shown or "%" in shown else f"{option} {shown}")

    @classmethod
    def subject(cls, param: str) -> Remedy:
        """The parameter a message is about, as its subject: ``start_date:`` / ``--start``."""
        return cls(f"{param}:", option_name(param))


# The remedies several messages share.
INITIALIZE = Remedy("call initialize_database() first", "run regime-io init first")
STRICT = Remedy.argument("strict", True)
DATETIME = Remedy("pass a datetime instead", "write it as YYYY-MM-DD or 'YYYY-MM-DD HH:MM'")

# initialize_database's widen_prices option (a schema at a smaller price scale, a seal of
# columns altered by hand); the command line has none (a rewrite of the price tables is
# a deliberate step, taken from Python).
WIDEN = Remedy("initialize_database(widen_prices=True)",
               "PostgreSQLIntegration(...).initialize_database(widen_prices=True) in Python")


def _fill(template: str, words: list[str]) -> str:
    for word in words:
        template = template.replace("{fix}", word, 1)
    return template


class RegimeIOError(Exception):
    """Root of every error raised by regime_io on purpose."""

    def __init__(
        self,
        message: str,
        *,
        table: str | None = None,
        column: str | None = None,
        row: int | None = None,
        value: Any = None,
        params: tuple[str, ...] = (),
        fixes: tuple[Remedy, ...] = (),
    ) -> None:
        text = _fill(message, [f.python for f in fixes])
        super().__init__(text)
        self.message = text
        # The same message with each remedy worded for the command line.
        self.cli_message = _fill(message, [f.cli for f in fixes])
        self.table = table
        self.column = column
        self.row = row
        self.value = value
        # The arguments the error is about (``("symbol", "start")``), by their library names:
        # the CLI words them as its options from this field, not from the message text.
        self.params = params


class ConfigError(RegimeIOError):
    """The configuration is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str], *, source: str | None = None) -> None:
        where = f" in {source}" if source else ""
        if len(problems) == 1:
            message = f"invalid configuration{where}: {problems[0]}"
        else:
            listed = "\n".join(f"  - {p}" for p in problems)
            message = f"invalid configuration{where} ({len(problems)} problems):\n{listed}"
        super().__init__(message)
        self.problems = list(problems)
        self.source = source


class UsageError(RegimeIOError, ValueError):
    """The call is wrong: a bad argument, an unknown table/column/option, an ambiguous value.

    Nothing was sent to the server. The message says what was allowed.
    """


class ServerError(RegimeIOError):
    """The server could not be reached or the connection broke."""


class ServerUnavailableError(ServerError):
    """Connecting failed after every retry, or the connection died mid-call.

    The call that raised it wrote nothing; retrying it once the server is back is safe.
    """


class PoolTimeoutError(ServerUnavailableError):
    """No pooled connection became free within ``connection_timeout`` seconds.

    The server is fine; the pool's ``max_connections`` connections were all in use.
    """


class PoolClosedError(ServerError):
    """The connection pool was closed (``close()`` was called); open a new instance."""


class SchemaError(RegimeIOError):
    """The database schema is missing or not what regime_io expects (run ``initialize_database``)."""


class ValidationError(RegimeIOError):
    """Input does not fit the table declaration. Nothing was sent to the server."""


class WriteError(RegimeIOError):
    """The server rejected a write. The whole call was rolled back."""


class ReadError(RegimeIOError):
    """The server rejected a query."""


class UnknownSymbolWarning(UserWarning):
    """A read named a symbol that was never stored (its result is empty for that reason).

    ``symbols`` are the unknown ones, ``suggestions`` maps each to the closest stored symbols.
    """

    def __init__(self, message: str, *, table: str, symbols: list[str],
                 suggestions: dict[str, list[str]]) -> None:
        super().__init__(message)
        self.table = table
        self.symbols = symbols
        self.suggestions = suggestions


class UnknownTimeframeWarning(UserWarning):
    """A read asked for a timeframe the series does not have; ``stored`` lists the ones it has."""

    def __init__(self, message: str, *, table: str, timeframe: str, stored: list[str]) -> None:
        super().__init__(message)
        self.table = table
        self.timeframe = timeframe
        self.stored = stored


class CalendarMismatchWarning(UserWarning):
    """Bars fall outside the sessions of the calendar a resample or quality report used:
    the data probably trades on another exchange (``calendar=``, or the ``calendar`` and
    ``calendars`` settings). With ``strict=True`` the same finding is a :class:`UsageError`.

    ``outside`` counts the bars, ``example`` is the first of them.
    """

    def __init__(self, message: str, *, table: str, calendar: str, outside: int, example: Any) -> None:
        super().__init__(message)
        self.table = table
        self.calendar = calendar
        self.outside = outside
        self.example = example


def caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside regime_io, for ``warnings.warn``
    called in regime_io: the warning then points at the user's line."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == "regime_io":
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level
