"""PNG: the chunk list, from the signature to the end of the IEND chunk's CRC."""

from __future__ import annotations

import struct
import zlib

from .walk import BROKEN, COMPLETE, DAMAGED, MAX_ELEMENT, TRUNCATED, Walk


def _valid_header(length: int, ctype: bytes) -> bool:
    # Four ASCII letters, the third upper case (its "reserved" bit is zero in every PNG).
    return length <= 0x7FFFFFFF and ctype.isalpha() and ctype[2:3].isupper()


def _crc_ok(data: bytes, pos: int) -> bool:
    (length,) = struct.unpack_from(">I", data, pos)
    (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
    return zlib.crc32(data[pos + 4 : pos + 8 + length]) == crc


def walk_png(data: bytes) -> Walk:
    """Walk the chunks. A chunk header that is not a chunk (length over 2^31 - 1, or a type
    that is not four ASCII letters with an upper-case third) ends the image there; so does
    the end of the data.

    When the chunk before such a break fails its CRC, its length field is what is corrupt
    (libpng rejects the chunk too): the bytes after it are the rest of a damaged chunk, not
    data appended to a sound image, so the walk reports the chunk as damaged instead."""
    n = len(data)
    pos = 8
    last = pos
    image_data = False
    seen_ihdr = False
    while True:
        if pos + 8 > n:
            why = "missing IEND chunk" if pos == n else f"chunk header at offset {pos} is cut off"
            return Walk(TRUNCATED, pos, image_data, pos, why)
        length, ctype = struct.unpack_from(">I4s", data, pos)
        if not _valid_header(length, ctype):
            if last != pos and not _crc_ok(data, last):
                return Walk(DAMAGED, last, image_data, last, f"chunk at offset {last} fails its CRC")
            return Walk(BROKEN, pos, image_data, last, f"no chunk at offset {pos}")
        if not seen_ihdr:
            if ctype != b"IHDR" or length != 13:
                return Walk(BROKEN, pos, False, last, "the first chunk is not IHDR")
            seen_ihdr = True
        if ctype in (b"IDAT", b"fdAT") and length and pos + 8 < n:
            image_data = True
        end = pos + 12 + length
        if end > n and length > MAX_ELEMENT:
            return Walk(BROKEN, pos, image_data, last, f"no chunk at offset {pos} (length {length})")
        if end > n:
            return Walk(TRUNCATED, pos, image_data, pos, f"chunk {ctype.decode()} at offset {pos} is cut off")
        if ctype == b"IEND":
            return Walk(COMPLETE, end, image_data, end, "" if image_data else "no IDAT chunk before IEND")
        last = pos
        pos = end
