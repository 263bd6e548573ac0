"""An independent oracle for where each corpus image ends and whether data follows it.

No line of the detector is used here. Each format is judged by a tool that reads it on its own:

* JPEG - ExifTool walks the markers to EOI and reports the bytes after it (its ``Trailer``
  tag), plus the pictures an MPF index declares (``MPImageStart``/``MPImageLength``). Its
  warning "JPEG format error" means it found no EOI.
* PNG  - ExifTool warns "Trailer data after PNG IEND chunk", or that the image is truncated or
  corrupt; hachoir's PNG parser gives the offset where the IEND chunk ends.
* GIF  - hachoir's GIF parser walks the blocks; it stops at the trailer, or at the first byte
  that starts no block (it then reports the rest as raw data).
* BMP  - Pillow says where the pixels start and, for uncompressed data, how far they reach (its
  tile's offset plus stride times height). Compressed (RLE) data reaches as far as the size
  the file declares for it (``biSizeImage``, ExifTool's ``ImageLength``), or where Pillow's RLE
  decoder stops reading when that is zero; an ICC profile or linked-profile name that ExifTool
  finds (``ProfileDataOffset``, ``ProfileSize``, counted from the info header) ends it when it
  lies further on.
* WebP - ExifTool walks the RIFF chunks and warns when what follows is no chunk.

An oracle verdict has ``end`` (where the image ends, or None when the tool found no end: a
truncated or corrupt image), ``trailing`` (whether bytes that are not padding follow the image
and are not declared as part of it), ``begin`` (where those bytes start, when known) and
``readable`` (False when the tool cannot read the file as an image at all).
"""

from __future__ import annotations

import io
import json
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

PADDING = 16  # trailing zero bytes that count as padding, not data


@dataclass
class OracleVerdict:
    tool: str
    end: Optional[int]
    trailing: bool
    begin: Optional[int] = None
    readable: bool = True
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if not self.readable:
            what = "cannot read it"
        elif self.trailing:
            what = "data after the image" + (f" at {self.begin}" if self.begin is not None else "")
        elif self.end is None:
            what = "no end found (truncated or corrupt)"
        else:
            what = "no data after the image"
        notes = "; ".join(self.notes)
        return f"{self.tool}: {what}" + (f" ({notes})" if notes else "")


def _is_padding(tail: bytes) -> bool:
    return len(tail) <= PADDING and not tail.strip(b"\x00")


def run_exiftool(command: list[str], paths: list[Path]) -> dict[Path, dict]:
    """ExifTool's tags for each file, in one run."""
    args = ["-j", "-a", "-G1", "-n", "-Trailer", "-MPImageStart", "-MPImageLength", "-Warning", "-Error",
            "-ImageLength", "-ProfileDataOffset", "-ProfileSize"]
    listing = "\n".join(str(p) for p in paths)
    proc = subprocess.run(command + args + ["-@", "-"], input=listing.encode(), capture_output=True, timeout=600)
    out = json.loads(proc.stdout.decode() or "[]")
    return {Path(entry["SourceFile"]): entry for entry in out}


def _warnings(tags: dict) -> list[str]:
    values = [v for k, v in tags.items() if k.endswith((":Warning", ":Error"))]
    return [str(v) for v in values]


def _binary_length(value: object) -> int:
    # "(Binary data 60191 bytes, use -b option to extract)"
    return int(str(value).split("Binary data ")[1].split(" ")[0])


def jpeg_oracle(data: bytes, tags: dict) -> OracleVerdict:
    notes = _warnings(tags)
    if any(w == "JPEG format error" for w in notes) or "ExifTool:Error" in tags:
        return OracleVerdict("exiftool", None, False, notes=notes)
    trailer = _binary_length(tags["File:Trailer"]) if "File:Trailer" in tags else 0
    end = len(data) - trailer
    # Pictures the MPF index declares (the first one, at offset 0, is this image).
    declared = sorted(
        (int(start), int(start) + int(tags.get(key.replace("Start", "Length"), 0)))
        for key, start in tags.items()
        if key.endswith(":MPImageStart") and start
    )
    if declared:
        notes.append(f"MPF declares {len(declared)} more picture(s)")
    # What follows EOI and no declared picture covers, as [a, b) intervals.
    gaps, pos = [], end
    for start, stop in declared:
        if start > pos:
            gaps.append((pos, min(start, len(data))))
        pos = max(pos, stop)
    if pos < len(data):
        gaps.append((pos, len(data)))
    last_picture = max((stop for _, stop in declared), default=end)
    for a, b in gaps:
        between = b <= last_picture and not data[a:b].strip(b"\x00\xff")
        if between or (b == len(data) and _is_padding(data[a:b])):
            continue  # padding between pictures, or a few zero bytes at the end
        return OracleVerdict("exiftool", end, True, a, notes=notes)
    return OracleVerdict("exiftool", end, False, notes=notes)


def _hachoir_fields(parser_class, data: bytes) -> list:
    import hachoir.core.config as hachoir_config
    from hachoir.core.log import log as hachoir_log
    from hachoir.stream import StringInputStream

    hachoir_config.quiet = True
    hachoir_log.use_print = False  # its parse errors are read from the fields, not printed
    parser = parser_class(StringInputStream(data), validate=False)
    fields = []
    try:
        for f in parser:
            fields.append(f)
    except Exception:  # noqa: BLE001 - a parse error is the oracle's "corrupt"
        fields.append(None)
    return fields


def png_oracle(data: bytes, tags: dict) -> OracleVerdict:
    from hachoir.parser.image.png import PngFile

    notes = _warnings(tags)
    damaged = [w for w in notes if "Truncated" in w or "Corrupted" in w or "did not start with IHDR" in w]
    if damaged:
        return OracleVerdict("exiftool", None, False, readable="did not start" not in damaged[0], notes=notes)
    ends = [f for f in _hachoir_fields(PngFile, data) if f is not None and f.name == "end"]
    end = (ends[0].absolute_address + ends[0].size) // 8 if ends else None
    trailer = any("Trailer data after PNG IEND" in w for w in notes)
    if trailer and end is not None and _is_padding(data[end:]):
        return OracleVerdict("exiftool+hachoir", end, False, notes=notes)
    return OracleVerdict("exiftool+hachoir", end, trailer, end if trailer else None, notes=notes)


def gif_oracle(data: bytes) -> OracleVerdict:
    from hachoir.parser.image.gif import GifFile

    fields = _hachoir_fields(GifFile, data)
    images = [f for f in fields if f is not None and f.name.startswith("image[")]
    if fields and fields[-1] is None or not images:
        return OracleVerdict("hachoir", None, False, readable=bool(images), notes=["parse error inside a block"])
    separators = [f for f in fields if f.name.startswith("separator[")]
    last = separators[-1]
    if last.value == ";":
        end = (last.absolute_address + last.size) // 8
    elif last.value in ("!", ","):
        return OracleVerdict("hachoir", None, False, notes=["cut off inside a block"])
    else:
        end = last.absolute_address // 8  # the byte that starts no block
    if end >= len(data) or _is_padding(data[end:]):
        return OracleVerdict("hachoir", end, False)
    return OracleVerdict("hachoir", end, True, end, notes=[f"byte 0x{data[end]:02X} starts no block"]
                         if last.value != ";" else [])


def bmp_oracle(data: bytes, tags: dict) -> OracleVerdict:
    from PIL import Image

    stream = io.BytesIO(data)
    limit = Image.MAX_IMAGE_PIXELS
    notes = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Image.MAX_IMAGE_PIXELS = None  # headers only: no pixels are decoded but RLE ones
            im = Image.open(stream)
            tile = im.tile[0]
            if tile.codec_name == "raw":
                height = tile.extents[3] - tile.extents[1]
                end = tile.offset + tile.args[1] * height
            elif tile.codec_name == "bmp_rle":
                declared = int(tags.get("File:ImageLength") or 0)
                if declared:
                    end = tile.offset + declared
                    notes.append("RLE data of the declared size")
                else:
                    im.load()
                    end = stream.tell()
            else:
                return OracleVerdict("pillow", None, False, notes=[f"{tile.codec_name} data"])
    except Exception as exc:  # noqa: BLE001 - Pillow refusing the file is the oracle's answer
        return OracleVerdict("pillow", None, False, readable=False, notes=[f"{type(exc).__name__}: {exc}"[:120]])
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if "File:ProfileDataOffset" in tags:
        profile_end = 14 + int(tags["File:ProfileDataOffset"]) + int(tags.get("File:ProfileSize") or 0)
        if profile_end > end and profile_end <= len(data):
            end = profile_end
            notes.append("ends with its colour profile")
    if end >= len(data):
        return OracleVerdict("pillow", end, False, notes=notes + (["pixel data cut off"] if end > len(data) else []))
    if _is_padding(data[end:]):
        return OracleVerdict("pillow", end, False, notes=notes)
    return OracleVerdict("pillow", end, True, end, notes=notes)


def webp_oracle(data: bytes, tags: dict) -> OracleVerdict:
    notes = _warnings(tags)
    errors = [w for w in notes if not w.startswith("[minor]")]
    if errors:
        return OracleVerdict("exiftool", None, True, notes=notes)
    return OracleVerdict("exiftool", len(data), False, notes=notes)


def judge(data: bytes, tags: dict) -> OracleVerdict:
    if data.startswith(b"\xff\xd8"):
        return jpeg_oracle(data, tags)
    if data.startswith(b"\x89PNG"):
        return png_oracle(data, tags)
    if data.startswith(b"GIF"):
        return gif_oracle(data)
    if data.startswith(b"BM"):
        return bmp_oracle(data, tags)
    return webp_oracle(data, tags)
