"""Citus readiness without Citus: the invariants distribution needs, checked on the
generated DDL and on a real server's catalog, the reviewable plan, and citus = true on a
plain server (a warning, tables stay local)."""

from __future__ import annotations

import doctest
import logging
import re
from typing import Any

import pytest

from regime_io import PostgreSQLIntegration
from regime_io._schema import citus as scaling
from regime_io._schema.citus import DISTRIBUTION_COLUMN, citus_plan
from regime_io._schema.ddl import create_table_sql, schema_sql
from regime_io.config import Settings, load_settings, settings_replace
from regime_io.tables import TABLES, TableSpec


def _columns(text: str) -> list[str]:
    return [c.strip().strip('"') for c in text.split(",")]


@pytest.mark.parametrize("key", list(TABLES))
def test_generated_ddl_is_distributable_by_symbol(key: str) -> None:
    spec: TableSpec = TABLES[key]
    ddl = "\n".join(create_table_sql(spec, Settings()))
    primary = re.search(r"PRIMARY KEY \(([^)]*)\)", ddl)
    assert primary is not None
    assert DISTRIBUTION_COLUMN in _columns(primary[1])
    # Unique constraints other than the primary key would need the column too; there are none.
    for unique in re.findall(r"UNIQUE[^(]*\(([^)]*)\)", ddl):
        assert DISTRIBUTION_COLUMN in _columns(unique)
    assert "REFERENCES" not in ddl.upper() and "FOREIGN KEY" not in ddl.upper()
    partition = re.search(r"PARTITION BY RANGE \(([^)]*)\)", ddl)
    if spec.partitioned:
        assert partition is not None and _columns(partition[1]) == ["timestamp"]
        assert "timestamp" in _columns(primary[1])  # PostgreSQL needs the partition key in the PK
    else:
        assert partition is None


def test_whole_schema_has_no_cross_shard_constraints() -> None:
    statements = schema_sql(Settings())
    for statement in statements:
        # Idempotent statements only: CREATE ... IF NOT EXISTS, CREATE OR REPLACE FUNCTION (the
        # sealed-month guard), or a DO block that changes something only when it is not so yet.
        assert re.match(r"CREATE (SCHEMA|TABLE|INDEX) IF NOT EXISTS|CREATE OR REPLACE FUNCTION |DO \$\w*\$ BEGIN IF ",
                        statement), statement
        assert "REFERENCES" not in statement.upper()
        assert "EXCLUDE" not in statement.upper()


def _catalog(sql: Any, schema: str, query: str) -> list[tuple[Any, ...]]:
    return sql(query, (schema,))  # type: ignore[no-any-return]


def test_real_catalog_is_distributable_by_symbol(pg: PostgreSQLIntegration, sql: Any) -> None:
    import datetime as dt

    schema = pg.settings.schema
    for spec in TABLES.values():  # partitions too: their indexes are checked below
        pg.db.partitions.ensure(pg.db.pool, pg.settings, spec, dt.datetime(2024, 1, 5), dt.datetime(2024, 2, 5))
    references = {f"{pg.settings.table_prefix}schema_version", f"{pg.settings.table_prefix}metadata"}
    # Kept on the coordinator, never joined with the distributed tables (the live tail's log
    # of sealed changes, docs/live.md).
    local = {f"{pg.settings.table_prefix}sealed_changes"}
    uniques = _catalog(sql, schema, """
        SELECT c.relname, i.indexrelid::regclass::text, array_agg(a.attname::text ORDER BY k.ord)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord) ON true
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
        WHERE n.nspname = %s AND i.indisunique GROUP BY 1, 2""")
    tables = {r[0] for r in uniques}
    chunks = sum(1 for spec in TABLES.values() if spec.sealable)
    # parents, the two reference tables, chunk tables, history tables, the series catalog,
    # the live tail's table, two partitions per series table
    assert len(tables) == len(TABLES) + 2 + chunks + len(TABLES) + 1 + 1 + 2 * 4
    for table, index, columns in uniques:
        if table in references | local:
            continue  # replicated whole, or coordinator-local: no distribution column needed
        assert DISTRIBUTION_COLUMN in columns, (table, index, columns)
    foreign = _catalog(sql, schema, """
        SELECT conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname = %s AND c.contype IN ('f', 'x')""")
    assert foreign == []
    keys = dict(_catalog(sql, schema, """
        SELECT c.relname, pg_get_partkeydef(c.oid) FROM pg_partitioned_table p
        JOIN pg_class c ON c.oid = p.partrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s"""))
    assert keys == {pg.settings.table_name(k): 'RANGE ("timestamp")' for k, s in TABLES.items() if s.partitioned}
    # Co-location needs the same distribution column type in every table.
    types = _catalog(sql, schema, """
        SELECT DISTINCT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND a.attname = 'symbol' AND c.relkind IN ('r', 'p')""")
    assert types == [("character varying(20)",)]


def test_citus_plan_distributes_everything_colocated_with_market_data() -> None:
    settings = load_settings(config={"database": {"schema": "quant", "table_prefix": "x_"},
                                     "tables": {"1min_market_regimes": "regimes_1m"}}, env={})
    plan = citus_plan(settings)
    assert plan[:3] == ["""SELECT create_reference_table('"quant"."x_schema_version"')""",
                        """SELECT create_reference_table('"quant"."x_metadata"')""",
                        """SELECT create_distributed_table('"quant"."x_market_data"', 'symbol')"""]
    colocated = ", colocate_with => '\"quant\".\"x_market_data\"')"
    names = {settings.table_name(k) for k in TABLES}
    chunks = {f"{settings.table_name(k)}_chunks" for k, spec in TABLES.items() if spec.sealable}
    history = {f"{settings.table_name(k)}_history" for k in TABLES}
    for statement in plan[3:]:
        assert statement.startswith("SELECT create_distributed_table('\"quant\".\"x_")
        assert statement.endswith(colocated)
    distributed = {re.search(r"create_distributed_table\('\"quant\"\.\"([^\"]+)\"", s)[1] for s in plan[2:]}  # type: ignore[index]
    assert distributed == names | chunks | history | {"x_series"}
    assert "x_regimes_1m" in distributed and "x_regimes_1m_chunks" in distributed
    # Already distributed tables are left out.
    assert citus_plan(settings, distributed=distributed | {"x_schema_version", "x_metadata"}) == []
    assert len(citus_plan(settings, distributed={"x_market_data"})) == len(plan) - 1


# The plan's statements run against a real Citus cluster in tests/test_citus.py (the
# ``citus`` tier): distribution, co-location and idempotence are checked there.


def test_citus_true_on_a_plain_server_warns_and_stays_local(settings: Settings, sql: Any,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    pg = PostgreSQLIntegration(settings=settings_replace(settings, citus=True))
    try:
        with caplog.at_level(logging.WARNING, logger="regime_io._schema.citus"):
            version = pg.initialize_database()
            pg.initialize_database()  # idempotent, no error either
    finally:
        pg.close()
    assert version >= 1
    warnings = [r for r in caplog.records if r.name == "regime_io._schema.citus"]
    assert len(warnings) == 2 and "citus extension is not installed" in warnings[0].getMessage()
    assert sql("SELECT to_regclass('pg_catalog.pg_dist_partition')") == [(None,)]
    kinds = dict(sql("SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                     "WHERE n.nspname = %s AND c.relkind IN ('r', 'p')", (settings.schema,)))
    assert kinds[settings.table_name("market_data")] == "p"
    assert kinds[settings.table_name("optimization_results")] == "r"


def test_doctests() -> None:
    result = doctest.testmod(scaling, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 2


def test_docs_show_the_current_plan() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "scaling.md").read_text()
    for statement in citus_plan(Settings()):
        assert statement in doc, f"docs/scaling.md: stale Citus plan, missing {statement!r}"
