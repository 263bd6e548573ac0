"""WebP: the RIFF chunks, walked one by one.

The RIFF size is only an upper bound: a chunk past it is outside the container, and a RIFF
size that covers more than the chunks (for example an appended ZIP) extends nothing, because
the walk stops at the first bytes that are not a chunk.

* Simple format (first chunk ``VP8 `` or ``VP8L``): the image is that one chunk.
* Extended format (first chunk ``VP8X``): every following chunk up to the RIFF end.

A chunk whose size is odd is followed by a pad byte; writers that leave it out are accepted.
"""

from __future__ import annotations

import re
import struct

from .walk import BROKEN, COMPLETE, MAX_ELEMENT, TRUNCATED, Walk

_FOURCC = re.compile(rb"[A-Za-z0-9 _]{4}")
_IMAGE_CHUNKS = (b"VP8 ", b"VP8L", b"ANMF")


def walk_webp(data: bytes) -> Walk:
    n = len(data)
    (riff_size,) = struct.unpack_from("<I", data, 4)
    riff_end = 8 + riff_size
    pos = 12
    last = pos
    image_data = False
    first = True
    while True:
        if first or pos < riff_end:
            if pos + 8 > n:
                return Walk(TRUNCATED, pos, image_data, pos, "missing chunk" if pos == n else "chunk header is cut off")
            fourcc = data[pos : pos + 4]
            (size,) = struct.unpack_from("<I", data, pos + 4)
            if not _FOURCC.fullmatch(fourcc):
                return Walk(BROKEN, pos, image_data, last, f"no chunk at offset {pos}")
            if first and fourcc not in (b"VP8 ", b"VP8L", b"VP8X"):
                return Walk(BROKEN, pos, False, pos, "the first chunk is not VP8, VP8L or VP8X")
            if fourcc in _IMAGE_CHUNKS and size and pos + 8 < n:
                image_data = True
            end = pos + 8 + size
            if end > n and size > MAX_ELEMENT:
                return Walk(BROKEN, pos, image_data, last, f"no chunk at offset {pos} (size {size})")
            if end > n:
                return Walk(TRUNCATED, pos, image_data, pos, f"chunk {fourcc.decode()} at offset {pos} is cut off")
            # The pad byte of an odd-sized chunk, unless the writer left it out.
            if size & 1 and end < n and (data[end] == 0 or not _FOURCC.fullmatch(data[end : end + 4])):
                end += 1
            last, pos = pos, end
            simple = first and fourcc != b"VP8X"
            if first and riff_end < pos:
                riff_end = n  # a RIFF size smaller than the first chunk is nonsense
            first = False
            if not simple:
                continue
        if not image_data:
            return Walk(BROKEN, pos, False, last, "no VP8, VP8L or ANMF chunk")
        return Walk(COMPLETE, pos, True)
