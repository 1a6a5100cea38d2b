"""Configuration: one frozen, typed object from the seed's INI file, its dict, or the environment.

Precedence, lowest first: defaults < INI file or dict < ``REGIME_IO_*`` environment variables.
With nothing configured (no host, no DSN) regime_io runs on the embedded server.

Example:
    >>> s = load_settings(config={"database": {"host": "db.example", "password": "pw"}}, env={})
    >>> s.host, s.port, str(s.password)
    ('db.example', 5432, '***')
"""

from __future__ import annotations

import configparser
import dataclasses
import datetime as dt
import logging
import math
import os
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlencode, urlsplit

from .errors import ConfigError
from .tables import CONFIG_KEYS, DEFAULT_PRICE_SCALE, PRICE_SCALES, TABLES, TableKey, price_type
from .types import SymbolCase

__all__ = ["PartitionInterval", "Secret", "Settings", "load_settings", "with_dsn"]

log = logging.getLogger(__name__)

PartitionInterval = Literal["day", "week", "month", "year"]
# What sits between the client and PostgreSQL ([CONNECTION] pooler): "none" (direct) or
# "session" (a pooler in session mode: the same as direct) change nothing; "transaction"
# (PgBouncer pool_mode = transaction) turns off what needs a session (docs/configuration.md).
Pooler = Literal["none", "session", "transaction"]

ENV_PREFIX = "REGIME_IO_"
# Environment variables with this prefix are not configuration (the test suite's DSN etc.).
_ENV_IGNORED = ("REGIME_IO_TEST_", "REGIME_IO_CONFIG", "REGIME_IO_BENCH_")

# libpq options passed through untouched from [DATABASE] (or a DSN's query string).
LIBPQ_OPTIONS = frozenset({
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "sslpassword", "channel_binding",
    "gssencmode", "application_name", "target_session_attrs", "keepalives", "keepalives_idle",
    "keepalives_interval", "keepalives_count", "options", "requiressl", "sslcompression",
})
# libpq options that are secrets: masked in repr, redacted URLs and scrubbed from errors.
SECRET_OPTIONS = frozenset({"sslpassword"})


class Secret:
    """A string that never prints: ``str()`` and ``repr()`` give ``***``.

    >>> s = Secret("hunter2")
    >>> s, str(s), s.get()
    (Secret('***'), '***', 'hunter2')
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        """The secret value, for the one place that needs it (the connection string)."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"


@dataclass(frozen=True)
class Settings:
    """Validated configuration. Build it with :func:`load_settings`."""

    enabled: bool = True
    host: str | None = None  # None: the embedded server; a path: a Unix-socket directory
    port: int = 5432
    database: str = "postgres"
    user: str = "postgres"
    password: Secret = field(default_factory=lambda: Secret(""))
    schema: str = "public"
    table_prefix: str = "mr_"
    table_names: Mapping[TableKey, str] = field(
        default_factory=lambda: {k: t.default_name for k, t in TABLES.items()}
    )
    libpq_options: Mapping[str, str] = field(default_factory=dict)
    storage_timezone: str = "UTC"
    # Decimals of the price columns, NUMERIC(8 + price_scale, price_scale) (regime_io.tables):
    # applied by initialize_database and recorded in the schema, whose scale readers use.
    price_scale: int = DEFAULT_PRICE_SCALE
    # How symbols are spelled on every path: "upper" (strip + upper-case) or "keep" (strip).
    symbol_case: SymbolCase = "upper"
    # The exchange calendar of resampling sessions and quality reports ([DATABASE] calendar),
    # and the calendars of symbols that trade elsewhere ([DATABASE] calendars = AAPL:XNYS).
    calendar: str = "XNSE"
    calendars: Mapping[str, str] = field(default_factory=dict)
    partition_interval: PartitionInterval = "month"
    # Periods (calendar months) entirely older than this are sealed into the sealed tier
    # by seal() / `regime-io seal` when no older_than is given; None: off.
    seal_after: dt.timedelta | None = dt.timedelta(days=60)
    embedded_dir: str | None = None
    citus: bool = False
    max_connections: int = 5
    connection_timeout: float = 30.0
    retry_attempts: int = 3
    retry_delay: float = 5.0
    # Connections idle longer than this are pinged before being handed out.
    health_check_interval: float = 0.5
    read_replicas: tuple[Secret, ...] = ()
    read_your_writes: bool = False
    pooler: Pooler = "none"
    retention_days: Mapping[TableKey, int] = field(default_factory=dict)
    rolling_window_minutes: int | None = None
    # Tables whose upserts keep the superseded version of a changed row (knowledge time,
    # docs/history.md); [DATABASE] history_tables.
    history_tables: tuple[TableKey, ...] = ("market_regimes", "market_regimes_1min", "optimization_results")
    # Superseded versions whose knowledge interval ended more than this many days ago are
    # dropped by cleanup_old_data(); None keeps them ([RETENTION] history_days).
    history_days: int | None = None
    source: str = "defaults"

    def __repr__(self) -> str:
        fields = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "libpq_options":
                value = {k: ("***" if k in SECRET_OPTIONS else v) for k, v in value.items()}
            fields.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(fields)})"

    @property
    def embedded(self) -> bool:
        """True when no server is configured and the embedded one is used."""
        return self.host is None

    def table_name(self, key: TableKey) -> str:
        """The physical (unqualified) table name: prefix + configured name."""
        return f"{self.table_prefix}{self.table_names[key]}"

    def url(self, *, redact: bool = True, with_timeout: bool = True) -> str:
        """A ``postgresql://`` URL for libpq, ADBC and connectorx.

        User and password are percent-encoded (a ``#`` or ``@`` in a password breaks
        unencoded URLs). A Unix-socket directory travels in the ``host`` query parameter.
        The password shows as ``***`` unless ``redact=False``.
        """
        if self.host is None:
            raise ConfigError(["no server resolved yet (embedded server not started)"])
        auth = quote(self.user, safe="")
        if self.password:
            # The redacted form stays readable (``***``), the real one is percent-encoded.
            auth += ":" + ("***" if redact else quote(self.password.get(), safe=""))
        query: dict[str, str] = {}
        if self.host.startswith("/"):
            netloc = f"{auth}@localhost:{self.port}"
            query["host"] = self.host
        else:
            host = f"[{self.host}]" if ":" in self.host else self.host
            netloc = f"{auth}@{host}:{self.port}"
        if with_timeout:
            # libpq takes whole seconds and treats anything under 2 as 2.
            query["connect_timeout"] = str(max(2, math.ceil(self.connection_timeout)))
        for key, value in self.libpq_options.items():
            query[key] = "***" if (redact and key in SECRET_OPTIONS) else value
        # quote, not quote_plus: libpq decodes %20 but leaves '+' as it is.
        qs = ("?" + urlencode(query, safe="/*", quote_via=quote)) if query else ""
        return f"postgresql://{netloc}/{quote(self.database, safe='')}{qs}"

    def redact(self, text: str) -> str:
        """Remove this configuration's password (raw and URL-encoded) from ``text``."""
        secrets = [self.password.get(), *(v for k, v in self.libpq_options.items() if k in SECRET_OPTIONS)]
        for replica in self.read_replicas:
            secrets.append(replica.get())
            replica_password = parse_dsn(replica.get(), Collector()).get("password")
            if replica_password:
                secrets.append(str(replica_password))
        # Longest first, so a password that contains another is removed whole.
        for secret in sorted(set(secrets), key=len, reverse=True):
            if not secret:
                continue
            for form in sorted({secret, quote(secret, safe=""), quote(secret), quote_plus(secret)},
                               key=len, reverse=True):
                text = text.replace(form, "***")
        return text

    def describe(self) -> str:
        """One line for logs and the CLI, never with the password."""
        where = "embedded server" if self.embedded else f"{self.host}:{self.port}"
        return f"{where} database={self.database!r} user={self.user!r} schema={self.schema!r}"


# ---------------------------------------------------------------------------------------
# Parsing

_DATABASE_KEYS = {
    "enabled", "host", "port", "database", "user", "password", "schema", "table_prefix",
    "dsn", "storage_timezone", "partition_interval", "embedded_dir", "citus", "seal_after",
    "history_tables", "symbol_case", "calendar", "calendars", "price_scale",
} | LIBPQ_OPTIONS
_CONNECTION_KEYS = {
    "max_connections", "connection_timeout", "retry_attempts", "retry_delay",
    "health_check_interval", "read_replicas", "read_your_writes", "pooler",
}
_RETENTION_KEYS = set(CONFIG_KEYS) | set(TABLES) | {"rolling_window_minutes", "history_days"}
_SECTIONS: dict[str, set[str]] = {
    "database": _DATABASE_KEYS,
    "tables": set(CONFIG_KEYS) | set(TABLES),
    "connection": _CONNECTION_KEYS,
    "retention": _RETENTION_KEYS,
}
# What a DSN names. A DSN in a higher layer replaces all of these from lower layers, so an
# environment DSN never inherits, say, the file's password.
_ADDRESS_KEYS = frozenset({"host", "port", "database", "user", "password"}) | LIBPQ_OPTIONS
# Keys a DSN may carry (its query string or key=value pairs); connect_timeout maps to
# [CONNECTION] connection_timeout.
_DSN_KEYS = _ADDRESS_KEYS | {"connect_timeout"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# The version table shares the schema and prefix with the five tables.
_RESERVED_TABLE_NAMES = frozenset({"schema_version"})
_PREFIX_CHARS = re.compile(r"^[A-Za-z0-9_]*$")

_Sections = dict[str, dict[str, Any]]


class Collector:
    """Gathers every problem so one ConfigError can list them all."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, problem: str) -> None:
        self.problems.append(problem)

    def boolean(self, key: str, value: Any) -> bool | None:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        self.add(f"{key}: expected true or false, got {value!r}")
        return None

    def integer(self, key: str, value: Any, *, minimum: int, maximum: int | None = None,
                hint: str = "") -> int | None:
        """``value`` as a whole number in range; ``hint`` ends a problem's line."""
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            number = int(str(value).strip()) if not isinstance(value, (int, float)) else int(value)
        except ValueError:
            self.add(f"{key}: expected a whole number, got {value!r}{hint}")
            return None
        if number < minimum or (maximum is not None and number > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            self.add(f"{key}: must be {bound}, got {number}{hint}")
            return None
        return number

    def number(self, key: str, value: Any, *, minimum: float, exclusive: bool = False) -> float | None:
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(str(value).strip())
        except ValueError:
            self.add(f"{key}: expected a number, got {value!r}")
            return None
        if not math.isfinite(number) or number < minimum or (exclusive and number == minimum):
            op = ">" if exclusive else ">="
            self.add(f"{key}: must be {op} {minimum:g}, got {value!r}")
            return None
        return number

    def identifier(self, key: str, value: Any) -> str | None:
        # Folded to lower case, as PostgreSQL folds the seed's unquoted names: "Public"
        # in a seed config meant the schema public.
        text = str(value).strip()
        if identifier_problem(text.lower()):
            self.add(f"{key}: {identifier_problem(text)}")
            return None
        return text.lower()


def _normalise(raw: Mapping[str, Any], col: Collector) -> _Sections:
    """Lower-case section and key names; report unknown ones. None values count as unset."""
    out: _Sections = {name: {} for name in _SECTIONS}
    for section, values in raw.items():
        name = str(section).strip().lower()
        if name not in _SECTIONS:
            col.add(f"unknown section [{section}]; allowed: {', '.join(s.upper() for s in _SECTIONS)}")
            continue
        if not isinstance(values, Mapping):
            col.add(f"section [{section}] must be a mapping of keys to values, got {type(values).__name__}")
            continue
        for key, value in values.items():
            k = str(key).strip().lower()
            if k not in _SECTIONS[name]:
                col.add(f"unknown key {key!r} in [{name.upper()}]; allowed: {', '.join(sorted(_SECTIONS[name]))}")
                continue
            if value is not None:
                out[name][k] = value
    return out


def _ini_error(err: configparser.Error) -> str:
    """Describe an INI syntax error by line number only: configparser quotes whole lines,
    and the offending line may hold the password."""
    if isinstance(err, configparser.MissingSectionHeaderError):
        return f"line {err.lineno}: a key before the first [SECTION] header"
    if isinstance(err, configparser.DuplicateOptionError):
        return f"line {err.lineno}: key {err.option!r} appears twice in [{err.section}]"
    if isinstance(err, configparser.DuplicateSectionError):
        return f"line {err.lineno}: section [{err.section}] appears twice"
    if isinstance(err, configparser.ParsingError):
        lines = ", ".join(str(lineno) for lineno, _ in err.errors)
        return f"line(s) {lines}: expected 'key = value'"
    return f"cannot parse ({type(err).__name__})"


def _read_ini(path: Path) -> dict[str, dict[str, Any]]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with path.open(encoding="utf-8") as fh:
            parser.read_file(fh)
    except FileNotFoundError:
        raise ConfigError([f"config file {str(path)!r} does not exist"], source=str(path)) from None
    except IsADirectoryError:
        raise ConfigError([f"config file {str(path)!r} is a directory"], source=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError(["cannot parse: the file is not UTF-8 text"], source=str(path)) from None
    except configparser.Error as err:
        raise ConfigError([_ini_error(err)], source=str(path)) from None
    return {section: dict(parser.items(section)) for section in parser.sections()}


def _split_hostport(hostport: str, col: Collector) -> tuple[str | None, str | None]:
    """``host:port``, ``[v6]:port`` or ``%2Fsocket%2Fdir`` -> (host, port); no lower-casing
    (a socket directory is a case-sensitive path)."""
    if not hostport:
        return None, None
    if "," in hostport:
        col.add("dsn: several hosts in one DSN are not supported; name one host")
        return None, None
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
        return host, port or None
    host, sep, port = hostport.rpartition(":")
    if not sep:
        return unquote(hostport), None
    return unquote(host), port or None


def parse_dsn(dsn: str, col: Collector) -> dict[str, Any]:
    """Split a ``postgresql://`` URL or a ``key=value`` DSN into [DATABASE] keys.

    Problems never quote the DSN: it may hold a password.
    """
    out: dict[str, Any] = {}
    dsn = dsn.strip()
    if "://" in dsn:
        parts = urlsplit(dsn)
        if parts.scheme not in ("postgresql", "postgres"):
            col.add(f"dsn: scheme must be postgresql://, got {parts.scheme + '://'!r}")
            return out
        if parts.fragment or "#" in parts.netloc:
            col.add("dsn: contains '#'; percent-encode it (%23) in the password")
            return out
        userinfo, _, hostport = parts.netloc.rpartition("@")
        if userinfo:
            user, has_password, password = userinfo.partition(":")
            if user:
                out["user"] = unquote(user)
            if has_password:
                out["password"] = unquote(password)
        host, port = _split_hostport(hostport, col)
        if host:
            out["host"] = host
        if port is not None:
            if not port.isdigit():
                col.add("dsn: the port is not a number; percent-encode special characters "
                        "(@ # : / ? %) in the user name and password")
                return {}
            out["port"] = int(port)
        if parts.path.strip("/"):
            out["database"] = unquote(parts.path.strip("/"))
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            out[{"dbname": "database"}.get(key, key)] = value
    else:
        for match in re.finditer(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", dsn):
            key, value = match.group(1), match.group(2)
            if value.startswith("'"):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            out[{"dbname": "database"}.get(key, key)] = value
        if not out:
            col.add("dsn: expected postgresql://user:password@host:port/database or key=value pairs")
    for key in list(out):
        if key not in _DSN_KEYS:
            col.add(f"dsn: unsupported parameter {key!r}; allowed: {', '.join(sorted(_DSN_KEYS))}")
            del out[key]
    return out


def _expand_dsn(layer: _Sections, col: Collector) -> bool:
    """Replace a layer's ``dsn`` by the keys it names (the layer's explicit keys win).

    Returns True when the layer had a DSN.
    """
    dsn = layer["database"].pop("dsn", None)
    if dsn is None or str(dsn).strip() == "":
        return False
    parsed = parse_dsn(str(dsn), col)
    timeout = parsed.pop("connect_timeout", None)
    if timeout is not None:
        layer["connection"].setdefault("connection_timeout", timeout)
    for key, value in parsed.items():
        layer["database"].setdefault(key, value)
    return True


def _from_env(env: Mapping[str, str]) -> tuple[_Sections, dict[str, str]]:
    """``REGIME_IO_<KEY>`` variables as a layer, and which variable set each key."""
    out: _Sections = {name: {} for name in _SECTIONS}
    names: dict[str, str] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name.startswith(_ENV_IGNORED):
            continue
        key = name[len(ENV_PREFIX):].lower()
        if key in _DATABASE_KEYS:
            out["database"][key] = value
        elif key in _CONNECTION_KEYS:
            out["connection"][key] = value
        else:
            log.warning("ignoring unknown environment variable %s", name)
            continue
        names[key] = name
    return out, names


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    config: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build validated :class:`Settings` from an INI file or a dict, then the environment.

    Parameters:
        config_file: the seed's INI file (``[DATABASE]``, ``[TABLES]``, ``[CONNECTION]``).
            ``REGIME_IO_CONFIG`` names one when this is None.
        config: the seed's configuration dict, same shape (lower-case section names).
        env: environment to read ``REGIME_IO_*`` overrides from (default ``os.environ``).

    Raises:
        ConfigError: listing every problem found, never only the first.

    Example:
        >>> load_settings(config={"database": {"port": "x", "schema": "a b"}}, env={})
        Traceback (most recent call last):
        ...
        regime_io.errors.ConfigError: invalid configuration in dict (2 problems):
          - port: expected a whole number, got 'x'
          - schema: 'a b' is not a plain SQL name (letters, digits and _, not starting with a digit)
    """
    env = os.environ if env is None else env
    col = Collector()
    if config_file is not None and config is not None:
        raise ConfigError(["pass config_file or config, not both"])
    if config_file is None and config is None and env.get("REGIME_IO_CONFIG"):
        config_file = env["REGIME_IO_CONFIG"]
    raw: Mapping[str, Any]
    if config_file is not None:
        source = str(config_file)
        raw = _read_ini(Path(config_file))
    elif config is not None:
        if not isinstance(config, Mapping):
            raise ConfigError([f"config must be a dict, got {type(config).__name__}"])
        source, raw = "dict", config
    else:
        source, raw = "defaults", {}
    sections = _normalise(raw, col)
    _expand_dsn(sections, col)
    env_layer, env_names = _from_env(env)
    if _expand_dsn(env_layer, col):
        # An environment DSN is a whole address: nothing of the file's address survives.
        for key in _ADDRESS_KEYS:
            sections["database"].pop(key, None)
    if env_names:
        source += " + environment"
    for name, values in env_layer.items():
        sections[name].update(values)
    settings = _build(sections, col, source, env_names)
    if col.problems:
        raise ConfigError(col.problems, source=source)
    assert settings is not None
    return settings


def _build(sections: _Sections, col: Collector, source: str, env_names: Mapping[str, str]) -> Settings | None:
    db = sections["database"]
    conn = sections["connection"]
    kw: dict[str, Any] = {"source": source}

    def lab(key: str) -> str:
        """The key as problems name it, with the variable it came from."""
        return f"{key} ({env_names[key]})" if key in env_names else key

    if "enabled" in db:
        kw["enabled"] = col.boolean(lab("enabled"), db["enabled"])
    host = db.get("host")
    if host is not None:
        host = str(host).strip()
        kw["host"] = None if host.lower() in ("", "embedded") else host
    if "port" in db:
        kw["port"] = col.integer(lab("port"), db["port"], minimum=1, maximum=65535)
    for key in ("database", "user"):
        if key in db:
            value = str(db[key]).strip()
            if not value:
                col.add(f"{lab(key)}: must not be empty")
            kw[key] = value
    if "password" in db:
        kw["password"] = Secret(str(db["password"]))
    if "schema" in db:
        kw["schema"] = col.identifier(lab("schema"), db["schema"])
    prefix = "mr_"
    if "table_prefix" in db:
        # Empty (no prefix) or a plain name: the prefix starts every table name.
        raw_prefix = str(db["table_prefix"]).strip()
        checked = col.identifier(lab("table_prefix"), raw_prefix) if raw_prefix else ""
        prefix = checked if checked is not None else ""
        kw["table_prefix"] = prefix
    if "storage_timezone" in db:
        tz = str(db["storage_timezone"]).strip()
        try:
            zoneinfo.ZoneInfo(tz)
            kw["storage_timezone"] = tz
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            col.add(f"{lab('storage_timezone')}: unknown time zone {tz!r} "
                    "(use an IANA name such as 'UTC' or 'Asia/Kolkata')")
    if "price_scale" in db:
        kw["price_scale"] = col.integer(
            lab("price_scale"), db["price_scale"], minimum=PRICE_SCALES[0], maximum=PRICE_SCALES[-1],
            hint=f" (the decimals of the price columns, NUMERIC(8 + price_scale, price_scale); default "
                 f"{DEFAULT_PRICE_SCALE}, {price_type(DEFAULT_PRICE_SCALE)})")
    if "symbol_case" in db:
        value = str(db["symbol_case"]).strip().lower()
        cases = get_args(SymbolCase)
        if value not in cases:
            col.add(f"{lab('symbol_case')}: must be one of {', '.join(cases)}, got {db['symbol_case']!r}")
        kw["symbol_case"] = value
    if "calendar" in db:
        kw["calendar"] = _calendar_name(db["calendar"], lab("calendar"), col)
    if "calendars" in db:
        kw["calendars"] = _calendar_map(db["calendars"], lab("calendars"), col,
                                        kw.get("symbol_case") or "upper")
    if "partition_interval" in db:
        value = str(db["partition_interval"]).strip().lower()
        allowed = get_args(PartitionInterval)
        if value not in allowed:
            col.add(f"{lab('partition_interval')}: must be one of {', '.join(allowed)}, got {value!r}")
        kw["partition_interval"] = value
    if "seal_after" in db:
        try:
            kw["seal_after"] = parse_age(db["seal_after"], name=lab("seal_after"), allow_off=True)
        except ValueError as err:
            col.add(str(err))
    if "embedded_dir" in db:
        directory = str(db["embedded_dir"]).strip()
        kw["embedded_dir"] = str(Path(directory).expanduser()) if directory else None
    if "citus" in db:
        kw["citus"] = col.boolean(lab("citus"), db["citus"])
    if "history_tables" in db:
        kw["history_tables"] = _history_tables(db["history_tables"], lab("history_tables"), col)
    kw["libpq_options"] = {k: str(v) for k, v in db.items() if k in LIBPQ_OPTIONS}

    names: dict[TableKey, str] = {k: t.default_name for k, t in TABLES.items()}
    for key, value in sections["tables"].items():
        table = CONFIG_KEYS.get(key) or _table_key(key)
        name = str(value).strip().lower()
        if not name or not _PREFIX_CHARS.match(name):
            col.add(f"tables.{key}: {value!r} is not a plain SQL name (letters, digits and _)")
            continue
        names[table] = name
    kw["table_names"] = names
    full_names = {table: prefix + name for table, name in names.items()}
    for table, full in full_names.items():
        if full[:1].isdigit():
            col.add(f"tables.{table}: {full!r} starts with a digit; use a table_prefix or another name")
        # Partition names append "_pYYYY_MM_DD" (12 characters); keep them under the 63 limit.
        if len(full) > 50:
            col.add(f"tables.{table}: {full!r} is too long (50 characters at most with the prefix)")
        if names[table] in _RESERVED_TABLE_NAMES:
            col.add(f"tables.{table}: {names[table]!r} is reserved (the schema version table)")
    if len(set(full_names.values())) != len(full_names):
        col.add("tables: two tables share one name")

    if "max_connections" in conn:
        kw["max_connections"] = col.integer(lab("max_connections"), conn["max_connections"],
                                            minimum=1, maximum=1000)
    if "connection_timeout" in conn:
        kw["connection_timeout"] = col.number(lab("connection_timeout"), conn["connection_timeout"],
                                              minimum=0, exclusive=True)
    if "retry_attempts" in conn:
        kw["retry_attempts"] = col.integer(lab("retry_attempts"), conn["retry_attempts"], minimum=0, maximum=100)
    if "retry_delay" in conn:
        kw["retry_delay"] = col.number(lab("retry_delay"), conn["retry_delay"], minimum=0)
    if "health_check_interval" in conn:
        kw["health_check_interval"] = col.number(lab("health_check_interval"), conn["health_check_interval"],
                                                 minimum=0)
    if "read_replicas" in conn:
        value = conn["read_replicas"]
        items = value if isinstance(value, (list, tuple)) else [v for v in re.split(r"[\s,]+", str(value)) if v]
        for item in items:
            parse_dsn(str(item), col)  # validate only; replicas keep their own DSN
        kw["read_replicas"] = tuple(Secret(str(v)) for v in items)
    if "read_your_writes" in conn:
        kw["read_your_writes"] = col.boolean(lab("read_your_writes"), conn["read_your_writes"])
    if "pooler" in conn:
        value = str(conn["pooler"]).strip().lower()
        allowed = get_args(Pooler)
        if value not in allowed:
            col.add(f"{lab('pooler')}: must be one of {', '.join(allowed)} (transaction: PgBouncer with "
                    f"pool_mode = transaction), got {conn['pooler']!r}")
        kw["pooler"] = value

    retention: dict[TableKey, int] = {}
    for key, value in sections["retention"].items():
        if key == "rolling_window_minutes":
            kw["rolling_window_minutes"] = col.integer(key, value, minimum=1)
            continue
        if key == "history_days":
            kw["history_days"] = col.integer(key, value, minimum=1)
            continue
        days = col.integer(f"retention.{key}", value, minimum=1)
        if days is not None:
            retention[CONFIG_KEYS.get(key) or _table_key(key)] = days
    kw["retention_days"] = retention

    if col.problems:
        return None
    return Settings(**kw)


_AGE = re.compile(r"^\s*(\d+)\s*(d|day|days|w|week|weeks|h|hour|hours)\s*$", re.IGNORECASE)
_AGE_UNITS = {"d": dt.timedelta(days=1), "w": dt.timedelta(weeks=1), "h": dt.timedelta(hours=1)}


def parse_age(value: Any, *, name: str, allow_off: bool = False) -> dt.timedelta | None:
    """``"60 days"``, ``"90d"``, ``"8w"``, ``"12h"`` or a timedelta; ``"off"`` gives None
    when ``allow_off``. Raises ValueError naming ``name``.

    >>> parse_age("90d", name="older_than")
    datetime.timedelta(days=90)
    """
    if isinstance(value, dt.timedelta):
        delta = value
    else:
        text = str(value).strip()
        if allow_off and text.lower() in ("off", "none", "never", "false", ""):
            return None
        match = _AGE.match(text)
        if not match:
            raise ValueError(f"{name}: {value!r} is not an age; use e.g. '60 days', '90d', '8w'"
                             + (" or 'off'" if allow_off else ""))
        delta = int(match.group(1)) * _AGE_UNITS[match.group(2)[0].lower()]
    if delta < dt.timedelta(0):
        raise ValueError(f"{name}: {value!r} must not be negative")
    return delta


def _history_tables(value: Any, label: str, col: Any) -> tuple[TableKey, ...]:
    """``history_tables``: table keys or the seed's names, separated by commas or spaces
    (a list in the dict form); ``none``/``off`` for no table."""
    items = value if isinstance(value, (list, tuple)) else [v for v in re.split(r"[\s,]+", str(value)) if v]
    if len(items) == 1 and str(items[0]).strip().lower() in ("none", "off"):
        return ()
    out: list[TableKey] = []
    for item in items:
        name = str(item).strip().lower()
        key = CONFIG_KEYS.get(name) or (name if name in TABLES else None)
        if key is None:
            col.add(f"{label}: {item!r} is not a table; allowed: {', '.join(TABLES)} (or none)")
            continue
        if key not in out:
            out.append(key)  # type: ignore[arg-type]
    return tuple(out)


# A calendar name as pandas-market-calendars spells them (XNSE, XNYS, CME_Equity, 24/7).
_CALENDAR_NAME = re.compile(r"^[A-Za-z0-9_/.-]+$")
# Built in (no calendars extra needed): the NSE/BSE hours.
_BUILT_IN_CALENDARS = ("XNSE", "NSE", "XBOM", "BSE")


def _calendar_name(value: Any, label: str, col: Any) -> str | None:
    """An exchange calendar name, upper-cased; unknown names are problems when
    pandas-market-calendars is installed (without it, only the built-in NSE/BSE names)."""
    text = str(value).strip().upper()
    if not text or not _CALENDAR_NAME.match(text):
        col.add(f"{label}: {value!r} is not an exchange calendar name; e.g. 'XNSE', 'XNYS', 'XLON'")
        return None
    try:
        import pandas_market_calendars as mcal
    except ImportError:
        known = set(_BUILT_IN_CALENDARS)
        hint = (f"without pandas-market-calendars only {', '.join(_BUILT_IN_CALENDARS)} are built in; "
                "pip install 'regime-io[calendars]'")
    else:
        known = {name.upper() for name in mcal.get_calendar_names()}
        hint = "e.g. 'XNSE', 'XNYS', 'XLON' (pandas_market_calendars.get_calendar_names())"
    if text not in known:
        col.add(f"{label}: unknown calendar {value!r}; {hint}")
        return None
    return text


def _calendar_map(value: Any, label: str, col: Any, case: str) -> dict[str, str]:
    """``calendars``: ``SYMBOL:CALENDAR`` pairs separated by commas or spaces
    (``AAPL:XNYS, VOD:XLON``), or a dict in the dict form; symbols spelled as
    ``symbol_case`` spells them."""
    if isinstance(value, Mapping):
        pairs = [(str(k), v) for k, v in value.items()]
    else:
        items = value if isinstance(value, (list, tuple)) else [v for v in re.split(r"[\s,]+", str(value)) if v]
        pairs = []
        for item in items:
            symbol, sep, name = str(item).partition(":")
            if not sep or not symbol.strip() or not name.strip():
                col.add(f"{label}: {item!r} is not SYMBOL:CALENDAR (e.g. 'AAPL:XNYS, MSFT:XNYS')")
                continue
            pairs.append((symbol, name))
    out: dict[str, str] = {}
    for symbol, name in pairs:
        key = symbol.strip().upper() if case == "upper" else symbol.strip()
        if not key:
            col.add(f"{label}: an empty symbol (calendar {name!r})")
            continue
        calendar = _calendar_name(name, f"{label} ({key})", col)
        if calendar is None:
            continue
        if key in out and out[key] != calendar:
            col.add(f"{label}: {key!r} is given two calendars, {out[key]!r} and {calendar!r}")
            continue
        out[key] = calendar
    return out


def _table_key(key: str) -> TableKey:
    """A [TABLES]/[RETENTION] key that is already a table key (checked by _normalise)."""
    assert key in TABLES
    return key  # type: ignore[return-value]


def settings_replace(settings: Settings, **changes: Any) -> Settings:
    """A copy of ``settings`` with some fields changed (used to point at a resolved server)."""
    return dataclasses.replace(settings, **changes)


def with_dsn(settings: Settings, dsn: str, *, source: str = "dsn") -> Settings:
    """``settings`` pointed at the server of ``dsn``: host, port, database, user, password
    and libpq options come from the DSN (a ``postgresql://`` URL or ``key=value`` pairs),
    everything else (schema, tables, pool, retries) stays.

    Raises:
        ConfigError: the DSN is invalid (``source`` names where it came from, e.g. ``--dsn``).

    >>> base = load_settings(config={"database": {"schema": "research"}}, env={})
    >>> moved = with_dsn(base, "postgresql://alice@db.example:6543/market")
    >>> moved.host, moved.port, moved.database, moved.user, moved.schema
    ('db.example', 6543, 'market', 'alice', 'research')
    """
    try:
        address = load_settings(config={"database": {"dsn": dsn}}, env={})
    except ConfigError as err:
        raise ConfigError(err.problems, source=source) from None
    changes: dict[str, Any] = {
        "host": address.host, "port": address.port, "database": address.database, "user": address.user,
        "password": address.password, "libpq_options": address.libpq_options,
        "source": f"{settings.source} + {source}",
    }
    if "connect_timeout" in dsn:
        changes["connection_timeout"] = address.connection_timeout
    return settings_replace(settings, **changes)


_PLAIN_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# PostgreSQL truncates identifiers at 63 bytes; we refuse instead of truncating.
MAX_IDENTIFIER_LENGTH = 63


def identifier_problem(name: str) -> str | None:
    """Return why ``name`` is not a plain SQL name, or None when it is.

    >>> identifier_problem("mr_market_data") is None
    True
    >>> identifier_problem("x; drop table y")
    "'x; drop table y' is not a plain SQL name (letters, digits and _, not starting with a digit)"
    """
    if not isinstance(name, str) or not _PLAIN_IDENTIFIER.match(name):
        return f"{name!r} is not a plain SQL name (letters, digits and _, not starting with a digit)"
    if len(name) > MAX_IDENTIFIER_LENGTH:
        return f"{name!r} is longer than {MAX_IDENTIFIER_LENGTH} characters"
    return None
