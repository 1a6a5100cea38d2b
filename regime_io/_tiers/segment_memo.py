"""The rows of patch segments this process encoded, by their bytes: a write into a chunk
whose segment it wrote itself reads those rows back without decoding them.

A segment's rows are a pure function of its bytes, the chunk's declaration fingerprint
and its codec, so rows remembered under those three are the rows decoding would give;
bytes written by anyone else (another process, another version) are simply not found
and are decoded. Restating a day once more, or re-running a write, in the process that
wrote it (a corrections loop, a pipeline stage run again) decoded the ten 1,440-row
segments it had just encoded: ~3.5 ms of a ~39 ms restatement on the 2-core Xeon, where
looking them up costs ~0.1 ms (hashing ~20 KB each).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import pyarrow as pa

__all__ = ["MEMO_ROWS", "recall", "remember"]

# At most this many rows remembered, the least recently used forgotten first: ~64 B a
# one-minute bar in Arrow, so ~4 MB; ten 1,440-row segments of a restated day are 14,400.
MEMO_ROWS = 65_536

_Key = tuple[str, str, bytes]
_memo: OrderedDict[_Key, pa.Table] = OrderedDict()
_rows = 0
_lock = threading.Lock()


def remember(fingerprint: str, codec: str, segments: Sequence[tuple[bytes, pa.Table]]) -> None:
    """Keep each ``(encoded bytes, the rows encoded)`` of segments just written with this
    declaration ``fingerprint`` and ``codec`` (rows in payload order and types, as
    decoding gives them)."""
    global _rows
    with _lock:
        for encoded, rows in segments:
            if rows.num_rows > MEMO_ROWS:
                continue
            key = (fingerprint, codec, encoded)
            old = _memo.pop(key, None)
            if old is not None:
                _rows -= old.num_rows
            _memo[key] = rows
            _rows += rows.num_rows
        while _rows > MEMO_ROWS:
            _, dropped = _memo.popitem(last=False)
            _rows -= dropped.num_rows


def recall(fingerprint: str, codec: str, encoded: pa.Buffer | bytes) -> pa.Table | None:
    """The rows remembered for these segment bytes, or None."""
    key = (fingerprint, codec, encoded if isinstance(encoded, bytes) else encoded.to_pybytes())
    with _lock:
        rows = _memo.get(key)
        if rows is not None:
            _memo.move_to_end(key)
        return rows


def forget() -> None:
    """Drop every remembered segment (tests: the cold path)."""
    global _rows
    with _lock:
        _memo.clear()
        _rows = 0
