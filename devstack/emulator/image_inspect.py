"""Detection of hidden payloads appended after an image's real end.

This is the core of the emulated Cloud Infinite ``ImageInspect`` job. It is
pure (no I/O) and runs in time linear in the input size.

How the image's real end is found
---------------------------------
The end is found by walking the format's structure, never by searching for the
last end marker (an attacker controls everything after the real end):

* PNG  - the chunk list up to and including the IEND chunk's CRC.
* JPEG - marker segments by their declared lengths (so an EXIF thumbnail with
  its own FFD8...FFD9 inside APP1 is skipped), the entropy-coded data after
  each SOS, up to and including the EOI marker.
* GIF  - header, colour tables, extension and image blocks with their data
  sub-blocks, up to and including the 0x3B trailer.
* BMP  - the declared file size (offset 2); when it is 0 or implausible it is
  computed from bfOffBits + biSizeImage, or from width/height/bit depth with
  rows padded to 4 bytes.
* WebP - the RIFF container size (8 + size, plus a pad byte if size is odd).

Anything after the real end is suspicious, except a tolerated padding of at
most ``TOLERATED_ZERO_PADDING`` (16) bytes that are all 0x00: some encoders
and upload tools pad files with zeros, and such bytes cannot hide a payload.

Error codes (``InspectError.code``)
-----------------------------------
* ``InvalidInput``           - the input is not a bytes-like object.
* ``InputFileTooLarge``      - the input exceeds ``MAX_IMAGE_BYTES`` (32 MiB).
* ``UnsupportedImageFormat`` - the bytes are not PNG, JPEG, GIF, BMP or WebP
  (this includes empty input).
* ``InvalidImage``           - the signature says image, but the structure is
  truncated or corrupt so that no real end can be found.

Payload naming scheme (``classify_payload``)
--------------------------------------------
The real service only documents ``"MPEG-TS"`` as an example of
SuspiciousType; this emulator names payloads by their magic bytes as follows:

``"MPEG-TS"`` (0x47 sync bytes every 188 bytes, or M2TS with a 4-byte
timestamp prefix), ``"ZIP"``, ``"PDF"``, ``"ELF"``, ``"PE"`` (MZ executables),
``"HTML"``, ``"SCRIPT"`` (``<script``, ``<?php``, ``#!``, ``<%``), ``"RAR"``,
``"7Z"``, ``"GZIP"``, ``"MP4"`` (``ftyp`` box), ``"PNG"``, ``"JPEG"``,
``"GIF"`` (another image appended) and ``"UNKNOWN"`` for anything else.
Text formats (HTML, SCRIPT, PDF) may be preceded by ASCII whitespace or a
UTF-8 byte order mark.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Callable, Optional

__all__ = [
    "MAX_IMAGE_BYTES",
    "TOLERATED_ZERO_PADDING",
    "InspectError",
    "InspectResult",
    "inspect_image",
    "classify_payload",
]

MAX_IMAGE_BYTES = 32 * 1024 * 1024
TOLERATED_ZERO_PADDING = 16

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TS_PACKET = 188
_M2TS_PACKET = 192

# In entropy-coded JPEG data every 0xFF starts a marker: 0xFF followed by
# anything but a stuffed 0x00, a restart marker or another fill 0xFF is a real
# marker. A fixed two-byte pattern keeps the search linear.
_JPEG_SCAN_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_NOT_FF = re.compile(rb"[^\xff]")
_LEADING_SPACE = re.compile(rb"(?:\xef\xbb\xbf)?[ \t\r\n\f\v]*")


class InspectError(Exception):
    """The job fails. `code` and `message` are what the job's Code/Message will carry."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class InspectResult:
    """Outcome of inspecting one image object."""

    pic_size: int
    pic_type: str
    image_end: int
    suspicious: bool
    suspicious_begin: Optional[int] = None
    suspicious_end: Optional[int] = None
    suspicious_size: Optional[int] = None
    suspicious_type: Optional[str] = None


def _invalid(fmt: str, why: str) -> InspectError:
    return InspectError("InvalidImage", f"{fmt} image is truncated or corrupt: {why}")


# --------------------------------------------------------------------------- PNG


def _png_end(data: bytes) -> int:
    n = len(data)
    pos = len(_PNG_SIGNATURE)
    first = True
    while True:
        if pos + 12 > n:
            raise _invalid("PNG", "missing IEND chunk")
        length, ctype = struct.unpack_from(">I4s", data, pos)
        if length > 0x7FFFFFFF:
            raise _invalid("PNG", f"chunk length {length} out of range at offset {pos}")
        if not ctype.isalpha():
            raise _invalid("PNG", f"bad chunk type at offset {pos}")
        if first and ctype != b"IHDR":
            raise _invalid("PNG", "first chunk is not IHDR")
        first = False
        end = pos + 12 + length
        if end > n:
            raise _invalid("PNG", f"chunk {ctype!r} at offset {pos} runs past end of data")
        if ctype == b"IEND":
            return end
        pos = end


# -------------------------------------------------------------------------- JPEG


def _jpeg_end(data: bytes) -> int:
    n = len(data)
    pos = 2  # after SOI
    seen_scan = False
    while True:
        if pos >= n:
            raise _invalid("JPEG", "missing EOI marker")
        if data[pos] != 0xFF:
            raise _invalid("JPEG", f"expected a marker at offset {pos}")
        # Any number of 0xFF fill bytes may precede a marker.
        m = _NOT_FF.search(data, pos)
        if m is None:
            raise _invalid("JPEG", "missing EOI marker")
        pos = m.start()  # marker code byte
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI
            if not seen_scan:
                raise _invalid("JPEG", "EOI before any scan data")
            return pos
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length
            continue
        if marker == 0x00 or marker == 0xD8:
            raise _invalid("JPEG", f"unexpected marker 0xFF{marker:02X} at offset {pos - 2}")
        if pos + 2 > n:
            raise _invalid("JPEG", "segment length runs past end of data")
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            raise _invalid("JPEG", f"bad segment length at offset {pos}")
        pos += length
        if pos > n:
            raise _invalid("JPEG", f"segment 0xFF{marker:02X} runs past end of data")
        if marker == 0xDA:  # SOS: entropy-coded data follows the header
            seen_scan = True
            m = _JPEG_SCAN_MARKER.search(data, pos)
            if m is None:
                raise _invalid("JPEG", "scan data is not terminated by a marker")
            pos = m.start()  # resume segment walking at the 0xFF


# --------------------------------------------------------------------------- GIF


def _gif_skip_sub_blocks(data: bytes, pos: int) -> int:
    n = len(data)
    while True:
        if pos >= n:
            raise _invalid("GIF", "data sub-blocks run past end of data")
        size = data[pos]
        pos += 1
        if size == 0:
            return pos
        pos += size


def _gif_end(data: bytes) -> int:
    n = len(data)
    if n < 13:
        raise _invalid("GIF", "logical screen descriptor is missing")
    packed = data[10]
    pos = 13
    if packed & 0x80:
        pos += 3 * (2 ** ((packed & 0x07) + 1))
    while True:
        if pos >= n:
            raise _invalid("GIF", "missing trailer")
        block = data[pos]
        if block == 0x3B:  # trailer
            return pos + 1
        if block == 0x21:  # extension: label, then data sub-blocks
            if pos + 2 > n:
                raise _invalid("GIF", "extension runs past end of data")
            pos = _gif_skip_sub_blocks(data, pos + 2)
        elif block == 0x2C:  # image descriptor
            if pos + 10 > n:
                raise _invalid("GIF", "image descriptor runs past end of data")
            local = data[pos + 9]
            pos += 10
            if local & 0x80:
                pos += 3 * (2 ** ((local & 0x07) + 1))
            pos += 1  # LZW minimum code size
            pos = _gif_skip_sub_blocks(data, pos)
        else:
            raise _invalid("GIF", f"unknown block 0x{block:02X} at offset {pos}")


# --------------------------------------------------------------------------- BMP

_BMP_UNCOMPRESSED = (0, 3, 6)  # BI_RGB, BI_BITFIELDS, BI_ALPHABITFIELDS
_BMP_DEPTHS = (1, 2, 4, 8, 16, 24, 32, 64)


def _bmp_end(data: bytes) -> int:
    n = len(data)
    if n < 26:
        raise _invalid("BMP", "header is truncated")
    declared, off_bits, dib_size = struct.unpack_from("<I4xII", data, 2)
    if dib_size < 16 and dib_size != 12:
        raise _invalid("BMP", f"bad DIB header size {dib_size}")
    header_end = 14 + dib_size
    if header_end > n:
        raise _invalid("BMP", "DIB header is truncated")
    if off_bits < header_end:
        raise _invalid("BMP", "pixel data offset points inside the header")

    if declared >= header_end and declared >= off_bits:
        end = declared
    else:
        # The size field is optional in practice; derive it from the header.
        if dib_size == 12:  # BITMAPCOREHEADER
            width, height, _planes, bpp = struct.unpack_from("<HHHH", data, 18)
            compression, size_image = 0, 0
        else:
            width, height, _planes, bpp = struct.unpack_from("<iiHH", data, 18)
            compression = size_image = 0
            if dib_size >= 40:
                compression, size_image = struct.unpack_from("<II", data, 30)
        if size_image:
            end = off_bits + size_image
        elif compression in _BMP_UNCOMPRESSED and bpp in _BMP_DEPTHS and width > 0:
            row = ((width * bpp + 31) // 32) * 4
            end = off_bits + row * abs(height)
        else:
            raise _invalid("BMP", "file size cannot be determined from the header")
    if end > n:
        raise _invalid("BMP", f"declared size {end} exceeds the {n} bytes present")
    return end


# -------------------------------------------------------------------------- WebP


def _webp_end(data: bytes) -> int:
    n = len(data)
    (size,) = struct.unpack_from("<I", data, 4)
    if size < 12 or n < 20:
        raise _invalid("WebP", "RIFF container has no chunks")
    if data[12:16] not in (b"VP8 ", b"VP8L", b"VP8X"):
        raise _invalid("WebP", "first chunk is not VP8, VP8L or VP8X")
    (chunk_size,) = struct.unpack_from("<I", data, 16)
    if 12 + 8 + chunk_size > 8 + size:
        raise _invalid("WebP", "first chunk exceeds the RIFF container")
    end = 8 + size
    if end > n:
        raise _invalid("WebP", f"RIFF size {size} exceeds the {n} bytes present")
    # RIFF pads odd-sized data with one byte; accept writers that omit it.
    if size & 1 and end < n:
        end += 1
    return end


# ----------------------------------------------------------------------- detect

_Parser = Callable[[bytes], int]
_FORMATS: tuple[tuple[str, _Parser], ...] = (
    ("png", _png_end),
    ("jpg", _jpeg_end),
    ("gif", _gif_end),
    ("bmp", _bmp_end),
    ("webp", _webp_end),
)
_PARSERS: dict[str, _Parser] = dict(_FORMATS)


def _detect(data: bytes) -> Optional[str]:
    if data.startswith(_PNG_SIGNATURE):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data.startswith(b"BM"):
        return "bmp"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "webp"
    return None


def inspect_image(data: bytes) -> InspectResult:
    """Inspect an image object for data hidden after the image's real end.

    Returns an :class:`InspectResult`. ``image_end`` is the offset just past
    the image's real end; when the trailing bytes are suspicious the
    ``suspicious_*`` fields give the inclusive byte range
    ``[image_end, pic_size - 1]``, its size and the payload type from
    :func:`classify_payload`. Up to 16 trailing 0x00 bytes are tolerated as
    padding and are not suspicious.

    Raises :class:`InspectError` (and nothing else) with code
    ``InvalidInput``, ``InputFileTooLarge``, ``UnsupportedImageFormat`` or
    ``InvalidImage``.
    """
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    elif not isinstance(data, bytes):
        raise InspectError("InvalidInput", f"expected bytes, got {type(data).__name__}")
    size = len(data)
    if size > MAX_IMAGE_BYTES:
        raise InspectError(
            "InputFileTooLarge",
            f"the object is {size} bytes; the limit is {MAX_IMAGE_BYTES} bytes",
        )
    pic_type = _detect(data)
    if pic_type is None:
        raise InspectError(
            "UnsupportedImageFormat",
            "the object is not a PNG, JPEG, GIF, BMP or WebP image",
        )
    try:
        end = _PARSERS[pic_type](data)
    except InspectError:
        raise
    except (IndexError, struct.error, ValueError, OverflowError) as exc:
        # Safety net: every read is bounds-checked, but a corrupt file must
        # never surface as anything other than InvalidImage.
        raise InspectError("InvalidImage", f"{pic_type} image is corrupt: {exc}") from None

    trailing = size - end
    if trailing <= 0 or (trailing <= TOLERATED_ZERO_PADDING and not data[end:].strip(b"\x00")):
        return InspectResult(pic_size=size, pic_type=pic_type, image_end=end, suspicious=False)
    return InspectResult(
        pic_size=size,
        pic_type=pic_type,
        image_end=end,
        suspicious=True,
        suspicious_begin=end,
        suspicious_end=size - 1,
        suspicious_size=trailing,
        suspicious_type=classify_payload(data[end:]),
    )


# ---------------------------------------------------------------------- classify


def _is_mpeg_ts(data: bytes) -> bool:
    if data[:1] != b"\x47":
        return False
    return all(data[i] == 0x47 for i in (_TS_PACKET, 2 * _TS_PACKET) if i < len(data))


def _is_m2ts(data: bytes) -> bool:
    # One sync byte at offset 4 is too weak a signal for arbitrary data, so
    # M2TS needs at least two (192-byte) packets' worth of sync bytes.
    offsets = [4 + k * _M2TS_PACKET for k in range(3)]
    present = [i for i in offsets if i < len(data)]
    return len(present) >= 2 and all(data[i] == 0x47 for i in present)


def _is_pe(data: bytes) -> bool:
    if not data.startswith(b"MZ"):
        return False
    if len(data) >= 0x40:
        (e_lfanew,) = struct.unpack_from("<I", data, 0x3C)
        if e_lfanew + 4 <= len(data):
            return data[e_lfanew : e_lfanew + 4] == b"PE\x00\x00"
    # Too short to hold the PE header (e.g. a truncated stub): trust "MZ".
    return True


_BINARY_MAGIC: tuple[tuple[tuple[bytes, ...], str], ...] = (
    ((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"), "ZIP"),
    ((b"\x7fELF",), "ELF"),
    ((b"Rar!\x1a\x07\x00", b"Rar!\x1a\x07\x01\x00"), "RAR"),
    ((b"7z\xbc\xaf\x27\x1c",), "7Z"),
    ((b"\x1f\x8b",), "GZIP"),
    ((_PNG_SIGNATURE,), "PNG"),
    ((b"\xff\xd8\xff",), "JPEG"),
    ((b"GIF87a", b"GIF89a"), "GIF"),
)
_HTML_PREFIXES = (b"<!doctype html", b"<html", b"<head", b"<body", b"<iframe", b"<svg")
_SCRIPT_PREFIXES = (b"<script", b"<?php", b"#!", b"<%")


def classify_payload(data: bytes) -> str:
    """Name a trailing payload by its magic bytes.

    Returns one of ``"MPEG-TS"``, ``"ZIP"``, ``"PDF"``, ``"ELF"``, ``"PE"``,
    ``"HTML"``, ``"SCRIPT"``, ``"RAR"``, ``"7Z"``, ``"GZIP"``, ``"MP4"``,
    ``"PNG"``, ``"JPEG"``, ``"GIF"`` or ``"UNKNOWN"``. Only a bounded prefix
    of the payload is examined (plus leading whitespace before text formats).
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    for magics, name in _BINARY_MAGIC:
        if data.startswith(magics):
            return name
    if _is_pe(data):
        return "PE"
    if data[4:8] == b"ftyp":
        return "MP4"
    # Checked after GIF: "GIF8" also starts with 0x47, the TS sync byte.
    if _is_mpeg_ts(data):
        return "MPEG-TS"

    start = _LEADING_SPACE.match(data).end()
    head = data[start : start + 32].lower()
    if head.startswith(b"%pdf-"):
        return "PDF"
    if head.startswith(_HTML_PREFIXES):
        return "HTML"
    if head.startswith(_SCRIPT_PREFIXES):
        return "SCRIPT"

    if _is_m2ts(data):
        return "MPEG-TS"
    return "UNKNOWN"
