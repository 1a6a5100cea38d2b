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

Remembered rows are often slices (of a write's validated batch, of one decode pass of
several segments), and a slice keeps its whole buffers alive: a 1,440-row slice of a
1M-row column holds 8 MB. So the memo is bounded by the bytes of the buffers its tables
reference (:data:`MEMO_BYTES`, Arrow's ``get_total_buffer_size``), not by their rows.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence

import pyarrow as pa

__all__ = ["MEMO_BYTES", "How", "forget", "recall", "remember"]

# At most this many bytes of buffers referenced, the least recently used forgotten first
# (a buffer two entries share is counted twice: the bound is loose, never exceeded). Each
# of the ten segments of the benchmark's restated day counts 1.15 MB (its rows are slices
# of the day's 14,400 validated rows): a process alternating two versions of the day
# holds 20 of them, 23 MB counted.
MEMO_BYTES = 64 * 1024 * 1024

#: How a segment is read: (the chunk's fingerprint, the reader's, the codec, floats).
How = tuple[str, str, str, bool]
_memo: OrderedDict[tuple[How, bytes], tuple[pa.Table, int]] = OrderedDict()  # -> (rows, bytes referenced)
_bytes_held = 0
_lock = threading.Lock()


def _after_fork() -> None:
    """A forked child starts with an empty memo and a lock of its own (the parent's may
    have been held by another thread at the fork, and would never be released)."""
    global _lock, _bytes_held
    _lock = threading.Lock()
    _memo.clear()
    _bytes_held = 0


if hasattr(os, "register_at_fork"):  # (POSIX)
    os.register_at_fork(after_in_child=_after_fork)


def remember(how: How, segments: Sequence[tuple[pa.Buffer | bytes, pa.Table]]) -> None:
    """Keep each ``(segment bytes, its rows)``: the rows as decoding them ``how`` gives them."""
    global _bytes_held
    keyed = [((how, _bytes(encoded)), (rows, rows.get_total_buffer_size())) for encoded, rows in segments]
    with _lock:
        for key, entry in keyed:
            if entry[1] > MEMO_BYTES:
                continue
            old = _memo.pop(key, None)
            if old is not None:
                _bytes_held -= old[1]
            _memo[key] = entry
            _bytes_held += entry[1]
        while _bytes_held > MEMO_BYTES:
            _, (_, size) = _memo.popitem(last=False)
            _bytes_held -= size


def recall(how: How, encoded: pa.Buffer | bytes) -> pa.Table | None:
    """The rows remembered for these segment bytes read ``how``, or None."""
    key = (how, _bytes(encoded))
    with _lock:
        entry = _memo.get(key)
        if entry is None:
            return None
        _memo.move_to_end(key)
        return entry[0]


def _bytes(encoded: pa.Buffer | bytes) -> bytes:
    return encoded if isinstance(encoded, bytes) else encoded.to_pybytes()


def forget() -> None:
    """Drop every remembered segment (tests: the cold path)."""
    global _bytes_held
    with _lock:
        _memo.clear()
        _bytes_held = 0
