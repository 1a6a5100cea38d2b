"""Driver errors, translated in one place.

Both drivers (ADBC for COPY and ranges, psycopg for lookups) and connectorx raise their
own exceptions. This module classifies them (a lost connection, a refused login, a server
that said no) and turns them into regime_io's errors, scrubbed of credentials; the pool,
the readers, the writers and maintenance all call it instead of reading driver text
themselves.

Example:
    >>> first_line(ValueError("IO: [libpq] connection refused\nLINE 1: ..."))
    'IO: [libpq] connection refused LINE 1: ...'
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import adbc_driver_manager
import psycopg

from ..errors import (
    INITIALIZE,
    PoolTimeoutError,
    ReadError,
    RegimeIOError,
    Remedy,
    SchemaError,
    ServerError,
    ServerUnavailableError,
    ValidationError,
    WriteError,
)

if TYPE_CHECKING:
    from ..tables import TableSpec
    from .database import Database

__all__ = [
    "DRIVER_ERRORS",
    "NOTHING_COMMITTED",
    "first_line",
    "is_connection_error",
    "lost_before_commit",
    "lost_connection",
    "maintenance_error",
    "move_error",
    "server_message",
    "wrap_error",
    "write_error",
]


# What either driver raises; the pool classifies both alike.
DRIVER_ERRORS: tuple[type[Exception], ...] = (adbc_driver_manager.Error, psycopg.Error)


_CX_CONNECTION_ERRORS = ("error connecting", "timed out waiting for connection", "connection refused",
                         "connection closed", "connection reset", "broken pipe", "terminating connection",
                         "the database system is")


# SQLSTATE classes that mean "the connection, not the data": 08 connection exceptions,
# 57P01-57P03 admin shutdown / crash shutdown / cannot connect now.
_CONNECTION_SQLSTATES = ("08", "57P01", "57P02", "57P03")


_LOST_CONNECTION = ("server closed the connection", "failed to connect", "connection to server",
                    "no connection to the server", "could not receive data", "could not send data",
                    "terminating connection", "connection refused", "broken pipe", "ssl syscall",
                    "connection timed out", "timeout expired", "connection reset",
                    # psycopg's own words for a connection it found dead or closed.
                    "the connection is lost", "the connection is closed", "consuming input failed")


# Connect failures that retrying cannot fix: credentials, names, bad options. Everything
# else (refused, timed out, "starting up", "too many connections") is retried.
_PERMANENT_CONNECT_FAILURES = ("password authentication failed", "authentication failed",
                               "does not exist", "no pg_hba.conf entry", "not permitted to log in",
                               "permission denied", "invalid connection option", "invalid sslmode",
                               "invalid integer value", "invalid port", "certificate",
                               "ssl is not enabled", "does not support ssl", "password is required",
                               "no password supplied")


NOTHING_COMMITTED = "nothing from this call was committed"


def is_connection_error(err: BaseException) -> bool:
    """True when ``err`` is about the connection (retry-safe), not about the data."""
    if isinstance(err, ServerUnavailableError):
        return True
    if not isinstance(err, DRIVER_ERRORS):
        return False
    sqlstate = getattr(err, "sqlstate", None) or ""
    if sqlstate.startswith(_CONNECTION_SQLSTATES):
        return True
    # ADBC reports many things as status IO (even "current transaction is aborted"), so
    # look for libpq's own words for a lost or refused connection.
    text = str(err).lower()
    operational = isinstance(err, (adbc_driver_manager.OperationalError, psycopg.OperationalError))
    return operational and any(m in text for m in _LOST_CONNECTION)


def lost_connection(err: BaseException) -> bool:
    """True when ``err``, or an error it was raised from, is a lost connection.

    Writers wrap driver errors (``raise WriteError(...) from err``); the pool still has to
    know that the connection underneath is gone.
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DRIVER_ERRORS) and is_connection_error(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def lost_before_commit(err: BaseException) -> bool:
    """True when ``err`` is the pool's report of a connection that died during a block,
    before its commit: the server has nothing of that block, so running it again is safe.
    (Not a failed connect, which the pool already retried, nor a cut-off commit.)"""
    return (isinstance(err, ServerUnavailableError) and not isinstance(err, PoolTimeoutError)
            and isinstance(err.__cause__, DRIVER_ERRORS) and NOTHING_COMMITTED in err.message)


def first_line(err: BaseException) -> str:
    """The first two lines of a driver message, on one line (ADBC prefixes the status:
    "IO: [libpq] ..."; the second line is often libpq's detail)."""
    text = str(err).strip()
    return " ".join(text.split("\n")[:2]).replace("\t", " ")


# ADBC's wording around a server error: "NOT_FOUND: Failed to prepare query: ERROR:  <message>\nLINE 1: ..."
_ADBC_SERVER_ERROR = re.compile(r"ERROR:\s+([^\n]+)")


def server_message(err: BaseException) -> str | None:
    """The server's own message of a query error, without the driver's framing and the
    ``LINE 1: ...`` excerpt of the query; None when the error did not come from the server."""
    if isinstance(err, psycopg.Error):
        return err.diag.message_primary
    import adbc_driver_manager

    if isinstance(err, adbc_driver_manager.Error):
        match = _ADBC_SERVER_ERROR.search(str(err))
        return match.group(1).strip() if match else None
    return None


def wrap_error(db: Database, err: BaseException, *, what: str, table: str | None = None) -> RegimeIOError:
    """A driver error as ReadError, ServerUnavailableError (no server) or ServerError (login
    refused), scrubbed of credentials."""
    if isinstance(err, RegimeIOError):
        return err
    text = db.redact(server_message(err) or first_line(err))
    lowered = text.lower()
    if any(p in lowered for p in _CX_CONNECTION_ERRORS):
        if any(p in lowered for p in _PERMANENT_CONNECT_FAILURES):  # a bad password is not an outage
            return ServerError(f"{what}: cannot connect to the server ({db.settings.describe()}): {text}",
                               table=table)
        return ServerUnavailableError(f"{what}: cannot reach the server ({db.settings.describe()}): {text}",
                                      table=table)
    hint = ""
    if "does not exist" in lowered and ("relation" in lowered or "schema" in lowered):
        hint = " (has initialize_database() been run for this schema?)"
    return ReadError(f"{what} failed: {text}{hint}", table=table)


_DETAIL = re.compile(r"DETAIL:\s*(.+)")


def write_error(err: adbc_driver_manager.Error, db: Database, spec: TableSpec) -> RegimeIOError:
    sqlstate = getattr(err, "sqlstate", None) or ""
    text = db.redact(str(err))
    detail_match = _DETAIL.search(text)
    detail = detail_match.group(1).strip() if detail_match else ""
    primary = re.sub(r"^.*?ERROR:\s*", "", text.split("\n")[0]).strip()
    if sqlstate in ("42P01", "3F000"):  # undefined table, undefined schema
        return SchemaError(f"{spec.key}: table {db.settings.table_name(spec.key)!r} does not exist in schema "
                           f"{db.settings.schema!r}; {{fix}}", table=spec.key, fixes=(INITIALIZE,))
    if sqlstate == "23505":
        return WriteError(f"{spec.key}: a row with this natural key already exists ({detail or primary}); "
                          "{fix} refuses it; nothing was written", table=spec.key,
                           fixes=(Remedy.argument("on_conflict", "error"),))
    if sqlstate == "RIO01":  # the sealed-month guard (regime_io._tiers.sealed_guard)
        return WriteError(f"{spec.key}: the server refused rows in a sealed month: {primary}; nothing was written",
                          table=spec.key)
    if sqlstate == "21000":
        return ValidationError(f"{spec.key}: the same natural key appears in two chunks of the stream; "
                               "deduplicate the input; nothing was written", table=spec.key)
    return WriteError(f"{spec.key}: the server refused the write: {primary}"
                      + (f" ({detail})" if detail else "") + "; nothing was written", table=spec.key)


def maintenance_error(err: BaseException, db: Database, spec: TableSpec, *, what: str) -> RegimeIOError:
    """A maintenance statement the server refused (cleanup, sealing), as a WriteError."""
    if isinstance(err, RegimeIOError):
        return err
    text = db.redact(server_message(err) or first_line(err))
    return WriteError(f"{what} of {spec.key!r} failed: {text}", table=spec.key)


def move_error(err: BaseException, db: Database, spec: TableSpec, what: str) -> RegimeIOError:
    """A driver error while a seal, unseal or repair moved a month between the tiers: the
    month's transaction rolled back, so every row is still in exactly one tier."""
    if is_connection_error(err):
        return ServerUnavailableError(f"{what} of {spec.key}: the connection was lost; the month being moved was "
                                      "rolled back (every row is in exactly one tier); run it again",
                                      table=spec.key)
    # The server's words, not the driver's framing (ADBC's quotes the whole statement).
    text = db.redact(server_message(err) or first_line(err))
    detail = _DETAIL.search(str(err))
    if detail:
        text += f" ({db.redact(detail.group(1).strip())})"
    return WriteError(f"{what} of {spec.key} failed: {text}; the month being moved was rolled back",
                      table=spec.key)
