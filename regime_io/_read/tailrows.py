"""``tail(table, symbol, n)``: the last ``n`` rows of each symbol, as ``tail`` means in
pandas, polars and ArcticDB (the live follower is ``follow()``).

The range reader of the table with ``last=n`` (:mod:`regime_io._read.lastrows`): both
tiers, each symbol read backwards from ``end_date`` (default: its newest row).

Example:
    >>> pg.tail("bars", "NIFTY", 20, timeframe="1m")          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import Remedy, UsageError
from ..types import DateLike, ReturnType
from .readers import get_1min_market_regimes, get_market_data, get_market_regimes, get_options_data

if TYPE_CHECKING:
    from .._conn.database import Database

__all__ = ["tail"]


def tail(db: Database, table: str, symbol: str | Sequence[str] | None = None, n: int = 5, *,
         symbols: Sequence[str] | None = None, end_date: DateLike | None = None, timeframe: str | None = None,
         exact: bool = False, tz: str | None = None, return_type: ReturnType = "polars") -> Any:
    """The last ``n`` rows of each symbol of ``table`` at or before ``end_date``; see
    :meth:`regime_io.PostgreSQLIntegration.tail`."""
    spec = db.spec(table)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UsageError(f"n: expected a positive integer (rows per symbol), got {n!r}", table=spec.key, value=n)
    if spec.time_column is None:
        raise UsageError(f"tail: {spec.key} has no time column; read it with get_optimization_results(top=...)",
                         table=spec.key, value=table)
    if timeframe is not None and "timeframe" not in spec.column_names:
        raise UsageError(f"{spec.key} has no timeframe column; {{fix}}", table=spec.key,
                         column="timeframe", value=timeframe,
                         fixes=(Remedy(f"drop timeframe={timeframe!r}", "drop --timeframe"),))
    common: dict[str, Any] = dict(symbols=symbols, exact=exact, tz=tz, last=n, return_type=return_type)
    if spec.key == "market_data":
        return get_market_data(db, symbol, None, end_date, timeframe=timeframe, **common)
    if spec.key == "market_regimes":
        return get_market_regimes(db, symbol, None, end_date, timeframe=timeframe, **common)
    if spec.key == "options_data":
        return get_options_data(db, symbol, None, end_date, **common)
    return get_1min_market_regimes(db, symbol, None, end_date, **common)
