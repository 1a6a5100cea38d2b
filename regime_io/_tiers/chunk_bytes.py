"""A sealed chunk's bytes, read without decoding them: the segments of its patch and where
a payload's record batches lie.

A restatement writes a few rows into a sealed month as a segment of the chunk's patch,
and reads only the byte range of the payload's record batches its rows fall in: both
are laid out here, in bytes; encoding and decoding rows is ``sealed_format``'s.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

import pyarrow as pa

from ..errors import SchemaError

__all__ = ["FILE_END", "MAX_SEGMENTS", "TAIL_BYTES", "Segment", "footer_blocks", "framed", "patch_segments",
           "sparse_payload"]


# A patch is a list of segments: each an IPC file of the chunk's codec holding rows restated or
# added, behind a frame saying its size, rows and time span. Segments' spans never
# overlap, so their rows in order of span are in payload order: a reader concatenates
# them, nothing to sort or deduplicate. A write decodes only the segments its rows' span
# meets, and replaces them with one segment (their rows with its own laid over them); the
# others are copied as bytes. A day's first restatement meets none and appends: into
# months patched on 4 days before, the whole patch was decoded, merged and encoded again
# (10 months: ~4 ms of encoding, ~3 ms of decoding, ~4 ms of merging of 42 ms). A patch
# written before segments (one unframed IPC file, "ARROW1...") reads as it did; the next
# write into its chunk rewrites it framed.
_SEGMENTS = b"RIOSEGS1"
# A write that would leave more segments than this rewrites the patch as one. A read
# builds the segments' batches together (sealed_format._decode_many), but opens each: a 44,640-row month
# with a patch of 8 segments decoded in 1.67 ms, with the same rows as one segment 1.20 ms
# (~0.06 ms a segment). Day-sized writes of one-minute bars fold into the payload
# (PATCH_ROWS, 5 days) before they reach 8; many small writes are what this bounds.
MAX_SEGMENTS = 8
_FRAME = struct.Struct("<IIqq")  # the segment's bytes, rows, first and last time (microseconds)


class Segment(NamedTuple):
    """One segment of a patch: where it lies (``start``: after its frame), its rows and
    their time span (microseconds since the epoch, both ends included)."""

    start: int
    size: int
    rows: int
    first: int
    last: int

    def meets(self, first: int, last: int) -> bool:
        """Whether a row of this segment may lie in ``[first, last]`` (microseconds)."""
        return self.last >= first and self.first <= last


def patch_segments(patch: Any) -> list[Segment] | None:
    """The segments of a framed patch in order of time; [] for no patch; None for an
    unframed one (one IPC file, written before segments)."""
    if patch is None:
        return []
    view = memoryview(patch)
    if bytes(view[:len(_SEGMENTS)]) != _SEGMENTS:
        return None
    out: list[Segment] = []
    at = len(_SEGMENTS)
    while at < len(view):
        if at + _FRAME.size > len(view):
            raise SchemaError(f"a sealed chunk's patch is cut short (a frame at byte {at} of {len(view)})")
        size, rows, first, last = _FRAME.unpack_from(view, at)
        at += _FRAME.size
        if at + size > len(view):
            raise SchemaError(f"a sealed chunk's patch is cut short (a segment at byte {at} of {len(view)})")
        out.append(Segment(at, size, rows, first, last))
        at += size
    return sorted(out, key=lambda s: s.first)


def framed(patch: Any, encoded: bytes, rows: int, first: int, last: int, *,
           replacing: Sequence[Segment] = ()) -> bytes:
    """A framed patch: the segments of ``patch`` (framed, or None) but ``replacing``, and
    ``encoded`` (``rows`` rows from ``first`` to ``last``, microseconds) as one more."""
    parts = [_SEGMENTS]
    if patch is not None:
        view = memoryview(patch)
        parts += [bytes(view[s.start - _FRAME.size: s.start + s.size])
                  for s in patch_segments(patch) or () if s not in replacing]
    parts += [_FRAME.pack(len(encoded), rows, first, last), encoded]
    return b"".join(parts)


# A payload's last bytes fetched to find its batches (the IPC file's footer: the schema with
# the batches' first times, and each batch's place). A 44,640-row month's footer is 888
# bytes; a footer longer than this is read with the whole payload.
TAIL_BYTES = 4096

FILE_END = struct.Struct("<i6s")  # the footer's length, then the magic "ARROW1"


def footer_blocks(footer: bytes) -> list[tuple[int, int, int]] | None:
    """``(offset, metadata length, body length)`` of each record batch, read from an Arrow
    IPC file footer (a flatbuffer: ``Footer.recordBatches``, its fourth field, a vector of
    24-byte ``Block`` structs; Arrow's File.fbs). Arrow's Python API does not expose them."""
    try:
        root = struct.unpack_from("<I", footer, 0)[0]
        vtable = root - struct.unpack_from("<i", footer, root)[0]
        field = 4 + 2 * 3
        if struct.unpack_from("<H", footer, vtable)[0] < field + 2:
            return []
        at = struct.unpack_from("<H", footer, vtable + field)[0]
        if not at:
            return []
        vector = root + at + struct.unpack_from("<I", footer, root + at)[0]
        count = struct.unpack_from("<I", footer, vector)[0]
        return [struct.unpack_from("<qi4xq", footer, vector + 4 + 24 * i) for i in range(count)]
    except struct.error:
        return None


def sparse_payload(size: int, tail: bytes, start: int, piece: bytes | pa.Buffer) -> pa.Buffer:
    """A payload of ``size`` bytes holding only its ``tail`` and ``piece`` (its bytes from
    ``start``), zeros elsewhere: ``sealed_format.decode`` reads the footer and the batches in the
    piece (a batch outside it fails to read, loudly: its message is empty)."""
    buffer = bytearray(size)
    buffer[size - len(tail):] = tail
    view = memoryview(piece) if isinstance(piece, pa.Buffer) else piece
    buffer[start:start + len(view)] = view
    return pa.py_buffer(buffer)
