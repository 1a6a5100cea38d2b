"""Knowledge time: superseded versions are kept on update, and every reader answers as of an instant."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration
from regime_io.errors import UsageError, WriteError
from tests._reading_data import bars, regimes_1min

UTC = dt.timezone.utc
T0 = dt.datetime(2025, 1, 1, tzinfo=UTC)


def _at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def _history_count(pg: PostgreSQLIntegration, sql, key: str) -> int:
    return int(sql(f"SELECT count(*) FROM {pg.db.table(key)[:-1]}_history\"")[0][0])


def test_an_update_keeps_the_previous_version_and_appends_keep_none(pg: PostgreSQLIntegration, sql) -> None:
    data = regimes_1min(["AAA", "BBB"], dt.datetime(2024, 1, 2, 9, 15), 20)
    first = pg.save_1min_market_regime(data)
    assert (first.inserted, first.method) == (40, "copy")
    assert pg.save_1min_market_regime(data).unchanged == 40  # same values: no version
    assert _history_count(pg, sql, "market_regimes_1min") == 0
    changed = data.head(5).with_columns(pl.lit("revised").alias("regime"))
    result = pg.save_1min_market_regime(changed)
    assert (result.inserted, result.updated, result.unchanged) == (0, 5, 0)
    assert _history_count(pg, sql, "market_regimes_1min") == 5
    versions = pg.history("1min", "AAA", "2024-01-02", "2024-01-02")
    assert versions.height == 25
    revised = versions.filter(pl.col("timestamp") == dt.datetime(2024, 1, 2, 9, 15))
    assert revised["regime"].to_list() == [data["regime"][0], "revised"]
    old, new = revised.row(0, named=True), revised.row(1, named=True)
    assert old["known_to"] == new["known_from"] and new["known_to"] is None
    assert old["known_from"] < old["known_to"]


def test_reads_as_of_an_instant_see_the_values_then_known(pg: PostgreSQLIntegration) -> None:
    data = regimes_1min(["AAA"], dt.datetime(2024, 1, 2, 9, 15), 10)
    pg.save_1min_market_regime(data, known_at=_at(0))
    pg.save_1min_market_regime(data.head(4).with_columns(pl.lit("v2").alias("regime")), known_at=_at(10))
    pg.save_1min_market_regime(data.head(2).with_columns(pl.lit("v3").alias("regime")), known_at=_at(20))
    read = lambda at: pg.get_1min_market_regimes("AAA", "2024-01-02", "2024-01-02", as_of=at)  # noqa: E731
    assert read(_at(-1)).height == 0  # nothing was known before the first write
    assert_frame_equal(read(_at(5)), pg.get_1min_market_regimes("AAA", "2024-01-02", "2024-01-02").with_columns(
        pl.Series("regime", data["regime"])))
    assert read(_at(10))["regime"].to_list()[:5] == ["v2", "v2", "v2", "v2", data["regime"][4]]
    assert read(_at(25))["regime"].to_list()[:4] == ["v3", "v3", "v2", "v2"]
    assert_frame_equal(read(dt.datetime.now(UTC)), pg.get_1min_market_regimes("AAA", "2024-01-02", "2024-01-02"))


def test_known_at_from_a_column_writes_vintages_in_order(pg: PostgreSQLIntegration) -> None:
    base = regimes_1min(["AAA"], dt.datetime(2024, 1, 2, 9, 15), 3)
    archive = pl.concat([
        base.with_columns(pl.lit("live").alias("regime"), pl.lit(_at(1)).alias("computed_at")),
        base.head(1).with_columns(pl.lit("model2").alias("regime"), pl.lit(_at(30)).alias("computed_at")),
    ])
    result = pg.save_1min_market_regime(archive, known_at="computed_at")
    assert (result.rows, result.inserted, result.updated) == (4, 3, 1)
    versions = pg.history("1min", "AAA")
    assert versions["regime"].to_list() == ["live", "model2", "live", "live"]
    assert versions["known_from"].to_list()[:2] == [_at(1), _at(30)]
    assert pg.get_1min_market_regimes("AAA", as_of=_at(29))["regime"].to_list() == ["live"] * 3


def test_a_vintage_older_than_the_stored_one_is_refused(pg: PostgreSQLIntegration) -> None:
    data = regimes_1min(["AAA"], dt.datetime(2024, 1, 2, 9, 15), 3)
    pg.save_1min_market_regime(data, known_at=_at(10))
    with pytest.raises(WriteError, match="knowledge order"):
        pg.save_1min_market_regime(data.with_columns(pl.lit("x").alias("regime")), known_at=_at(5))
    assert pg.get_1min_market_regimes("AAA")["regime"].to_list() == data["regime"].to_list()


@pytest.mark.parametrize("call", [
    lambda pg: pg.get_market_data("AAA", as_of=T0),
    lambda pg: pg.save_market_data(bars(["AAA"], ["1m"], dt.datetime(2024, 1, 2), 2), known_at=T0),
    lambda pg: pg.history("market_data", "AAA"),
    lambda pg: pg.get_1min_market_regimes("AAA", as_of="not a time"),
    lambda pg: pg.get_1min_market_regimes("AAA", as_of=42),
    lambda pg: pg.save_1min_market_regime(regimes_1min(["AAA"], dt.datetime(2024, 1, 2), 2), known_at="nope"),
])
def test_misuse_is_a_usage_error(pg: PostgreSQLIntegration, call) -> None:
    with pytest.raises(UsageError):
        call(pg)
