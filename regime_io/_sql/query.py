"""SQL values and query text with bound parameters: ``Query``, ``TimeRange`` and the open time bounds."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..errors import ReadError, UsageError

# connectorx error texts that mean "no server", not "bad query".
_PLACEHOLDER = re.compile(r"\$(\d+)")


# ---------------------------------------------------------------------------------------
# SQL values


def sql_value(value: Any) -> str:
    """Render one value as an SQL literal, for connectorx (which cannot bind parameters).

    Strings use the escape-string syntax ``E'...'`` with backslashes and quotes doubled:
    it means the same whatever ``standard_conforming_strings`` is set to, so no input can
    end the literal early. NUL bytes (which PostgreSQL text cannot hold) are refused.

    >>> sql_value("O'Neil\\\\")
    "E'O''Neil\\\\\\\\'"
    >>> sql_value(dt.datetime(2024, 1, 2, 9, 15))
    "TIMESTAMP '2024-01-02 09:15:00.000000'"
    >>> sql_value(["A", "B"])
    "ARRAY[E'A', E'B']"
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        if "\x00" in value:
            raise UsageError(f"value {value!r} contains a NUL byte", value=value)
        return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            raise ReadError(f"internal: zoned timestamp {value!r} reached SQL rendering", value=value)
        return f"TIMESTAMP '{value.isoformat(sep=' ', timespec='microseconds')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UsageError(f"value {value!r} is not a finite number", value=value)
        value = Decimal(repr(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise UsageError(f"value {value!r} is not a finite number", value=value)
        return format(value, "f")
    if isinstance(value, (list, tuple)):
        if not value:
            raise ReadError("internal: empty array reached SQL rendering")
        return "ARRAY[" + ", ".join(sql_value(v) for v in value) + "]"
    raise UsageError(f"cannot use a {type(value).__name__} ({value!r}) as an SQL value", value=value)


def array_literal(values: list[Any]) -> str:
    r"""``values`` as the text of a PostgreSQL array literal (to be cast by the SQL).

    >>> print(array_literal([dt.datetime(2024, 1, 2, 3, 45), None, 'a "b"']))
    {"2024-01-02 03:45:00.000000",NULL,"a \"b\""}
    """
    def element(v: Any) -> str:
        if v is None:
            return "NULL"
        if isinstance(v, dt.datetime):
            if v.tzinfo is not None:
                raise ReadError(f"internal: zoned timestamp {v!r} reached SQL rendering", value=v)
            text = v.isoformat(sep=" ", timespec="microseconds")
        elif isinstance(v, (dt.date, str, int, float, Decimal)) and not isinstance(v, bool):
            text = str(v)
        else:
            raise UsageError(f"cannot use a {type(v).__name__} ({v!r}) in an SQL array", value=v)
        if "\x00" in text:
            raise UsageError(f"value {v!r} contains a NUL byte", value=v)
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "{" + ",".join(element(v) for v in values) + "}"


class Query:
    """Collects bound parameters while a query is written: ``q.param(v)`` returns ``$n``."""

    def __init__(self) -> None:
        self.params: list[Any] = []

    def param(self, value: Any) -> str:
        # A list holding NULLs travels as an array literal (text; the SQL casts every array
        # parameter, ``$n::timestamp[]``): ADBC's PostgreSQL driver before 1.13 bound a
        # list's NULL elements as zero values (1970-01-01), which bucketed a resample's
        # weekend bars from midnight over sealed rows, the ones read on ADBC.
        if isinstance(value, list) and any(v is None for v in value):
            value = array_literal(value)
        self.params.append(value)
        return f"${len(self.params)}"

    def inline(self, sql: str) -> str:
        """The query with every ``$n`` replaced by its value as a literal (connectorx).

        One pass over the template: text inside a substituted literal is never rescanned.
        """
        def repl(m: re.Match[str]) -> str:
            return sql_value(self.params[int(m.group(1)) - 1])

        return _PLACEHOLDER.sub(repl, sql)

    def pyformat(self, sql: str) -> tuple[str, dict[str, Any]]:
        """The query in psycopg's placeholder style: ``$n`` becomes ``%(pn)s`` (a literal
        ``%`` is doubled), with the parameters as a dict.

        >>> q = Query(); sql = f"x = {q.param(1)} AND y LIKE '%a' AND z = {q.param(2)}"
        >>> q.pyformat(sql)
        ("x = %(p1)s AND y LIKE '%%a' AND z = %(p2)s", {'p1': 1, 'p2': 2})
        """
        text = _PLACEHOLDER.sub(lambda m: f"%(p{m.group(1)})s", sql.replace("%", "%%"))
        return text, {f"p{i}": value for i, value in enumerate(self.params, start=1)}


# ---------------------------------------------------------------------------------------
# Arguments


@dataclass(frozen=True)
class AtLeast:
    """A filter value meaning ``column >= value`` (a filter is ``(column, value)``: a value,
    a list of values, or this lower bound), e.g. contracts not expired at an instant."""

    value: Any


@dataclass(frozen=True)
class TimeRange:
    """``start <= t`` and ``t <= end`` (or ``t < end`` when ``end_exclusive``)."""

    start: dt.datetime
    end: dt.datetime
    end_exclusive: bool

    def conditions(self, q: Query, column: str) -> list[str]:
        op = "<" if self.end_exclusive else "<="
        return [f"{column} >= {q.param(self.start)}", f"{column} {op} {q.param(self.end)}"]


# The bounds of an open side of a range: PostgreSQL's and Python's timestamps both hold them.
EARLIEST = dt.datetime(1, 1, 1)


LATEST = dt.datetime(9999, 12, 31, 23, 59, 59, 999999)
