"""ImageInspect against damaged images, rewritten size fields, decoder-tolerated quirks and
multi-picture (MPF/MPO) files: the image's end comes from its structure, payloads behind a
damaged image are still found, and harmless quirks are not flagged."""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib

import pytest
from PIL import Image

from devstack.emulator.image_inspect import InspectError, InspectResult, inspect_image

from .test_image_inspect import (
    PAYLOADS,
    _noisy,
    _save,
    assert_clean,
    make_bmp,
    make_bmp_1bit,
    make_gif,
    make_gif_animated,
    make_jpeg,
    make_jpeg_exif,
    make_jpeg_progressive,
    make_png,
    make_webp_alpha,
    make_webp_lossless,
    make_webp_lossy,
    make_zip,
)

ZIP = make_zip()
# Payloads whose magic is strong enough to be found inside data the image cannot account for
# (see image_formats.payloads.find_payload); the others are named only where the image ends.
STRONG = ["zip", "pdf", "html", "iframe", "script", "php", "elf", "pe", "ts", "rar", "7z", "png", "jpeg", "gif"]
WEAK = ["shebang", "asp", "random"]


def assert_payload(res: InspectResult, data: bytes, begin: int, payload_type: str) -> None:
    assert res.suspicious is True
    assert (res.suspicious_begin, res.suspicious_end) == (begin, len(data) - 1)
    assert res.suspicious_size == len(data) - begin
    assert res.suspicious_type == payload_type


def decodes(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
    return True


def _segments(jpeg: bytes) -> list[tuple[int, int]]:
    """(offset, marker) of the marker segments before the first SOS of a Pillow JPEG."""
    out, pos = [], 2
    while jpeg[pos + 1] != 0xDA:
        out.append((pos, jpeg[pos + 1]))
        pos += 2 + struct.unpack_from(">H", jpeg, pos + 2)[0]
    return out


def _insert_after_app0(jpeg: bytes, junk: bytes) -> bytes:
    pos, marker = _segments(jpeg)[1]  # the segment after APP0 (a DQT)
    assert _segments(jpeg)[0][1] == 0xE0
    return jpeg[:pos] + junk + jpeg[pos:]


# ------------------------------------------------------- damaged image + payload


def gif_without_trailer() -> bytes:
    gif = make_gif()
    assert gif.endswith(b"\x3b")
    return gif[:-1]


def png_without_iend() -> bytes:
    png = make_png()
    assert png[-12:-4] == b"\x00\x00\x00\x00IEND"
    return png[:-12]


def jpeg_with_junk_between_segments() -> bytes:
    return _insert_after_app0(make_jpeg(), b"\x00\x13\x37junk\xff\x00")


DAMAGED = {
    "gif_without_trailer": (gif_without_trailer, "gif"),
    "png_without_iend": (png_without_iend, "png"),
    "jpeg_with_junk_between_segments": (jpeg_with_junk_between_segments, "jpg"),
}


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_damaged_image_alone_is_clean(name):
    make, pic_type = DAMAGED[name]
    data = make()
    assert decodes(data)  # mainstream decoders open it
    res = inspect_image(data)
    assert_clean(res, data, pic_type)
    assert res.image_end == len(data)


@pytest.mark.parametrize("name", sorted(DAMAGED))
@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_payload_behind_damaged_image(name, payload):
    make, pic_type = DAMAGED[name]
    make_payload, payload_type = PAYLOADS[payload]
    image = make()
    data = image + make_payload()
    res = inspect_image(data)
    assert res.pic_type == pic_type
    assert_payload(res, data, len(image), payload_type)


def jpeg_without_eoi() -> bytes:
    jpeg = make_jpeg()
    return jpeg[: len(jpeg) - 40]  # cut inside the entropy-coded data


def png_cut_inside_idat() -> bytes:
    png = make_png()
    return png[: png.index(b"IDAT") + 60]


CUT = {"jpeg_without_eoi": jpeg_without_eoi, "png_cut_inside_idat": png_cut_inside_idat}


@pytest.mark.parametrize("name", sorted(CUT))
@pytest.mark.parametrize("payload", STRONG)
def test_payload_glued_onto_cut_off_image(name, payload):
    # The cut-off element (scan data, an IDAT whose length runs past the end) swallows the
    # payload as far as the structure can tell; its signature is where the image ends.
    image = CUT[name]()
    make_payload, payload_type = PAYLOADS[payload]
    extra = make_payload()
    data = image + extra
    leading_space = len(extra) - len(extra.lstrip(b" \t\r\n"))  # the signature is "<?php", not "\n"
    assert_payload(inspect_image(data), data, len(image) + leading_space, payload_type)


@pytest.mark.parametrize("name", sorted(CUT))
@pytest.mark.parametrize("payload", WEAK)
def test_weak_payload_inside_cut_off_element_is_not_distinguishable(name, payload):
    # The documented limit: without a strong signature, bytes inside an element that runs to
    # the end of the data are that element's own data as far as any parser can tell. They are
    # never misreported as a failure, and a payload that starts with a marker a decoder would
    # reject is still caught further on.
    image = CUT[name]()
    data = image + PAYLOADS[payload][0]()
    res = inspect_image(data)
    assert res.image_end >= len(image)


def test_jpeg_without_eoi_then_data_with_an_invalid_marker():
    # Data glued where EOI was reads as scan data up to its first FF xx pair; when that is no
    # marker a decoder knows, the image ends there and the rest is suspicious.
    image = jpeg_without_eoi()
    data = image + b"\x12\x34\xff\x02" + bytes(random.Random(3).randrange(256) for _ in range(2000))
    assert_payload(inspect_image(data), data, len(image) + 2, "UNKNOWN")


def test_payload_written_over_the_last_rows_of_a_shortened_bmp():
    # The pixel array would reach into the payload: raw pixel data is searched like scan data.
    for make in (make_bmp, make_bmp_1bit):
        short = make()[:-10]
        data = short + ZIP
        assert_payload(inspect_image(data), data, len(short), "ZIP")


def test_payload_after_a_jpeg_cut_inside_a_marker():
    # The cut leaves a last FF; the payload's first byte then reads as the marker code.
    image = jpeg_without_eoi() + b"\xff"
    for payload in ("zip", "pdf", "html"):
        make_payload, payload_type = PAYLOADS[payload]
        data = image + make_payload()
        assert_payload(inspect_image(data), data, len(image), payload_type)


def test_truncated_images_are_clean():
    for image in (jpeg_without_eoi(), png_cut_inside_idat(), make_gif()[:-20], make_bmp()[:-5]):
        res = inspect_image(image)
        assert (res.suspicious, res.image_end) == (False, len(image))


def test_png_with_corrupt_idat_length_is_damaged_not_suspicious():
    # A length field corrupted inside the image: the chunk then fails its CRC, and the bytes
    # after it are the rest of that chunk, not an appended payload.
    png = make_png()
    idat = png.index(b"IDAT") - 4
    (length,) = struct.unpack_from(">I", png, idat)
    broken = png[:idat] + struct.pack(">I", length - 30) + png[idat + 4 :]
    res = inspect_image(broken)
    assert (res.suspicious, res.image_end) == (False, len(broken))
    data = broken + ZIP
    assert_payload(inspect_image(data), data, len(broken), "ZIP")


def test_payload_after_sound_chunks_then_garbage():
    # The chunk before the break is sound (its CRC matches): what follows is not image.
    png = png_without_iend()
    data = png + b"\x13\x37" * 40
    assert_payload(inspect_image(data), data, len(png), "UNKNOWN")


def _stored_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("notes.txt", "nothing to see here " * 10)
    return buf.getvalue()


def test_payload_that_reads_as_a_huge_chunk_header():
    # Eight letters read as a chunk header whose length (over 1 GiB) no image the service
    # accepts could hold: not a cut-off chunk, but data after the image.
    png = png_without_iend()
    data = png + b"ABCDEFGH" * 100
    assert_payload(inspect_image(data), data, len(png), "UNKNOWN")
    webp = make_webp_alpha()
    forged = _with_u32(webp, 4, len(webp) + 800 - 8)
    data = forged + b"ABCDEFGH" * 100
    assert_payload(inspect_image(data), data, len(webp), "UNKNOWN")


@pytest.mark.parametrize("payload", ["stored_zip", "html", "pdf"])
def test_payload_between_jpeg_segments(payload):
    # Junk between segments is skipped as decoders skip it, unless it holds a payload: the
    # image still decodes, and the payload is where the suspicious data starts.
    extra = _stored_zip() if payload == "stored_zip" else PAYLOADS[payload][0]()
    assert b"\xff" not in extra
    data = _insert_after_app0(make_jpeg(), b"\x00\x00" + extra)
    assert decodes(data)
    expected = "ZIP" if payload == "stored_zip" else PAYLOADS[payload][1]
    assert_payload(inspect_image(data), data, data.index(extra), expected)


def test_unknown_trailing_data_named_after_the_payload_inside():
    png = make_png()
    data = png + b"\x01\x02junk" + ZIP
    assert_payload(inspect_image(data), data, len(png), "ZIP")


def test_no_image_data_is_invalid():
    png = make_png()
    no_idat = png[: png.index(b"IDAT") - 4] + png[-12:]
    jpeg = make_jpeg()
    sos = jpeg.index(b"\xff\xda")
    header_only = jpeg[: sos + 2 + struct.unpack_from(">H", jpeg, sos + 2)[0]]
    gif = make_gif()
    cases = {
        "png without IDAT": no_idat,
        "png without IDAT, then a ZIP": no_idat + ZIP,
        "jpeg cut after the SOS header": header_only,
        "jpeg without a scan, then a ZIP": jpeg[:sos] + ZIP,
        "gif without an image block": gif[:13] + b"\x3b",
        "bmp cut before its pixels": make_bmp()[:54],
        "webp with only VP8X": make_webp_alpha()[:30],
    }
    for what, data in cases.items():
        with pytest.raises(InspectError) as exc:
            inspect_image(data)
        assert exc.value.code == "InvalidImage", what
        assert "no image data" in exc.value.message, what


# ------------------------------------------------------------ declared sizes


def _with_u32(data: bytes, offset: int, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into("<I", out, offset, value)
    return bytes(out)


@pytest.mark.parametrize("make", [make_bmp, make_bmp_1bit])
@pytest.mark.parametrize("field", [2, 34], ids=["bfSize", "biSizeImage"])
def test_bmp_size_field_covering_the_payload(make, field):
    bmp = make()
    total = len(bmp) + len(ZIP)
    value = total if field == 2 else total - struct.unpack_from("<I", bmp, 10)[0]
    forged = _with_u32(bmp, field, value)
    data = forged + ZIP
    assert_payload(inspect_image(data), data, len(bmp), "ZIP")


@pytest.mark.parametrize("make", [make_webp_lossy, make_webp_lossless, make_webp_alpha])
def test_webp_riff_size_covering_the_payload(make):
    webp = make()
    forged = _with_u32(webp, 4, len(webp) + len(ZIP) - 8)
    data = forged + ZIP
    assert_payload(inspect_image(data), data, len(webp), "ZIP")


@pytest.mark.parametrize("make", [make_webp_lossy, make_webp_lossless, make_webp_alpha])
def test_webp_chunk_past_the_riff_end_is_outside_the_image(make):
    webp = make()
    extra = b"JUNK" + struct.pack("<I", 8) + b"hidden!!"
    data = webp + extra
    assert_payload(inspect_image(data), data, len(webp), "UNKNOWN")


def test_webp_odd_chunk_without_pad_byte():
    riff = b"VP8L" + struct.pack("<I", 5) + b"\x2f\x00\x00\x00\x00"  # odd size, pad left out
    data = b"RIFF" + struct.pack("<I", 4 + len(riff)) + b"WEBP" + riff
    res = inspect_image(data)
    assert_clean(res, data, "webp")


# ------------------------------------------------------------------- quirks


QUIRKS_JPEG = {
    "ff00_between_segments": lambda: _insert_after_app0(make_jpeg(), b"\xff\x00"),
    "junk_between_segments": lambda: _insert_after_app0(make_jpeg(), b"\x01\x02\x03\x04\x05"),
    "fill_and_ff00": lambda: _insert_after_app0(make_jpeg(), b"\xff\x00\xff\xff"),
    "junk_after_exif": lambda: _insert_after_app0(make_jpeg_exif(), b"\x00\x00\x00"),
    "junk_in_progressive": lambda: _insert_after_app0(make_jpeg_progressive(), b"\x00\xff\x00"),
}


@pytest.mark.parametrize("name", sorted(QUIRKS_JPEG))
def test_jpeg_junk_between_segments_is_tolerated(name):
    data = QUIRKS_JPEG[name]()
    assert decodes(data)
    res = inspect_image(data)
    assert_clean(res, data, "jpg")
    assert res.image_end == len(data)
    with_zip = data + ZIP
    assert_payload(inspect_image(with_zip), with_zip, len(data), "ZIP")


def _app_length_off(jpeg: bytes, marker: int, delta: int) -> bytes:
    pos = next(p for p, m in _segments(jpeg) if m == marker)
    (length,) = struct.unpack_from(">H", jpeg, pos + 2)
    out = bytearray(jpeg)
    struct.pack_into(">H", out, pos + 2, length + delta)
    return bytes(out)


def _jpeg_with_comment() -> bytes:
    return _save(_noisy("RGB", (40, 30)), "JPEG", comment=b"a comment, longer than 16 bytes")


_APPN_CASES = [
    (marker, make, delta)
    for marker, make in ((0xE0, make_jpeg), (0xE1, make_jpeg_exif), (0xFE, _jpeg_with_comment))
    for delta in (-4, -3, -2, -1, 1, 2, 3, 4, 16, -16)
    if not (marker == 0xE0 and delta == -16)  # APP0 is 16 bytes: a length of 0 is not "slightly off"
]


@pytest.mark.parametrize("marker, make, delta", _APPN_CASES)
def test_appn_length_slightly_off_is_tolerated(marker, make, delta):
    jpeg = make()
    data = _app_length_off(jpeg, marker, delta)
    res = inspect_image(data)
    assert_clean(res, data, "jpg")
    assert res.image_end == len(data)
    with_zip = data + ZIP
    assert_payload(inspect_image(with_zip), with_zip, len(data), "ZIP")


@pytest.mark.parametrize("make", [make_bmp, make_bmp_1bit])
@pytest.mark.parametrize("value", [0, 1, 10, 0x7FFFFFFF, 0xFFFFFFFF, 0x12345678])
def test_bmp_nonsense_size_fields_are_tolerated(make, value):
    bmp = make()
    for offset in (2, 34):  # bfSize, biSizeImage
        data = _with_u32(bmp, offset, value)
        assert decodes(data)
        res = inspect_image(data)
        assert_clean(res, data, "bmp")
        assert res.image_end == len(bmp)
        with_zip = data + ZIP
        assert_payload(inspect_image(with_zip), with_zip, len(bmp), "ZIP")


def test_bmp_rle8_walked_to_end_of_bitmap():
    # Pillow writes no RLE, so the file is built by hand and checked by Pillow's decoder.
    rows = b"".join(bytes([4, i, 0, 0]) for i in range(6))  # one 4-pixel run per row, EOL
    pixels = rows + b"\x00\x01"
    palette = bytes(4 * 256)
    header = struct.pack("<IiiHHIIiiII", 40, 4, 6, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    off = 14 + 40 + len(palette)
    bmp = b"BM" + struct.pack("<IHHI", 0, 0, 0, off) + header + palette + pixels
    assert decodes(bmp)
    assert_clean(inspect_image(bmp), bmp, "bmp")
    data = bmp + ZIP
    assert_payload(inspect_image(data), data, len(bmp), "ZIP")


def test_gif_stray_zero_before_trailer_is_tolerated():
    gif = make_gif()
    data = gif[:-1] + b"\x00\x00\x3b"
    assert_clean(inspect_image(data), data, "gif")


# -------------------------------------------------------- concatenated GIFs


@pytest.mark.parametrize("first", [make_gif, make_gif_animated, gif_without_trailer])
def test_two_concatenated_gifs(first):
    image = first()
    data = image + make_gif()
    assert_payload(inspect_image(data), data, len(image), "GIF")


# ---------------------------------------------------------------- MPF / MPO


def _mpf_app2(count: int, first_size: int, sizes: list[int], offsets: list[int]) -> bytes:
    """An APP2 MPF segment (little-endian MP header) declaring `count` pictures."""
    ifd_entries = 3
    ifd_len = 2 + 12 * ifd_entries + 4
    entries_off = 8 + ifd_len
    ifd = struct.pack("<H", ifd_entries)
    ifd += struct.pack("<HHI4s", 0xB000, 7, 4, b"0100")
    ifd += struct.pack("<HHII", 0xB001, 4, 1, count)
    ifd += struct.pack("<HHII", 0xB002, 7, 16 * count, entries_off)
    ifd += struct.pack("<I", 0)
    entries = struct.pack("<IIIHH", 0x20030000, first_size, 0, 0, 0)
    for size, offset in zip(sizes, offsets):
        entries += struct.pack("<IIIHH", 0x00020002, size, offset, 0, 0)
    body = b"MPF\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd + entries
    return b"\xff\xe2" + struct.pack(">H", 2 + len(body)) + body


def build_mpo(pictures: list[bytes], gaps: list[bytes] | None = None, shift: int = 0) -> bytes:
    """A multi-picture file: the first picture carries an MPF index whose MP Entries give each
    further picture's offset from the MP header (the TIFF byte-order mark)."""
    gaps = gaps or [b""] * (len(pictures) - 1)
    first, rest = pictures[0], pictures[1:]
    app2_len = len(_mpf_app2(len(pictures), 0, [0] * len(rest), [0] * len(rest)))
    first_len = len(first) + app2_len
    base = 2 + 4 + 4  # SOI, APP2 marker and length, "MPF\0"
    offsets, pos = [], first_len
    for gap, picture in zip(gaps, rest):
        pos += len(gap)
        offsets.append(pos - base + shift)
        pos += len(picture)
    app2 = _mpf_app2(len(pictures), first_len, [len(p) for p in rest], offsets)
    out = first[:2] + app2 + first[2:]
    for gap, picture in zip(gaps, rest):
        out += gap + picture
    return out


def _pictures(k: int) -> list[bytes]:
    return [_save(_noisy("RGB", (32, 24), seed=s), "JPEG", quality=80) for s in range(k)]


def test_mpo_written_by_pillow_is_clean():
    first, second = (_noisy("RGB", (40, 30), seed=s) for s in (1, 2))
    buf = io.BytesIO()
    first.save(buf, "MPO", save_all=True, append_images=[second])
    mpo = buf.getvalue()
    with Image.open(io.BytesIO(mpo)) as im:
        assert im.format == "MPO" and im.n_frames == 2
    assert_clean(inspect_image(mpo), mpo, "jpg")
    data = mpo + ZIP
    assert_payload(inspect_image(data), data, len(mpo), "ZIP")


@pytest.mark.parametrize("k", [2, 3])
def test_mpo_built_from_its_index_is_clean(k):
    mpo = build_mpo(_pictures(k))
    with Image.open(io.BytesIO(mpo)) as im:
        assert im.n_frames == k
        for frame in range(k):
            im.seek(frame)
            im.load()
    res = inspect_image(mpo)
    assert_clean(res, mpo, "jpg")
    assert res.image_end == len(mpo)


def test_mpo_with_padding_between_pictures_is_clean():
    # Cameras align pictures with zero (or FF) padding, e.g. a Fujifilm MPO pads 45 bytes.
    mpo = build_mpo(_pictures(3), gaps=[bytes(45), b"\xff" * 7])
    assert_clean(inspect_image(mpo), mpo, "jpg")


@pytest.mark.parametrize("payload", ["zip", "html", "pe", "random"])
def test_mpo_then_payload(payload):
    mpo = build_mpo(_pictures(2))
    make_payload, payload_type = PAYLOADS[payload]
    data = mpo + make_payload()
    assert_payload(inspect_image(data), data, len(mpo), payload_type)


def test_payload_between_declared_pictures():
    pictures = _pictures(2)
    mpo = build_mpo(pictures, gaps=[ZIP])  # the index points past the ZIP at picture 2
    first_end = mpo.index(ZIP)
    assert_payload(inspect_image(mpo), mpo, first_end, "ZIP")


def test_concatenated_jpegs_without_index_stay_suspicious():
    first, second = _pictures(2)
    data = first + second
    assert_payload(inspect_image(data), data, len(first), "JPEG")
    exif = make_jpeg_exif()
    data = exif + second
    assert_payload(inspect_image(data), data, len(exif), "JPEG")


def test_picture_not_where_the_index_says_is_undeclared():
    pictures = _pictures(2)
    for shift in (-2, 1, 10_000_000):
        mpo = build_mpo(pictures, shift=shift)
        first_end = len(mpo) - len(pictures[1])
        assert_payload(inspect_image(mpo), mpo, first_end, "JPEG")


def test_mpf_index_of_a_later_picture_declares_nothing():
    # Only the first picture's index counts: an index inside an appended picture does not
    # make the appended picture (or what follows) part of the image.
    first = _pictures(1)[0]
    appended = build_mpo(_pictures(2))
    data = first + appended
    assert_payload(inspect_image(data), data, len(first), "JPEG")


def test_corrupt_mpf_index_is_ignored():
    mpo = build_mpo(_pictures(2))
    app2 = mpo.index(b"MPF\x00")
    mp_entry_tag = mpo.index(b"\x02\xb0\x07\x00", app2)
    corruptions = {
        "byte order": (app2 + 4, b"XX"),
        "IFD offset": (app2 + 8, b"\xff\xff\xff\x7f"),
        "MP Entry tag": (mp_entry_tag, b"\x99\xb0"),
    }
    for what, (offset, value) in corruptions.items():
        broken = mpo[:offset] + value + mpo[offset + len(value) :]
        res = inspect_image(broken)
        assert (res.suspicious, res.suspicious_type) == (True, "JPEG"), what


def test_crc_helper_matches_pillow_png():
    # Guard for the damaged-PNG fixtures: Pillow's chunks carry valid CRCs.
    png = make_png()
    idat = png.index(b"IDAT") - 4
    (length,) = struct.unpack_from(">I", png, idat)
    (crc,) = struct.unpack_from(">I", png, idat + 8 + length)
    assert zlib.crc32(png[idat + 4 : idat + 8 + length]) == crc
