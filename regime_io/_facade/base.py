"""The state every part of :class:`~regime_io.PostgreSQLIntegration` shares.

The public class is assembled from a few mixins so that no module grows past a readable
size (range readers in ``ranges``, statistics and lookups in ``analytics``); each mixin
sees the instance's settings, its :class:`~regime_io.database.Database` and its default
``return_type`` through this base.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Generic, TypeVar

from .._conn.database import Database
from .._frames import check_return_type
from ..config import Settings
from ..types import ReturnType

if TYPE_CHECKING:

    pass

__all__ = ["FacadeBase"]


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

    def _disabled(self, what: str) -> bool:
        """True (after logging once) when ``enabled = false``."""
        if self.settings.enabled:
            return False
        if not self._warned_disabled:
            log.warning("database disabled in configuration (enabled = false): %s skipped", what)
            self._warned_disabled = True
        return True

    def _rt(self, return_type: ReturnType | None) -> ReturnType:
        if return_type is None:
            return self.return_type
        check_return_type(return_type)
        return return_type
