"""BMP: the pixel array's real extent, from its offset, width, height, bit depth and compression.

The file-size field (``bfSize``) and ``biSizeImage`` are never trusted for uncompressed data:
writers leave them zero or wrong, and an attacker can set them to cover a payload.

* Uncompressed (``BI_RGB``, ``BI_BITFIELDS``, ``BI_ALPHABITFIELDS``, OS/2 core headers): rows of
  ``width * bpp`` bits padded to 4 bytes, times ``|height|``.
* RLE8 / RLE4: the run-length data is walked to its end-of-bitmap escape.
* ``BI_JPEG`` / ``BI_PNG``: the embedded JPEG or PNG is walked like a standalone one.
* Any other compression: ``biSizeImage`` is the only description of the data, so it is used
  when set; otherwise the pixel data is taken to run to the end of the file.

Raw and RLE pixel data is searched for payload signatures, as a payload written over the last
rows of a shortened file would otherwise pass for pixels. A V5 header's ICC profile (embedded,
or the file name of a linked one) that follows the pixel array belongs to the image too.

A ``bfOffBits`` that points inside the header, bit masks or palette is nonsense (writers that
forget the palette set it to the header's end); the pixels then follow the palette, as Pillow
reads them.
"""

from __future__ import annotations

import struct
from typing import Callable

from .payloads import find_payload
from .walk import BROKEN, COMPLETE, TRUNCATED, Walk

_DEPTHS = (1, 2, 4, 8, 16, 24, 32, 64)
_UNCOMPRESSED = (0, 3, 6)  # BI_RGB, BI_BITFIELDS, BI_ALPHABITFIELDS
_RLE8, _RLE4, _JPEG, _PNG = 1, 2, 4, 5
_PROFILE_EMBEDDED, _PROFILE_LINKED = 0x4D424544, 0x4C494E4B  # 'MBED', 'LINK' (a file name)


def _rle_end(data: bytes, pos: int, rle4: bool) -> Walk:
    n = len(data)
    start = pos
    while pos + 2 <= n:
        count, code = data[pos], data[pos + 1]
        pos += 2
        if count or code == 0:  # encoded run, end of line
            continue
        if code == 1:  # end of bitmap
            return Walk(COMPLETE, pos, True)
        if code == 2:  # delta: right, down
            pos += 2
        else:  # absolute run of `code` pixels, padded to a 16-bit boundary
            size = (code + 1) // 2 if rle4 else code
            pos += size + (size & 1)
    return Walk(TRUNCATED, start, pos > start, start, "run-length data is cut off")


def _embedded(walk_embedded: Callable[[bytes], Walk], data: bytes, pos: int) -> Walk:
    inner = walk_embedded(data[pos:])
    return Walk(inner.status, pos + inner.end, inner.image_data, pos + inner.search_from, inner.problem)


def walk_bmp(data: bytes) -> Walk:
    n = len(data)
    if n < 26:
        return Walk(TRUNCATED, 2, False, 2, "header is cut off")
    off_bits, dib = struct.unpack_from("<II", data, 10)
    if dib != 12 and not 16 <= dib <= 124:
        return Walk(BROKEN, 14, False, 14, f"unknown DIB header size {dib}")
    header_end = 14 + dib
    if header_end > n:
        return Walk(TRUNCATED, 14, False, 14, "DIB header is cut off")
    compression = size_image = colors = 0
    if dib == 12:
        width, height, _planes, bpp = struct.unpack_from("<HHHH", data, 18)
    else:
        width, height, _planes, bpp = struct.unpack_from("<iiHH", data, 18)
        if dib >= 20:
            (compression,) = struct.unpack_from("<I", data, 30)
        if dib >= 24:
            (size_image,) = struct.unpack_from("<I", data, 34)
        if dib >= 36:
            (colors,) = struct.unpack_from("<I", data, 46)
    masks = 16 if dib == 40 and compression == 6 else 12 if dib == 40 and compression == 3 else 0
    palette = 0
    if 1 <= bpp <= 8:
        entries = colors if 0 < colors <= 1 << bpp else 1 << bpp
        palette = entries * (3 if dib == 12 else 4)
    after_palette = header_end + masks + palette
    pixels = off_bits if off_bits >= after_palette else after_palette
    rows = abs(height)

    if compression in _UNCOMPRESSED:
        if bpp not in _DEPTHS or width <= 0:
            return Walk(BROKEN, 14, False, 14, f"unsupported bit depth {bpp} or width {width}")
        walk = Walk(COMPLETE, pixels + ((width * bpp + 31) // 32) * 4 * rows, True)
    elif compression in (_RLE8, _RLE4) and bpp == (8 if compression == _RLE8 else 4):
        walk = _rle_end(data, pixels, compression == _RLE4)
    elif compression in (_JPEG, _PNG) and dib >= 40:
        from .jpeg import walk_jpeg
        from .png import walk_png

        signature = b"\xff\xd8" if compression == _JPEG else b"\x89PNG\r\n\x1a\n"
        if not data.startswith(signature, pixels):
            return Walk(BROKEN, pixels, False, pixels, "embedded JPEG/PNG data is missing")
        walk = _embedded(walk_jpeg if compression == _JPEG else walk_png, data, pixels)
    elif size_image:
        walk = Walk(COMPLETE, pixels + size_image, True)
    else:
        return Walk(TRUNCATED, pixels, pixels < n, pixels, f"compression {compression}: extent unknown")

    if walk.status == COMPLETE and walk.end > n:
        return Walk(TRUNCATED, pixels, pixels < n or walk.end == pixels, pixels, "pixel array is cut off")
    if walk.status == COMPLETE and compression not in (_JPEG, _PNG):
        # Pixel data cannot be checked without decoding it, so, like JPEG scan data, it is
        # searched for payloads: one written over the last rows of a shortened file ends it.
        found = find_payload(data, pixels, walk.end)
        if found is not None:
            return Walk(BROKEN, found, True, found, f"a payload at offset {found} inside the pixel data")
    if walk.status == COMPLETE and dib >= 124:
        cstype, profile, profile_size = struct.unpack_from("<I52xII", data, 70)
        start, stop = 14 + profile, 14 + profile + profile_size
        gap = data[walk.end : start] if walk.end <= start else b"x"
        if cstype in (_PROFILE_EMBEDDED, _PROFILE_LINKED) and stop <= n and not gap.strip(b"\x00"):
            walk = Walk(COMPLETE, stop, True)
    return walk
