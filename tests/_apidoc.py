"""Render the reference part of docs/api.md from the code: signatures and docstrings.

Everything in ``regime_io.__all__`` is rendered, plus the result types users get back.
``tests/test_docs.py`` fails when docs/api.md differs from what this renders; rewrite it
with::

    .venv/bin/python tests/_apidoc.py
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
API_MD = ROOT / "docs" / "api.md"
BEGIN = "<!-- BEGIN GENERATED REFERENCE: .venv/bin/python tests/_apidoc.py rewrites what follows -->"
END = "<!-- END GENERATED REFERENCE -->"

# Section title -> names, in reading order. Names of regime_io.__all__ missing here land
# in "Other" so that nothing exported goes undocumented.
SECTIONS: list[tuple[str, list[str]]] = [
    ("The facade", ["PostgreSQLIntegration"]),
    ("Results", ["WriteResult", "CleanupReport", "TableCleanup", "DataQualityWarning"]),
    ("Configuration", ["load_settings", "Settings", "Secret"]),
    ("Connections", ["Database"]),
    ("Table declarations", ["TABLES", "TableSpec", "Column"]),
    ("Plots", ["plot_price_with_regimes", "plot_regime_distribution", "plot_transition_matrix",
               "regime_io.plots.plot_coverage"]),
    ("Files", ["regime_io.files.detect_format", "regime_io.files.read_file", "regime_io.files.FileBatches",
               "regime_io.files.write_file", "regime_io.files.export_table", "regime_io.files.ExportResult"]),
    ("The demo and synthetic data", [
        "regime_io.demo.run_demo", "regime_io.demo.DemoResult", "regime_io.demo.demo_schema",
        "regime_io.synthetic.market_bars", "regime_io.synthetic.minute_regimes", "regime_io.synthetic.regimes",
        "regime_io.synthetic.options_chain", "regime_io.synthetic.optimization_results",
        "regime_io.synthetic.session_days", "regime_io.synthetic.is_session", "regime_io.synthetic.weekly_expiry",
        "regime_io.synthetic.black_scholes", "regime_io.synthetic.implied_volatility"]),
    ("The embedded server and the health check", [
        "regime_io.server.start", "regime_io.server.stop", "regime_io.server.status", "regime_io.server.data_dir",
        "regime_io.server.diagnose"]),
    ("Errors", ["RegimeIOError", "UsageError", "ConfigError", "ServerError", "ServerUnavailableError",
                "PoolTimeoutError", "PoolClosedError", "SchemaError", "ValidationError", "WriteError", "ReadError"]),
    ("Version", ["__version__"]),
]


# How the reference names an instance of each class.
_INSTANCE = {"PostgreSQLIntegration": "pg", "WriteResult": "result", "CleanupReport": "report",
             "TableCleanup": "entry", "Database": "db", "TableSpec": "spec"}


def _resolve(name: str) -> Any:
    import importlib

    import regime_io

    if name.startswith("regime_io."):
        module, _, attr = name.rpartition(".")
        return getattr(importlib.import_module(module), attr)
    return getattr(regime_io, name)


def _signature(obj: Any, *, skip_self: bool = False) -> str:
    """``(a, b=1, *, c='x') -> T`` without parameter annotations (they are in the source)."""
    sig = inspect.signature(obj)
    parts: list[str] = []
    star_done = False
    params = list(sig.parameters.values())
    if skip_self and params and params[0].name in ("self", "cls"):
        params = params[1:]
    for p in params:
        if p.kind is p.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        if p.kind is p.VAR_POSITIONAL:
            parts.append(f"*{p.name}")
            star_done = True
            continue
        if p.kind is p.VAR_KEYWORD:
            parts.append(f"**{p.name}")
            continue
        parts.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    text = f"({', '.join(parts)})"
    ret = sig.return_annotation
    if ret is not sig.empty and ret not in ("None", "Any", None):
        text += f" -> {ret if isinstance(ret, str) else getattr(ret, '__name__', ret)}"
    return text


_ROLE = re.compile(r":(?:class|func|meth|attr|mod|exc):`~?([^`]+)`")


def _clean(text: str) -> str:
    """Sphinx roles to plain code spans: :class:`~a.b.C` -> `C`, :func:`a.f` -> `a.f`."""
    def short(match: re.Match[str]) -> str:
        target = match.group(1)
        return f"``{target.rpartition('.')[2] if match.group(0).count('~') else target}``"

    return _ROLE.sub(short, text)


def _doc(obj: Any) -> list[str]:
    """The docstring: its summary as a paragraph, the rest verbatim in a text block.

    The facade's docstrings are the documentation: the engine modules are private.
    """
    doc = _clean(inspect.getdoc(obj) or "")
    if not doc:
        return []
    summary, _, rest = doc.partition("\n\n")
    out = [" ".join(summary.split()), ""]
    if rest.strip():
        out += ["```text", rest.rstrip(), "```", ""]
    return out


def _fields(cls: Any) -> list[str]:
    rows = ["| Field | Default |", "| --- | --- |"]
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "required"
        default = default.replace("|", "\\|")
        if len(default) > 80:
            default = default[:77] + "..."
        rows.append(f"| `{f.name}` | `{default}` |")
    return [*rows, ""]


def _members(cls: Any, prefix: str) -> list[str]:
    out: list[str] = []
    # PostgreSQLIntegration is assembled from mixins: its own methods first, then each base's.
    members: dict[str, Any] = {}
    for klass in cls.__mro__:
        if klass.__module__.startswith("regime_io"):
            for name, member in vars(klass).items():
                members.setdefault(name, member)
    for name, member in members.items():
        if name.startswith("_") or name in ("disabled", "empty"):
            continue
        if isinstance(member, (property, functools.cached_property)):
            out += [f"#### `{prefix}.{name}` (property)", "", *_doc(member)]
        elif inspect.isfunction(member) or isinstance(member, (classmethod, staticmethod)):
            func = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
            out += [f"#### `{prefix}.{name}{_signature(func, skip_self=True)}`", "", *_doc(func)]
    return out


def _entry(name: str) -> list[str]:
    obj = _resolve(name)
    module, _, short = name.rpartition(".")
    # A public module's name (regime_io.files.read_file) says where to import it from.
    public_module = bool(module) and not any(part.startswith("_") for part in module.split("."))
    heading = name if public_module else short
    if short == "__version__":
        return ["### `regime_io.__version__`", "", f"The installed version, a string (`{obj!r}`).", ""]
    if short == "TABLES":
        keys = ", ".join(f"`{k}`" for k in obj)
        return ["### `regime_io.TABLES`", "",
                f"The table declarations, a dict of `TableSpec` by table key: {keys}. DDL, validation "
                "and read types are all derived from it (see [schema.md](schema.md)).", ""]
    if inspect.isclass(obj):
        if issubclass(obj, BaseException):
            base = obj.__mro__[1].__name__
            return [f"### `{short}({base})`", "", *_doc(obj)]
        lines = [f"### `{heading}{_signature(obj)}`", "", *_doc(obj)]
        if dataclasses.is_dataclass(obj):
            lines += _fields(obj)
        prefix = _INSTANCE.get(short, short.lower())
        return lines + _members(obj, prefix)
    return [f"### `{heading}{_signature(obj)}`", "", *_doc(obj)]


def render() -> str:
    import regime_io

    listed = {n.rpartition(".")[2] for _, names in SECTIONS for n in names}
    other = [n for n in regime_io.__all__ if n not in listed]
    sections = [*SECTIONS, *([("Other", other)] if other else [])]
    lines = [BEGIN, ""]
    for title, names in sections:
        lines += [f"## {title}", ""]
        for name in names:
            lines += _entry(name)
    lines.append(END)
    return "\n".join(lines) + "\n"


def current() -> str:
    """The generated section as it is in docs/api.md now."""
    text = API_MD.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[start:end] + "\n"


def write() -> None:
    text = API_MD.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    API_MD.write_text(text[:start] + render().rstrip("\n") + text[end:])


if __name__ == "__main__":
    write()
    print(f"rewrote the generated reference in {API_MD.relative_to(ROOT)}", file=sys.stderr)
