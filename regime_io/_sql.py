"""SQL identifier checks and quoting: the one place names enter SQL text.

Values never go through here: they are bound parameters or COPY data.
"""

from __future__ import annotations

import re

_PLAIN_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# PostgreSQL truncates identifiers at 63 bytes; we refuse instead of truncating.
MAX_IDENTIFIER_LENGTH = 63


def identifier_problem(name: str) -> str | None:
    """Return why ``name`` is not a plain SQL name, or None when it is.

    >>> identifier_problem("mr_market_data") is None
    True
    >>> identifier_problem("x; drop table y")
    "'x; drop table y' is not a plain SQL name (letters, digits and _, not starting with a digit)"
    """
    if not isinstance(name, str) or not _PLAIN_IDENTIFIER.match(name):
        return f"{name!r} is not a plain SQL name (letters, digits and _, not starting with a digit)"
    if len(name) > MAX_IDENTIFIER_LENGTH:
        return f"{name!r} is longer than {MAX_IDENTIFIER_LENGTH} characters"
    return None


def quote_ident(name: str) -> str:
    """Quote one identifier for SQL text.

    Names are validated when the configuration is built; quoting here is the second line
    of defence, so even an unvalidated name cannot end the identifier early.

    >>> quote_ident('a"b')
    '"a""b"'
    """
    if "\x00" in name:
        raise ValueError("identifier contains a NUL byte")
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    """``"schema"."name"``."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def literal(value: str) -> str:
    """Quote a string as an SQL literal, for the rare statements that take no parameters
    (DDL such as partition bounds). Never used for user data."""
    if "\x00" in value:
        raise ValueError("literal contains a NUL byte")
    return "'" + value.replace("'", "''") + "'"
