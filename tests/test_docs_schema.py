"""The docs cannot drift: every column, key and configuration key is documented as declared."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from regime_io import config
from regime_io.tables import TABLES, TableSpec

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DOC = (ROOT / "docs" / "schema.md").read_text()
CONFIG_DOC = (ROOT / "docs" / "configuration.md").read_text()


def _section(doc: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ")[0]
    start = doc.index(heading + "\n")
    rest = doc[start + len(heading) + 1:]
    stop = re.search(rf"^#{{1,{len(level)}}} ", rest, flags=re.MULTILINE)
    return rest[: stop.start()] if stop else rest


@pytest.mark.parametrize("spec", list(TABLES.values()), ids=list(TABLES))
def test_every_column_is_documented_with_its_type_and_nullability(spec: TableSpec) -> None:
    text = _section(SCHEMA_DOC, f"### `{spec.key}`")
    for column in spec.columns:
        null = "null" if column.nullable else "not null"
        row = f"| `{column.name}` | `{column.pg_type}` | {null} |"
        assert row in text, f"docs/schema.md, table {spec.key}: missing or stale row {row!r}"
    # No documented column that the declaration lacks.
    documented = set(re.findall(r"^\| `(\w+)` \|", text, flags=re.MULTILINE))
    assert documented == set(spec.column_names) | {"id", "created_at"}


@pytest.mark.parametrize("spec", list(TABLES.values()), ids=list(TABLES))
def test_keys_partitioning_and_indexes_are_documented(spec: TableSpec) -> None:
    text = _section(SCHEMA_DOC, f"### `{spec.key}`")
    assert f"Primary key `({', '.join(spec.primary_key)})`" in text
    assert (f"range-partitioned on `{spec.time_column}`" if spec.partitioned else "not partitioned") in text
    for index in spec.indexes:
        assert f"`({', '.join(index)})`" in text
    assert f"Seed config key `{spec.config_key}`" in text
    for position, name in enumerate(spec.primary_key, start=1):
        assert re.search(rf"^\| `{name}` \|[^\n]*PK {position}\b", text, flags=re.MULTILINE), name


def test_schema_doc_explains_the_deviations() -> None:
    for topic in ("id SERIAL PRIMARY KEY", "BIGSERIAL", "partition_interval", "ACCESS EXCLUSIVE", "run_id",
                  "JSONB sent as text", "storage_timezone", "schema_version", "advisory"):
        assert topic in SCHEMA_DOC, topic


@pytest.mark.parametrize(("section", "keys"), sorted(config._SECTIONS.items()))
def test_every_config_key_is_documented(section: str, keys: set[str]) -> None:
    text = _section(CONFIG_DOC, f"### `[{section.upper()}]`" + (" (regime_io's addition)" if section == "retention"
                                                                  else ""))
    missing = [k for k in sorted(keys) if f"`{k}`" not in text]
    assert not missing, f"docs/configuration.md [{section.upper()}] lacks {missing}"


def test_every_env_variable_is_documented() -> None:
    keys = (config._DATABASE_KEYS | config._CONNECTION_KEYS) - config.LIBPQ_OPTIONS
    missing = [k for k in sorted(keys) if f"REGIME_IO_{k.upper()}" not in CONFIG_DOC]
    assert not missing, missing
    assert "REGIME_IO_CONFIG" in CONFIG_DOC and "REGIME_IO_EMBEDDED_DIR" in CONFIG_DOC


def _default_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@pytest.mark.parametrize(
    "field",
    [f for f in dataclasses.fields(config.Settings)
     if f.name in config._DATABASE_KEYS | config._CONNECTION_KEYS
     and isinstance(f.default, (bool, int, float, str))],
    ids=lambda f: f.name,
)
def test_documented_defaults_match_the_code(field: dataclasses.Field[object]) -> None:
    row = re.search(rf"^\| `{field.name}` \|[^\n]*", CONFIG_DOC, flags=re.MULTILINE)
    assert row, field.name
    assert f"`{_default_text(field.default)}`" in row.group(0), (field.name, field.default, row.group(0))


def test_table_name_defaults_match_the_code() -> None:
    text = _section(CONFIG_DOC, "### `[TABLES]`")
    for spec in TABLES.values():
        assert f"| `{spec.config_key}` | SQL name | `{spec.default_name}` |" in text


@pytest.mark.parametrize("doc", ["README.md", "docs/configuration.md", "docs/schema.md"])
def test_relative_links_resolve(doc: str) -> None:
    path = ROOT / doc
    for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", path.read_text()):
        assert (path.parent / target).exists(), f"{doc}: broken link {target}"


def test_every_guide_is_linked_from_the_index_and_the_readme() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    index = (root / "docs" / "index.md").read_text(encoding="utf-8")
    readme = (root / "README.md").read_text(encoding="utf-8")
    for page in sorted((root / "docs").glob("*.md")):
        if page.name == "index.md":
            continue
        assert f"]({page.name})" in index, f"docs/index.md does not link {page.name}"
        assert f"](docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"
