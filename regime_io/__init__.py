"""regime_io: market history in PostgreSQL, back as columnar frames.

Example:
    >>> from regime_io import PostgreSQLIntegration
    >>> pg = PostgreSQLIntegration()          # doctest: +SKIP  (embedded server)
"""

from __future__ import annotations

from ._conn.database import Database
from ._read.tail import Tail, TailBatch
from ._schema.maintenance import CleanupReport, TableCleanup
from ._tiers.sealing import SealedPeriod, SealReport
from ._write.transaction import WriteResult
from ._write.validate import DataQualityWarning
from .config import Secret, Settings, load_settings
from .errors import (
    CalendarMismatchWarning,
    ConfigError,
    PoolClosedError,
    PoolTimeoutError,
    ReadError,
    RegimeIOError,
    SchemaError,
    ServerError,
    ServerUnavailableError,
    UnknownSymbolWarning,
    UnknownTimeframeWarning,
    UsageError,
    ValidationError,
    WriteError,
)
from .integration import PostgreSQLIntegration
from .plots import plot_price_with_regimes, plot_regime_distribution, plot_transition_matrix
from .tables import TABLES, Column, TableSpec

__version__ = "0.1.0"

__all__ = [
    "TABLES",
    "CalendarMismatchWarning",
    "CleanupReport",
    "Column",
    "ConfigError",
    "DataQualityWarning",
    "Database",
    "PoolClosedError",
    "PoolTimeoutError",
    "PostgreSQLIntegration",
    "ReadError",
    "RegimeIOError",
    "SchemaError",
    "SealReport",
    "SealedPeriod",
    "Secret",
    "ServerError",
    "ServerUnavailableError",
    "Settings",
    "TableCleanup",
    "TableSpec",
    "Tail",
    "TailBatch",
    "UnknownSymbolWarning",
    "UnknownTimeframeWarning",
    "UsageError",
    "ValidationError",
    "WriteError",
    "WriteResult",
    "__version__",
    "load_settings",
    "plot_price_with_regimes",
    "plot_regime_distribution",
    "plot_transition_matrix",
]
