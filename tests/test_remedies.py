"""A message that suggests a fix words it for its reader: a keyword argument for a caller of
the library, an option on the command line. The CLI prints ``cli_message``; it never rewrites
message text (issue 22: it used to, with a regular expression over every message)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from regime_io import files
from regime_io._sql.args import parse_time
from regime_io._write.validate import validate
from regime_io.errors import RegimeIOError, Remedy, UsageError, ValidationError, option_name
from regime_io.tables import table_spec

BARS = table_spec("market_data")


def _bars(**extra: object) -> pl.DataFrame:
    return pl.DataFrame({"symbol": ["A", "A"], "timestamp": [dt.datetime(2024, 1, 2, 9, 15)] * 2,
                         "open": [1.0, 1.0], "high": [1.0, 1.0], "low": [1.0, 1.0], "close": [1.0, 1.0],
                         "volume": [1, 1], "timeframe": ["1m", "1m"], **extra})


def test_a_remedy_has_both_wordings() -> None:
    assert Remedy.argument("extra_columns", "ignore") == Remedy("extra_columns='ignore'", "--extra-columns ignore")
    assert Remedy.argument("date_format", "%d/%m/%Y %H:%M").cli == "--date-format '%d/%m/%Y %H:%M'"
    assert Remedy.argument("strict", True) == Remedy("strict=True", "--strict")
    assert Remedy.argument("format") == Remedy("format=", "--format")
    assert Remedy.subject("start_date") == Remedy("start_date:", "--start")
    assert option_name("end_date") == "--end" and option_name("on_conflict") == "--on-conflict"


def test_markers_are_filled_in_order_and_other_braces_stay() -> None:
    err = RegimeIOError("pass {fix} (e.g. {fix}); {'a': 1}", fixes=(Remedy("x=", "--x"), Remedy("x=1", "--x 1")))
    assert str(err) == err.message == "pass x= (e.g. x=1); {'a': 1}"
    assert err.cli_message == "pass --x (e.g. --x 1); {'a': 1}"


@pytest.mark.parametrize(("call", "python", "cli"), [
    (lambda: validate(BARS, _bars(vendor=["x", "y"])), "pass extra_columns='ignore'", "pass --extra-columns ignore"),
    (lambda: validate(BARS, _bars()), "pass on_duplicate='keep_last'", "pass --on-duplicate keep_last"),
    (lambda: validate(BARS, _bars().with_columns(pl.lit("04/01/2024 09:15").alias("timestamp"))),
     "pass date_format= (e.g. date_format='%d/%m/%Y %H:%M')",
     "pass --date-format (e.g. --date-format '%d/%m/%Y %H:%M')"),
    (lambda: parse_time("04/01/2024", name="start_date", timezone="UTC"), "start_date: '04/01/2024'",
     "--start '04/01/2024'"),
    (lambda: files.detect_format("bars.txt"), "or pass format=", "or pass --format"),
], ids=["extra_columns", "on_duplicate", "date_format", "date_rule", "format"])
def test_library_errors_carry_the_fix_in_both_words(call: object, python: str, cli: str) -> None:
    with pytest.raises((ValidationError, UsageError)) as info:
        call()  # type: ignore[operator]
    assert python in str(info.value) and cli not in str(info.value)
    assert cli in info.value.cli_message and python not in info.value.cli_message
