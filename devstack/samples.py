"""Sample files for the demo and tests, built at run time from real encoders.

Images come from Pillow; payloads are real formats (a ZIP from `zipfile`, an MPEG-TS stream of
188-byte packets with a PAT/PMT and CRC-32/MPEG-2 checksums, HTML with a script).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Dict, List, Optional


def _png(size: int = 96, seed: int = 0) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size))
    px = img.load()
    for y in range(size):
        for x in range(size):
            px[x, y] = ((x * 3 + seed) % 256, (y * 2 + seed) % 256, (x + y) % 256)
    ImageDraw.Draw(img).ellipse((size // 4, size // 4, size * 3 // 4, size * 3 // 4), outline=(255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _jpeg(size: int = 128) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (30, 90, 160))
    d = ImageDraw.Draw(img)
    for i in range(0, size, 16):
        d.line((0, i, size, size - i), fill=(240, 200, 40), width=3)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _crc32_mpeg2(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else (crc << 1)
            crc &= 0xFFFFFFFF
    return crc


def _ts_packet(pid: int, payload: bytes, counter: int, start: bool) -> bytes:
    header = bytes([0x47, (0x40 if start else 0) | (pid >> 8) & 0x1F, pid & 0xFF, 0x10 | (counter & 0x0F)])
    body = payload[:184]
    return header + body + b"\xff" * (184 - len(body))


def _psi(table_id: int, ext: int, body: bytes) -> bytes:
    section = bytes([table_id]) + (0xB000 | (len(body) + 9)).to_bytes(2, "big") + ext.to_bytes(2, "big")
    section += b"\xc1\x00\x00" + body
    return b"\x00" + section + _crc32_mpeg2(section).to_bytes(4, "big")


def mpegts_stream(packets: int = 40) -> bytes:
    """A small but well-formed MPEG-TS: PAT, PMT (one H.264 stream), then PES packets."""
    pat = _psi(0x00, 1, (1).to_bytes(2, "big") + (0xE000 | 0x1000).to_bytes(2, "big"))
    video_pid = (0xE000 | 0x100).to_bytes(2, "big")
    pmt = _psi(0x02, 1, video_pid + b"\xf0\x00" + b"\x1b" + video_pid + b"\xf0\x00")
    out = [_ts_packet(0, pat, 0, True), _ts_packet(0x1000, pmt, 0, True)]
    pes = b"\x00\x00\x01\xe0\x00\x00\x80\x00\x00" + bytes(range(256)) * 2
    for i in range(packets):
        out.append(_ts_packet(0x100, pes[(i * 184) % 256:] if i else pes, i, i == 0))
    return b"".join(out)


def zip_archive() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("payload/readme.txt", "This archive was hidden after the end of a JPEG.\n")
        zf.writestr("payload/run.sh", "#!/bin/sh\necho hidden\n")
    return buf.getvalue()


@dataclass(frozen=True)
class Sample:
    key: str
    body: bytes
    expect_status: str            # the ci-status it must end with, or SKIPPED
    expect_type: str = ""         # suspicious type, or failure reason
    content_type: str = ""
    tags: str = ""                # user tags sent with the upload (URL query form)
    metadata: Optional[Dict[str, str]] = None
    expect_key: Optional[str] = None             # where it must end up (default: see expected_key)
    expect_tags: Optional[Dict[str, str]] = None  # tags it must carry, with these values
    rule: str = "images"

    def expected_key(self, quarantine_prefix: str = "quarantine/") -> str:
        if self.expect_key:
            return self.expect_key
        return quarantine_prefix + self.key if self.expect_status == "SUSPICIOUS" else self.key


def demo_samples(prefix: str = "uploads/") -> List[Sample]:
    png = _png()
    jpg = _jpeg()
    return [
        Sample(f"{prefix}clean.png", png, "CLEAN", content_type="image/png", tags="owner=alice"),
        Sample(f"{prefix}photos/clean.jpg", jpg, "CLEAN", content_type="image/jpeg"),
        Sample(f"{prefix}polyglot-ts.png", _png(seed=7) + mpegts_stream(), "SUSPICIOUS", "MPEG-TS",
               content_type="image/png", tags="owner=mallory", metadata={"origin": "demo"}),
        Sample(f"{prefix}invoice.jpg", jpg + zip_archive(), "SUSPICIOUS", "ZIP", content_type="image/jpeg"),
        Sample(f"{prefix}holiday photos/café ☕ 100%+1.png", _png(seed=40), "CLEAN", content_type="image/png"),
        Sample(f"{prefix}banner.png", _png(seed=90) + b"\n<html><script>alert(1)</script></html>\n", "SUSPICIOUS",
               "HTML", content_type="image/png"),
        Sample(f"{prefix}not-really.png", b"just some text, not an image\n", "FAILED", "UnsupportedImageFormat",
               content_type="image/png"),
        Sample("notes/readme.txt", b"outside the watched prefix\n", "SKIPPED", content_type="text/plain"),
    ]


def tdmq_samples(prefix: str = "inbox/") -> List[Sample]:
    """Scans for the demo's `inbox` rule, whose verdicts come back through a TDMQ topic."""
    return [
        Sample(f"{prefix}scan.png", _png(seed=300), "CLEAN", content_type="image/png", rule="inbox"),
        Sample(f"{prefix}scan-with-zip.jpg", _jpeg() + zip_archive(), "SUSPICIOUS", "ZIP", content_type="image/jpeg",
               rule="inbox"),
    ]


def media_samples(workdir: str) -> List[Sample]:
    """Videos built at run time: people/pets/nothing for VideoTargetRec (from scikit-image's bundled
    public-domain/CC0 photos), a short clip for VideoEnhance, and a long and a short clip for
    DigitalWatermark (which needs more than 90 s)."""
    from pathlib import Path

    from .samples_media import build_long_low_fps_video, build_short_video
    from .samples_video import build_videos

    vids = build_videos(Path(workdir) / "videos")
    clip = build_short_video(Path(workdir) / "clip.mp4")
    long = build_long_low_fps_video(Path(workdir) / "long.mp4")
    short = build_short_video(Path(workdir) / "short.mp4", seconds=4)

    def read(p: Path) -> bytes:
        return Path(p).read_bytes()

    mp4 = "video/mp4"
    return [
        Sample("uploads/videos/person.mp4", read(vids["person"]), "LABELLED", content_type=mp4, rule="videos",
               expect_key="review/uploads/videos/person.mp4", expect_tags={"ci-labels": "person", "review": "people"}),
        Sample("uploads/videos/cat.mp4", read(vids["cat"]), "LABELLED", content_type=mp4, rule="videos",
               expect_tags={"ci-labels": "cat", "pets": "yes"}),
        Sample("uploads/videos/empty.mp4", read(vids["empty"]), "NONE", content_type=mp4, rule="videos",
               expect_tags={"ci-labels": "NONE"}),
        Sample("raw/clip.mp4", read(clip), "SUCCESS", content_type=mp4, rule="enhance-raw",
               expect_tags={"enhanced": "yes"}),
        Sample("publish/long.mp4", read(long), "SUCCESS", content_type=mp4, rule="watermark-publish",
               expect_tags={"watermarked": "yes"}),
        Sample("publish/short.mp4", read(short), "FAILED", "SourceFileError.ContentUnsupported", content_type=mp4,
               rule="watermark-publish"),
    ]
