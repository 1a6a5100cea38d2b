"""A login role that must give a password, on a test server that otherwise trusts everyone.

The embedded test server uses trust authentication, so a wrong password would go
unnoticed. For the role made here a ``pg_hba.conf`` line demands scram-sha-256, so
passwords are really checked. Needs a server whose files we control (the embedded one);
with an external DSN the caller skips.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql


@contextmanager
def password_role(server: Any, password: str) -> Iterator[str]:
    """Create a role that logs in with ``password`` only; yields its name."""
    if not server.controllable:
        pytest.skip("needs a server whose pg_hba.conf the tests control (REGIME_IO_TEST_DSN is external)")
    role = f"rio_pw_{uuid.uuid4().hex[:10]}"
    hba = server.pgdata / "pg_hba.conf"
    original = hba.read_text()
    admin = psycopg.connect(server.url(), autocommit=True)
    try:
        admin.execute(pgsql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            pgsql.Identifier(role), pgsql.Literal(password)))
        admin.execute(pgsql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
            pgsql.Identifier(server.settings.database), pgsql.Identifier(role)))
        # First matching line wins: ours go before the trust lines.
        rules = f"local all {role} scram-sha-256\nhost all {role} all scram-sha-256\n"
        hba.write_text(rules + original)
        admin.execute("SELECT pg_reload_conf()")
        _wait_until_password_required(server, role)
        yield role
    finally:
        hba.write_text(original)
        admin.execute("SELECT pg_reload_conf()")
        admin.execute(pgsql.SQL("DROP OWNED BY {}").format(pgsql.Identifier(role)))
        admin.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(pgsql.Identifier(role)))
        admin.close()


def _wait_until_password_required(server: Any, role: str) -> None:
    # pg_reload_conf() only signals the postmaster; wait until new connections see the rule.
    deadline = time.monotonic() + 10
    conninfo = psycopg.conninfo.make_conninfo(server.url(), user=role, password="")
    while time.monotonic() < deadline:
        try:
            psycopg.connect(conninfo).close()
        except psycopg.OperationalError as err:
            if "password" in str(err):
                return
            raise
        time.sleep(0.05)
    raise AssertionError("pg_hba.conf reload did not take effect within 10 s")
