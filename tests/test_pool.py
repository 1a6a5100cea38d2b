"""The connection pools: reuse, transactions, limits, retries, restarts, close.

Everything but transactions runs against both pools: ADBC (``ConnectionPool``) and
psycopg lookups (``LookupPool``), which share the pooling logic.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import adbc_driver_manager
import psycopg
import pytest
from _auth import password_role
from _helpers import eventually

from regime_io._conn.pool import ConnectionPool, LookupPool
from regime_io.config import Secret, Settings, settings_replace
from regime_io.errors import PoolTimeoutError, ServerError, ServerUnavailableError


def _scalar(conn: Any, query: str) -> Any:
    cur = conn.cursor()
    try:
        cur.execute(query)
        row = cur.fetchone()
    finally:
        cur.close()
    return row[0] if row else None


def _execute(conn: Any, query: str) -> None:
    cur = conn.cursor()
    try:
        cur.execute(query)
    finally:
        cur.close()


@pytest.fixture
def tagged(settings: Settings) -> Settings:
    """Settings whose connections carry a unique application_name, to count them server-side."""
    options = {**settings.libpq_options, "application_name": f"rio_pool_{uuid.uuid4().hex[:8]}"}
    return settings_replace(settings, libpq_options=options)


@pytest.fixture
def pool(tagged: Settings) -> Iterator[ConnectionPool]:
    p = ConnectionPool.from_settings(tagged)
    yield p
    p.close()


@pytest.fixture(params=[ConnectionPool, LookupPool], ids=["adbc", "psycopg"])
def Pool(request: pytest.FixtureRequest) -> Any:
    """Each pool class in turn."""
    return request.param


@pytest.fixture
def any_pool(Pool: Any, tagged: Settings) -> Iterator[Any]:
    p = Pool.from_settings(tagged)
    yield p
    p.close()


@pytest.fixture
def scratch(pool: ConnectionPool, sql: Any, tagged: Settings) -> str:
    """A one-column table in the test's schema; returns its qualified name."""
    sql(f'CREATE SCHEMA IF NOT EXISTS "{tagged.schema}"')
    name = f'"{tagged.schema}"."scratch"'
    sql(f"CREATE TABLE {name} (v INTEGER PRIMARY KEY)")
    return name


def _server_connections(sql: Any, settings: Settings) -> int:
    rows = sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
               (settings.libpq_options["application_name"],))
    return int(rows[0][0])


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- reuse and transactions -------------------------------------------------------------


def test_a_released_connection_is_handed_out_again(any_pool: Any, sql: Any, tagged: Settings) -> None:
    with any_pool.connection() as first:
        assert _scalar(first, "SELECT 1") == 1
    with any_pool.connection() as second:
        assert _scalar(second, "SELECT 2") == 2
    assert second is first
    assert any_pool.open_connections == 1 and any_pool.idle_connections == 1
    assert _server_connections(sql, tagged) == 1


def test_connections_use_the_storage_time_zone(Pool: Any, tagged: Settings) -> None:
    pool = Pool.from_settings(settings_replace(tagged, storage_timezone="Asia/Kolkata"))
    try:
        with pool.connection() as conn:
            assert _scalar(conn, "SELECT current_setting('TimeZone')") == "Asia/Kolkata"
    finally:
        pool.close()


def test_commit_on_success(pool: ConnectionPool, scratch: str, sql: Any) -> None:
    with pool.connection() as conn:
        _execute(conn, f"INSERT INTO {scratch} VALUES (1)")
        # Not visible to others before the block ends: one transaction.
        assert sql(f"SELECT count(*) FROM {scratch}") == [(0,)]
    assert sql(f"SELECT v FROM {scratch}") == [(1,)]


def test_rollback_when_the_block_raises(pool: ConnectionPool, scratch: str, sql: Any) -> None:
    with pytest.raises(KeyError, match="boom"), pool.connection() as conn:
        _execute(conn, f"INSERT INTO {scratch} VALUES (1)")
        raise KeyError("boom")
    assert sql(f"SELECT count(*) FROM {scratch}") == [(0,)]
    # The connection was fine: it went back to the pool and works.
    with pool.connection() as again:
        assert _scalar(again, f"SELECT count(*) FROM {scratch}") == 0
    assert pool.open_connections == 1


def test_a_data_error_rolls_back_and_keeps_the_connection(pool: ConnectionPool, scratch: str, sql: Any) -> None:
    with pool.connection() as conn:
        pass
    with pytest.raises(adbc_driver_manager.Error,
                       match='duplicate key value violates unique constraint "scratch_pkey"') as info, \
            pool.connection() as same:
        _execute(same, f"INSERT INTO {scratch} VALUES (1)")
        _execute(same, f"INSERT INTO {scratch} VALUES (1)")  # duplicate key
    assert not isinstance(info.value, ServerError)  # a data error is not a server problem
    assert same is conn
    assert sql(f"SELECT count(*) FROM {scratch}") == [(0,)]
    with pool.connection() as after:
        assert after is conn and _scalar(after, "SELECT 1") == 1


def test_lookup_connections_run_in_autocommit_and_reuse_prepared_statements(tagged: Settings) -> None:
    pool = LookupPool.from_settings(tagged)
    try:
        with pool.connection() as conn:
            query = "SELECT %s::int + 1"
            assert conn.execute(query, (1,)).fetchone() == (2,)
            # No transaction is left open between lookups (nothing to BEGIN/COMMIT).
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert conn.execute(query, (41,)).fetchone() == (42,)
            prepared = conn.execute("SELECT statement FROM pg_prepared_statements").fetchall()
            # The repeated lookup was prepared once, server-side, and reused.
            assert [row[0] for row in prepared].count("SELECT $1::int + 1") == 1
            # Lookups are index-driven: one generic plan per statement, no re-planning.
            assert conn.execute("SELECT current_setting('plan_cache_mode')").fetchone() == ("force_generic_plan",)
            generic = conn.execute("SELECT generic_plans FROM pg_prepared_statements "
                                   "WHERE statement = 'SELECT $1::int + 1'").fetchone()
            assert generic is not None and generic[0] >= 1
    finally:
        pool.close()


def test_lookup_pool_commit_and_rollback_do_not_undo_anything(tagged: Settings, sql: Any) -> None:
    # The lookup pool is for reads: a statement that writes is committed at once, and the
    # block's rollback (on error) cannot undo it. This pins the documented behaviour.
    sql(f'CREATE SCHEMA IF NOT EXISTS "{tagged.schema}"')
    sql(f'CREATE TABLE "{tagged.schema}"."lookup_scratch" (v INTEGER)')
    pool = LookupPool.from_settings(tagged)
    try:
        with pytest.raises(KeyError, match="boom"), pool.connection() as conn:
            conn.execute(f'INSERT INTO "{tagged.schema}"."lookup_scratch" VALUES (1)')
            raise KeyError("boom")
        assert sql(f'SELECT count(*) FROM "{tagged.schema}"."lookup_scratch"') == [(1,)]
    finally:
        pool.close()


# -- limits -----------------------------------------------------------------------------


def test_max_connections_is_respected_with_a_clear_timeout(Pool: Any, tagged: Settings, sql: Any) -> None:
    pool = Pool.from_settings(settings_replace(tagged, max_connections=2, connection_timeout=0.2))
    try:
        with pool.connection() as a, pool.connection() as b:
            assert a is not b
            with pytest.raises(PoolTimeoutError) as info, pool.connection():
                pass
            assert _server_connections(sql, tagged) == 2
        message = str(info.value)
        assert "max_connections" in message and "0.2s" in message and "primary" in message
        assert isinstance(info.value, ServerUnavailableError)
        with pool.connection() as c:  # free again
            assert c in (a, b)
        assert pool.open_connections == 2
    finally:
        pool.close()


class _ObservedCondition(threading.Condition):
    """The pool's lock, telling when a thread starts waiting on it for a free connection."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting.set()  # still under the lock: a release cannot get in before wait() lets it go
        return super().wait(timeout)


def test_a_waiting_thread_gets_the_released_connection(Pool: Any, tagged: Settings) -> None:
    pool = Pool.from_settings(settings_replace(tagged, max_connections=1, connection_timeout=30))
    pool._lock = _ObservedCondition()  # before any use: the interleaving below is then certain
    got: list[Any] = []

    def worker() -> None:
        with pool.connection() as conn:
            got.append(conn)

    try:
        with pool.connection() as held:
            thread = threading.Thread(target=worker)
            thread.start()
            # The worker is blocked in the pool (all connections in use) before this one is released.
            assert pool._lock.waiting.wait(30), "the worker never waited for a connection"
            assert got == []
        thread.join(30)
        assert got == [held]
        assert pool.open_connections == 1
    finally:
        pool.close()


# -- connecting: what is retried and what is not ----------------------------------------


def test_unreachable_server_is_retried_then_reported(Pool: Any, tagged: Settings,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    unreachable = settings_replace(tagged, host="127.0.0.1", port=_free_tcp_port(), retry_attempts=2,
                                   retry_delay=0.1, password=Secret("hunter2secret"))
    pool = Pool.from_settings(unreachable)
    with caplog.at_level(logging.DEBUG, logger="regime_io._conn.pool"), pytest.raises(ServerUnavailableError) as info, \
            pool.connection():
        pass
    attempts = [r for r in caplog.records if "failed (attempt" in r.getMessage()]
    assert [r.getMessage().split("attempt ")[1][:3] for r in attempts] == ["1/3", "2/3", "3/3"]
    assert "after 3 attempts" in str(info.value) and "127.0.0.1" in str(info.value)
    assert "hunter2secret" not in caplog.text and "hunter2secret" not in str(info.value)
    assert pool.open_connections == 0  # the failed slot was given back


def test_unknown_database_is_not_retried(Pool: Any, tagged: Settings, caplog: pytest.LogCaptureFixture) -> None:
    # retry_delay=30: a retry would make this test hang for a minute instead of failing fast.
    missing = settings_replace(tagged, database="no_such_db_here", retry_attempts=2, retry_delay=30)
    pool = Pool.from_settings(missing)
    with caplog.at_level(logging.DEBUG, logger="regime_io._conn.pool"), pytest.raises(ServerError) as info, \
            pool.connection():
        pass
    assert not isinstance(info.value, ServerUnavailableError)
    assert "no_such_db_here" in str(info.value) and "does not exist" in str(info.value)
    assert [r for r in caplog.records if "attempt 1/3" in r.getMessage()]
    assert not [r for r in caplog.records if "attempt 2/3" in r.getMessage()]


def test_wrong_password_is_not_retried_and_not_shown(Pool: Any, server: Any, tagged: Settings,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    with password_role(server, "the-right-one") as role:
        wrong = settings_replace(tagged, user=role, password=Secret("wr0ng#pass@word"), retry_attempts=2,
                                 retry_delay=30)
        pool = Pool.from_settings(wrong)
        with caplog.at_level(logging.DEBUG, logger="regime_io._conn.pool"), pytest.raises(ServerError) as info, \
                pool.connection():
            pass
        assert not isinstance(info.value, ServerUnavailableError)
        assert "password authentication failed" in str(info.value)
        for text in (str(info.value), caplog.text):
            assert "wr0ng" not in text and "wr0ng%23pass" not in text
        assert not [r for r in caplog.records if "attempt 2/3" in r.getMessage()]
        right = Pool.from_settings(settings_replace(wrong, password=Secret("the-right-one")))
        with right.connection() as conn:
            assert _scalar(conn, "SELECT current_user") == role
        right.close()


# -- connections that die ---------------------------------------------------------------


def test_a_connection_killed_mid_block_is_discarded(any_pool: Any, sql: Any, tagged: Settings) -> None:
    with any_pool.connection() as conn:
        backend = _scalar(conn, "SELECT pg_backend_pid()")
    with pytest.raises(ServerUnavailableError, match="nothing from this call was committed"), \
            any_pool.connection() as same:
        assert same is conn
        sql("SELECT pg_terminate_backend(%s)", (backend,))
        _scalar(same, "SELECT 1")
    assert any_pool.open_connections == 0
    with any_pool.connection() as fresh:
        assert fresh is not conn and _scalar(fresh, "SELECT 1") == 1


def test_a_wrapped_connection_error_still_discards_the_connection(any_pool: Any, sql: Any) -> None:
    with any_pool.connection() as conn:
        backend = _scalar(conn, "SELECT pg_backend_pid()")
    with pytest.raises(RuntimeError, match="wrapped"), any_pool.connection() as same:
        sql("SELECT pg_terminate_backend(%s)", (backend,))
        try:
            _scalar(same, "SELECT 1")
        except (adbc_driver_manager.Error, psycopg.Error) as err:
            raise RuntimeError("wrapped") from err  # as writers wrap driver errors
    assert any_pool.open_connections == 0
    with any_pool.connection() as fresh:
        assert fresh is not conn and _scalar(fresh, "SELECT 1") == 1


def _restart(server: Any) -> None:
    if not server.controllable:
        pytest.skip("the test server is an external DSN: it cannot be restarted from here")
    server.stop("immediate")
    server.start()


def test_pool_recovers_after_a_server_restart(Pool: Any, server: Any, tagged: Settings) -> None:
    # health_check_interval=0: every idle connection is pinged before it is handed out.
    pool = Pool.from_settings(settings_replace(tagged, health_check_interval=0))
    try:
        with pool.connection() as a, pool.connection() as b:
            before = {_scalar(a, "SELECT pg_backend_pid()"), _scalar(b, "SELECT pg_backend_pid()")}
        _restart(server)
        for _ in range(3):  # every hand-out works: no dead connection comes back
            with pool.connection() as conn:
                assert conn is not a and conn is not b
                assert _scalar(conn, "SELECT pg_backend_pid()") not in before
        assert pool.open_connections == 1
    finally:
        pool.close()


def test_one_dead_connection_makes_the_pool_check_the_others(Pool: Any, server: Any, tagged: Settings) -> None:
    # With the health check effectively off, the first connection handed out after a restart
    # is dead: that call fails (retry-safe), and the pool then checks its other idle connections.
    pool = Pool.from_settings(settings_replace(tagged, health_check_interval=3600))
    try:
        with pool.connection() as a, pool.connection() as b:
            pass
        _restart(server)
        with pytest.raises(ServerUnavailableError, match=r"^lost the connection to the primary server .*nothing from "
                           r"this call was committed"), pool.connection() as conn:
            _scalar(conn, "SELECT 1")
        with pool.connection() as conn:
            assert conn is not a and conn is not b
            assert _scalar(conn, "SELECT 1") == 1
    finally:
        pool.close()


def test_a_forked_child_leaves_the_parents_connections_alone(Pool: Any, tagged: Settings) -> None:
    # The child must neither use the parent's sockets nor close them: closing (or a
    # finaliser closing them when garbage-collected) sends the server a Terminate on the
    # parent's session. The child opens its own connection instead.
    pool = Pool.from_settings(tagged)
    try:
        with pool.connection() as conn:
            parent_backend = _scalar(conn, "SELECT pg_backend_pid()")
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report its backend, drop every reference, collect
            code = 1
            try:
                with pool.connection() as child_conn:
                    os.write(write, str(_scalar(child_conn, "SELECT pg_backend_pid()")).encode())
                del conn  # the test's own reference: only the pool could keep it alive now
                gc.collect()
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        child_backend = int(os.read(read, 64) or b"0")
        os.close(read)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert child_backend not in (0, parent_backend)
        with pool.connection() as again:  # the parent's connection survived the child
            assert again is conn and _scalar(again, "SELECT pg_backend_pid()") == parent_backend
    finally:
        pool.close()


# -- close ------------------------------------------------------------------------------


def test_close_releases_everything(Pool: Any, tagged: Settings, sql: Any) -> None:
    pool = Pool.from_settings(settings_replace(tagged, max_connections=3))
    with pool.connection(), pool.connection():
        pass
    with pool.connection() as in_use:
        assert _server_connections(sql, tagged) == 2
        pool.close()
        assert pool.open_connections == 1  # the one in use closes when it comes back
        assert _scalar(in_use, "SELECT 1") == 1
    assert pool.open_connections == 0
    assert eventually(lambda: _server_connections(sql, tagged) == 0)
    with pytest.raises(ServerError, match="closed"), pool.connection():
        pass
