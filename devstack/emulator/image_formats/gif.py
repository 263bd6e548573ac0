"""GIF: header, colour tables, then extension and image blocks up to the 0x3B trailer."""

from __future__ import annotations

import re
from typing import Optional

from .walk import BROKEN, COMPLETE, TRUNCATED, Walk

_EXTENSION, _IMAGE, _TRAILER = 0x21, 0x2C, 0x3B
_ZEROS = re.compile(rb"\x00+")


def _skip_sub_blocks(data: bytes, pos: int) -> Optional[int]:
    """Offset just past the zero-length block that ends a sub-block chain, or None if the
    chain runs past the end of the data."""
    n = len(data)
    while pos < n:
        size = data[pos]
        pos += 1
        if size == 0:
            return pos
        pos += size
    return None


def _colour_table(flags: int) -> int:
    return 3 * (2 ** ((flags & 0x07) + 1)) if flags & 0x80 else 0


def walk_gif(data: bytes) -> Walk:
    """Walk the blocks. A byte that starts no block ends the image there (another GIF, a ZIP,
    ...); stray zero bytes between blocks (an extra block terminator, as some encoders write)
    are skipped when a block follows them."""
    n = len(data)
    pos = 13
    if pos > n:
        return Walk(TRUNCATED, 6, False, 6, "logical screen descriptor is cut off")
    pos += _colour_table(data[10])
    last = pos
    image_data = False
    while True:
        if pos >= n:
            return Walk(TRUNCATED, n, image_data, n, "missing trailer")
        block = data[pos]
        if block == _TRAILER:
            return Walk(COMPLETE, pos + 1, image_data)
        if block == _EXTENSION:
            end = _skip_sub_blocks(data, pos + 2) if pos + 2 <= n else None
            if end is None:
                return Walk(TRUNCATED, pos, image_data, pos, f"extension at offset {pos} is cut off")
        elif block == _IMAGE:
            lzw = pos + 10 + (_colour_table(data[pos + 9]) if pos + 10 <= n else 0)
            if lzw >= n:
                return Walk(TRUNCATED, pos, image_data, pos, f"image descriptor at offset {pos} is cut off")
            if not 1 <= data[lzw] <= 12:
                return Walk(BROKEN, pos, image_data, last, f"bad LZW code size at offset {lzw}")
            image_data = True
            end = _skip_sub_blocks(data, lzw + 1)
            if end is None:
                return Walk(TRUNCATED, pos, image_data, pos, f"image data at offset {pos} is cut off")
        elif block == 0x00:
            after = _ZEROS.match(data, pos).end()
            if after < n and data[after] in (_EXTENSION, _IMAGE, _TRAILER):
                pos = after
                continue
            return Walk(BROKEN, pos, image_data, last, f"zero bytes at offset {pos} start no block")
        else:
            return Walk(BROKEN, pos, image_data, last, f"byte 0x{block:02X} at offset {pos} starts no block")
        last = pos
        pos = end
