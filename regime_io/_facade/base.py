"""The state every part of :class:`~regime_io.PostgreSQLIntegration` shares.

The public class is assembled from a few mixins so that no module grows past a readable
size (range readers in ``ranges``, statistics and lookups in ``analytics``); each mixin
sees the instance's settings, its :class:`~regime_io.database.Database` and its default
``return_type`` through this base.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from .._conn.database import Database
from .._frames import check_return_type
from .._read.decode import empty_frame
from ..config import Settings
from ..types import ReturnType

__all__ = ["FacadeBase", "empty_rows", "when_disabled"]


log = logging.getLogger("regime_io.integration")

F = TypeVar("F")


class FacadeBase(Generic[F]):
    """Settings, pools and the default frame type of one ``PostgreSQLIntegration``."""

    settings: Settings
    db: Database
    return_type: ReturnType
    _warned_disabled: bool

    @property
    def enabled(self) -> bool:
        """False when the configuration says ``enabled = false``: writes are no-ops, reads empty."""
        return self.settings.enabled

    def _note_disabled(self, what: str) -> None:
        """Log once per instance that calls are skipped because ``enabled = false``."""
        if not self._warned_disabled:
            log.warning("database disabled in configuration (enabled = false): %s skipped", what)
            self._warned_disabled = True

    def _rt(self, return_type: ReturnType | None) -> ReturnType:
        if return_type is None:
            return self.return_type
        check_return_type(return_type)
        return return_type


M = TypeVar("M", bound=Callable[..., Any])


def when_disabled(result: Callable[[Any, dict[str, Any]], Any] | None) -> Callable[[M], M]:
    """The disabled mode (``[DATABASE] enabled = false``), decided in this one place.

    With the database enabled the decorated method runs as written. Disabled, it touches
    no server: its arguments are bound as the call would bind them (a wrong argument is
    still a ``TypeError``) and ``result(instance, arguments)`` is returned instead: an
    empty frame with the reader's schema, a write result that wrote nothing, a tail that
    ends at once, an empty report. ``result=None``: the method runs, its engine needing no
    server for it (the as-of join of given bars attaches no regimes). The first call of an
    instance that the mode changes logs a warning.
    """

    def decorate(method: M) -> M:
        signature = inspect.signature(method)

        @functools.wraps(method)
        def wrapper(self: FacadeBase[Any], *args: Any, **kwargs: Any) -> Any:
            if self.settings.enabled:
                return method(self, *args, **kwargs)
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            del arguments["self"]
            self._note_disabled(method.__name__)
            return method(self, *args, **kwargs) if result is None else result(self, arguments)

        return cast(M, wrapper)

    return decorate


def empty_rows(table: str | None = None) -> Callable[[Any, dict[str, Any]], Any]:
    """The disabled result of a reader: an empty frame with its schema (``table``: the
    reader's table, else the call's ``table`` argument), in the call's ``return_type``."""
    return lambda pg, a: empty_frame(pg.db.spec(table or a["table"]), return_type=pg._rt(a.get("return_type")),
                                     exact=a.get("exact", False), columns=a.get("columns"))
