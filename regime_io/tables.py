"""The five tables, declared once.

Everything else is derived from these declarations: the DDL (``schema.py``), the Arrow
schema writers validate against (``validation.py``), the natural keys used for upserts
(``writing.py``) and the casts readers apply (``reading.py``). Adding a column is one
line in ``TABLES`` below.

Example:
    >>> from regime_io.tables import TABLES
    >>> TABLES["market_data"].primary_key
    ('symbol', 'timeframe', 'timestamp')
    >>> TABLES["market_data"].column("open").pg_type
    'NUMERIC(10,2)'
    >>> table_spec("bars", price_scale=6).column("open").pg_type
    'NUMERIC(14,6)'
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Literal

import pyarrow as pa

from .errors import UsageError

__all__ = ["DEFAULT_PRICE_SCALE", "PRICE_SCALES", "REGIME_TABLES", "TABLES", "TABLE_ALIASES", "Column", "TableKey",
           "TableSpec", "canonical_timeframe", "price_type", "regime_spec", "table_spec"]

TableKey = Literal[
    "market_data",
    "options_data",
    "market_regimes",
    "market_regimes_1min",
    "optimization_results",
]

ColumnKind = Literal["text", "decimal", "timestamp", "date", "bigint", "json"]

# Sealed history is chunked by calendar month: a symbol-month of one-minute bars is 8-45k
# rows (~0.1-0.7 MB compressed), big enough for zstd and one fetch to pay off, small enough
# that a restatement of one day re-encodes one chunk in milliseconds and a one-month read
# fetches one chunk. It is also the default partition size of the row tier and the unit
# retention and sealing reason about.
ChunkPeriod = Literal["month"]


# Price columns are NUMERIC(PRICE_DIGITS + s, s) with s the schema's ``price_scale``
# (``[DATABASE] price_scale``, recorded in the schema at initialize_database): every scale
# keeps the seed's NUMERIC(10,2) integer range, |price| < 10**8, and the seed's 2 is the
# default. 0..8: 8 decimals are the smallest unit crypto quotes in; beyond that a float64
# price carries no further digit anyway (8 + 8 = 16 significant digits, one more than a
# double keeps).
PRICE_DIGITS = 8
DEFAULT_PRICE_SCALE = 2
PRICE_SCALES = range(0, 9)


def price_type(scale: int) -> str:
    """The PostgreSQL type of the price columns at ``scale``.

    >>> price_type(2), price_type(6)
    ('NUMERIC(10,2)', 'NUMERIC(14,6)')
    """
    return f"NUMERIC({PRICE_DIGITS + scale},{scale})"


@dataclass(frozen=True)
class Column:
    """One column: its PostgreSQL type, Arrow type and constraints."""

    name: str
    kind: ColumnKind
    nullable: bool = False
    length: int | None = None  # VARCHAR(n)
    precision: int | None = None  # NUMERIC(p, s)
    scale: int | None = None
    # Filled in by the writer when the input lacks it (e.g. optimisation ``run_id``).
    computed: bool = False
    # Accepted spellings (upper-cased) -> the canonical stored value; None accepts any text.
    aliases: Mapping[str, str] | None = None
    # A vocabulary with its own spelling rules: "timeframe" (canonical_timeframe()).
    vocabulary: Literal["timeframe"] | None = None
    # A price: its scale is the schema's price_scale (TableSpec.with_price_scale); the
    # precision and scale above are the default's.
    price: bool = False

    def canonical(self, value: str) -> str | None:
        """The stored spelling of ``value``, or None when the column does not accept it.

        Writers store this spelling and readers filter by it, so ``"ce"``, ``"CALL"``
        and ``"CE"`` (or ``"1min"``, ``"1T"`` and ``"1m"``) find the same rows.

        >>> TABLES["options_data"].column("option_type").canonical("call")
        'CE'
        >>> TABLES["market_data"].column("timeframe").canonical("60min")
        '1h'
        """
        if self.aliases is not None:
            return self.aliases.get(value.strip().upper())
        if self.vocabulary == "timeframe":
            return canonical_timeframe(value)
        return value

    @property
    def accepted(self) -> str:
        """What :meth:`canonical` accepts, for error messages."""
        if self.aliases is not None:
            return "(any case) " + ", ".join(sorted(set(self.aliases)))
        if self.vocabulary == "timeframe":
            return TIMEFRAME_HELP
        return "any text"

    @property
    def pg_type(self) -> str:
        """The PostgreSQL type as written in the DDL."""
        if self.kind == "text":
            return f"VARCHAR({self.length})"
        if self.kind == "decimal":
            return f"NUMERIC({self.precision},{self.scale})"
        return {"timestamp": "TIMESTAMP", "date": "DATE", "bigint": "BIGINT", "json": "JSONB"}[self.kind]

    @property
    def wire_pg_type(self) -> str:
        """The type of the column in a COPY staging table.

        JSONB travels as text: ADBC's binary COPY cannot write PostgreSQL's jsonb format.
        """
        return "TEXT" if self.kind == "json" else self.pg_type

    @cached_property  # read per column on every write: computed once (frozen, so it cannot go stale)
    def arrow_type(self) -> pa.DataType:
        """The exact Arrow type COPY needs for this column (binary COPY is type-strict)."""
        if self.kind == "decimal":
            assert self.precision is not None and self.scale is not None
            return pa.decimal128(self.precision, self.scale)
        return {
            "text": pa.string(),
            "json": pa.string(),
            "timestamp": pa.timestamp("us"),
            "date": pa.date32(),
            "bigint": pa.int64(),
        }[self.kind]

    def read_type(self, *, exact: bool) -> pa.DataType:
        """The Arrow type readers return: decimals as float64 unless ``exact``."""
        if self.kind == "decimal" and not exact:
            return pa.float64()
        return self.arrow_type

    @property
    def max_abs(self) -> int:
        """Exclusive bound of ``abs(value)`` for NUMERIC(p, s): ``10 ** (p - s)``."""
        assert self.precision is not None and self.scale is not None
        return 10 ** (self.precision - self.scale)


def _text(name: str, length: int, *, nullable: bool = False, computed: bool = False,
          aliases: Mapping[str, str] | None = None) -> Column:
    return Column(name, "text", nullable=nullable, length=length, computed=computed, aliases=aliases)


def _timeframe(*, nullable: bool = False) -> Column:
    return Column("timeframe", "text", nullable=nullable, length=10, vocabulary="timeframe")


# One timeframe vocabulary: <n><unit> with unit s, m, h, d, w or mo. The spellings of
# pandas ("5T", "1H", "D"), polars ("5m", "1mo") and plain words ("5min", "1 hour") are
# accepted and stored canonically, as the largest whole unit ("60min" -> "1h").
_TIMEFRAME = re.compile(r"^\s*(\d*)\s*([a-zA-Z]+)\s*$")
_TIMEFRAME_UNITS: dict[str, str] = {
    **dict.fromkeys(("s", "S", "sec", "secs", "second", "seconds"), "s"),
    **dict.fromkeys(("m", "T", "min", "mins", "minute", "minutes"), "m"),
    **dict.fromkeys(("h", "H", "hr", "hrs", "hour", "hours"), "h"),
    **dict.fromkeys(("d", "D", "day", "days"), "d"),
    **dict.fromkeys(("w", "W", "wk", "week", "weeks"), "w"),
    **dict.fromkeys(("mo", "M", "mon", "month", "months", "MS", "ME"), "mo"),
}
_TIMEFRAME_STEPS = (("s", 60, "m"), ("m", 60, "h"), ("h", 24, "d"))
TIMEFRAME_HELP = ("<n><unit> with unit s, m, h, d, w or mo ('1m', '5m', '15m', '1h', '1d'); "
                  "'1min', '5T', '60min', '1H', 'D' are accepted aliases, in any case except 'M' (a month)")


def canonical_timeframe(value: str) -> str | None:
    """The canonical spelling of a timeframe, or None when ``value`` is not one.

    >>> [canonical_timeframe(v) for v in ("1min", "1T", "5min", "60min", "1H", "D", "1d", "90s", "tick")]
    ['1m', '1m', '5m', '1h', '1h', '1d', '1d', '90s', None]
    >>> [canonical_timeframe(v) for v in ("1Min", "1MIN", "5Minutes", "1HOUR", "1M", "1MO")]
    ['1m', '1m', '5m', '1h', '1mo', '1mo']
    """
    match = _TIMEFRAME.match(value)
    if match is None:
        return None
    # Exact spellings first (pandas' "M" is a month, polars' "m" a minute), then any case:
    # "1Min", "1MIN" and "1min" are one minute, "1HOUR" an hour.
    unit = _TIMEFRAME_UNITS.get(match.group(2)) or _TIMEFRAME_UNITS.get(match.group(2).lower())
    count = int(match.group(1) or 1)
    if unit is None or count < 1:
        return None
    for small, size, big in _TIMEFRAME_STEPS:
        if unit == small and count % size == 0:
            count, unit = count // size, big
    return f"{count}{unit}"


def _dec(name: str, precision: int, scale: int, *, nullable: bool = False) -> Column:
    return Column(name, "decimal", nullable=nullable, precision=precision, scale=scale)


def _price(name: str) -> Column:
    return Column(name, "decimal", precision=PRICE_DIGITS + DEFAULT_PRICE_SCALE, scale=DEFAULT_PRICE_SCALE, price=True)


def _ts(name: str) -> Column:
    return Column(name, "timestamp")


def _int(name: str) -> Column:
    return Column(name, "bigint")


@dataclass(frozen=True)
class TableSpec:
    """A table declaration: columns, natural key, time column and extra indexes.

    ``columns`` are the ones users write and read. Every table also carries the seed's
    ``id`` (a BIGSERIAL, no longer the primary key) and ``created_at`` columns, which the
    server fills in.
    """

    key: TableKey
    config_key: str  # the key of this table in the seed's [TABLES] section
    default_name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    time_column: str | None  # range-partition column, None for an unpartitioned table
    indexes: tuple[tuple[str, ...], ...] = field(default=())
    # Sanity checks that real vendor data violates: warnings unless strict=True.
    soft_checks: tuple[tuple[str, str, str], ...] = field(default=())  # (column, op, column)
    # Columns that must not be negative (a hard error: no real feed has negative volume).
    non_negative: tuple[str, ...] = field(default=())
    # The sealed tier (docs/schema.md, "Two tiers"): sealed periods live in the
    # companion table ``<name>_chunks``, one compressed chunk per ``chunk_by`` key and
    # ``chunk_period``. Empty: the table is never sealed.
    chunk_by: tuple[str, ...] = field(default=())
    chunk_period: ChunkPeriod = "month"

    @cached_property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def value_columns(self) -> tuple[str, ...]:
        """Columns updated on conflict: everything outside the natural key."""
        return tuple(n for n in self.column_names if n not in self.primary_key)

    @property
    def sealable(self) -> bool:
        """True when sealed periods of this table can live in its chunk table."""
        return bool(self.chunk_by)

    @property
    def chunk_columns(self) -> tuple[str, ...]:
        """The columns a chunk's payload holds: all but the chunk key (stored once per chunk)."""
        return tuple(n for n in self.column_names if n not in self.chunk_by)

    @property
    def partitioned(self) -> bool:
        return self.time_column is not None

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema a validated batch has, column for column."""
        return self._arrow_schema

    @cached_property
    def _arrow_schema(self) -> pa.Schema:  # built once: every write asks for it (~40 us each time)
        return pa.schema([pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in self.columns])

    def chunk_schema(self) -> pa.Schema:
        """The Arrow schema of a sealed chunk's payload: :attr:`chunk_columns` as declared."""
        return self._chunk_schema

    @cached_property
    def _chunk_schema(self) -> pa.Schema:  # built once: a restatement of 10 chunks asked ~60 times (7 us each)
        return pa.schema([self._arrow_schema.field(n) for n in self.chunk_columns])

    def read_schema(self, *, exact: bool = False) -> pa.Schema:
        """The Arrow schema range readers return (without the server-filled columns)."""
        return pa.schema([pa.field(c.name, c.read_type(exact=exact)) for c in self.columns])

    @cached_property
    def price_columns(self) -> tuple[str, ...]:
        """The columns whose scale is the schema's ``price_scale``."""
        return tuple(c.name for c in self.columns if c.price)

    @property
    def price_scale(self) -> int | None:
        """The scale of this declaration's price columns (None: the table has none)."""
        return self.column(self.price_columns[0]).scale if self.price_columns else None

    def with_price_scale(self, scale: int) -> TableSpec:
        """This declaration with its price columns at ``scale``: NUMERIC(8 + scale, scale).

        The one place a declaration's price type changes; everything derived from a spec
        (DDL, validation, exact reads, sealed payloads) follows. Use :func:`table_spec`
        (``price_scale=``), which builds each scaled declaration once.

        >>> TABLES["market_data"].with_price_scale(4).column("close").pg_type
        'NUMERIC(12,4)'
        """
        if self.price_scale in (None, scale):
            return self
        if scale not in PRICE_SCALES:
            raise UsageError(f"price_scale must be between {PRICE_SCALES[0]} and {PRICE_SCALES[-1]}, got {scale!r}",
                             table=self.key, value=scale)
        columns = tuple(dataclasses.replace(c, precision=PRICE_DIGITS + scale, scale=scale) if c.price else c
                        for c in self.columns)
        return dataclasses.replace(self, columns=columns)


GENERATED_COLUMNS = ("id", "created_at")

# Option types are stored as NSE's CE/PE; these spellings (any case) are accepted on write.
OPTION_TYPES: dict[str, str] = {
    "CE": "CE", "C": "CE", "CALL": "CE", "CALLS": "CE",
    "PE": "PE", "P": "PE", "PUT": "PE", "PUTS": "PE",
}

_OHLC_SOFT_CHECKS = (("low", "<=", "high"), ("low", "<=", "open"), ("low", "<=", "close"),
                     ("open", "<=", "high"), ("close", "<=", "high"))

TABLES: dict[TableKey, TableSpec] = {
    "market_data": TableSpec(
        key="market_data",
        config_key="market_data",
        default_name="market_data",
        columns=(
            _text("symbol", 20),
            _ts("timestamp"),
            _price("open"),
            _price("high"),
            _price("low"),
            _price("close"),
            _int("volume"),
            _timeframe(),
        ),
        primary_key=("symbol", "timeframe", "timestamp"),
        time_column="timestamp",
        chunk_by=("symbol", "timeframe"),
        soft_checks=_OHLC_SOFT_CHECKS,
        non_negative=("volume",),
    ),
    "options_data": TableSpec(
        key="options_data",
        config_key="options_data",
        default_name="options_data",
        columns=(
            _text("symbol", 20),
            Column("expiry_date", "date"),
            # A price too: quoted in the underlying's units (an FX option's 1.0850), and part
            # of the key, so coarser than the prices it would merge distinct contracts.
            _price("strike_price"),
            _text("option_type", 4, aliases=OPTION_TYPES),
            _ts("timestamp"),
            _price("open"),
            _price("high"),
            _price("low"),
            _price("close"),
            _int("volume"),
            _int("open_interest"),
            _dec("implied_volatility", 10, 4, nullable=True),
            _dec("delta", 10, 4, nullable=True),
            _dec("gamma", 10, 4, nullable=True),
            _dec("theta", 10, 4, nullable=True),
            _dec("vega", 10, 4, nullable=True),
        ),
        primary_key=("symbol", "expiry_date", "strike_price", "option_type", "timestamp"),
        time_column="timestamp",
        chunk_by=("symbol", "expiry_date"),
        # Range reads by symbol and time, and chain snapshots, scan this index.
        indexes=(("symbol", "timestamp"),),
        soft_checks=_OHLC_SOFT_CHECKS,
        non_negative=("volume", "open_interest"),
    ),
    "market_regimes": TableSpec(
        key="market_regimes",
        config_key="market_regimes",
        default_name="market_regimes",
        columns=(
            _text("symbol", 20),
            _ts("timestamp"),
            _timeframe(),
            _text("regime", 50),
            _dec("confidence", 5, 2),
            _dec("dte_value", 10, 4, nullable=True),
            _dec("atr_value", 10, 4, nullable=True),
            _dec("ema_value", 10, 4, nullable=True),
            _dec("volume_value", 10, 4, nullable=True),
            _dec("vwap_value", 10, 4, nullable=True),
            _dec("greek_sentiment", 10, 4, nullable=True),
            _dec("iv_value", 10, 4, nullable=True),
            _dec("premium_value", 10, 4, nullable=True),
            _dec("oi_trend_value", 10, 4, nullable=True),
        ),
        primary_key=("symbol", "timeframe", "timestamp"),
        time_column="timestamp",
        chunk_by=("symbol", "timeframe"),
    ),
    "market_regimes_1min": TableSpec(
        key="market_regimes_1min",
        config_key="1min_market_regimes",
        default_name="market_regimes_1min",
        columns=(
            _text("symbol", 20),
            _ts("timestamp"),
            _text("regime", 50),
            _dec("confidence", 5, 2),
            _dec("directional_component", 10, 4, nullable=True),
            _dec("volatility_component", 10, 4, nullable=True),
            _dec("directional_confidence", 5, 2, nullable=True),
            _dec("volatility_confidence", 5, 2, nullable=True),
            _text("greek_sentiment", 50, nullable=True),
            _text("trending_oi_pa", 50, nullable=True),
            _dec("ema_signal", 10, 4, nullable=True),
            _dec("vwap_signal", 10, 4, nullable=True),
        ),
        primary_key=("symbol", "timestamp"),
        time_column="timestamp",
        chunk_by=("symbol",),
    ),
    "optimization_results": TableSpec(
        key="optimization_results",
        config_key="optimization_results",
        default_name="optimization_results",
        columns=(
            _text("symbol", 20),
            _text("algorithm", 50),
            Column("parameters", "json"),
            _dec("fitness_value", 10, 4),
            _ts("start_date"),
            _ts("end_date"),
            _timeframe(),
            # The seed has no natural key here; a content hash (or a caller-given run id)
            # makes a retried save after a lost acknowledgement a no-op instead of a duplicate.
            _text("run_id", 64, computed=True),
        ),
        primary_key=("symbol", "run_id"),
        time_column=None,
        indexes=(("symbol", "algorithm", "fitness_value"),),
    ),
}

# The seed's [TABLES] keys, mapped to our table keys.
CONFIG_KEYS: dict[str, TableKey] = {spec.config_key: key for key, spec in TABLES.items()}

# Short names every method and CLI command accepts, besides the table keys and the seed's
# [TABLES] keys. One map: the CLI and the library resolve names through table_spec().
TABLE_ALIASES: dict[str, TableKey] = {
    "bars": "market_data",
    "options": "options_data",
    "regimes": "market_regimes",
    "1min": "market_regimes_1min",
    "results": "optimization_results",
}


def table_spec(name: str, *, price_scale: int = DEFAULT_PRICE_SCALE) -> TableSpec:
    """Look a table up by its key, its seed config key or a short alias.

    ``price_scale``: the scale of the price columns (the schema's; a
    :class:`~regime_io.database.Database` passes its own with ``db.spec(name)``).

    Raises:
        UsageError: an unknown name (the message lists the accepted ones).

    >>> table_spec("1min_market_regimes").key
    'market_regimes_1min'
    >>> table_spec("bars").key
    'market_data'
    """

    key = _table_key(name)
    return TABLES[key] if price_scale == DEFAULT_PRICE_SCALE else _scaled(key, price_scale)


@cache
def _scaled(key: TableKey, price_scale: int) -> TableSpec:
    # One object per (table, scale): specs cache their Arrow schemas, which every write asks for.
    return TABLES[key].with_price_scale(price_scale)


def _table_key(name: str) -> TableKey:
    if isinstance(name, str):
        if name in TABLES:
            return name  # type: ignore[return-value]
        if name in CONFIG_KEYS:
            return CONFIG_KEYS[name]
        if name in TABLE_ALIASES:
            return TABLE_ALIASES[name]
    allowed = ", ".join([*TABLES, *(f"{a} ({k})" for a, k in TABLE_ALIASES.items())])
    raise UsageError(f"unknown table {name!r}; allowed: {allowed}", table=str(name), value=name)


REGIME_TABLES: tuple[TableKey, ...] = ("market_regimes_1min", "market_regimes")


def regime_spec(name: str) -> TableSpec:
    """A regime table by any name :func:`table_spec` accepts (``"1min"``, ``"regimes"``, ...).

    >>> regime_spec("1min").key
    'market_regimes_1min'
    """

    spec = table_spec(name)
    if spec.key not in REGIME_TABLES:
        raise UsageError(f"table {name!r} is not a regime table; allowed: '1min' (market_regimes_1min), "
                         "'regimes' (market_regimes)", table=spec.key, value=name)
    return spec
