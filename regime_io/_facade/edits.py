"""Changing stored history in place: ``delete_range`` of :class:`~regime_io.PostgreSQLIntegration`."""

from __future__ import annotations

from collections.abc import Sequence

from .._write import delete as _delete
from ..types import DateLike
from .base import F, FacadeBase, when_disabled

__all__ = ["Edits"]


class Edits(FacadeBase[F]):
    """Part of :class:`~regime_io.PostgreSQLIntegration` (see that class for the whole API)."""

    @when_disabled(lambda pg, a: 0)
    def delete_range(self, table: str, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
                     end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None,
                     dry_run: bool = False) -> int:
        """Delete the rows of some symbols in ``[start_date, end_date]`` from both tiers.

        The row tier's rows are deleted and the sealed chunks holding rows of the range
        are rewritten without them (a chunk left empty is removed), in one transaction
        (retried as a whole on a deadlock; nothing is half-deleted). A table that keeps
        history (``[DATABASE] history_tables``) keeps the deleted rows' last versions,
        ending at the delete: ``as_of=`` an earlier instant still reads them and
        ``history()`` lists them. The series catalog follows (counts, first and last
        timestamps; a series left empty is removed), and the live tail delivers the
        range in ``TailBatch.deleted``.

        Parameters:
            table: ``market_data``, ``options_data``, ``market_regimes`` or
                ``market_regimes_1min`` (any name or alias :meth:`save` accepts).
            symbol: ``"NIFTY"`` or a list (or pass ``symbols=``); required.
            start_date, end_date: the range, both ends included, as for the range
                readers (a date as ``end_date`` includes that day); None leaves that side
                open, so ``delete_range("bars", "NIFTY")`` deletes all of NIFTY's bars.
            symbols: the symbols, as an alternative to ``symbol``.
            dry_run: count the rows that would be deleted; change nothing.

        Returns:
            The number of rows deleted (both tiers), or that would be with ``dry_run``.

        Raises:
            UsageError: no symbol, an unknown table or one without a time column (the
                optimisation results), ``start_date`` after ``end_date``.
            WriteError: the server refused; nothing was deleted.

        Example:
            >>> pg.delete_range("bars", "NIFTY", "2024-01-02", "2024-01-02")  # doctest: +SKIP
            375
        """
        return _delete.delete_range(self.db, table, symbol, start_date, end_date, symbols=symbols, dry_run=dry_run)
