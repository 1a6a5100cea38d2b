"""Small helpers shared by several test modules."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from regime_io.config import Settings


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``check``: a backend leaves pg_stat_activity shortly after its client closes."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def write_seed_ini(path: Path, server_settings: Settings, *, schema: str, password: str) -> Path:
    """The seed's INI format, pointing at the test server (a socket directory or a host)."""
    s = server_settings
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "[DATABASE]\n"
        "enabled = true\n"
        f"host = {s.host}\n"
        f"port = {s.port}\n"
        f"database = {s.database}\n"
        f"user = {s.user}\n"
        f"password = {password}\n"
        f"schema = {schema}\n"
        "table_prefix = mr_\n\n"
        "[TABLES]\n"
        "market_data = market_data\n"
        "options_data = options_data\n"
        "market_regimes = market_regimes\n"
        "1min_market_regimes = market_regimes_1min\n"
        "optimization_results = optimization_results\n\n"
        "[CONNECTION]\n"
        "max_connections = 5\n"
        "connection_timeout = 30\n"
        "retry_attempts = 3\n"
        "retry_delay = 5\n"
    )
    return path
