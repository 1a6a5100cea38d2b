"""SQL identifier checks and quoting: the one place names enter SQL text.

Values never go through here: they are bound parameters or COPY data.
"""

from __future__ import annotations


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
