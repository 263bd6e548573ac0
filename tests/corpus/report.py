"""The detector against the oracle on every corpus file, and the table in docs/detector.md.

``python -m tests.corpus.report`` fetches the corpus (see ``sources``) and rewrites
docs/detector.md; the corpus test checks that the committed table is the current one.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from devstack.emulator.image_inspect import InspectError, inspect_image

from . import explanations, oracle, sources

DOC = Path(__file__).resolve().parents[2] / "docs" / "detector.md"

AGREE = "agree"
BEGIN_DIFFERS = "agree (begin differs, explained)"
FAILED = "FAILED (explained)"
FALSE_POSITIVE = "FALSE POSITIVE"
MISSED = "MISSED PAYLOAD"


@dataclass
class Row:
    name: str
    size: int
    pic_type: str
    verdict: str  # CLEAN, SUSPICIOUS or FAILED
    begin: Optional[int]
    payload_type: Optional[str]
    image_end: Optional[int]
    message: str
    judged: oracle.OracleVerdict

    @property
    def outcome(self) -> str:
        if self.verdict == "FAILED":
            return FAILED
        if self.verdict == "SUSPICIOUS" and not self.judged.trailing:
            return FALSE_POSITIVE
        if self.verdict != "SUSPICIOUS" and self.judged.trailing:
            return MISSED
        if self.verdict == "SUSPICIOUS" and self.judged.begin not in (None, self.begin):
            return BEGIN_DIFFERS
        return AGREE

    def detector_text(self) -> str:
        if self.verdict == "SUSPICIOUS":
            return f"SUSPICIOUS {self.payload_type} at {self.begin}"
        if self.verdict == "FAILED":
            return "FAILED InvalidImage"
        return "CLEAN" if self.image_end == self.size else f"CLEAN (image ends at {self.image_end})"


def load() -> list[Row]:
    """Every corpus file with the detector's and the oracle's verdicts. Raises
    ``sources.Unavailable`` when the corpus or ExifTool cannot be had."""
    files = sources.corpus_files()
    tags = oracle.run_exiftool(sources.exiftool(), [path for _, path in files])
    rows = []
    for name, path in files:
        data = path.read_bytes()
        judged = oracle.judge(data, tags.get(path, {}))
        try:
            res = inspect_image(data)
        except InspectError as exc:
            kind = {b"\xff": "jpg", b"\x89": "png", b"G": "gif", b"B": "bmp", b"R": "webp"}[data[:1]]
            rows.append(Row(name, len(data), kind, "FAILED", None, None, None, exc.message, judged))
            continue
        verdict = "SUSPICIOUS" if res.suspicious else "CLEAN"
        rows.append(Row(name, len(data), res.pic_type, verdict, res.suspicious_begin, res.suspicious_type,
                        res.image_end, "", judged))
    return rows


def _explanation(row: Row) -> str:
    if row.outcome == FAILED:
        return explanations.FAILED.get(row.name, "") + f" Detector: {row.message}."
    if row.outcome == BEGIN_DIFFERS:
        return explanations.BEGIN_DIFFERS.get(row.name, "")
    return ""


_INTRO = """\
# ImageInspect detector: how it finds an image's end, and a real-world check

The emulated `ImageInspect` job (`devstack/emulator/image_inspect.py`, format walkers in
`devstack/emulator/image_formats/`) reports data hidden after an image's real end. It finds the
end from the image's structure, never from a declared total size:

| Format | Where the image ends |
| --- | --- |
| PNG | the end of the IEND chunk's CRC, walking the chunks from the signature |
| JPEG | EOI, walking marker segments and the entropy-coded data after each SOS; then the \
pictures an MPF (MPO) index declares |
| GIF | the 0x3B trailer, walking extension and image blocks with their data sub-blocks |
| BMP | the pixel array: offset, width, height, bit depth (RLE data to its end-of-bitmap \
escape; an embedded JPEG/PNG walked as such); a trailing V5 colour profile |
| WebP | the RIFF chunks (one VP8/VP8L chunk for a simple file, every chunk up to the RIFF end for an extended one) |

What decoders tolerate is tolerated: junk and `FF 00` between JPEG segments, APPn/COM lengths a
few bytes off, nonsense BMP size fields (`bfSize`, `biSizeImage`, a `bfOffBits` inside the
palette), a missing WebP pad byte, stray zero bytes between GIF blocks, zero or `FF` padding
between MPF pictures, and up to 16 zero bytes at the end of a file.

When the structure breaks or is cut off, the image ends where the walk stopped, or earlier at
the first strong payload signature found from the start of the last element that could have
swallowed foreign bytes (a ZIP local header, `%PDF-1.`, an ELF or PE header, five MPEG-TS sync
bytes, `<html`, another PNG/GIF/JFIF/EXIF JPEG, ...). A damaged image followed by a payload is
SUSPICIOUS with the payload's type; a merely truncated image is not suspicious (decoders display
it; what the real service answers is unverified, so the emulator's `damaged_image` switch, `clean`
by default, can make it FAILED with `InvalidImage` instead, and the tests run both); only a file
with no image data at all (no IDAT, scan data, image block, pixels or VP8 data)
is FAILED with `InvalidImage`. A payload without a strong signature that lies inside a cut-off
element (scan data running to the end of the file, a chunk whose length runs past it) cannot be
told apart from that element's own data.

Pictures declared by an MPF index (APP2 `MPF\\0`: MP Entry offsets counted from the MP header)
belong to the image when each starts with an SOI where the index says, right after the previous
picture or after padding. A picture the index does not declare, such as a second JPEG simply
appended, stays SUSPICIOUS with type `JPEG`; likewise a second GIF appended to a GIF is
SUSPICIOUS with type `GIF`.

## Real-world corpus

`tests/corpus/` checks the detector on {total} images nobody on this project made:
Pillow's published test images (the `Tests/images` folder of the `{pillow}` source distribution,
fetched from PyPI with `pip download`: photographs, camera MPO files, the bmpsuite good, bad and
questionable BMPs, APNGs, and files that reproduce decoder bugs) and the sample images that
scikit-image ships in its wheel. They are cached under `~/.cache/ciflow/corpus`
(`CIFLOW_CORPUS_DIR`). `make test` runs it; without the registries, or without `perl` and
`npm`, the test is skipped and says why.

The oracle shares no code with the detector:

* JPEG: ExifTool ({exiftool}, the npm package's Perl distribution) walks to EOI and reports the
  bytes after it (`Trailer`) and the pictures an MPF index declares (`MPImageStart`,
  `MPImageLength`); "JPEG format error" means it found no EOI.
* PNG: ExifTool's "Trailer data after PNG IEND chunk", "Truncated PNG image" and "Corrupted PNG
  image"; hachoir's PNG parser gives where IEND ends.
* GIF: hachoir's GIF parser, which stops at the trailer or at a byte that starts no block.
* BMP: Pillow's own pixel offset and extent (tile offset plus stride times height), the declared
  size of RLE data, and the colour profile location ExifTool reads.
* WebP: ExifTool's RIFF walk, which warns when what follows is no chunk.

Data after the oracle's end counts as a payload unless it is zero padding (at most 16 bytes at
the end, or zero/`FF` bytes between MPF pictures) or a picture the MPF index declares. A FALSE
POSITIVE is a SUSPICIOUS verdict where the oracle sees no such data; a MISSED PAYLOAD is a
CLEAN verdict where it does. Where the oracle found no end (a truncated or corrupt file) it
claims no payload. Every FAILED verdict, and every suspicious start that differs from the
oracle's, is explained below. The test also appends a ZIP to every corpus image, and rewrites
the BMP file-size field and the WebP RIFF size to cover it, and checks that each comes back
SUSPICIOUS (`ZIP`) from the image's end.

### Summary

| | Files |
| --- | --- |
{summary}

### Verdicts that are not a plain CLEAN, and files the oracle has something to say about

| File | Bytes | Detector | Oracle | Outcome | Explanation |
| --- | --- | --- | --- | --- | --- |
{notable}

### All files

| File | Bytes | Detector | Oracle | Outcome |
| --- | --- | --- | --- | --- |
{everything}
"""


# Oracle notes that say nothing about where the image ends.
_ROUTINE = ("[minor] Text/EXIF chunk", "[minor] Improper EXIF header", "[minor] Odd offset", "[minor] File contains")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(rows: list[Row]) -> str:
    outcomes = collections.Counter(row.outcome for row in rows)
    by_format = collections.Counter(row.pic_type for row in rows)
    verdicts = collections.Counter(row.verdict for row in rows)
    summary = [f"| {fmt.upper()} files | {n} |" for fmt, n in sorted(by_format.items())]
    summary += [f"| Detector {v} | {n} |" for v, n in sorted(verdicts.items())]
    for outcome in (AGREE, BEGIN_DIFFERS, FAILED, FALSE_POSITIVE, MISSED):
        summary.append(f"| {outcome} | {outcomes.get(outcome, 0)} |")
    notable, everything = [], []
    for row in rows:
        cells = [row.name, str(row.size), row.detector_text(), row.judged.describe(), row.outcome]
        everything.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        plain = row.verdict == "CLEAN" and row.judged.readable and row.judged.end is not None
        plain = plain and not any(not note.startswith(_ROUTINE) for note in row.judged.notes)
        if not plain or row.outcome != AGREE or row.image_end != row.size:
            notable.append("| " + " | ".join(_cell(c) for c in [*cells, _explanation(row)]) + " |")
    return _INTRO.format(
        total=len(rows),
        pillow=sources.PILLOW_SDIST,
        exiftool=sources.EXIFTOOL_NPM,
        summary="\n".join(summary),
        notable="\n".join(notable),
        everything="\n".join(everything),
    )


def main() -> None:
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render(load()), encoding="utf-8")
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
