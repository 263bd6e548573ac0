"""Naming a payload by its magic bytes, and finding known payloads inside damaged data.

``classify_payload`` names whatever follows an image's end. ``find_payload`` looks for the
first *strong* payload signature in a range: one long or validated enough that it does not
turn up by chance in compressed image data (a ZIP local header with a sane version and method,
``%PDF-1.``, an ELF header, an MZ stub whose ``e_lfanew`` points at ``PE\\0\\0``, five MPEG-TS
sync bytes 188 apart, ``<html`` followed by a space or ``>``, ...). Short or weak magics (``#!``,
``<%``, a bare gzip ``1F 8B``) are only recognised at the very start of trailing data.
"""

from __future__ import annotations

import re
import struct
from typing import Optional

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TS_PACKET = 188
_M2TS_PACKET = 192
_LEADING_SPACE = re.compile(rb"(?:\xef\xbb\xbf)?[ \t\r\n\f\v]*")


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


def _pe_header_at(data: bytes, pos: int) -> Optional[bool]:
    """True if the MZ stub at `pos` points at a PE header, False if it points elsewhere,
    None if the data is too short to tell."""
    if pos + 0x40 > len(data):
        return None
    (e_lfanew,) = struct.unpack_from("<I", data, pos + 0x3C)
    if pos + e_lfanew + 4 > len(data):
        return None
    return data[pos + e_lfanew : pos + e_lfanew + 4] == b"PE\x00\x00"


def _is_pe(data: bytes) -> bool:
    if not data.startswith(b"MZ"):
        return False
    # Too short to hold the PE header (e.g. a truncated stub): trust "MZ".
    return _pe_header_at(data, 0) is not False


_BINARY_MAGIC: tuple[tuple[tuple[bytes, ...], str], ...] = (
    ((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"), "ZIP"),
    ((b"\x7fELF",), "ELF"),
    ((b"Rar!\x1a\x07\x00", b"Rar!\x1a\x07\x01\x00"), "RAR"),
    ((b"7z\xbc\xaf\x27\x1c",), "7Z"),
    ((b"\x1f\x8b",), "GZIP"),
    ((PNG_SIGNATURE,), "PNG"),
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


# Strong signatures: each regex matches only where the named payload really starts with
# overwhelming likelihood (at least ~40 bits of fixed or validated content).
_ANY = rb"[\s\S]"
_STRONG: tuple[re.Pattern[bytes], ...] = tuple(
    re.compile(p)
    for p in (
        # ZIP local file header: version needed <= 6.3, a defined compression method.
        rb"PK\x03\x04[\x00-\x3f]\x00" + _ANY + rb"{2}[\x00-\x0e\x12\x13\x5d-\x63]\x00",
        rb"PK\x05\x06\x00\x00\x00\x00",  # end of central directory of a one-disk archive
        rb"PK\x07\x08PK\x03\x04",
        rb"Rar!\x1a\x07(?:\x00|\x01\x00)",
        rb"7z\xbc\xaf\x27\x1c",
        rb"%PDF-[12]\.[0-9]",
        rb"\x7fELF[\x01\x02][\x01\x02]\x01",
        rb"\x1f\x8b\x08[\x00-\x1f]" + _ANY + rb"{4}[\x00\x02\x04][\x00-\x0d\xff]",
        re.escape(PNG_SIGNATURE),
        rb"GIF8[79]a",
        rb"\xff\xd8\xff(?:\xe0" + _ANY + rb"{2}JFIF\x00|\xe1" + _ANY + rb"{2}Exif\x00\x00)",
        rb"\x00\x00[\x00-\x0f]" + _ANY + rb"ftyp[ -~]{4}",
        rb"\x47(?:" + _ANY + rb"{187}\x47){4}",
        rb"<(?i:!doctype\s+html|html[\s>]|script[\s>]|iframe[\s>]|\?php\s)",
    )
)
# "MZ" plus an e_lfanew below 64 KiB; the PE header itself is checked in code, for at most
# _MZ_CHECKS candidates per search so that data made of fake stubs stays linear and fast.
_MZ = re.compile(rb"MZ" + _ANY + rb"{58}" + _ANY + rb"{2}\x00\x00")
_MZ_CHECKS = 4096


def find_payload(data: bytes, start: int, stop: Optional[int] = None) -> Optional[int]:
    """Offset of the first strong payload signature starting in ``[start, stop)``, or None.

    Linear in the size of the range: every pattern is searched at C speed, and the search
    window shrinks to the best offset found so far.
    """
    n = len(data)
    stop = n if stop is None else min(stop, n)
    if start >= stop:
        return None
    best = stop
    for pattern in _STRONG:
        m = pattern.search(data, start, min(n, best + 1024))
        if m is not None and m.start() < best:
            best = m.start()
    pos = start
    if data.find(b"PE\x00\x00", start, min(n, best + 0x10000)) < 0:
        return best if best < stop else None  # no PE header for an MZ stub to point at
    for _ in range(_MZ_CHECKS):
        m = _MZ.search(data, pos, min(n, best + 64))
        if m is None or m.start() >= best:
            break
        if _pe_header_at(data, m.start()):
            best = m.start()
            break
        pos = m.start() + 1
    return best if best < stop else None
