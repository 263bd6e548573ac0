"""Detection of hidden payloads appended after an image's real end.

This is the core of the emulated Cloud Infinite ``ImageInspect`` job. It is
pure (no I/O) and runs in time linear in the input size.

How the image's real end is found
---------------------------------
The end is found by walking the format's structure (``image_formats``), never
from a declared total size and never by searching for the last end marker (an
attacker controls everything after the real end):

* PNG  - the chunk list up to and including the IEND chunk's CRC.
* JPEG - marker segments by their declared lengths (an EXIF thumbnail with its
  own FFD8...FFD9 inside APP1 is skipped), the entropy-coded data after each
  SOS, up to and including EOI; then the pictures that an MPF (multi-picture,
  MPO) index declares.
* GIF  - header, colour tables, extension and image blocks with their data
  sub-blocks, up to and including the 0x3B trailer.
* BMP  - the pixel array from its offset, width, height, bit depth and
  compression (the file-size field is ignored).
* WebP - the RIFF chunks (the RIFF size is only an upper bound).

Quirks that mainstream decoders accept are accepted: junk and fill bytes
between JPEG segments, APPn/COM lengths a few bytes off, nonsense BMP size
fields, a WebP chunk without its pad byte, stray zero bytes between GIF blocks.

Damaged images
--------------
When the structure breaks (bytes that are no chunk, block or marker) or is cut
off, the image ends where the walk stopped, and the data from the start of the
last element that could have swallowed foreign bytes is searched for strong
payload signatures (``image_formats.payloads.find_payload``). So:

* broken structure: the image ends at the break, or earlier where a payload
  signature starts; what follows is suspicious.
* cut-off structure: a payload signature inside the cut-off element is where
  the image ends; without one the image is merely truncated, which decoders
  display, and it is not suspicious.
* no image data at all (no IDAT, scan, image block, pixel or VP8 data): the
  job fails with ``InvalidImage``.

Anything after the real end is suspicious, except a tolerated padding of at
most ``TOLERATED_ZERO_PADDING`` (16) bytes that are all 0x00: some encoders
and upload tools pad files with zeros, and such bytes cannot hide a payload.

Error codes (``InspectError.code``)
-----------------------------------
* ``InvalidInput``           - the input is not a bytes-like object.
* ``InputFileTooLarge``      - the input exceeds ``MAX_IMAGE_BYTES`` (32 MiB).
* ``UnsupportedImageFormat`` - the bytes are not PNG, JPEG, GIF, BMP or WebP
  (this includes empty input).
* ``InvalidImage``           - the signature says image, but there is no image
  data in it.

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
UTF-8 byte order mark. When the suspicious data does not start with a known
magic, it is named after the first strong payload signature inside it, if any.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Optional

from .image_formats import (
    BROKEN,
    COMPLETE,
    PNG_SIGNATURE,
    Walk,
    classify_payload,
    find_payload,
    walk_bmp,
    walk_gif,
    walk_jpeg,
    walk_png,
    walk_webp,
)

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
    damaged: bool = False    # the structure broke or was cut off, with nothing hidden behind it


# ----------------------------------------------------------------------- detect

_Walker = Callable[[bytes], Walk]
_FORMATS: tuple[tuple[str, str, _Walker], ...] = (
    ("png", "PNG", walk_png),
    ("jpg", "JPEG", walk_jpeg),
    ("gif", "GIF", walk_gif),
    ("bmp", "BMP", walk_bmp),
    ("webp", "WebP", walk_webp),
)
_WALKERS: dict[str, tuple[str, _Walker]] = {key: (name, walk) for key, name, walk in _FORMATS}


def _detect(data: bytes) -> Optional[str]:
    if data.startswith(PNG_SIGNATURE):
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


def _image_end(data: bytes, walk: Walk) -> int:
    """Where the image really ends, given how the walk of its structure ended."""
    if walk.status == COMPLETE:
        return walk.end
    found = find_payload(data, walk.search_from, walk.end if walk.status == BROKEN else None)
    if walk.status == BROKEN:
        return walk.end if found is None else found
    return len(data) if found is None else found  # TRUNCATED


def _payload_type(data: bytes, begin: int) -> str:
    name = classify_payload(data[begin:])
    if name == "UNKNOWN":
        found = find_payload(data, begin + 1)
        if found is not None:
            name = classify_payload(data[found:])
    return name


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
    name, walker = _WALKERS[pic_type]
    try:
        walk = walker(data)
    except (IndexError, struct.error, ValueError, OverflowError) as exc:
        # Safety net: every read is bounds-checked, but a corrupt file must
        # never surface as anything other than InvalidImage.
        raise InspectError("InvalidImage", f"{name} image is corrupt: {exc}") from None
    if not walk.image_data:
        raise InspectError("InvalidImage", f"{name} image has no image data: {walk.problem}")
    end = _image_end(data, walk)

    trailing = size - end
    if trailing <= 0 or (trailing <= TOLERATED_ZERO_PADDING and not data[end:].strip(b"\x00")):
        return InspectResult(pic_size=size, pic_type=pic_type, image_end=end, suspicious=False,
                             damaged=walk.status != COMPLETE)
    return InspectResult(
        pic_size=size,
        pic_type=pic_type,
        image_end=end,
        suspicious=True,
        suspicious_begin=end,
        suspicious_end=size - 1,
        suspicious_size=trailing,
        suspicious_type=_payload_type(data, end),
    )
