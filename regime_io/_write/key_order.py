"""A batch's rows in natural-key order, found by the cheapest route for its size: the
writers send rows in key order (the server's primary-key inserts then land at the
index's right end) and the ordering doubles as the duplicate check
(:func:`~regime_io._write.validate.validate`).

Example:
    >>> import polars as pl
    >>> frame = pl.DataFrame({"symbol": ["B", "A"], "n": [1, 2]})
    >>> ordered, order = in_key_order(frame, ["symbol"])
    >>> order.to_pylist()
    [1, 0]
    >>> in_key_order(pl.DataFrame({"symbol": ["A", "A"]}), ["symbol"]) is None
    True
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["RANKED_FRAME_ROWS", "SMALL_FRAME_ROWS", "Ordered", "TextCodes", "in_key_order"]

# A frame and the order that puts its rows in key order (None: they are in order).
Ordered = tuple[pl.DataFrame, "pa.Array | None"]


def _increasing(key: list[str]) -> pl.Expr:
    """True where a row's key is greater than the previous row's (lexicographic; null on row 0)."""
    expr: pl.Expr | None = None
    for name in reversed(key):
        this, prev = pl.col(name), pl.col(name).shift(1)
        expr = (this > prev) if expr is None else (this > prev) | ((this == prev) & expr)
    assert expr is not None
    return expr


def _all(frame: pl.DataFrame, expr: pl.Expr) -> bool:
    return bool(frame.select(expr.fill_null(True).all()).item())


# Up to this many rows Python's sort of the key tuples is the cheapest route to key
# order: ~5 us for a live save's 2 rows, where Arrow's sort and comparisons cost ~150 us
# and every polars query ~0.1-0.3 ms whatever the size; Python stays ahead up to ~250 rows
# of two key columns (0.22 vs 0.29 ms for Arrow), and key tuples of options are wider.
SMALL_FRAME_ROWS = 128

# Rows checked for key order before the whole frame is (in_key_order).
_HEAD_ROWS = 1024

# Up to this many rows numpy's ranks and sorts find key order fastest (measured with lexsort): a restated day of
# 10 symbols (14,400 rows, time-major) 1.7 -> 0.46 ms, 50,000 rows 2.9 -> 1.7 ms, even at
# 200,000 (7.3 ms both); at 1M rows polars' grouping wins (46 against 57 ms).
RANKED_FRAME_ROWS = 100_000


@dataclass(frozen=True)
class TextCodes:
    """A text column as its distinct values (``dictionary``) and each row's index into them
    (Arrow's dictionary encoding; NULL rows -1), taken once per column by
    :func:`~regime_io._write.validate.validate` for frames ranked here: its symbol
    spellings, text checks and canonical values and this key order all read it, where each
    went over every value (polars' unique twice, to_arrow twice, Arrow's encoding twice: a
    restated day's validation 4.04 -> 3.28 ms). After a rename two dictionary values may
    be equal."""

    dictionary: pa.Array
    indices: np.ndarray

    @classmethod
    def of(cls, series: pl.Series) -> TextCodes:
        values = series.to_arrow(compat_level=pl.CompatLevel.oldest())
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            values = values.cast(pa.large_string())
        encoded = pc.dictionary_encode(values)
        indices = encoded.indices.fill_null(-1) if encoded.indices.null_count else encoded.indices
        return cls(encoded.dictionary, indices.to_numpy())

    def renamed(self, mapping: Mapping[str, str | None]) -> TextCodes:
        """The same rows with their values renamed (``mapping``: old -> new; others kept)."""
        names = [mapping.get(v, v) for v in self.dictionary.to_pylist()]
        return TextCodes(pa.array(names, self.dictionary.type), self.indices)

    def ranks(self) -> np.ndarray:
        """Each row's value as its dense rank among the distinct values (UTF-8 byte order,
        as Python's code points and polars compare; equal renamed values share a rank)."""
        names = np.array(self.dictionary.to_pylist(), dtype=object)
        _, rank = np.unique(names, return_inverse=True)
        return np.asarray(rank, dtype=np.int64).reshape(-1)[self.indices]


def in_key_order(frame: pl.DataFrame, key: list[str], *,
                 texts: Mapping[str, TextCodes] | None = None) -> Ordered | None:
    """``frame`` in natural-key order, or None when two rows share a key.

    Returns the frame and, when it must still be put in order, the row order (Arrow
    indices: the final Arrow table is taken in that order, no polars gather).

    Rows sent in key order make the server's primary-key inserts sequential: COPY ran
    13-24% faster on 1M bars (10-100 symbols) than with the same rows time-major. Ordering
    doubles as the duplicate check and costs less than a hash-based one (about 50 ms
    versus 100-150 ms on 1M bars): most inputs are already in order, or in order per
    symbol, so splitting by the first key column and concatenating the groups in order
    is enough; a full sort is the fallback. ``texts``: key columns' :class:`TextCodes`,
    taken of these very rows (read on the ranked route).
    """
    if frame.height < 2:
        return frame, None
    if frame.height <= SMALL_FRAME_ROWS:
        # Key columns are NOT NULL (checked before) and hold text, datetimes, dates and
        # decimals, which Python compares as polars does (str by code point, which is
        # UTF-8's byte order) and finds equal where the server's unique index would.
        rows = list(zip(*(frame.get_column(k).to_list() for k in key), strict=True))
        order = sorted(range(len(rows)), key=rows.__getitem__)
        if any(rows[a] == rows[b] for a, b in itertools.pairwise(order)):
            return None
        in_order = all(i == o for i, o in enumerate(order))
        return frame, None if in_order else pa.array(order, pa.int64())
    if frame.height <= RANKED_FRAME_ROWS:
        return _in_key_order_ranked(frame, key, texts or {})
    # Time-major input (every symbol at each minute) is out of key order by its second
    # row: its first rows say so, where the check over all 1M rows took ~29 ms.
    if _all(frame.head(_HEAD_ROWS), _increasing(key)) and _all(frame, _increasing(key)):
        return frame, None
    if len(key) > 1:
        # Groups in ascending order too: then every insert lands at the right end of the
        # index (PostgreSQL's fast path); groups in order of appearance cost 10% more.
        groups = frame.partition_by(key[0], maintain_order=True, as_dict=True)
        grouped = pl.concat([groups[k] for k in sorted(groups)])  # code point = polars' byte order
        if _all(grouped, _increasing(key)):
            return grouped, None
    by_key = frame.sort(key)
    return (by_key, None) if _all(by_key, _increasing(key)) else None


def _in_key_order_ranked(frame: pl.DataFrame, key: list[str], texts: Mapping[str, TextCodes]) -> Ordered | None:
    """:func:`in_key_order` by numpy: each key column as int64 codes in its sort order
    (times and dates as their integers, text and decimals as their ranks), checked and
    sorted (:func:`_key_order`)."""
    codes: list[np.ndarray] = []
    for name in key:
        if name in texts:
            codes.append(texts[name].ranks())
            continue
        s = frame.get_column(name)
        if s.dtype.is_temporal():
            # datetime64 as it is, viewed (to_physical took ~50 us of a restated day's 14,400)
            codes.append(s.to_numpy().astype(np.int64, copy=False))
            continue
        values = s.to_arrow()
        if str(values.type) == "string_view":
            values = values.cast(pa.large_string())
        # Text by its dictionary's ranks (Arrow compares bytes: UTF-8 order, as polars and
        # Python's code points); decimals ranked whole.
        text = pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
        encoded = pc.dictionary_encode(values) if text else None
        if encoded is not None:
            rank = np.empty(len(encoded.dictionary), dtype=np.int64)
            rank[pc.array_sort_indices(encoded.dictionary).to_numpy()] = np.arange(len(rank))
            codes.append(rank[encoded.indices.to_numpy(zero_copy_only=False)])
        else:
            codes.append(pc.rank(values, tiebreaker="dense").to_numpy().astype(np.int64))
    if _strictly_increasing(codes):
        return frame, None
    order = _key_order(codes)
    if not _strictly_increasing([c[order] for c in codes]):
        return None  # two rows share a key
    return frame, pa.array(order, pa.int64())


def _key_order(codes: list[np.ndarray]) -> np.ndarray:
    """``np.lexsort`` of ``codes`` (first key first) as stable sorts from the last key to
    the first, a key with one value skipped and ranks sorted as 16-bit integers (numpy's
    radix sort): a restated day of 10 symbols (time-major) 341 -> ~210 us."""
    order: np.ndarray | None = None
    for c in reversed(codes):
        if len(c) and c.min() == c.max():
            continue  # one value (a timeframe): no order to add
        small = c.astype(np.int16) if c.min() >= 0 and c.max() < 2**15 else c
        order = np.argsort(small, kind="stable") if order is None else order[np.argsort(small[order], kind="stable")]
    return np.arange(len(codes[0])) if order is None else order


def _strictly_increasing(codes: list[np.ndarray]) -> bool:
    """True when each row's key (``codes``, one array per key column) is greater than the previous row's."""
    greater = np.zeros(len(codes[0]) - 1, dtype=bool)
    equal = np.ones(len(codes[0]) - 1, dtype=bool)
    for c in codes:
        later, earlier = c[1:], c[:-1]
        greater |= equal & (later > earlier)
        equal &= later == earlier
    return bool(greater.all())
