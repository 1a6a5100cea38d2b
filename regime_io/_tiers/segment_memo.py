"""The rows of patch segments this process encoded or decoded, by their bytes: a write
into a chunk whose segment it wrote itself, or a read of a patched month read before,
takes those rows without decoding them.

A segment's rows are a pure function of its bytes, its codec, the declaration it was
written under and the one it is read under (their fingerprints: a chunk of an older
declaration is conformed to the reader's) and whether decimals come back as floats, so
rows remembered under those are the rows decoding would give; other bytes (rewritten by
another process, another version) are not found, and are decoded. Restating a day once
more, or re-running a write, in the process that wrote it (a corrections loop, a
pipeline stage run again) decoded the ten 1,440-row segments it had just encoded: ~3.5
ms of a ~39 ms restatement on the 2-core Xeon; a backtest reading every bar of patched
months again decoded their ten patches each time (with them remembered: 0.94 of the
time, 37.0 against 39.8 ms, 57 alternated pairs). Looking a segment up costs ~10 us
(hashing its ~20 KB). Payloads are not remembered: a month is ~30x a day's segment.

Segments decoded together are remembered as slices of one table: one kept keeps that
table's buffers alive, so memory is bounded by :data:`MEMO_ROWS` and one decode pass.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence

import pyarrow as pa

__all__ = ["MEMO_ROWS", "How", "forget", "recall", "remember"]

# At most this many rows remembered, the least recently used forgotten first: ~64 B a
# one-minute bar in Arrow, so ~8 MB; the ten 1,440-row segments of a restated day are
# 14,400, remembered once exact (writes) and once as floats (reads).
MEMO_ROWS = 131_072

#: How a segment is read: (the chunk's fingerprint, the reader's, the codec, floats).
How = tuple[str, str, str, bool]
_memo: OrderedDict[tuple[How, bytes], pa.Table] = OrderedDict()
_rows = 0
_lock = threading.Lock()


def _after_fork() -> None:
    """A forked child starts with an empty memo and a lock of its own (the parent's may
    have been held by another thread at the fork, and would never be released)."""
    global _lock, _rows
    _lock = threading.Lock()
    _memo.clear()
    _rows = 0


if hasattr(os, "register_at_fork"):  # (POSIX)
    os.register_at_fork(after_in_child=_after_fork)


def remember(how: How, segments: Sequence[tuple[pa.Buffer | bytes, pa.Table]]) -> None:
    """Keep each ``(segment bytes, its rows)``: the rows as decoding them ``how`` gives them."""
    global _rows
    keyed = [((how, _bytes(encoded)), rows) for encoded, rows in segments if rows.num_rows <= MEMO_ROWS]
    with _lock:
        for key, rows in keyed:
            old = _memo.pop(key, None)
            if old is not None:
                _rows -= old.num_rows
            _memo[key] = rows
            _rows += rows.num_rows
        while _rows > MEMO_ROWS:
            _, dropped = _memo.popitem(last=False)
            _rows -= dropped.num_rows


def recall(how: How, encoded: pa.Buffer | bytes) -> pa.Table | None:
    """The rows remembered for these segment bytes read ``how``, or None."""
    key = (how, _bytes(encoded))
    with _lock:
        rows = _memo.get(key)
        if rows is not None:
            _memo.move_to_end(key)
        return rows


def _bytes(encoded: pa.Buffer | bytes) -> bytes:
    return encoded if isinstance(encoded, bytes) else encoded.to_pybytes()


def forget() -> None:
    """Drop every remembered segment (tests: the cold path)."""
    global _rows
    with _lock:
        _memo.clear()
        _rows = 0
