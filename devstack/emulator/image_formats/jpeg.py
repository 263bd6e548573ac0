"""JPEG: marker segments, entropy-coded data after each SOS, up to EOI; MPF pictures after it.

The walk follows what libjpeg does while it reads markers:

* Segments are skipped by their declared lengths, so an EXIF thumbnail with its own
  FFD8...FFD9 inside APP1 is never mistaken for the end.
* Bytes between segments that are not a marker (junk, ``FF 00`` pairs) are skipped up to the
  next marker, as libjpeg's ``next_marker`` does ("extraneous bytes before marker"). Any number
  of ``FF`` fill bytes may precede a marker.
* An APPn or COM segment whose declared length is a few bytes off (at most ``APP_LENGTH_SLACK``)
  is realigned on the nearest real marker.
* The tables a decoder needs (DQT, DHT, SOF, SOS, DRI) must be well-formed, and only markers a
  decoder knows may appear: the first thing that fails either check ends the image.
* Entropy-coded data runs to the first marker that is not a restart marker or a stuffed
  ``FF 00``. It cannot be checked without decoding it, so it is searched for payload
  signatures: a payload glued on where the EOI was removed ends the image where it starts.
* A second SOI ends the image: another picture starts there.

After EOI, pictures declared by a Multi-Picture Format index (APP2 ``MPF\\0``: a TIFF structure
whose MP Entries give each picture's offset from the MP header) belong to the image when they
follow on directly, or after zero/``FF`` padding. Each is walked the same way.
"""

from __future__ import annotations

import re
import struct
from typing import Optional

from .payloads import find_payload
from .walk import BROKEN, COMPLETE, TRUNCATED, Walk

APP_LENGTH_SLACK = 16

# Between segments: a marker is FF followed by anything but 00 (stuffing) or FF (fill).
_MARKER = re.compile(rb"\xff[^\x00\xff]")
# In entropy-coded data FF 00 is a stuffed byte and FF D0-D7 are restart markers.
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_NOT_FF = re.compile(rb"[^\xff]")

_SOI, _EOI, _SOS, _DQT, _DHT, _DRI, _COM, _APP2 = 0xD8, 0xD9, 0xDA, 0xDB, 0xC4, 0xDD, 0xFE, 0xE2
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_APP_OR_COM = frozenset(range(0xE0, 0xF0)) | {_COM}
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn, TEM
# Segments with a length: SOFn, DHT, DAC, SOS, DQT, DNL, DRI, DHP, EXP, APPn, COM.
_WITH_LENGTH = _SOF | {_DHT, 0xCC, _SOS, _DQT, 0xDC, _DRI, 0xDE, 0xDF} | _APP_OR_COM


def _dqt_ok(data: bytes, pos: int, end: int) -> bool:
    while pos < end:
        precision, table = data[pos] >> 4, data[pos] & 0x0F
        if precision > 1 or table > 3:
            return False
        pos += 1 + 64 * (precision + 1)
    return pos == end


def _dht_ok(data: bytes, pos: int, end: int) -> bool:
    while pos < end:
        tclass, table = data[pos] >> 4, data[pos] & 0x0F
        if tclass > 1 or table > 3 or pos + 17 > end:
            return False
        count = sum(data[pos + 1 : pos + 17])
        if count > 256:
            return False
        pos += 17 + count
    return pos == end


def _segment_ok(data: bytes, marker: int, pos: int, end: int) -> bool:
    """Whether the body ``data[pos:end]`` of a segment is well-formed, for the segments a
    decoder must understand."""
    size = end - pos
    if marker == _DQT:
        return _dqt_ok(data, pos, end)
    if marker == _DHT:
        return _dht_ok(data, pos, end)
    if marker in _SOF:
        return size >= 6 and 2 <= data[pos] <= 16 and data[pos + 5] >= 1 and size == 6 + 3 * data[pos + 5]
    if marker == _SOS:
        return size >= 1 and 1 <= data[pos] <= 4 and size == 4 + 2 * data[pos]
    if marker == _DRI:
        return size == 2
    return True


def _segment_at(data: bytes, q: int, image_data: bool) -> bool:
    """Whether a well-formed marker or segment starts at offset ``q`` (which holds FF)."""
    n = len(data)
    if q + 1 >= n or data[q] != 0xFF:
        return False
    marker = data[q + 1]
    if marker == _EOI:
        return image_data
    if marker not in _WITH_LENGTH or q + 4 > n:
        return False
    (length,) = struct.unpack_from(">H", data, q + 2)
    end = q + 2 + length
    if length < 2 or end > n or not _segment_ok(data, marker, q + 4, end):
        return False
    return end == n or data[end] == 0xFF or marker == _SOS


def _realign(data: bytes, declared_end: int, body: int, image_data: bool) -> int:
    """Where the segment after an APPn/COM segment really starts when the declared length
    misses it by a few bytes: the nearest well-formed segment, else the declared end."""
    lo = max(body, declared_end - APP_LENGTH_SLACK)
    hi = min(len(data) - 1, declared_end + APP_LENGTH_SLACK)
    candidates = [q for q in range(lo, hi + 1) if data[q] == 0xFF]
    for q in sorted(candidates, key=lambda q: abs(q - declared_end)):
        if _segment_at(data, q, image_data):
            return q
    return declared_end


def _mpf_pictures(data: bytes, base: int, end: int) -> list[int]:
    """Absolute offsets of the pictures after the first one that an MPF index declares.
    ``base`` is the MP header (the TIFF byte-order mark); MP Entry offsets count from it."""
    if base + 8 > end:
        return []
    order = data[base : base + 2]
    if order not in (b"II", b"MM"):
        return []
    e = "<" if order == b"II" else ">"
    magic, ifd = struct.unpack_from(e + "HI", data, base + 2)
    if magic != 42 or base + ifd + 2 > end:
        return []
    (count,) = struct.unpack_from(e + "H", data, base + ifd)
    starts = []
    for i in range(count):
        entry = base + ifd + 2 + 12 * i
        if entry + 12 > end:
            break
        tag, _type, size, value = struct.unpack_from(e + "HHII", data, entry)
        if tag != 0xB002 or size < 16:
            continue
        for k in range(size // 16):
            mp_entry = base + value + 16 * k
            if mp_entry + 16 > end:
                break
            (offset,) = struct.unpack_from(e + "I", data, mp_entry + 8)
            if offset:
                starts.append(base + offset)
    return sorted(set(starts))


def _with_declared_pictures(data: bytes, end: int, starts: list[int]) -> Walk:
    """Extend a first picture ending at ``end`` over the MPF-declared pictures that follow it."""
    pos = end
    for start in starts:
        if start < pos:
            continue
        if start >= len(data) or data[pos:start].strip(b"\x00\xff") or not data.startswith(b"\xff\xd8", start):
            break
        picture = walk_jpeg(data, start, multi_picture=False)
        if not picture.image_data:
            break
        if picture.status != COMPLETE:
            return picture
        pos = picture.end
    return Walk(COMPLETE, pos, True)


def walk_jpeg(data: bytes, start: int = 0, *, multi_picture: bool = True) -> Walk:
    """Walk one JPEG picture starting at ``start`` (its SOI).

    A payload found in junk between segments ends the image where it starts, but the walk
    goes on past it as a decoder would, to learn whether there is image data at all."""
    walk, payload = _walk_jpeg(data, start, multi_picture)
    if payload is None:
        return walk
    return Walk(BROKEN, payload, walk.image_data, payload, f"a payload at offset {payload} between segments")


def _walk_jpeg(data: bytes, start: int, multi_picture: bool) -> tuple[Walk, Optional[int]]:
    n = len(data)
    pos = start + 2
    last = start
    image_data = False
    pictures: Optional[list[int]] = None
    payload: Optional[int] = None
    while True:
        m = _MARKER.search(data, pos)
        marker_pos = m.start() if m else n
        junk_end = pos + len(data[pos:marker_pos].rstrip(b"\xff"))
        if junk_end > pos:
            if payload is None:
                payload = find_payload(data, pos, junk_end)
            if m is None:
                return Walk(BROKEN, pos, image_data, last, f"data at offset {pos} is not JPEG (no EOI)"), payload
        if m is None:
            return Walk(TRUNCATED, pos, image_data, pos, "missing EOI"), payload
        marker = data[marker_pos + 1]
        if marker == _EOI:
            if not image_data:
                return Walk(BROKEN, marker_pos, False, last, "EOI before any scan data"), payload
            end = marker_pos + 2
            return _with_declared_pictures(data, end, pictures) if pictures else Walk(COMPLETE, end, True), payload
        if marker == _SOI:
            return Walk(BROKEN, pos, image_data, last, f"another picture starts at offset {marker_pos}"), payload
        if marker in _STANDALONE:
            pos = marker_pos + 2
            continue
        if marker not in _WITH_LENGTH:
            # The image ends at the junk or fill before the marker, or after a last FF when the
            # "marker" is a payload's first byte (PK, %P, <h, ...).
            if find_payload(data, marker_pos + 1, marker_pos + 2) is not None:
                pos = marker_pos + 1
            problem = f"unknown marker 0xFF{marker:02X} at offset {marker_pos}"
            return Walk(BROKEN, pos, image_data, last, problem), payload
        if marker_pos + 4 > n:
            return Walk(TRUNCATED, marker_pos, image_data, marker_pos, "segment length is cut off"), payload
        (length,) = struct.unpack_from(">H", data, marker_pos + 2)
        body, seg_end = marker_pos + 4, marker_pos + 2 + length
        if length < 2:
            return Walk(BROKEN, pos, image_data, last, f"bad segment length at offset {marker_pos}"), payload
        if seg_end > n:
            problem = f"segment at offset {marker_pos} is cut off"
            return Walk(TRUNCATED, marker_pos, image_data, marker_pos, problem), payload
        if not _segment_ok(data, marker, body, seg_end):
            problem = f"malformed segment 0xFF{marker:02X} at offset {marker_pos}"
            return Walk(BROKEN, pos, image_data, last, problem), payload
        if marker == _APP2 and multi_picture and pictures is None and data.startswith(b"MPF\x00", body):
            pictures = _mpf_pictures(data, body + 4, seg_end)
        if marker in _APP_OR_COM and seg_end < n and not _segment_at(data, seg_end, image_data):
            seg_end = _realign(data, seg_end, body, image_data)
        last, pos = marker_pos, seg_end
        if marker == _SOS:
            scan = _SCAN_END.search(data, seg_end)
            scan_end = scan.start() if scan else n
            if _NOT_FF.search(data, seg_end, scan_end):
                image_data = True
            found = find_payload(data, seg_end, scan_end)
            if found is not None:
                return Walk(BROKEN, found, image_data, found, f"a payload at offset {found} inside scan data"), payload
            if scan is None:
                return Walk(TRUNCATED, seg_end, image_data, n, "scan data runs to the end (no EOI)"), payload
            pos = scan_end
