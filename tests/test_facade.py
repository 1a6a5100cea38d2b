"""The facade is the one public layer: each method and the engine it forwards to agree.

``PostgreSQLIntegration`` carries the documented signatures; the private engines take the
same parameters after ``db``. This test fails when either side gains, loses or changes a
parameter, a default or an annotation the other does not (they drifted before: a lost
``exact``, a different ``resample`` type).
"""

from __future__ import annotations

import ast
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

import pytest

from regime_io import PostgreSQLIntegration
from regime_io._read import asof as _asof
from regime_io._read import history as _history
from regime_io._read import quality as _quality
from regime_io._read import readers as _reading
from regime_io._read import scan as _scan
from regime_io._read import sqlquery as _sqlquery
from regime_io._read import streams as _streams
from regime_io._read import tail as _tail
from regime_io._read import tailrows as _tailrows
from regime_io._schema import ddl as _ddl
from regime_io._schema import maintenance as _maintenance
from regime_io._tiers import catalog as _catalog
from regime_io._tiers import sealing as _sealing
from regime_io._write import delete as _delete
from regime_io._write import save as _writing

# Facade method -> (engine function, parameters the facade fixes itself).
ENGINES: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "save": (_writing.save, {}),
    "save_rolling_market_regime": (_writing.save_rolling_market_regime, {}),
    "get_market_data": (_reading.get_market_data, {}),
    "get_options_data": (_reading.get_options_data, {}),
    "get_market_regimes": (_reading.get_market_regimes, {}),
    "get_1min_market_regimes": (_reading.get_1min_market_regimes, {}),
    "get_optimization_results": (_reading.get_optimization_results, {}),
    "get_latest": (_reading.get_latest, {}),
    "get_latest_1min_market_regime": (_reading.get_latest, {"table": "market_regimes_1min", "timeframe": None}),
    "get_option_chain": (_reading.get_option_chain, {}),
    "get_market_regime_distribution": (_reading.get_market_regime_distribution, {}),
    "get_regime_transitions": (_reading.get_regime_transitions, {}),
    "asof_regimes": (_asof.asof_regimes, {}),
    "iter_market_data": (_streams.iter_market_data, {}),
    "iter_options_data": (_streams.iter_options_data, {}),
    "cleanup_old_data": (_maintenance.cleanup_old_data, {}),
    "list_partitions": (_maintenance.list_partitions, {}),
    "scan": (_scan.scan, {}),
    "follow": (_tail.follow, {}),
    "tail": (_tailrows.tail, {}),
    "quality_report": (_quality.quality_report, {}),
    "history": (_history.history, {}),
    "seal": (_sealing.seal, {}),
    "unseal": (_sealing.unseal, {}),
    "catalog": (_catalog.read_catalog, {}),
    "refresh_catalog": (_catalog.refresh, {}),
    "repair_sealed": (_sealing.repair_sealed, {}),
    "sql": (_sqlquery.run_sql, {}),
    "delete_range": (_delete.delete_range, {}),
}

# Left out of ENGINES until the library agrees; nothing may be.
REPORTED: set[str] = set()

# Parameters a facade method handles itself, which its engine does not take.
ADDED: dict[str, set[str]] = {"catalog": {"return_type"}, "sql": {"return_type"}}

# The per-table writers are save() with the table fixed (and no tier for the one table
# without a time column: optimisation results are never sealed).
WRITERS: dict[str, dict[str, Any]] = {
    "save_market_data": {}, "save_options_data": {}, "save_market_regime": {}, "save_1min_market_regime": {},
    "save_optimization_result": {"tier": "auto"},
}


def _params(func: Callable[..., Any], *, drop: int) -> list[inspect.Parameter]:
    return list(inspect.signature(func).parameters.values())[drop:]


def _members(annotation: Any, func: Callable[..., Any]) -> frozenset[str]:
    """An annotation as the set of its union members, each resolved in ``func``'s module
    (type aliases such as ``AgeLike`` or ``DateLike`` expanded), so that ``a | b`` equals
    ``b | a`` and an alias equals its definition; anything else (``Sequence`` against
    ``Iterable``, a lost ``None``) still differs. Names that exist only for type checkers
    (``pl``, ``pd``) are compared as written."""
    if annotation is inspect.Parameter.empty:
        return frozenset({"<none>"})
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    nodes, stack = [], [ast.parse(text, mode="eval").body]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            stack += [node.left, node.right]
        else:
            nodes.append(ast.unparse(node))
    out: set[str] = set()
    for member in nodes:
        try:
            value = eval(member, inspect.unwrap(func).__globals__)
        except Exception:  # a name imported only under TYPE_CHECKING
            out.add(member)
            continue
        if isinstance(value, types.UnionType) or typing.get_origin(value) is typing.Union:
            out |= {repr(arg) for arg in typing.get_args(value)}
        else:
            out.add(repr(value))
    return frozenset(out)


def _compare(facade_func: Callable[..., Any], engine_func: Callable[..., Any], *, facade_drop: int,
             engine_drop: int, fixed: dict[str, Any], added: set[str] | None = None) -> None:
    facade = [p for p in _params(facade_func, drop=facade_drop) if p.name not in (added or set())]
    engine = [p for p in _params(engine_func, drop=engine_drop) if p.name not in fixed]
    assert [p.name for p in facade] == [p.name for p in engine]
    for f, e in zip(facade, engine, strict=True):
        assert f.kind == e.kind, f"{f.name}: {f.kind} vs {e.kind}"
        f_type, e_type = _members(f.annotation, facade_func), _members(e.annotation, engine_func)
        if f.name == "return_type":  # the facade's None means the instance default
            assert f_type - {"None"} == e_type, f"{f.name}: {f.annotation} vs {e.annotation}"
            assert f.default is None and e.default == "polars", "facade: instance default; engine: polars"
        else:
            assert f_type == e_type, f"{f.name}: {f.annotation} vs {e.annotation}"
            assert f.default == e.default, f"{f.name}: {f.default!r} vs {e.default!r}"


@pytest.mark.parametrize("method", sorted(ENGINES))
def test_facade_method_agrees_with_its_engine(method: str) -> None:
    engine, fixed = ENGINES[method]
    _compare(getattr(PostgreSQLIntegration, method), engine, facade_drop=1, engine_drop=1, fixed=fixed,
             added=ADDED.get(method, set()))


@pytest.mark.parametrize("method", sorted(WRITERS))
def test_table_writers_take_save_options(method: str) -> None:
    _compare(getattr(PostgreSQLIntegration, method), _writing.save, facade_drop=1, engine_drop=2,
             fixed=WRITERS[method])


def _public() -> set[str]:
    # The class is assembled from mixins (regime_io/_facade/): walk its whole MRO.
    members = {name: value for klass in PostgreSQLIntegration.__mro__ if klass.__module__.startswith("regime_io")
               for name, value in vars(klass).items()}
    return {name for name, value in members.items() if callable(value) and not name.startswith("_")}


def test_every_public_method_is_checked() -> None:
    """Every public method has an engine it is compared with, or is listed here with the reason."""
    own = {"initialize_database": "runs the DDL engine (widen_prices: its one option)", "close": "closes the pools"}
    checked = set(ENGINES) | set(WRITERS) | REPORTED | set(own)
    assert _public() - checked == set(), "compare these with their engines"
    assert checked - _public() == set(), "listed but not public methods"
    assert inspect.signature(PostgreSQLIntegration.initialize_database).parameters.keys() == {"self", "widen_prices"}
    assert inspect.signature(_ddl.initialize_database).parameters["widen_prices"].kind is inspect.Parameter.KEYWORD_ONLY
    assert inspect.signature(PostgreSQLIntegration.close).parameters.keys() == {"self"}


OVERLOADED = sorted(name for name in _public() if typing.get_overloads(getattr(PostgreSQLIntegration, name)))
STREAMS = {"iter_market_data", "iter_options_data"}  # return a BatchStream of frames
RETURNS = {"None": "F", "Literal['polars']": "pl.DataFrame", "Literal['pandas']": "pd.DataFrame",
           "Literal['arrow']": "pa.Table"}


def test_the_overloaded_methods_are_found() -> None:
    """Exactly the methods with a ``return_type`` are overloaded on it (19 of them)."""
    with_return_type = {name for name in _public()
                        if "return_type" in inspect.signature(getattr(PostgreSQLIntegration, name)).parameters}
    assert set(OVERLOADED) == with_return_type and len(OVERLOADED) == 19, OVERLOADED


@pytest.mark.parametrize("method", OVERLOADED)
def test_overload_stubs_agree_with_the_implementation(method: str) -> None:
    """Each @overload stub has the implementation's parameters (names, kinds, defaults,
    annotations) but for ``return_type``, which it narrows to one value; the stubs cover
    ``None`` and each ``ReturnType`` once, each with the matching return annotation. The
    implementation is compared with its engine above, so the stubs are too."""
    func = getattr(PostgreSQLIntegration, method)
    impl = inspect.signature(func)
    narrowed = {}
    for stub in typing.get_overloads(func):
        sig = inspect.signature(stub)
        assert [p.name for p in sig.parameters.values()] == list(impl.parameters), method
        for p in sig.parameters.values():
            q = impl.parameters[p.name]
            assert p.kind == q.kind, (method, p.name)
            if p.name == "return_type":
                continue
            assert p.default == q.default, (method, p.name, p.default, q.default)
            assert _members(p.annotation, stub) == _members(q.annotation, func), (method, p.name)
        rt = sig.parameters["return_type"]
        key = str(rt.annotation).replace('"', "'")
        assert key not in narrowed, (method, key)
        narrowed[key] = str(sig.return_annotation)
        assert rt.default is (None if key == "None" else inspect.Parameter.empty), (method, key, rt.default)
    wrap = (lambda t: f"Tail[{t}]") if method == "follow" else (lambda t: t)
    returns = RETURNS
    if method in STREAMS:  # a stream of frames; "arrow" streams yield record batches, not tables
        wrap, returns = (lambda t: f"BatchStream[{t}]"), {**RETURNS, "Literal['arrow']": "pa.RecordBatch"}
    assert narrowed == {k: wrap(v) for k, v in returns.items()}, (method, narrowed)


FRAME_READERS = sorted(m for m in ENGINES if m != "follow" and m not in STREAMS  # iterators of frames: below
                       and "return_type" in inspect.signature(getattr(PostgreSQLIntegration, m)).parameters)


def test_follow_is_overloaded_on_return_type() -> None:
    returns = sorted(str(inspect.signature(o).return_annotation)
                     for o in typing.get_overloads(PostgreSQLIntegration.follow))
    assert returns == sorted(["Tail[F]", "Tail[pa.Table]", "Tail[pd.DataFrame]", "Tail[pl.DataFrame]"]), returns


def test_the_frame_readers_are_found() -> None:
    assert len(FRAME_READERS) == 16, FRAME_READERS


@pytest.mark.parametrize("method", FRAME_READERS)
def test_readers_are_overloaded_on_return_type(method: str) -> None:
    func = getattr(PostgreSQLIntegration, method)
    overloads = typing.get_overloads(func)
    returns = sorted(str(inspect.signature(o).return_annotation) for o in overloads)
    assert returns == sorted(["F", "pa.Table", "pd.DataFrame", "pl.DataFrame"]), returns


def test_public_methods_have_docstrings_with_an_example() -> None:
    for name in [*ENGINES, *WRITERS]:
        doc = inspect.getdoc(getattr(PostgreSQLIntegration, name)) or ""
        assert doc.splitlines()[0].endswith("."), f"{name}: the summary line ends with a full stop"
